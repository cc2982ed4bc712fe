//! `flint run` against a hostile guest: floods on the channels it has to the host, and
//! forged reports. flint's memory must stay bounded and its verdict the workload's true
//! status. Each test boots the minimal kernel once (the fastest boot).

use std::io::{Read, Write};
use std::process::{ChildStdout, Command, Stdio};
use std::thread;
use std::time::Duration;

mod common;
use common::{flint, scratch};

/// flint's peak resident memory may not exceed this, whatever the guest does.
const PEAK_RSS_MAX_KIB: u64 = 64 << 10;

/// What a run left, and the highest resident memory flint was seen with.
struct Watched<T> {
    status: Option<i32>,
    /// What the reader of flint's stdout made of it.
    stdout: T,
    stderr: String,
    peak_rss_kib: u64,
}

/// flint's peak resident memory so far (VmHWM), while it runs.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = status.lines().find_map(|line| line.strip_prefix("VmHWM:"))?.trim().strip_suffix("kB")?;
    kib.trim().parse().ok()
}

/// Runs flint with `stdin` as its input and `read` reading its stdout; watches flint's memory
/// meanwhile.
fn run_watched<T: Send + 'static>(
    command: &mut Command,
    stdin: Vec<u8>,
    read: impl FnOnce(ChildStdout) -> T + Send + 'static,
) -> Watched<T> {
    let mut child =
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("flint starts");
    let mut input = child.stdin.take().unwrap();
    let writer = thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let stdout = child.stdout.take().unwrap();
    let reader = thread::spawn(move || read(stdout));
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
    Watched {
        status: status.code(),
        stdout: reader.join().unwrap(),
        stderr: errors.join().unwrap(),
        peak_rss_kib: peak,
    }
}

/// A reader that first stalls for `stall`, then reads everything: how many bytes came, and
/// whether all were zero.
fn stalled(stall: Duration) -> impl FnOnce(ChildStdout) -> (u64, bool) + Send + 'static {
    move |mut stdout| {
        thread::sleep(stall);
        let (mut len, mut zero, mut buf) = (0u64, true, vec![0u8; 1 << 16]);
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            len += n as u64;
            zero &= buf[..n].iter().all(|&byte| byte == 0);
        }
        (len, zero)
    }
}

/// A reader that takes at most some 16 MB/s (it sleeps 4 ms for every 64 KiB): all it got.
fn throttled(mut stdout: ChildStdout) -> Vec<u8> {
    let (mut got, mut buf, mut unpaid) = (Vec::new(), vec![0u8; 1 << 16], 0);
    while let Ok(n @ 1..) = stdout.read(&mut buf) {
        got.extend_from_slice(&buf[..n]);
        unpaid += n;
        while unpaid >= 1 << 16 {
            unpaid -= 1 << 16;
            thread::sleep(Duration::from_millis(4));
        }
    }
    got
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

/// A stalled reader does not hold the guest back: flint keeps no more than a few MiB of the
/// workload's output in memory however much waits (the rest waits in a file), and every byte
/// still arrives.
#[test]
fn a_stalled_reader_gets_every_byte_from_bounded_memory() {
    const FLOOD: u64 = 128 << 20;
    let run = run_watched(
        flint().args(["run", "--kernel", "minimal", "--", "head", "-c", &FLOOD.to_string(), "/dev/zero"]),
        Vec::new(),
        stalled(Duration::from_secs(8)),
    );
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, (FLOOD, true), "{}", run.stderr);
    assert_eq!(run.stderr, "");
    assert!(run.peak_rss_kib < PEAK_RSS_MAX_KIB, "flint peaked at {} KiB", run.peak_rss_kib);
}

/// A workload writing faster than its reader reads loses nothing though the VM ends long
/// before the reader is done: flint keeps what the reader has not taken and writes all of it
/// before it exits with the workload's status. (Holding the guest back instead lost the end:
/// what waited in the guest's queue when the init ended the VM.)
#[test]
fn a_slow_reader_gets_all_of_a_fast_workloads_output() {
    // 100 numbered copies of `seq 1 110000`, some 63 MiB: the guest writes them in about a
    // second, the reader takes 4.
    let script = "seq 1 110000 > /tmp/block; i=0; \
                  while [ $i -lt 100 ]; do i=$((i+1)); echo \"copy $i\"; cat /tmp/block; done; exit 7";
    let run =
        run_watched(flint().args(["run", "--kernel", "minimal", "--", "sh", "-c", script]), Vec::new(), throttled);
    let block: String = (1..=110_000).map(|n| format!("{n}\n")).collect();
    let expected: Vec<u8> = (1..=100).flat_map(|i| format!("copy {i}\n{block}").into_bytes()).collect();
    let differs = run.stdout.iter().zip(&expected).position(|(got, want)| got != want);
    assert_eq!(run.status, Some(7), "{}", run.stderr);
    assert!(
        run.stdout == expected,
        "{} bytes of {}, the first difference at {differs:?}: {}",
        run.stdout.len(),
        expected.len(),
        run.stderr
    );
    assert_eq!(run.stderr, "");
    assert!(run.peak_rss_kib < PEAK_RSS_MAX_KIB, "flint peaked at {} KiB", run.peak_rss_kib);
}

/// A workload flooding the status port with forged reports of an init failure, then exiting
/// with that failure's status, gets its status: the flood is neither evidence nor kept whole
/// (the init's own lines may be lost behind it when the VM ends; `--timeline` survives that).
#[test]
fn a_flooded_status_port_changes_nothing() {
    let dir = scratch("flint-hostile-status-flood");
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
        stalled(Duration::ZERO),
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
    let run = run_watched(
        flint().args(["run", "--kernel", "minimal", "--", "sh", "-c", script]),
        Vec::new(),
        stalled(Duration::ZERO),
    );
    assert_eq!(run.status, Some(123), "{}", run.stderr);
    assert_eq!(run.stderr, "");
}

#[test]
fn output_past_max_output_stops_the_workload_with_a_distinct_status() {
    // `yes` never ends by itself: only the limit stops it.
    let run = run_watched(
        flint().args(["run", "--kernel", "minimal", "--max-output", "1M", "--", "yes"]),
        Vec::new(),
        |mut stdout| {
            let mut got = Vec::new();
            stdout.read_to_end(&mut got).unwrap();
            got
        },
    );
    assert_eq!(run.status, Some(153), "{}", run.stderr);
    assert_eq!(run.stdout.len(), 1 << 20, "{}", run.stderr);
    assert!(run.stdout.chunks(2).all(|pair| pair == b"y\n"));
    assert!(run.stderr.contains("the workload's stdout passed --max-output (1048576 bytes)"), "{}", run.stderr);
}

/// An ordinary user in the guest cannot reach what decides the verdict: the status port, the
/// exit device, reboot.
#[test]
fn a_non_root_workload_cannot_forge_the_verdict() {
    let script = "echo 'flint-status 0' > /dev/vport0p4; echo o > /proc/sysrq-trigger; \
                  busybox reboot -f; busybox poweroff -f; exit 5";
    let run = run_watched(
        flint().args(["run", "--kernel", "minimal", "--user", "1000", "--", "sh", "-c", script]),
        Vec::new(),
        stalled(Duration::ZERO),
    );
    assert_eq!(run.status, Some(5), "{}", run.stderr);
}
