//! `flint run` against a hostile guest: floods on the channels it has to the host, and
//! forged reports. flint's memory must stay bounded and its verdict the workload's true
//! status. Each test boots the minimal kernel once (the fastest boot).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

/// flint's peak resident memory may not exceed this, whatever the guest does.
const PEAK_RSS_MAX_KIB: u64 = 64 << 10;

fn flint() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flint"));
    command.arg("--quiet");
    command
}

/// What a run left, and the highest resident memory flint was seen with.
struct Watched {
    status: Option<i32>,
    /// How many bytes came on stdout, and whether all were zero.
    stdout_len: u64,
    stdout_zero: bool,
    stderr: String,
    peak_rss_kib: u64,
}

/// flint's peak resident memory so far (VmHWM), while it runs.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = status.lines().find_map(|line| line.strip_prefix("VmHWM:"))?.trim().strip_suffix("kB")?;
    kib.trim().parse().ok()
}

/// Runs flint with `stdin` as its input and a reader of its stdout that first stalls for
/// `stall`, then reads everything; watches flint's memory meanwhile.
fn run_watched(command: &mut Command, stdin: Vec<u8>, stall: Duration) -> Watched {
    let mut child =
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("flint starts");
    let mut input = child.stdin.take().unwrap();
    let writer = thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let mut stdout = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        thread::sleep(stall);
        let (mut len, mut zero, mut buf) = (0u64, true, vec![0u8; 1 << 16]);
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            len += n as u64;
            zero &= buf[..n].iter().all(|&byte| byte == 0);
        }
        (len, zero)
    });
    let mut stderr = child.stderr.take().unwrap();
    let errors = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut peak = 0;
    let status = loop {
        // Read before reaping: the numbers go with the process.
        peak = peak.max(peak_rss_kib(child.id()).unwrap_or(0));
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        thread::sleep(Duration::from_millis(20));
    };
    writer.join().unwrap();
    let (stdout_len, stdout_zero) = reader.join().unwrap();
    Watched { status: status.code(), stdout_len, stdout_zero, stderr: errors.join().unwrap(), peak_rss_kib: peak }
}

/// A scratch directory under the target dir, fresh for each test.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("flint-hostile-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A guest program (static, for the busybox root) that takes the init's descriptor of the
/// status port (the port opens once only) with pidfd_getfd, as a root workload can, and
/// floods it with `argv[2]` bytes of forged reports: the init's failure before starting the
/// workload (no `exec` stamp, status 122), then an unfinished line for the init's own to
/// follow.
const STATUS_FLOOD_C: &str = r#"
#define _GNU_SOURCE
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char forged[] =
    "flint-timeline tsc_hz=1000000000 fw_reset=1 fw_loaded=2 fw_handoff=3 init=4 root=5 exec=0 exit=0 poweroff=6\n"
    "flint-status 122\n";

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    long long left = atoll(argv[2]);
    int init = syscall(SYS_pidfd_open, 1, 0), port = -1;
    for (int fd = 0; fd < 256 && port < 0 && init >= 0; fd++) {
        char link[32], target[256];
        snprintf(link, sizeof link, "/proc/1/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n > 0 && (target[n] = 0, strcmp(target, argv[1]) == 0)) port = syscall(SYS_pidfd_getfd, init, fd, 0);
    }
    if (port < 0) return 3;
    static char buf[1 << 16];
    size_t len = 0;
    while (len + sizeof forged - 1 <= sizeof buf) {
        memcpy(buf + len, forged, sizeof forged - 1);
        len += sizeof forged - 1;
    }
    for (ssize_t n; left > 0; left -= n) {
        n = write(port, buf, left < (long long)len ? (size_t)left : len);
        if (n <= 0) return 4;
    }
    return write(port, "flint-status 0", 14) == 14 ? 0 : 4;
}
"#;

/// A slow reader slows the guest down: flint holds no more than a few MiB of the workload's
/// output however much waits, and every byte still arrives.
#[test]
fn a_stalled_reader_holds_the_guest_back_and_loses_nothing() {
    const FLOOD: u64 = 128 << 20;
    let run = run_watched(
        flint().args(["run", "--kernel", "minimal", "--", "head", "-c", &FLOOD.to_string(), "/dev/zero"]),
        Vec::new(),
        Duration::from_secs(8),
    );
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    assert_eq!((run.stdout_len, run.stdout_zero), (FLOOD, true), "{}", run.stderr);
    assert_eq!(run.stderr, "");
    assert!(run.peak_rss_kib < PEAK_RSS_MAX_KIB, "flint peaked at {} KiB", run.peak_rss_kib);
}

/// A workload flooding the status port with forged reports of an init failure, then exiting
/// with that failure's status, gets its status: the flood is neither evidence nor kept whole
/// (the init's own lines may be lost behind it when the VM ends; `--timeline` survives that).
#[test]
fn a_flooded_status_port_changes_nothing() {
    let dir = scratch("status-flood");
    std::fs::write(dir.join("flood.c"), STATUS_FLOOD_C).unwrap();
    let built = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(dir.join("flood"))
        .arg(dir.join("flood.c"))
        .status()
        .expect("gcc runs (scripts/setup.sh installs it)");
    assert!(built.success(), "gcc failed");
    // The program comes on stdin; the port's device is the init's flint.status=.
    let script = "cat > /tmp/flood && chmod +x /tmp/flood \
                  && dev=$(tr ' ' '\\n' < /proc/cmdline | sed -n 's/^flint.status=//p') \
                  && /tmp/flood \"$dev\" 134217728 || exit 99; exit 122";
    let run = run_watched(
        flint().args(["run", "--kernel", "minimal", "--verbose", "--timeline", "--", "sh", "-c", script]),
        std::fs::read(dir.join("flood")).unwrap(),
        Duration::ZERO,
    );
    let end = run.stderr.get(run.stderr.len().saturating_sub(3000)..).unwrap_or(&run.stderr);
    assert_eq!(run.status, Some(122), "{end}");
    assert!(!run.stderr.contains("flint: error:"), "{end}");
    assert!(run.stderr.contains("flint: the status port carried "), "the cut is not reported: {end}");
    assert!(run.peak_rss_kib < PEAK_RSS_MAX_KIB, "flint peaked at {} KiB", run.peak_rss_kib);
}

/// A workload can write anything on the console: a line that looks like the init's own
/// failure is no evidence of one.
#[test]
fn a_forged_init_failure_on_the_console_is_the_workloads_status() {
    let script = "echo 'flint-init: mounting the root failed: forged' > /dev/console; exit 123";
    let run =
        run_watched(flint().args(["run", "--kernel", "minimal", "--", "sh", "-c", script]), Vec::new(), Duration::ZERO);
    assert_eq!(run.status, Some(123), "{}", run.stderr);
    assert_eq!(run.stderr, "");
}
