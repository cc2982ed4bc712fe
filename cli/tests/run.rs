//! `flint run` end to end, through the binary: real VMs (TCG on CI) with the firmware from
//! `flint build`, Debian's cloud kernel and the default busybox root from the cache.
//! scripts/test.sh installs and builds all of it first.
//!
//! Each boot takes a few seconds under TCG, so boots are few and each checks several things;
//! the bad-input tests fail before any VM starts.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

mod common;
use common::{assert_status, busybox_tree, flint, text};
use std::time::{Duration, Instant};

/// Runs flint with `stdin` as its input, returning everything it did.
fn run_with_input(command: &mut Command, stdin: &[u8]) -> Output {
    let mut child =
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("flint starts");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    output
}

fn run(args: &[&str]) -> Output {
    run_with_input(flint().args(args), b"")
}

/// Deterministic bytes covering every value (xorshift64).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn scratch(name: &str) -> PathBuf {
    common::scratch(&format!("flint-cli-{name}"))
}

#[test]
fn stdin_reaches_the_workload_and_eof_ends_it() {
    let output = run_with_input(flint().args(["run", "--", "cat"]), b"data\n");
    assert_status(&output, 0);
    assert_eq!(text(&output.stdout), "data\n");
    assert_eq!(text(&output.stderr), "", "nothing but the workload's stderr reaches stderr");
}

#[test]
fn stdout_and_stderr_stay_apart_and_the_status_comes_back() {
    let output = run(&["run", "--", "sh", "-c", "echo out; echo err >&2; echo more; exit 3"]);
    assert_status(&output, 3);
    assert_eq!(text(&output.stdout), "out\nmore\n");
    assert_eq!(text(&output.stderr), "err\n");
}

#[test]
fn status_255_comes_back_exactly() {
    // 255 does not survive QEMU's isa-debug-exit encoding ((255 << 1) | 1 wraps): it must
    // come from the status port.
    assert_status(&run(&["run", "--", "sh", "-c", "exit 255"]), 255);
}

#[test]
fn death_by_signal_is_128_plus_the_signal() {
    assert_status(&run(&["run", "--", "sh", "-c", "kill -9 $$"]), 137);
}

/// On `pc` (virtio over PCI), with a megabyte each way.
#[test]
fn binary_data_crosses_byte_exact_both_ways_on_pc() {
    let dir = scratch("binary");
    let tree = dir.join("root");
    let file = noise(1 << 20, 0x9e37_79b9_7f4a_7c15);
    busybox_tree(&tree, &["sh", "cat", "echo", "test"], &file);
    let input = noise(1 << 20, 42);
    let output = run_with_input(
        flint().args(["run", "--machine", "pc", "--root"]).arg(&tree).args(["--", "sh", "-c", "cat /data.bin; cat"]),
        &input,
    );
    assert_status(&output, 0);
    assert_eq!(output.stdout.len(), 2 << 20, "stderr:\n{}", text(&output.stderr));
    assert!(output.stdout[..1 << 20] == file[..], "the file arrived altered");
    assert!(output.stdout[1 << 20..] == input[..], "stdin came back altered");
}

#[test]
fn timeout_kills_the_workload_with_status_124() {
    let started = Instant::now();
    let output = run(&["run", "--timeout", "2", "--", "sleep", "60"]);
    assert_status(&output, 124);
    assert!(text(&output.stderr).contains("--timeout"), "{}", text(&output.stderr));
    assert!(started.elapsed() < Duration::from_secs(55), "took {:?}", started.elapsed());
}

#[test]
fn environment_directory_user_and_q35() {
    let output = run(&[
        "run",
        "--machine",
        "q35",
        "--env",
        "GREETING=hello there",
        "--cwd",
        "/tmp",
        "--user",
        "1000:100",
        "--",
        "sh",
        "-c",
        "echo \"$GREETING|$(pwd)|$(id -u):$(id -g)|$HOME\"",
    ]);
    assert_status(&output, 0);
    assert_eq!(text(&output.stdout), "hello there|/tmp|1000:100|/root\n");
}

#[test]
fn rw_writes_the_image_and_ro_refuses_writes() {
    let dir = scratch("rw");
    busybox_tree(&dir.join("root"), &["sh", "cat", "echo", "test"], b"");
    let image = dir.join("root.ext4");
    let made = run(&["rootfs", dir.join("root").to_str().unwrap(), "-o", image.to_str().unwrap()]);
    assert_status(&made, 0);
    let image = image.to_str().unwrap();
    assert_status(&run(&["run", "--root-image", image, "--rw", "--", "sh", "-c", "echo kept > /kept"]), 0);
    let output = run(&[
        "run",
        "--root-image",
        image,
        "--ro",
        "--",
        "sh",
        "-c",
        "cat /kept; echo x > /new 2>/dev/null || echo read-only",
    ]);
    assert_status(&output, 0);
    assert_eq!(text(&output.stdout), "kept\nread-only\n");
}

#[test]
fn erofs_root_with_overlay_and_a_missing_program() {
    let dir = scratch("erofs");
    busybox_tree(&dir.join("root"), &["sh", "cat", "echo", "test"], b"payload");
    let image = dir.join("root.erofs");
    let made = run(&["rootfs", dir.join("root").to_str().unwrap(), "-o", image.to_str().unwrap(), "--fs", "erofs"]);
    assert_status(&made, 0);
    let image = image.to_str().unwrap();
    let output = run(&["run", "--root-image", image, "--", "sh", "-c", "echo written > /new && cat /new /data.bin"]);
    assert_status(&output, 0);
    assert_eq!(text(&output.stdout), "written\npayload");
    // No directory to check on the host: the guest init reports it.
    let missing = run(&["run", "--root-image", image, "--", "/bin/nope"]);
    assert_status(&missing, 127);
    assert!(
        text(&missing.stderr).contains("flint: error: in the guest: cannot execute /bin/nope"),
        "{}",
        text(&missing.stderr)
    );
}

// Bad input: each fails before a VM starts, with one `flint: error:` line and status 125
// (126/127 for a program that cannot run).

#[track_caller]
fn assert_fails(output: &Output, status: i32, needle: &str) {
    assert_status(output, status);
    let stderr = text(&output.stderr);
    assert!(stderr.starts_with("flint: error: "), "{stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in:\n{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn unknown_flags_are_flint_errors() {
    assert_fails(&run(&["run", "--bogus", "--", "true"]), 125, "unexpected argument '--bogus'");
    assert_fails(&run(&["run", "--ro", "--rw", "--", "true"]), 125, "cannot be used with");
    assert_fails(&run(&["run", "--timeout", "soon", "--", "true"]), 125, "expected seconds");
    assert_fails(&run(&["frobnicate"]), 125, "unrecognized subcommand");
}

#[test]
fn a_missing_kernel_is_named() {
    assert_fails(&run(&["run", "--kernel", "/nonexistent/vmlinuz", "--", "true"]), 125, "kernel /nonexistent/vmlinuz");
    assert_fails(&run(&["run", "--kernel", "no-such-kernel", "--", "true"]), 125, "no kernel named \"no-such-kernel\"");
    let dir = scratch("not-a-kernel");
    std::fs::write(dir.join("vmlinuz"), vec![0u8; 4096]).unwrap();
    assert_fails(
        &run(&["run", "--kernel", dir.join("vmlinuz").to_str().unwrap(), "--", "true"]),
        125,
        "is not a Linux bzImage",
    );
}

/// A bzImage whose compressed payload is cut short cannot become a PVH vmlinux: named, before
/// any VM starts.
#[test]
fn a_truncated_kernel_is_named_for_pvh() {
    let cached = flint::env::cache_dir().unwrap().join("kernels/debian-cloud/vmlinuz");
    let image = std::fs::read(&cached).expect("Debian's kernel in the cache: run scripts/test.sh");
    let dir = scratch("truncated-kernel");
    let truncated = dir.join("vmlinuz");
    std::fs::write(&truncated, &image[..image.len() / 2]).unwrap();
    assert_fails(
        &run(&["run", "--boot", "pvh", "--kernel", truncated.to_str().unwrap(), "--", "true"]),
        125,
        "truncated",
    );
}

/// `flint kernel --pvh` turns any bzImage into a PVH-bootable vmlinux, or says why it cannot.
#[test]
fn kernel_pvh_extracts_a_vmlinux_or_names_the_problem() {
    let cached = flint::env::cache_dir().unwrap().join("kernels/debian-cloud/vmlinuz");
    let output = run(&["kernel", "--pvh", "--from", cached.to_str().unwrap()]);
    assert_status(&output, 0);
    let vmlinux = std::fs::read(text(&output.stdout).trim()).expect("the printed path exists");
    assert!(loader::pvh::entry_point(&vmlinux).is_ok(), "not a vmlinux with a PVH note");

    let image = std::fs::read(&cached).expect("Debian's kernel in the cache: run scripts/test.sh");
    let dir = scratch("kernel-pvh");
    let truncated = dir.join("vmlinuz");
    std::fs::write(&truncated, &image[..image.len() / 2]).unwrap();
    assert_fails(&run(&["kernel", "--pvh", "--from", truncated.to_str().unwrap()]), 125, "truncated");
    assert_fails(&run(&["kernel", "--from", truncated.to_str().unwrap()]), 125, "--pvh");
}

#[test]
fn a_missing_or_unusable_root_is_named() {
    assert_fails(&run(&["run", "--root-image", "/nonexistent.img", "--", "true"]), 125, "root image /nonexistent.img");
    assert_fails(&run(&["run", "--root", "/nonexistent-dir", "--", "true"]), 125, "root directory /nonexistent-dir");
    let dir = scratch("bad-root");
    std::fs::write(dir.join("file"), b"not a filesystem").unwrap();
    let file = dir.join("file");
    assert_fails(&run(&["run", "--root", file.to_str().unwrap(), "--", "true"]), 125, "is not a directory");
    let mut junk = vec![0u8; 8192];
    junk[..4].copy_from_slice(b"junk");
    std::fs::write(&file, junk).unwrap();
    assert_fails(&run(&["run", "--root-image", file.to_str().unwrap(), "--", "true"]), 125, "neither ext4 nor erofs");
    // A directory that cannot become an image.
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(tree.join("socket")).unwrap();
    assert_fails(
        &run(&["rootfs", tree.to_str().unwrap(), "-o", dir.join("x.img").to_str().unwrap()]),
        125,
        "is a socket",
    );
    assert_fails(&run(&["run", "--root", tree.to_str().unwrap(), "--", "true"]), 125, "is a socket");
}

#[test]
fn a_program_missing_from_the_root_is_127_before_booting() {
    let started = Instant::now();
    assert_fails(
        &run(&["run", "--", "no-such-program", "x"]),
        127,
        "no-such-program: command not found in the root filesystem",
    );
    assert_fails(&run(&["run", "--", "/bin/nope"]), 127, "/bin/nope: no such file in the root filesystem");
    assert_fails(&run(&["run", "--", "/etc/passwd"]), 126, "is not an executable file");
    assert_fails(&run(&["run", "--cwd", "/nowhere", "--", "true"]), 125, "--cwd /nowhere: no such directory");
    assert!(started.elapsed() < Duration::from_secs(30), "no VM should have started");
}

#[test]
fn missing_qemu_is_named() {
    let output = run_with_input(flint().env("PATH", "/nonexistent").args(["run", "--", "true"]), b"");
    assert_fails(&output, 125, "qemu-system-x86_64 not found in PATH: install QEMU");
}

#[test]
fn bad_environment_entries_are_named() {
    assert_fails(&run(&["run", "--env", "=x", "--", "true"]), 125, "--env =x");
    assert_fails(&run(&["run", "--env", "FLINT_TEST_SURELY_UNSET", "--", "true"]), 125, "no such variable on the host");
}

#[test]
fn print_cmd_prints_a_runnable_qemu_command() {
    let output = run(&["run", "--accel", "tcg", "--print-cmd", "--", "sh", "-c", "echo 'a b'"]);
    assert_status(&output, 0);
    let command = text(&output.stdout);
    assert!(command.starts_with("qemu-system-x86_64 "), "{command}");
    for needle in [
        "-bios ",
        "-kernel ",
        "-initrd ",
        "opt/flint/add-init",
        "virtserialport",
        "flint.argv=c2g,LWM,ZWNobyAnYSBiJw,",
        "flint.status=/dev/vport0p4",
    ] {
        assert!(command.contains(needle), "{needle} missing from {command}");
    }
}

/// `--append` reaches the kernel after flint's own parameters, where a later value wins, and
/// reaches the modules the init loads (Debian's virtio_blk is one) as modprobe would pass
/// them; `--untuned` leaves flint's tuning out.
#[test]
fn append_adds_kernel_parameters_last_and_untuned_drops_the_tuning() {
    let script = "cat /proc/cmdline; cat /sys/module/virtio_blk/parameters/queue_depth";
    let append = "flint_test.a=1 flint_test.b=2 virtio_blk.queue_depth=16";
    let output = run(&["run", "--append", append, "--", "sh", "-c", script]);
    assert_status(&output, 0);
    let stdout = text(&output.stdout);
    let (cmdline, queue_depth) = stdout.trim_end().rsplit_once('\n').unwrap();
    // The firmware appends its own timestamps (flint.fwtsc=) after everything.
    assert!(cmdline.contains(&format!(" flint.status=/dev/vport0p4 {append} ")), "{cmdline}");
    assert!(cmdline.contains(" noreplace-smp "), "flint's tuning is gone: {cmdline}");
    assert_eq!(queue_depth, "16", "the module parameter did not reach virtio_blk");

    let output = run(&["run", "--untuned", "--", "cat", "/proc/cmdline"]);
    assert_status(&output, 0);
    let cmdline = text(&output.stdout);
    assert!(!cmdline.contains("noreplace-smp") && !cmdline.contains("i8042"), "tuned: {cmdline}");
}

/// A kernel that never starts the init (here: no init where it looks, and `panic=0` makes
/// it wait forever) is stopped at `--boot-timeout`, with its console shown.
#[test]
fn a_kernel_that_never_starts_the_init_is_stopped() {
    let started = Instant::now();
    let output = run(&["run", "--boot-timeout", "5", "--append", "rdinit=/flint-test-absent panic=0", "--", "true"]);
    assert_status(&output, 125);
    let stderr = text(&output.stderr);
    assert!(stderr.contains("did not start flint's init within --boot-timeout 5s"), "{stderr}");
    assert!(stderr.contains("Kernel panic"), "the console is shown: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(60), "stopped at the boot timeout: {:?}", started.elapsed());
}

#[test]
fn kernel_list_shows_the_cache() {
    let output = run(&["kernel", "--list"]);
    assert_status(&output, 0);
    assert!(text(&output.stdout).contains("debian-cloud"), "{}", text(&output.stdout));
}

/// `--timeline`: every phase is there, in order, none negative, and together they make up the
/// QEMU run the host measured (by construction, up to float rounding; a wrong TSC rate or a
/// missing stamp shows up as a negative or absent phase).
#[test]
fn timeline_phases_cover_the_run() {
    let json = scratch("timeline").join("timeline.json");
    let output = run(&["run", "--timeline", "--timeline-json", json.to_str().unwrap(), "--", "true"]);
    assert_status(&output, 0);
    let stderr = text(&output.stderr);
    for phase in ["qemu start", "firmware", "kernel", "init", "workload", "shutdown", "total"] {
        assert!(stderr.contains(phase), "table lacks {phase}: {stderr}");
    }
    let timeline: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let phases = timeline["phases"].as_array().unwrap();
    let names: Vec<&str> = phases.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["qemu start", "firmware", "kernel", "init", "workload", "shutdown"]);
    for phase in phases {
        assert!(phase["ms"].as_f64().unwrap() >= 0.0, "negative phase: {phase}");
    }
    let sum: f64 = phases.iter().map(|p| p["ms"].as_f64().unwrap()).sum();
    let total = timeline["total_ms"].as_f64().unwrap();
    assert!((sum - total).abs() < 0.01, "phases add up to {sum} ms, the host measured {total} ms");
    assert!(timeline["tsc_hz"].as_u64().unwrap() > 100_000_000, "implausible TSC rate: {timeline}");
}

/// microvm, the default machine: no PCI; the root disk and the four ports are virtio-mmio
/// devices (Debian's kernel loads virtio_mmio from the module initramfs). Input, both outputs
/// and a status that only the status port carries exactly all cross, and the disk is the one
/// from ACPI's LNRO0005, with the init's 2 MiB read-ahead.
#[test]
fn the_default_microvm_runs_from_a_virtio_mmio_root() {
    let input = noise(256 << 10, 7);
    let output = run_with_input(
        flint()
            .args(["run", "--", "sh", "-c"])
            .arg("cat; echo; readlink -f /sys/block/vda; cat /sys/block/vda/queue/read_ahead_kb; ls /sys/bus/pci/devices | wc -l; echo err >&2; exit 255"),
        &input,
    );
    assert_status(&output, 255);
    let (echoed, rest) = output.stdout.split_at(input.len().min(output.stdout.len()));
    assert!(echoed == input, "stdin came back altered; stderr:\n{}", text(&output.stderr));
    let rest = text(rest);
    assert!(rest.starts_with("\n/sys/devices/platform/LNRO0005:"), "root disk not on virtio-mmio: {rest}");
    assert!(rest.ends_with("/block/vda\n2048\n0\n"), "read-ahead, or PCI devices on microvm: {rest}");
    assert_eq!(text(&output.stderr), "err\n");
}

/// On microvm with one CPU and a kernel that reads virtio-mmio devices from its command line
/// (the minimal one), the guest has no ACPI unless asked; the disk is found either way.
#[test]
fn microvm_drops_acpi_for_a_kernel_that_does_not_need_it() {
    let script = "test -e /sys/firmware/acpi && echo acpi || echo none; readlink -f /sys/block/vda";
    let output = run(&["run", "--kernel", "minimal", "--", "sh", "-c", script]);
    assert_status(&output, 0);
    let stdout = text(&output.stdout);
    assert!(stdout.starts_with("none\n/sys/devices/virtio-mmio-cmdline/"), "{stdout}");
    let output = run(&["run", "--kernel", "minimal", "--acpi", "on", "--", "sh", "-c", script]);
    assert_status(&output, 0);
    let stdout = text(&output.stdout);
    assert!(stdout.starts_with("acpi\n/sys/devices/platform/LNRO0005:"), "{stdout}");
}

/// The default overlay root lets a workload remove a directory of the image and make it
/// again, empty: the overlay marks it opaque with an extended attribute on its tmpfs layer.
#[test]
fn the_overlay_root_replaces_a_directory_of_the_image() {
    for kernel in ["minimal", "debian-cloud"] {
        let script = "rm -rf /etc && mkdir /etc && ls -A /etc | wc -l";
        let output = run(&["run", "--kernel", kernel, "--", "sh", "-c", script]);
        assert_status(&output, 0);
        assert_eq!(text(&output.stdout), "0\n", "{kernel}: {}", text(&output.stderr));
    }
}

/// flint strips the signatures of the modules it hands its init (the kernel then marks itself
/// tainted with unsigned modules, 8192), unless the command line demands signed modules.
#[test]
fn modules_load_unsigned_unless_the_command_line_enforces_signatures() {
    for (append, taint) in [(&[][..], "8192\n"), (&["--append", "module.sig_enforce=1"][..], "0\n")] {
        let output = run(&[&["run"][..], append, &["--", "cat", "/proc/sys/kernel/tainted"][..]].concat());
        assert_status(&output, 0);
        assert_eq!(text(&output.stdout), taint, "{append:?}: {}", text(&output.stderr));
    }
}

/// `--acpi off` where Linux would lose its disk or its CPUs is refused before booting.
#[test]
fn acpi_off_is_refused_where_it_cannot_work() {
    for (args, needle) in [
        (&["--machine", "pc"][..], "--acpi off works on microvm only"),
        (&["--kernel", "minimal", "--cpus", "2"][..], "--acpi off boots one CPU only"),
        (&[][..], "kernel debian-cloud does not read them there"),
    ] {
        let output = run(&[&["run", "--acpi", "off"][..], args, &["--", "true"][..]].concat());
        assert_status(&output, 125);
        assert!(text(&output.stderr).contains(needle), "{args:?}: {}", text(&output.stderr));
    }
}

/// The minimal kernel has virtio-mmio built in; its bzImage (not the PVH entry) boots too.
#[test]
fn microvm_with_the_minimal_kernel_as_bzimage() {
    let output = run_with_input(
        flint().args(["run", "--machine", "microvm", "--kernel", "minimal", "--boot", "bzimage", "--", "cat"]),
        b"data\n",
    );
    assert_status(&output, 0);
    assert_eq!(text(&output.stdout), "data\n");
    assert_eq!(text(&output.stderr), "");
}
