//! flint-init: PID 1 of a flint VM. Mounts the basics, reads its `flint.*` parameters,
//! loads modules, switches to the root filesystem, runs the workload and powers off with
//! its status. The steps live in the library; this file only orders them.
#![no_std]
#![no_main]
// See the same allowance in lib.rs: failures carry their message inline, with no heap.
#![allow(clippy::result_large_err)]

mod rt;

use flint_guest_init::params::{self, Params, ParamError};
use flint_guest_init::report::{self, Failure};
use flint_guest_init::{exec, modules, mounts, poweroff, root, run, stdio};

/// Called by `_start` (in `rt`).
fn main() -> ! {
    let status = boot().unwrap_or_else(|failure| {
        report::print(&failure);
        failure.status
    });
    poweroff::power_off(status)
}

fn boot() -> Result<u8, Failure> {
    mounts::mount_all(&mounts::BASIC)?;
    let mut cmdline = [0; params::CMDLINE_MAX];
    let params = Params::parse(params::read_cmdline(&mut cmdline)?).map_err(ParamError::failure)?;
    // Early, so every later failure reaches the status device.
    poweroff::open_status_device(params.status)?;
    // Decoded before the slow steps so a bad list fails fast.
    let mut space = exec::Space::default();
    let command = space.command(&params)?;
    modules::load(params.modules)?;
    if let Some(root) = &params.root {
        root::switch_to(root)?;
        mounts::mount_all(&mounts::BASIC)?;
    }
    mounts::mount_all(&mounts::EXTRA)?;
    let stdio = stdio::Stdio::open(&params)?;
    let status = run::run(&command, &stdio, params.timeout_ms);
    stdio.flush();
    status
}
