//! The low window, [1 MiB, 2 MiB): the rest of the first 2 MiB of RAM, where what the
//! firmware places itself goes first (the ACPI tables, an initrd small enough).
//!
//! Why there: QEMU backs guest RAM with transparent huge pages, so the first write to any
//! 2 MiB region makes the host clear a whole 2 MiB page. Every boot writes the first one (the
//! firmware's page tables, stack and zero page lie below 1 MiB); tables or an initrd at the top
//! of RAM would cost one more. No x86-64 Linux kernel loads in the window: its load address is
//! aligned to `CONFIG_PHYSICAL_ALIGN`, at least 2 MiB. Other PVH kernels may, which
//! [`acpi_arena`] is told.

use crate::e820::MemoryMap;
use crate::range::MIB;

pub const START: u64 = MIB;
pub const END: u64 = 2 * MIB;
/// The most room the ACPI tables get when they go at the top of RAM instead (a 16 MiB VM
/// gives them 2 MiB / 8); QEMU's come to a few KiB on microvm, about 120 KiB on pc and q35.
pub const ACPI_ARENA_MAX: u64 = MIB;
const PAGE: u64 = 4096;

/// `(base, size)` of an arena for the ACPI tables (they are allocated from its top down) in
/// the window: the part above what QEMU loaded into RAM itself (`loaded`, as `(start, size)`:
/// a PVH kernel's segments; empty for a bzImage, which is placed later), all of it when that
/// lies elsewhere. `None` when no part is RAM, or when the kernel is not known yet (one on a
/// disk, whose PVH segments may lie anywhere above 1 MiB): then [`top_arena`].
#[inline(always)]
pub fn acpi_arena(map: &MemoryMap, loaded: Option<(u64, u64)>) -> Option<(u64, u64)> {
    let (start, size) = loaded?;
    // Saturating: a range reaching past 2^64 leaves no room above it.
    let above = start.saturating_add(size).saturating_add(PAGE - 1) & !(PAGE - 1);
    let base = if start < END { above.max(START) } else { START };
    if base >= END {
        return None;
    }
    // RAM up to the window's end when its highest fit there starts at `base` (`highest_fit`
    // is what the initrd's placement runs anyway: under TCG, code translated once).
    (map.highest_fit(END - base, PAGE, END, &[]) == Some(base)).then_some((base, END - base))
}

/// `(base, size)` of the arena for the ACPI tables when the window has no room for them: the
/// top of RAM below 4 GiB, as much as `ACPI_ARENA_MAX` of it.
pub fn top_arena(map: &MemoryMap) -> (u64, u64) {
    let top = map.ram_top_below_4g();
    let size = ACPI_ARENA_MAX.min(top / 8);
    (top - size, size)
}

/// The highest `align`-aligned start for `size` bytes of RAM clear of `avoid` in the window,
/// or if none is there, below `limit_end`.
#[inline(always)]
pub fn highest_fit(map: &MemoryMap, size: u64, align: u64, limit_end: u64, avoid: &[(u64, u64)]) -> Option<u64> {
    match map.highest_fit(size, align, END.min(limit_end), avoid) {
        Some(start) if start >= START => Some(start),
        _ => map.highest_fit(size, align, limit_end, avoid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e820::ACPI;
    use crate::testutil::ram_map;

    #[test]
    fn the_acpi_arena_is_the_window_above_what_qemu_loaded() {
        let map = ram_map(&[(0, 640 * 1024), (MIB, 63 * MIB)]);
        assert_eq!(acpi_arena(&map, Some((0, 0))), Some((MIB, MIB)));
        assert_eq!(acpi_arena(&map, Some((16 * MIB, 4 * MIB))), Some((MIB, MIB)));
        assert_eq!(acpi_arena(&map, Some((2 * MIB, MIB))), Some((MIB, MIB)));
        // A PVH kernel linked at 1 MiB: the tables go above it, or at the top if it fills the window.
        assert_eq!(acpi_arena(&map, Some((MIB, 0xd2))), Some((MIB + PAGE, MIB - PAGE)));
        assert_eq!(acpi_arena(&map, Some((MIB + 0x8000, 0x1_0001))), Some((MIB + 0x1_9000, MIB - 0x1_9000)));
        assert_eq!(acpi_arena(&map, Some((MIB, 4 * MIB))), None);
        assert_eq!(acpi_arena(&map, Some((0x1f_f000, 0x2000))), None);
        assert_eq!(acpi_arena(&map, Some((u64::MAX - 1, 1))), Some((MIB, MIB)));
        // One still on a disk, or a window that is not RAM: the top.
        assert_eq!(acpi_arena(&map, None), None);
        assert_eq!(acpi_arena(&ram_map(&[(0, 640 * 1024), (3 * MIB, MIB)]), Some((0, 0))), None);
        assert_eq!(top_arena(&map), (63 * MIB, MIB));
        // Small RAM gives them an eighth of it.
        assert_eq!(top_arena(&ram_map(&[(0, 640 * 1024), (3 * MIB, 5 * MIB)])), (7 * MIB, MIB));
        assert_eq!(top_arena(&ram_map(&[(0, 640 * 1024), (3 * MIB, MIB)])), (4 * MIB - MIB / 2, MIB / 2));
    }

    #[test]
    fn fits_go_as_high_as_the_window_allows() {
        let mut map = ram_map(&[(0, 640 * 1024), (MIB, 63 * MIB)]);
        let fit = |map: &MemoryMap, size, avoid: &[(u64, u64)]| highest_fit(map, size, PAGE, 32 * MIB, avoid);
        assert_eq!(fit(&map, PAGE, &[]), Some(END - PAGE));
        assert_eq!(fit(&map, MIB, &[]), Some(START));
        assert_eq!(fit(&map, MIB + 1, &[]), Some(31 * MIB - PAGE));
        // Below the ACPI tables, clear of what the caller avoids.
        map.mark(END - 0x8000, 0x8000, ACPI).unwrap();
        assert_eq!(fit(&map, 3 * PAGE, &[]), Some(END - 0xb000));
        assert_eq!(fit(&map, 3 * PAGE, &[(END - 0xa000, 1)]), Some(END - 0xd000));
        assert_eq!(fit(&map, MIB - 0x8000, &[]), Some(START));
        assert_eq!(fit(&map, MIB - 0x7000, &[]), Some(32 * MIB - MIB + 0x7000));
        // Under a limit inside the window; with no RAM in the window, the plain highest fit.
        assert_eq!(highest_fit(&map, PAGE, PAGE, START + 0x10_000, &[]), Some(START + 0xf000));
        assert_eq!(highest_fit(&ram_map(&[(0, 640 * 1024)]), PAGE, PAGE, 32 * MIB, &[]), Some(640 * 1024 - PAGE));
        assert_eq!(highest_fit(&map, PAGE, PAGE, 32 * MIB, &[(START, MIB)]), Some(32 * MIB - PAGE));
    }
}
