//! Physical memory as byte slices. Paging is an identity map of the low 4 GiB, so a
//! physical address below 4 GiB is also a valid pointer.

/// A mutable view of `len` bytes of physical memory at `addr`.
///
/// # Safety
/// The range must be RAM below 4 GiB that nothing else references while the slice lives
/// (firmware scratch areas, or places the load plan reserved for this purpose).
pub unsafe fn phys_mut<'a>(addr: u64, len: usize) -> &'a mut [u8] {
    debug_assert!(addr.checked_add(len as u64).is_some_and(|end| end <= 1 << 32));
    // SAFETY: forwarded to the caller; identity mapping makes the address a valid pointer.
    unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) }
}
