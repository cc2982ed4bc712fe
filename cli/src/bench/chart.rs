//! report.svg: one panel per scenario, a horizontal bar per firmware and kernel at its median
//! wall time, labelled with the time and the ratio to flint. When a case has per-phase
//! figures its bar is stacked from them, in order; otherwise it is one bar of the total.
//!
//! A panel's axis stops at three times its typical (median) bar, so one very slow firmware
//! (OVMF takes seconds where the others take milliseconds) does not flatten the rest: longer
//! bars are cut at the edge and say so in their label.

use super::report::{duration, CaseReport, Report, ScenarioReport};
use super::stats::Stats;
use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const WIDTH: u32 = 960;
const BAR_HEIGHT: u32 = 30;
/// Caption, x axis and margins of one panel.
const PANEL_EXTRA: u32 = 100;
/// The axis ends at this many typical bars.
const AXIS_TYPICAL: f64 = 3.0;

pub fn svg(report: &Report) -> Result<String> {
    let panels: Vec<(&ScenarioReport, Vec<&CaseReport>)> = report
        .scenarios
        .iter()
        .map(|scenario| (scenario, scenario.results.iter().filter(|row| row.stats.is_some()).collect::<Vec<_>>()))
        .filter(|(_, rows)| !rows.is_empty())
        .collect();
    let height = panels.iter().map(|(_, rows)| panel_height(rows.len())).sum::<u32>().max(PANEL_EXTRA);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        if panels.is_empty() {
            root.draw(&Text::new("no case ran successfully: see report.json", (20, 40), ("sans-serif", 16)))
                .map_err(drawing)?;
        }
        let mut rest = root.clone();
        for (scenario, rows) in &panels {
            let (area, below) = rest.split_vertically(panel_height(rows.len()));
            panel(&area, report, scenario, rows)?;
            rest = below;
        }
        root.present().map_err(drawing)?;
    }
    Ok(svg)
}

fn panel_height(rows: usize) -> u32 {
    PANEL_EXTRA + BAR_HEIGHT * rows as u32
}

fn panel(
    area: &DrawingArea<SVGBackend, Shift>,
    report: &Report,
    scenario: &ScenarioReport,
    rows: &[&CaseReport],
) -> Result<()> {
    let medians: Vec<f64> = rows.iter().map(|row| row.stats.expect("rows with stats").median_ms).collect();
    let typical = Stats::of(&medians).expect("a panel has rows").median_ms;
    let limit = medians.iter().copied().fold(0.0, f64::max).min(AXIS_TYPICAL * typical);
    let count = rows.len();
    let caption = format!(
        "{}: {} (median of {} runs, {})",
        scenario.name, scenario.description, report.repetitions, report.host.date
    );
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 14))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(200)
        // Room on the right for the labels at the ends of the bars. Segments 0..=count-1.
        .build_cartesian_2d(0.0..limit * 1.4, (0..count - 1).into_segmented())
        .map_err(drawing)?;
    // The first row at the top.
    let slot = |index: usize| count - 1 - index;
    let label = |value: &SegmentValue<usize>| match value {
        SegmentValue::CenterOf(slot_index) if *slot_index < count => {
            let row = rows[slot(*slot_index)];
            match &row.init {
                Some(init) => format!("{} ({init})", row.firmware),
                None => format!("{} / {}", row.firmware, row.kernel),
            }
        }
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(count)
        .y_label_formatter(&label)
        .x_label_formatter(&|ms| duration(*ms))
        .x_desc("QEMU wall time, spawn to exit (median)")
        .draw()
        .map_err(drawing)?;

    let label_font = TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (index, row) in rows.iter().enumerate() {
        let y = slot(index);
        let segments: Vec<(f64, RGBColor)> = if row.phases.is_empty() {
            vec![(medians[index], color(&row.firmware))]
        } else {
            row.phases.iter().enumerate().map(|(phase, figures)| (figures.median_ms, phase_color(phase))).collect()
        };
        let mut start = 0.0;
        for (length, fill) in segments {
            let end = (start + length).min(limit);
            let mut bar =
                Rectangle::new([(start, SegmentValue::Exact(y)), (end, SegmentValue::Exact(y + 1))], fill.filled());
            bar.set_margin(5, 5, 0, 0);
            chart.draw_series(std::iter::once(bar)).map_err(drawing)?;
            start = end;
        }
        let cut = if medians[index] > limit { " (bar cut)" } else { "" };
        let ratio = row.ratio_to_flint.map(|ratio| format!(", {ratio:.2}x flint")).unwrap_or_default();
        let text = format!(" {}{cut}{ratio}", duration(medians[index]));
        let at = (medians[index].min(limit), SegmentValue::CenterOf(y));
        chart.draw_series(std::iter::once(Text::new(text, at, label_font.clone()))).map_err(drawing)?;
    }
    if let Some(phased) = rows.iter().find(|row| !row.phases.is_empty()) {
        let legend: Vec<String> = phased.phases.iter().map(|phase| phase.name.clone()).collect();
        chart
            .draw_series(legend.iter().enumerate().map(|(phase, name)| {
                Text::new(
                    format!("■ {name}"),
                    (limit * (0.1 + 0.2 * phase as f64), SegmentValue::Exact(count)),
                    ("sans-serif", 12).into_font().color(&phase_color(phase)),
                )
            }))
            .map_err(drawing)?;
    }
    Ok(())
}

fn color(firmware: &str) -> RGBColor {
    match firmware {
        "flint" => RGBColor(0xE4, 0x57, 0x1B),
        "qboot" => RGBColor(0x3A, 0x7C, 0xC2),
        "SeaBIOS" => RGBColor(0x4C, 0xA0, 0x5A),
        "OVMF" => RGBColor(0x8E, 0x5E, 0xB5),
        _ => RGBColor(0x99, 0x99, 0x99),
    }
}

fn phase_color(phase: usize) -> RGBColor {
    let (r, g, b) = Palette99::pick(phase).rgb();
    RGBColor(r, g, b)
}

fn drawing<E: std::error::Error + Send + Sync>(error: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow!("cannot draw the chart: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(results: serde_json::Value) -> Report {
        serde_json::from_value(json!({
            "host": {"date": "2026-01-02", "cpu_model": "test", "cpus": 2, "qemu": "QEMU 7.2", "accel": "tcg", "load_before": 0.5, "load_after": null},
            "repetitions": 3,
            "scenarios": [{"name": "null", "description": "null kernels", "results": results}],
        }))
        .unwrap()
    }

    fn row(firmware: &str, median_ms: f64, phases: serde_json::Value) -> serde_json::Value {
        json!({
            "firmware": firmware, "kernel": "bzImage", "machine": "pc", "init": null, "status": "ok", "command": null,
            "samples_ms": [median_ms], "stats": {"n": 1, "median_ms": median_ms, "min_ms": median_ms, "max_ms": median_ms},
            "ratio_to_flint": null, "over_floor_ms": null, "phases": phases,
        })
    }

    #[test]
    fn stacks_phases_and_cuts_outliers() {
        let phases = json!([{"name": "firmware", "median_ms": 10.0}, {"name": "kernel", "median_ms": 30.0}]);
        let svg = svg(&report(json!([
            row("flint", 40.0, phases),
            row("qboot", 45.0, json!([])),
            row("OVMF", 3000.0, json!([]))
        ])))
        .unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for text in ["flint / bzImage", "■ firmware", "■ kernel", "3.00 s (bar cut)", "45.0 ms"] {
            assert!(svg.contains(text), "{text:?} missing from the chart");
        }
    }

    #[test]
    fn says_so_when_nothing_ran() {
        let mut failed = row("flint", 1.0, json!([]));
        failed["status"] = json!("failed");
        failed["reason"] = json!("QEMU exited 3");
        failed["stats"] = json!(null);
        let svg = svg(&report(json!([failed]))).unwrap();
        assert!(svg.contains("no case ran successfully") && svg.trim_end().ends_with("</svg>"));
    }
}
