//! What every test of the `flint` binary uses: the command, its output as text, the status
//! check that shows both streams, scratch directories and the cached minimal kernel.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The binary under test, quiet, with no input unless a test gives some.
pub fn flint() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flint"));
    command.arg("--quiet").stdin(Stdio::null());
    command
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
pub fn assert_status(output: &Output, status: i32) {
    assert_eq!(
        output.status.code(),
        Some(status),
        "stdout:\n{}\nstderr:\n{}",
        text(&output.stdout[..output.stdout.len().min(2000)]),
        text(&output.stderr)
    );
}

/// A scratch directory under the target dir, fresh for each test (names stay short: sockets
/// go in some).
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small root directory in `dir`: Debian's static busybox (installed by scripts/setup.sh)
/// as /bin/busybox with `applets` linked to it, and `data` as /data.bin.
pub fn busybox_tree(dir: &Path, applets: &[&str], data: &[u8]) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("busybox-static is installed (scripts/setup.sh)");
    std::fs::set_permissions(dir.join("bin/busybox"), std::fs::Permissions::from_mode(0o755)).unwrap();
    for applet in applets {
        symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    std::fs::write(dir.join("data.bin"), data).unwrap();
}

/// flint's cache, where scripts/test.sh puts the kernels.
pub fn cache() -> PathBuf {
    flint::env::cache_dir().expect("flint's cache directory")
}

/// The minimal kernel's directory in the cache (scripts/test.sh builds it).
pub fn minimal_kernel() -> PathBuf {
    let dir = cache().join("kernels/minimal");
    assert!(dir.join("vmlinuz").is_file(), "no minimal kernel at {}: run scripts/test.sh", dir.display());
    dir
}

/// The minimal kernel copied into `dir` with `option` (`CONFIG_...`) unset in its config: a
/// kernel that lacks a driver flint needs.
pub fn minimal_kernel_without(dir: &Path, option: &str) {
    let minimal = minimal_kernel();
    std::fs::copy(minimal.join("vmlinuz"), dir.join("vmlinuz")).unwrap();
    let config = std::fs::read_to_string(minimal.join("config")).unwrap();
    let set = format!("{option}=");
    let config: String = config
        .lines()
        .map(|line| if line.starts_with(&set) { format!("# {option} is not set\n") } else { format!("{line}\n") })
        .collect();
    std::fs::write(dir.join("config"), config).unwrap();
}

/// A process's children, over all its threads (none once it is gone).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| list.split_whitespace().map(|pid| pid.parse().unwrap()).collect::<Vec<u32>>())
        .collect()
}

/// `pid`'s descendants, nearest first.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut found = children(pid);
    let mut next = 0;
    while next < found.len() {
        let more = children(found[next]);
        found.extend(more);
        next += 1;
    }
    found
}

/// A process's command name.
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
}

/// A running flint, killed if the test fails before it ends.
pub struct Flint(pub Child);

impl Drop for Flint {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
