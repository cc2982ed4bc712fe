//! Before a warm snapshot is taken (`flint.warmup`), the init runs the root's shell once
//! (`/bin/sh -c :`): the shell, its dynamic loader and C library, and the directory entries
//! on the way to them are then in the page cache of every VM restored from the snapshot, and
//! a job that starts a program from the root reads less from the disk, through code that a
//! restored VM would otherwise run (and TCG translate) for the first time. Nothing else of
//! it stays: the shell has ended before the snapshot. Best effort: a root without a shell,
//! or one that fails, only misses the gain.
//!
//! Then the init takes fresh entropy and time from the host ([`take_seed`]), so the kernel's
//! CRNG is initialised in the snapshot: each restored VM only reseeds it with its job's
//! entropy, without the first initialisation's work (a console message included).

use crate::clock::{self, Deadline};
use crate::control::Message;
use crate::report::Failure;
use crate::sys::{self, SigSet};
use crate::{fresh, job, status};
use core::ptr;
use rustix::fd::BorrowedFd;
use rustix::process::{Signal, WaitOptions};

/// A shell that has not ended by then is killed: the snapshot must not wait on it.
const LIMIT_MS: u64 = 2000;

/// Runs `/bin/sh -c :` to its end (or [`LIMIT_MS`]).
pub fn run() {
    let child_ended = SigSet::EMPTY.with(Signal::CHILD);
    // Blocked before forking, so an early exit still leaves SIGCHLD pending.
    if sys::block(child_ended).is_err() {
        return;
    }
    // SAFETY: the init never starts threads, so forking is sound.
    let shell = match unsafe { sys::fork() } {
        Ok(Some(pid)) => pid,
        Ok(None) => exec_shell(),
        Err(_) => return,
    };
    let deadline = Deadline::after_ms(LIMIT_MS);
    while let Ok(None) = rustix::process::waitpid(Some(shell), WaitOptions::NOHANG) {
        let left = deadline.remaining_ns();
        if left == 0 {
            let _ = rustix::process::kill_process(shell, Signal::KILL);
            let _ = rustix::process::waitpid(Some(shell), WaitOptions::empty());
            return;
        }
        let _ = sys::wait_signal(child_ended, Some(&clock::timespec(left)));
    }
}

fn exec_shell() -> ! {
    let _ = sys::set_blocked(SigSet::EMPTY);
    let argv = [c"sh".as_ptr(), c"-c".as_ptr(), c":".as_ptr(), ptr::null()];
    let envp = [c"PATH=/usr/sbin:/usr/bin:/sbin:/bin".as_ptr(), ptr::null()];
    // SAFETY: NUL-terminated strings in null-terminated arrays, all static.
    unsafe { sys::execve(c"/bin/sh".as_ptr().cast(), argv.as_ptr().cast(), envp.as_ptr().cast()) };
    sys::exit(127)
}

/// Takes the fresh-entropy control message the host sends a VM that makes a warm snapshot
/// before it waits for its job; waits at most `wait_ms` for it.
pub fn take_seed(port: BorrowedFd<'_>, wait_ms: u64) -> Result<(), Failure> {
    let mut first = [0];
    job::read_exact(port, &mut first, wait_ms)?;
    if Message::decode(first[0]) != Some(Message::Fresh) {
        return Err(Failure::new(status::BAD_PARAMETERS)
            .text("flint.warmup: the host's first message is not fresh entropy and time"));
    }
    fresh::take_from_host()
}
