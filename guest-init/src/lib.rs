//! flint's guest init: everything PID 1 does, one concern per module.
//!
//! The parsing and encoding modules (`params`, `argv`, `status`) are pure and unit-tested on
//! the host; `argv` and `status` are also what the host CLI uses to talk to the guest.
//! The rest wraps syscalls and is exercised by booting the init in QEMU.
//!
//! Nothing here allocates: the init has no heap, so buffers are fixed-size, on the stack (or,
//! for a job from the status port, in a static).
#![cfg_attr(not(test), no_std)]
// A `Failure` carries its message inline (~400 bytes): with no heap there is nothing to box
// it into, and it is only moved on the way to powering off.
#![allow(clippy::result_large_err)]

pub mod argv;
mod clock;
pub mod control;
pub mod exec;
mod fdio;
pub mod fresh;
mod gpt_root;
pub mod job;
pub mod modules;
pub mod mounts;
pub mod net;
pub mod oom;
pub mod params;
pub mod poweroff;
pub mod prefork;
pub mod ready;
pub mod report;
pub mod root;
pub mod run;
pub mod status;
pub mod stdio;
mod sys;
pub mod timeline;
pub mod volumes;
pub mod warmup;
