//! What flint reports and the status it exits with, from how the VM ended.

use super::*;

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
/// rather than the workload's: flint reports them as its own failure.
pub(super) const INIT_FAILURES: [u8; 6] = [119, 120, 121, 122, 123, 125];

pub fn decide(end: &Ending, args: &RunArgs) -> Verdict {
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
        QemuEnd::Exited(code) => code,
    };
    let line = String::from_utf8_lossy(&end.status_port)
        .lines()
        .rev()
        .find_map(|line| flint_guest_init::status::parse_line(line.as_bytes()));
    // isa-debug-exit makes QEMU exit with (value << 1) | 1; 0 is a power-off or reboot
    // without a status, any other even code is QEMU's own failure.
    // QEMU's own errors exit 1 too, which is also what isa-debug-exit makes of 0; QEMU then
    // says why on stderr.
    let qemu_error = code == 1 && !end.qemu_stderr.iter().all(u8::is_ascii_whitespace);
    let debug_exit = (code % 2 == 1 && !qemu_error).then(|| ((code - 1) / 2) as u8);
    let firmware_error = end.console.lines().find_map(|l| l.strip_prefix("flint: error: ")).map(str::to_string);
    let init_errors: Vec<&str> = end.console.lines().filter_map(|l| l.strip_prefix("flint-init: ")).collect();
    let status = match (line, debug_exit) {
        (Some(status), _) => status,
        (None, Some(value)) => {
            if let Some(error) = firmware_error {
                return fail(format!("the firmware failed (status {value}): {error}"), true, true);
            }
            value
        }
        (None, None) if code == 0 => {
            return fail(
                "the VM stopped without reporting the workload's status (the kernel panicked, or the firmware has no flint init: run `flint build`): its console is above".into(),
                true,
                true,
            )
        }
        (None, None) => {
            let stderr = String::from_utf8_lossy(&end.qemu_stderr);
            let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("no message");
            return fail(format!("QEMU failed (exit status {code}): {}", first.trim()), false, true);
        }
    };
    if init_errors.is_empty() {
        return Verdict { status, messages: Vec::new(), show_console: false, show_qemu_stderr: false };
    }
    let guest = |status: u8| Verdict {
        status,
        messages: init_errors.iter().map(|e| format!("flint: error: in the guest: {e}")).collect(),
        show_console: false,
        show_qemu_stderr: false,
    };
    match status {
        EXIT_TIMEOUT => Verdict {
            status,
            messages: vec![format!(
                "flint: error: the workload ran longer than --timeout {}s and was killed",
                args.timeout.unwrap_or_default().as_secs_f64()
            )],
            show_console: false,
            show_qemu_stderr: false,
        },
        EXIT_NOT_EXECUTABLE | EXIT_NOT_FOUND => guest(status),
        s if INIT_FAILURES.contains(&s) => {
            let mut verdict = guest(EXIT_FAILURE);
            verdict.show_console = true;
            verdict.messages = vec![format!(
                "flint: error: the guest init failed (status {s}): {}",
                init_errors.last().copied().unwrap_or_default()
            )];
            verdict
        }
        _ => Verdict { status, messages: Vec::new(), show_console: false, show_qemu_stderr: false },
    }
}

pub(super) fn show_console(console: &str) {
    if console.trim().is_empty() {
        eprintln!("flint: (the console log is empty)");
        return;
    }
    eprintln!("flint: --- console (COM1) ---");
    eprint!("{console}");
    if !console.ends_with('\n') {
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
            machine: Machine::Pc,
            memory: "512M".into(),
            cpus: 1,
            env: Vec::new(),
            cwd: None,
            user: None,
            timeout: Some(Duration::from_secs(5)),
            boot_timeout: Duration::from_secs(60),
            mode: RootMode::Overlay,
            accel: Accel::Tcg,
            boot: Boot::Auto,
            huge_pages: HugePages::Auto,
            acpi: Acpi::Auto,
            append: None,
            untuned: false,
            print_cmd: false,
            verbose: false,
            timeline: false,
            timeline_json: None,
            command: vec!["true".into()],
        }
    }

    fn end(qemu: QemuEnd, status_port: &str, console: &str) -> Ending {
        Ending {
            qemu,
            status_port: status_port.into(),
            console: console.into(),
            qemu_stderr: b"qemu: oops\n".to_vec(),
            elapsed: Duration::ZERO,
            status_arrived: Duration::ZERO,
        }
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
    fn without_a_status_line_qemus_exit_code_is_used() {
        assert_eq!(decide(&end(QemuEnd::Exited(7), "", ""), &args()).status, 3);
        let mut zero = end(QemuEnd::Exited(1), "", "");
        zero.qemu_stderr.clear();
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
        let root = decide(
            &end(QemuEnd::Exited(245), "flint-status 122\n", "flint-init: root device /dev/vda did not appear\n"),
            &args(),
        );
        assert_eq!((root.status, root.show_console), (125, true));
        assert!(root.messages[0].contains("guest init failed (status 122): root device"));
        let missing = decide(
            &end(QemuEnd::Exited(255), "flint-status 127\n", "flint-init: cannot execute nope: ENOENT\n"),
            &args(),
        );
        assert_eq!(missing.status, 127);
        assert_eq!(missing.messages, ["flint: error: in the guest: cannot execute nope: ENOENT"]);
        let timeout = decide(
            &end(
                QemuEnd::Exited(249),
                "flint-status 124\n",
                "flint-init: workload killed after flint.timeout=5000 ms\n",
            ),
            &args(),
        );
        assert_eq!(timeout.status, 124);
        assert!(timeout.messages[0].contains("longer than --timeout 5s"));
        // A workload exiting 122 by itself is just that.
        assert_eq!(decide(&end(QemuEnd::Exited(245), "flint-status 122\n", ""), &args()).status, 122);
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
        let vars = environment(&["PATH=/bin".into(), "A=b=c".into()]).unwrap();
        assert_eq!(vars, [b"HOME=/root".to_vec(), b"PATH=/bin".to_vec(), b"A=b=c".to_vec()]);
        assert!(environment(&["=x".into()]).is_err());
        assert!(environment(&["FLINT_SURELY_UNSET_VARIABLE".into()]).is_err());
    }
}
