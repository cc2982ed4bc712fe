//! Signals sent to `flint run` reach the workload, as with `docker run` and tini: its trap
//! runs and its status comes back; a second Ctrl-C or the end of the grace period stops it,
//! and `--timeout` sends SIGTERM and then SIGKILL, all leaving a `--rw` image clean.
//! Real VMs with the minimal kernel (scripts/test.sh builds it and the firmware).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{assert_status, flint, text};

/// A workload that prints "ready" and then ignores SIGINT and SIGTERM for good.
const STUBBORN: &str = "trap '' INT TERM; echo ready; while :; do sleep 1; done";

/// `flint run --kernel minimal` with `args`, started: its stdout and stderr piped.
fn start(args: &[&str]) -> Child {
    flint()
        .args(["run", "--kernel", "minimal"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flint starts")
}

/// Reads the workload's stdout up to its "ready" line, which it prints once it runs.
fn wait_ready(child: &mut Child) -> BufReader<std::process::ChildStdout> {
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    if line != "ready\n" {
        let mut stderr = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
        panic!("the workload did not say ready: stdout {line:?}, stderr:\n{stderr}");
    }
    stdout
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
}

/// Waits for flint to end, with what remains of its stdout after `stdout`.
fn finish(child: Child, mut stdout: BufReader<std::process::ChildStdout>) -> Output {
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    let mut output = child.wait_with_output().unwrap();
    output.stdout = rest;
    output
}

/// An ext4 image of a small busybox root, for `--rw`.
fn busybox_image(name: &str) -> PathBuf {
    let dir = common::scratch(&format!("flint-signals-{name}"));
    let tree = dir.join("root");
    common::busybox_tree(&tree, &["sh", "echo", "sleep"], b"");
    let image = dir.join("root.ext4");
    let made = flint().args(["rootfs", tree.to_str().unwrap(), "-o", image.to_str().unwrap()]).output().unwrap();
    assert_status(&made, 0);
    image
}

/// The image is clean (unmounted properly: no journal to replay, nothing for fsck to fix)
/// and `/file` in it holds `content`.
#[track_caller]
fn assert_clean_with(image: &Path, content: &str) {
    let fsck = Command::new("e2fsck").args(["-fn"]).arg(image).output().expect("e2fsck runs");
    assert_status(&fsck, 0);
    let header = Command::new("dumpe2fs").arg("-h").arg(image).output().expect("dumpe2fs runs");
    let header = text(&header.stdout);
    assert!(header.lines().any(|l| l.starts_with("Filesystem state:") && l.ends_with(" clean")), "{header}");
    assert!(!header.contains("needs_recovery"), "{header}");
    let file = Command::new("debugfs").args(["-R", "cat /file"]).arg(image).output().expect("debugfs runs");
    assert_eq!(text(&file.stdout), content);
}

#[test]
fn sigterm_runs_the_workloads_trap_and_its_status_comes_back() {
    let mut child = start(&["--", "sh", "-c", "trap 'echo bye; exit 42' TERM; echo ready; while :; do sleep 1; done"]);
    let stdout = wait_ready(&mut child);
    signal(&child, libc::SIGTERM);
    let output = finish(child, stdout);
    assert_status(&output, 42);
    assert_eq!(text(&output.stdout), "bye\n");
}

#[test]
fn a_second_ctrl_c_stops_a_workload_that_ignores_the_first() {
    let mut child = start(&["--", "sh", "-c", STUBBORN]);
    let stdout = wait_ready(&mut child);
    signal(&child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(500));
    let second = Instant::now();
    signal(&child, libc::SIGINT);
    let output = finish(child, stdout);
    assert_status(&output, 130);
    // Not the 10 s grace period, nor the host's backstop.
    assert!(second.elapsed() < Duration::from_secs(8), "took {:?}", second.elapsed());
}

#[test]
fn the_grace_period_ends_in_a_clean_stop_of_a_rw_root() {
    let image = busybox_image("grace");
    let script = format!("echo data > /file; {STUBBORN}");
    let mut child =
        start(&["--root-image", image.to_str().unwrap(), "--rw", "--grace", "1", "--", "sh", "-c", &script]);
    let stdout = wait_ready(&mut child);
    signal(&child, libc::SIGINT);
    let output = finish(child, stdout);
    assert_status(&output, 130);
    assert_clean_with(&image, "data\n");
}

#[test]
fn a_timeout_sends_sigterm_then_sigkill_and_leaves_the_rw_root_clean() {
    let image = busybox_image("timeout");
    let script = format!("echo data > /file; {STUBBORN}");
    let output = flint()
        .args(["run", "--kernel", "minimal", "--root-image", image.to_str().unwrap(), "--rw"])
        .args(["--timeout", "2", "--grace", "1", "--", "sh", "-c", &script])
        .output()
        .unwrap();
    assert_status(&output, 124);
    assert_eq!(text(&output.stdout), "ready\n");
    assert_clean_with(&image, "data\n");

    // A workload that ends on SIGTERM ends at once: its trap runs, the status is still 124.
    let script = "trap 'echo bye; exit 0' TERM; while :; do sleep 1; done";
    let started = Instant::now();
    let output = flint()
        .args(["run", "--kernel", "minimal", "--timeout", "1", "--grace", "30", "--", "sh", "-c", script])
        .output()
        .unwrap();
    assert_status(&output, 124);
    assert_eq!(text(&output.stdout), "bye\n");
    assert!(started.elapsed() < Duration::from_secs(25), "took {:?}", started.elapsed());
}

/// An image left needing journal recovery (a host crash, a killed VM) still boots `--ro` and
/// `--overlay`: the guest replays the journal on a layer QEMU throws away, and the image keeps
/// every byte.
#[test]
fn an_image_that_needs_journal_recovery_boots_read_only_and_stays_unchanged() {
    let image = busybox_image("needs-recovery");
    let mark = Command::new("debugfs").args(["-w", "-R", "feature needs_recovery"]).arg(&image).output().unwrap();
    assert_status(&mark, 0);
    let before = std::fs::read(&image).unwrap();
    for mode in ["--ro", "--overlay"] {
        let output = flint()
            .args(["run", "--kernel", "minimal", "--root-image", image.to_str().unwrap(), mode, "--", "echo", "booted"])
            .output()
            .unwrap();
        assert_status(&output, 0);
        assert_eq!(text(&output.stdout), "booted\n", "{mode}");
    }
    assert!(std::fs::read(&image).unwrap() == before, "the image changed");
}
