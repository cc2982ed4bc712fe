//! Where things are: the cache, the source tree, the firmware image; how flint reports
//! progress and its own failures; running the host tools it relies on. How the cache is
//! written is in `cache`, what runs remember in `memo`.

mod cache;
mod memo;

pub use cache::*;
pub use memo::*;

use anyhow::{anyhow, bail, Context, Result};
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

/// flint's own failures exit with this status (as `docker run` and `podman run` do), and
/// always print one `flint: error: ...` line on stderr first.
pub const EXIT_FAILURE: u8 = 125;
/// The workload ran longer than `--timeout` (as with `timeout(1)`).
pub const EXIT_TIMEOUT: u8 = 124;
/// The program exists but cannot be executed.
pub const EXIT_NOT_EXECUTABLE: u8 = 126;
/// The program does not exist in the root filesystem.
pub const EXIT_NOT_FOUND: u8 = 127;

/// An error that ends flint with a particular status rather than [`EXIT_FAILURE`].
#[derive(Debug)]
pub struct Exit {
    pub status: u8,
    pub message: String,
}

impl Exit {
    pub fn new(status: u8, message: impl Into<String>) -> Self {
        Exit { status, message: message.into() }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// The status flint ends with for `error`.
pub fn exit_status(error: &anyhow::Error) -> u8 {
    error.downcast_ref::<Exit>().map_or(EXIT_FAILURE, |exit| exit.status)
}

static QUIET: AtomicBool = AtomicBool::new(false);

pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// A progress line on stderr (`flint: ...`), for work that takes a while.
pub fn progress(message: impl fmt::Display) {
    if !QUIET.load(Ordering::Relaxed) {
        eprintln!("flint: {message}");
    }
}

pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// `${FLINT_CACHE:-${XDG_CACHE_HOME:-~/.cache}/flint}`, as the scripts and tests use.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("FLINT_CACHE").filter(|dir| !dir.is_empty()) {
        return Ok(dir.into());
    }
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").ok_or_else(|| {
            anyhow!("neither FLINT_CACHE nor HOME is set: set FLINT_CACHE to a directory flint may use as its cache")
        })?)
        .join(".cache"),
    };
    Ok(base.join("flint"))
}

/// A directory under the cache, created if missing.
pub fn cache_subdir(name: &str) -> Result<PathBuf> {
    let dir = cache_dir()?.join(name);
    std::fs::create_dir_all(&dir)
        .fix(
            format_args!("cannot create the cache directory {}", dir.display()),
            "set FLINT_CACHE to a writable directory",
        )
        .map_err(|error| disk_full_or(error, &dir))?;
    Ok(dir)
}

/// The flint source tree (the Cargo workspace with `firmware/` and `guest-init/`): the
/// current directory or one of its parents, else the tree this binary was built from.
pub fn source_tree() -> Option<PathBuf> {
    let is_tree = |dir: &Path| dir.join("firmware/Cargo.toml").is_file() && dir.join("guest-init/Cargo.toml").is_file();
    if let Ok(cwd) = std::env::current_dir() {
        if let Some(dir) = cwd.ancestors().find(|dir| is_tree(dir)) {
            return Some(dir.to_path_buf());
        }
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    is_tree(built_from).then(|| built_from.to_path_buf())
}

/// The firmware image: `--firmware`, else `$FLINT_FW`, else the one built into this binary.
pub fn firmware(given: Option<&Path>) -> Result<PathBuf> {
    let (path, origin) = match (given, std::env::var_os("FLINT_FW").filter(|p| !p.is_empty())) {
        (Some(path), _) => (path.to_path_buf(), "--firmware"),
        (None, Some(path)) => (PathBuf::from(path), "FLINT_FW"),
        (None, None) => return crate::embedded::firmware(),
    };
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() => Ok(path),
        Ok(_) => {
            bail!("firmware {} (from {origin}) is not a file: pass the fw.bin that `flint build` makes", path.display())
        }
        Err(e) => {
            bail!("firmware {} (from {origin}): {e}: run `flint build` first, or pass --firmware PATH", path.display())
        }
    }
}

/// Whether `program` is found in PATH (or is a path to an executable file).
/// The sbin directories are searched after PATH: the filesystem tools (mkfs.ext4, debugfs,
/// sfdisk, depmod) live there, and an ordinary user's PATH often lacks them.
pub fn find_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable =
        |path: &Path| path.metadata().is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0);
    if program.contains('/') {
        return executable(Path::new(program)).then(|| PathBuf::from(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| executable(candidate))
}

/// A command for `program`, found as `find_program` finds it (so sbin tools run for an
/// ordinary user too); left to fail with its own name when it is nowhere.
pub fn command(program: &str) -> Command {
    Command::new(find_program(program).unwrap_or_else(|| PathBuf::from(program)))
}

/// Fails with an install hint when a host tool is missing.
pub fn require_tool(program: &str, package: &str) -> Result<()> {
    match find_program(program) {
        Some(_) => Ok(()),
        None => bail!("{program} not found in PATH: install it (apt-get install {package}, or run scripts/setup.sh)"),
    }
}

/// Runs a host tool to completion; its stdout goes to flint's stderr (flint's stdout is kept
/// for results), and a failure names the command.
pub fn run_tool(command: &mut Command) -> Result<()> {
    let name = describe(command);
    let status = command.stdout(std::io::stderr()).status().with_context(|| format!("cannot start {name}"))?;
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
}

/// Runs a host tool and returns its stdout; stderr is shown only when it fails.
pub fn tool_output(command: &mut Command) -> Result<String> {
    let name = describe(command);
    let output = command.stdin(Stdio::null()).output().with_context(|| format!("cannot start {name}"))?;
    if !output.status.success() {
        bail!("{name} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    String::from_utf8(output.stdout).with_context(|| format!("{name} printed something that is not UTF-8"))
}

fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A private directory removed when dropped (sockets, logs and copies of one run).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Under `$XDG_RUNTIME_DIR` or the system temp dir, short enough for Unix socket paths.
    pub fn new(prefix: &str) -> Result<TempDir> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|dir| dir.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        for attempt in 0..100u32 {
            let path = base.join(format!("{prefix}-{}-{:x}", std::process::id(), nanos.wrapping_add(attempt)));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(TempDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => bail!(
                    "cannot create a temporary directory in {}: {e}: set TMPDIR to a writable directory",
                    base.display()
                ),
            }
        }
        bail!("cannot create a temporary directory in {}: set TMPDIR to a writable directory", base.display())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// statvfs(3) of the filesystem holding `path`.
pub fn statvfs(path: &Path) -> std::io::Result<libc::statvfs> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: statvfs is plain data, for which all zeros is a value.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs(3) with a NUL-terminated path fills the struct it is given.
    match unsafe { libc::statvfs(path.as_ptr(), &mut stat) } {
        0 => Ok(stat),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Turns an error into one `problem: cause: fix` line.
pub trait Fix<T> {
    fn fix(self, problem: impl fmt::Display, fix: &str) -> Result<T>;
}

impl<T, E: fmt::Display> Fix<T> for std::result::Result<T, E> {
    fn fix(self, problem: impl fmt::Display, fix: &str) -> Result<T> {
        self.map_err(|cause| {
            let cause = cause.to_string();
            // io::Error says "(os error N)"; the words are enough.
            let cause = cause.split(" (os error").next().unwrap_or(&cause).to_string();
            anyhow!("{problem}: {cause}: {fix}")
        })
    }
}
