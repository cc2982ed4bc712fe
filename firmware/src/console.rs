//! COM1 output. Silent on success unless the user asks for a step-by-step log with
//! `-fw_cfg opt/flint/log,string=1`; errors always print.
//!
//! Plain port I/O on the 16550: a minimal set-up on first use (no loopback self-test, no
//! draining loops), then each byte waits for room in the transmitter.

use crate::report::{Sink, Text};
use core::sync::atomic::{AtomicBool, Ordering};

const COM1: u16 = 0x3f8;
/// Register offsets from the base port (DLAB selects the divisor latch at 0 and 1).
const DATA: u16 = 0;
const IER: u16 = 1;
const DLM: u16 = 1;
const FCR: u16 = 2;
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;
const LCR_DLAB: u8 = 0x80;
/// 8 data bits, no parity, one stop bit.
const LCR_8N1: u8 = 0x03;
/// FIFOs on and cleared.
const FCR_ENABLE_CLEAR: u8 = 0x07;
/// DTR, RTS and OUT2, as Linux's 8250 driver and uart_16550 leave them.
const MCR_READY: u8 = 0x0b;
const LSR_THR_EMPTY: u8 = 0x20;
/// 115200 baud from the 1.8432 MHz clock.
const DIVISOR: u8 = 1;

static VERBOSE: AtomicBool = AtomicBool::new(false);
static READY: AtomicBool = AtomicBool::new(false);

pub fn set_verbose(verbose: bool) {
    VERBOSE.store(verbose, Ordering::Relaxed);
}

pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// COM1 as a [`Sink`]; set up on first use.
pub struct Com1(());

impl Com1 {
    fn get() -> Com1 {
        if !READY.swap(true, Ordering::Relaxed) {
            // SAFETY: COM1 is the standard first serial port and nothing else drives it;
            // interrupts stay off (IER 0).
            unsafe {
                use crate::arch::outb;
                outb(COM1 + IER, 0);
                outb(COM1 + LCR, LCR_DLAB);
                outb(COM1 + DATA, DIVISOR);
                outb(COM1 + DLM, 0);
                outb(COM1 + LCR, LCR_8N1);
                outb(COM1 + FCR, FCR_ENABLE_CLEAR);
                outb(COM1 + MCR, MCR_READY);
            }
        }
        Com1(())
    }
}

impl Sink for Com1 {
    /// Out of line: inlined, the loop would repeat at every piece of every message.
    #[inline(never)]
    fn put(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            // SAFETY: COM1's line status and data registers; an absent port reads 0xff, so
            // the wait ends at once.
            unsafe {
                while crate::arch::inb(COM1 + LSR) & LSR_THR_EMPTY == 0 {
                    core::hint::spin_loop();
                }
                crate::arch::outb(COM1 + DATA, byte);
            }
        }
    }
}

/// Starts a console line with `prefix`; the caller writes the rest and calls [`end`].
pub fn start(prefix: &str) -> Com1 {
    let mut out = Com1::get();
    out.put(prefix.as_bytes());
    out
}

pub fn end(mut out: Com1) {
    out.put(b"\r\n");
}

/// A failure the user must see, whatever the verbosity: `flint: error: <text>`.
pub fn error(text: &dyn Text) {
    let mut out = start("flint: error: ");
    text.write(&mut out);
    end(out);
}

/// One step of the boot, shown only in verbose mode: `flint: ` and a [`put!`](crate::put)
/// template with its arguments.
#[macro_export]
macro_rules! log {
    ($template:expr $(, $arg:expr)* $(,)?) => {
        if $crate::console::verbose() {
            let mut out = $crate::console::start("flint: ");
            $crate::put!(&mut out, $template $(, $arg)*);
            $crate::console::end(out);
        }
    };
}
