//! How the cache is written: whole or not at all (a unique temporary sibling, synced, then
//! renamed), with completion markers, safely among concurrent flints, and a full disk named
//! as one.

use super::{cache_dir, progress};
use anyhow::{anyhow, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::TempDir;
    use anyhow::bail;

    fn scratch(name: &str) -> TempDir {
        TempDir::new(&format!("flint-env-{name}")).unwrap()
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
}
