//! The workload's "ready" FIFO (`flint.ready`): a workload that prepares itself before its
//! input (an interpreter importing its modules, a function loading its model) writes to it
//! once done, and the init tells the host (`flint-workload-ready` on the status port), which
//! can then snapshot the VM right there (`flint run --warm=ready`).
//!
//! A FIFO because the init learns of the write as a signal (SIGIO, like the host's messages),
//! in the wait it is in anyway, and a workload needs nothing but `echo > "$FLINT_READY"`.

use crate::report::Failure;
use crate::status;
use crate::sys;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{FileType, Mode, OFlags, CWD};
use rustix::io::Errno;

pub struct Ready(OwnedFd);

impl Ready {
    /// Makes the FIFO at `path` (writable by any user the workload runs as) and listens on it.
    pub fn make(path: &[u8]) -> Result<Ready, Failure> {
        let failed = |what: &str, errno: Errno| {
            Failure::new(status::SETUP_FAILED).text(what).errno(errno).text(" (flint.ready)")
        };
        let everyone = Mode::from_raw_mode(0o666);
        match rustix::fs::mknodat(CWD, path, FileType::Fifo, everyone, 0) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(errno) => return Err(failed("cannot make the ready FIFO: ", errno)),
        }
        // Read-write: the init holds a writer too, so the FIFO never reads as ended.
        let fifo = rustix::fs::open(path, OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())
            .map_err(|errno| failed("cannot open the ready FIFO: ", errno))?;
        // The umask may have taken bits away.
        rustix::fs::fchmod(&fifo, everyone).map_err(|errno| failed("cannot open the ready FIFO to all: ", errno))?;
        sys::signal_on_input(fifo.as_fd()).map_err(|errno| failed("cannot listen on the ready FIFO: ", errno))?;
        Ok(Ready(fifo))
    }

    /// Whether the workload wrote since the last call (what it wrote is read and dropped).
    pub fn written(&self) -> bool {
        let mut buf = [0u8; 64];
        let mut any = false;
        while let Ok(1..) = rustix::io::read(&self.0, &mut buf) {
            any = true;
        }
        any
    }
}
