//! The host side of flint: building the firmware image, getting kernels, making root
//! filesystems, running one workload in a fresh VM (`flint run`) or building a disk image that
//! runs it (`flint image`).
//! The `flint` binary and the integration tests in `tests/` are both built on this library.

pub mod bench;
pub mod cli;
pub mod decompress;
pub mod embedded;
pub mod env;
pub mod fwbuild;
pub mod image;
pub mod initramfs;
pub mod kernel;
pub mod modules;
pub mod oci;
pub mod qemu;
pub mod qmp;
pub mod rootfs;
pub mod run;
pub mod timeline;
pub mod vmlinux;
