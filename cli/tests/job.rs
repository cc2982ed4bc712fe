//! The job (argv, environment, cwd, user) travels over the status port, not the kernel
//! command line: nothing of it shows in the host's `ps` (QEMU's command line) or the guest's
//! /proc/cmdline, and it may be far larger than a command line.
//!
//! Boots use the minimal kernel (fast). scripts/test.sh installs and builds all of it.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

mod common;
use common::{assert_status, comm, descendants, flint, text, Flint};

const SECRET: &str = "s3cr3t-7f1c9a0e5d2b";

#[test]
fn a_secret_in_env_stays_off_the_command_lines() {
    let script = "cat /proc/cmdline; echo \"key=$API_KEY\"; echo started; read -r line; echo done";
    let mut flint = Flint(
        flint()
            .args(["run", "--kernel", "minimal", "--env", &format!("API_KEY={SECRET}"), "--", "sh", "-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdout = BufReader::new(flint.0.stdout.take().unwrap());
    let mut lines = Vec::new();
    while lines.last().map(String::as_str) != Some("started\n") {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let mut stderr = String::new();
            let _ = std::io::Read::read_to_string(&mut flint.0.stderr.take().unwrap(), &mut stderr);
            panic!("the job ended early: {lines:?}\nstderr:\n{stderr}");
        }
        lines.push(line);
    }
    let [guest_cmdline, key, _] = &lines[..] else { panic!("unexpected output: {lines:?}") };
    assert!(guest_cmdline.contains("flint.job=port"), "{guest_cmdline}");
    assert!(!guest_cmdline.contains(SECRET), "the secret is on the guest's command line: {guest_cmdline}");
    assert!(!guest_cmdline.contains("flint.argv") && !guest_cmdline.contains("flint.env"), "{guest_cmdline}");
    assert_eq!(key, &format!("key={SECRET}\n"), "the workload did not get the variable");

    // While the job runs: QEMU's command line, which any host user can read (`ps`).
    let qemu = descendants(flint.0.id())
        .into_iter()
        .find(|&pid| comm(pid).starts_with("qemu-system"))
        .expect("QEMU among flint's descendants");
    let qemu_cmdline = std::fs::read(format!("/proc/{qemu}/cmdline")).unwrap();
    let qemu_cmdline = text(&qemu_cmdline).replace('\0', " ");
    assert!(qemu_cmdline.contains("flint.job=port"), "{qemu_cmdline}");
    assert!(!qemu_cmdline.contains(SECRET), "the secret is on QEMU's command line: {qemu_cmdline}");

    // End the job: its `read` gets EOF.
    drop(flint.0.stdin.take());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(rest, "done\n");
    let status = flint.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_100000_byte_argument_arrives_whole() {
    let argument = "x".repeat(100_000);
    let output = flint()
        .args(["run", "--kernel", "minimal", "--", "sh", "-c", "printf %s \"$1\" | wc -c", "sh", &argument])
        .output()
        .unwrap();
    assert_status(&output, 0);
    assert_eq!(text(&output.stdout).trim(), "100000");
}

#[test]
fn a_mebibyte_of_arguments_and_environment_arrives() {
    // Each variable under the kernel's 128 KiB limit for one string (MAX_ARG_STRLEN).
    let value = "v".repeat(120_000);
    let mut command = flint();
    command.args(["run", "--kernel", "minimal"]);
    for i in 0..8 {
        command.args(["--env", &format!("BIG{i}={value}")]);
    }
    let script =
        "n=0; for v in \"$BIG0\" \"$BIG1\" \"$BIG2\" \"$BIG3\" \"$BIG4\" \"$BIG5\" \"$BIG6\" \"$BIG7\" \"$1\"; do \
                  n=$((n + ${#v})); done; echo $n";
    let output = command.args(["--", "sh", "-c", script, "sh", &"a".repeat(100_000)]).output().unwrap();
    assert_status(&output, 0);
    assert_eq!(text(&output.stdout).trim(), (8 * 120_000 + 100_000).to_string());
}

/// A printed command has no flint to write the job to the status port: it keeps the job on
/// the command line.
#[test]
fn print_cmd_keeps_the_job_on_the_command_line() {
    let output = flint().args(["run", "--kernel", "minimal", "--print-cmd", "--", "true"]).output().unwrap();
    assert_status(&output, 0);
    let printed = text(&output.stdout);
    assert!(printed.contains("flint.argv=") && !printed.contains("flint.job"), "{printed}");
}

/// The job's stdin path still works alongside: input reaches the workload after the job.
#[test]
fn stdin_still_reaches_the_workload() {
    let mut child = flint()
        .args(["run", "--kernel", "minimal", "--cwd", "/tmp", "--", "sh", "-c", "pwd; cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_status(&output, 0);
    assert_eq!(text(&output.stdout), "/tmp\nhello\n");
}
