//! Deadlines on the monotonic clock, for waiting on devices and the workload.

use rustix::io::Errno;
use rustix::thread::nanosleep;
use rustix::time::{clock_gettime, ClockId, Timespec};

const NS_PER_MS: u64 = 1_000_000;
const NS_PER_S: u64 = 1_000_000_000;
/// Polling for a device starts fast (it usually shows up within milliseconds of its driver
/// loading) and backs off so a slow one does not keep the CPU busy.
const FIRST_PAUSE_NS: u64 = NS_PER_MS;
const LONGEST_PAUSE_NS: u64 = 32 * NS_PER_MS;

#[derive(Clone, Copy)]
pub struct Deadline {
    at_ns: u64,
}

impl Deadline {
    pub fn after_ms(ms: u64) -> Deadline {
        Deadline { at_ns: now_ns().saturating_add(ms.saturating_mul(NS_PER_MS)) }
    }

    /// Time left, 0 once the deadline has passed.
    pub fn remaining_ns(self) -> u64 {
        self.at_ns.saturating_sub(now_ns())
    }
}

/// Waits until `path` exists; false if it did not before `deadline`. Device nodes appear
/// asynchronously: drivers probe, then devtmpfs adds the nodes.
pub fn wait_for_path(path: &[u8], deadline: Deadline) -> bool {
    retry(deadline, || rustix::fs::stat(path), |_| true).is_ok()
}

/// Calls `attempt` until it succeeds, fails in a way `transient` rejects, or `deadline`
/// passes (it always runs at least once), sleeping with backoff in between.
pub fn retry<T>(
    deadline: Deadline,
    mut attempt: impl FnMut() -> Result<T, Errno>,
    transient: impl Fn(Errno) -> bool,
) -> Result<T, Errno> {
    let mut pause_ns = FIRST_PAUSE_NS;
    loop {
        match attempt() {
            Err(errno) if transient(errno) && deadline.remaining_ns() > 0 => {
                sleep_ns(pause_ns.min(deadline.remaining_ns()));
                pause_ns = (pause_ns * 2).min(LONGEST_PAUSE_NS);
            }
            result => return result,
        }
    }
}

pub fn timespec(ns: u64) -> Timespec {
    // Both parts fit i64: seconds are at most u64::MAX / 10^9.
    Timespec { tv_sec: (ns / NS_PER_S) as i64, tv_nsec: (ns % NS_PER_S) as i64 }
}

/// Sleeps up to `ns`; a signal may cut it short, which callers tolerate by re-checking.
pub fn sleep_ns(ns: u64) {
    let _ = nanosleep(&timespec(ns));
}

pub fn now_ns() -> u64 {
    let now = clock_gettime(ClockId::Monotonic);
    // The monotonic clock starts near 0 at boot and is never negative.
    (now.tv_sec as u64).saturating_mul(NS_PER_S).saturating_add(now.tv_nsec as u64)
}
