//! report.svg: one panel per scenario, a horizontal bar per row at its median wall time,
//! labelled on the left with its firmware, kernel, boot path and machine
//! ([`CaseReport::label`]) and at its end with the time and the ratio to flint. When a row has
//! per-phase figures its bar is stacked from them, in order; otherwise it is one bar of the
//! total in its firmware's colour. Each panel has its title above the plot and its legend
//! below the axis, in space of their own, so neither covers the other or a bar.
//!
//! A panel's axis stops at three times its typical (median) bar, so one very slow firmware
//! (OVMF takes seconds where the others take milliseconds) does not flatten the rest: longer
//! bars are cut at the edge and say so in their label.

use super::report::{duration, labels, signed, CaseReport, Headline, Report, ScenarioReport};
use super::stats::Stats;
use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const WIDTH: u32 = 1200;
const BAR_HEIGHT: u32 = 30;
/// The title's first line, the scenario's, and its smaller lines below.
const TITLE_HEIGHT: u32 = 30;
const TITLE_LINE: u32 = 19;
/// The x axis (ticks and their description) and the plot's margins.
const AXIS_HEIGHT: u32 = 60;
/// One line of the legend.
const LEGEND_LINE: u32 = 22;
/// Below a panel's legend, before the next title.
const GAP: u32 = 18;
const MARGIN: i32 = 10;
const RIGHT_MARGIN: i32 = 20;
/// The axis ends at this many typical bars.
const AXIS_TYPICAL: f64 = 3.0;
/// The size of all text but the panels' titles, in plotters' units (15 is 12.1 pixels).
const TEXT: u32 = 15;
/// A generous width of one character of that text: the SVG backend cannot measure text, and a
/// viewer's font decides.
const CHAR_WIDTH: f64 = 7.4;
/// The legend's words are lower case: closer to the average.
const LEGEND_CHAR_WIDTH: f64 = 6.8;

struct Panel<'a> {
    scenario: &'a ScenarioReport,
    rows: Vec<&'a CaseReport>,
    labels: Vec<String>,
    /// Below the scenario's name: how it was measured, and its headline.
    notes: Vec<String>,
    legend: Vec<Vec<LegendItem>>,
}

enum LegendItem {
    Heading(String),
    Swatch(RGBColor, String),
}

pub fn svg(report: &Report) -> Result<String> {
    let panels: Vec<Panel> = report
        .scenarios
        .iter()
        .filter_map(|scenario| {
            let rows: Vec<&CaseReport> = scenario.results.iter().filter(|row| row.stats.is_some()).collect();
            if rows.is_empty() {
                return None;
            }
            let (legend, notes) = (legend(&rows), notes(report, scenario, &rows));
            Some(Panel { scenario, labels: labels(&rows), rows, notes, legend })
        })
        .collect();
    // The same label column in every panel, so the bars of all panels start at one x.
    let longest = panels.iter().flat_map(|panel| &panel.labels).map(|label| label.chars().count()).max();
    let label_area = ((longest.unwrap_or(0) as f64 * CHAR_WIDTH) as u32 + 16).clamp(160, WIDTH / 2);
    let height = panels.iter().map(Panel::height).sum::<u32>().max(TITLE_HEIGHT + AXIS_HEIGHT);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        if panels.is_empty() {
            root.draw(&Text::new("no case ran successfully: see report.json", (20, 40), ("sans-serif", 16)))
                .map_err(drawing)?;
        }
        let mut rest = root.clone();
        for panel in &panels {
            let (area, below) = rest.split_vertically(panel.height());
            draw_panel(&area, panel, label_area)?;
            rest = below;
        }
        root.present().map_err(drawing)?;
    }
    Ok(svg)
}

impl Panel<'_> {
    fn title_height(&self) -> u32 {
        TITLE_HEIGHT + TITLE_LINE * self.notes.len() as u32
    }

    fn height(&self) -> u32 {
        self.title_height() + self.plot_height() + LEGEND_LINE * self.legend.len() as u32 + GAP
    }

    fn plot_height(&self) -> u32 {
        AXIS_HEIGHT + BAR_HEIGHT * self.rows.len() as u32
    }
}

/// The phases of the stacked bars, then the firmwares of the whole ones, one line each.
fn legend(rows: &[&CaseReport]) -> Vec<Vec<LegendItem>> {
    let mut lines = Vec::new();
    if let Some(phased) = rows.iter().find(|row| !row.phases.is_empty()) {
        let mut line = vec![LegendItem::Heading(format!("Stacked bars, {}'s phases:", phased.firmware))];
        line.extend(
            phased
                .phases
                .iter()
                .enumerate()
                .map(|(index, phase)| LegendItem::Swatch(phase_color(&phase.name, index), phase.name.clone())),
        );
        lines.push(line);
    }
    let mut firmwares: Vec<&str> = Vec::new();
    for row in rows.iter().filter(|row| row.phases.is_empty()) {
        if !firmwares.contains(&row.firmware.as_str()) {
            firmwares.push(&row.firmware);
        }
    }
    if !firmwares.is_empty() {
        let heading = if lines.is_empty() { "Bars, total only:" } else { "Whole bars, total only:" };
        let mut line = vec![LegendItem::Heading(heading.into())];
        line.extend(firmwares.into_iter().map(|firmware| LegendItem::Swatch(color(firmware), firmware.into())));
        lines.push(line);
    }
    lines
}

/// How the panel's figures were taken, then its headline: `flint run` against each other
/// firmware's fastest row, or each firmware's cost over the floor on each machine.
fn notes(report: &Report, scenario: &ScenarioReport, rows: &[&CaseReport]) -> Vec<String> {
    let host = &report.host;
    let mut measured = format!("Median of {} runs, {}, accel {}", report.repetitions, host.date, host.accel);
    let mut inits: Vec<String> = Vec::new();
    for row in rows {
        if let Some(init) = &row.init {
            let said = format!("{init} ({})", row.firmware);
            if !inits.contains(&said) {
                inits.push(said);
            }
        }
    }
    if !inits.is_empty() {
        measured.push_str(&format!("; the workload's init: {}", inits.join(", ")));
    }
    let mut notes = vec![measured];
    let headline = Headline::of(std::slice::from_ref(scenario));
    for entry in &headline.end_to_end {
        let flint = &entry.flint;
        let mut line = format!("{} ({}, {}) {}", flint.firmware, flint.boot, flint.machine, duration(flint.median_ms));
        for peer in &entry.peers {
            let figure = &peer.figure;
            line.push_str(&format!(
                "; {} at best ({}, {}) {}, {:.2}x flint's time",
                figure.firmware,
                figure.boot,
                figure.machine,
                duration(figure.median_ms),
                peer.ratio_to_flint
            ));
        }
        notes.push(format!("Headline, end to end: {line}"));
    }
    for entry in &headline.firmware_overhead {
        let firmwares: Vec<String> = entry
            .firmwares
            .iter()
            .map(|firmware| {
                let error = firmware.over_floor_error_ms.map(|ms| format!(" ± {}", duration(ms))).unwrap_or_default();
                format!("{} {}{error}", firmware.figure.firmware, signed(firmware.over_floor_ms))
            })
            .collect();
        notes.push(format!(
            "Headline, over the floor on {} ({}), each firmware's fastest: {}",
            entry.machine,
            duration(entry.floor_ms),
            firmwares.join(", ")
        ));
    }
    notes
}

fn draw_panel(area: &DrawingArea<SVGBackend, Shift>, panel: &Panel, label_area: u32) -> Result<()> {
    let (title, rest) = area.split_vertically(panel.title_height());
    let (plot, legend_area) = rest.split_vertically(panel.plot_height());
    let (scenario, rows) = (panel.scenario, &panel.rows);

    let heading = TextStyle::from(("sans-serif", 18).into_font().style(FontStyle::Bold));
    let note = TextStyle::from(("sans-serif", TEXT).into_font()).color(&RGBColor(0x44, 0x44, 0x44));
    title
        .draw(&Text::new(format!("{}: {}", scenario.name, scenario.description), (MARGIN, 8), heading))
        .map_err(drawing)?;
    for (line, text) in panel.notes.iter().enumerate() {
        let y = (TITLE_HEIGHT + TITLE_LINE * line as u32) as i32;
        title.draw(&Text::new(text.clone(), (MARGIN, y), note.clone())).map_err(drawing)?;
    }

    let medians: Vec<f64> = rows.iter().map(|row| row.stats.expect("rows with stats").median_ms).collect();
    let typical = Stats::of(&medians).expect("a panel has rows").median_ms;
    let limit = medians.iter().copied().fold(0.0, f64::max).min(AXIS_TYPICAL * typical);
    // What each bar says at its end.
    let ends: Vec<String> = rows
        .iter()
        .zip(&medians)
        .map(|(row, &median)| {
            let cut = if median > limit { " (bar cut)" } else { "" };
            let over = row.over_floor_ms.map(|ms| format!(", floor {}", signed(ms))).unwrap_or_default();
            let ratio = row.ratio_to_flint.map(|ratio| format!(", {ratio:.2}x flint")).unwrap_or_default();
            format!(" {}{cut}{over}{ratio}", duration(median))
        })
        .collect();
    // The axis goes on past the longest bar for the text at the ends of the bars: each bar
    // and its text fit when end + text * axis / plot <= axis.
    let plot_width = f64::from(WIDTH - label_area) - f64::from(MARGIN) - f64::from(RIGHT_MARGIN);
    let axis = medians
        .iter()
        .zip(&ends)
        .map(|(&median, end)| {
            let text = (end.chars().count() as f64 * CHAR_WIDTH / plot_width).min(0.6);
            median.min(limit) / (1.0 - text)
        })
        .fold(limit * 1.1, f64::max);
    let count = rows.len();
    let mut chart = ChartBuilder::on(&plot)
        .margin_left(MARGIN as u32)
        .margin_right(RIGHT_MARGIN as u32)
        .margin_top(4)
        .margin_bottom(4)
        .x_label_area_size(46)
        .y_label_area_size(label_area)
        // Segments 0..=count-1.
        .build_cartesian_2d(0.0..axis, (0..count - 1).into_segmented())
        .map_err(drawing)?;
    // The first row at the top.
    let slot = |index: usize| count - 1 - index;
    let label = |value: &SegmentValue<usize>| match value {
        SegmentValue::CenterOf(slot_index) if *slot_index < count => panel.labels[slot(*slot_index)].clone(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(count)
        .y_label_formatter(&label)
        .y_label_style(("sans-serif", TEXT))
        .x_label_style(("sans-serif", TEXT))
        .axis_desc_style(("sans-serif", TEXT))
        .x_label_formatter(&|ms| duration(*ms))
        .x_desc("QEMU wall time, spawn to exit (median)")
        .draw()
        .map_err(drawing)?;

    let label_font = TextStyle::from(("sans-serif", TEXT).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (index, row) in rows.iter().enumerate() {
        let y = slot(index);
        let segments: Vec<(f64, RGBColor)> = if row.phases.is_empty() {
            vec![(medians[index], color(&row.firmware))]
        } else {
            row.phases
                .iter()
                .enumerate()
                .map(|(phase, figures)| (figures.median_ms, phase_color(&figures.name, phase)))
                .collect()
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
        let text = ends[index].clone();
        let at = (medians[index].min(limit), SegmentValue::CenterOf(y));
        chart.draw_series(std::iter::once(Text::new(text, at, label_font.clone()))).map_err(drawing)?;
    }

    // The legend, from the start of the plot (past the labels), a line per kind of bar.
    let black = TextStyle::from(("sans-serif", TEXT).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let start_x = MARGIN + label_area as i32;
    for (line, items) in panel.legend.iter().enumerate() {
        let y = LEGEND_LINE as i32 * line as i32 + LEGEND_LINE as i32 / 2;
        let mut x = start_x;
        for item in items {
            let (swatch, text) = match item {
                LegendItem::Heading(text) => (None, text),
                LegendItem::Swatch(fill, text) => (Some(fill), text),
            };
            if let Some(fill) = swatch {
                legend_area.draw(&Rectangle::new([(x, y - 6), (x + 12, y + 6)], fill.filled())).map_err(drawing)?;
                x += 16;
            }
            legend_area.draw(&Text::new(text.clone(), (x, y), black.clone())).map_err(drawing)?;
            x += (text.chars().count() as f64 * LEGEND_CHAR_WIDTH) as i32 + 14;
        }
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

/// Phase colours, none of them a firmware's, so a stacked bar never reads as another firmware.
fn phase_color(name: &str, index: usize) -> RGBColor {
    match name {
        "qemu" => RGBColor(0xBD, 0xBD, 0xBD),
        "firmware" => RGBColor(0x21, 0x21, 0x21),
        "kernel" => RGBColor(0xF2, 0xC9, 0x4C),
        "init" => RGBColor(0x17, 0xBE, 0xCF),
        "workload" => RGBColor(0x8C, 0x56, 0x4B),
        "shutdown" => RGBColor(0xE3, 0x77, 0xC2),
        _ => {
            let (r, g, b) = Palette99::pick(index).rgb();
            RGBColor(r, g, b)
        }
    }
}

fn drawing<E: std::error::Error + Send + Sync>(error: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow!("cannot draw the chart: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(scenario: &str, results: serde_json::Value) -> Report {
        serde_json::from_value(json!({
            "host": {"date": "2026-01-02", "cpu_model": "test", "cpus": 2, "qemu": "QEMU 7.2", "accel": "tcg", "load_before": 0.5, "load_after": null},
            "repetitions": 3,
            "scenarios": [{"name": scenario, "description": "test kernels", "results": results}],
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

    fn kernel_row(firmware: &str, kernel: &str, machine: &str, median_ms: f64) -> serde_json::Value {
        let mut row = row(firmware, median_ms, json!([]));
        row["kernel"] = json!(kernel);
        row["machine"] = json!(machine);
        row["init"] = json!(if firmware == "flint" { "flint-init" } else { "busybox" });
        row
    }

    /// The chart's texts, with their y: (y, text).
    fn texts(svg: &str) -> Vec<(i32, String)> {
        svg.split("<text ")
            .skip(1)
            .map(|element| {
                let y = element.split("y=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap();
                let text = element.split_once('>').unwrap().1.split("</text>").next().unwrap().trim();
                (y.parse().unwrap(), text.replace("&apos;", "'"))
            })
            .collect()
    }

    #[test]
    fn stacks_phases_and_cuts_outliers() {
        let phases = json!([{"name": "firmware", "median_ms": 10.0}, {"name": "kernel", "median_ms": 30.0}]);
        let svg = svg(&report(
            "null",
            json!([row("flint", 40.0, phases), row("qboot", 45.0, json!([])), row("OVMF", 3000.0, json!([]))]),
        ))
        .unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        let texts: Vec<String> = texts(&svg).into_iter().map(|(_, text)| text).collect();
        for text in ["flint · null · bzImage · pc", "firmware", "kernel", "3.00 s (bar cut)", "45.0 ms"] {
            assert!(texts.iter().any(|said| said.contains(text)), "{text:?} missing from the chart: {texts:#?}");
        }
    }

    #[test]
    fn every_bar_says_its_firmware_kernel_boot_path_and_machine_and_the_legend_keeps_clear() {
        let mut flint_run = kernel_row("flint", "debian-cloud (flint run)", "microvm", 1500.0);
        flint_run["phases"] = json!([{"name": "qemu", "median_ms": 90.0}, {"name": "kernel", "median_ms": 1200.0}]);
        let svg = svg(&report(
            "debian",
            json!([
                kernel_row("flint", "debian-cloud", "pc", 2400.0),
                kernel_row("flint", "debian-cloud (PVH)", "pc", 2200.0),
                kernel_row("flint", "debian-cloud (PVH, q35)", "q35", 2000.0),
                kernel_row("flint", "debian-cloud (PVH, microvm)", "microvm", 2000.0),
                kernel_row("flint", "debian-cloud (disk image, PVH)", "pc", 1700.0),
                kernel_row("flint", "debian-cloud (disk image, UKI)", "pc", 2100.0),
                flint_run,
                kernel_row("qboot", "debian-cloud", "pc", 2600.0),
                kernel_row("qboot", "debian-cloud (microvm)", "microvm", 2200.0),
            ]),
        ))
        .unwrap();
        let texts = texts(&svg);
        let y_of = |wanted: &str| {
            let found = texts.iter().find(|(_, text)| text == wanted);
            found.unwrap_or_else(|| panic!("{wanted:?} missing from the chart: {texts:#?}")).0
        };
        let labels = [
            "flint · debian-cloud · bzImage · pc",
            "flint · debian-cloud · PVH · pc",
            "flint · debian-cloud · PVH · q35",
            "flint · debian-cloud · PVH · microvm",
            "flint · debian-cloud · disk image, PVH · pc",
            "flint · debian-cloud · disk image, UKI · pc",
            "flint · debian-cloud · flint run · microvm",
            "qboot · debian-cloud · bzImage · pc",
            "qboot · debian-cloud · bzImage · microvm",
        ];
        let bars: Vec<i32> = labels.iter().map(|label| y_of(label)).collect();
        assert!(bars.windows(2).all(|pair| pair[0] < pair[1]), "one label per bar, in order: {bars:?}");
        // Title and headline above the first bar; the legend below the axis's description.
        let headline =
            texts.iter().find(|(_, text)| text.starts_with("Headline, end to end: flint (flint run, microvm)"));
        let headline = headline.unwrap_or_else(|| panic!("no headline: {texts:#?}"));
        assert!(headline.1.contains("qboot at best (bzImage, microvm) 2.20 s, 1.47x flint's time"), "{headline:?}");
        assert!(y_of("debian: test kernels") < headline.0 && headline.0 < bars[0]);
        let axis = y_of("QEMU wall time, spawn to exit (median)");
        assert!(bars[8] < axis);
        for legend in ["Stacked bars, flint's phases:", "qemu", "kernel", "Whole bars, total only:", "flint", "qboot"] {
            assert!(y_of(legend) > axis, "{legend:?} is not below the axis");
        }
    }

    /// Draws a report.json (`FLINT_REPORT`) again, to look at the chart without a bench run:
    /// `FLINT_REPORT=out/bench/report.json cargo test -p flint --lib redraw -- --ignored --nocapture`
    /// writes `report.redrawn.svg` beside it and prints the table.
    #[test]
    #[ignore = "needs FLINT_REPORT"]
    fn redraw() {
        let path = std::path::PathBuf::from(std::env::var_os("FLINT_REPORT").expect("FLINT_REPORT"));
        let report: Report = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        std::fs::write(path.with_file_name("report.redrawn.svg"), svg(&report).unwrap()).unwrap();
        print!("{}", report.table());
    }

    #[test]
    fn says_so_when_nothing_ran() {
        let mut failed = row("flint", 1.0, json!([]));
        failed["status"] = json!("failed");
        failed["reason"] = json!("QEMU exited 3");
        failed["stats"] = json!(null);
        let svg = svg(&report("null", json!([failed]))).unwrap();
        assert!(svg.contains("no case ran successfully") && svg.trim_end().ends_with("</svg>"));
    }
}
