//! Where things are: the cache, the source tree, the firmware image; how the cache is written
//! (whole or not at all, safely among concurrent flints); how flint reports progress and its
//! own failures; running the host tools it relies on.

use anyhow::{anyhow, bail, Context, Result};
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A unique sibling path for building `dest` before renaming it into place (a sibling, so the
/// rename is atomic). The counter keeps one process's calls apart, the process ID concurrent
/// flints, the time a reused process ID from what a crash left behind.
pub fn temp_sibling(dest: &Path) -> PathBuf {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    dest.with_file_name(format!(".{name}.tmp.{}.{call}.{nanos:x}", std::process::id()))
}

/// Makes the file `dest` whole or not at all: `make` writes a temporary sibling (the path it
/// is given), which is synced to disk and renamed over `dest`, and the rename synced in turn.
/// A crash leaves the old `dest` or the new one, never part of one; a failure leaves `dest`
/// as it was, and a full disk is reported as such.
pub fn make_file(dest: &Path, make: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_sibling(dest);
    let result = make(&tmp).and_then(|()| {
        (|| {
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, dest)?;
            sync_parent(dest)
        })()
        .with_context(|| format!("cannot write {}", dest.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|error| disk_full_or(error, dest))
}

/// [`make_file`] with `bytes`.
pub fn write_file(dest: &Path, bytes: &[u8]) -> Result<()> {
    make_file(dest, |tmp| Ok(std::fs::write(tmp, bytes)?))
}

/// `path`, holding exactly `bytes`: written only when it holds anything else (a file named
/// by its content, which is at hand to compare with).
pub fn cache_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    if std::fs::read(path).is_ok_and(|held| held == bytes) {
        return Ok(());
    }
    write_file(path, bytes)
}

/// [`make_file`] for a cache entry that is too big to compare or hash at every use: a marker
/// beside it, written once the entry is in place, records the size and modification time
/// that [`is_cached`] expects.
pub fn make_cached_file(dest: &Path, make: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    make_file(dest, make)?;
    let stamp = stamp(dest).with_context(|| format!("cannot read {}", dest.display()))?;
    write_file(&marker(dest), stamp.as_bytes())
}

/// Whether the cache entry `path` is complete: a directory that [`publish`] put in place, or a
/// file that [`make_cached_file`] made and nothing cut short or rewrote since. Anything else
/// (left by a crash, an older flint, or a full disk) counts as absent, to be made again.
pub fn is_cached(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => path.join(COMPLETE).is_file(),
        Ok(_) => {
            stamp(path).is_ok_and(|stamp| std::fs::read(marker(path)).is_ok_and(|marked| marked == stamp.as_bytes()))
        }
        Err(_) => false,
    }
}

/// What a file's marker records.
fn stamp(path: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok(format!("{} {}.{:09}\n", meta.size(), meta.mtime(), meta.mtime_nsec()))
}

fn marker(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".done");
    path.with_file_name(name)
}

/// A published directory's marker, written into it last.
const COMPLETE: &str = ".complete";

/// Moves a finished directory `tmp` into place at `dest`, complete: marked, and synced to disk
/// before the rename. With `replace`, an older `dest` is replaced; without, a complete `dest`
/// (another flint's, which may be in use) is kept and `tmp` thrown away. An incomplete `dest`
/// is always replaced.
pub fn publish(tmp: &Path, dest: &Path, replace: bool) -> Result<()> {
    move_into_place(tmp, dest, replace).map_err(|error| disk_full_or(error, dest))
}

fn move_into_place(tmp: &Path, dest: &Path, replace: bool) -> Result<()> {
    let discard = || {
        let _ = std::fs::remove_dir_all(tmp);
        Ok(())
    };
    // Synced with the rest just below.
    std::fs::write(tmp.join(COMPLETE), b"").with_context(|| format!("cannot write in {}", tmp.display()))?;
    sync_filesystem(tmp).with_context(|| format!("cannot sync {}", tmp.display()))?;
    if std::fs::symlink_metadata(dest).is_ok() {
        if !replace && is_cached(dest) {
            return discard();
        }
        let old = temp_sibling(dest);
        std::fs::rename(dest, &old).with_context(|| format!("cannot replace {}", dest.display()))?;
        let _ = std::fs::remove_dir_all(&old);
    }
    match std::fs::rename(tmp, dest) {
        Ok(()) => Ok(sync_parent(dest)?),
        // Another flint put its own there meanwhile: as good as this one.
        Err(_) if is_cached(dest) => discard(),
        Err(e) => Err(anyhow!("cannot move {} to {}: {e}", tmp.display(), dest.display())),
    }
}

/// Makes the cache directory `dest`: `make` fills a new directory (the path it is given),
/// which is then [`publish`]ed, keeping a complete `dest` that another flint made meanwhile.
pub fn make_dir(dest: &Path, make: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_sibling(dest);
    let result = std::fs::create_dir(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))
        .and_then(|()| make(&tmp))
        .and_then(|()| publish(&tmp, dest, false));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.map_err(|error| disk_full_or(error, dest))
}

/// Syncs the directory holding `path`, which makes a rename into it last across a crash.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(parent)?.sync_all()
}

/// Syncs the whole filesystem holding `path`: one call for a directory of thousands of files
/// (a kernel's modules), where a sync per file would take seconds.
fn sync_filesystem(path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(path)?;
    // SAFETY: syncfs only reads the descriptor, which `dir` keeps open.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Holds the lock on the cache directory `dir` until dropped, so that concurrent flints make
/// each entry in it once: the others wait, then find it made. Best effort: where locks are not
/// supported, each makes its own and one rename wins.
pub fn lock_cache(dir: &Path) -> Option<std::fs::File> {
    let file = std::fs::File::open(dir).ok()?;
    match file.try_lock() {
        Ok(()) => Some(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            progress(format!("waiting for another flint writing to {}", dir.display()));
            file.lock().ok().map(|()| file)
        }
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}

/// "The disk holding `path` is full", with the fix, as every cache write reports ENOSPC and
/// EDQUOT (which would otherwise pass for a corrupt or too-small image).
fn disk_full(path: &Path) -> anyhow::Error {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(path);
    let fix = if cache_dir().is_ok_and(|cache| dir.starts_with(cache)) {
        "free space or set FLINT_CACHE to another disk"
    } else {
        "free space or write to another disk"
    };
    anyhow!("the disk holding {} is full: {fix}", dir.display())
}

/// `error`, or [`disk_full`] when it came from a full disk: an I/O error of flint's own, or a
/// host tool's message (mkfs, debugfs and cp print strerror's words).
pub fn disk_full_or(error: anyhow::Error, path: &Path) -> anyhow::Error {
    use std::io::ErrorKind::{QuotaExceeded, StorageFull};
    let full = error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|e| matches!(e.kind(), StorageFull | QuotaExceeded))
            || says_disk_full(&cause.to_string())
    });
    if full {
        disk_full(path)
    } else {
        error
    }
}

/// Whether a message is ENOSPC's or EDQUOT's (tools run with `LC_ALL=C` use these words).
fn says_disk_full(message: &str) -> bool {
    message.contains("No space left on device") || message.contains("Disk quota exceeded")
}

/// What flint worked out last time under `name` (in the cache's `memo/`), if it was for `key`:
/// how each `flint run` skips work whose inputs have not changed (hashing a kernel, timing
/// the host's TSC).
pub fn recall(name: &str, key: &str) -> Option<String> {
    recall_in(&cache_dir().ok()?.join("memo"), name, key)
}

/// Records `value` for `key` under `name`, replacing what was there. Best effort: a cache
/// that cannot be written only means the work is done again next time.
pub fn remember(name: &str, key: &str, value: &str) {
    if let Ok(dir) = cache_subdir("memo") {
        remember_in(&dir, name, key, value);
    }
}

fn recall_in(dir: &Path, name: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    // The newline is written last: a record without it is cut short, its value wrong.
    let (recorded, value) = text.strip_suffix('\n')?.split_once('\t')?;
    (recorded == key).then(|| value.to_string())
}

fn remember_in(dir: &Path, name: &str, key: &str, value: &str) {
    let _ = write_file(&dir.join(name), format!("{key}\t{value}\n").as_bytes());
}

/// A file's identity for [`recall`]: device, inode, size and modification time, which change
/// when it is replaced or written.
pub fn file_identity(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(format!(
        "{} {} {} {} {} {}",
        path.display(),
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec()
    ))
}

/// The host's boot, for [`recall`] of what holds until it reboots.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim().to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> TempDir {
        TempDir::new(&format!("flint-env-{name}")).unwrap()
    }

    #[test]
    fn remembers_one_value_per_name_for_its_key_only() {
        let dir = scratch("memo");
        assert_eq!(recall_in(dir.path(), "thing", "key 1"), None);
        remember_in(dir.path(), "thing", "key 1", "value 1");
        assert_eq!(recall_in(dir.path(), "thing", "key 1").as_deref(), Some("value 1"));
        assert_eq!(recall_in(dir.path(), "thing", "key 2"), None);
        remember_in(dir.path(), "thing", "key 2", "value 2");
        assert_eq!(recall_in(dir.path(), "thing", "key 1"), None, "the newer key replaces the older");
        assert_eq!(recall_in(dir.path(), "other", "key 2"), None);
    }

    #[test]
    fn a_record_cut_short_is_not_recalled() {
        let dir = scratch("memo-cut");
        std::fs::write(dir.path().join("thing"), "key\t1234").unwrap();
        assert_eq!(recall_in(dir.path(), "thing", "key"), None, "no newline: the value may be cut short");
    }

    /// The names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn temp_siblings_are_unique_hidden_siblings() {
        let dest = Path::new("/cache/images/root.ext4");
        let (one, two) = (temp_sibling(dest), temp_sibling(dest));
        assert_ne!(one, two);
        for tmp in [one, two] {
            assert_eq!(tmp.parent(), dest.parent(), "a sibling, for an atomic rename");
            assert!(tmp.file_name().unwrap().to_string_lossy().starts_with(".root.ext4.tmp."), "{}", tmp.display());
        }
    }

    #[test]
    fn a_file_is_made_whole_or_not_at_all() {
        let dir = scratch("make-file");
        let dest = dir.path().join("entry");
        write_file(&dest, b"old").unwrap();
        let failed = make_file(&dest, |tmp| {
            std::fs::write(tmp, b"half")?;
            bail!("interrupted")
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["entry"], "no temporary file is left behind");
        write_file(&dest, b"new").unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
        assert_eq!(names(dir.path()), ["entry"]);
    }

    #[test]
    fn cached_bytes_are_compared_not_trusted() {
        let dir = scratch("cache-bytes");
        let path = dir.path().join("fw.bin");
        std::fs::write(&path, b"fw").unwrap();
        cache_bytes(&path, b"fw.bin").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"fw.bin", "a file cut short is written again");
        cache_bytes(&path, b"fw.bin").unwrap();
        assert_eq!(names(dir.path()), ["fw.bin"]);
    }

    #[test]
    fn a_cached_file_counts_only_while_its_marker_matches() {
        let dir = scratch("cached-file");
        let path = dir.path().join("vmlinux.elf");
        assert!(!is_cached(&path));
        write_file(&path, b"no marker").unwrap();
        assert!(!is_cached(&path), "left by an older flint or a crash before the marker");
        make_cached_file(&path, |tmp| Ok(std::fs::write(tmp, b"complete")?)).unwrap();
        assert!(is_cached(&path));
        assert_eq!(names(dir.path()), ["vmlinux.elf", "vmlinux.elf.done"]);
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(4).unwrap();
        assert!(!is_cached(&path), "cut short");
        make_cached_file(&path, |tmp| Ok(std::fs::write(tmp, b"complete")?)).unwrap();
        std::fs::remove_file(marker(&path)).unwrap();
        assert!(!is_cached(&path), "unmarked");
    }

    #[test]
    fn a_published_directory_is_complete_and_kept_unless_replaced() {
        let dir = scratch("publish");
        let dest = dir.path().join("root");
        let filled =
            |content: &'static str| move |tmp: &Path| -> Result<()> { Ok(std::fs::write(tmp.join("file"), content)?) };
        // An incomplete entry (an older flint's, or a crash's) is replaced.
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("file"), "half").unwrap();
        assert!(!is_cached(&dest));
        make_dir(&dest, filled("first")).unwrap();
        assert!(is_cached(&dest));
        assert_eq!(std::fs::read_to_string(dest.join("file")).unwrap(), "first");
        // A complete one is kept: another flint may be using it.
        make_dir(&dest, filled("second")).unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("file")).unwrap(), "first");
        assert!(make_dir(&dest, |_| bail!("interrupted")).is_err());
        assert_eq!(names(dir.path()), ["root"], "no temporary directory is left behind");
        // Unless asked to replace it.
        let tmp = temp_sibling(&dest);
        std::fs::create_dir(&tmp).unwrap();
        filled("third")(&tmp).unwrap();
        publish(&tmp, &dest, true).unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("file")).unwrap(), "third");
        assert_eq!(names(dir.path()), ["root"]);
    }

    #[test]
    fn the_cache_lock_makes_others_wait() {
        let dir = scratch("lock");
        let held = lock_cache(dir.path()).expect("a lock");
        let path = dir.path().to_path_buf();
        let (sender, receiver) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _lock = lock_cache(&path);
            sender.send(()).unwrap();
        });
        assert!(receiver.recv_timeout(std::time::Duration::from_millis(200)).is_err(), "taken while held");
        drop(held);
        receiver.recv_timeout(std::time::Duration::from_secs(10)).expect("taken once released");
        waiter.join().unwrap();
    }

    #[test]
    fn a_full_disk_is_named_whatever_reports_it() {
        let path = Path::new("/elsewhere/out.ext4");
        let io = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::StorageFull)).context("cannot write");
        let tool = anyhow!("mkfs.ext4 failed: out.ext4: No space left on device while populating file system");
        let quota = anyhow!("cp: error writing 'copy': Disk quota exceeded");
        for error in [io, tool, quota] {
            assert_eq!(
                disk_full_or(error, path).to_string(),
                "the disk holding /elsewhere is full: free space or write to another disk"
            );
        }
        let image_full = anyhow!("mkfs.ext4: Could not allocate block in ext2 filesystem while populating file system");
        assert!(disk_full_or(image_full, path).to_string().starts_with("mkfs.ext4: Could not allocate"));
        let in_cache = cache_dir().unwrap().join("images/root.ext4");
        assert!(disk_full(&in_cache).to_string().ends_with("is full: free space or set FLINT_CACHE to another disk"));
    }

    #[test]
    fn a_rewritten_file_has_another_identity() {
        let dir = scratch("identity");
        let path = dir.path().join("file");
        std::fs::write(&path, b"one").unwrap();
        let first = file_identity(&path).unwrap();
        assert_eq!(file_identity(&path).as_deref(), Some(first.as_str()));
        std::fs::write(&path, b"three").unwrap();
        assert_ne!(file_identity(&path).unwrap(), first);
        assert_eq!(file_identity(&dir.path().join("missing")), None);
    }
}
