//! The few syscalls rustix keeps out of its public API (they sit in its unstable `runtime`
//! module, meant for libc implementations): fork, execve, signal masks, signal waiting,
//! signalling every process, and I/O port access.

use rustix::fd::{AsRawFd, BorrowedFd};
use rustix::io::Errno;
use rustix::process::{Pid, Signal};
use rustix::time::Timespec;
use syscalls::{syscall, Sysno};

fn errno(error: syscalls::Errno) -> Errno {
    Errno::from_raw_os_error(error.into_raw())
}

/// A kernel signal set: bit N-1 stands for signal N.
#[derive(Clone, Copy)]
pub struct SigSet(u64);

impl SigSet {
    pub const EMPTY: SigSet = SigSet(0);

    pub const fn with(self, signal: Signal) -> SigSet {
        SigSet(self.0 | 1 << (signal.as_raw() - 1))
    }
}

/// The kernel's `rt_sigprocmask` `how` values.
const SIG_BLOCK: usize = 0;
const SIG_SETMASK: usize = 2;

/// Adds `set` to the blocked signals.
pub fn block(set: SigSet) -> Result<(), Errno> {
    // SAFETY: the kernel reads one 8-byte set from a valid pointer; no old set is requested.
    unsafe { syscall!(Sysno::rt_sigprocmask, SIG_BLOCK, &set.0 as *const u64, 0, 8) }.map(drop).map_err(errno)
}

/// Replaces the blocked signals with `set`.
pub fn set_blocked(set: SigSet) -> Result<(), Errno> {
    // SAFETY: as in `block`.
    unsafe { syscall!(Sysno::rt_sigprocmask, SIG_SETMASK, &set.0 as *const u64, 0, 8) }.map(drop).map_err(errno)
}

/// Waits until a signal of `set` (which must be blocked) is pending and takes it; `None`
/// waits without limit. Returns the signal number, or EAGAIN when `timeout` ran out.
pub fn wait_signal(set: SigSet, timeout: Option<&Timespec>) -> Result<i32, Errno> {
    // The kernel fills a 128-byte siginfo; only the signal number (the return value) is used.
    let mut info = [0u64; 16];
    let timeout = timeout.map_or(core::ptr::null(), |timeout| timeout as *const Timespec);
    // SAFETY: all pointers are valid for the call; Timespec is repr(C) {i64, i64}, the
    // layout of the kernel's __kernel_timespec on x86_64.
    unsafe { syscall!(Sysno::rt_sigtimedwait, &set.0 as *const u64, info.as_mut_ptr(), timeout, 8) }
        .map(|signal| signal as i32)
        .map_err(errno)
}

/// `fork()`: `None` in the child, the child's pid in the parent.
///
/// # Safety
/// The process must be single-threaded (the child gets a copy of only the calling thread).
pub unsafe fn fork() -> Result<Option<Pid>, Errno> {
    // clone with only SIGCHLD as the exit signal and no other flags is exactly fork.
    // SAFETY: no shared memory or stack is requested, so the child runs on its own copy.
    let pid = unsafe { syscall!(Sysno::clone, Signal::CHILD.as_raw(), 0, 0, 0, 0) }.map_err(errno)?;
    Ok(Pid::from_raw(pid as i32))
}

/// `execve()`; returns only on failure.
///
/// # Safety
/// `path` must be NUL-terminated; `argv` and `envp` must be null-terminated arrays of
/// pointers to NUL-terminated strings, all alive for the call.
pub unsafe fn execve(path: *const u8, argv: *const *const u8, envp: *const *const u8) -> Errno {
    // SAFETY: guaranteed by the caller.
    match unsafe { syscall!(Sysno::execve, path, argv, envp) } {
        Ok(_) => Errno::INVAL,
        Err(error) => errno(error),
    }
}

/// Sends `signal` to every process but init itself (`kill(-1, signal)`).
pub fn signal_all(signal: Signal) -> Result<(), Errno> {
    // SAFETY: plain integer arguments.
    unsafe { syscall!(Sysno::kill, -1isize, signal.as_raw()) }.map(drop).map_err(errno)
}

/// Allows this process `in`/`out` on ports `from..from + count`.
pub fn ioperm(from: u16, count: u16) -> Result<(), Errno> {
    // SAFETY: plain integer arguments; the kernel checks the range and CAP_SYS_RAWIO.
    unsafe { syscall!(Sysno::ioperm, from, count, 1) }.map(drop).map_err(errno)
}

/// Ends this process (used by the forked child only: PID 1 must never exit).
pub fn exit(status: u8) -> ! {
    // SAFETY: exit_group takes an integer and does not return.
    let _ = unsafe { syscall!(Sysno::exit_group, status) };
    unreachable!("exit_group returned")
}

/// `fcntl` commands and flags rustix does not wrap (x86_64 values).
const F_GETFL: usize = 3;
const F_SETFL: usize = 4;
const F_SETOWN: usize = 8;
const O_ASYNC: usize = 0o20000;

/// Has the kernel send SIGIO to this process when `fd` has data to read (`O_ASYNC`, owned
/// by this process); only drivers with `fasync` support it.
pub fn signal_on_input(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    let fd = fd.as_raw_fd() as usize;
    let me = rustix::process::getpid().as_raw_nonzero().get() as usize;
    // SAFETY: fcntl with integer arguments on an fd the caller keeps open.
    unsafe {
        syscall!(Sysno::fcntl, fd, F_SETOWN, me).map_err(errno)?;
        let flags = syscall!(Sysno::fcntl, fd, F_GETFL).map_err(errno)?;
        syscall!(Sysno::fcntl, fd, F_SETFL, flags | O_ASYNC).map(drop).map_err(errno)
    }
}

/// Whether `fd` has data to read right now (`poll` with no wait).
pub fn readable(fd: BorrowedFd<'_>) -> bool {
    readable_within(fd, 0)
}

/// Whether `fd` has input, waiting at most `timeout_ms` for it (an interruption or error
/// counts as none).
pub fn readable_within(fd: BorrowedFd<'_>, timeout_ms: i32) -> bool {
    const POLLIN: i16 = 1;
    #[repr(C)]
    struct PollFd {
        fd: i32,
        events: i16,
        revents: i16,
    }
    let mut poll = PollFd { fd: fd.as_raw_fd(), events: POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    let ready = unsafe { syscall!(Sysno::poll, &mut poll as *mut PollFd, 1, timeout_ms as isize) };
    matches!(ready, Ok(1..)) && poll.revents & POLLIN != 0
}
