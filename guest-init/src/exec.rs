//! The workload's command: argv and environment decoded into the C arrays `execve` takes
//! (before forking, so a bad list is reported by PID 1), and the child's side of the fork.

use crate::argv::{DecodeError, Decoder};
use crate::params::{Params, CMDLINE_MAX};
use crate::report::{self, Failure};
use crate::status;
use crate::stdio::Stdio;
use crate::sys::{self, SigSet};
use core::ffi::CStr;
use core::ptr;
use rustix::fd::BorrowedFd;
use rustix::io::Errno;
use rustix::process::{Gid, Uid};

/// The search path when `flint.env` gives none, and the whole environment when there is no
/// `flint.env` at all: just enough to find programs.
const DEFAULT_PATH: &[u8] = b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const DEFAULT_ENV: &CStr = c"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const PATH_MAX: usize = 4096;

/// Room for the decoded lists. Every item costs at least its `,` on the command line and
/// decodes to fewer bytes than it takes there, so whatever fits the command line fits here:
/// strings with their NULs in `strings`, and argv, envp and their null ends in `pointers`.
pub struct Space {
    strings: [u8; CMDLINE_MAX],
    pointers: [*const u8; CMDLINE_MAX + 2],
}

impl Default for Space {
    fn default() -> Space {
        Space { strings: [0; CMDLINE_MAX], pointers: [ptr::null(); CMDLINE_MAX + 2] }
    }
}

impl Space {
    /// Decodes `flint.argv` and `flint.env` into this space.
    pub fn command<'s>(&'s mut self, params: &Params<'s>) -> Result<Command<'s>, Failure> {
        // Pass 1 decodes the strings and records each item's offset in `strings` as an
        // address-less pointer; pass 2 turns offsets into real pointers once `strings` is no
        // longer written.
        let (mut used, mut count) = (0, 0);
        let argc = self.decode(params.argv, "flint.argv", &mut used, &mut count, |_| true)?;
        if argc == 0 {
            return Err(bad("flint.argv", "is an empty list: give at least the program"));
        }
        if self.strings[0] == 0 {
            return Err(bad("flint.argv", "starts with an empty program name: fix its first item"));
        }
        let envp_start = argc + 1;
        count = envp_start;
        if let Some(env) = params.env {
            let is_variable = |item: &[u8]| item.iter().position(|&byte| byte == b'=').is_some_and(|equals| equals > 0);
            self.decode(env, "flint.env", &mut used, &mut count, is_variable)?;
        }
        let base = self.strings.as_ptr();
        let (argv, envp) = self.pointers.split_at_mut(envp_start);
        for pointer in argv[..argc].iter_mut().chain(&mut envp[..count - envp_start]) {
            *pointer = base.wrapping_add(pointer.addr());
        }
        if params.env.is_none() {
            self.pointers[count] = DEFAULT_ENV.as_ptr().cast();
            count += 1;
        }
        self.pointers[argc] = ptr::null();
        self.pointers[count] = ptr::null();

        let (strings, pointers) = (&self.strings, &self.pointers);
        let search_path = params.env.and_then(|_| {
            pointers[envp_start..count].iter().find_map(|&variable| {
                // SAFETY: each decoded envp entry points at a NUL-terminated string in `strings`.
                unsafe { CStr::from_ptr(variable.cast()) }.to_bytes().strip_prefix(b"PATH=")
            })
        });
        let program_len = strings.iter().position(|&byte| byte == 0).unwrap_or_default();
        Ok(Command {
            program: &strings[..program_len],
            argv: &pointers[..=argc],
            envp: &pointers[envp_start..=count],
            search_path: search_path.unwrap_or(DEFAULT_PATH),
            cwd: params.cwd,
            uid: params.uid,
            gid: params.gid,
        })
    }

    /// Decodes one list into `strings` from `*used` and its item offsets into `pointers`
    /// from `*count`; returns how many items it had.
    fn decode(&mut self, encoded: &[u8], key: &'static str, used: &mut usize, count: &mut usize, valid: impl Fn(&[u8]) -> bool) -> Result<usize, Failure> {
        let mut decoder = Decoder::new(encoded).map_err(|error| decode_failure(key, error))?;
        let mut items = 0;
        while let Some(len) = decoder.next_into(&mut self.strings[*used..]) {
            let len = len.map_err(|error| decode_failure(key, error))?;
            let item = &self.strings[*used..*used + len];
            if item.contains(&0) || !valid(item) {
                return Err(bad(key, "has an item that is not valid here (NUL byte, or a variable without NAME=): fix the list"));
            }
            // Room for the NUL, and for the null pointer ending this list.
            if *used + len >= CMDLINE_MAX || *count + 1 >= self.pointers.len() {
                return Err(decode_failure(key, DecodeError::TooLong));
            }
            self.strings[*used + len] = 0;
            self.pointers[*count] = ptr::without_provenance(*used);
            *used += len + 1;
            *count += 1;
            items += 1;
        }
        Ok(items)
    }
}

fn bad(key: &str, problem: &str) -> Failure {
    Failure::new(status::BAD_PARAMETERS).text(key).text(" ").text(problem)
}

fn decode_failure(key: &str, error: DecodeError) -> Failure {
    bad(key, "cannot be decoded: ").text(error.describe()).text(": encode it as in guest-init/README.md (argv::encode)")
}

/// A decoded, ready-to-run workload.
pub struct Command<'s> {
    /// argv[0], looked up in `search_path` when it has no `/`.
    program: &'s [u8],
    argv: &'s [*const u8],
    envp: &'s [*const u8],
    search_path: &'s [u8],
    cwd: &'s [u8],
    uid: u32,
    gid: u32,
}

/// Runs in the forked child: becomes the workload or exits 125-127 after saying why.
pub fn child(command: &Command<'_>, stdio: &Stdio) -> ! {
    // The console stays reachable for error lines after fds 0-2 become the workload's.
    // SAFETY: the init never closes fd 2; if the kernel left it closed, dup fails (EBADF).
    let console = rustix::io::fcntl_dupfd_cloexec(unsafe { BorrowedFd::borrow_raw(2) }, 3);
    let failure = match prepare(command, stdio) {
        Ok(()) => exec(command),
        Err(failure) => failure,
    };
    if let Ok(console) = console {
        let _ = rustix::stdio::dup2_stderr(console);
    }
    report::print(&failure);
    sys::exit(failure.status)
}

fn prepare(command: &Command<'_>, stdio: &Stdio) -> Result<(), Failure> {
    let setup = |what: &str, errno| Failure::new(status::SETUP_FAILED).text(what).errno(errno);
    // PID 1 blocks the signals it waits for; the mask survives execve, so clear it.
    sys::set_blocked(SigSet::EMPTY).map_err(|errno| setup("cannot unblock signals: ", errno))?;
    // A session of its own, with the stdin terminal (if any) as its controlling terminal,
    // so shells and /dev/tty work. Neither is essential, so failures are ignored.
    if rustix::process::setsid().is_ok() {
        let _ = rustix::process::ioctl_tiocsctty(&stdio.stdin);
    }
    rustix::stdio::dup2_stdin(&stdio.stdin)
        .and_then(|()| rustix::stdio::dup2_stdout(&stdio.stdout))
        .and_then(|()| rustix::stdio::dup2_stderr(&stdio.stderr))
        .map_err(|errno| setup("cannot set up the workload's stdio: ", errno))?;
    rustix::process::chdir(command.cwd).map_err(|errno| {
        Failure::new(status::SETUP_FAILED)
            .text("cannot enter flint.cwd=")
            .bytes(command.cwd)
            .text(": ")
            .errno(errno)
            .text(": create that directory in the root image")
    })?;
    // Groups first: after setuid the process may no longer change them.
    let credentials = rustix::thread::set_thread_groups(&[])
        .and_then(|()| rustix::thread::set_thread_gid(Gid::from_raw(command.gid)))
        .and_then(|()| rustix::thread::set_thread_uid(Uid::from_raw(command.uid)));
    credentials.map_err(|errno| setup("cannot switch to flint.uid/flint.gid: ", errno).text(": use ids the kernel accepts"))
}

/// Executes the program, searching `PATH` like `execvp` when its name has no `/`; returns
/// only with the reason it could not.
fn exec(command: &Command<'_>) -> Failure {
    let errno = if command.program.contains(&b'/') {
        // SAFETY: argv[0] is `program`, NUL-terminated in `strings`; the arrays are
        // null-terminated lists of NUL-terminated strings that live as long as `command`.
        unsafe { sys::execve(command.argv[0], command.argv.as_ptr(), command.envp.as_ptr()) }
    } else {
        search(command)
    };
    let status = match errno {
        Errno::NOENT | Errno::NOTDIR => status::NOT_FOUND,
        _ => status::NOT_EXECUTABLE,
    };
    Failure::new(status)
        .text("cannot execute ")
        .bytes(command.program)
        .text(": ")
        .errno(errno)
        .text(if status == status::NOT_FOUND {
            ": check flint.argv's program and the image's PATH"
        } else {
            ": make it an executable for this machine (and its interpreter present)"
        })
}

fn search(command: &Command<'_>) -> Errno {
    let mut candidate = [0u8; PATH_MAX];
    // As in execvp: "not found" unless some directory had the file but refused it.
    let mut result = Errno::NOENT;
    for dir in command.search_path.split(|&byte| byte == b':') {
        // An empty entry means the current directory.
        let dir = if dir.is_empty() { b".".as_slice() } else { dir };
        let len = dir.len() + 1 + command.program.len();
        if len >= PATH_MAX {
            result = Errno::NAMETOOLONG;
            continue;
        }
        candidate[..dir.len()].copy_from_slice(dir);
        candidate[dir.len()] = b'/';
        candidate[dir.len() + 1..len].copy_from_slice(command.program);
        candidate[len] = 0;
        // SAFETY: `candidate` is NUL-terminated; argv and envp as in `exec`.
        match unsafe { sys::execve(candidate.as_ptr(), command.argv.as_ptr(), command.envp.as_ptr()) } {
            Errno::NOENT | Errno::NOTDIR => {}
            Errno::ACCESS => result = Errno::ACCESS,
            other => return other,
        }
    }
    result
}
