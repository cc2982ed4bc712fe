//! flint's firmware: everything between QEMU's reset vector and the Linux kernel's 64-bit entry.
//! The binary (`main.rs`) is a thin shell; the logic here is unit-tested on the host through the
//! small hardware traits (`fw_cfg::Transport`, `pci::ConfigSpace`, `memory::Memory`).
#![cfg_attr(not(test), no_std)]

pub mod acpi;
pub mod arch;
pub mod bzimage;
pub mod chipset;
pub mod console;
pub mod disk;
pub mod disk_boot;
pub mod error;
pub mod exit;
pub mod fw_cfg;
pub mod fw_cfg_boot;
pub mod handoff;
pub mod layout;
pub mod memory;
pub mod payload;
pub mod pci;
pub mod pvh;
pub mod report;
pub mod timeline;
pub mod virtio;
