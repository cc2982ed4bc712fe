//! The workload's process, forked before its job arrives over the status port: it waits on a
//! pipe with its signals, session and stdio already set up, and the init hands it the job's
//! bytes once it has checked them. A warm snapshot is taken while the init waits for the job,
//! so every VM restored from it finds the fork done: the kernel's fork path (copying the
//! init's memory map and page tables, then the copy-on-write faults of both processes) is
//! code a restored VM would otherwise run, and TCG translate, first thing for every job.

use crate::exec::{self, JobSpace};
use crate::fdio::{read_all, write_all};
use crate::job::JOB_MAX;
use crate::params::{ParamError, Params};
use crate::report::Failure;
use crate::run;
use crate::status;
use crate::stdio::Stdio;
use crate::sys;
use rustix::fd::OwnedFd;
use rustix::pipe::PipeFlags;
use rustix::process::Pid;

/// Room for a job from the status port: the message and its decoded lists, several MiB, so
/// in .bss rather than on the stack (pages never touched cost no memory). The init receives
/// the job into its own; the waiting process copies the bytes into its copy and decodes them
/// there.
pub struct Memory {
    pub message: [u8; JOB_MAX],
    pub space: JobSpace,
}

impl Memory {
    pub const EMPTY: Memory = Memory { message: [0; JOB_MAX], space: JobSpace::new() };
}

/// The workload's process, waiting for its job.
pub struct Waiting {
    pid: Pid,
    job: OwnedFd,
}

/// Forks the workload's process: it sets up what does not depend on the job, then waits for
/// [`Waiting::go`]. Gives `memory` back to the init.
pub fn fork(
    stdio: &Stdio,
    params: &Params<'_>,
    memory: &'static mut Memory,
) -> Result<(Waiting, &'static mut Memory), Failure> {
    let (take, give) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)
        .map_err(|errno| Failure::new(status::SETUP_FAILED).text("cannot make a pipe for the job: ").errno(errno))?;
    match run::fork()? {
        Some(pid) => Ok((Waiting { pid, job: give }, memory)),
        None => {
            drop(give);
            wait_for_job(&take, stdio, params.clone(), memory)
        }
    }
}

impl Waiting {
    /// Hands the job message's `body` (as [`crate::job::receive`] returned it, already
    /// checked by the init) to the waiting process; returns its pid.
    pub fn go(self, body: &[u8]) -> Result<Pid, Failure> {
        let len = (body.len() as u64).to_le_bytes();
        write_all(&self.job, &len).and_then(|()| write_all(&self.job, body)).map_err(|errno| {
            Failure::new(status::SETUP_FAILED).text("cannot hand the job to the workload's process: ").errno(errno)
        })?;
        Ok(self.pid)
    }
}

fn wait_for_job(job: &OwnedFd, stdio: &Stdio, mut params: Params<'_>, memory: &'static mut Memory) -> ! {
    let console = exec::console();
    let failure = match exec::detach(stdio) {
        Ok(()) => become_job(job, &mut params, memory),
        Err(failure) => failure,
    };
    exec::fail(console, failure)
}

/// Reads the job and becomes its workload; returns only why it could not. A pipe that closes
/// first means the init failed before the job came, and said so itself.
fn become_job<'a>(job: &OwnedFd, params: &mut Params<'a>, memory: &'a mut Memory) -> Failure {
    let mut len = [0; 8];
    if read_all(job, &mut len).is_err() {
        sys::exit(status::SETUP_FAILED);
    }
    let Some(body) = usize::try_from(u64::from_le_bytes(len)).ok().and_then(|len| memory.message.get_mut(..len)) else {
        sys::exit(status::SETUP_FAILED);
    };
    if read_all(job, body).is_err() {
        sys::exit(status::SETUP_FAILED);
    }
    if let Err(error) = params.apply_job(body) {
        return ParamError::failure(error);
    }
    match memory.space.command(params) {
        Ok(command) => match exec::enter(&command) {
            Ok(()) => exec::exec(&command),
            Err(failure) => failure,
        },
        Err(failure) => failure,
    }
}
