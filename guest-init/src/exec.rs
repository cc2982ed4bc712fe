//! The workload's command: argv and environment decoded into the C arrays `execve` takes
//! (before forking, so a bad list is reported by PID 1), and the child's side of the fork.

use crate::argv::{DecodeError, Decoder};
use crate::job::JOB_MAX;
use crate::params::{Params, CMDLINE_MAX};
use crate::report::{self, Failure};
use crate::status;
use crate::stdio::Stdio;
use crate::sys::{self, SigSet};
use core::ffi::CStr;
use core::ptr;
use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};

/// The search path when `flint.env` gives none, and the whole environment when there is no
/// `flint.env` at all: just enough to find programs.
const DEFAULT_PATH: &[u8] = b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const DEFAULT_ENV: &CStr = c"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const PATH_MAX: usize = 4096;

/// Room for the decoded lists of a command line. Every item costs at least its `,` on the
/// command line and decodes to fewer bytes than it takes there, so whatever fits the command
/// line fits here: the strings with their NULs in `strings`, and argv, envp and their null
/// ends in `pointers`.
pub type Space = Lists<CMDLINE_MAX, { CMDLINE_MAX + 2 }>;

/// The most items (argv and env together) a job from the status port may have.
pub const JOB_ITEMS_MAX: usize = 64 * 1024;

/// Room for the decoded lists of a job from the status port (`job`): its strings fit in as
/// many bytes as the message had, for the same reason as in [`Space`]; the items are capped
/// at [`JOB_ITEMS_MAX`]. Several MiB, so it lives in a static, not on the stack.
pub type JobSpace = Lists<JOB_MAX, { JOB_ITEMS_MAX + 2 }>;

/// Room for decoded lists: `STRINGS` bytes of strings, `POINTERS` entries of argv and envp.
pub struct Lists<const STRINGS: usize, const POINTERS: usize> {
    strings: [u8; STRINGS],
    pointers: [*const u8; POINTERS],
}

impl<const STRINGS: usize, const POINTERS: usize> Lists<STRINGS, POINTERS> {
    pub const fn new() -> Self {
        Lists { strings: [0; STRINGS], pointers: [ptr::null(); POINTERS] }
    }
}

impl<const STRINGS: usize, const POINTERS: usize> Default for Lists<STRINGS, POINTERS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const STRINGS: usize, const POINTERS: usize> Lists<STRINGS, POINTERS> {
    /// Decodes `flint.argv` and `flint.env` into this space.
    pub fn command<'s>(&'s mut self, params: &Params<'s>) -> Result<Command<'s>, Failure> {
        let Lists { strings, pointers } = self;
        let mut used = 0;
        let no_nul = |item: &[u8]| !item.contains(&0);
        let argc = decode(params.argv, "flint.argv", strings, &mut used, no_nul)?;
        if argc == 0 {
            return Err(bad("flint.argv", "is an empty list: give at least the program"));
        }
        if strings[0] == 0 {
            return Err(bad("flint.argv", "starts with an empty program name: fix its first item"));
        }
        let variable =
            |item: &[u8]| no_nul(item) && item.iter().position(|&byte| byte == b'=').is_some_and(|equals| equals > 0);
        let envc = match params.env {
            Some(env) => decode(env, "flint.env", strings, &mut used, variable)?,
            None => 0,
        };

        // argv and envp, each with its null end (envp holds the default environment if none).
        if argc + envc.max(1) + 2 > pointers.len() {
            return Err(bad("flint.argv", "and flint.env have too many items together: pass fewer")
                .text(" (at most ")
                .number(pointers.len() as u64 - 3)
                .text(")"));
        }

        // Decoding is done; from here on the strings are only pointed at. Every item ends
        // with a NUL and holds none, so splitting at NULs gives the items back in order.
        let strings: &'s [u8] = &strings[..used];
        let items = || strings.split(|&byte| byte == 0);
        let env_items = || items().skip(argc).take(envc);
        let (argv, envp) = pointers.split_at_mut(argc + 1);
        for (pointer, item) in argv[..argc].iter_mut().zip(items()) {
            *pointer = item.as_ptr();
        }
        argv[argc] = ptr::null();
        for (pointer, item) in envp.iter_mut().zip(env_items()) {
            *pointer = item.as_ptr();
        }
        let envp_len = match params.env {
            Some(_) => envc,
            None => {
                envp[0] = DEFAULT_ENV.as_ptr().cast();
                1
            }
        };
        envp[envp_len] = ptr::null();
        let search_path = env_items().find_map(|variable| variable.strip_prefix(b"PATH="));
        Ok(Command {
            program: items().next().unwrap_or_default(),
            argv,
            envp: &envp[..=envp_len],
            search_path: search_path.unwrap_or(DEFAULT_PATH),
            found: params.program,
            cwd: params.cwd,
            uid: params.uid,
            gid: params.gid,
        })
    }
}

/// Decodes one list into `strings` from `*used`, each item followed by a NUL; returns how
/// many items it had.
fn decode(
    encoded: &[u8],
    key: &'static str,
    strings: &mut [u8],
    used: &mut usize,
    valid: impl Fn(&[u8]) -> bool,
) -> Result<usize, Failure> {
    let mut decoder = Decoder::new(encoded).map_err(|error| decode_failure(key, error))?;
    let mut items = 0;
    while let Some(len) = decoder.next_into(&mut strings[*used..]) {
        let len = len.map_err(|error| decode_failure(key, error))?;
        if !valid(&strings[*used..*used + len]) {
            return Err(bad(
                key,
                "has an item with a NUL byte (or, in flint.env, one that is not NAME=value): fix the list",
            ));
        }
        // Room for the NUL.
        if *used + len == strings.len() {
            return Err(decode_failure(key, DecodeError::TooLong));
        }
        strings[*used + len] = 0;
        *used += len + 1;
        items += 1;
    }
    Ok(items)
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
    /// Where the host found `program` along the search path: executed without a search.
    found: Option<&'s [u8]>,
    cwd: &'s [u8],
    uid: u32,
    gid: u32,
}

/// Runs in the forked child: becomes the workload or exits 125-127 after saying why.
pub fn child(command: &Command<'_>, stdio: &Stdio) -> ! {
    let console = console();
    let failure = match detach(stdio).and_then(|()| enter(command)) {
        Ok(()) => exec(command),
        Err(failure) => failure,
    };
    fail(console, failure)
}

/// The console, kept reachable for error lines after fds 0-2 become the workload's.
pub fn console() -> Result<OwnedFd, Errno> {
    // SAFETY: the init never closes fd 2; if the kernel left it closed, dup fails (EBADF).
    rustix::io::fcntl_dupfd_cloexec(unsafe { BorrowedFd::borrow_raw(2) }, 3)
}

/// Says why the child could not become the workload, on `console`, and exits with its status.
pub fn fail(console: Result<OwnedFd, Errno>, failure: Failure) -> ! {
    if let Ok(console) = console {
        let _ = rustix::stdio::dup2_stderr(console);
    }
    report::print(&failure);
    sys::exit(failure.status)
}

/// The child's set-up that does not depend on the job: signals, session, fds 0-2.
pub fn detach(stdio: &Stdio) -> Result<(), Failure> {
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
        .map_err(|errno| setup("cannot set up the workload's stdio: ", errno))
}

/// The job's own set-up: its directory and user.
pub fn enter(command: &Command<'_>) -> Result<(), Failure> {
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
    credentials
        .map_err(|errno| setup("cannot switch to flint.uid/flint.gid: ", errno).text(": use ids the kernel accepts"))
}

/// A failure of the child's set-up: what failed, and the kernel's reason.
fn setup(what: &str, errno: Errno) -> Failure {
    Failure::new(status::SETUP_FAILED).text(what).errno(errno)
}

/// Executes the program: at the path the host found it (`flint.program`), or searching
/// `PATH` like `execvp` when its name has no `/`; returns only with the reason it could not.
pub fn exec(command: &Command<'_>) -> Failure {
    let errno = if command.program.contains(&b'/') {
        // SAFETY: argv[0] is `program`, NUL-terminated in `strings`; the arrays are
        // null-terminated lists of NUL-terminated strings that live as long as `command`.
        unsafe { sys::execve(command.argv[0], command.argv.as_ptr(), command.envp.as_ptr()) }
    } else if let Some(found) = command.found {
        execve_at(&[found], command)
    } else {
        search(command)
    };
    let status = match errno {
        Errno::NOENT | Errno::NOTDIR => status::NOT_FOUND,
        _ => status::NOT_EXECUTABLE,
    };
    Failure::new(status).text("cannot execute ").bytes(command.program).text(": ").errno(errno).text(
        if status == status::NOT_FOUND {
            ": check flint.argv's program and the image's PATH"
        } else {
            ": make it an executable for this machine (and its interpreter present)"
        },
    )
}

fn search(command: &Command<'_>) -> Errno {
    // As in execvp: "not found" unless some directory had the file but refused it.
    let mut result = Errno::NOENT;
    for dir in command.search_path.split(|&byte| byte == b':') {
        // An empty entry means the current directory.
        let dir = if dir.is_empty() { b".".as_slice() } else { dir };
        match execve_at(&[dir, b"/", command.program], command) {
            Errno::NOENT | Errno::NOTDIR => {}
            Errno::NAMETOOLONG => result = Errno::NAMETOOLONG,
            Errno::ACCESS => result = Errno::ACCESS,
            other => return other,
        }
    }
    result
}

/// Executes the program at the path made of `parts`, with `command`'s argv and envp;
/// returns why it could not.
fn execve_at(parts: &[&[u8]], command: &Command<'_>) -> Errno {
    let mut path = [0u8; PATH_MAX];
    let mut len = 0;
    for part in parts {
        let Some(room) = path.get_mut(len..len + part.len()).filter(|_| len + part.len() < PATH_MAX) else {
            return Errno::NAMETOOLONG;
        };
        room.copy_from_slice(part);
        len += part.len();
    }
    path[len] = 0;
    // SAFETY: `path` is NUL-terminated; argv and envp as in `exec`.
    unsafe { sys::execve(path.as_ptr(), command.argv.as_ptr(), command.envp.as_ptr()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::argv::encode;
    use proptest::prelude::*;

    fn params<'a>(argv: &'a str, env: Option<&'a str>) -> Params<'a> {
        let mut params = Params::parse(b"flint.argv=,").unwrap();
        params.argv = argv.as_bytes();
        params.env = env.map(str::as_bytes);
        params
    }

    fn strings(pointers: &[*const u8]) -> Vec<Vec<u8>> {
        let (last, items) = pointers.split_last().unwrap();
        assert!(last.is_null(), "arrays end with a null pointer");
        // SAFETY: `command` fills the arrays with pointers to NUL-terminated strings.
        items.iter().map(|&item| unsafe { CStr::from_ptr(item.cast()) }.to_bytes().to_vec()).collect()
    }

    #[test]
    fn lists_become_execve_arrays() {
        let argv = encode(&["sh", "-c", "echo \"$0\"", "", "a b"]).to_string();
        let env = encode(&["A=1", "PATH=/opt/bin:/bin", "EMPTY="]).to_string();
        let params = params(&argv, Some(&env));
        let mut space = Space::default();
        let command = space.command(&params).unwrap();
        assert_eq!(strings(command.argv), [&b"sh"[..], b"-c", b"echo \"$0\"", b"", b"a b"]);
        assert_eq!(strings(command.envp), [&b"A=1"[..], b"PATH=/opt/bin:/bin", b"EMPTY="]);
        assert_eq!((command.program, command.search_path), (&b"sh"[..], &b"/opt/bin:/bin"[..]));
    }

    #[test]
    fn environment_defaults() {
        let argv = encode(&["/bin/true"]).to_string();
        let mut space = Space::default();
        let command = space.command(&params(&argv, None)).unwrap();
        assert_eq!(strings(command.envp), [DEFAULT_ENV.to_bytes()]);
        assert_eq!(command.search_path, DEFAULT_PATH);
        let mut space = Space::default();
        let command = space.command(&params(&argv, Some(""))).unwrap();
        assert_eq!(strings(command.envp), Vec::<Vec<u8>>::new());
        assert_eq!(command.search_path, DEFAULT_PATH);
    }

    #[test]
    fn unusable_lists_are_bad_parameters() {
        let cases = [
            (String::new(), None),
            (encode(&[""]).to_string(), None),
            (encode(&["a\0b"]).to_string(), None),
            ("c2g".to_string(), None),
            (encode(&["sh"]).to_string(), Some(encode(&["NOEQUALS"]).to_string())),
            (encode(&["sh"]).to_string(), Some(encode(&["=value"]).to_string())),
            (encode(&["sh"]).to_string(), Some(encode(&["A=\0"]).to_string())),
        ];
        for (argv, env) in &cases {
            let mut space = Space::default();
            let failure = space.command(&params(argv, env.as_deref())).err().unwrap();
            assert_eq!(failure.status, status::BAD_PARAMETERS, "{argv} {env:?}");
        }
    }

    #[test]
    fn the_largest_lists_fit() {
        // As many one-byte items as a command line could hold.
        let argv = "YQ,".repeat(CMDLINE_MAX / 3);
        let mut space = Space::default();
        assert_eq!(space.command(&params(&argv, None)).unwrap().argv.len(), CMDLINE_MAX / 3 + 1);
        let empties = format!("YQ,{}", ",".repeat(CMDLINE_MAX - 3));
        let mut space = Space::default();
        assert!(space.command(&params(&empties, Some(""))).is_ok());
        let too_many = format!("YQ,{}", ",".repeat(CMDLINE_MAX));
        let mut space = Space::default();
        assert!(space.command(&params(&too_many, None)).is_err());
    }

    /// Items a command line could carry: any bytes but NUL in argv, `NAME=value` in env.
    fn lists() -> impl Strategy<Value = (Vec<Vec<u8>>, Option<Vec<Vec<u8>>>)> {
        let argv = prop::collection::vec(prop::collection::vec(1..=255u8, 0..48), 1..24)
            .prop_filter("a program name", |argv| !argv[0].is_empty());
        let variable = ("[A-Za-z_][A-Za-z0-9_]{0,7}", prop::collection::vec(1..=255u8, 0..32))
            .prop_map(|(name, value)| [name.as_bytes(), b"=", &value].concat());
        (argv, prop::option::of(prop::collection::vec(variable, 0..16)))
    }

    fn mutate(text: &mut Vec<u8>, at: prop::sample::Index, byte: u8, how: u8) {
        if text.is_empty() {
            text.push(byte);
            return;
        }
        let index = at.index(text.len());
        match how % 4 {
            0 => text[index] = byte,
            1 => {
                text.remove(index);
            }
            2 => text.insert(index, byte),
            _ => text.truncate(index),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Encoded by the host, decoded by the init: the execve arrays hold the same items,
        /// and PATH comes from the environment.
        #[test]
        fn lists_round_trip_into_execve_arrays((argv, env) in lists()) {
            let argv_text = encode(&argv).to_string();
            let env_text = env.as_ref().map(|env| encode(env).to_string());
            let params = params(&argv_text, env_text.as_deref());
            let mut space = Space::default();
            let command = space.command(&params).unwrap();
            prop_assert_eq!(strings(command.argv), argv.clone());
            prop_assert_eq!(command.program, argv[0].as_slice());
            match &env {
                Some(env) => {
                    prop_assert_eq!(strings(command.envp), env.clone());
                    let path = env.iter().find_map(|variable| variable.strip_prefix(b"PATH="));
                    prop_assert_eq!(command.search_path, path.unwrap_or(DEFAULT_PATH));
                }
                None => prop_assert_eq!(strings(command.envp), [DEFAULT_ENV.to_bytes()]),
            }
        }

        /// Mutated encodings and garbage decode to the same arrays a correct list would, or
        /// fail with status 120, whatever they hold.
        #[test]
        fn mutated_lists_decode_or_fail_cleanly(
            (argv, env) in lists(),
            mutations in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(b"AQYZa_-,=+/ \0\xff".to_vec()), any::<u8>(), any::<bool>()), 1..6),
            garbage in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            let mut argv_text = encode(&argv).to_string().into_bytes();
            let mut env_text = encode(&env.unwrap_or_default()).to_string().into_bytes();
            for (at, byte, how, in_env) in mutations {
                mutate(if in_env { &mut env_text } else { &mut argv_text }, at, byte, how);
            }
            for (argv_text, env_text) in [(&argv_text, &env_text), (&garbage, &env_text), (&argv_text, &garbage)] {
                let mut params = params("", None);
                params.argv = argv_text;
                params.env = Some(env_text);
                let mut space = Space::default();
                match space.command(&params) {
                    Ok(command) => {
                        let argv = strings(command.argv);
                        prop_assert!(!argv[0].is_empty() && argv.iter().all(|item| !item.contains(&0)));
                        // Strict decoding: the items encode back to the very text.
                        prop_assert_eq!(encode(&argv).to_string().into_bytes(), argv_text.to_vec());
                        let env = strings(command.envp);
                        prop_assert_eq!(encode(&env).to_string().into_bytes(), env_text.to_vec());
                        prop_assert!(env.iter().all(|variable| variable.iter().position(|&b| b == b'=').is_some_and(|i| i > 0)));
                    }
                    Err(failure) => prop_assert_eq!(failure.status, status::BAD_PARAMETERS),
                }
            }
        }

        /// Whatever fits on the command line fits the decoding space: lists of any shape
        /// whose encodings together take at most CMDLINE_MAX bytes decode.
        #[test]
        fn anything_the_command_line_holds_fits(lengths in prop::collection::vec(0..64usize, 1..2000), split in any::<prop::sample::Index>()) {
            let mut items: Vec<Vec<u8>> = Vec::new();
            let mut encoded = 0;
            for len in lengths {
                // Unpadded base64 and the comma.
                let cost = (len * 4).div_ceil(3) + 1;
                if encoded + cost > CMDLINE_MAX - "flint.argv= flint.env=".len() {
                    break;
                }
                encoded += cost;
                items.push(vec![b'a'; len]);
            }
            if items[0].is_empty() {
                items[0].push(b'a');
            }
            let split = split.index(items.len()) + 1;
            let env: Vec<Vec<u8>> = items[split..].iter().map(|item| [b"A=".as_slice(), item].concat()).collect();
            let argv_text = encode(&items[..split]).to_string();
            let env_text = encode(&env).to_string();
            let mut space = Space::default();
            let command = space.command(&params(&argv_text, Some(&env_text)));
            prop_assert!(command.is_ok(), "{} + {} bytes", argv_text.len(), env_text.len());
            let command = command.unwrap();
            prop_assert_eq!(command.argv.len(), split + 1);
            prop_assert_eq!(command.envp.len(), env.len() + 1);
        }
    }
}
