//! COM1 output. Silent on success unless the user asks for a step-by-step log with
//! `-fw_cfg opt/flint/log,string=1`; errors always print.

use core::cell::UnsafeCell;
use core::fmt::{self, Write};
use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550Tty};

const COM1: u16 = 0x3f8;

struct Console {
    verbose: bool,
    uart: Option<Uart16550Tty<PioBackend>>,
}

struct Global(UnsafeCell<Console>);
// SAFETY: the firmware runs on one CPU with interrupts off, so accesses never overlap.
unsafe impl Sync for Global {}

static CONSOLE: Global = Global(UnsafeCell::new(Console { verbose: false, uart: None }));

fn with_console(f: impl FnOnce(&mut Console)) {
    // SAFETY: see `Global`; no caller re-enters while `f` runs (printing does not log).
    f(unsafe { &mut *CONSOLE.0.get() })
}

pub fn set_verbose(verbose: bool) {
    with_console(|c| c.verbose = verbose);
}

fn print(args: fmt::Arguments) {
    with_console(|c| {
        if c.uart.is_none() {
            // SAFETY: COM1 is the standard first serial port and nothing else drives it.
            c.uart = unsafe { Uart16550Tty::new_port(COM1, Config::default()) }.ok();
        }
        if let Some(uart) = c.uart.as_mut() {
            let _ = uart.write_fmt(args);
        }
    });
}

/// One step of the boot, shown only in verbose mode.
pub fn log(args: fmt::Arguments) {
    let mut verbose = false;
    with_console(|c| verbose = c.verbose);
    if verbose {
        print(format_args!("flint: {args}\r\n"));
    }
}

/// A failure the user must see, whatever the verbosity.
pub fn error(args: fmt::Arguments) {
    print(format_args!("flint: error: {args}\r\n"));
}

#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => { $crate::console::log(format_args!($($arg)*)) };
}
