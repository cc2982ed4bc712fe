//! The unwinding stubs the prebuilt `core` references (the memory functions come from the
//! `freestanding` crate).

use freestanding as _;

/// Referenced by the prebuilt `core`; never reached with `panic = "abort"`.
#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    firmware::arch::halt_forever()
}

#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
