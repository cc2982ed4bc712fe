//! `flint bench`: flint against qboot, SeaBIOS and OVMF, booting the same kernels with the same
//! QEMU on the same machine in one run. Repetitions are interleaved, in serpentine order
//! (flint, qboot, SeaBIOS, OVMF, OVMF, SeaBIOS, ...), so that changes in the machine's load hit
//! every firmware alike, and so does the alternation these hosts show between a boot and the
//! next (transparent huge pages: one boot ~15% faster, the next slower; BENCHMARKS.md).
//!
//! Every QEMU process is timed on the host from spawn to exit. A run is only counted if it
//! ended the way its case demands (the expected entry's exit status, or the workload's
//! success); a case that fails once is reported as failed, with no figures.
//!
//! The inputs are made here, at run time: the floor ROM and the null kernels (`floor_rom`,
//! `null_bzimage`, `null_pvh`), Debian's kernel stopped at its 64-bit entry (`entry64_stop`),
//! and the initrds of the kernel scenarios (`guest`).

mod chart;
mod entry64_stop;
mod exit_stub;
mod firmware;
mod floor_rom;
mod guest;
mod host;
mod null_bzimage;
mod null_pvh;
mod report;
mod scenario;
mod stats;

pub use firmware::Firmware;
pub use report::{Report, Status};
pub use scenario::ScenarioName;

use crate::env::{self, progress};
use crate::qemu::QEMU;
use anyhow::{Context, Result};
use report::{CaseReport, Phase, ScenarioReport};
use scenario::{Case, Plan, Prepared, Setup};
use stats::Stats;
use std::path::{Path, PathBuf};

/// The null PVH kernel (an ELF loaded at 1 MiB) and the QEMU exit status its entry ends
/// with: for tests of what the firmware places around a kernel QEMU loaded itself.
pub fn null_pvh_kernel() -> (Vec<u8>, i32) {
    (null_pvh::image(), exit_stub::Entry::Pvh.qemu_status())
}

/// `flint bench` options.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchOptions {
    /// Timed runs of each case, interleaved across firmwares.
    #[arg(short = 'n', long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub repetitions: u32,
    /// Scenarios to run, comma-separated (minimal is skipped until `flint kernel minimal`).
    #[arg(long = "scenario", value_enum, value_delimiter = ',', default_values_t = ScenarioName::ALL)]
    pub scenarios: Vec<ScenarioName>,
    /// Firmwares to compare, comma-separated (one not installed is reported as unavailable).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Firmware::ALL)]
    pub compare: Vec<Firmware>,
    /// Directory for report.json, report.svg and the generated inputs.
    #[arg(short, long, value_name = "DIR", default_value = "out/bench")]
    pub output: PathBuf,
    /// flint's firmware image, with the guest init embedded (default: $FLINT_FW, else
    /// out/fw.bin of the source tree).
    #[arg(long, value_name = "PATH")]
    pub firmware: Option<PathBuf>,
    /// QEMU accelerator, the same for every firmware.
    #[arg(long, default_value = "tcg", value_parser = ["tcg", "kvm"])]
    pub accel: String,
}

/// Runs the bench, writes `report.json` and `report.svg` into the output directory and prints
/// the table on stdout. Failed cases are in the report: call [`Report::check`] to fail on them.
pub fn run(options: &BenchOptions) -> Result<Report> {
    env::require_tool(QEMU, "qemu-system-x86")?;
    let flint = env::firmware(options.firmware.as_deref())?;
    let inputs = options.output.join("inputs");
    std::fs::create_dir_all(&inputs)
        .with_context(|| format!("cannot create {}: pass a writable --output", inputs.display()))?;
    let host = host::describe(&options.accel)?;
    let mut firmwares = options.compare.clone();
    firmwares.sort();
    firmwares.dedup();
    let setup = Setup { flint: &flint, firmwares: &firmwares, accel: &options.accel, inputs: &inputs };

    let mut scenarios = Vec::new();
    for &name in &options.scenarios {
        let mut report = ScenarioReport {
            name: name.name().into(),
            description: name.description().into(),
            skipped: None,
            results: Vec::new(),
        };
        match scenario::prepare(name, &setup)? {
            Prepared::Cases(cases) => report.results = measure(name, &cases, options.repetitions),
            Prepared::Skipped(reason) => {
                progress(format!("bench: skipping {}: {reason}", name.name()));
                report.skipped = Some(reason);
            }
        }
        report.compare();
        scenarios.push(report);
    }
    let mut report = Report { host, repetitions: options.repetitions, scenarios };
    report.host.load_after = host::load_average();

    let json = options.output.join("report.json");
    let text = serde_json::to_string_pretty(&report).context("cannot encode the report")?;
    std::fs::write(&json, text + "\n").with_context(|| format!("cannot write {}", json.display()))?;
    let svg = options.output.join("report.svg");
    std::fs::write(&svg, chart::svg(&report)?).with_context(|| format!("cannot write {}", svg.display()))?;
    print!("{}", report.table());
    progress(format!("bench: wrote {} and {}", json.display(), svg.display()));
    Ok(report)
}

/// Writes one generated input (null kernel, ROM, initrd) into the inputs directory.
fn write_input(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, bytes)
        .with_context(|| format!("cannot write {}: pass a writable --output", path.display()))?;
    Ok(path)
}

/// Runs every case `repetitions` times, case after case within each repetition, every other
/// repetition in reverse so that no case always has the same place in the alternation.
fn measure(name: ScenarioName, cases: &[Case], repetitions: u32) -> Vec<CaseReport> {
    let mut rows: Vec<CaseReport> = cases
        .iter()
        .map(|case| {
            let (status, command) = match &case.plan {
                Plan::Run(run) => (Status::Ok, Some(run.vm.shell_command())),
                Plan::Process(process) => (Status::Ok, Some(process.shell_command())),
                Plan::NotRun(status) => (status.clone(), None),
            };
            CaseReport {
                firmware: case.firmware.into(),
                kernel: case.kernel.clone(),
                machine: case.machine.name().into(),
                init: case.init.map(Into::into),
                status,
                command,
                samples_ms: Vec::new(),
                stats: None,
                ratio_to_flint: None,
                over_floor_ms: None,
                phases: Vec::new(),
            }
        })
        .collect();
    // Per case, per run: the phases of flint's timeline.
    let mut phase_samples: Vec<Vec<Vec<Phase>>> = vec![Vec::new(); cases.len()];
    for repetition in 1..=repetitions {
        let mut order: Vec<usize> = (0..cases.len()).collect();
        if repetition % 2 == 0 {
            order.reverse();
        }
        for index in order {
            let (case, row) = (&cases[index], &mut rows[index]);
            if row.status != Status::Ok {
                continue;
            }
            row.status = match &case.plan {
                Plan::Run(run) => {
                    // The status port appends: each run's timeline must be the file's only one.
                    if let Some(file) = &run.status_file {
                        let _ = std::fs::remove_file(file);
                    }
                    match run.vm.run(run.deadline) {
                        Ok(outcome) => {
                            let status = run.judge(&outcome);
                            if status == Status::Ok {
                                row.samples_ms.push(rounded_ms(outcome.elapsed));
                                let phases = run.status_file.as_deref().and_then(|file| phases_of(file, &outcome));
                                phase_samples[index].extend(phases);
                            }
                            status
                        }
                        Err(error) => Status::Failed { reason: format!("cannot run QEMU: {error}") },
                    }
                }
                Plan::Process(process) => {
                    let (elapsed, status) = process.run_once();
                    if status == Status::Ok {
                        row.samples_ms.push(rounded_ms(elapsed));
                    }
                    status
                }
                Plan::NotRun(_) => continue,
            };
            let result = match &row.status {
                Status::Ok => report::duration(*row.samples_ms.last().expect("just pushed")),
                other => other.describe(),
            };
            progress(format!(
                "bench {} {repetition}/{repetitions}: {} {} {result}",
                name.name(),
                row.firmware,
                row.kernel
            ));
        }
    }
    for (row, samples) in rows.iter_mut().zip(&phase_samples) {
        row.stats = Stats::of(&row.samples_ms).filter(|_| row.status == Status::Ok);
        row.phases = phase_medians(samples);
    }
    rows
}

/// Milliseconds, rounded to the microsecond: finer digits are noise.
fn rounded_ms(elapsed: std::time::Duration) -> f64 {
    (elapsed.as_secs_f64() * 1e6).round() / 1e3
}

/// The phases of one flint run, from the timeline its init wrote to COM2.
fn phases_of(status_file: &Path, outcome: &crate::qemu::Outcome) -> Option<Vec<Phase>> {
    let status = std::fs::read(status_file).ok()?;
    let timeline = crate::timeline::Timeline::from_status_and_total(&status, outcome.elapsed)?;
    Some(timeline.phases.into_iter().map(|phase| Phase { name: phase.name.into(), median_ms: phase.ms }).collect())
}

/// Each phase's median over the runs (so they need not add up exactly to the total's median);
/// empty unless every run reported the same phases.
fn phase_medians(samples: &[Vec<Phase>]) -> Vec<Phase> {
    let Some(first) = samples.first() else { return Vec::new() };
    first
        .iter()
        .enumerate()
        .map(|(index, phase)| {
            let values: Vec<f64> = samples.iter().filter_map(|run| run.get(index)).map(|p| p.median_ms).collect();
            let median_ms = Stats::of(&values).map_or(0.0, |stats| (stats.median_ms * 1e3).round() / 1e3);
            Phase { name: phase.name.clone(), median_ms }
        })
        .collect()
}
