//! `flint run --timeline`: where the time of one run went, per phase.
//!
//! The guest's stamps (firmware and init, see guest-init's `timeline` module) count TSC ticks
//! from the VM's start. The host knows when it spawned QEMU, when the init's timeline line
//! arrived (written right after the init's shutdown work) and when QEMU exited. Together:
//!
//! | phase | from | to |
//! | --- | --- | --- |
//! | qemu start | QEMU spawned | firmware's first instruction |
//! | firmware | first instruction | jump to the kernel |
//! | kernel | jump to the kernel | init started |
//! | init | init started | workload started (modules, root mounted, ports opened) |
//! | workload | workload started | workload ended |
//! | shutdown | workload ended | QEMU exited (sync, unmount, power-off, QEMU teardown) |
//!
//! The QEMU start is the host-measured time to the line's arrival minus the guest's own time
//! to writing it, so the phases add up to the host-measured total.
//!
//! A VM restored from a warm snapshot has no boot of its own (its firmware and kernel stamps
//! are the snapshot's), so its phases are:
//!
//! | phase | from | to |
//! | --- | --- | --- |
//! | qemu start | QEMU spawned | its monitor and ports connected |
//! | restore | monitor connected | the VM running again (device state loaded) |
//! | hand-over | VM running | workload started (job read, entropy and clock set, ports opened) |
//! | workload | workload started | workload ended |
//! | shutdown | workload ended | QEMU exited |
//!
//! From a workload's own snapshot (`--warm=ready`) the workload started before it: the
//! hand-over ends when the init acknowledged fresh entropy and time, and the workload phase
//! runs from there.
//!
//! The same line also tells `flint run`'s verdict whether the workload ever started.

use flint_guest_init::timeline::{parse_line, LINE_PREFIX, NAMES};
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct Phase {
    pub name: &'static str,
    pub ms: f64,
}

#[derive(Debug, Serialize)]
pub struct Timeline {
    pub phases: Vec<Phase>,
    /// QEMU's whole run, measured on the host.
    pub total_ms: f64,
    /// The guest's TSC rate, as the init measured it.
    pub tsc_hz: u64,
}

/// When the host saw things happen, relative to spawning QEMU.
pub struct HostTimes {
    pub line_arrived: Duration,
    pub qemu_exited: Duration,
    /// For a VM restored from a snapshot.
    pub restored: Option<Restored>,
}

/// When a restore's steps ended, after spawning QEMU.
#[derive(Debug, Clone, Copy)]
pub struct Restored {
    /// QEMU's monitor connected.
    pub connected: Duration,
    /// The VM ran again.
    pub resumed: Duration,
    /// For a workload's own snapshot: flint had handed over fresh entropy and time, and the
    /// workload could go on.
    pub handed_over: Option<Duration>,
}

/// The guest's stamps in milliseconds since the VM started, by name.
struct GuestStamps {
    tsc_hz: u64,
    ms: [f64; NAMES.len()],
}

/// The last of the init's report lines that start with `prefix` on the status port, parsed.
/// The init writes its own after the workload and everything it left behind are gone, so an
/// earlier one is not the init's; and the last occurrence in a line, since a line the
/// workload left unfinished may sit in front of the init's.
pub fn last_report<T>(status_port: &[u8], prefix: &str, parse: impl Fn(&[u8]) -> Option<T>) -> Option<T> {
    let prefix = prefix.as_bytes();
    status_port.split(|&byte| byte == b'\n').rev().find_map(|line| {
        let start = line.windows(prefix.len()).rposition(|window| window == prefix)?;
        parse(&line[start..])
    })
}

fn last_line(status_port: &[u8]) -> Option<(u64, [u64; NAMES.len()])> {
    last_report(status_port, LINE_PREFIX, parse_line)
}

fn stamp(name: &str) -> usize {
    NAMES.iter().position(|n| *n == name).expect("known stamp")
}

/// What the init's timeline line says of the workload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Workload {
    /// No timeline line.
    Unknown,
    /// The init ended the VM before starting it (its `exec` stamp is 0).
    NeverStarted,
    /// It started, and ended after this long.
    Ran(Duration),
}

impl Workload {
    pub fn from_status_port(status_port: &[u8]) -> Workload {
        match last_line(status_port) {
            None => Workload::Unknown,
            Some((_, stamps)) if stamps[stamp("exec")] == 0 => Workload::NeverStarted,
            Some((tsc_hz, stamps)) => {
                let ticks = stamps[stamp("exit")].saturating_sub(stamps[stamp("exec")]);
                let nanos = u128::from(ticks) * 1_000_000_000 / u128::from(tsc_hz.max(1));
                Workload::Ran(Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)))
            }
        }
    }
}

impl GuestStamps {
    /// `None` without a complete timeline line (another firmware, or an init that failed
    /// before writing it).
    fn parse(status_port: &[u8]) -> Option<GuestStamps> {
        let (tsc_hz, stamps) = last_line(status_port)?;
        if tsc_hz == 0 || stamps.contains(&0) {
            return None;
        }
        Some(GuestStamps { tsc_hz, ms: stamps.map(|ticks| ticks as f64 * 1000.0 / tsc_hz as f64) })
    }

    fn at(&self, name: &str) -> f64 {
        self.ms[stamp(name)]
    }

    /// The phases the guest measured alone, from the firmware's first instruction to the
    /// init's power-off.
    fn guest_phases(&self) -> [Phase; 4] {
        [
            Phase { name: "firmware", ms: self.at("fw_handoff") - self.at("fw_reset") },
            Phase { name: "kernel", ms: self.at("init") - self.at("fw_handoff") },
            Phase { name: "init", ms: self.at("exec") - self.at("init") },
            Phase { name: "workload", ms: self.at("exit") - self.at("exec") },
        ]
    }
}

fn host_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Timeline {
    /// From what arrived on the status port and when.
    pub fn from_status_port(status_port: &[u8], host: &HostTimes) -> Option<Timeline> {
        let guest = GuestStamps::parse(status_port)?;
        // The line left the guest before QEMU exited even when flint read it later (a status
        // port flooded by the workload).
        let arrived = host.line_arrived.min(host.qemu_exited);
        if let Some(restored) = host.restored {
            // The guest's clock is the snapshot's: only its differences after the restore
            // count. A workload's own snapshot was taken after `exec`.
            let exit = host_ms(arrived) - (guest.at("poweroff") - guest.at("exit"));
            let exec = match restored.handed_over {
                Some(handed_over) => host_ms(handed_over),
                None => exit - (guest.at("exit") - guest.at("exec")),
            };
            let phases = vec![
                Phase { name: "qemu start", ms: host_ms(restored.connected) },
                Phase { name: "restore", ms: host_ms(restored.resumed) - host_ms(restored.connected) },
                Phase { name: "hand-over", ms: exec - host_ms(restored.resumed) },
                Phase { name: "workload", ms: exit - exec },
                Phase {
                    name: "shutdown",
                    ms: guest.at("poweroff") - guest.at("exit") + host_ms(host.qemu_exited - arrived),
                },
            ];
            return Some(Timeline { phases, total_ms: host_ms(host.qemu_exited), tsc_hz: guest.tsc_hz });
        }
        let before_vm = host_ms(arrived) - guest.at("poweroff");
        let mut phases = vec![Phase { name: "qemu start", ms: before_vm + guest.at("fw_reset") }];
        phases.extend(guest.guest_phases());
        phases.push(Phase {
            name: "shutdown",
            ms: guest.at("poweroff") - guest.at("exit") + host_ms(host.qemu_exited - arrived),
        });
        Some(Timeline { phases, total_ms: host_ms(host.qemu_exited), tsc_hz: guest.tsc_hz })
    }

    /// Without the time the line arrived (the bench reads it from a file afterwards): QEMU's
    /// own start and exit are one phase, the guest's shutdown another.
    pub fn from_status_and_total(status_port: &[u8], qemu_exited: Duration) -> Option<Timeline> {
        let guest = GuestStamps::parse(status_port)?;
        let total_ms = host_ms(qemu_exited);
        let mut phases = vec![Phase { name: "qemu", ms: total_ms - guest.at("poweroff") + guest.at("fw_reset") }];
        phases.extend(guest.guest_phases());
        phases.push(Phase { name: "shutdown", ms: guest.at("poweroff") - guest.at("exit") });
        Some(Timeline { phases, total_ms, tsc_hz: guest.tsc_hz })
    }

    /// A table for people, on stderr (stdout belongs to the workload).
    pub fn print(&self) {
        eprintln!("{:<12} {:>10} {:>6}", "phase", "ms", "%");
        for phase in &self.phases {
            eprintln!("{:<12} {:>10.1} {:>6.1}", phase.name, phase.ms, 100.0 * phase.ms / self.total_ms);
        }
        eprintln!("{:<12} {:>10.1}", "total", self.total_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_add_up_to_the_host_total() {
        // 1 GHz: ticks are nanoseconds.
        let line = b"flint-status 0\nflint-timeline tsc_hz=1000000000 fw_reset=1000000 fw_loaded=5000000 \
                     fw_handoff=6000000 init=900000000 root=950000000 exec=960000000 exit=980000000 poweroff=990000000\n";
        let host = HostTimes {
            line_arrived: Duration::from_millis(1030),
            qemu_exited: Duration::from_millis(1050),
            restored: None,
        };
        let timeline = Timeline::from_status_port(line, &host).unwrap();
        let ms: Vec<f64> = timeline.phases.iter().map(|p| (p.ms * 1000.0).round() / 1000.0).collect();
        assert_eq!(ms, [41.0, 5.0, 894.0, 60.0, 20.0, 30.0]);
        assert!((timeline.phases.iter().map(|p| p.ms).sum::<f64>() - 1050.0).abs() < 1e-6);
    }

    #[test]
    fn a_restored_vm_has_restore_phases_that_add_up() {
        // The snapshot's boot stamps mean nothing to this run; exec to poweroff is 30 ms.
        let line = b"flint-status 0\nflint-timeline tsc_hz=1000000000 fw_reset=1000000 fw_loaded=5000000 \
                     fw_handoff=6000000 init=900000000 root=950000000 exec=5960000000 exit=5980000000 poweroff=5990000000\n";
        let host = HostTimes {
            line_arrived: Duration::from_millis(100),
            qemu_exited: Duration::from_millis(110),
            restored: Some(Restored {
                connected: Duration::from_millis(25),
                resumed: Duration::from_millis(40),
                handed_over: None,
            }),
        };
        let timeline = Timeline::from_status_port(line, &host).unwrap();
        let phases: Vec<(&str, f64)> =
            timeline.phases.iter().map(|p| (p.name, (p.ms * 1000.0).round() / 1000.0)).collect();
        assert_eq!(
            phases,
            [("qemu start", 25.0), ("restore", 15.0), ("hand-over", 30.0), ("workload", 20.0), ("shutdown", 20.0)]
        );
    }

    #[test]
    fn without_the_arrival_time_qemu_start_and_exit_are_one_phase() {
        let line = b"flint-timeline tsc_hz=1000000000 fw_reset=1000000 fw_loaded=5000000 \
                     fw_handoff=6000000 init=900000000 root=950000000 exec=960000000 exit=980000000 poweroff=990000000\n";
        let timeline = Timeline::from_status_and_total(line, Duration::from_millis(1050)).unwrap();
        let ms: Vec<f64> = timeline.phases.iter().map(|p| (p.ms * 1000.0).round() / 1000.0).collect();
        assert_eq!(ms, [61.0, 5.0, 894.0, 60.0, 20.0, 10.0]);
    }

    #[test]
    fn a_line_read_after_qemu_exited_counts_as_arriving_at_its_exit() {
        let line = b"flint-timeline tsc_hz=1000000000 fw_reset=1000000 fw_loaded=5000000 \
                     fw_handoff=6000000 init=900000000 root=950000000 exec=960000000 exit=980000000 poweroff=990000000\n";
        let host = HostTimes {
            line_arrived: Duration::from_millis(1070),
            qemu_exited: Duration::from_millis(1050),
            restored: None,
        };
        let timeline = Timeline::from_status_port(line, &host).unwrap();
        assert!((timeline.phases.iter().map(|p| p.ms).sum::<f64>() - 1050.0).abs() < 1e-6);
        assert_eq!(timeline.phases.last().unwrap().ms.round(), 10.0);
    }

    #[test]
    fn the_last_line_says_whether_the_workload_started() {
        let line = |exec: u64, exit: u64| {
            format!(
                "flint-timeline tsc_hz=1000000000 fw_reset=1 fw_loaded=2 fw_handoff=3 init=4 root=5 exec={exec} exit={exit} poweroff=9\n"
            )
        };
        assert_eq!(Workload::from_status_port(b"flint-ready\nflint-status 3\n"), Workload::Unknown);
        let never = format!("flint-ready\n{}flint-status 122\n", line(0, 6));
        assert_eq!(Workload::from_status_port(never.as_bytes()), Workload::NeverStarted);
        // Lines the workload wrote come before the init's own, an unfinished one too.
        let ran = Workload::Ran(Duration::from_millis(2500));
        let forged = format!("flint-ready\n{}{}flint-status 0\n", line(0, 0), line(1_000_000, 2_501_000_000));
        assert_eq!(Workload::from_status_port(forged.as_bytes()), ran);
        let unfinished = format!("{}x{}", line(0, 0), line(1_000_000, 2_501_000_000));
        assert_eq!(Workload::from_status_port(unfinished.as_bytes()), ran);
    }

    #[test]
    fn needs_a_complete_line() {
        let host =
            HostTimes { line_arrived: Duration::from_millis(1), qemu_exited: Duration::from_millis(2), restored: None };
        assert!(Timeline::from_status_port(b"flint-status 0\n", &host).is_none());
        let partial =
            b"flint-timeline tsc_hz=1 fw_reset=0 fw_loaded=0 fw_handoff=0 init=1 root=2 exec=3 exit=4 poweroff=5\n";
        assert!(Timeline::from_status_port(partial, &host).is_none(), "no firmware stamps: not flint's firmware");
    }

    mod fuzz {
        //! The init's timeline line, formatted by the guest's own code, read back here:
        //! after any noise the workload wrote, the phases add up and the workload's run time
        //! is the init's; from garbage, no timeline and no panic.
        use super::*;
        use flint_guest_init::timeline::{format_line, STAMPS_LEN};
        use proptest::prelude::*;

        /// Stamps in boot order, none zero, as a 1 MHz to 10 GHz TSC counts them.
        fn stamps() -> impl Strategy<Value = (u64, [u64; STAMPS_LEN])> {
            (1_000_000..10_000_000_000u64, any::<[u32; STAMPS_LEN]>()).prop_map(|(tsc_hz, gaps)| {
                let mut stamps = [0u64; STAMPS_LEN];
                let mut now = 0u64;
                for (stamp, gap) in stamps.iter_mut().zip(gaps) {
                    now += u64::from(gap) + 1;
                    *stamp = now;
                }
                (tsc_hz, stamps)
            })
        }

        fn noise() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                prop::collection::vec(any::<u8>(), 0..40),
                (any::<u64>(), any::<[u64; STAMPS_LEN]>()).prop_map(|(hz, stamps)| format_line(
                    hz,
                    stamps,
                    &mut [0; 320]
                )
                .to_vec()),
                Just(LINE_PREFIX.as_bytes().to_vec()),
                Just(b"flint-status 0\n".to_vec()),
            ];
            prop::collection::vec(piece, 0..16).prop_map(|pieces| pieces.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn the_inits_line_after_any_noise_is_read_back(
                noise in noise(),
                (tsc_hz, stamps) in stamps(),
                arrived_ms in 0..100_000u64,
                extra_ms in 0..100_000u64,
            ) {
                let line = format_line(tsc_hz, stamps, &mut [0; 320]).to_vec();
                let port = [noise.as_slice(), &line, b"flint-status 0\n"].concat();
                let host = HostTimes {
                    line_arrived: Duration::from_millis(arrived_ms),
                    qemu_exited: Duration::from_millis(arrived_ms + extra_ms),
                    restored: None,
                };
                let timeline = Timeline::from_status_port(&port, &host).expect("a timeline");
                prop_assert_eq!(timeline.tsc_hz, tsc_hz);
                let sum: f64 = timeline.phases.iter().map(|phase| phase.ms).sum();
                let scale: f64 = timeline.phases.iter().map(|phase| phase.ms.abs()).sum::<f64>() + timeline.total_ms;
                prop_assert!((sum - timeline.total_ms).abs() <= 1e-9 * scale + 1e-6, "{} vs {}", sum, timeline.total_ms);
                // The guest's own phases are never negative: its stamps are in order.
                prop_assert!(timeline.phases[1..5].iter().all(|phase| phase.ms >= 0.0));
                let ticks = stamps[6] - stamps[5];
                let expected = Duration::from_nanos((u128::from(ticks) * 1_000_000_000 / u128::from(tsc_hz)) as u64);
                prop_assert_eq!(Workload::from_status_port(&port), Workload::Ran(expected));
                let unattended = Timeline::from_status_and_total(&port, host.qemu_exited).expect("a timeline");
                let sum: f64 = unattended.phases.iter().map(|phase| phase.ms).sum();
                prop_assert!((sum - unattended.total_ms).abs() <= 1e-9 * scale + 1e-6);
            }

            /// Garbage, lines cut short, stamps at their extremes: whatever comes out, no
            /// panic (no overflow, no division by zero).
            #[test]
            fn any_port_gives_a_timeline_or_none(
                noise in noise(),
                tail in prop::collection::vec(any::<u8>(), 0..8),
                arrived in any::<u32>(),
                exited in any::<u32>(),
            ) {
                let port = [noise.as_slice(), &tail].concat();
                let host = HostTimes {
                    line_arrived: Duration::from_micros(arrived.into()),
                    qemu_exited: Duration::from_micros(exited.into()),
                    restored: (arrived % 2 == 0).then(|| Restored {
                        connected: Duration::from_micros((arrived / 4).into()),
                        resumed: Duration::from_micros((arrived / 3).into()),
                        handed_over: (arrived % 4 == 0).then(|| Duration::from_micros((arrived / 2).into())),
                    }),
                };
                let _ = Timeline::from_status_port(&port, &host);
                let _ = Timeline::from_status_and_total(&port, host.qemu_exited);
                let _ = Workload::from_status_port(&port);
            }
        }
    }
}
