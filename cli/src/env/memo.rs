//! What flint remembers between runs while its inputs stay the same files (`memo/` in the
//! cache): a value per name, for one key only.

use super::{cache_dir, cache_subdir, write_file};
use std::path::Path;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::TempDir;

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
