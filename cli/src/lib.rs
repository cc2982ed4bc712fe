//! The host side of flint: building initramfs archives, describing and running QEMU VMs.
//! The `flint` binary and the integration tests in `tests/` are both built on this library.

pub mod initramfs;
pub mod qemu;
