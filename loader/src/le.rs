//! Bounds-checked little-endian field access; `None` means the field lies out of range.

fn array<const N: usize>(bytes: &[u8], off: usize) -> Option<[u8; N]> {
    bytes.get(off..off.checked_add(N)?)?.try_into().ok()
}

pub fn u16_at(bytes: &[u8], off: usize) -> Option<u16> {
    array(bytes, off).map(u16::from_le_bytes)
}

pub fn u32_at(bytes: &[u8], off: usize) -> Option<u32> {
    array(bytes, off).map(u32::from_le_bytes)
}

pub fn u64_at(bytes: &[u8], off: usize) -> Option<u64> {
    array(bytes, off).map(u64::from_le_bytes)
}

/// Copies `src` to `off`; integers are written as `value.to_le_bytes()`.
pub fn put(bytes: &mut [u8], off: usize, src: &[u8]) -> Option<()> {
    bytes.get_mut(off..off.checked_add(src.len())?)?.copy_from_slice(src);
    Some(())
}
