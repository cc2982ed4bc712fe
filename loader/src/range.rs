//! Physical ranges as half-open `(start, size)` pairs, and alignment arithmetic.

pub const MIB: u64 = 1 << 20;
pub const FOUR_GIB: u64 = 1 << 32;

/// Saturates, so a range reaching past 2^64 simply covers the top of the address space.
pub fn end((start, size): (u64, u64)) -> u64 {
    start.saturating_add(size)
}

/// Empty ranges overlap nothing.
pub fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.1 != 0 && b.1 != 0 && a.0 < end(b) && b.0 < end(a)
}

/// An alignment of 0 means 1, so callers need not special-case it.
pub fn align_down(x: u64, align: u64) -> u64 {
    x - x % align.max(1)
}

pub fn align_up(x: u64, align: u64) -> Option<u64> {
    Some(align_down(x.checked_add(align.max(1) - 1)?, align))
}
