//! What the hand-offs share: what they are given (`Platform`) and what they leave for the jump
//! (`Handoff`). The kernel sources (`fw_cfg_boot`, `disk_boot`) fetch the pieces, the
//! hand-offs (`bzimage`, `pvh`) put them in place, `main.rs` enters the kernel.

use loader::e820::MemoryMap;

/// What the platform set-up learned that the kernel needs.
pub struct Platform {
    pub map: MemoryMap,
    pub acpi_rsdp: u64,
}

/// Everything is in place; what is left is the timeline (`timeline::record`) and the jump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handoff {
    /// The bzImage's 64-bit entry, with RSI = boot_params. The zero page names
    /// `layout::TIMELINE` as the head of the setup_data chain; the timeline node goes there
    /// last, linked to `setup_data`, the rest of the chain.
    Linux64 { entry: u64, boot_params: u64, setup_data: u64 },
    /// A vmlinux's 32-bit PVH entry, with EBX = hvm_start_info. The command line at
    /// `layout::CMDLINE` is `cmdline_len` bytes; the timeline is appended to it.
    Pvh32 { entry: u32, start_info: u32, cmdline_len: usize },
}
