//! flint-init: PID 1 of a flint VM. Mounts the basics, reads its `flint.*` parameters,
//! loads modules, switches to the root filesystem, runs the workload and powers off with
//! its status. The steps live in the library; this file only orders them.
#![no_std]
#![no_main]
// See the same allowance in lib.rs: failures carry their message inline, with no heap.
#![allow(clippy::result_large_err)]

mod rt;

use flint_guest_init::params::{self, ParamError, Params};
use flint_guest_init::report::{self, Failure};
use flint_guest_init::timeline::{self, Stamp};
use flint_guest_init::{
    exec, fresh, job, modules, mounts, net, oom, poweroff, prefork, ready, root, run, stdio, volumes, warmup,
};

/// Room for a job from the status port (`flint.job=port`).
static mut JOB_MEMORY: prefork::Memory = prefork::Memory::EMPTY;

/// The workload: from the command line, forked once its command is decoded; from the status
/// port, forked ahead (`prefork`) and given the job's bytes.
enum Workload<'a> {
    Now(exec::Command<'a>),
    Waiting(prefork::Waiting, &'a [u8]),
}

/// Called by `_start` (in `rt`).
fn main() -> ! {
    timeline::mark(Stamp::Init);
    let mut cmdline = [0; params::CMDLINE_MAX];
    let status = boot(&mut cmdline).unwrap_or_else(|failure| {
        report::print(&failure);
        // The host reads exact statuses from the status device. If the failure came before
        // it was opened (a module may provide it), try now, if `flint.status` alone is usable.
        let len = cmdline.iter().position(|&byte| byte == 0).unwrap_or(cmdline.len());
        let _ = poweroff::open_status_device(params::status_device(&cmdline[..len]), 0);
        failure.status
    });
    poweroff::power_off(status)
}

fn boot(cmdline: &mut [u8; params::CMDLINE_MAX]) -> Result<u8, Failure> {
    mounts::mount_all(&mounts::BASIC)?;
    timeline::read_firmware_stamps();
    let cmdline = params::read_cmdline(cmdline)?;
    let mut params = Params::parse(cmdline).map_err(ParamError::failure)?;
    if let Some(stamps) = params.firmware_tsc {
        timeline::set_firmware_stamps(stamps);
    }
    // Decoded before the slow steps so a bad list fails fast.
    let mut space = exec::Space::default();
    let command = if params.job_on_port { None } else { Some(space.command(&params)?) };
    modules::load(params.modules, cmdline)?;
    // As early as it can exist, so later failures are reported through it.
    poweroff::open_status_device(params.status, params.device_wait_ms)?;
    // The root comes before the job, which does not shape it: a warm start's snapshot is
    // taken while the init waits for the job, with the root ready.
    if let Some(root) = &params.root {
        root::switch_to(root, params.device_wait_ms)?;
        if root.mode == params::RootMode::ReadWrite {
            poweroff::remount_root_at_end();
        }
    }
    mounts::mount_all(&mounts::EXTRA)?;
    volumes::mount_all(params.volumes)?;
    timeline::mark(Stamp::Root);
    // After the root (its /etc gets the name server), and before a warm snapshot: the
    // network is the same for every job.
    net::configure(params.ip.as_ref(), params.root.as_ref().map(|root| root.mode), params.device_wait_ms)?;
    // The ports do not depend on the job either: opened before a warm snapshot, they need no
    // opening after a restore; nor does the OOM counter's first reading (the kernel's
    // formatting of /proc/vmstat, translated again by TCG after a restore).
    let stdio = stdio::Stdio::open(&params)?;
    oom::before_workload();
    let workload = match command {
        Some(command) => Workload::Now(command),
        None => {
            let port = poweroff::host_port().ok_or_else(|| {
                Failure::new(flint_guest_init::status::BAD_PARAMETERS)
                    .text("flint.job=port needs flint.status to name a virtio-serial port the host writes to")
            })?;
            if params.warmup {
                warmup::run();
                warmup::take_seed(port, params.device_wait_ms)?;
            }
            // Opened now, so a restored VM does not walk the path and open the device again.
            fresh::open_urandom();
            // SAFETY: the init is single-threaded and `boot` runs once, so this is the only
            // reference to the static ever made.
            let memory = unsafe { &mut *core::ptr::addr_of_mut!(JOB_MEMORY) };
            let (waiting, memory) = prefork::fork(&stdio, &params, memory)?;
            poweroff::write_status_line(flint_guest_init::status::AWAITING_JOB_LINE);
            let body = job::receive(port, &mut memory.message, params.device_wait_ms)?;
            params.apply_job(body).map_err(ParamError::failure)?;
            fresh::apply(params.seed, params.time)?;
            // Decoded here as the waiting process will, so PID 1 reports a bad job itself.
            memory.space.command(&params)?;
            Workload::Waiting(waiting, body)
        }
    };
    let ready = params.ready.map(ready::Ready::make).transpose()?;
    let limits = (params.timeout_ms, params.grace_ms);
    timeline::mark(Stamp::Exec);
    let status = match workload {
        Workload::Now(command) => run::run(&command, &stdio, limits, ready.as_ref()),
        Workload::Waiting(waiting, body) => {
            waiting.go(body).and_then(|workload| run::supervise(workload, limits, ready.as_ref()))
        }
    };
    timeline::mark(Stamp::Exit);
    stdio.flush();
    status
}
