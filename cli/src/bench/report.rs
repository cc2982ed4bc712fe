//! The bench's results: what is written to report.json, and the table printed on stdout.
//!
//! JSON shape (all times in milliseconds of host wall time, spawn to exit of QEMU):
//! ```text
//! { host: {date, cpu_model, cpus, qemu, accel, load_before, load_after}, repetitions,
//!   scenarios: [ { name, description, skipped?, results: [
//!     { firmware, kernel, machine, init, status: ok|failed|unsupported|unavailable, reason?,
//!       command, samples_ms: [..], stats: {n, median_ms, min_ms, max_ms}?,
//!       ratio_to_flint?, over_floor_ms?, phases: [ {name, median_ms} ] } ] } ] }
//! ```
//! `phases` holds, for flint's kernel runs, the median of each phase of its init's timeline
//! (qemu start and exit, firmware, kernel, init, workload, shutdown); the chart stacks them.
//! Other firmwares report no stamps, so their `phases` is empty.

use super::host::Host;
use super::scenario::FLOOR;
use super::stats::Stats;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub host: Host,
    pub repetitions: u32,
    pub scenarios: Vec<ScenarioReport>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScenarioReport {
    pub name: String,
    pub description: String,
    /// Why the scenario did not run (e.g. its kernel is not built).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub results: Vec<CaseReport>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaseReport {
    pub firmware: String,
    pub kernel: String,
    /// QEMU's machine type (pc, q35, microvm).
    pub machine: String,
    pub init: Option<String>,
    #[serde(flatten)]
    pub status: Status,
    /// The QEMU command that was timed, ready for a shell.
    pub command: Option<String>,
    pub samples_ms: Vec<f64>,
    pub stats: Option<Stats>,
    /// This median over flint's median for the same kernel on the same machine (else on
    /// `pc`, else flint's fastest).
    pub ratio_to_flint: Option<f64>,
    /// This median minus the floor's on the same machine, in the null scenario: what the
    /// firmware costs.
    pub over_floor_ms: Option<f64>,
    pub phases: Vec<Phase>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// A run ended the wrong way; no time of this case is reported.
    Failed {
        reason: String,
    },
    /// The firmware cannot boot this kind of kernel.
    Unsupported {
        reason: String,
    },
    /// The firmware is not installed here.
    Unavailable {
        reason: String,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Phase {
    pub name: String,
    pub median_ms: f64,
}

impl Status {
    pub fn describe(&self) -> String {
        match self {
            Status::Ok => "ok".into(),
            Status::Failed { reason } => format!("FAILED: {reason}"),
            Status::Unsupported { reason } => format!("unsupported: {reason}"),
            Status::Unavailable { reason } => format!("unavailable: {reason}"),
        }
    }
}

impl ScenarioReport {
    /// Fills in the comparisons once every case has its stats.
    pub fn compare(&mut self) {
        let median = |row: &CaseReport| row.stats.map(|stats| stats.median_ms);
        let floors: Vec<(String, f64)> = self
            .results
            .iter()
            .filter(|row| row.firmware == FLOOR)
            .filter_map(|row| Some((row.machine.clone(), median(row)?)))
            .collect();
        let flint: Vec<(&str, &str, f64)> = self
            .results
            .iter()
            .filter(|row| row.firmware == "flint")
            .filter_map(|row| Some((row.kernel.as_str(), row.machine.as_str(), median(row)?)))
            .collect();
        let fastest = |rows: &mut dyn Iterator<Item = f64>| rows.min_by(f64::total_cmp);
        let fastest_flint = fastest(&mut flint.iter().map(|&(_, _, ms)| ms));
        let comparisons: Vec<(Option<f64>, Option<f64>)> = self
            .results
            .iter()
            .map(|row| {
                let Some(ms) = median(row) else { return (None, None) };
                // flint's fastest way to boot this kernel on this machine: the kernel itself or
                // its PVH form, "<kernel> (PVH...)"; failing that on `pc`, where every firmware
                // runs; failing that (null kernels flint cannot boot) its fastest on this machine.
                let base = row.kernel.split(" (").next().unwrap_or_default();
                let same_kernel =
                    |kernel: &str| kernel.split(" (").next() == Some(base) && !kernel.contains("disk image");
                let fastest_on = |machine: &str, kernel_matters: bool| {
                    fastest(
                        &mut flint
                            .iter()
                            .filter(|&&(kernel, on, _)| on == machine && (!kernel_matters || same_kernel(kernel)))
                            .map(|&(_, _, ms)| ms),
                    )
                };
                let reference = fastest_on(&row.machine, true)
                    .or_else(|| fastest_on("pc", true))
                    .or_else(|| fastest_on(&row.machine, false))
                    .or(fastest_flint);
                let floor = floors.iter().find(|(machine, _)| *machine == row.machine).map(|&(_, ms)| ms);
                let over_floor = floor.filter(|_| row.firmware != FLOOR).map(|floor_ms| ms - floor_ms);
                (reference.map(|flint_ms| ms / flint_ms), over_floor)
            })
            .collect();
        for (row, (ratio, over_floor)) in self.results.iter_mut().zip(comparisons) {
            row.ratio_to_flint = ratio;
            row.over_floor_ms = over_floor;
        }
    }
}

impl Report {
    /// Fails, naming them, if any case failed: a bench with a broken firmware proves nothing.
    pub fn check(&self) -> Result<()> {
        let failures: Vec<String> = self
            .scenarios
            .iter()
            .flat_map(|scenario| scenario.results.iter().map(move |row| (scenario, row)))
            .filter_map(|(scenario, row)| match &row.status {
                Status::Failed { reason } => {
                    Some(format!("{} {} {}: {reason}", scenario.name, row.firmware, row.kernel))
                }
                _ => None,
            })
            .collect();
        if failures.is_empty() {
            return Ok(());
        }
        bail!("{} bench case(s) failed (details in report.json): {}", failures.len(), failures.join("; "))
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let host = &self.host;
        let load = |value: Option<f64>| value.map_or_else(|| "?".into(), |load| format!("{load:.2}"));
        let _ = writeln!(
            out,
            "{} | {} CPUs, {} | {} | accel {} | load average {} before, {} after",
            host.date,
            host.cpus,
            host.cpu_model,
            host.qemu,
            host.accel,
            load(host.load_before),
            load(host.load_after)
        );
        for scenario in &self.scenarios {
            let _ = writeln!(out, "\n{}: {}", scenario.name, scenario.description);
            if let Some(reason) = &scenario.skipped {
                let _ = writeln!(out, "  skipped: {reason}");
                continue;
            }
            let width = scenario.results.iter().map(|row| row.kernel.len()).max().unwrap_or(0).max(6);
            let _ = writeln!(
                out,
                "  {:<8} {:<width$} {:<10} {:>3} {:>9} {:>9} {:>9} {:>10} {:>7}",
                "firmware", "kernel", "init", "n", "median", "min", "max", "over floor", "x flint"
            );
            for row in &scenario.results {
                let init = row.init.as_deref().unwrap_or("-");
                let _ = write!(out, "  {:<8} {:<width$} {:<10} ", row.firmware, row.kernel, init);
                let Some(stats) = row.stats.filter(|_| row.status == Status::Ok) else {
                    let _ = writeln!(out, "{}", row.status.describe());
                    continue;
                };
                let optional = |value: Option<String>| value.unwrap_or_else(|| "-".into());
                let _ = writeln!(
                    out,
                    "{:>3} {:>9} {:>9} {:>9} {:>10} {:>7}",
                    stats.n,
                    duration(stats.median_ms),
                    duration(stats.min_ms),
                    duration(stats.max_ms),
                    optional(row.over_floor_ms.map(duration)),
                    optional(row.ratio_to_flint.map(|ratio| format!("{ratio:.2}"))),
                );
            }
        }
        out
    }
}

/// `35.2 ms` below a second, `2.46 s` above.
pub fn duration(ms: f64) -> String {
    if ms.abs() >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(firmware: &str, kernel: &str, samples: &[f64]) -> CaseReport {
        let machine = if kernel.contains("microvm") { "microvm" } else { "pc" };
        CaseReport {
            firmware: firmware.into(),
            kernel: kernel.into(),
            machine: machine.into(),
            init: None,
            status: Status::Ok,
            command: None,
            samples_ms: samples.to_vec(),
            stats: Stats::of(samples),
            ratio_to_flint: None,
            over_floor_ms: None,
            phases: Vec::new(),
        }
    }

    #[test]
    fn compares_with_flint_on_the_same_kernel_and_with_the_floor() {
        let mut unsupported = row("flint", "PVH", &[]);
        unsupported.status = Status::Unsupported { reason: "no PVH".into() };
        let mut scenario = ScenarioReport {
            name: "null".into(),
            description: String::new(),
            skipped: None,
            results: vec![
                row(FLOOR, "none", &[30.0]),
                row("flint", "bzImage", &[40.0]),
                unsupported,
                row("qboot", "bzImage", &[50.0]),
                row("qboot", "PVH", &[45.0]),
                row(FLOOR, "none (microvm)", &[20.0]),
                row("flint", "bzImage (microvm)", &[25.0]),
                row("qboot", "bzImage (microvm)", &[30.0]),
            ],
        };
        scenario.compare();
        let ratios: Vec<Option<f64>> = scenario.results.iter().map(|r| r.ratio_to_flint).collect();
        let expected = [Some(0.75), Some(1.0), None, Some(1.25), Some(1.125), Some(0.8), Some(1.0), Some(1.2)];
        assert_eq!(ratios, expected);
        let over: Vec<Option<f64>> = scenario.results.iter().map(|r| r.over_floor_ms).collect();
        assert_eq!(over, [None, Some(10.0), None, Some(20.0), Some(15.0), None, Some(5.0), Some(10.0)]);
    }

    #[test]
    fn compares_other_machines_with_flint_on_pc_when_flint_did_not_run_there() {
        let mut scenario = ScenarioReport {
            name: "debian".into(),
            description: String::new(),
            skipped: None,
            results: vec![
                row("flint", "debian-cloud", &[2000.0]),
                row("flint", "debian-cloud (PVH)", &[1600.0]),
                row("flint", "debian-cloud (disk image, PVH)", &[1000.0]),
                row("qboot", "debian-cloud (microvm)", &[2400.0]),
            ],
        };
        scenario.compare();
        let ratios: Vec<Option<f64>> = scenario.results.iter().map(|r| r.ratio_to_flint).collect();
        assert_eq!(ratios, [Some(1.25), Some(1.0), Some(0.625), Some(1.5)]);
    }

    #[test]
    fn statuses_serialize_flat() {
        let mut failed = row("qboot", "bzImage", &[]);
        failed.status = Status::Failed { reason: "QEMU exited 3".into() };
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!((json["status"].as_str(), json["reason"].as_str()), (Some("failed"), Some("QEMU exited 3")));
        assert_eq!(serde_json::to_value(row("flint", "bzImage", &[1.0])).unwrap()["status"], "ok");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(35.24), "35.2 ms");
        assert_eq!(duration(2460.0), "2.46 s");
    }
}
