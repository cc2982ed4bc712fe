//! What flint reports and the status it exits with, from how the VM ended.

use super::*;
use crate::timeline::{last_report, Workload};
use flint_guest_init::status;

/// What flint reports and the status it exits with.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    pub status: u8,
    /// Lines for stderr, after the console log if that is shown.
    pub messages: Vec<String>,
    pub show_console: bool,
    pub show_qemu_stderr: bool,
}

/// The statuses with which the guest init reports its own failures (guest-init/README.md)
/// rather than the workload's: flint reports them as its own failure when the init ended the
/// VM before starting the workload.
pub(super) const INIT_FAILURES: [u8; 6] = [119, 120, 121, 122, 123, 125];

/// The statuses the init's child ends with when the workload's set-up (125) or its program
/// (126, 127) fails after the init started it; its console line says why.
const CHILD_FAILURES: [u8; 3] = [status::SETUP_FAILED, status::NOT_EXECUTABLE, status::NOT_FOUND];

/// The most the init writes on the status port when it ends the VM without starting the
/// workload (its ready, timeline and status lines, some 350 bytes): more came from the
/// workload, which then ran.
const INIT_REPORT_MAX: u64 = 4096;

/// The status and the report, from what the workload cannot forge. It can write the console
/// (`/dev/console`) and, as root, the status port (taking the init's fd with pidfd_getfd),
/// so neither is believed on its own:
/// - the status port's last status line counts only if QEMU's exit code, which the init sets
///   through isa-debug-exit as it ends the VM, agrees; otherwise the exit code wins;
/// - the init failed only if the workload never started: nothing came on the status port, or
///   only what the init writes, with its timeline line (the last, written after everything
///   else was killed) lacking the `exec` stamp. A workload flooding the port can have the
///   init's own lines lost when the VM ends and its forged ones left last, but not with a
///   port that short. Console lines then say why; they never make a failure by themselves.
///
/// A root workload can still end the VM itself through isa-debug-exit or reboot(2) after
/// writing the port: what the host then sees is all its own.
///
/// Output cut at `--max-output` makes the status 128 + SIGXFSZ whatever the workload did
/// after, unless flint itself failed: cut output must never pass for a whole one.
pub fn decide(end: &Ending, args: &RunArgs) -> Verdict {
    let mut verdict = decide_exit(end, args);
    if let Some(stream) = end.output_over.filter(|_| verdict.status != EXIT_FAILURE) {
        verdict.status = 128 + OUTPUT_OVER_SIGNAL as u8;
        verdict.messages = vec![format!(
            "flint: error: the workload's {stream} passed --max-output ({} bytes): flint passed on that much and stopped it; raise --max-output",
            args.max_output.unwrap_or_default()
        )];
    }
    verdict
}

fn decide_exit(end: &Ending, args: &RunArgs) -> Verdict {
    let fail = |message: String, show_console: bool, show_qemu_stderr: bool| Verdict {
        status: EXIT_FAILURE,
        messages: vec![format!("flint: error: {message}")],
        show_console,
        show_qemu_stderr,
    };
    let code = match end.qemu {
        QemuEnd::Interrupted(signal) => {
            return Verdict {
                status: 128u8.wrapping_add(signal as u8),
                messages: vec![format!("flint: stopped the VM on signal {signal}")],
                show_console: false,
                show_qemu_stderr: false,
            }
        }
        QemuEnd::DeadlineKilled => {
            let timeout = args.timeout.unwrap_or_default();
            return Verdict {
                status: EXIT_TIMEOUT,
                messages: vec![format!(
                    "flint: error: the VM was still running well past --timeout {}s (the guest never enforced it): stopped it; its console is above",
                    timeout.as_secs_f64()
                )],
                show_console: true,
                show_qemu_stderr: true,
            };
        }
        QemuEnd::BootTimedOut => {
            return fail(
                format!(
                    "the kernel did not start flint's init within --boot-timeout {}s (it hung or panicked early; \
                     its console is above): check --append and the kernel, raise --boot-timeout on a slow host, \
                     or run `flint build` if the firmware predates this flint",
                    args.boot_timeout.as_secs_f64()
                ),
                true,
                true,
            )
        }
        QemuEnd::Signaled(signal) => return fail(format!("QEMU was killed by signal {signal}"), true, true),
        QemuEnd::HelperEnded => {
            return fail(
                "a volume's virtiofsd ended while the job ran, and the guest's file operations on it could not complete: flint stopped the VM; its messages are in the console log above".into(),
                true,
                true,
            )
        }
        QemuEnd::Exited(code) => code,
    };
    let line = last_report(&end.status_port, status::LINE_PREFIX, status::parse_line);
    // isa-debug-exit makes QEMU exit with (value << 1) | 1, of which the OS keeps 8 bits.
    let encoded = |status: u8| (i32::from(status) << 1 | 1) & 0xff;
    let status = match line {
        // The init writes the line just before ending the VM: the two agree, and the line
        // keeps the 8th bit the exit code lost.
        Some(status) if encoded(status) == code => status,
        // QEMU's own errors exit 1 too (what isa-debug-exit makes of 0); QEMU then says why.
        _ if code == 1 && !end.qemu_stderr.iter().all(u8::is_ascii_whitespace) => {
            return fail(format!("QEMU failed (exit status 1): {}", first_line(&end.qemu_stderr)), false, true)
        }
        // No line, or one the workload wrote (the init's own may be lost behind a flood):
        // the exit code is the init's.
        _ if code % 2 == 1 => (code >> 1) as u8,
        // Powered off without isa-debug-exit: nothing to check the line against.
        Some(status) if code == 0 => status,
        None if code == 0 => {
            return fail(
                "the VM stopped without reporting the workload's status (the kernel panicked, or the firmware has no flint init: run `flint build`): its console is above".into(),
                true,
                true,
            )
        }
        _ => return fail(format!("QEMU failed (exit status {code}): {}", first_line(&end.qemu_stderr)), false, true),
    };
    let mut verdict = Verdict { status, messages: Vec::new(), show_console: false, show_qemu_stderr: false };
    if let Some(claimed) = line.filter(|&claimed| claimed != status) {
        verdict.messages.push(format!(
            "flint: warning: the status port's last line says {claimed} but QEMU's exit code says {status} (exact below 128): reporting {status}"
        ));
    }
    let console = String::from_utf8_lossy(&end.console).replace('\r', "");
    let init_error = console.lines().rev().find_map(|l| l.strip_prefix("flint-init: "));
    let workload = Workload::from_status_port(&end.status_port);
    if end.status_port.total() == 0 {
        // The init never opened the status port: neither it nor the workload ran, and the
        // console is the firmware's and the kernel's.
        if let Some(error) = console.lines().find_map(|l| l.strip_prefix("flint: error: ")) {
            return fail(format!("the firmware failed (status {status}): {error}"), true, true);
        }
    }
    let never_started = end.status_port.total() == 0
        || (end.status_port.total() <= INIT_REPORT_MAX && workload == Workload::NeverStarted);
    if never_started && INIT_FAILURES.contains(&status) {
        let why = init_error.unwrap_or("its console is above");
        return fail(format!("the guest init failed (status {status}): {why}"), true, false);
    }
    match (status, workload) {
        (EXIT_TIMEOUT, Workload::Ran(ran)) if args.timeout.is_some_and(|timeout| ran >= timeout.mul_f64(0.99)) => {
            verdict.messages.push(format!(
                "flint: error: the workload ran longer than --timeout {}s and was killed",
                args.timeout.unwrap_or_default().as_secs_f64()
            ))
        }
        (status, _) if CHILD_FAILURES.contains(&status) => {
            verdict.messages.extend(init_error.map(|error| format!("flint: error: in the guest: {error}")))
        }
        (OOM_KILLED, _) if oom_kills(&end.status_port) > 0 => verdict
            .messages
            .push(format!("flint: the guest's OOM killer ended the workload: raise --memory (now {})", args.memory)),
        _ => {}
    }
    verdict
}

/// The status of a workload that died of SIGKILL, the OOM killer's signal (or whose shell
/// reports a child that did).
const OOM_KILLED: u8 = 128 + 9;

/// How many processes the guest's OOM killer ended while the workload ran, as the init's
/// `flint-oom-kills` line says: it writes that line right before its status line, so only
/// the whole line right before the status line the verdict takes counts (one the workload
/// wrote earlier does not). 0 without it: no OOM kill, or an init that predates the line.
fn oom_kills(status_port: &[u8]) -> u64 {
    let prefix = status::LINE_PREFIX.as_bytes();
    let mut lines = status_port.split(|&byte| byte == b'\n').rev();
    // The status line `last_report` takes: the last line that ends in a valid one.
    let status_line = lines.by_ref().find(|line| {
        let start = line.windows(prefix.len()).rposition(|window| window == prefix);
        start.is_some_and(|start| status::parse_line(&line[start..]).is_some())
    });
    status_line.and(lines.next()).and_then(status::parse_oom_line).unwrap_or(0)
}

/// The first line of QEMU's stderr that says something.
fn first_line(stderr: &[u8]) -> String {
    let stderr = String::from_utf8_lossy(stderr);
    stderr.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no message").to_string()
}

pub(super) fn show_console(console: &Tail) {
    let text = String::from_utf8_lossy(console).replace('\r', "");
    if text.trim().is_empty() {
        eprintln!("flint: (the console log is empty)");
        return;
    }
    if console.cut() > 0 {
        eprintln!("flint: --- console (COM1): its last {} KiB of {} bytes ---", TAIL_MAX / 1024, console.total());
    } else {
        eprintln!("flint: --- console (COM1) ---");
    }
    eprint!("{text}");
    if !text.ends_with('\n') {
        eprintln!();
    }
    eprintln!("flint: --- end of console ---");
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    fn args() -> RunArgs {
        RunArgs {
            firmware: None,
            kernel: KernelChoice::default(),
            root: None,
            root_image: None,
            root_oci: None,
            machine: Machine::Pc,
            memory: "512M".into(),
            cpus: 1,
            env: Vec::new(),
            cwd: None,
            user: None,
            volumes: Vec::new(),
            volume_fs: VolumeFs::Virtiofs,
            timeout: Some(Duration::from_secs(5)),
            grace: Duration::from_secs(10),
            boot_timeout: Duration::from_secs(60),
            max_output: None,
            warm: None,
            mode: RootMode::Overlay,
            accel: Accel::Tcg,
            boot: Boot::Auto,
            huge_pages: HugePages::Auto,
            acpi: Acpi::Auto,
            net: None,
            publish: Vec::new(),
            append: None,
            untuned: false,
            print_cmd: false,
            verbose: false,
            timeline: false,
            timeline_json: None,
            command: vec!["true".into()],
        }
    }

    fn tail(text: &str) -> Tail {
        let mut tail = Tail::default();
        tail.push(text.as_bytes());
        tail
    }

    fn end(qemu: QemuEnd, status_port: &str, console: &str) -> Ending {
        Ending {
            qemu,
            status_port: tail(status_port),
            console: tail(console),
            qemu_stderr: tail("qemu: oops\n"),
            elapsed: Duration::ZERO,
            status_arrived: Duration::ZERO,
            output_over: None,
            restored: None,
        }
    }

    /// What the init writes last: its timeline (a 1 GHz TSC; `exec` 0 if the workload never
    /// started) and status lines.
    fn init_lines(exec_ms: u64, exit_ms: u64, status: u8) -> String {
        let ms = |ms: u64| ms * 1_000_000;
        format!(
            "flint-timeline tsc_hz=1000000000 fw_reset=1 fw_loaded=2 fw_handoff=3 init=4 root=5 exec={} exit={} poweroff={}\nflint-status {status}\n",
            ms(exec_ms),
            ms(exit_ms),
            ms(exit_ms + 1)
        )
    }

    /// QEMU's exit code when the init ends the VM with `status`.
    fn exited(status: u8) -> QemuEnd {
        QemuEnd::Exited((i32::from(status) << 1 | 1) & 0xff)
    }

    #[test]
    fn the_status_line_wins_and_covers_all_256_statuses() {
        for status in [0u8, 3, 137, 255] {
            let port = format!("flint-ready\nflint-status {status}\n");
            let verdict = decide(&end(QemuEnd::Exited(((status as i32) << 1 | 1) & 0xff), &port, ""), &args());
            assert_eq!(verdict, Verdict { status, messages: vec![], show_console: false, show_qemu_stderr: false });
        }
    }

    #[test]
    fn output_cut_at_max_output_never_passes_for_whole() {
        let args = RunArgs { max_output: Some(4096), ..args() };
        for status in [0u8, 153] {
            let mut cut = end(exited(status), &init_lines(1, 2, status), "");
            cut.output_over = Some("stdout");
            let verdict = decide(&cut, &args);
            assert_eq!(verdict.status, 153);
            assert!(verdict.messages[0].contains("stdout passed --max-output (4096 bytes)"), "{:?}", verdict.messages);
        }
        let mut failed = end(QemuEnd::Signaled(9), "", "");
        failed.output_over = Some("stderr");
        assert_eq!(decide(&failed, &args).status, 125);
    }

    #[test]
    fn without_a_status_line_qemus_exit_code_is_used() {
        assert_eq!(decide(&end(QemuEnd::Exited(7), "", ""), &args()).status, 3);
        let mut zero = end(QemuEnd::Exited(1), "", "");
        zero.qemu_stderr = Tail::default();
        assert_eq!(decide(&zero, &args()).status, 0);
        let panic = decide(&end(QemuEnd::Exited(0), "", "Kernel panic"), &args());
        assert_eq!((panic.status, panic.show_console), (125, true));
        let qemu = decide(&end(QemuEnd::Exited(1), "", ""), &args());
        assert_eq!(qemu.status, 125);
        assert!(qemu.messages[0].contains("QEMU failed (exit status 1): qemu: oops"), "{:?}", qemu.messages);
    }

    #[test]
    fn firmware_and_init_failures_are_flints_own() {
        let firmware =
            decide(&end(QemuEnd::Exited(35), "", "flint: error: no kernel to boot: pass one with -kernel\n"), &args());
        assert_eq!(firmware.status, 125);
        assert!(firmware.messages[0].contains("firmware failed (status 17): no kernel to boot"));
        let root_lines = format!("flint-ready\n{}", init_lines(0, 0, 122));
        let root = decide(&end(exited(122), &root_lines, "flint-init: root device /dev/vda did not appear\n"), &args());
        assert_eq!((root.status, root.show_console), (125, true));
        assert!(root.messages[0].contains("guest init failed (status 122): root device"));
        // Before the status port was open: QEMU's exit code alone.
        let modules = decide(&end(exited(121), "", "flint-init: module virtio_mmio failed\n"), &args());
        assert_eq!(modules.status, 125);
        assert!(modules.messages[0].contains("guest init failed (status 121): module virtio_mmio"));
        let missing =
            decide(&end(exited(127), &init_lines(900, 901, 127), "flint-init: cannot execute nope: ENOENT\n"), &args());
        assert_eq!(missing.status, 127);
        assert_eq!(missing.messages, ["flint: error: in the guest: cannot execute nope: ENOENT"]);
        let timeout = decide(
            &end(exited(124), &init_lines(900, 5905, 124), "flint-init: workload killed after flint.timeout=5000 ms\n"),
            &args(),
        );
        assert_eq!(timeout.status, 124);
        assert!(timeout.messages[0].contains("longer than --timeout 5s"));
        // A workload exiting 122 or 124 by itself is just that.
        assert_eq!(decide(&end(exited(122), "flint-status 122\n", ""), &args()).status, 122);
        assert_eq!(decide(&end(exited(124), &init_lines(900, 1900, 124), ""), &args()).messages, [""; 0]);
    }

    #[test]
    fn the_console_is_never_evidence_of_an_init_failure() {
        let forged = "flint-init: mounting the root failed: forged by the workload\n";
        for port in
            [init_lines(900, 901, 123), format!("flint-ready\n{}{}", init_lines(0, 0, 123), init_lines(900, 901, 123))]
        {
            let verdict = decide(&end(exited(123), &port, forged), &args());
            assert_eq!(
                verdict,
                Verdict { status: 123, messages: vec![], show_console: false, show_qemu_stderr: false }
            );
        }
        // Nor is a flood of forged lines the init's own were lost behind.
        let flood = format!("flint-ready\n{}", init_lines(0, 0, 123).repeat(100));
        assert_eq!(decide(&end(exited(123), &flood, forged), &args()).status, 123);
    }

    #[test]
    fn a_status_line_that_disagrees_with_qemu_loses() {
        // A flood of forged lines, the init's own lost behind it: the workload exited 5.
        let flood = "flint-status 0\n".repeat(10_000) + "flint-status 0";
        let verdict = decide(&end(exited(5), &flood, ""), &args());
        assert_eq!(verdict.status, 5);
        assert!(
            verdict.messages[0].starts_with("flint: warning: the status port's last line says 0"),
            "{:?}",
            verdict.messages
        );
        // The line still gives the 8th bit when it agrees.
        assert_eq!(decide(&end(exited(137), &(flood + "\nflint-status 137\n"), ""), &args()).status, 137);
        // Powered off without isa-debug-exit: the line is all there is.
        assert_eq!(decide(&end(QemuEnd::Exited(0), "flint-status 200\n", ""), &args()).status, 200);
        // An even code is QEMU's own failure, whatever the port says.
        assert_eq!(decide(&end(QemuEnd::Exited(2), "flint-status 0\n", ""), &args()).status, 125);
    }

    #[test]
    fn an_oom_kill_is_named_with_the_memory_to_raise() {
        let oom = "flint: the guest's OOM killer ended the workload: raise --memory (now 512M)";
        let report = |kills: Option<u64>, status: u8| {
            let lines = init_lines(900, 1900, status);
            let (timeline, status_line) = lines.split_at(lines.find("flint-status").unwrap());
            let oom = kills.map(|kills| format!("flint-oom-kills {kills}\n")).unwrap_or_default();
            format!("flint-ready\n{timeline}{oom}{status_line}")
        };
        let killed = decide(&end(exited(137), &report(Some(1), 137), ""), &args());
        assert_eq!((killed.status, killed.messages.as_slice()), (137, [oom.to_string()].as_slice()));
        let mut small = args();
        small.memory = "128M".into();
        let killed = decide(&end(exited(137), &report(Some(2), 137), ""), &small);
        assert_eq!(killed.messages, ["flint: the guest's OOM killer ended the workload: raise --memory (now 128M)"]);
        // SIGKILL from elsewhere, an init that predates the line, a status other than 137.
        for (kills, status) in [(Some(0), 137), (None, 137), (Some(1), 0), (Some(1), 9)] {
            let verdict = decide(&end(exited(status), &report(kills, status), ""), &args());
            assert_eq!((verdict.status, verdict.messages.len()), (status, 0), "{kills:?} {status}");
        }
        // A line the workload wrote before the init's report is not the init's.
        let forged = format!("flint-oom-kills 1\nflint-status 137\n{}", report(None, 137));
        assert_eq!(decide(&end(exited(137), &forged, ""), &args()).messages, [""; 0]);
        assert_eq!(oom_kills(forged.as_bytes()), 0);
        assert_eq!(oom_kills(b"flint-oom-kills 3\r\nflint-status 137\r\n"), 3);
        assert_eq!(oom_kills(b"flint-oom-kills 3\nflint-status 137\nflint-status 1x\n"), 3);
        assert_eq!(oom_kills(b"flint-oom-kills 3\nflint-status 137\nflint-oom-kills 4\n"), 3);
        for none in [&b""[..], b"flint-oom-kills 3\n", b"flint-oom-kills 3", b"xflint-oom-kills 3\nflint-status 137\n"]
        {
            assert_eq!(oom_kills(none), 0, "{}", String::from_utf8_lossy(none));
        }
    }

    #[test]
    fn host_side_endings() {
        assert_eq!(decide(&end(QemuEnd::Interrupted(2), "", ""), &args()).status, 130);
        let late = decide(&end(QemuEnd::DeadlineKilled, "", ""), &args());
        assert_eq!((late.status, late.show_console), (124, true));
        let hung = decide(&end(QemuEnd::BootTimedOut, "", ""), &args());
        assert_eq!((hung.status, hung.show_console), (125, true));
        assert!(
            hung.messages[0].contains("did not start flint's init within --boot-timeout 60s"),
            "{:?}",
            hung.messages
        );
        assert_eq!(decide(&end(QemuEnd::Signaled(9), "", ""), &args()).status, 125);
    }

    #[test]
    fn options_parse() {
        assert_eq!(parse_timeout("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_timeout("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_timeout("0.001"), Ok(Duration::from_millis(1)));
        for bad in ["", "0", "1.", ".5", "1.2345", "-1", "1e3", "x"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_user("1000"), Ok((1000, 1000)));
        assert_eq!(parse_user("1000:100"), Ok((1000, 100)));
        assert!(parse_user("root").is_err());
        assert!(parse_user("4294967295").is_err());
    }

    #[test]
    fn environment_defaults_and_overrides() {
        let vars = environment(&[], &["PATH=/bin".into(), "A=b=c".into()]).unwrap();
        assert_eq!(vars, [b"HOME=/root".to_vec(), b"PATH=/bin".to_vec(), b"A=b=c".to_vec()]);
        assert!(environment(&[], &["=x".into()]).is_err());
        assert!(environment(&[], &["FLINT_SURELY_UNSET_VARIABLE".into()]).is_err());
        // An image's Env comes between flint's defaults and --env.
        let image = [b"PATH=/opt/bin".to_vec(), b"A=image".to_vec(), b"B=image".to_vec(), b"NOEQUALS".to_vec()];
        let vars = environment(&image, &["A=user".into()]).unwrap();
        assert_eq!(vars, [b"HOME=/root".to_vec(), b"PATH=/opt/bin".to_vec(), b"B=image".to_vec(), b"A=user".to_vec()]);
    }

    mod fuzz {
        //! The status port and the console carry what the guest (the workload, as root)
        //! chose to send: whatever they hold, the verdict takes the status from the init's
        //! report only when QEMU's exit code agrees, never from the console, and never
        //! panics.
        use super::*;
        use flint_guest_init::timeline::{format_line, STAMPS_LEN};
        use proptest::prelude::*;

        /// What the workload may write on the port: garbage, and lines that look like the
        /// init's, whole or cut.
        fn noise() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                prop::collection::vec(any::<u8>(), 0..40),
                (any::<u8>()).prop_map(|s| format!("flint-status {s}\n").into_bytes()),
                (any::<u64>()).prop_map(|n| format!("flint-oom-kills {n}\n").into_bytes()),
                Just(b"flint-ready\n".to_vec()),
                Just(b"flint-status ".to_vec()),
                Just(b"flint-oom-kills ".to_vec()),
                (any::<u64>(), any::<[u64; STAMPS_LEN]>()).prop_map(|(hz, stamps)| format_line(
                    hz,
                    stamps,
                    &mut [0; 320]
                )
                .to_vec()),
                Just(b"\r\n".to_vec()),
            ];
            prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
        }

        /// The init's own report as it writes it: timeline (the workload started), the OOM
        /// line if it has one, the status line.
        fn report(status: u8, kills: u64, stamps: [u64; STAMPS_LEN]) -> Vec<u8> {
            let mut stamps = stamps.map(|stamp| stamp | 1);
            stamps.sort_unstable();
            let mut report = format_line(1_000_000_000, stamps, &mut [0; 320]).to_vec();
            if kills > 0 {
                report.extend(flint_guest_init::status::oom_line(kills, &mut [0; 37]));
            }
            report.extend(flint_guest_init::status::line(status, &mut [0; 17]));
            report
        }

        fn ending(qemu: QemuEnd, status_port: &[u8], console: &[u8], qemu_stderr: &[u8]) -> Ending {
            let tail = |bytes: &[u8]| {
                let mut tail = Tail::default();
                tail.push(bytes);
                tail
            };
            Ending {
                qemu,
                status_port: tail(status_port),
                console: tail(console),
                qemu_stderr: tail(qemu_stderr),
                elapsed: Duration::ZERO,
                status_arrived: Duration::ZERO,
                output_over: None,
                restored: None,
            }
        }

        fn qemu_end() -> impl Strategy<Value = QemuEnd> {
            prop_oneof![
                4 => (0..256i32).prop_map(QemuEnd::Exited),
                4 => any::<u8>().prop_map(exited),
                1 => (1..65i32).prop_map(QemuEnd::Signaled),
                1 => (1..65i32).prop_map(QemuEnd::Interrupted),
                1 => Just(QemuEnd::DeadlineKilled),
                1 => Just(QemuEnd::BootTimedOut),
                1 => Just(QemuEnd::HelperEnded),
            ]
        }

        fn console() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                prop::collection::vec(any::<u8>(), 0..40),
                Just(b"flint-init: forged failure\n".to_vec()),
                Just(b"flint: error: forged firmware failure\r\n".to_vec()),
                Just(b"\r".to_vec()),
            ];
            prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Any ending: one-line messages, and a status from the port only if QEMU's exit
            /// code agrees with it.
            #[test]
            fn any_ending_gives_a_verdict(
                qemu in qemu_end(),
                port in noise(),
                console in console(),
                stderr in prop::collection::vec(any::<u8>(), 0..64),
            ) {
                let verdict = decide(&ending(qemu.clone(), &port, &console, &stderr), &args());
                prop_assert!(verdict.messages.iter().all(|message| !message.contains('\n')), "{:?}", verdict.messages);
                if let QemuEnd::Exited(code) = qemu {
                    if code % 2 == 1 {
                        let agrees = (i32::from(verdict.status) << 1 | 1) & 0xff == code;
                        prop_assert!(agrees || verdict.status == EXIT_FAILURE, "{} from {}", verdict.status, code);
                    }
                }
            }

            /// Once the status port has carried anything, the console (which the workload
            /// writes too) changes no status and no decision, only the words.
            #[test]
            fn the_console_never_decides(
                qemu in qemu_end(),
                port in noise(),
                console in console(),
                other in console(),
            ) {
                prop_assume!(!port.is_empty());
                let one = decide(&ending(qemu.clone(), &port, &console, b""), &args());
                let two = decide(&ending(qemu, &port, &other, b""), &args());
                prop_assert_eq!(
                    (one.status, one.show_console, one.show_qemu_stderr),
                    (two.status, two.show_console, two.show_qemu_stderr)
                );
            }

            /// Whatever the workload wrote first, the init's report that follows gives the
            /// exact status, and the OOM message exactly when the init saw an OOM kill end a
            /// workload with status 137.
            #[test]
            fn the_inits_report_after_any_noise_is_exact(
                noise in noise(),
                status in prop_oneof![Just(137u8), any::<u8>()],
                kills in prop_oneof![Just(0u64), Just(1), any::<u64>()],
                stamps in any::<[u64; STAMPS_LEN]>(),
                console in console(),
            ) {
                let port = [b"flint-ready\n".as_slice(), &noise, &report(status, kills, stamps)].concat();
                prop_assert_eq!(oom_kills(&port), kills);
                let verdict = decide(&ending(exited(status), &port, &console, b""), &args());
                prop_assert_eq!(verdict.status, status);
                let oom = verdict.messages.iter().any(|message| message.contains("OOM killer"));
                prop_assert_eq!(oom, status == 137 && kills > 0, "{:?}", verdict.messages);
            }
        }
    }
}
