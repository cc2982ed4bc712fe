//! A workload the guest's OOM killer ends: flint still exits 137 (the workload's exact
//! status) and says what happened and what to do, instead of a bare 137. The guest init
//! reports the kill (its `flint-oom-kills` line on the status port, from /proc/vmstat's
//! `oom_kill` counter); a SIGKILL from anywhere else is not called one.

mod common;
use common::{assert_status, flint, minimal_kernel, text};

#[test]
fn an_oom_killed_workload_exits_137_and_names_the_oom_killer() {
    let kernel = minimal_kernel();
    // busybox sh doubles a string until the 128 MiB guest runs out: with no swap, the OOM
    // killer ends it long before any single allocation could be refused.
    let output = flint()
        .args(["run", "--kernel", kernel.to_str().unwrap(), "--memory", "128M", "--timeout", "120", "--"])
        .args(["sh", "-c", "x=a; while :; do x=$x$x; done"])
        .output()
        .unwrap();
    assert_status(&output, 137);
    let stderr = text(&output.stderr);
    assert_eq!(
        stderr.trim_end(),
        "flint: the guest's OOM killer ended the workload: raise --memory (now 128M)",
        "{stderr}"
    );
}

#[test]
fn a_workload_killed_otherwise_is_just_137() {
    let kernel = minimal_kernel();
    let output = flint()
        .args(["run", "--kernel", kernel.to_str().unwrap(), "--memory", "128M", "--", "sh", "-c", "kill -9 $$"])
        .output()
        .unwrap();
    assert_status(&output, 137);
    assert_eq!(text(&output.stderr), "");
}
