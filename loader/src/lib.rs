//! flint's boot planner. The firmware gathers facts (QEMU's fw_cfg blobs, the memory map),
//! this crate decides what goes where and builds the zero page, the firmware executes it.
//! Pure logic with no allocation, so every decision is testable on the host.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod boot_params;
pub mod bzimage;
pub mod e820;
pub mod gpt;
pub mod plan;
pub mod pvh;
pub mod read_at;
pub mod setup_data;

mod layout;
mod le;
mod range;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod testutil;
