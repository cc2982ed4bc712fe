//! The bench's results: what is written to report.json, and the table printed on stdout.
//!
//! JSON shape (all times in milliseconds of host wall time, spawn to exit of QEMU):
//! ```text
//! { host: {date, cpu_model, cpus, qemu, accel, load_before, load_after}, repetitions,
//!   scenarios: [ { name, description, skipped?, results: [
//!     { firmware, kernel, init, status: ok|failed|unsupported|unavailable, reason?,
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
    pub init: Option<String>,
    #[serde(flatten)]
    pub status: Status,
    /// The QEMU command that was timed, ready for a shell.
    pub command: Option<String>,
    pub samples_ms: Vec<f64>,
    pub stats: Option<Stats>,
    /// This median over flint's median for the same kernel (else flint's fastest).
    pub ratio_to_flint: Option<f64>,
    /// This median minus the floor's, in the null scenario: what the firmware costs.
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
        let floor = self.results.iter().find(|row| row.firmware == FLOOR).and_then(median);
        let flint: Vec<(String, f64)> = self
            .results
            .iter()
            .filter(|row| row.firmware == "flint")
            .filter_map(|row| Some((row.kernel.clone(), median(row)?)))
            .collect();
        let fastest_flint = flint.iter().map(|(_, ms)| *ms).min_by(f64::total_cmp);
        for row in &mut self.results {
            let Some(ms) = median(row) else { continue };
            // flint's fastest way to boot this kernel on `pc`, where the other firmwares run: the
            // kernel itself or its PVH form, "<kernel> (PVH)". Other variants ("<kernel> (PVH,
            // microvm)", ...) are compared with that too.
            let base = row.kernel.split(" (").next().unwrap_or_default();
            let reference = flint
                .iter()
                .filter(|(kernel, _)| kernel == base || kernel.strip_prefix(base) == Some(" (PVH)"))
                .map(|(_, ms)| *ms)
                .min_by(f64::total_cmp)
                .or(fastest_flint);
            row.ratio_to_flint = reference.map(|flint_ms| ms / flint_ms);
            row.over_floor_ms = floor.filter(|_| row.firmware != FLOOR).map(|floor_ms| ms - floor_ms);
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
        CaseReport {
            firmware: firmware.into(),
            kernel: kernel.into(),
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
            ],
        };
        scenario.compare();
        let ratios: Vec<Option<f64>> = scenario.results.iter().map(|r| r.ratio_to_flint).collect();
        assert_eq!(ratios, [Some(0.75), Some(1.0), None, Some(1.25), Some(1.125)]);
        let over: Vec<Option<f64>> = scenario.results.iter().map(|r| r.over_floor_ms).collect();
        assert_eq!(over, [None, Some(10.0), None, Some(20.0), Some(15.0)]);
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
