//! Physical memory as byte slices, lent by one handle. In the firmware that is
//! [`IdentityMapped`]: paging is an identity map of the low 4 GiB, so an address is a pointer.
//! Host tests use [`fake::FakeMemory`], a buffer standing for a range of RAM. Slices borrow
//! the handle mutably, so two of them never alias, and every range is checked: one that is
//! not [`lendable`], or that overlaps another lent with it, is a panic (an internal error in
//! the firmware, a failed test on the host), never a stray write.

use crate::layout;

/// Physical memory the hand-off reads and writes.
pub trait Memory {
    /// The ranges `(addr, len)`, all at once; they must be lendable and pairwise disjoint.
    fn disjoint_mut<const N: usize>(&mut self, ranges: [(u64, usize); N]) -> [&mut [u8]; N];

    /// `len` bytes at `addr`.
    fn bytes_mut(&mut self, addr: u64, len: usize) -> &mut [u8] {
        let [bytes] = self.disjoint_mut([(addr, len)]);
        bytes
    }
}

/// Whether `[addr, end)` is memory the handle may lend: not the firmware's own (page tables,
/// data, stack below `layout::FIRMWARE_END`; the ROM it runs from), not the disk driver's
/// areas, which it reaches through [`phys_mut`].
pub fn lendable(addr: u64, end: u64) -> bool {
    let clear_of = |start: u64, len: usize| end <= start || start + len as u64 <= addr;
    addr >= layout::FIRMWARE_END
        && end <= layout::ROM
        && clear_of(layout::DMA_POOL, layout::DMA_POOL_SIZE)
        && clear_of(layout::DISK_CACHE, layout::DISK_CACHE_SIZE)
}

/// Panics unless every range is lendable and none overlaps another.
fn check<const N: usize>(ranges: &[(u64, usize); N]) {
    for (i, &range) in ranges.iter().enumerate() {
        check_one(range, &ranges[..i]);
    }
}

/// Panics unless `range` is lendable and apart from `others`.
fn check_one((addr, len): (u64, usize), others: &[(u64, usize)]) {
    // Saturating: a range that wraps ends past the ROM, so it is not lendable.
    let end = addr.saturating_add(len as u64);
    let apart = others.iter().all(|&(other, other_len)| end <= other || other.saturating_add(other_len as u64) <= addr);
    assert!(lendable(addr, end) && apart, "memory not lendable, or lent twice");
}

/// The firmware's physical memory, through the identity map. Zero-sized: the handle is a
/// proof that lendable memory is the holder's, created once in `main.rs`.
pub struct IdentityMapped(());

impl IdentityMapped {
    /// # Safety
    /// At most one handle may exist, and nothing but it may refer to lendable memory while it
    /// does: the firmware's own code, data and stack are not lendable, and the drivers reach
    /// device registers in that range through volatile pointers only.
    pub unsafe fn new() -> Self {
        IdentityMapped(())
    }
}

impl Memory for IdentityMapped {
    fn disjoint_mut<const N: usize>(&mut self, ranges: [(u64, usize); N]) -> [&mut [u8]; N] {
        check(&ranges);
        ranges.map(|(addr, len)| {
            // SAFETY: lendable addresses are below 4 GiB, so the identity map makes them valid
            // pointers, and above the firmware's areas, so not null. The handle is the only
            // way to them (`new`) and stays borrowed while the slices live; `check` made sure
            // they do not overlap one another.
            unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) }
        })
    }
}

/// A mutable view of `len` bytes of physical memory at `addr`, for the disk driver's DMA pool
/// and block cache only: the virtio HAL's allocator has no handle to borrow from.
///
/// # Safety
/// The range must be one of those areas, and nothing else may reference it while the slice
/// lives.
pub unsafe fn phys_mut<'a>(addr: u64, len: usize) -> &'a mut [u8] {
    // SAFETY: forwarded to the caller; identity mapping makes the address a valid pointer.
    unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) }
}

#[cfg(test)]
pub mod fake {
    //! Memory for host tests of the hand-off.
    use super::{check, Memory};

    /// `len` bytes of zeroed memory at physical address `base`. Allocated lazily by the host
    /// (calloc), so a fake as large as a small VM's RAM costs only the pages written.
    pub struct FakeMemory {
        base: u64,
        bytes: Vec<u8>,
    }

    impl FakeMemory {
        pub fn new(base: u64, len: usize) -> Self {
            FakeMemory { base, bytes: vec![0; len] }
        }

        /// The range as the kernel would see it; panics when it is outside the fake.
        pub fn read(&self, addr: u64, len: usize) -> &[u8] {
            let start = addr.checked_sub(self.base).expect("below the fake memory") as usize;
            self.bytes.get(start..start + len).expect("past the fake memory")
        }

        pub fn u32_at(&self, addr: u64) -> u32 {
            u32::from_le_bytes(self.read(addr, 4).try_into().unwrap())
        }

        pub fn u64_at(&self, addr: u64) -> u64 {
            u64::from_le_bytes(self.read(addr, 8).try_into().unwrap())
        }
    }

    impl Memory for FakeMemory {
        fn disjoint_mut<const N: usize>(&mut self, ranges: [(u64, usize); N]) -> [&mut [u8]; N] {
            check(&ranges);
            let base = self.base;
            let local = ranges.map(|(addr, len)| {
                let start = addr.checked_sub(base).expect("below the fake memory") as usize;
                start..start + len
            });
            self.bytes.get_disjoint_mut(local).expect("past the fake memory")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeMemory;
    use super::*;

    fn lends(ranges: &[(u64, usize)]) -> bool {
        std::panic::catch_unwind(|| {
            let mut memory = FakeMemory::new(0, 0x100_0000);
            match *ranges {
                [one] => _ = memory.bytes_mut(one.0, one.1),
                [a, b] => _ = memory.disjoint_mut([a, b]),
                _ => unreachable!(),
            }
        })
        .is_ok()
    }

    #[test]
    fn lends_only_what_is_free_and_only_once() {
        assert!(lends(&[(layout::BOOT_PARAMS, 4096)]));
        assert!(lends(&[(layout::BOOT_PARAMS, 4096), (layout::CMDLINE, 16)]));
        assert!(lends(&[(layout::DISK_CACHE + layout::DISK_CACHE_SIZE as u64, 16)]));
        // The firmware's stack, the disk driver's areas, overlapping ranges, and past the fake.
        assert!(!lends(&[(layout::FIRMWARE_END - 1, 2)]));
        assert!(!lends(&[(layout::DMA_POOL + 0x100, 1)]));
        assert!(!lends(&[(layout::DISK_CACHE - 1, 2)]));
        assert!(!lends(&[(layout::BOOT_PARAMS, 4096), (layout::BOOT_PARAMS + 4095, 1)]));
        assert!(!lends(&[(0x100_0000 - 1, 2)]));
        assert!(!lends(&[(u64::MAX, 2)]));
        assert!(!lendable(layout::ROM, layout::ROM + 1));
    }

    #[test]
    fn slices_are_the_memory_at_their_address() {
        let mut memory = FakeMemory::new(0x20000, 0x10000);
        let [a, b] = memory.disjoint_mut([(0x20010, 4), (0x20000, 8)]);
        a.copy_from_slice(&7u32.to_le_bytes());
        b.copy_from_slice(&9u64.to_le_bytes());
        assert_eq!((memory.u32_at(0x20010), memory.u64_at(0x20000)), (7, 9));
    }
}
