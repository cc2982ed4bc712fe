//! The job (argv, environment, working directory, user) sent over the status port instead of
//! the kernel command line (`flint.job=port`): nothing in it shows in the host's `ps` or the
//! guest's /proc/cmdline, and it may be far larger than a command line.
//!
//! The message is a header line `flint-job <length>\n` and then exactly `<length>` bytes
//! (at most [`JOB_MAX`]) of `key=value\n` lines with the command line's own keys and
//! encodings: `flint.argv=` (required), `flint.env=`, `flint.cwd=`, `flint.uid=`,
//! `flint.gid=`, each at most once. The host writes it first on the port; the one-byte
//! control messages ([`crate::control`]) can only follow it, and the init reads exactly the
//! message's bytes, so the two never mix.

use crate::clock::Deadline;
use crate::report::Failure;
use crate::status;
use crate::sys;
use core::fmt;
use rustix::fd::BorrowedFd;
use rustix::io::Errno;

/// The largest job message (its lines, without the header): 2 MiB.
pub const JOB_MAX: usize = 2 << 20;
/// What a job message starts with; the decimal length and a `\n` follow.
pub const HEADER: &str = "flint-job ";
/// The header's longest form: `flint-job ` with up to 20 digits and the `\n`.
const HEADER_MAX: usize = HEADER.len() + 21;

/// One job as the host describes it: what [`message`] encodes.
pub struct Job<'a, A, E> {
    pub argv: &'a [A],
    pub env: &'a [E],
    pub cwd: &'a str,
    pub user: Option<(u32, u32)>,
    /// `flint.timeout` and `flint.grace`, in milliseconds.
    pub timeout_ms: Option<(u64, u64)>,
    /// `flint.seed` and `flint.time`: fresh entropy, and the host's wall-clock time (seconds
    /// and nanoseconds since the epoch), which a VM restored from a snapshot needs.
    pub fresh: Option<([u8; 32], (u64, u32))>,
    /// `flint.ready`: the FIFO the workload writes to once its start-up is done.
    pub ready: Option<&'a str>,
    /// `flint.program`: argv[0] as found along `PATH` in the root (no newline in it).
    pub program: Option<&'a str>,
}

/// Displays the whole job message (header and lines) for `job`: what the host writes to the
/// status port.
pub fn message<'a, A: AsRef<[u8]>, E: AsRef<[u8]>>(job: &'a Job<'a, A, E>) -> Message<'a, A, E> {
    Message(job)
}

/// A job message being encoded; format it (`to_string`) to get the bytes.
pub struct Message<'a, A, E>(&'a Job<'a, A, E>);

impl<A: AsRef<[u8]>, E: AsRef<[u8]>> Message<'_, A, E> {
    fn lines(&self, f: &mut impl fmt::Write) -> fmt::Result {
        use crate::argv::encode;
        let job = self.0;
        write!(f, "flint.argv={}\nflint.env={}\nflint.cwd={}\n", encode(job.argv), encode(job.env), job.cwd)?;
        if let Some((uid, gid)) = job.user {
            write!(f, "flint.uid={uid}\nflint.gid={gid}\n")?;
        }
        if let Some((timeout, grace)) = job.timeout_ms {
            write!(
                f,
                "flint.timeout={}.{:03}\nflint.grace={}.{:03}\n",
                timeout / 1000,
                timeout % 1000,
                grace / 1000,
                grace % 1000
            )?;
        }
        if let Some((seed, (secs, nanos))) = job.fresh {
            f.write_str("flint.seed=")?;
            for byte in seed {
                write!(f, "{byte:02x}")?;
            }
            write!(f, "\nflint.time={secs}.{nanos:09}\n")?;
        }
        if let Some(ready) = job.ready {
            writeln!(f, "flint.ready={ready}")?;
        }
        if let Some(program) = job.program {
            writeln!(f, "flint.program={program}")?;
        }
        Ok(())
    }

    /// The length of the lines (the header's number).
    pub fn body_len(&self) -> usize {
        struct Count(usize);
        impl fmt::Write for Count {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0 += s.len();
                Ok(())
            }
        }
        let mut count = Count(0);
        let _ = self.lines(&mut count);
        count.0
    }
}

impl<A: AsRef<[u8]>, E: AsRef<[u8]>> fmt::Display for Message<'_, A, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{HEADER}{}", self.body_len())?;
        self.lines(f)
    }
}

/// The length a header line gives, or `None` if it is not one (`line` without its `\n`).
pub fn parse_header(line: &[u8]) -> Option<usize> {
    let digits = line.strip_prefix(HEADER.as_bytes())?;
    // One spelling per number: no leading zeros.
    if digits.len() > 1 && digits[0] == b'0' {
        return None;
    }
    crate::params::decimal(digits).and_then(|len| usize::try_from(len).ok())
}

/// The job's lines as (key, value) pairs; `None` for a line without `=` or a last line
/// without its `\n`.
pub fn lines(body: &[u8]) -> impl Iterator<Item = Option<(&[u8], &[u8])>> {
    let complete = body.is_empty() || body.last() == Some(&b'\n');
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    let mut lines = (!body.is_empty()).then(|| body.split(|&byte| byte == b'\n'));
    let mut bad = !complete;
    core::iter::from_fn(move || {
        if core::mem::take(&mut bad) {
            return Some(None);
        }
        let line = lines.as_mut()?.next()?;
        Some(line.iter().position(|&byte| byte == b'=').map(|equals| (&line[..equals], &line[equals + 1..])))
    })
}

/// Reads the job message from the status port `fd` into `buf`: the header, then exactly the
/// length it gives. Waits at most `wait_ms` for each piece to arrive.
pub fn receive<'b>(fd: BorrowedFd<'_>, buf: &'b mut [u8; JOB_MAX], wait_ms: u64) -> Result<&'b [u8], Failure> {
    let mut header = [0u8; HEADER_MAX];
    let mut len = 0;
    loop {
        if len == header.len() {
            return Err(malformed());
        }
        read_some(fd, &mut header[len..=len], wait_ms)?;
        if header[len] == b'\n' {
            break;
        }
        len += 1;
    }
    let body_len = parse_header(&header[..len]).ok_or_else(malformed)?;
    if body_len > JOB_MAX {
        return Err(Failure::new(status::BAD_PARAMETERS)
            .text("the job from the status port is ")
            .number(body_len as u64)
            .text(" bytes, more than the ")
            .number(JOB_MAX as u64)
            .text(" the init takes: shorten the arguments and environment"));
    }
    read_exact(fd, &mut buf[..body_len], wait_ms)?;
    Ok(&buf[..body_len])
}

/// Fills `into` from `fd`, waiting at most `wait_ms` for each piece.
pub fn read_exact(fd: BorrowedFd<'_>, into: &mut [u8], wait_ms: u64) -> Result<(), Failure> {
    let mut filled = 0;
    while filled < into.len() {
        filled += read_some(fd, &mut into[filled..], wait_ms)?;
    }
    Ok(())
}

/// One read of at least a byte, waiting at most `wait_ms` for it.
fn read_some(fd: BorrowedFd<'_>, into: &mut [u8], wait_ms: u64) -> Result<usize, Failure> {
    let deadline = Deadline::after_ms(wait_ms);
    loop {
        let left_ms = deadline.remaining_ns() / 1_000_000;
        if !sys::readable_within(fd, left_ms.min(i32::MAX as u64) as i32) {
            if deadline.remaining_ns() == 0 {
                return Err(Failure::new(status::BAD_PARAMETERS)
                    .text("flint.job=port: no job arrived on the status port within ")
                    .number(wait_ms)
                    .text(" ms: the host must write it first (flint run does)"));
            }
            continue;
        }
        match rustix::io::read(fd, &mut *into) {
            Ok(0) => {
                return Err(Failure::new(status::BAD_PARAMETERS)
                    .text("flint.job=port: the status port closed before the whole job arrived"))
            }
            Ok(read) => return Ok(read),
            Err(Errno::INTR | Errno::AGAIN) => {}
            Err(errno) => {
                return Err(Failure::new(status::BAD_PARAMETERS)
                    .text("flint.job=port: cannot read the job from the status port: ")
                    .errno(errno))
            }
        }
    }
}

fn malformed() -> Failure {
    Failure::new(status::BAD_PARAMETERS)
        .text("flint.job=port: the status port did not start with a `flint-job <length>` line")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_one_spelling() {
        let job = Job {
            argv: &["sh", "-c", "exit 3"],
            env: &["A=b"],
            cwd: "/tmp",
            user: Some((1, 2)),
            timeout_ms: Some((2500, 10_000)),
            fresh: Some(([0xa5; 32], (1_700_000_000, 5))),
            ready: None,
            program: Some("/bin/sh"),
        };
        let text = message(&job).to_string();
        let body = format!(
            "flint.argv=c2g,LWM,ZXhpdCAz,\nflint.env=QT1i,\nflint.cwd=/tmp\nflint.uid=1\nflint.gid=2\n\
             flint.timeout=2.500\nflint.grace=10.000\nflint.seed={}\nflint.time=1700000000.000000005\n\
             flint.program=/bin/sh\n",
            "a5".repeat(32)
        );
        assert_eq!(text, format!("flint-job {}\n{body}", body.len()));
        assert_eq!(parse_header(format!("flint-job {}", body.len()).as_bytes()), Some(body.len()));
        for bad in ["flint-job", "flint-job ", "flint-job 01", "flint-job -1", "flint-job 1 ", "flint-jo 1"] {
            assert_eq!(parse_header(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(parse_header(b"flint-job 0"), Some(0));
    }

    #[test]
    fn lines_split_at_the_first_equals() {
        let pairs: Vec<_> = lines(b"a=b=c\nd=\n").collect();
        assert_eq!(pairs, [Some((&b"a"[..], &b"b=c"[..])), Some((&b"d"[..], &b""[..]))]);
        assert_eq!(lines(b"").count(), 0);
        assert!(lines(b"a=b").any(|line| line.is_none()), "no final newline");
        assert!(lines(b"ab\n").any(|line| line.is_none()), "no equals");
    }
}
