//! Whether the kernel's OOM killer ended the workload: its `oom_kill` counter in /proc/vmstat,
//! read before the workload starts and again if it died of SIGKILL (the OOM killer's signal),
//! went up. The init reports the difference on the status device (`status::oom_line`), so the
//! host can say "raise --memory" instead of a bare 137.
//!
//! Like the rest of the init, no heap and no `core::fmt`: the file is scanned line by line
//! through a small buffer.

use core::sync::atomic::{AtomicU64, Ordering};
use rustix::fs::{Mode, OFlags};

const VMSTAT: &str = "/proc/vmstat";
const COUNTER: &[u8] = b"oom_kill ";
/// `u64::MAX` when the counter could not be read before the workload.
static BEFORE: AtomicU64 = AtomicU64::new(u64::MAX);
/// OOM kills while the workload ran, as far as the init knows.
static KILLS: AtomicU64 = AtomicU64::new(0);

/// Notes the counter before the workload starts.
pub fn before_workload() {
    BEFORE.store(read_kills().unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// Notes how many OOM kills happened since [`before_workload`]; the init calls it when the
/// workload died with status 137 (SIGKILL, or a shell reporting a child's SIGKILL).
pub fn after_workload() {
    let before = BEFORE.load(Ordering::Relaxed);
    if let Some(after) = read_kills().filter(|_| before != u64::MAX) {
        KILLS.store(after.saturating_sub(before), Ordering::Relaxed);
    }
}

/// The OOM kills noted by [`after_workload`], 0 if none (or unknown).
pub fn kills() -> u64 {
    KILLS.load(Ordering::Relaxed)
}

/// The `oom_kill` counter; `None` without /proc, or a kernel without VM event counters.
fn read_kills() -> Option<u64> {
    let fd = rustix::fs::open(VMSTAT, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let mut scan = CounterScan::new(COUNTER);
    let mut buf = [0u8; 512];
    loop {
        match rustix::io::read(&fd, &mut buf) {
            Ok(0) => return scan.value(),
            Ok(read) => scan.feed(&buf[..read]),
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return None,
        }
    }
}

/// Finds the value of one `<name> <decimal>` line in /proc/vmstat-style text fed in pieces.
pub struct CounterScan {
    key: &'static [u8],
    /// Bytes of the current line seen so far; beyond the buffer the line is not ours.
    line: [u8; 32],
    len: usize,
    value: Option<u64>,
}

impl CounterScan {
    /// `key` includes the separating space, e.g. `b"oom_kill "`.
    pub fn new(key: &'static [u8]) -> Self {
        CounterScan { key, line: [0; 32], len: 0, value: None }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if byte == b'\n' {
                self.end_line();
            } else {
                // Longer lines keep counting past the buffer, so they never match.
                if let Some(slot) = self.line.get_mut(self.len) {
                    *slot = byte;
                }
                self.len = self.len.saturating_add(1);
            }
        }
    }

    /// The value of the key's first line, counting an unfinished last line.
    pub fn value(mut self) -> Option<u64> {
        self.end_line();
        self.value
    }

    fn end_line(&mut self) {
        if self.value.is_none() && self.len <= self.line.len() {
            if let Some(digits) = self.line[..self.len].strip_prefix(self.key) {
                self.value = crate::params::decimal(digits);
            }
        }
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VMSTAT_SAMPLE: &[u8] =
        b"nr_free_pages 24064\nnr_zone_inactive_anon 3\npgfault 1234\noom_kill 2\nunevictable_pgs_culled 0\n";

    fn scan(pieces: &[&[u8]]) -> Option<u64> {
        let mut scan = CounterScan::new(COUNTER);
        for piece in pieces {
            scan.feed(piece);
        }
        scan.value()
    }

    #[test]
    fn finds_the_counter() {
        assert_eq!(scan(&[VMSTAT_SAMPLE]), Some(2));
        assert_eq!(scan(&[b"oom_kill 0"]), Some(0), "an unfinished last line counts");
        assert_eq!(scan(&[b"oom_kill_x 5\noom_kill 7\n"]), Some(7));
        assert_eq!(scan(&[b"xoom_kill 5\n"]), None);
        assert_eq!(scan(&[b"oom_kill \noom_kill 1x\n"]), None, "malformed values are not values");
        assert_eq!(scan(&[b"nr_free_pages 1\n"]), None);
        assert_eq!(scan(&[b"oom_kill 18446744073709551615\n"]), Some(u64::MAX));
        assert_eq!(scan(&[b"oom_kill 18446744073709551616\n"]), None);
        let long = [b"oom_kill 1".as_slice(), &[b'0'; 40], b"\n"].concat();
        assert_eq!(scan(&[&long]), None, "a line longer than the buffer is never cut into a value");
    }

    proptest! {
        #[test]
        fn any_split_of_the_text_gives_the_same_value(cuts in prop::collection::vec(0..VMSTAT_SAMPLE.len(), 0..8)) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut pieces = Vec::new();
            let mut start = 0;
            for cut in cuts {
                pieces.push(&VMSTAT_SAMPLE[start..cut]);
                start = cut;
            }
            pieces.push(&VMSTAT_SAMPLE[start..]);
            prop_assert_eq!(scan(&pieces), Some(2));
        }

        #[test]
        fn the_value_is_the_first_matching_line(
            lines in prop::collection::vec(("[a-z_]{1,12}", any::<u64>()), 0..40),
            kills in any::<u64>(),
            at in any::<prop::sample::Index>(),
        ) {
            let mut text: Vec<String> = lines.iter().map(|(name, value)| format!("{name} {value}")).collect();
            let expected = text.iter().find_map(|line| line.strip_prefix("oom_kill ")?.parse().ok());
            prop_assert_eq!(scan(&[text.join("\n").as_bytes()]), expected);
            let index = at.index(text.len() + 1);
            text.insert(index, format!("oom_kill {kills}"));
            let expected = text.iter().find_map(|line| line.strip_prefix("oom_kill ")?.parse().ok());
            prop_assert_eq!(scan(&[text.join("\n").as_bytes()]), expected);
        }

        #[test]
        fn garbage_never_panics(text in prop::collection::vec(any::<u8>(), 0..4096)) {
            let _ = scan(&[&text]);
        }
    }
}
