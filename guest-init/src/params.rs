//! The `flint.*` parameters, read from the kernel command line (see README.md for the list).
//!
//! The init parses /proc/cmdline itself instead of using its own argv and environment: the
//! kernel keeps dotted `module.param` words for itself (they never reach init), splits the
//! rest unpredictably between argv and environment, and drops quoting. Tokenizing follows
//! the kernel's `next_arg()` so a value the kernel sees as one word is one word here too.
//!
//! Parsing is strict: an unknown `flint.` key, a repeated key, a missing or unexpected value
//! and contradicting flags are all errors, so typos fail loudly instead of being ignored.
//! Parameters outside the `flint.` namespace belong to the kernel and are skipped.

use crate::report::Failure;
use crate::status;

/// Room for the command line (x86 allows 2048 bytes); decoded lists fit in the same size.
pub const CMDLINE_MAX: usize = 4096;
/// Longest path accepted, as the kernel's PATH_MAX counts it (with its NUL).
const PATH_MAX: usize = 4096;
/// Longest module name the kernel accepts (MODULE_NAME_LEN without the NUL).
const MODULE_NAME_MAX: usize = 55;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params<'a> {
    /// Where the root filesystem comes from; `None` runs the workload from the initramfs.
    pub root: Option<Root<'a>>,
    pub modules: Modules<'a>,
    /// The workload's argv, still encoded (see `argv`): decoding needs space the caller owns.
    pub argv: &'a [u8],
    /// The workload's environment, encoded like argv; `None` means the default environment.
    pub env: Option<&'a [u8]>,
    pub cwd: &'a [u8],
    pub uid: u32,
    pub gid: u32,
    /// `flint.job=port`: argv, env, cwd, uid and gid come over the status port (see `job`)
    /// instead of this command line; they stay empty and default until `apply_job`.
    pub job_on_port: bool,
    /// Kill the workload after this long; `None` lets it run forever.
    pub timeout_ms: Option<u64>,
    /// After `flint.timeout`, how long the workload gets between SIGTERM and SIGKILL; 0 (the
    /// default) kills it at once.
    pub grace_ms: u64,
    pub stdin: &'a [u8],
    pub stdout: &'a [u8],
    pub stderr: &'a [u8],
    /// Device that gets the final `flint-status <n>` line.
    pub status: Option<&'a [u8]>,
    /// How long to wait for the root, stdio and status devices to appear: drivers (modules
    /// above all) create device nodes asynchronously.
    pub device_wait_ms: u64,
    /// The firmware's timeline stamps, which flint's firmware appends as `flint.fwtsc=` for a
    /// PVH boot (a bzImage boot gets them through setup_data instead); see `timeline`.
    pub firmware_tsc: Option<&'a [u8]>,
    /// Entropy for the guest's RNG, from the job (`flint.seed`).
    pub seed: Option<[u8; 32]>,
    /// The host's wall clock from the job (`flint.time`): seconds and nanoseconds.
    pub time: Option<(u64, u32)>,
    /// A FIFO to make for the workload, which writes to it when its own start-up is done
    /// (`flint.ready`, from the job; see `ready`).
    pub ready: Option<&'a [u8]>,
    /// The program's path as the host found it in the root along `PATH` (`flint.program`,
    /// from the job): executed without searching `PATH` again.
    pub program: Option<&'a [u8]>,
    /// The network card's address, route and name server (`flint.ip`); `None`: `lo` only.
    pub ip: Option<crate::net::Ipv4>,
    /// Host directories to mount (`flint.volumes=`), still encoded as argv is: see `volumes`.
    pub volumes: &'a [u8],
    /// `flint.warmup`: this boot makes a warm snapshot; run the root's shell once before it
    /// (see `warmup`).
    pub warmup: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root<'a> {
    pub device: RootDevice<'a>,
    pub fstype: &'a [u8],
    pub mode: RootMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootDevice<'a> {
    /// A device node, e.g. `/dev/vda`.
    Path(&'a [u8]),
    /// `gpt-auto`: the first partition of type "Root Partition (x86-64)" on the first disk
    /// that has one (docs/disk-image.md).
    GptAuto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootMode {
    ReadOnly,
    ReadWrite,
    /// Read-only device under a tmpfs overlay: writable, and the disk stays untouched.
    Overlay,
}

/// The validated `flint.modules=` list; iterating yields the names in load order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modules<'a>(&'a [u8]);

impl<'a> Modules<'a> {
    pub fn iter(self) -> impl Iterator<Item = &'a [u8]> {
        self.0.split(|&byte| byte == b',').filter(|name| !name.is_empty())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamError<'a> {
    /// A `flint.` key this init does not know (probably a typo).
    Unknown(&'a [u8]),
    Duplicate(&'static str),
    MissingValue(&'static str),
    /// A flag (`flint.ro`, ...) was given a value.
    UnexpectedValue(&'static str),
    /// The value is malformed; the second field says what was expected.
    Invalid(&'static str, &'static str),
    Conflict(&'static str, &'static str),
    /// A root option was given without `flint.root`.
    NeedsRoot(&'static str),
    MissingArgv,
}

impl ParamError<'_> {
    pub fn failure(self) -> Failure {
        let failure = Failure::new(status::BAD_PARAMETERS);
        match self {
            ParamError::Unknown(key) => failure
                .text("unknown parameter ")
                .bytes(key)
                .text(": check the spelling against the flint.* list in guest-init/README.md"),
            ParamError::Duplicate(key) => failure.text(key).text(" given twice: keep only one"),
            ParamError::MissingValue(key) => failure.text(key).text(" needs a value: write ").text(key).text("=..."),
            ParamError::UnexpectedValue(key) => failure.text(key).text(" takes no value: write just ").text(key),
            ParamError::Invalid(key, expected) => {
                failure.text("bad value for ").text(key).text(": expected ").text(expected)
            }
            ParamError::Conflict(a, b) => failure.text(a).text(" conflicts with ").text(b).text(": drop one"),
            ParamError::NeedsRoot(key) => {
                failure.text(key).text(" without flint.root: add flint.root=<device> or drop it")
            }
            ParamError::MissingArgv => {
                failure.text("no workload given: add flint.argv=<list> (see guest-init/README.md)")
            }
        }
    }
}

/// Reads /proc/cmdline (the only I/O in this module) into `buf`.
pub fn read_cmdline(buf: &mut [u8; CMDLINE_MAX]) -> Result<&[u8], Failure> {
    let failure = |problem: &str, errno| {
        Failure::new(status::BAD_PARAMETERS).text(problem).errno(errno).text(": /proc must be mounted and readable")
    };
    let fd = rustix::fs::open(
        "/proc/cmdline",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|errno| failure("cannot open /proc/cmdline: ", errno))?;
    let mut len = 0;
    loop {
        match rustix::io::read(&fd, &mut buf[len..]) {
            Ok(0) => return Ok(&buf[..len]),
            Ok(read) => len += read,
            Err(rustix::io::Errno::INTR) => {}
            Err(errno) => return Err(failure("cannot read /proc/cmdline: ", errno)),
        }
        if len == buf.len() {
            return Err(Failure::new(status::BAD_PARAMETERS)
                .text("kernel command line longer than ")
                .number(CMDLINE_MAX as u64)
                .text(" bytes: shorten it"));
        }
    }
}

/// Every key, in the order of the `raw` slots in `Params::parse`.
const KEYS: [&str; 23] = [
    "flint.root",
    "flint.rootfstype",
    "flint.rootwait",
    "flint.ro",
    "flint.rw",
    "flint.overlay",
    "flint.modules",
    "flint.argv",
    "flint.env",
    "flint.cwd",
    "flint.uid",
    "flint.gid",
    "flint.timeout",
    "flint.stdin",
    "flint.stdout",
    "flint.stderr",
    "flint.status",
    "flint.fwtsc",
    "flint.grace",
    "flint.job",
    "flint.ip",
    "flint.volumes",
    "flint.warmup",
];
/// Keys that are flags: present or not, never with a value.
const FLAGS: [&str; 4] = ["flint.ro", "flint.rw", "flint.overlay", "flint.warmup"];

const DEFAULT_FSTYPE: &[u8] = b"ext4";
const DEFAULT_DEVICE_WAIT_MS: u64 = 5000;
const CONSOLE: &[u8] = b"/dev/console";

impl<'a> Params<'a> {
    pub fn parse(cmdline: &'a [u8]) -> Result<Self, ParamError<'a>> {
        // raw[i] is None while KEYS[i] is absent, Some(value) once seen.
        let mut raw: [Option<Option<&'a [u8]>>; KEYS.len()] = [None; KEYS.len()];
        for (key, value) in Tokens(cmdline) {
            if !key.starts_with(b"flint.") {
                continue;
            }
            let index = KEYS.iter().position(|known| known.as_bytes() == key).ok_or(ParamError::Unknown(key))?;
            let name = KEYS[index];
            if raw[index].is_some() {
                return Err(ParamError::Duplicate(name));
            }
            match (FLAGS.contains(&name), value) {
                (true, Some(_)) => return Err(ParamError::UnexpectedValue(name)),
                (false, None) => return Err(ParamError::MissingValue(name)),
                _ => raw[index] = Some(value),
            }
        }
        let [root, rootfstype, rootwait, ro, rw, overlay, modules, argv, env, cwd, uid, gid, timeout, stdin, stdout, stderr, status, firmware_tsc, grace, job, ip, volumes, warmup] =
            raw.map(|slot| slot.map(Option::unwrap_or_default));
        let (ro, rw, overlay) = (ro.is_some(), rw.is_some(), overlay.is_some());
        if ro && rw {
            return Err(ParamError::Conflict("flint.ro", "flint.rw"));
        }
        if overlay && rw {
            return Err(ParamError::Conflict("flint.overlay", "flint.rw"));
        }
        let root = match root {
            Some(device) => Some(Root {
                device: root_device(device)?,
                fstype: rootfstype.map_or(Ok(DEFAULT_FSTYPE), fstype)?,
                mode: if overlay {
                    RootMode::Overlay
                } else if rw {
                    RootMode::ReadWrite
                } else {
                    RootMode::ReadOnly
                },
            }),
            None => {
                let given = [
                    (rootfstype.is_some(), "flint.rootfstype"),
                    (ro, "flint.ro"),
                    (rw, "flint.rw"),
                    (overlay, "flint.overlay"),
                ];
                if let Some(&(_, key)) = given.iter().find(|(given, _)| *given) {
                    return Err(ParamError::NeedsRoot(key));
                }
                None
            }
        };
        let job_on_port = match job {
            Some(b"port") => {
                let given = [
                    (argv, "flint.argv"),
                    (env, "flint.env"),
                    (cwd, "flint.cwd"),
                    (uid, "flint.uid"),
                    (gid, "flint.gid"),
                ];
                if let Some(&(_, key)) = given.iter().find(|(value, _)| value.is_some()) {
                    return Err(ParamError::Conflict("flint.job", key));
                }
                if status.is_none() {
                    return Err(ParamError::Invalid("flint.job", "port, with flint.status= naming that port"));
                }
                true
            }
            Some(_) => return Err(ParamError::Invalid("flint.job", "port")),
            None => false,
        };
        let timeout_ms = match timeout {
            Some(value) => Some(duration_ms("flint.timeout", value)?).filter(|&ms| ms > 0),
            None => None,
        };
        let device = |key, value: Option<&'a [u8]>| value.map_or(Ok(CONSOLE), |value| path(key, value));
        Ok(Params {
            root,
            modules: modules.map_or(Ok(Modules(b"")), module_list)?,
            argv: if job_on_port { b"" } else { argv.ok_or(ParamError::MissingArgv)? },
            env,
            cwd: cwd.map_or(Ok(b"/".as_slice()), |value| path("flint.cwd", value))?,
            uid: uid.map_or(Ok(0), |value| id("flint.uid", value))?,
            gid: gid.map_or(Ok(0), |value| id("flint.gid", value))?,
            job_on_port,
            timeout_ms,
            grace_ms: grace.map_or(Ok(0), |value| duration_ms("flint.grace", value))?,
            stdin: device("flint.stdin", stdin)?,
            stdout: device("flint.stdout", stdout)?,
            stderr: device("flint.stderr", stderr)?,
            status: status.map(|value| path("flint.status", value)).transpose()?,
            device_wait_ms: rootwait
                .map_or(Ok(DEFAULT_DEVICE_WAIT_MS), |value| duration_ms("flint.rootwait", value))?,
            firmware_tsc,
            seed: None,
            time: None,
            ready: None,
            program: None,
            ip: ip
                .map(|value| crate::net::parse(value).ok_or(ParamError::Invalid("flint.ip", crate::net::IP_FORMAT)))
                .transpose()?,
            volumes: volumes.map_or(Ok(b"".as_slice()), volume_list)?,
            warmup: warmup.is_some(),
        })
    }
}

impl<'a> Params<'a> {
    /// Takes argv, env, cwd, uid and gid from a job message's lines (see `job`), checked
    /// like the command line's parameters of the same names.
    pub fn apply_job(&mut self, body: &'a [u8]) -> Result<(), ParamError<'a>> {
        const JOB_KEYS: [&str; 11] = [
            "flint.argv",
            "flint.env",
            "flint.cwd",
            "flint.uid",
            "flint.gid",
            "flint.timeout",
            "flint.grace",
            "flint.seed",
            "flint.time",
            "flint.ready",
            "flint.program",
        ];
        let mut raw: [Option<&'a [u8]>; JOB_KEYS.len()] = [None; JOB_KEYS.len()];
        for line in crate::job::lines(body) {
            let (key, value) =
                line.ok_or(ParamError::Invalid("flint.job", "key=value lines, each ending with a newline"))?;
            let index = JOB_KEYS.iter().position(|known| known.as_bytes() == key).ok_or(ParamError::Unknown(key))?;
            if raw[index].replace(value).is_some() {
                return Err(ParamError::Duplicate(JOB_KEYS[index]));
            }
        }
        let [argv, env, cwd, uid, gid, timeout, grace, seed, time, ready, program] = raw;
        self.argv = argv.ok_or(ParamError::MissingArgv)?;
        self.env = env;
        self.cwd = cwd.map_or(Ok(b"/".as_slice()), |value| path("flint.cwd", value))?;
        self.uid = uid.map_or(Ok(0), |value| id("flint.uid", value))?;
        self.gid = gid.map_or(Ok(0), |value| id("flint.gid", value))?;
        // The job's limits replace the command line's: a snapshot's command line is shared
        // by every job restored from it.
        if let Some(value) = timeout {
            self.timeout_ms = Some(duration_ms("flint.timeout", value)?).filter(|&ms| ms > 0);
        }
        if let Some(value) = grace {
            self.grace_ms = duration_ms("flint.grace", value)?;
        }
        self.seed = seed.map(seed_bytes).transpose()?;
        self.time = time.map(wall_time).transpose()?;
        self.ready = ready.map(|value| path("flint.ready", value)).transpose()?;
        self.program = program.map(|value| path("flint.program", value)).transpose()?;
        Ok(())
    }
}

/// `flint.seed`: 32 bytes as 64 hex digits.
fn seed_bytes(value: &[u8]) -> Result<[u8; 32], ParamError<'static>> {
    let invalid = ParamError::Invalid("flint.seed", "64 hex digits");
    let nibble = |byte: u8| (byte as char).to_digit(16).map(|digit| digit as u8);
    if value.len() != 64 {
        return Err(invalid);
    }
    let mut seed = [0; 32];
    for (out, pair) in seed.iter_mut().zip(value.chunks(2)) {
        *out = nibble(pair[0]).zip(nibble(pair[1])).map(|(high, low)| high << 4 | low).ok_or(invalid)?;
    }
    Ok(seed)
}

/// `flint.time`: seconds since the epoch, a dot and exactly 9 digits of nanoseconds.
fn wall_time(value: &[u8]) -> Result<(u64, u32), ParamError<'static>> {
    let invalid = ParamError::Invalid("flint.time", "<seconds>.<9 digits>");
    let dot = value.iter().position(|&byte| byte == b'.').ok_or(invalid)?;
    let (secs, nanos) = (&value[..dot], &value[dot + 1..]);
    if nanos.len() != 9 {
        return Err(invalid);
    }
    let secs = decimal(secs).filter(|&secs| secs <= i64::MAX as u64).ok_or(invalid)?;
    Ok((secs, decimal(nanos).ok_or(invalid)? as u32))
}

/// `flint.status=` alone, for reporting a parameter error on the status device too: found
/// even when other parameters are wrong, as long as this one is a usable path.
pub fn status_device(cmdline: &[u8]) -> Option<&[u8]> {
    let (_, value) = Tokens(cmdline).find(|(key, _)| *key == b"flint.status")?;
    path("flint.status", value?).ok()
}

/// The parameters the command line gives module `module` (words `<module>.<param>[=value]`,
/// `-` and `_` alike in the name), as `finit_module` takes them: `param=value` words joined
/// by spaces, quoted where the value has a space, NUL-terminated, in `out`. What modprobe
/// does for loadable modules; the kernel applies such words itself only to built-in ones.
/// Words that do not fit in `out` are left out.
pub fn module_params<'o>(cmdline: &[u8], module: &[u8], out: &'o mut [u8; CMDLINE_MAX]) -> &'o core::ffi::CStr {
    let same = |a: u8, b: u8| a == b || (matches!(a, b'-' | b'_') && matches!(b, b'-' | b'_'));
    let mut len = 0;
    for (key, value) in Tokens(cmdline) {
        let Some((name, param)) = key.iter().position(|&byte| byte == b'.').map(|dot| key.split_at(dot)) else {
            continue;
        };
        let param = &param[1..];
        if param.is_empty() || name.len() != module.len() || !name.iter().zip(module).all(|(&a, &b)| same(a, b)) {
            continue;
        }
        let quote = value.is_some_and(|value| value.iter().any(|&byte| is_space(byte)));
        let word_len = param.len() + value.map_or(0, |value| 1 + value.len() + if quote { 2 } else { 0 });
        // A separating space before, the NUL after.
        if len + usize::from(len > 0) + word_len + 1 > out.len() {
            continue;
        }
        let separator: &[u8] = if len > 0 { b" " } else { b"" };
        let mut push = |bytes: &[u8]| {
            out[len..len + bytes.len()].copy_from_slice(bytes);
            len += bytes.len();
        };
        push(separator);
        push(param);
        if let Some(value) = value {
            push(if quote { b"=\"" } else { b"=" });
            push(value);
            if quote {
                push(b"\"");
            }
        }
    }
    out[len] = 0;
    core::ffi::CStr::from_bytes_until_nul(&out[..=len]).expect("NUL-terminated")
}

/// The command line's words as (key, value) pairs, split and unquoted like the kernel's
/// `next_arg()`: a word runs to the next unquoted space; a `"` opening the word or the value
/// and the `"` closing the word are dropped. Stops at `--`, after which words are init's argv.
struct Tokens<'a>(&'a [u8]);

impl<'a> Iterator for Tokens<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        let start = self.0.iter().position(|&byte| !is_space(byte))?;
        let mut word = &self.0[start..];
        let quoted = word.first() == Some(&b'"');
        if quoted {
            word = &word[1..];
        }
        let mut in_quote = quoted;
        let mut equals = None;
        let mut end = word.len();
        for (i, &byte) in word.iter().enumerate() {
            if is_space(byte) && !in_quote {
                end = i;
                break;
            }
            // Like the kernel, an '=' in the first position does not split.
            if equals.is_none() && byte == b'=' && i > 0 {
                equals = Some(i);
            }
            if byte == b'"' {
                in_quote = !in_quote;
            }
        }
        self.0 = &word[end..];
        let mut word = &word[..end];
        let value_quoted = equals.is_some_and(|i| word.get(i + 1) == Some(&b'"'));
        if quoted || value_quoted {
            word = word.strip_suffix(b"\"").unwrap_or(word);
        }
        let (key, value) = match equals {
            Some(i) => {
                let value = word.get(i + 1..).unwrap_or_default();
                (&word[..i], Some(if value_quoted { value.get(1..).unwrap_or_default() } else { value }))
            }
            None => (word, None),
        };
        if key == b"--" && value.is_none() {
            self.0 = b"";
            return None;
        }
        Some((key, value))
    }
}

/// The kernel's `isspace()` on ASCII. (It also counts 0xa0, Latin-1's no-break space; that
/// byte is common inside UTF-8, so paths with it stay whole here.)
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn path<'a>(key: &'static str, value: &'a [u8]) -> Result<&'a [u8], ParamError<'static>> {
    if value.first() == Some(&b'/') && value.len() < PATH_MAX && !value.contains(&0) {
        Ok(value)
    } else {
        Err(ParamError::Invalid(key, "an absolute path shorter than 4096 bytes"))
    }
}

fn root_device(value: &[u8]) -> Result<RootDevice<'_>, ParamError<'static>> {
    if value == b"gpt-auto" {
        return Ok(RootDevice::GptAuto);
    }
    match path("flint.root", value) {
        Ok(path) => Ok(RootDevice::Path(path)),
        Err(_) => Err(ParamError::Invalid("flint.root", "a device path such as /dev/vda, or gpt-auto")),
    }
}

fn fstype(value: &[u8]) -> Result<&[u8], ParamError<'static>> {
    let valid = |byte: &u8| byte.is_ascii_alphanumeric() || b"._-".contains(byte);
    if (1..=32).contains(&value.len()) && value.iter().all(valid) {
        Ok(value)
    } else {
        Err(ParamError::Invalid("flint.rootfstype", "a filesystem type such as ext4 or erofs"))
    }
}

fn module_list(value: &[u8]) -> Result<Modules<'_>, ParamError<'static>> {
    let valid = |name: &[u8]| {
        (1..=MODULE_NAME_MAX).contains(&name.len())
            && name.iter().all(|byte| byte.is_ascii_alphanumeric() || b"_-".contains(byte))
    };
    if value.is_empty() || value.split(|&byte| byte == b',').all(valid) {
        Ok(Modules(value))
    } else {
        Err(ParamError::Invalid("flint.modules", "module names (letters, digits, _ and -) separated by ','"))
    }
}

/// `flint.volumes=`: the list's shape only; its items are checked as they are mounted.
fn volume_list(value: &[u8]) -> Result<&[u8], ParamError<'static>> {
    match crate::argv::Decoder::new(value) {
        Ok(_) if !value.is_empty() => Ok(value),
        _ => Err(ParamError::Invalid("flint.volumes", "a list of TYPE:ro|rw:PATH items encoded as flint.argv is")),
    }
}

fn id(key: &'static str, value: &[u8]) -> Result<u32, ParamError<'static>> {
    // u32::MAX is (uid_t)-1, which the kernel reads as "leave unchanged".
    decimal(value)
        .and_then(|id| u32::try_from(id).ok())
        .filter(|&id| id != u32::MAX)
        .ok_or(ParamError::Invalid(key, "a number from 0 to 4294967294"))
}

/// Seconds with up to millisecond precision: `5`, `0.25`, `1.5`.
fn duration_ms(key: &'static str, value: &[u8]) -> Result<u64, ParamError<'static>> {
    let invalid = ParamError::Invalid(key, "seconds such as 5 or 0.25 (at most 3 decimals)");
    let (whole, fraction) = match value.iter().position(|&byte| byte == b'.') {
        Some(dot) => (&value[..dot], &value[dot + 1..]),
        None => (value, &b"0"[..]),
    };
    if fraction.is_empty() || fraction.len() > 3 {
        return Err(invalid);
    }
    let scale = 10u64.pow(3 - fraction.len() as u32);
    let whole = decimal(whole).ok_or(invalid)?;
    let fraction = decimal(fraction).ok_or(invalid)?;
    whole.checked_mul(1000).and_then(|ms| ms.checked_add(fraction * scale)).ok_or(invalid)
}

/// Plain decimal digits only: no sign, no spaces, no overflow.
pub(crate) fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &byte| {
        let digit = byte.checked_sub(b'0').filter(|&digit| digit <= 9)?;
        value.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ARGV: &str = "flint.argv=c2g,";

    fn parse(cmdline: &str) -> Result<Params<'_>, ParamError<'_>> {
        Params::parse(cmdline.as_bytes())
    }

    fn tokens(cmdline: &str) -> Vec<(String, Option<String>)> {
        let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).unwrap();
        Tokens(cmdline.as_bytes()).map(|(key, value)| (text(key), value.map(text))).collect()
    }

    #[test]
    fn module_parameters_come_from_the_command_line_like_modprobe_takes_them() {
        let params = |cmdline: &str, module: &str| {
            let mut out = [0; CMDLINE_MAX];
            module_params(cmdline.as_bytes(), module.as_bytes(), &mut out).to_str().unwrap().to_string()
        };
        let cmdline = "quiet virtio_mmio.device=512@0xfeb00e00:12 virtio-mmio.device=512@0xfeb00c00:11 \
                       virtio_blk.queue_depth=8 virtio_mmio. .x=1 ext4.msg=\"a b\" ext4.flag -- virtio_mmio.after=1";
        assert_eq!(params(cmdline, "virtio_mmio"), "device=512@0xfeb00e00:12 device=512@0xfeb00c00:11");
        assert_eq!(params(cmdline, "virtio-mmio"), params(cmdline, "virtio_mmio"));
        assert_eq!(params(cmdline, "virtio_blk"), "queue_depth=8");
        assert_eq!(params(cmdline, "ext4"), "msg=\"a b\" flag");
        assert_eq!(params(cmdline, "virtio"), "");
        // What does not fit is left out, never cut.
        let long = format!("m.a=1 m.b={} m.c=3", "x".repeat(CMDLINE_MAX));
        assert_eq!(params(&long, "m"), "a=1 c=3");
    }

    #[test]
    fn defaults() {
        let params = parse("console=ttyS0 quiet flint.argv=c2g,\n").unwrap();
        assert_eq!(
            params,
            Params {
                root: None,
                modules: Modules(b""),
                argv: b"c2g,",
                env: None,
                cwd: b"/",
                uid: 0,
                gid: 0,
                timeout_ms: None,
                grace_ms: 0,
                stdin: b"/dev/console",
                stdout: b"/dev/console",
                stderr: b"/dev/console",
                status: None,
                device_wait_ms: 5000,
                firmware_tsc: None,
                seed: None,
                time: None,
                ready: None,
                program: None,
                job_on_port: false,
                ip: None,
                volumes: b"",
                warmup: false,
            }
        );
        let params = parse("flint.root=/dev/vda flint.argv=,").unwrap();
        let device = RootDevice::Path(b"/dev/vda");
        assert_eq!(params.root, Some(Root { device, fstype: b"ext4", mode: RootMode::ReadOnly }));
        let params = parse("flint.root=gpt-auto flint.rw flint.argv=,").unwrap();
        let device = RootDevice::GptAuto;
        assert_eq!(params.root, Some(Root { device, fstype: b"ext4", mode: RootMode::ReadWrite }));
    }

    #[test]
    fn everything_given() {
        let params = parse(
            "console=ttyS0 flint.root=/dev/vdb flint.rootfstype=erofs flint.rootwait=0.5 flint.overlay \
             flint.modules=virtio_ring,virtio,virtio_blk flint.argv=c2g,LWM, flint.env=QT1i, flint.cwd=/work \
             flint.uid=1000 flint.gid=100 flint.timeout=2.25 flint.grace=1.5 flint.stdin=/dev/null flint.stdout=/dev/ttyS1 \
             flint.stderr=/dev/ttyS2 flint.status=/dev/hvc0 flint.ip=10.0.2.15/24,10.0.2.2,10.0.2.3",
        )
        .unwrap();
        assert_eq!(params.ip.map(|ip| (ip.address, ip.prefix)), Some(([10, 0, 2, 15], 24)));
        let device = RootDevice::Path(b"/dev/vdb");
        assert_eq!(params.root, Some(Root { device, fstype: b"erofs", mode: RootMode::Overlay }));
        assert_eq!(params.modules.iter().collect::<Vec<_>>(), [b"virtio_ring".as_slice(), b"virtio", b"virtio_blk"]);
        assert_eq!((params.argv, params.env), (b"c2g,LWM,".as_slice(), Some(b"QT1i,".as_slice())));
        assert_eq!(
            (params.cwd, params.uid, params.gid, params.timeout_ms, params.grace_ms, params.device_wait_ms),
            (b"/work".as_slice(), 1000, 100, Some(2250), 1500, 500)
        );
        assert_eq!(
            [params.stdin, params.stdout, params.stderr],
            [b"/dev/null".as_slice(), b"/dev/ttyS1", b"/dev/ttyS2"]
        );
        assert_eq!(params.status, Some(b"/dev/hvc0".as_slice()));
        let rw = parse("flint.root=/dev/vda flint.rw flint.argv=,").unwrap();
        assert_eq!(rw.root.unwrap().mode, RootMode::ReadWrite);
        let ro = parse("flint.root=/dev/vda flint.ro flint.overlay flint.argv=,").unwrap();
        assert_eq!(ro.root.unwrap().mode, RootMode::Overlay);
    }

    #[test]
    fn kernel_style_quoting() {
        assert_eq!(
            tokens(r#"a "b=c d" e="f g" h=i"j" "k" l=" --x"#),
            [
                ("a".into(), None),
                ("b".into(), Some("c d".into())),
                ("e".into(), Some("f g".into())),
                ("h".into(), Some("i\"j\"".into())),
                ("k".into(), None),
                // An unclosed quote runs to the end of the line.
                ("l".into(), Some(" --x".into())),
            ]
        );
        assert_eq!(tokens("l=\" m=\t\x0bn\r\n"), [("l".into(), Some(" m=\t\x0bn\r\n".into()))]);
        assert_eq!(
            tokens("l=\"\"\tm=\x0bn\r\n"),
            [("l".into(), Some("".into())), ("m".into(), Some("".into())), ("n".into(), None)]
        );
        assert_eq!(
            tokens("=a b= \"\" \""),
            [("=a".into(), None), ("b".into(), Some("".into())), ("".into(), None), ("".into(), None)]
        );
        assert_eq!(parse(r#"flint.cwd="/my dir" flint.argv=c2g,"#).unwrap().cwd, b"/my dir");
        assert_eq!(parse(r#""flint.cwd=/my dir" flint.argv=c2g,"#).unwrap().cwd, b"/my dir");
    }

    #[test]
    fn words_after_double_dash_belong_to_init() {
        assert_eq!(tokens("a -- flint.bogus b"), [("a".into(), None)]);
        assert_eq!(parse("flint.argv=, -- flint.bogus").unwrap().argv, b",");
        assert_eq!(parse("flint.argv=, --=x flint.bogus"), Err(ParamError::Unknown(b"flint.bogus")));
    }

    #[test]
    fn hostile_input_is_a_clear_error() {
        let cases: &[(&str, ParamError)] = &[
            ("flint.argv=, flint.bogus=1", ParamError::Unknown(b"flint.bogus")),
            ("flint.argv=, flint.", ParamError::Unknown(b"flint.")),
            ("flint.argv=, flint.argv=,", ParamError::Duplicate("flint.argv")),
            ("flint.argv=, flint.ro flint.ro flint.root=/dev/vda", ParamError::Duplicate("flint.ro")),
            ("flint.argv", ParamError::MissingValue("flint.argv")),
            ("flint.argv=, flint.root", ParamError::MissingValue("flint.root")),
            ("flint.argv=, flint.root=/dev/vda flint.rw=1", ParamError::UnexpectedValue("flint.rw")),
            ("flint.argv=, flint.root=/dev/vda flint.ro flint.rw", ParamError::Conflict("flint.ro", "flint.rw")),
            (
                "flint.argv=, flint.root=/dev/vda flint.overlay flint.rw",
                ParamError::Conflict("flint.overlay", "flint.rw"),
            ),
            ("flint.argv=, flint.overlay", ParamError::NeedsRoot("flint.overlay")),
            ("flint.argv=, flint.rootfstype=ext4", ParamError::NeedsRoot("flint.rootfstype")),
            ("flint.root=/dev/vda", ParamError::MissingArgv),
            ("", ParamError::MissingArgv),
        ];
        for (cmdline, error) in cases {
            assert_eq!(parse(cmdline).unwrap_err(), *error, "{cmdline}");
        }
    }

    #[test]
    fn malformed_values_are_errors() {
        let invalid = |cmdline: &str, key: &str| match parse(&format!("{ARGV} {cmdline}")) {
            Err(ParamError::Invalid(bad, _)) => assert_eq!(bad, key, "{cmdline}"),
            other => panic!("{cmdline}: {other:?}"),
        };
        let long_path = format!("/{}", "a".repeat(PATH_MAX));
        for bad in ["", "dev/vda", "relative", "gpt-auto2", long_path.as_str()] {
            invalid(&format!("flint.root={bad}"), "flint.root");
            invalid(&format!("flint.cwd={bad}"), "flint.cwd");
            invalid(&format!("flint.stdout={bad}"), "flint.stdout");
            invalid(&format!("flint.status={bad}"), "flint.status");
        }
        for bad in ["", "-1", "+1", "1.0", "0x10", "4294967295", "99999999999999999999999", " 1"] {
            invalid(&format!("\"flint.uid={bad}\""), "flint.uid");
        }
        for bad in ["", ".", "1.", ".5", "1.2345", "-1", "1e3", "18446744073709551615", "1,5"] {
            invalid(&format!("flint.timeout={bad}"), "flint.timeout");
            invalid(&format!("flint.rootwait={bad}"), "flint.rootwait");
        }
        for bad in ["", "ext4 ", "a/b", "abcdefghijklmnopqrstuvwxyz0123456789"] {
            invalid(&format!("flint.root=/dev/vda \"flint.rootfstype={bad}\""), "flint.rootfstype");
        }
        let long_name = "m".repeat(MODULE_NAME_MAX + 1);
        for bad in [",", "a,,b", "a,", "../x", "a b", long_name.as_str()] {
            invalid(&format!("\"flint.modules={bad}\""), "flint.modules");
        }
        for bad in ["", "10.0.2.15", "10.0.2.15/24,10.0.2.2"] {
            invalid(&format!("flint.ip={bad}"), "flint.ip");
        }
    }

    #[test]
    fn numbers_and_durations() {
        assert_eq!(duration_ms("k", b"0"), Ok(0));
        assert_eq!(duration_ms("k", b"1.5"), Ok(1500));
        assert_eq!(duration_ms("k", b"0.001"), Ok(1));
        assert_eq!(duration_ms("k", b"0.25"), Ok(250));
        assert_eq!(duration_ms("k", b"18446744073709551"), Ok(18446744073709551000));
        assert!(duration_ms("k", b"18446744073709552").is_err());
        assert_eq!(id("k", b"4294967294"), Ok(4294967294));
        assert_eq!(parse("flint.argv=, flint.timeout=0").unwrap().timeout_ms, None);
        assert_eq!(parse("flint.argv=, flint.modules=").unwrap().modules.iter().count(), 0);
    }

    #[test]
    fn warmup_is_a_flag() {
        assert!(parse("flint.argv=, flint.warmup").unwrap().warmup);
        assert!(!parse("flint.argv=,").unwrap().warmup);
        assert_eq!(parse("flint.argv=, flint.warmup=1"), Err(ParamError::UnexpectedValue("flint.warmup")));
    }

    #[test]
    fn volumes_are_an_encoded_list() {
        assert_eq!(parse("flint.argv=, flint.volumes=YQ,Yg,").unwrap().volumes, b"YQ,Yg,");
        for bad in ["flint.volumes=YQ", "flint.volumes="] {
            let expected = "a list of TYPE:ro|rw:PATH items encoded as flint.argv is";
            assert_eq!(parse(&format!("{ARGV} {bad}")), Err(ParamError::Invalid("flint.volumes", expected)), "{bad}");
        }
    }

    #[test]
    fn the_job_can_come_from_the_status_port() {
        let mut params = parse("flint.job=port flint.status=/dev/vport0p4").unwrap();
        assert!(params.job_on_port);
        assert_eq!(params.argv, b"");
        params.apply_job(b"flint.argv=c2g,\nflint.env=QT1i,\nflint.cwd=/a b\nflint.uid=5\nflint.gid=6\n").unwrap();
        assert_eq!((params.argv, params.env, params.cwd), (&b"c2g,"[..], Some(&b"QT1i,"[..]), &b"/a b"[..]));
        assert_eq!((params.uid, params.gid), (5, 6));
        let mut params = parse("flint.job=port flint.status=/dev/vport0p4 flint.timeout=9").unwrap();
        params.apply_job(b"flint.argv=,\n").unwrap();
        assert_eq!((params.env, params.cwd, params.uid, params.timeout_ms), (None, &b"/"[..], 0, Some(9000)));
        assert_eq!((params.seed, params.time), (None, None));
        let seed = "0f".repeat(32);
        let body =
            format!("flint.argv=,\nflint.timeout=2.5\nflint.grace=0.25\nflint.seed={seed}\nflint.time=17.000000042\n");
        params.apply_job(body.as_bytes()).unwrap();
        assert_eq!((params.timeout_ms, params.grace_ms), (Some(2500), 250));
        assert_eq!((params.seed, params.time), (Some([0x0f; 32]), Some((17, 42))));
        params.apply_job(b"flint.argv=,\nflint.ready=/dev/flint-ready\nflint.program=/bin/true\n").unwrap();
        assert_eq!(params.program, Some(&b"/bin/true"[..]));
        assert_eq!(params.ready, Some(&b"/dev/flint-ready"[..]));

        assert_eq!(
            parse("flint.job=port"),
            Err(ParamError::Invalid("flint.job", "port, with flint.status= naming that port"))
        );
        assert_eq!(parse("flint.job=fw_cfg flint.status=/s"), Err(ParamError::Invalid("flint.job", "port")));
        for key in ["flint.argv=,", "flint.env=,", "flint.cwd=/", "flint.uid=1", "flint.gid=1"] {
            let cmdline = format!("flint.job=port flint.status=/s {key}");
            let conflict = parse(&cmdline).unwrap_err();
            assert!(matches!(conflict, ParamError::Conflict("flint.job", _)), "{key}");
        }
        let base = || parse("flint.job=port flint.status=/s").unwrap();
        let cases: [(&[u8], ParamError<'_>); 10] = [
            (b"flint.argv=,\nflint.seed=0f\n", ParamError::Invalid("flint.seed", "64 hex digits")),
            (
                b"flint.argv=,\nflint.seed=0g0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f\n",
                ParamError::Invalid("flint.seed", "64 hex digits"),
            ),
            (b"flint.argv=,\nflint.time=17.5\n", ParamError::Invalid("flint.time", "<seconds>.<9 digits>")),
            (
                b"flint.argv=,\nflint.time=99999999999999999999.000000000\n",
                ParamError::Invalid("flint.time", "<seconds>.<9 digits>"),
            ),
            (b"", ParamError::MissingArgv),
            (b"flint.env=,\n", ParamError::MissingArgv),
            (b"flint.argv=,\nflint.argv=,\n", ParamError::Duplicate("flint.argv")),
            (b"flint.argv=,\nflint.root=/x\n", ParamError::Unknown(b"flint.root")),
            (b"flint.argv=,", ParamError::Invalid("flint.job", "key=value lines, each ending with a newline")),
            (b"flint.argv=,\nflint.uid=-1\n", ParamError::Invalid("flint.uid", "a number from 0 to 4294967294")),
        ];
        for (body, error) in cases {
            assert_eq!(base().apply_job(body), Err(error), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn status_device_survives_other_errors() {
        assert_eq!(status_device(b"flint.bogus flint.status=/dev/ttyS1 flint.ro=1"), Some(&b"/dev/ttyS1"[..]));
        assert_eq!(status_device(b"flint.argv=, flint.status"), None);
        assert_eq!(status_device(b"flint.status=ttyS1"), None);
        assert_eq!(status_device(b"flint.argv=,"), None);
    }

    #[test]
    fn errors_describe_the_fix() {
        let message = ParamError::Unknown(b"flint.bogus\x1b").failure();
        assert_eq!(message.status, status::BAD_PARAMETERS);
        assert_eq!(
            message.message(),
            b"unknown parameter flint.bogus\\x1b: check the spelling against the flint.* list in guest-init/README.md"
        );
        let message = ParamError::Conflict("flint.ro", "flint.rw").failure();
        assert_eq!(message.message(), b"flint.ro conflicts with flint.rw: drop one");
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_fail_cleanly(cmdline in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = Params::parse(&cmdline);
        }

        #[test]
        fn flint_shaped_noise_parses_or_fails_cleanly(cmdline in "((flint\\.(root|ro|rw|overlay|argv|env|uid|timeout|modules|cwd)|\"|=|,|/|[a-z0-9.]| |--)){0,40}") {
            if let Ok(params) = Params::parse(cmdline.as_bytes()) {
                prop_assert!(params.cwd.starts_with(b"/"));
            }
        }
    }
}
