//! The kernels and hosts users have, end to end through the binary: Debian's generic kernel
//! (xz with the x86 BCJ filter, ext4's crc32c soft dependency), a kernel build tree, a kernel
//! that lacks a driver, an installed `flint` run by an ordinary user from `/`, and fw.bin
//! built the same by anyone. scripts/test.sh fetches and builds the kernels first.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;
use common::{assert_status, cache, flint, minimal_kernel, text};

/// A fresh directory in the system's temp dir, which an ordinary user can reach (the
/// checkout, and so cargo's target dir, may be under root's home).
fn public_scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flint-kernels-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn debian_generic_kernel_runs_jobs_on_microvm_and_pc_with_overlay_and_ro() {
    let kernel = cache().join("kernels/debian-generic");
    assert!(kernel.join("vmlinuz").is_file(), "no Debian generic kernel at {}: run scripts/test.sh", kernel.display());
    let kernel = kernel.to_str().unwrap();
    let job = "echo \"$(uname -r) $(cat /proc/sys/kernel/tainted)\"; touch /written && echo wrote; exit 3";
    for (machine, mode, writes) in
        [("microvm", "--overlay", true), ("pc", "--overlay", true), ("microvm", "--ro", false)]
    {
        let output = flint()
            .args(["run", "--kernel", kernel, "--machine", machine, mode, "--", "sh", "-c", job])
            .output()
            .unwrap();
        assert_status(&output, 3);
        let stdout = text(&output.stdout);
        assert!(stdout.contains("-amd64 "), "{machine} {mode}: {stdout}");
        assert_eq!(stdout.contains("wrote"), writes, "{machine} {mode}: {stdout}");
    }
}

#[test]
fn a_kernel_build_tree_boots_from_its_directory() {
    // The minimal kernel's kept build tree (`O=` object directory) is a real one.
    let trees: Vec<PathBuf> = std::fs::read_dir(cache().join("kernels"))
        .unwrap()
        .flatten()
        .map(|entry| entry.path().join("obj"))
        .filter(|obj| obj.join("arch/x86/boot/bzImage").is_file())
        .collect();
    let tree = trees.first().expect("the minimal kernel's build tree (scripts/test.sh builds it)");
    let output = flint()
        .args(["run", "--kernel", tree.to_str().unwrap(), "--", "sh", "-c", "uname -r; exit 4"])
        .output()
        .unwrap();
    assert_status(&output, 4);
    let release = std::fs::read_to_string(tree.join("include/config/kernel.release")).unwrap();
    assert_eq!(text(&output.stdout).trim(), release.trim());
}

#[test]
fn a_kernel_without_virtio_console_is_named_in_one_line() {
    let dir = public_scratch("no-console");
    common::minimal_kernel_without(&dir, "CONFIG_VIRTIO_CONSOLE");
    let output = flint().args(["run", "--kernel", dir.to_str().unwrap(), "--", "true"]).output().unwrap();
    assert_status(&output, 125);
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("flint: error: ") && stderr.contains("CONFIG_VIRTIO_CONSOLE"), "{stderr}");
    assert!(stderr.contains("flint kernel config"), "{stderr}");

    let fragment = flint().args(["kernel", "config"]).output().unwrap();
    assert_status(&fragment, 0);
    for option in ["CONFIG_VIRTIO_CONSOLE=y", "CONFIG_VIRTIO_BLK=y", "CONFIG_VIRTIO_MMIO=y", "CONFIG_EXT4_FS=y"] {
        assert!(
            text(&fragment.stdout).lines().any(|line| line == option),
            "{option} missing:\n{}",
            text(&fragment.stdout)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `cargo install --locked --path cli` into a temporary prefix, then a job run by an
/// ordinary user from `/`: no checkout, no `flint build`, the firmware and init inside the
/// binary, the cache in that user's own directory.
#[test]
fn an_installed_flint_runs_a_job_for_an_ordinary_user_from_the_root_directory() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let prefix = public_scratch("install");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // A target directory of its own in the workspace's, kept, so a rerun is incremental.
    let install = Command::new(&cargo)
        .args(["install", "--locked", "--quiet", "--path"])
        .arg(workspace.join("cli"))
        .arg("--root")
        .arg(&prefix)
        .arg("--target-dir")
        .arg(workspace.join("target/install"))
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    assert_status(&install, 0);
    let installed = prefix.join("bin/flint");

    // The kernel where that user can read it.
    let kernel = prefix.join("kernel");
    std::fs::create_dir_all(&kernel).unwrap();
    for file in ["vmlinuz", "config"] {
        std::fs::copy(minimal_kernel().join(file), kernel.join(file)).unwrap();
    }
    let home = prefix.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut job = if running_as_root() {
        let mut setpriv = Command::new("setpriv");
        setpriv.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(&installed);
        std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
        setpriv
    } else {
        Command::new(&installed)
    };
    let output = job
        .args(["run", "--kernel"])
        .arg(&kernel)
        .args(["--", "sh", "-c", "echo ran; exit 6"])
        .current_dir("/")
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &home)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_status(&output, 6);
    assert_eq!(text(&output.stdout), "ran\n");
    assert!(home.join(".cache/flint/embedded").is_dir(), "the firmware went into the user's cache");
    std::fs::remove_dir_all(&prefix).unwrap();
}

/// Whether the tests run as root (the ordinary-user case is then made with setpriv).
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|meta| std::os::unix::fs::MetadataExt::uid(&meta) == 0)
}

/// fw.bin is the same bytes whoever builds it: another checkout path and another cargo home
/// (panic locations name source files) give the firmware `flint build` made in this tree.
#[test]
fn fw_bin_is_the_same_from_another_checkout_and_cargo_home() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let reference = std::fs::read(workspace.join("out/fw.bin")).expect("out/fw.bin: run scripts/test.sh");
    let other = public_scratch("reproducible");
    let checkout = other.join("elsewhere/flint-checkout");
    std::fs::create_dir_all(&checkout).unwrap();
    for entry in std::fs::read_dir(workspace).unwrap().flatten() {
        let name = entry.file_name();
        if ["target", "out", ".git"].contains(&name.to_str().unwrap_or_default()) {
            continue;
        }
        let status = Command::new("cp").arg("-a").arg(entry.path()).arg(&checkout).status().unwrap();
        assert!(status.success());
    }
    // A cargo home with the same downloaded crates, unpacked again under its own path.
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let other_home = other.join("another-cargo-home");
    std::fs::create_dir_all(other_home.join("registry")).unwrap();
    for part in ["index", "cache"] {
        let status = Command::new("cp")
            .arg("-a")
            .arg(home.join("registry").join(part))
            .arg(other_home.join("registry"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let output = Command::new(env!("CARGO_BIN_EXE_flint"))
        .args(["--quiet", "build"])
        .current_dir(&checkout)
        .env("CARGO_HOME", &other_home)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    assert_status(&output, 0);
    let rebuilt = std::fs::read(checkout.join("out/fw.bin")).unwrap();
    assert!(
        rebuilt == reference,
        "fw.bin differs when built from {} with CARGO_HOME={}",
        checkout.display(),
        other_home.display()
    );
    std::fs::remove_dir_all(&other).unwrap();
}
