//! What the prebuilt `core` expects from a C runtime: memory primitives and unwinding stubs.
//! String instructions keep the compiler from turning these into calls to themselves; the
//! bulk moves 8 bytes per iteration because TCG runs each iteration of a `rep` separately.

use core::arch::asm;

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

#[no_mangle]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= n {
        // SAFETY: a forward copy is correct when dest does not start inside src.
        return unsafe { memcpy(dest, src, n) };
    }
    // SAFETY: copy backwards (direction flag set, restored) so overlapping bytes are read first.
    unsafe {
        asm!("std", "rep movsb", "cld",
            inout("rcx") n => _, inout("rdi") dest.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
            options(nostack));
    }
    dest
}

#[no_mangle]
pub unsafe extern "C" fn memset(dest: *mut u8, value: i32, n: usize) -> *mut u8 {
    let byte = u64::from(value as u8);
    // SAFETY: the caller guarantees the range is valid.
    unsafe {
        asm!("rep stosq", "mov rcx, {tail}", "rep stosb",
            tail = in(reg) n % 8,
            inout("rcx") n / 8 => _, inout("rdi") dest => _, in("rax") byte * 0x0101_0101_0101_0101,
            options(nostack, preserves_flags));
    }
    dest
}

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

#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}

/// Referenced by the prebuilt `core`; never reached with `panic = "abort"`.
#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    firmware::arch::halt_forever()
}

#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
