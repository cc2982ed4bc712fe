//! flint's boot planner. The firmware gathers facts (QEMU's fw_cfg blobs, the memory map, a
//! disk's sectors), this crate decides what goes where and builds the zero page, the firmware
//! executes it. For disk boots it reads the GPT ([`gpt`]) and tells what the boot partition
//! holds ([`boot_image`]) through [`read_at::ReadAt`], so the firmware only does the I/O.
//! Pure logic, testable on the host, with no allocation (the guest init uses `gpt`,
//! `read_at` and `decimal` without an allocator, the firmware everything).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod boot_image;
pub mod boot_params;
pub mod bzimage;
pub mod decimal;
pub mod e820;
pub mod gpt;
pub mod low_window;
pub mod plan;
pub mod pvh;
pub mod read_at;
pub mod setup_data;

mod layout;
mod le;
mod range;

#[cfg(test)]
mod proptests;
/// Builders of synthetic kernels, disks and memory maps for tests, the firmware's included.
#[cfg(any(test, feature = "testutil"))]
#[doc(hidden)]
pub mod testutil;

// The test builders allocate; nothing else in the crate does.
#[cfg(all(feature = "testutil", not(test)))]
extern crate std;
