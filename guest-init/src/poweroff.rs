//! Ending the VM with a status. PID 1 must never exit (the kernel would panic), so every
//! path, including a Rust panic, ends here.
//!
//! Order: stop leftover processes, sync, make the root read-only (a clean filesystem), write
//! `flint-status <n>` to the `flint.status` device, then leave through QEMU's isa-debug-exit
//! device (QEMU exits at once with `(n << 1) | 1`), and if that device is absent, through an
//! ordinary ACPI power-off (QEMU then exits 0).

use crate::clock::{self, Deadline};
use crate::oom;
use crate::report::Failure;
use crate::status;
use crate::stdio;
use crate::sys::{self, SigSet};
use crate::timeline;
use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use rustix::fd::{AsFd, BorrowedFd, IntoRawFd};
use rustix::fs::{FileType, OFlags};
use rustix::io::Errno;
use rustix::mount::MountFlags;
use rustix::process::{Signal, WaitOptions};
use rustix::system::RebootCommand;

/// QEMU's isa-debug-exit device, at its default `iobase`.
const DEBUG_EXIT_PORT: u16 = 0x501;
/// How long killed leftovers get to exit before the root is made read-only regardless.
const REAP_MS: u64 = 1000;

/// The open `flint.status` device, or -1. A static so the panic handler can use it too.
static STATUS_FD: AtomicI32 = AtomicI32::new(-1);
/// The status device was opened read-write and raises SIGIO on input.
static HOST_TALKS: AtomicBool = AtomicBool::new(false);

/// Opens the status device, once it exists or `wait_ms` passed, unless it is open already.
/// Early, so later failures are reported through it too.
///
/// Read-write where it can be: on a virtio-serial port (a character device that is no tty)
/// the host's messages ([`crate::control`]) come back on it, and the kernel raises SIGIO when
/// they arrive. Anything else (a serial tty, a file, a driver without `fasync`) is written
/// only, and the init then simply hears nothing from the host.
pub fn open_status_device(path: Option<&[u8]>, wait_ms: u64) -> Result<(), Failure> {
    if let Some(path) = path.filter(|_| STATUS_FD.load(Ordering::Relaxed) < 0) {
        let deadline = Deadline::after_ms(wait_ms);
        let fd = match stdio::open(path, OFlags::RDWR, "flint.status", deadline) {
            Ok(fd) => {
                let port = rustix::fs::fstat(&fd)
                    .is_ok_and(|stat| FileType::from_raw_mode(stat.st_mode) == FileType::CharacterDevice)
                    && rustix::termios::tcgetattr(&fd).is_err();
                // SIGIO blocked first: the run loop takes it with rt_sigtimedwait.
                let listening = port
                    && sys::block(SigSet::EMPTY.with(Signal::IO)).is_ok()
                    && sys::signal_on_input(fd.as_fd()).is_ok();
                HOST_TALKS.store(listening, Ordering::Relaxed);
                fd
            }
            Err(_) => stdio::open(path, OFlags::WRONLY, "flint.status", deadline)?,
        };
        let _ = rustix::io::write(&fd, status::READY_LINE.as_bytes());
        // The fd stays open for the life of the VM.
        STATUS_FD.store(fd.into_raw_fd(), Ordering::Relaxed);
    }
    Ok(())
}

/// Whether the host's messages can arrive on the status device (and raise SIGIO).
pub fn host_talks() -> bool {
    HOST_TALKS.load(Ordering::Relaxed)
}

/// The status device, when the host can write to it (see [`host_talks`]).
pub fn host_port() -> Option<BorrowedFd<'static>> {
    status_fd().filter(|_| host_talks())
}

/// Writes `line` on the status device, if it is open.
pub fn write_status_line(line: &str) {
    if let Some(fd) = status_fd() {
        let _ = rustix::io::write(fd, line.as_bytes());
    }
}

/// The status device, once open.
fn status_fd() -> Option<BorrowedFd<'static>> {
    let fd = STATUS_FD.load(Ordering::Relaxed);
    // SAFETY: `open_status_device` stored an fd it gave up ownership of; nothing closes it.
    (fd >= 0).then(|| unsafe { BorrowedFd::borrow_raw(fd) })
}

/// The host's messages that have arrived on the status device, without waiting: the filled
/// part of `buf`, empty when there are none (or the host cannot talk).
pub fn host_messages(buf: &mut [u8]) -> &[u8] {
    let Some(fd) = host_port() else { return &[] };
    if !sys::readable(fd) {
        return &[];
    }
    match rustix::io::read(fd, &mut *buf) {
        Ok(n) => &buf[..n],
        Err(_) => &[],
    }
}

pub fn power_off(status: u8) -> ! {
    stop_leftovers();
    rustix::fs::sync();
    // Remounting read-only flushes the journal of a root written in place; if something
    // still holds files open for writing this fails, and the sync above has already saved
    // the data. Any other root has nothing on a disk to flush.
    if REMOUNT_ROOT.load(Ordering::Relaxed) {
        let _ = rustix::mount::mount_remount(c"/", MountFlags::RDONLY, c"");
    }
    write_status(status);
    end(status)
}

/// Whether the root is a disk written in place (`flint.rw`), which [`power_off`] remounts
/// read-only to flush its journal (measured: skipping the remount elsewhere spares a warm
/// `true` some 600 of the ~13,400 blocks TCG translates).
static REMOUNT_ROOT: AtomicBool = AtomicBool::new(false);

/// Has [`power_off`] remount the root read-only first: it is written in place.
pub fn remount_root_at_end() {
    REMOUNT_ROOT.store(true, Ordering::Relaxed);
}

/// Leaves the VM without tidying up: for when tidying up is what failed.
pub fn end(status: u8) -> ! {
    // SAFETY: fd 2 is only ever borrowed; the kernel may have left it closed, and then
    // draining fails harmlessly.
    stdio::flush(unsafe { BorrowedFd::borrow_raw(2) });
    if sys::ioperm(DEBUG_EXIT_PORT, 1).is_ok() {
        // SAFETY: ioperm granted this port; writing it makes QEMU exit, and on a machine
        // without the device the write goes nowhere.
        unsafe {
            core::arch::asm!("out dx, al", in("dx") DEBUG_EXIT_PORT, in("al") status, options(nomem, nostack, preserves_flags));
        }
    }
    let _ = rustix::system::reboot(RebootCommand::PowerOff);
    let _ = rustix::system::reboot(RebootCommand::Halt);
    // Nothing left to try; exiting would panic the kernel, so wait forever.
    loop {
        clock::sleep_ns(u64::MAX);
    }
}

/// Kills every process left (daemons the workload started, or the workload itself after a
/// failure or timeout) and reaps them, so none holds the root busy.
fn stop_leftovers() {
    if sys::signal_all(Signal::KILL) == Err(Errno::SRCH) {
        return;
    }
    let deadline = Deadline::after_ms(REAP_MS);
    loop {
        match rustix::process::wait(WaitOptions::NOHANG) {
            Ok(Some(_)) => {}
            Ok(None) if deadline.remaining_ns() > 0 => clock::sleep_ns(1_000_000),
            // ECHILD: all gone; or out of time.
            _ => return,
        }
    }
}

fn write_status(status: u8) {
    let Some(fd) = status_fd() else { return };
    let _ = rustix::io::write(fd, timeline::line(&mut [0; 320]));
    // Right before the status line, where the host looks for it.
    let kills = oom::kills();
    if kills > 0 {
        let _ = rustix::io::write(fd, status::oom_line(kills, &mut [0; 37]));
    }
    let mut buf = [0; 17];
    let line = status::line(status, &mut buf);
    let _ = rustix::io::write(fd, line);
    stdio::flush(fd);
}
