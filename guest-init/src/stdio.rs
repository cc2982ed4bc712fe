//! The workload's stdin, stdout and stderr: devices opened by PID 1 (so it can report a bad
//! path itself and flush the output at the end), handed to the child as fds 0-2.

use crate::clock::{self, Deadline};
use crate::params::Params;
use crate::report::Failure;
use crate::status;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::termios::{tcdrain, tcgetattr, tcsetattr, OptionalActions};

pub struct Stdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

impl Stdio {
    pub fn open(params: &Params<'_>) -> Result<Stdio, Failure> {
        let deadline = Deadline::after_ms(params.device_wait_ms);
        let stdin = open(params.stdin, OFlags::RDONLY, "flint.stdin", deadline)?;
        let stdout = open(params.stdout, OFlags::WRONLY, "flint.stdout", deadline)?;
        // One open file for both when they name the same device, so writes to a file or
        // disk share one offset instead of overwriting each other.
        let stderr = if params.stderr == params.stdout {
            rustix::io::fcntl_dupfd_cloexec(&stdout, 0)
                .map_err(|errno| device_failure("flint.stderr", params.stderr, errno))?
        } else {
            open(params.stderr, OFlags::WRONLY, "flint.stderr", deadline)?
        };
        Ok(Stdio { stdin, stdout, stderr })
    }

    /// Pushes out what the workload wrote before the VM ends: powering off with bytes still
    /// in a terminal's buffer (a serial port's, say) would lose them.
    pub fn flush(&self) {
        flush(self.stdout.as_fd());
        flush(self.stderr.as_fd());
    }
}

/// Opens a device for the workload or the status line once it exists (or `deadline` passed);
/// a tty is put in raw mode so bytes pass unchanged (no `\n` to `\r\n`, no echo, no line
/// editing, no signal keys).
pub fn open(path: &[u8], access: OFlags, key: &str, deadline: Deadline) -> Result<OwnedFd, Failure> {
    // A device node can appear (ENOENT until then) a moment before its driver accepts opens
    // (ENXIO until then): both mean "not yet" until the deadline.
    // NOCTTY: PID 1 must not acquire a controlling terminal (the workload's session gets it).
    let fd = clock::retry(
        deadline,
        || rustix::fs::open(path, access | OFlags::NOCTTY | OFlags::CLOEXEC, Mode::empty()),
        |errno| errno == Errno::NOENT || errno == Errno::NXIO,
    )
    .map_err(|errno| device_failure(key, path, errno))?;
    if let Ok(mut termios) = tcgetattr(&fd) {
        termios.make_raw();
        tcsetattr(&fd, OptionalActions::Now, &termios).map_err(|errno| device_failure(key, path, errno))?;
    }
    Ok(fd)
}

/// Drains a tty, or syncs a disk or file; errors are moot this late.
pub fn flush(fd: BorrowedFd<'_>) {
    if tcdrain(fd).is_err() {
        let _ = rustix::fs::fsync(fd);
    }
}

fn device_failure(key: &str, path: &[u8], errno: rustix::io::Errno) -> Failure {
    Failure::new(status::SETUP_FAILED)
        .text("cannot open ")
        .text(key)
        .text("=")
        .bytes(path)
        .text(": ")
        .errno(errno)
        .text(": name a device that exists in the guest (the default is /dev/console)")
}
