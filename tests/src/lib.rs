//! Helpers shared by the QEMU integration tests: where the firmware and kernels are, and a
//! busybox test initramfs whose `/init` prints `@@key=value` facts and powers off.
//!
//! Everything here fails loudly when a prerequisite is missing: run `scripts/test.sh`, which
//! installs QEMU and busybox, fetches the kernel and builds `out/fw.bin` first.

use flint::initramfs::Initramfs;
use flint::modules::ModuleTree;
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

/// flint's cache, where `scripts/test.sh` puts the kernels.
pub fn cache_dir() -> PathBuf {
    flint::env::cache_dir().expect("flint's cache directory")
}

/// An unpacked kernel: `vmlinuz` plus its module tree.
pub struct Kernel {
    pub dir: PathBuf,
}

impl Kernel {
    pub fn image(&self) -> PathBuf {
        require(self.dir.join("vmlinuz"), "kernel image")
    }
}

pub fn debian_kernel() -> Kernel {
    Kernel { dir: require(cache_dir().join("kernels/debian-cloud"), "Debian cloud kernel") }
}

/// The modules Debian's cloud kernel needs for virtio-blk, in load order.
pub const VIRTIO_BLK_MODULES: [&str; 6] =
    ["virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "virtio_blk"];

/// A busybox initramfs whose `/init` reports facts about the guest, runs `script`, then
/// powers off. `modules` (with any dependencies they name) are loaded first, dependencies
/// before the modules that need them.
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
    let tree = ModuleTree::open(&kernel.dir.join("modules")).expect("the kernel's module tree");
    for module in tree.load_order(modules).expect("the modules exist") {
        let name = &module.name;
        archive.file(&format!("/lib/modules/{name}.ko"), 0o644, module.data);
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

/// Guests with more than one vCPU boot one at a time. Under TCG every vCPU is a host thread;
/// with several such guests at once on a 2-core host, a Debian guest on microvm with two
/// vCPUs has hung early in its boot (in one of five CI runs, never on its own).
static MULTI_CPU_GUESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Boots `vm`, panicking with the console on a timeout so failures are diagnosable.
pub fn boot(vm: &Vm) -> (Outcome, String) {
    let _one_at_a_time =
        (vm.cpus > 1).then(|| MULTI_CPU_GUESTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    let outcome = vm.run(BOOT_DEADLINE).expect("QEMU starts");
    let text = console(&outcome);
    assert!(
        !outcome.timed_out(),
        "VM did not finish within {BOOT_DEADLINE:?}; console:\n{text}\nqemu: {}",
        String::from_utf8_lossy(&outcome.qemu_stderr)
    );
    (outcome, text)
}
