//! The untrusted guest's QEMU, through the binary: sandboxed, unprivileged, gone with flint,
//! and given user paths and numbers that cannot turn into options or wrap around.
//!
//! Boots use the minimal kernel (fast) and are few: one job that is killed mid-run, one that
//! boots from an image whose path has a comma. scripts/test.sh installs and builds all of it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;
use common::{assert_status, children, comm, text, Flint};
use std::time::{Duration, Instant};

/// flint with its temporary directories in `tmp`.
fn flint(tmp: &Path) -> Command {
    let mut command = common::flint();
    command.env_remove("XDG_RUNTIME_DIR").env("TMPDIR", tmp);
    command
}

fn scratch(name: &str) -> PathBuf {
    common::scratch(&format!("conf-{name}"))
}

/// A line of /proc/PID/status, after its `Name:`.
fn status_field(pid: u32, name: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find_map(|line| line.strip_prefix(&format!("{name}:"))).expect("a status field");
    line.trim().to_string()
}

/// No longer running: gone, or a zombie that its new parent has not reaped yet.
fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => true,
    }
}

#[test]
fn a_running_job_is_confined_and_dies_with_flint() {
    let tmp = scratch("kill");
    let mut flint = Flint(
        flint(&tmp)
            .args(["run", "--kernel", "minimal", "--", "sh", "-c", "echo started; sleep 60"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(flint.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "started\n", "the job did not start");

    let pid = flint.0.id();
    let qemu =
        children(pid).into_iter().find(|&child| comm(child) == "qemu-system-x86").expect("QEMU is flint's child");
    assert_eq!(status_field(qemu, "Seccomp"), "2", "QEMU runs without its seccomp filter");
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let uids = status_field(qemu, "Uid");
        assert!(uids.split_whitespace().all(|uid| uid != "0"), "QEMU kept root: Uid {uids}");
        assert_eq!(status_field(qemu, "CapEff"), "0000000000000000");
    }
    let watchdogs = children(qemu);

    flint.0.kill().unwrap();
    flint.0.wait().unwrap();
    let killed = Instant::now();
    for process in std::iter::once(qemu).chain(watchdogs) {
        while !ended(process) {
            assert!(killed.elapsed() < Duration::from_secs(2), "{} {process} outlived flint", comm(process));
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // QEMU's watchdog removed the temporary directory the SIGKILLed flint could not.
    let left: Vec<String> =
        std::fs::read_dir(&tmp).unwrap().flatten().map(|entry| entry.file_name().into_string().unwrap()).collect();
    assert!(!left.iter().any(|name| name.starts_with(&format!("flint-{pid}-"))), "left behind: {left:?}");
}

/// `--root-image 'a,snapshot=on.img'` is one file to QEMU, not a file and an option; the run
/// also removes the temporary directory a killed run left.
#[test]
fn a_root_image_path_with_a_comma_boots() {
    let dir = scratch("comma");
    let tree = dir.join("root");
    common::busybox_tree(&tree, &["cat"], b"from the comma image");
    let image = dir.join("a,snapshot=on.img");
    let made = flint(&dir).arg("rootfs").arg(&tree).arg("-o").arg(&image).output().unwrap();
    assert_status(&made, 0);

    let run = |extra: &str| {
        let mut command = flint(&dir);
        command.args(["run", "--kernel", "minimal", extra, "--root-image"]).arg(&image);
        command.args(["--", "cat", "/data.bin"]).output().unwrap()
    };
    let printed = run("--print-cmd");
    assert_status(&printed, 0);
    assert!(text(&printed.stdout).contains("a,,snapshot=on.img,format=raw"), "{}", text(&printed.stdout));

    let dead = {
        let mut child = Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        child.id()
    };
    let stale = dir.join(format!("flint-{dead}-1f"));
    std::fs::create_dir(&stale).unwrap();
    let output = run("--ro");
    assert_status(&output, 0);
    assert_eq!(text(&output.stdout), "from the comma image");
    assert!(!stale.exists(), "the dead run's temporary directory is still there");
}

#[test]
fn a_timeout_past_the_limit_is_refused() {
    let tmp = scratch("timeout");
    for huge in ["18446744073709551.999", "18446744073709551616"] {
        let output = flint(&tmp).args(["run", "--timeout", huge, "--", "true"]).output().unwrap();
        assert_status(&output, 125);
        assert!(text(&output.stderr).contains("at most 18446744073709551.615 seconds"), "{}", text(&output.stderr));
    }
}

/// The printed command is the confined one (and stays runnable: `-runas` only as root).
#[test]
fn print_cmd_shows_the_sandbox() {
    let tmp = scratch("print");
    let output = flint(&tmp).args(["run", "--kernel", "minimal", "--print-cmd", "--", "true"]).output().unwrap();
    assert_status(&output, 0);
    let command = text(&output.stdout);
    assert!(command.contains(" -sandbox on,obsolete=deny,"), "{command}");
    // SAFETY: geteuid(2) cannot fail.
    assert_eq!(command.contains(" -runas nobody "), unsafe { libc::geteuid() } == 0, "{command}");
}
