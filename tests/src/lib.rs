//! Helpers shared by the QEMU integration tests: where the firmware and kernels are, and a
//! busybox test initramfs whose `/init` prints `@@key=value` facts and powers off.
//!
//! Everything here fails loudly when a prerequisite is missing: run `scripts/test.sh`, which
//! installs QEMU and busybox, fetches the kernel and builds `out/fw.bin` first.

use flint::initramfs::Initramfs;
use flint::qemu::{Outcome, Vm};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const BOOT_DEADLINE: Duration = Duration::from_secs(120);

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

fn require(path: PathBuf, what: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{what} missing at {}: run scripts/test.sh (it installs and builds everything)",
        path.display()
    );
    path
}

pub fn firmware() -> PathBuf {
    let path = std::env::var_os("FLINT_FW").map(PathBuf::from).unwrap_or_else(|| repo_root().join("out/fw.bin"));
    require(path, "firmware image")
}

pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FLINT_CACHE") {
        return dir.into();
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache"));
    base.join("flint")
}

/// An unpacked kernel: `vmlinuz` plus its module tree.
pub struct Kernel {
    pub dir: PathBuf,
}

impl Kernel {
    pub fn image(&self) -> PathBuf {
        require(self.dir.join("vmlinuz"), "kernel image")
    }

    /// The `.ko` of a module, searched in the kernel's module tree.
    pub fn module(&self, name: &str) -> PathBuf {
        let file = format!("{name}.ko");
        find_file(&self.dir.join("modules"), &file)
            .unwrap_or_else(|| panic!("module {file} not found under {}", self.dir.display()))
    }
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
    }
    None
}

pub fn debian_kernel() -> Kernel {
    Kernel { dir: require(cache_dir().join("kernels/debian-cloud"), "Debian cloud kernel") }
}

/// The modules Debian's cloud kernel needs for virtio-blk, in load order.
pub const VIRTIO_BLK_MODULES: [&str; 6] =
    ["virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "virtio_blk"];

/// A busybox initramfs whose `/init` reports facts about the guest, runs `script`, then
/// powers off. `modules` are loaded first, in order.
pub fn test_initramfs(kernel: &Kernel, modules: &[&str], script: &str) -> Vec<u8> {
    let mut archive = Initramfs::new();
    archive.file_from("/bin/busybox", 0o755, &require(PathBuf::from("/bin/busybox"), "busybox-static")).unwrap();
    let mut init = String::from(
        "#!/bin/busybox sh\n\
         /bin/busybox --install -s /bin\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sys /sys\n\
         mount -t devtmpfs dev /dev\n\
         echo \"@@cpus=$(grep -c ^processor /proc/cpuinfo)\"\n\
         echo \"@@memtotal_kb=$(awk '/MemTotal/ {print $2}' /proc/meminfo)\"\n\
         echo \"@@cmdline_len=$(wc -c < /proc/cmdline)\"\n\
         printf '@@cmdline<<'; cat /proc/cmdline; echo '>>'\n",
    );
    for name in modules {
        archive.file_from(&format!("/lib/modules/{name}.ko"), 0o644, &kernel.module(name)).unwrap();
        init.push_str(&format!("insmod /lib/modules/{name}.ko || echo \"@@insmod_failed={name}\"\n"));
    }
    init.push_str(script);
    init.push_str("\necho @@done\npoweroff -f\n");
    archive.dir("/proc").dir("/sys").dir("/dev").file("/init", 0o755, init);
    archive.to_bytes()
}

/// The guest's console with carriage returns removed.
pub fn console(outcome: &Outcome) -> String {
    outcome.console_text().replace('\r', "")
}

/// The value of the first `@@key=value` line.
pub fn fact(console: &str, key: &str) -> Option<String> {
    let prefix = format!("@@{key}=");
    console.lines().find_map(|line| line.strip_prefix(&prefix)).map(str::to_string)
}

/// What `/proc/cmdline` held, without its trailing newline.
pub fn proc_cmdline(console: &str) -> Option<String> {
    let start = console.find("@@cmdline<<")? + "@@cmdline<<".len();
    let end = start + console[start..].find("\n>>")?;
    Some(console[start..end].to_string())
}

/// Boots `vm`, panicking with the console on a timeout so failures are diagnosable.
pub fn boot(vm: &Vm) -> (Outcome, String) {
    let outcome = vm.run(BOOT_DEADLINE).expect("QEMU starts");
    let text = console(&outcome);
    assert!(
        !outcome.timed_out(),
        "VM did not finish within {BOOT_DEADLINE:?}; console:\n{text}\nqemu: {}",
        String::from_utf8_lossy(&outcome.qemu_stderr)
    );
    (outcome, text)
}
