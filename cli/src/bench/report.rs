//! The bench's results: what is written to report.json, and the table printed on stdout.
//!
//! JSON shape (all times in milliseconds of host wall time, spawn to exit of QEMU):
//! ```text
//! { host: {date, cpu_model, cpus, qemu, accel, load_before, load_after}, repetitions,
//!   headline: {
//!     end_to_end: [ { scenario, flint: FIGURE, peers: [ FIGURE + ratio_to_flint ] } ],
//!     firmware_overhead: [ { scenario, machine, floor_ms,
//!       firmwares: [ FIGURE + over_floor_ms + over_floor_error_ms ] } ] },
//!   scenarios: [ { name, description, skipped?, results: [
//!     { firmware, kernel, machine, init, status: ok|failed|unsupported|unavailable, reason?,
//!       command, samples_ms: [..], stats: {n, median_ms, min_ms, max_ms}?,
//!       ratio_to_flint?, over_floor_ms?, phases: [ {name, median_ms} ] } ] } ] }
//! FIGURE: { firmware, kernel, machine, boot, label, median_ms }
//! ```
//! `headline` is derived from `scenarios` when the report is written (see [`Headline`]); a
//! report read back recomputes it. `label` names firmware, kernel, boot path and machine, as the
//! chart's bars and the table's rows do (see [`CaseReport::label`]).
//! `phases` holds, for flint's kernel runs, the median of each phase of its init's timeline
//! (qemu start and exit, firmware, kernel, init, workload, shutdown); the chart stacks them.
//! Other firmwares report no stamps, so their `phases` is empty.

use super::firmware::KernelForm;
use super::host::Host;
use super::scenario::FLOOR;
use super::stats::{self, Stats};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt::Write;

/// Written with its [`Headline`] (the `Serialize` impl below), read back without it.
#[derive(Clone, Debug, Deserialize)]
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
    /// This median minus the floor's on the same machine, in the scenarios with a floor (null,
    /// kernel-entry): what the firmware costs.
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

/// How a row booted, spelled out from its `kernel` text and `machine`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Boot {
    /// The kernel's name: `null` for the null kernels, `none` for the floor.
    pub kernel: String,
    /// `bzImage` (the kernel's own entry, loaded by the firmware from `-kernel`), `PVH` (its
    /// vmlinux's PVH entry), `disk image, PVH` or `disk image, UKI` (no `-kernel`: the firmware
    /// reads it from a disk made by `flint image`), `flint run` (the VM as `flint run` boots
    /// it), or `reset vector` for the floor.
    pub path: String,
    /// QEMU's machine type.
    pub machine: String,
}

impl CaseReport {
    /// The row's kernel, boot path and machine. The `kernel` text is `<kernel>` or
    /// `<kernel> (<path>[, <machine>])`, the null kernels' `<kernel>` being their form (bzImage,
    /// PVH) and the floor's `none`; a kernel without a path boots through its bzImage.
    pub fn boot(&self) -> Boot {
        let (base, details) = match self.kernel.split_once(" (") {
            Some((base, rest)) => (base, rest.strip_suffix(')').unwrap_or(rest)),
            None => (self.kernel.as_str(), ""),
        };
        // The machine is said on its own.
        let details: Vec<&str> =
            details.split(", ").filter(|detail| !detail.is_empty() && *detail != self.machine).collect();
        let (kernel, path) = if self.firmware == FLOOR {
            ("none".to_string(), "reset vector".to_string())
        } else if self.init.is_none() && [KernelForm::BzImage, KernelForm::Pvh].iter().any(|form| form.name() == base) {
            // A null kernel: the base is its form. (A real one stopped at an entry has no init
            // either, and is named as the kernel scenarios name theirs.)
            ("null".to_string(), std::iter::once(base).chain(details).collect::<Vec<_>>().join(", "))
        } else if details.is_empty() {
            (base.to_string(), "bzImage".to_string())
        } else {
            (base.to_string(), details.join(", "))
        };
        Boot { kernel, path, machine: self.machine.clone() }
    }

    /// `firmware · kernel · boot path · machine`, e.g. `flint · debian-cloud · PVH · microvm`.
    pub fn label(&self) -> String {
        let Boot { kernel, path, machine } = self.boot();
        format!("{} · {kernel} · {path} · {machine}", self.firmware)
    }
}

/// The rows' labels ([`CaseReport::label`]), each one unique: a label two rows would share (no
/// scenario makes such rows today) gets the row's `kernel` text appended.
pub fn labels(rows: &[&CaseReport]) -> Vec<String> {
    let plain: Vec<String> = rows.iter().map(|row| row.label()).collect();
    plain
        .iter()
        .zip(rows)
        .enumerate()
        .map(|(index, (label, row))| {
            let shared = plain.iter().enumerate().any(|(other, same)| other != index && same == label);
            if shared {
                format!("{label} [{}]", row.kernel)
            } else {
                label.clone()
            }
        })
        .collect()
}

/// What a reader wants first: in each kernel scenario, flint as `flint run` boots against each
/// other firmware's fastest way to boot the same kernel, end to end; in the scenarios with a
/// floor (null, kernel-entry), what each firmware costs over it on each machine.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Headline {
    pub end_to_end: Vec<EndToEnd>,
    pub firmware_overhead: Vec<Overhead>,
}

/// One row of the report, named.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Figure {
    pub firmware: String,
    /// The row's `kernel` text, as in `scenarios`.
    pub kernel: String,
    pub machine: String,
    /// The boot path ([`Boot::path`]).
    pub boot: String,
    /// [`CaseReport::label`].
    pub label: String,
    pub median_ms: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EndToEnd {
    pub scenario: String,
    /// flint's `(flint run)` row; failing that (it did not run), flint's fastest row.
    pub flint: Figure,
    /// Each other firmware's fastest row, in the report's order.
    pub peers: Vec<Versus>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Versus {
    #[serde(flatten)]
    pub figure: Figure,
    /// This median over flint's: how many times flint's time this firmware takes.
    pub ratio_to_flint: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Overhead {
    pub scenario: String,
    pub machine: String,
    /// The floor's median on this machine: QEMU's own start and exit.
    pub floor_ms: f64,
    /// Each firmware's fastest row on this machine, in the report's order.
    pub firmwares: Vec<OverFloor>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OverFloor {
    #[serde(flatten)]
    pub figure: Figure,
    /// This median minus the floor's.
    pub over_floor_ms: f64,
    /// That difference's standard error (`stats::median_difference_error`): firmwares whose
    /// overheads lie closer than this are not told apart by the run. None with one repetition.
    pub over_floor_error_ms: Option<f64>,
}

impl Figure {
    fn of(row: &CaseReport) -> Option<Figure> {
        let stats = row.stats.filter(|_| row.status == Status::Ok)?;
        Some(Figure {
            firmware: row.firmware.clone(),
            kernel: row.kernel.clone(),
            machine: row.machine.clone(),
            boot: row.boot().path,
            label: row.label(),
            median_ms: stats.median_ms,
        })
    }
}

impl Headline {
    pub fn of(scenarios: &[ScenarioReport]) -> Headline {
        let mut headline = Headline::default();
        for scenario in scenarios {
            let rows: Vec<(&CaseReport, Figure)> =
                scenario.results.iter().filter_map(|row| Some((row, Figure::of(row)?))).collect();
            if rows.iter().any(|(row, _)| row.firmware == FLOOR) {
                let mut machines: Vec<&str> = Vec::new();
                for (row, _) in &rows {
                    if !machines.contains(&row.machine.as_str()) {
                        machines.push(&row.machine);
                    }
                }
                for machine in machines {
                    let on: Vec<&(&CaseReport, Figure)> =
                        rows.iter().filter(|(row, _)| row.machine == machine).collect();
                    let Some((floor, floor_figure)) = on.iter().find(|(row, _)| row.firmware == FLOOR).copied() else {
                        continue;
                    };
                    let floor_ms = floor_figure.median_ms;
                    let firmwares: Vec<&(&CaseReport, Figure)> =
                        on.into_iter().filter(|(row, _)| row.firmware != FLOOR).collect();
                    let firmwares = fastest_of_each(&firmwares)
                        .into_iter()
                        .map(|(row, figure)| OverFloor {
                            over_floor_ms: figure.median_ms - floor_ms,
                            over_floor_error_ms: stats::median_difference_error(&row.samples_ms, &floor.samples_ms),
                            figure: figure.clone(),
                        })
                        .collect();
                    let scenario = scenario.name.clone();
                    headline.firmware_overhead.push(Overhead {
                        scenario,
                        machine: machine.into(),
                        floor_ms,
                        firmwares,
                    });
                }
                continue;
            }
            let flint: Vec<&(&CaseReport, Figure)> = rows.iter().filter(|(row, _)| row.firmware == "flint").collect();
            let flint_run = flint.iter().find(|(row, _)| row.kernel.ends_with("(flint run)"));
            let Some((_, flint)) =
                flint_run.or_else(|| flint.iter().min_by(|a, b| a.1.median_ms.total_cmp(&b.1.median_ms)))
            else {
                continue;
            };
            let others: Vec<&(&CaseReport, Figure)> = rows.iter().filter(|(row, _)| row.firmware != "flint").collect();
            let peers = fastest_of_each(&others)
                .into_iter()
                .map(|(_, figure)| Versus {
                    ratio_to_flint: figure.median_ms / flint.median_ms,
                    figure: figure.clone(),
                })
                .collect();
            headline.end_to_end.push(EndToEnd { scenario: scenario.name.clone(), flint: flint.clone(), peers });
        }
        headline
    }

    /// The headline as text, for the top of the table.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for entry in &self.end_to_end {
            let figures = std::iter::once(&entry.flint).chain(entry.peers.iter().map(|peer| &peer.figure));
            let width = figures.map(|figure| figure.label.chars().count()).max().unwrap_or_default();
            let flint = &entry.flint;
            let _ = writeln!(out, "  {}, end to end:", entry.scenario);
            let _ = writeln!(out, "    {:<width$} {:>9}", flint.label, duration(flint.median_ms));
            if entry.peers.is_empty() {
                let _ = writeln!(out, "    (no other firmware booted this kernel)");
            }
            for peer in &entry.peers {
                let figure = &peer.figure;
                let (label, median, ratio) = (&figure.label, duration(figure.median_ms), peer.ratio_to_flint);
                let _ = writeln!(out, "    {label:<width$} {median:>9}  {ratio:.2}x flint's time");
            }
        }
        for entry in &self.firmware_overhead {
            let (scenario, machine, floor) = (&entry.scenario, &entry.machine, duration(entry.floor_ms));
            let _ = writeln!(out, "  {scenario}, firmware over the floor on {machine} (floor {floor}):");
            let width = entry.firmwares.iter().map(|firmware| firmware.figure.label.chars().count()).max();
            let width = width.unwrap_or_default();
            for firmware in &entry.firmwares {
                let over = signed(firmware.over_floor_ms);
                let error = firmware.over_floor_error_ms.map(|ms| format!("  ± {}", duration(ms))).unwrap_or_default();
                let _ = writeln!(out, "    {:<width$} {over:>9}{error}", firmware.figure.label);
            }
        }
        out
    }
}

/// Each firmware's fastest of `rows`, in the order the firmwares first appear.
fn fastest_of_each<'r, 'c>(rows: &[&'r (&'c CaseReport, Figure)]) -> Vec<&'r (&'c CaseReport, Figure)> {
    let mut firmwares: Vec<&str> = Vec::new();
    for (row, _) in rows {
        if !firmwares.contains(&row.firmware.as_str()) {
            firmwares.push(&row.firmware);
        }
    }
    firmwares
        .into_iter()
        .filter_map(|firmware| {
            rows.iter()
                .filter(|(row, _)| row.firmware == firmware)
                .min_by(|a, b| a.1.median_ms.total_cmp(&b.1.median_ms))
                .copied()
        })
        .collect()
}

impl Serialize for Report {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Written<'a> {
            host: &'a Host,
            repetitions: u32,
            headline: Headline,
            scenarios: &'a [ScenarioReport],
        }
        Written {
            host: &self.host,
            repetitions: self.repetitions,
            headline: Headline::of(&self.scenarios),
            scenarios: &self.scenarios,
        }
        .serialize(serializer)
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
        // Boots only: the flint process rows time flint's own work too, or a restore.
        let flint: Vec<(&str, &str, f64)> = self
            .results
            .iter()
            .filter(|row| row.firmware == "flint" && !row.kernel.contains("(flint process"))
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
        let headline = Headline::of(&self.scenarios).text();
        if !headline.is_empty() {
            let _ = write!(out, "\nHeadline (medians of {} runs, {}):\n{headline}", self.repetitions, host.date);
        }
        for scenario in &self.scenarios {
            let _ = writeln!(out, "\n{}: {}", scenario.name, scenario.description);
            if let Some(reason) = &scenario.skipped {
                let _ = writeln!(out, "  skipped: {reason}");
                continue;
            }
            let boots: Vec<Boot> = scenario.results.iter().map(CaseReport::boot).collect();
            let width = |title: &str, values: &mut dyn Iterator<Item = &str>| {
                values.map(str::len).chain([title.len()]).max().unwrap_or_default()
            };
            let firmware_width = width("firmware", &mut scenario.results.iter().map(|row| row.firmware.as_str()));
            let kernel_width = width("kernel", &mut boots.iter().map(|boot| boot.kernel.as_str()));
            let path_width = width("boot", &mut boots.iter().map(|boot| boot.path.as_str()));
            let machine_width = width("machine", &mut boots.iter().map(|boot| boot.machine.as_str()));
            let _ = writeln!(
                out,
                "  {:<firmware_width$} {:<kernel_width$} {:<path_width$} {:<machine_width$} {:<10} {:>3} {:>9} {:>9} \
                 {:>9} {:>10} {:>7}",
                "firmware", "kernel", "boot", "machine", "init", "n", "median", "min", "max", "over floor", "x flint"
            );
            for (row, boot) in scenario.results.iter().zip(&boots) {
                let init = row.init.as_deref().unwrap_or("-");
                let _ = write!(
                    out,
                    "  {:<firmware_width$} {:<kernel_width$} {:<path_width$} {:<machine_width$} {:<10} ",
                    row.firmware, boot.kernel, boot.path, boot.machine, init
                );
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

/// A difference, with its sign: `+7.9 ms`, `-0.6 ms`.
pub fn signed(ms: f64) -> String {
    let sign = if ms < 0.0 { "" } else { "+" };
    format!("{sign}{}", duration(ms))
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
    fn warm_restores_are_compared_with_flints_boots_not_taken_as_them() {
        let mut scenario = ScenarioReport {
            name: "minimal".into(),
            description: String::new(),
            skipped: None,
            results: vec![
                kernel_row("flint", "minimal (flint run)", "microvm", &[500.0]),
                kernel_row("flint", "minimal (flint process, --warm)", "microvm", &[200.0]),
            ],
        };
        scenario.compare();
        let ratios: Vec<Option<f64>> = scenario.results.iter().map(|r| r.ratio_to_flint).collect();
        assert_eq!(ratios, [Some(1.0), Some(0.4)]);
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

    fn kernel_row(firmware: &str, kernel: &str, machine: &str, samples: &[f64]) -> CaseReport {
        let mut row = row(firmware, kernel, samples);
        row.machine = machine.into();
        row.init = Some(if firmware == "flint" { "flint-init" } else { "busybox" }.into());
        row
    }

    #[test]
    fn labels_say_firmware_kernel_boot_path_and_machine() {
        let cases = [
            (kernel_row("flint", "debian-cloud", "pc", &[1.0]), "flint · debian-cloud · bzImage · pc"),
            (kernel_row("flint", "debian-cloud (PVH)", "pc", &[1.0]), "flint · debian-cloud · PVH · pc"),
            (kernel_row("flint", "debian-cloud (PVH, q35)", "q35", &[1.0]), "flint · debian-cloud · PVH · q35"),
            (kernel_row("flint", "minimal (PVH, microvm)", "microvm", &[1.0]), "flint · minimal · PVH · microvm"),
            (kernel_row("flint", "x (disk image, PVH)", "pc", &[1.0]), "flint · x · disk image, PVH · pc"),
            (kernel_row("flint", "x (disk image, UKI)", "pc", &[1.0]), "flint · x · disk image, UKI · pc"),
            (kernel_row("flint", "x (flint run)", "microvm", &[1.0]), "flint · x · flint run · microvm"),
            (kernel_row("qboot", "x (microvm)", "microvm", &[1.0]), "qboot · x · bzImage · microvm"),
            (kernel_row("SeaBIOS", "x", "pc", &[1.0]), "SeaBIOS · x · bzImage · pc"),
            (row(FLOOR, "none (microvm)", &[1.0]), "floor · none · reset vector · microvm"),
            (row("qboot", "x (to startup_64, microvm)", &[1.0]), "qboot · x · to startup_64 · microvm"),
            (row("qboot", "PVH (microvm)", &[1.0]), "qboot · null · PVH · microvm"),
            (row("OVMF", "bzImage", &[1.0]), "OVMF · null · bzImage · pc"),
        ];
        for (row, label) in &cases {
            assert_eq!(row.label(), *label, "{}", row.kernel);
        }
        let boot = cases[4].0.boot();
        assert_eq!((boot.kernel.as_str(), boot.path.as_str(), boot.machine.as_str()), ("x", "disk image, PVH", "pc"));
        // Labels stay unique even for rows the scenarios do not make.
        let (a, b) =
            (kernel_row("flint", "x (PVH, q35)", "q35", &[1.0]), kernel_row("flint", "x (PVH)", "q35", &[1.0]));
        let c = kernel_row("flint", "x", "pc", &[1.0]);
        assert_eq!(
            labels(&[&a, &b, &c]),
            ["flint · x · PVH · q35 [x (PVH, q35)]", "flint · x · PVH · q35 [x (PVH)]", "flint · x · bzImage · pc"]
        );
    }

    #[test]
    fn headline_puts_flint_run_against_each_peers_best_and_each_firmware_over_the_floor() {
        let mut null = ScenarioReport {
            name: "null".into(),
            description: String::new(),
            skipped: None,
            results: vec![
                row(FLOOR, "none", &[30.0]),
                row("flint", "bzImage", &[40.0]),
                row("flint", "PVH", &[38.0]),
                row("qboot", "bzImage", &[36.0]),
                row(FLOOR, "none (microvm)", &[20.0]),
                row("flint", "bzImage (microvm)", &[25.0]),
                row("qboot", "PVH (microvm)", &[22.5]),
            ],
        };
        let mut unavailable = kernel_row("SeaBIOS", "debian-cloud", "pc", &[]);
        unavailable.status = Status::Unavailable { reason: "not installed".into() };
        let mut debian = ScenarioReport {
            name: "debian".into(),
            description: String::new(),
            skipped: None,
            results: vec![
                kernel_row("flint", "debian-cloud (PVH)", "pc", &[1000.0]),
                kernel_row("flint", "debian-cloud (flint run)", "microvm", &[1500.0]),
                kernel_row("qboot", "debian-cloud", "pc", &[2600.0]),
                kernel_row("qboot", "debian-cloud (microvm)", "microvm", &[2250.0]),
                unavailable,
            ],
        };
        null.compare();
        debian.compare();
        let report = Report {
            host: Host {
                date: "2026-01-02".into(),
                cpu_model: "test".into(),
                cpus: 2,
                qemu: "QEMU 7.2".into(),
                accel: "tcg".into(),
                load_before: None,
                load_after: None,
            },
            repetitions: 1,
            scenarios: vec![null, debian],
        };
        let json = serde_json::to_value(&report).unwrap();
        let headline = &json["headline"];
        let end_to_end = headline["end_to_end"].as_array().unwrap();
        assert_eq!(end_to_end.len(), 1, "{headline:#}");
        assert_eq!(end_to_end[0]["scenario"], "debian");
        assert_eq!(end_to_end[0]["flint"]["label"], "flint · debian-cloud · flint run · microvm");
        assert_eq!(end_to_end[0]["flint"]["boot"], "flint run");
        let peers = end_to_end[0]["peers"].as_array().unwrap();
        assert_eq!(peers.len(), 1, "only firmwares that booted: {headline:#}");
        assert_eq!(peers[0]["label"], "qboot · debian-cloud · bzImage · microvm");
        assert_eq!((peers[0]["median_ms"].as_f64(), peers[0]["ratio_to_flint"].as_f64()), (Some(2250.0), Some(1.5)));
        let overhead = headline["firmware_overhead"].as_array().unwrap();
        // (machine, floor, [(firmware, boot path, over the floor)])
        type Summary<'a> = (&'a str, f64, Vec<(&'a str, &'a str, f64)>);
        let summary: Vec<Summary> = overhead
            .iter()
            .map(|entry| {
                let firmwares = entry["firmwares"].as_array().unwrap().iter().map(|firmware| {
                    let over = firmware["over_floor_ms"].as_f64().unwrap();
                    (firmware["firmware"].as_str().unwrap(), firmware["boot"].as_str().unwrap(), over)
                });
                (entry["machine"].as_str().unwrap(), entry["floor_ms"].as_f64().unwrap(), firmwares.collect())
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("pc", 30.0, vec![("flint", "PVH", 8.0), ("qboot", "bzImage", 6.0)]),
                ("microvm", 20.0, vec![("flint", "bzImage", 5.0), ("qboot", "PVH", 2.5)]),
            ]
        );
        // The rest of the report is as before, and it reads back.
        assert!(json["scenarios"][1]["results"][0]["ratio_to_flint"].is_number());
        let back: Report = serde_json::from_value(json).unwrap();
        assert_eq!(back.scenarios.len(), 2);

        // The table opens with the headline.
        let table = report.table();
        let headline_at = table.find("Headline (medians of 1 runs, 2026-01-02):").expect(&table);
        assert!(headline_at < table.find("\nnull:").unwrap(), "{table}");
        for line in [
            "    flint · debian-cloud · flint run · microvm    1.50 s\n",
            "    qboot · debian-cloud · bzImage · microvm      2.25 s  1.50x flint's time\n",
            "  null, firmware over the floor on microvm (floor 20.0 ms):\n",
            "    qboot · null · PVH · microvm       +2.5 ms\n",
        ] {
            assert!(table.contains(line), "{line:?} missing from\n{table}");
        }
        assert!(table.contains("  flint    debian-cloud flint run microvm flint-init "), "{table}");
    }

    #[test]
    fn overheads_over_the_floor_carry_their_standard_error() {
        let (floor, flint) = ([20.0, 21.0, 19.0, 22.0, 20.5], [25.0, 29.0, 23.0, 27.0, 26.0]);
        let mut null = ScenarioReport {
            name: "null".into(),
            description: String::new(),
            skipped: None,
            results: vec![row(FLOOR, "none (microvm)", &floor), row("flint", "PVH (microvm)", &flint)],
        };
        null.compare();
        let headline = Headline::of(&[null]);
        let over = &headline.firmware_overhead[0].firmwares[0];
        let error = stats::median_difference_error(&flint, &floor).expect("five samples each");
        assert!(error > 0.0);
        assert_eq!((over.over_floor_ms, over.over_floor_error_ms), (5.5, Some(error)));
        let text = headline.text();
        assert!(text.contains(&format!("+5.5 ms  ± {}\n", duration(error))), "{text}");
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
        assert_eq!((signed(7.91), signed(-0.6)), ("+7.9 ms".to_string(), "-0.6 ms".to_string()));
    }
}
