//! The `-bios` image: a thin shell over the `firmware` library.
#![no_std]
#![no_main]

mod runtime;

use firmware::{console, exit, log};

core::arch::global_asm!(include_str!("arch/reset.s"), options(att_syntax));

/// Called by `arch/reset.s` in 64-bit mode with the TSC read at the reset vector.
#[no_mangle]
pub extern "C" fn firmware_main(reset_tsc: u64) -> ! {
    let _ = reset_tsc;
    console::set_verbose(true);
    log!("hello from 64-bit mode");
    exit::power_off(0)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    console::error(format_args!("internal error: {info}"));
    exit::power_off(0x7f)
}
