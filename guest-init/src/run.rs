//! Running the workload: fork, then wait for it while doing PID 1's other jobs (reaping the
//! orphans it adopts, forwarding SIGTERM and SIGINT and the host's signals, enforcing
//! `flint.timeout`).
//!
//! Signals are taken synchronously with `rt_sigtimedwait` instead of through handlers: the
//! signals are blocked, so the kernel queues them even for PID 1 (which otherwise drops
//! signals it has no handler for), and one call waits for "a child exited", "forward this"
//! and "time is up" together, with no handler code or restorer trampoline.

use crate::clock::{self, Deadline};
use crate::control::Message;
use crate::exec::{self, Command};
use crate::fresh;
use crate::oom;
use crate::poweroff;
use crate::ready::Ready;
use crate::report::{self, Failure};
use crate::status;
use crate::stdio::Stdio;
use crate::sys::{self, SigSet};
use rustix::process::{Pid, Signal, WaitOptions};
use rustix::system::RebootCommand;

const FORWARDED: [Signal; 2] = [Signal::TERM, Signal::INT];
/// What PID 1 waits for while the workload runs: its end, signals to forward, the host's input.
const WATCHED: SigSet = SigSet::EMPTY.with(Signal::CHILD).with(Signal::TERM).with(Signal::INT).with(Signal::IO);

/// Runs `command` as the workload, to its end ([`supervise`]).
pub fn run(
    command: &Command<'_>,
    stdio: &Stdio,
    limits: (Option<u64>, u64),
    ready: Option<&Ready>,
) -> Result<u8, Failure> {
    let workload = match fork()? {
        Some(pid) => pid,
        None => exec::child(command, stdio),
    };
    supervise(workload, limits, ready)
}

/// Forks the workload's process, with the signals PID 1 waits for blocked first: the child's
/// pid in the parent, `None` in the child.
pub fn fork() -> Result<Option<Pid>, Failure> {
    let setup = |what: &str, errno| {
        Failure::new(status::SETUP_FAILED).text(what).errno(errno).text(": the guest kernel is out of resources")
    };
    // Blocked before forking, so a child that exits at once still leaves its SIGCHLD pending.
    sys::block(WATCHED).map_err(|errno| setup("cannot block signals: ", errno))?;
    // Make Ctrl-Alt-Del send SIGINT to init (forwarded to the workload) instead of an
    // immediate reboot. Not essential, so a failure is ignored.
    let _ = rustix::system::reboot(RebootCommand::CadOff);
    // SAFETY: the init never starts threads, so forking is sound.
    unsafe { sys::fork() }.map_err(|errno| setup("cannot fork the workload: ", errno))
}

/// Waits for the `workload` process to end and returns its status (or the timeout failure),
/// doing PID 1's other jobs meanwhile.
///
/// At `flint.timeout` the workload gets SIGTERM, then SIGKILL `grace_ms` later (at once
/// when 0), as `timeout -k` does; either way the VM's status is then 124. The host's
/// messages on the status port ([`crate::control`]) forward signals, stop the workload with status
/// 128+N, or bring fresh entropy and time. The first write to `ready` is announced on the
/// status port.
pub fn supervise(
    workload: Pid,
    (timeout_ms, grace_ms): (Option<u64>, u64),
    ready: Option<&Ready>,
) -> Result<u8, Failure> {
    let timed_out = || {
        Failure::new(status::TIMEOUT)
            .text("workload killed after flint.timeout=")
            .number(timeout_ms.unwrap_or_default())
            .text(" ms: raise flint.timeout if it needs longer")
    };
    let mut deadline = timeout_ms.map(Deadline::after_ms);
    // Once the timeout sent SIGTERM: when SIGKILL follows.
    let mut kill_at: Option<Deadline> = None;
    // Messages the host sent before the workload started wait on the port: read them now.
    let mut host_wrote = poweroff::host_talks();
    let mut announce = ready;
    loop {
        if announce.is_some_and(Ready::written) {
            poweroff::write_status_line(status::WORKLOAD_READY_LINE);
            announce = None;
        }
        if let Some(status) = reap(workload) {
            if kill_at.is_some() {
                return Err(timed_out());
            }
            // The OOM killer's signal is SIGKILL: 128 + 9.
            if status == 137 {
                oom::after_workload();
            }
            return Ok(status);
        }
        if core::mem::take(&mut host_wrote) {
            if let Some(status) = obey_host(workload) {
                return Ok(status);
            }
        }
        let now_due = |deadline: Option<Deadline>| deadline.map(|deadline| deadline.remaining_ns());
        if now_due(kill_at) == Some(0) || (now_due(deadline) == Some(0) && grace_ms == 0) {
            let _ = rustix::process::kill_process(workload, Signal::KILL);
            return Err(timed_out());
        }
        if now_due(deadline) == Some(0) {
            let _ = rustix::process::kill_process(workload, Signal::TERM);
            deadline = None;
            kill_at = Some(Deadline::after_ms(grace_ms));
        }
        let timeout = match (now_due(deadline), now_due(kill_at)) {
            (Some(left), _) | (None, Some(left)) => Some(clock::timespec(left)),
            (None, None) => None,
        };
        // SIGCHLD, a timeout (EAGAIN) or an interruption all lead back to the checks above.
        match sys::wait_signal(WATCHED, timeout.as_ref()) {
            Ok(signal) if signal == Signal::IO.as_raw() => host_wrote = true,
            Ok(signal) => {
                if let Some(&forward) = FORWARDED.iter().find(|forward| forward.as_raw() == signal) {
                    let _ = rustix::process::kill_process(workload, forward);
                }
            }
            Err(_) => {}
        }
    }
}

/// Acts on the host's messages that have arrived; returns the VM's status if one of them
/// stops the workload (or fresh entropy cannot be had: the workload must not go on with the
/// snapshot's).
fn obey_host(workload: Pid) -> Option<u8> {
    // One byte at a time: a fresh-entropy message's payload is read by `take_fresh`.
    let mut buf = [0; 1];
    while let [byte] = *poweroff::host_messages(&mut buf) {
        match Message::decode(byte) {
            Some(Message::Forward(signal)) => {
                if let Some(signal) = Signal::from_named_raw(i32::from(signal)) {
                    let _ = rustix::process::kill_process(workload, signal);
                }
            }
            Some(Message::Stop(signal)) => {
                let _ = rustix::process::kill_process(workload, Signal::KILL);
                return Some(Message::stop_status(signal));
            }
            Some(Message::Fresh) => {
                if let Err(failure) = fresh::take_from_host() {
                    let _ = rustix::process::kill_process(workload, Signal::KILL);
                    report::print(&failure);
                    return Some(failure.status);
                }
            }
            None => {}
        }
    }
    None
}

/// Reaps every child that has exited; returns the workload's status once it is among them.
fn reap(workload: Pid) -> Option<u8> {
    // `wait`, not `waitpid(None)`: rustix passes that as 0, which means only children in
    // init's process group, and the workload has a session of its own.
    while let Ok(Some((pid, wait_status))) = rustix::process::wait(WaitOptions::NOHANG) {
        if pid == workload {
            return Some(status::from_wait(wait_status.exit_status(), wait_status.terminating_signal()));
        }
    }
    None
}
