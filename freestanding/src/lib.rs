//! What the prebuilt `core` expects from a C runtime: `memcpy`, `memmove`, `memset`,
//! `memcmp`, `bcmp` and `strlen`. Linked only into flint's freestanding binaries (the firmware
//! and the guest init, via `use freestanding as _;`); host programs get these from libc.
//!
//! String instructions keep the compiler from recognising the loops and turning them back
//! into calls to these very functions; bulk moves go 8 bytes per iteration because TCG runs
//! each iteration of a `rep` separately.
#![no_std]

use core::arch::asm;

/// # Safety
/// Both ranges must be valid for `n` bytes and must not overlap.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges are valid and do not overlap.
    unsafe {
        asm!("rep movsq", "mov rcx, {tail}", "rep movsb",
            tail = in(reg) n % 8,
            inout("rcx") n / 8 => _, inout("rdi") dest => _, inout("rsi") src => _,
            options(nostack, preserves_flags));
    }
    dest
}

/// # Safety
/// Both ranges must be valid for `n` bytes; they may overlap.
#[no_mangle]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= n {
        // SAFETY: a forward copy is correct when dest does not start inside src.
        return unsafe { memcpy(dest, src, n) };
    }
    // SAFETY: dest starts inside src, so copy backwards (direction flag set, then cleared as
    // the ABI requires); n > 0 here, so the last-byte pointers are in range.
    unsafe {
        asm!("std", "rep movsb", "cld",
            inout("rcx") n => _, inout("rdi") dest.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
            options(nostack));
    }
    dest
}

/// # Safety
/// The range must be valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(dest: *mut u8, value: i32, n: usize) -> *mut u8 {
    let pattern = u64::from(value as u8) * 0x0101_0101_0101_0101;
    // SAFETY: the caller guarantees the range is valid.
    unsafe {
        asm!("rep stosq", "mov rcx, {tail}", "rep stosb",
            tail = in(reg) n % 8,
            inout("rcx") n / 8 => _, inout("rdi") dest => _, in("rax") pattern,
            options(nostack, preserves_flags));
    }
    dest
}

/// # Safety
/// Both ranges must hold `n` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: the caller guarantees both ranges hold n readable bytes.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// # Safety
/// As for [`memcmp`].
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}

/// `CStr::from_ptr` and `CStr` comparisons call this.
///
/// # Safety
/// `s` must point to a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut len = 0;
    // SAFETY: the caller guarantees `s` is NUL-terminated.
    while unsafe { *s.add(len) } != 0 {
        len += 1;
    }
    len
}
