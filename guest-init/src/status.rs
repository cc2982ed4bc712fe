//! The VM's final status: the workload's, or one of the init's own failure codes.
//!
//! Statuses follow the shell: 0-255 is what the workload exited with, 128+N means it died
//! from signal N. The init's own failures use the codes below (documented in README.md);
//! they can collide with a workload that exits with the same number, which is why each
//! failure also prints one `flint-init: ...` line on the console.

/// A `flint.*` parameter is unknown, repeated, malformed or conflicting.
pub const BAD_PARAMETERS: u8 = 120;
/// A module in `flint.modules` is missing from the initramfs or the kernel refused it.
pub const MODULE_FAILED: u8 = 121;
/// The root device did not appear before `flint.rootwait` ran out.
pub const ROOT_NOT_FOUND: u8 = 122;
/// Mounting (or switching to) the root or one of the standard filesystems failed.
pub const MOUNT_FAILED: u8 = 123;
/// The workload ran longer than `flint.timeout` and was killed.
pub const TIMEOUT: u8 = 124;
/// Preparing the workload failed: stdio or status device, working directory, uid/gid, fork.
pub const SETUP_FAILED: u8 = 125;
/// The workload was found but could not be executed.
pub const NOT_EXECUTABLE: u8 = 126;
/// The workload's program was not found.
pub const NOT_FOUND: u8 = 127;
/// The init itself hit a bug (a Rust panic); it still powers the VM off.
pub const INIT_PANICKED: u8 = 119;

/// What the init writes on the `flint.status` device, followed by the status and `\n`.
pub const LINE_PREFIX: &str = "flint-status ";
/// The line the init writes just before the status line when the kernel's OOM killer ended
/// processes while the workload ran (`flint-oom-kills <n>`): hosts that predate it skip it,
/// and an init that predates it simply never writes it.
pub const OOM_PREFIX: &str = "flint-oom-kills ";
/// The first line on the `flint.status` device, as soon as the init has it open: the host
/// knows from it that the kernel booted (and stops waiting for a boot that hangs).
pub const READY_LINE: &str = "flint-ready\n";
/// With `flint.job=port`: the init has its root mounted and now waits for the job. A warm
/// start's snapshot is taken from here.
pub const AWAITING_JOB_LINE: &str = "flint-awaiting-job\n";
/// The workload wrote to its `flint.ready` FIFO: its own start-up is done, and a
/// `--warm=ready` snapshot is taken from here.
pub const WORKLOAD_READY_LINE: &str = "flint-workload-ready\n";
/// The init applied the fresh entropy and time of a `control` message.
pub const FRESH_LINE: &str = "flint-fresh\n";

/// The status of a workload from its wait status: its exit code, or 128+N for signal N.
pub fn from_wait(exit_code: Option<i32>, signal: Option<i32>) -> u8 {
    match (exit_code, signal) {
        // The kernel only keeps the low 8 bits of an exit code.
        (Some(code), _) => (code & 0xff) as u8,
        // Signal numbers stop at 64, so 128+N always fits.
        (None, Some(signal)) => 128u8.wrapping_add(signal as u8),
        // Stopped or continued children are not finished; callers never pass those.
        (None, None) => SETUP_FAILED,
    }
}

/// Formats the status line, e.g. `flint-status 7\n`; returns the used part of `buf`.
pub fn line(status: u8, buf: &mut [u8; 17]) -> &[u8] {
    let prefix = LINE_PREFIX.as_bytes();
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut len = prefix.len();
    let digits = [status / 100, status / 10 % 10, status % 10];
    let skip = if status >= 100 {
        0
    } else if status >= 10 {
        1
    } else {
        2
    };
    for &digit in &digits[skip..] {
        buf[len] = b'0' + digit;
        len += 1;
    }
    buf[len] = b'\n';
    &buf[..=len]
}

/// Reads back a status line, for the host side: `Some(status)` for exactly
/// `flint-status <0-255>` (with or without the newline, and a `\r` a tty may add).
pub fn parse_line(line: &[u8]) -> Option<u8> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line.strip_prefix(LINE_PREFIX.as_bytes())?;
    if digits.is_empty() || digits.len() > 3 || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    let mut value: u16 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u16::from(digit - b'0');
    }
    u8::try_from(value).ok()
}

/// Formats the OOM line, e.g. `flint-oom-kills 1\n`; returns the used part of `buf`.
pub fn oom_line(kills: u64, buf: &mut [u8; 37]) -> &[u8] {
    let prefix = OOM_PREFIX.as_bytes();
    let mut digits = [0; 20];
    let digits = loader::decimal::decimal(kills, &mut digits);
    let len = prefix.len() + digits.len();
    buf[..prefix.len()].copy_from_slice(prefix);
    buf[prefix.len()..len].copy_from_slice(digits);
    buf[len] = b'\n';
    &buf[..=len]
}

/// Reads back an OOM line, for the host side: `Some(kills)` for exactly `flint-oom-kills <n>`
/// (canonical decimal, with or without the newline and a `\r` before it).
pub fn parse_oom_line(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line.strip_prefix(OOM_PREFIX.as_bytes())?;
    if digits.len() > 1 && digits[0] == b'0' {
        return None;
    }
    crate::params::decimal(digits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wait_statuses_follow_the_shell() {
        assert_eq!(from_wait(Some(0), None), 0);
        assert_eq!(from_wait(Some(3), None), 3);
        assert_eq!(from_wait(Some(255), None), 255);
        assert_eq!(from_wait(None, Some(9)), 137);
        assert_eq!(from_wait(None, Some(15)), 143);
    }

    #[test]
    fn status_lines_round_trip() {
        for status in 0..=255u8 {
            let mut buf = [0; 17];
            let line = line(status, &mut buf);
            assert_eq!(line, format!("flint-status {status}\n").as_bytes());
            assert_eq!(parse_line(line), Some(status));
        }
    }

    #[test]
    fn status_lines_reject_anything_else() {
        for bad in [
            "flint-status 256",
            "flint-status -1",
            "flint-status 01",
            "flint-status ",
            "flint-status 1x",
            "status 1",
            "flint-status 1000",
        ] {
            assert_eq!(parse_line(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(parse_line(b"flint-status 42\r\n"), Some(42));
    }

    #[test]
    fn oom_lines_round_trip_and_reject_anything_else() {
        for kills in [0, 1, 9, 10, 12345, u64::MAX] {
            let mut buf = [0; 37];
            let line = oom_line(kills, &mut buf);
            assert_eq!(line, format!("flint-oom-kills {kills}\n").as_bytes());
            assert_eq!(parse_oom_line(line), Some(kills));
        }
        assert_eq!(parse_oom_line(b"flint-oom-kills 3\r\n"), Some(3));
        for bad in [
            "flint-oom-kills ",
            "flint-oom-kills 01",
            "flint-oom-kills -1",
            "flint-oom-kills 1 ",
            "flint-oom-kills 18446744073709551616",
            "flint-oom-kills  1",
            "flint-status 1",
            "xflint-oom-kills 1",
        ] {
            assert_eq!(parse_oom_line(bad.as_bytes()), None, "{bad}");
        }
    }

    /// The spellings a line may arrive in: as written, without its newline, or with the `\r`
    /// a tty adds, before the newline or left over once a reader has split lines at it.
    fn spellings(line: &[u8]) -> [Vec<u8>; 4] {
        let bare = line.strip_suffix(b"\n").unwrap().to_vec();
        [line.to_vec(), bare.clone(), [bare.as_slice(), b"\r\n"].concat(), [bare.as_slice(), b"\r"].concat()]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Whatever bytes arrive, a status is read only from the one canonical line that
        /// says it: the parser is the exact inverse of the formatter.
        #[test]
        fn a_status_is_read_only_from_its_own_line(bytes in prop::collection::vec(any::<u8>(), 0..24), status in any::<u8>()) {
            let mut buf = [0; 17];
            let canonical = line(status, &mut buf).to_vec();
            for spelling in spellings(&canonical) {
                prop_assert_eq!(parse_line(&spelling), Some(status));
            }
            // Random bytes, and random bytes after the prefix (where the digits go).
            for candidate in [bytes.clone(), [LINE_PREFIX.as_bytes(), &bytes].concat()] {
                if let Some(parsed) = parse_line(&candidate) {
                    let mut buf = [0; 17];
                    let canonical = line(parsed, &mut buf);
                    prop_assert!(spellings(canonical).contains(&candidate), "{:?}", candidate);
                }
            }
        }

        #[test]
        fn an_oom_count_is_read_only_from_its_own_line(bytes in prop::collection::vec(any::<u8>(), 0..24), kills in any::<u64>()) {
            let mut buf = [0; 37];
            let canonical = oom_line(kills, &mut buf).to_vec();
            for spelling in spellings(&canonical) {
                prop_assert_eq!(parse_oom_line(&spelling), Some(kills));
            }
            let digits = [OOM_PREFIX.as_bytes(), &bytes[..bytes.len().min(8)], kills.to_string().as_bytes()].concat();
            for candidate in [bytes.clone(), [OOM_PREFIX.as_bytes(), &bytes].concat(), digits] {
                if let Some(parsed) = parse_oom_line(&candidate) {
                    let mut buf = [0; 37];
                    let canonical = oom_line(parsed, &mut buf);
                    prop_assert!(spellings(canonical).contains(&candidate), "{:?}", candidate);
                }
            }
        }

        /// The two lines never pass for each other.
        #[test]
        fn status_and_oom_lines_are_told_apart(status in any::<u8>(), kills in any::<u64>()) {
            prop_assert_eq!(parse_oom_line(line(status, &mut [0; 17])), None);
            prop_assert_eq!(parse_line(oom_line(kills, &mut [0; 37])), None);
        }
    }
}
