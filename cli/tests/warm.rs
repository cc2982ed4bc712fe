//! `flint run --warm`: a VM restored from a snapshot runs the job exactly as a cold one, and
//! shares nothing with the other runs restored from that snapshot.
//!
//! Boots use the minimal kernel (fast). Each test that needs a snapshot of its own gives it a
//! root image of its own (the snapshot's key covers the root).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

mod common;
use common::{assert_status, busybox_tree, flint, scratch, text};

/// What the first warm run of a configuration says on stderr (without --quiet).
const MAKING: &str = "making the warm snapshot";

/// A root image of its own for a test, with a busybox and `data`.
fn root_image(dir: &Path, data: &[u8]) -> PathBuf {
    let tree = dir.join("root");
    busybox_tree(&tree, &["sh", "cat", "echo", "head", "od", "date", "test", "rm"], data);
    let image = dir.join("root.ext4");
    assert_status(&flint().arg("rootfs").arg(&tree).arg("-o").arg(&image).output().unwrap(), 0);
    image
}

/// `flint run --warm` (not quiet: the snapshot's making shows) on `image` with `stdin`.
fn warm(image: &Path, stdin: &[u8], script: &str) -> Output {
    warm_at("--warm", image, stdin, script)
}

/// `flint run` with `flag` (`--warm` or `--warm=ready`), as [`warm`].
fn warm_at(flag: &str, image: &Path, stdin: &[u8], script: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flint"));
    command.args(["run", flag, "--kernel", "minimal", "--root-image"]).arg(image);
    command.args(["--", "sh", "-c", script]);
    with_input(command, stdin)
}

fn with_input(mut command: Command, stdin: &[u8]) -> Output {
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_restored_vm_runs_the_job_exactly() {
    let dir = scratch("warm-exact");
    let image = root_image(&dir, b"");
    let script = "read -r line; echo \"got $line\"; echo to-stderr >&2; exit 42";
    let first = warm(&image, b"hello\n", script);
    assert_status(&first, 42);
    assert_eq!(text(&first.stdout), "got hello\n", "the run that made the snapshot went on with its job");
    assert!(text(&first.stderr).contains(MAKING), "{}", text(&first.stderr));
    for input in ["again\n", "third\n"] {
        let restored = warm(&image, input.as_bytes(), script);
        assert_status(&restored, 42);
        assert_eq!(text(&restored.stdout), format!("got {input}"));
        // flint's own notes (a kernel to rebuild, say) aside.
        let stderr: String = text(&restored.stderr).lines().filter(|line| !line.starts_with("flint: note:")).collect();
        assert_eq!(stderr, "to-stderr", "a restore makes no snapshot and says nothing");
    }
}

#[test]
fn restored_runs_share_no_files_no_randomness_and_keep_the_hosts_time() {
    let dir = scratch("warm-fresh");
    let image = root_image(&dir, b"");
    let script = "test -e /leak && echo leaked; echo written > /leak; head -c 16 /dev/urandom | od -An -tx1; date +%s";
    let runs: Vec<(String, u64)> = (0..3)
        .map(|_| {
            let output = warm(&image, b"", script);
            assert_status(&output, 0);
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
            (text(&output.stdout), now)
        })
        .collect();
    let mut random = Vec::new();
    for (stdout, host_time) in &runs {
        let lines: Vec<&str> = stdout.lines().collect();
        let [bytes, time] = lines[..] else { panic!("a file leaked between runs, or odd output: {stdout:?}") };
        random.push(bytes.to_string());
        let guest_time: u64 = time.trim().parse().unwrap();
        assert!(guest_time.abs_diff(*host_time) <= 2, "guest clock {guest_time}, host {host_time}");
    }
    random.sort();
    random.dedup();
    assert_eq!(random.len(), runs.len(), "restored runs read the same random bytes: {random:?}");
}

#[test]
fn a_changed_root_makes_a_new_snapshot() {
    let dir = scratch("warm-stale");
    let image = root_image(&dir, b"before");
    let first = warm(&image, b"", "cat /data.bin");
    assert_status(&first, 0);
    assert_eq!(text(&first.stdout), "before");
    let tree = dir.join("root");
    std::fs::write(tree.join("data.bin"), b"after").unwrap();
    assert_status(&flint().arg("rootfs").arg(&tree).arg("-o").arg(&image).output().unwrap(), 0);
    let changed = warm(&image, b"", "cat /data.bin");
    assert_status(&changed, 0);
    assert_eq!(text(&changed.stdout), "after");
    assert!(text(&changed.stderr).contains(MAKING), "the old snapshot was used: {}", text(&changed.stderr));
}

#[test]
fn concurrent_warm_runs_from_one_snapshot() {
    let dir = scratch("warm-concurrent");
    let image = root_image(&dir, b"");
    // From a cold cache: one makes the snapshot, the other waits for it.
    let spawn = |n: usize| {
        let image = image.clone();
        std::thread::spawn(move || {
            (n, warm(&image, format!("{n}\n").as_bytes(), "read -r n; echo \"run $n\"; exit $n"))
        })
    };
    for round in 0..2 {
        let runs: Vec<_> = (1..=3).map(spawn).collect();
        for run in runs {
            let (n, output) = run.join().unwrap();
            assert_status(&output, n as i32);
            assert_eq!(text(&output.stdout), format!("run {n}\n"), "round {round}");
        }
    }
}

/// A workload prepares state, says it is ready, and then each run's request resumes it right
/// there: with the state prepared once, fresh random bytes, and nothing of what it wrote
/// before it was ready.
#[test]
fn a_workload_snapshotted_when_ready_answers_each_request() {
    let dir = scratch("warm-ready");
    let image = root_image(&dir, b"");
    let script = "echo prepared > /tmp/state; echo before-ready; echo > \"$FLINT_READY\"; \
                  read -r request; echo \"$request $(cat /tmp/state) $(head -c 8 /dev/urandom | od -An -tx1)\"; exit 5";
    let mut random = Vec::new();
    for n in 0..3 {
        let output = warm_at("--warm=ready", &image, format!("request{n}\n").as_bytes(), script);
        assert_status(&output, 5);
        let stdout = text(&output.stdout);
        let rest = stdout.strip_prefix(&format!("request{n} prepared ")).unwrap_or_else(|| panic!("{stdout:?}"));
        random.push(rest.to_string());
        assert_eq!(text(&output.stderr).contains("making the warm snapshot"), n == 0, "{}", text(&output.stderr));
    }
    random.sort();
    random.dedup();
    assert_eq!(random.len(), 3, "the restored workloads read the same random bytes: {random:?}");
}

#[test]
fn a_workload_that_never_says_ready_is_named() {
    let dir = scratch("warm-never-ready");
    let image = root_image(&dir, b"");
    let output = warm_at("--warm=ready", &image, b"", "exit 0");
    assert_status(&output, 125);
    assert!(text(&output.stderr).contains("must write to the FIFO $FLINT_READY names"), "{}", text(&output.stderr));
}

#[test]
fn a_writable_root_is_refused() {
    let output = flint().args(["run", "--warm", "--rw", "--kernel", "minimal", "--", "true"]).output().unwrap();
    assert_status(&output, 125);
    assert!(text(&output.stderr).contains("--warm cannot write the root (--rw)"), "{}", text(&output.stderr));
}
