//! What a C runtime would otherwise provide: the entry point, the panic handler and the
//! unwinding stubs (the memory functions come from the `freestanding` crate). Only the binary
//! has these; the library is also linked into host programs, which get them from libc and std.

use core::arch::naked_asm;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};
use flint_guest_init::report::{self, Failure};
use flint_guest_init::{poweroff, status};
use freestanding as _;

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
        failure = failure.text(" at ").text(location.file()).text(":").number(location.line().into());
    }
    report::print(&failure.text(": this is a flint-init bug, please report it with the kernel command line"));
    poweroff::power_off(status::INIT_PANICKED)
}

// The prebuilt `core` is compiled for unwinding and, without LTO to prune it (debug
// builds), references these two. With panic = "abort" nothing ever calls them.

#[no_mangle]
extern "C" fn rust_eh_personality() {}

#[no_mangle]
extern "C" fn _Unwind_Resume() -> ! {
    poweroff::end(status::INIT_PANICKED)
}
