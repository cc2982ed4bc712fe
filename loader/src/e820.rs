//! The E820 memory map in boot_params' layout: read from QEMU's fw_cfg file `etc/e820`,
//! given a PC's low memory (no RAM from the EBDA to 1 MiB), and searched for free RAM.

use crate::range;
use core::fmt;

pub const RAM: u32 = 1;
pub const RESERVED: u32 = 2;
pub const ACPI: u32 = 3;
pub const NVS: u32 = 4;
pub const UNUSABLE: u32 = 5;
/// A map holds at most this many entries: QEMU's (the firmware reads at most 32) and the few
/// the firmware marks (legacy low memory, MMCONFIG, ACPI), within boot_params' 128
/// (E820_MAX_ENTRIES_ZEROPAGE). Small, because the firmware copies the table as it edits it.
pub const MAX_ENTRIES: usize = 48;
/// One packed entry, in QEMU's file and in boot_params alike.
pub const ENTRY_SIZE: usize = 20;

/// Where a PC's low RAM ends: the EBDA, the VGA and option-ROM window and the BIOS area follow.
const EBDA: u64 = 0x9_FC00;
/// `edit`'s kind for a hole.
const HOLE: u64 = u64::MAX;

#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

const _: () = assert!(core::mem::size_of::<E820Entry>() == ENTRY_SIZE);

impl E820Entry {
    /// Cannot wrap for an entry of a map (`set` refuses ranges that do), so it need not
    /// saturate as `range::end` does: fewer instructions in each inlined copy.
    fn end(&self) -> u64 {
        self.addr.wrapping_add(self.size)
    }

    fn read(raw: &[u8; ENTRY_SIZE]) -> Self {
        let field = |at: usize| u64::from_le_bytes(*raw[at..].first_chunk().unwrap_or(&[0; 8]));
        Self { addr: field(0), size: field(8), kind: u32::from_le_bytes(*raw[16..].first_chunk().unwrap_or(&[0; 4])) }
    }
}

/// Entries stay sorted, disjoint, non-empty, and merged where touching ones share a kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryMap {
    table: [E820Entry; MAX_ENTRIES],
    len: usize,
}

impl Default for MemoryMap {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryMap {
    pub const fn new() -> Self {
        Self { table: [E820Entry { addr: 0, size: 0, kind: 0 }; MAX_ENTRIES], len: 0 }
    }

    pub fn from_qemu(bytes: &[u8]) -> Result<Self, MapError> {
        let mut map = Self::new();
        map.add_qemu(bytes)?;
        Ok(map)
    }

    /// `from_qemu` into an existing map. In place, as `add_legacy_low_memory`: the firmware
    /// would otherwise copy the table, and translate the code that does, at every step.
    pub fn add_qemu(&mut self, bytes: &[u8]) -> Result<(), MapError> {
        if !bytes.len().is_multiple_of(ENTRY_SIZE) {
            return Err(MapError::PartialEntry { len: bytes.len() });
        }
        // RAM first, so anything QEMU reserves on top of RAM wins. One loop for both passes:
        // the firmware runs this once, and under TCG each copy of a loop is translated anew.
        for pass in 0..2 {
            for raw in bytes.chunks_exact(ENTRY_SIZE) {
                let e = E820Entry::read(raw.try_into().unwrap_or(&[0; ENTRY_SIZE]));
                if (e.kind == RAM) == (pass == 0) {
                    self.mark(e.addr, e.size, e.kind)?;
                }
            }
        }
        Ok(())
    }

    /// QEMU reports RAM from address 0 to the PCI hole; a PC has RAM below 1 MiB only up to
    /// the EBDA. The rest of that MiB (EBDA, VGA window, option ROMs, BIOS area) is left out,
    /// as Firecracker and Cloud Hypervisor leave it: Linux reserves what it uses there itself
    /// (the BIOS regions, from the BDA) and places its trampoline in the RAM below. One edit
    /// rather than SeaBIOS's two reserved ranges around a hole: under TCG each edit's path is
    /// code to translate (22 instructions fewer per boot).
    pub fn with_legacy_low_memory(mut self) -> Result<Self, MapError> {
        self.add_legacy_low_memory()?;
        Ok(self)
    }

    pub fn add_legacy_low_memory(&mut self) -> Result<(), MapError> {
        self.set(EBDA, range::MIB - EBDA, None)
    }

    /// Forces [start, start + size) to `kind`; on error the map is left unchanged.
    pub fn mark(&mut self, start: u64, size: u64, kind: u32) -> Result<(), MapError> {
        self.set(start, size, Some(kind))
    }

    /// Sets the range to `kind`, or to a hole when `kind` is None.
    #[inline]
    pub(crate) fn set(&mut self, start: u64, size: u64, kind: Option<u32>) -> Result<(), MapError> {
        self.edit(start, size, kind.map_or(HOLE, u64::from))
    }

    /// Rebuilds the table with the range set to `kind`, widened to u64 so that HOLE, above
    /// every u32, stands for None: each call passes one register rather than an Option's two.
    #[inline(never)]
    fn edit(&mut self, start: u64, size: u64, kind: u64) -> Result<(), MapError> {
        let end = start.checked_add(size).ok_or(MapError::Wraps { start, size })?;
        if size == 0 {
            return Ok(());
        }
        let old = self.clone();
        self.len = 0;
        let mut pending = kind;
        // What lies outside [start, end) survives; the new entry goes before the first tail.
        // Under TCG every distinct instruction the firmware runs is translated once: plain
        // pushes of scalars, one check at the end.
        for e in old.entries() {
            let e_end = e.end();
            if e.addr < start {
                self.push(e.addr, e_end.min(start), e.kind);
            }
            if e_end > end {
                if pending != HOLE {
                    self.push(start, end, pending as u32);
                    pending = HOLE;
                }
                self.push(e.addr.max(end), e_end, e.kind);
            }
        }
        if pending != HOLE {
            self.push(start, end, pending as u32);
        }
        if self.len > MAX_ENTRIES {
            *self = old;
            return Err(MapError::TableFull);
        }
        Ok(())
    }

    /// Appends [addr, end), which starts at or after the last entry's end. A full table still
    /// counts the entry, so `edit` checks `len` once at the end. Never inlined: `edit` calls
    /// it from four places.
    #[inline(never)]
    fn push(&mut self, addr: u64, end: u64, kind: u32) {
        if let Some(last) = self.len.checked_sub(1).and_then(|i| self.table.get_mut(i)) {
            if last.kind == kind && last.end() == addr {
                last.size = end - last.addr;
                return;
            }
        }
        if let Some(slot) = self.table.get_mut(self.len) {
            *slot = E820Entry { addr, size: end - addr, kind };
        }
        self.len += 1;
    }

    pub fn entries(&self) -> &[E820Entry] {
        // `len` exceeds the table only while `edit` overfills it; `min` keeps the compiler
        // from linking a panic in fewer instructions than `get` does.
        &self.table[..self.len.min(MAX_ENTRIES)]
    }

    /// Writes the entries into consecutive `SLOT`-byte slots of `out`, as boot_params'
    /// e820_table (20-byte slots) and hvm_start_info's memory map (24) both lay them out:
    /// address, size and type at offsets 0, 8 and 16, the rest of a slot left as it is. Stops
    /// where `out` has no slot left. Last to first, so the loop keeps one index, counted down
    /// to zero; inlined into the hand-off that uses it, of which a boot runs one.
    #[inline(always)]
    pub fn write_slots<const SLOT: usize>(&self, out: &mut [u8]) {
        let slots = out.as_chunks_mut::<SLOT>().0;
        let entries = self.entries();
        let mut i = entries.len();
        while i > 0 {
            i -= 1;
            let (Some(slot), Some(e)) = (slots.get_mut(i), entries.get(i)) else { break };
            let (addr, size, kind) = (e.addr, e.size, e.kind);
            let _ = crate::le::put(slot, 0, &addr.to_le_bytes());
            let _ = crate::le::put(slot, 8, &size.to_le_bytes());
            let _ = crate::le::put(slot, 16, &kind.to_le_bytes());
        }
    }

    fn ram(&self) -> impl DoubleEndedIterator<Item = E820Entry> + '_ {
        self.entries().iter().copied().filter(|e| e.kind == RAM)
    }

    /// Whether all of [start, start + size) is RAM (touching RAM entries are merged).
    pub fn is_ram(&self, start: u64, size: u64) -> bool {
        start.checked_add(size).is_some_and(|end| self.ram().any(|e| e.addr <= start && end <= e.end()))
    }

    /// Plain loops here and in `total_ram`: the firmware runs each once, and under TCG an
    /// iterator chain's every branch is a block to translate.
    pub fn ram_top_below_4g(&self) -> u64 {
        let mut top = 0;
        for e in self.entries() {
            if e.kind == RAM && e.addr < range::FOUR_GIB {
                // Sorted: a later entry ends higher.
                top = e.end().min(range::FOUR_GIB);
            }
        }
        top
    }

    pub fn total_ram(&self) -> u64 {
        let mut total: u64 = 0;
        for e in self.entries() {
            if e.kind == RAM {
                total = total.saturating_add(e.size);
            }
        }
        total
    }

    /// Highest `align`-aligned start such that the whole range is RAM, ends at or below
    /// `limit_end` and overlaps nothing in `avoid` (ranges as `(start, size)`).
    pub fn highest_fit(&self, size: u64, align: u64, limit_end: u64, avoid: &[(u64, u64)]) -> Option<u64> {
        self.ram().rev().find_map(|e| {
            let mut top = e.end().min(limit_end);
            loop {
                let start = range::align_down(top.checked_sub(size)?, align);
                if start < e.addr {
                    return None;
                }
                // Each blocker moves `top` strictly down, below that blocker for good.
                match avoid.iter().find(|&&a| range::overlaps(a, (start, size))) {
                    Some(&(blocker, _)) => top = blocker,
                    None => return Some(start),
                }
            }
        })
    }

    /// Lowest `align`-aligned start at or above `min_start`, otherwise like `highest_fit`.
    pub fn lowest_fit(&self, size: u64, align: u64, min_start: u64, avoid: &[(u64, u64)]) -> Option<u64> {
        self.ram().find_map(|e| {
            let mut start = range::align_up(e.addr.max(min_start), align)?;
            loop {
                if start.checked_add(size)? > e.end() {
                    return None;
                }
                match avoid.iter().find(|&&a| range::overlaps(a, (start, size))) {
                    Some(&blocker) => start = range::align_up(range::end(blocker), align)?,
                    None => return Some(start),
                }
            }
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    PartialEntry { len: usize },
    Wraps { start: u64, size: u64 },
    TableFull,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::PartialEntry { len } => write!(
                f,
                "fw_cfg etc/e820 is {len} bytes, not whole 20-byte entries: run flint under an unmodified QEMU"
            ),
            Self::Wraps { start, size } => {
                write!(f, "memory range {start:#x}+{size:#x} wraps past the top of memory: fix the VM's memory layout")
            }
            Self::TableFull => f.write_str("memory map needs more than 48 entries: give the VM fewer memory regions"),
        }
    }
}

impl core::error::Error for MapError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range::MIB;
    use crate::testutil::{assert_one_line, e820_bytes, ram_map};

    fn spans(map: &MemoryMap) -> Vec<(u64, u64, u32)> {
        map.entries().iter().map(|e| (e.addr, e.end(), e.kind)).collect()
    }

    #[test]
    fn parses_qemu_and_adds_legacy_low_memory() {
        let bytes = e820_bytes(&[(0xFEFF_C000, 0x4000, RESERVED), (0, 128 * MIB, RAM)]);
        let map = MemoryMap::from_qemu(&bytes).unwrap().with_legacy_low_memory().unwrap();
        let want = [(0, 0x9_FC00, RAM), (0x10_0000, 128 * MIB, RAM), (0xFEFF_C000, 0xFF00_0000, RESERVED)];
        assert_eq!(spans(&map), want);
        assert_eq!(MemoryMap::from_qemu(&bytes[..30]), Err(MapError::PartialEntry { len: 30 }));
        // QEMU's reservation wins over RAM listed after it.
        let over = e820_bytes(&[(MIB, MIB, RESERVED), (0, 4 * MIB, RAM)]);
        assert!(!MemoryMap::from_qemu(&over).unwrap().is_ram(MIB, 1));
    }

    #[test]
    fn mark_splits_and_merges() {
        let mut map = ram_map(&[(0, 64 * MIB)]);
        map.mark(16 * MIB, MIB, ACPI).unwrap();
        assert_eq!(spans(&map), [(0, 16 * MIB, RAM), (16 * MIB, 17 * MIB, ACPI), (17 * MIB, 64 * MIB, RAM)]);
        map.mark(8 * MIB, 16 * MIB, NVS).unwrap();
        assert_eq!(spans(&map), [(0, 8 * MIB, RAM), (8 * MIB, 24 * MIB, NVS), (24 * MIB, 64 * MIB, RAM)]);
        map.mark(0, 64 * MIB, RAM).unwrap();
        assert_eq!(spans(&map), [(0, 64 * MIB, RAM)]);
        map.mark(64 * MIB, MIB, RAM).unwrap();
        assert_eq!(spans(&map), [(0, 65 * MIB, RAM)]);
        assert_eq!(map.mark(u64::MAX, 2, RAM), Err(MapError::Wraps { start: u64::MAX, size: 2 }));
    }

    #[test]
    fn overflow_leaves_the_map_unchanged() {
        let mut map = MemoryMap::new();
        for i in 0..MAX_ENTRIES as u64 {
            map.mark(i * 2 * MIB, MIB, [RAM, RESERVED][i as usize % 2]).unwrap();
        }
        let before = map.clone();
        assert_eq!(map.mark(1000 * MIB, MIB, RAM), Err(MapError::TableFull));
        assert_eq!(map, before);
        // A full table still takes edits that add no entry, such as growing the last one.
        let last = (MAX_ENTRIES as u64 - 1) * 2 * MIB;
        map.mark(last + MIB, MIB, RESERVED).unwrap();
        assert_eq!((map.entries().len(), spans(&map).last()), (MAX_ENTRIES, Some(&(last, last + 2 * MIB, RESERVED))));
        for err in [MapError::TableFull, MapError::PartialEntry { len: 3 }, MapError::Wraps { start: 1, size: 2 }] {
            assert_one_line(&err);
        }
    }

    #[test]
    fn answers_queries() {
        let mut map = ram_map(&[(0, 2048 * MIB), (4096 * MIB, 2048 * MIB)]);
        map.mark(3072 * MIB, MIB, RESERVED).unwrap();
        assert_eq!((map.ram_top_below_4g(), map.total_ram()), (2048 * MIB, 4096 * MIB));
        assert!(map.is_ram(MIB, 2047 * MIB) && !map.is_ram(MIB, 2048 * MIB) && !map.is_ram(u64::MAX, 2));
        let avoid = [(2046 * MIB, MIB), (2040 * MIB, 5 * MIB)];
        assert_eq!(map.highest_fit(4 * MIB, MIB, 4096 * MIB, &avoid), Some(2036 * MIB));
        assert_eq!(map.highest_fit(4 * MIB, MIB, u64::MAX, &avoid), Some(6140 * MIB));
        assert_eq!(map.highest_fit(4096 * MIB, MIB, u64::MAX, &[]), None);
        assert_eq!(map.lowest_fit(4 * MIB, 2 * MIB, MIB, &[(MIB, 3 * MIB)]), Some(4 * MIB));
        assert_eq!(map.lowest_fit(4 * MIB, 2 * MIB, 2047 * MIB, &[]), Some(4096 * MIB));
        assert_eq!(map.lowest_fit(3000 * MIB, 0, 0, &[]), None);
    }
}
