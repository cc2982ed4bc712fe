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

#[cfg(test)]
pub mod fake {
    //! A small VM for host tests of the hand-offs: its platform, its memory, and the check
    //! that what they placed lies apart.
    use super::Platform;
    use crate::memory::fake::FakeMemory;
    use loader::e820::{MemoryMap, ACPI, RAM, RESERVED};
    use loader::low_window;
    use loader::testutil::e820_bytes;

    /// The VM's RAM, all of it in the fake memory.
    pub const RAM_SIZE: u64 = 64 << 20;
    pub const RSDP: u64 = 0xf_5a10;
    /// Where `loader::testutil::setup_blob`'s kernel goes (its preferred address, free in this
    /// VM) and how much it may use there (its init_size).
    pub const KERNEL_ADDR: u64 = 0x100_0000;
    pub const KERNEL_EXTENT: u64 = 0x200_0000;
    /// `loader::testutil::tiny_vmlinux`'s PVH entry and its one segment.
    pub const PVH_ENTRY: u32 = 0x0100_0ab0;
    pub const PVH_SEGMENT: (u64, u64) = (0x100_0000, 0x20_0000);

    /// Where `main.rs` puts the ACPI tables for a `-kernel` boot: at the top of the low window.
    pub const ACPI_TABLES: (u64, u64) = (low_window::END - 0x2_0000, 0x2_0000);

    /// What QEMU's `etc/e820` says for `-m 64M`, with the legacy holes and the ACPI tables, as
    /// `main.rs` makes it.
    pub fn platform() -> Platform {
        let raw = e820_bytes(&[(0, RAM_SIZE, RAM), (0xfeff_c000, 0x4000, RESERVED)]);
        let mut map = MemoryMap::from_qemu(&raw).and_then(MemoryMap::with_legacy_low_memory).unwrap();
        map.mark(ACPI_TABLES.0, ACPI_TABLES.1, ACPI).unwrap();
        Platform { map, acpi_rsdp: RSDP }
    }

    pub fn memory() -> FakeMemory {
        FakeMemory::new(0, RAM_SIZE as usize)
    }

    /// The memory map as the kernel reads it: `count` entries of (addr, size, type), `stride`
    /// bytes apart from `at` (20 in the zero page, 24 in hvm_start_info's memmap).
    pub fn map_at(memory: &FakeMemory, at: u64, count: usize, stride: u64) -> Vec<(u64, u64, u32)> {
        let entry = |at: u64| (memory.u64_at(at), memory.u64_at(at + 8), memory.u32_at(at + 16));
        (0..count as u64).map(|i| entry(at + i * stride)).collect()
    }

    pub fn entries(map: &MemoryMap) -> Vec<(u64, u64, u32)> {
        map.entries().iter().map(|e| (e.addr, e.size, e.kind)).collect()
    }

    /// Panics unless the named `(start, len)` ranges are pairwise disjoint.
    pub fn assert_apart(ranges: &[(&str, u64, u64)]) {
        for (i, &(a, a_start, a_len)) in ranges.iter().enumerate() {
            for &(b, b_start, b_len) in &ranges[..i] {
                let apart = a_start + a_len <= b_start || b_start + b_len <= a_start;
                assert!(apart, "{a} [{a_start:#x}, +{a_len:#x}) overlaps {b} [{b_start:#x}, +{b_len:#x})");
            }
        }
    }
}
