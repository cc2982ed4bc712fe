//! What a C runtime would otherwise provide: the entry point, the memory functions the
//! prebuilt `core` calls, and the panic handler. Only the binary has these; the library is
//! also linked into host programs, which get them from libc and std.

use core::arch::{asm, naked_asm};
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};
use flint_guest_init::report::{self, Failure};
use flint_guest_init::{poweroff, status};

/// The kernel starts PID 1 here with the stack 16-byte aligned at argc. Nothing on it is
/// needed (parameters come from /proc/cmdline), so just set up a C call frame.
#[unsafe(naked)]
#[no_mangle]
extern "C" fn _start() -> ! {
    naked_asm!("xor ebp, ebp", "and rsp, -16", "call {entry}", "ud2", entry = sym entry)
}

extern "C" fn entry() -> ! {
    crate::main()
}

static PANICKED: AtomicBool = AtomicBool::new(false);

/// A bug in the init must still end the VM, not panic the kernel: report where, then power
/// off with a status of its own. A panic while doing that skips straight to the exit.
#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    if PANICKED.swap(true, Ordering::Relaxed) {
        poweroff::end(status::INIT_PANICKED);
    }
    let mut failure = Failure::new(status::INIT_PANICKED).text("internal error");
    if let Some(location) = info.location() {
        failure = failure
            .text(" at ")
            .text(location.file())
            .text(":")
            .number(location.line().into());
    }
    report::print(
        &failure.text(": this is a flint-init bug, please report it with the kernel command line"),
    );
    poweroff::power_off(status::INIT_PANICKED)
}

// The memory and string functions the compiler and `core` call. Copies use `rep movsb`/`rep stosb`: written as loops, the compiler could
// recognise them and turn them back into calls to themselves.

#[no_mangle]
unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges are valid and do not overlap.
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _, options(nostack, preserves_flags));
    }
    dest
}

#[no_mangle]
unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= n {
        // SAFETY: copying forwards is correct when dest does not start inside src.
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

#[no_mangle]
unsafe extern "C" fn memset(dest: *mut u8, value: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the range is valid.
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dest => _, in("al") value as u8, options(nostack, preserves_flags));
    }
    dest
}

#[no_mangle]
unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
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
unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}

/// `CStr::from_ptr` and `CStr` comparisons call this.
#[no_mangle]
unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut len = 0;
    // SAFETY: the caller guarantees `s` is NUL-terminated.
    while unsafe { *s.add(len) } != 0 {
        len += 1;
    }
    len
}

// The prebuilt `core` is compiled for unwinding and, without LTO to prune it (debug
// builds), references these two. With panic = "abort" nothing ever calls them.

#[no_mangle]
extern "C" fn rust_eh_personality() {}

#[no_mangle]
extern "C" fn _Unwind_Resume() -> ! {
    poweroff::end(status::INIT_PANICKED)
}
