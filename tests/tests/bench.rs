//! `flint bench` in reduced mode: one repetition of the null-kernel and Debian scenarios with
//! every firmware, and of the kernel-entry scenario. Checks that each case booted the way it must, that report.json has the
//! documented keys and its headline, that the table opens with it, and that report.svg is a
//! whole SVG document whose every bar says its firmware, kernel, boot path and machine; never
//! the timings, which depend on the machine.

use flint::bench::{BenchOptions, Firmware, Report, ScenarioName};
use flint_tests::*;
use serde_json::Value;

/// One repetition of `scenarios` with every firmware, into a directory of its own: the report,
/// its report.json, and the directory (report.svg is in it). Unsupported and not-installed
/// firmwares are reported as such; nothing may fail.
fn reduced_bench(scenarios: Vec<ScenarioName>) -> (Report, Value, tempfile::TempDir) {
    let output = tempfile::tempdir().unwrap();
    let options = BenchOptions {
        repetitions: 1,
        scenarios,
        compare: Firmware::ALL.to_vec(),
        output: output.path().to_path_buf(),
        firmware: Some(firmware()),
        accel: "tcg".into(),
    };
    let report = flint::bench::run(&options).expect("the bench runs");
    report.check().expect("every case ends the way it must");
    let json = serde_json::from_slice(&std::fs::read(output.path().join("report.json")).unwrap()).unwrap();
    (report, json, output)
}

#[test]
fn reduced_bench_reports_every_case() {
    let (report, json, output) = reduced_bench(vec![ScenarioName::Null, ScenarioName::Debian]);
    for key in ["date", "cpu_model", "cpus", "qemu", "accel", "load_before", "load_after"] {
        assert!(!json["host"][key].is_null(), "host.{key} missing in {json:#}");
    }
    assert_eq!(json["repetitions"], 1);
    let scenarios = json["scenarios"].as_array().unwrap();
    let names: Vec<&str> = scenarios.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["null", "debian"]);
    for scenario in scenarios {
        for row in scenario["results"].as_array().unwrap() {
            for key in [
                "firmware",
                "kernel",
                "machine",
                "init",
                "status",
                "command",
                "samples_ms",
                "stats",
                "ratio_to_flint",
                "over_floor_ms",
                "phases",
            ] {
                assert!(row.get(key).is_some(), "{key} missing in {row:#}");
            }
            let status = row["status"].as_str().unwrap();
            assert!(["ok", "unsupported", "unavailable"].contains(&status), "{row:#}");
            if status == "ok" {
                assert_eq!(row["stats"]["n"], 1, "{row:#}");
                for key in ["median_ms", "min_ms", "max_ms"] {
                    assert!(row["stats"][key].as_f64().unwrap() > 0.0, "{row:#}");
                }
            } else {
                assert!(row["reason"].is_string(), "{row:#}");
            }
        }
    }
    // The floor and flint itself always run, and flint's rows are the reference.
    let ok = |scenario: usize, firmware: &str, kernel: &str| {
        scenarios[scenario]["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|row| row["firmware"] == firmware && row["kernel"] == kernel && row["status"] == "ok")
    };
    assert!(ok(0, "floor", "none") && ok(0, "flint", "bzImage") && ok(1, "flint", "debian-cloud"), "{json:#}");
    // The firmware overhead on microvm too, flint run's default machine, over its own floor.
    for kernel in ["bzImage (microvm)", "PVH (microvm)"] {
        assert!(ok(0, "flint", kernel), "flint's {kernel} row: {json:#}");
    }
    let microvm_rows = scenarios[0]["results"].as_array().unwrap().iter().filter(|row| row["machine"] == "microvm");
    for row in microvm_rows.filter(|row| row["firmware"] != "floor" && row["status"] == "ok") {
        assert!(row["over_floor_ms"].is_number(), "a microvm row without its floor: {row:#}");
    }
    for variant in ["PVH", "PVH, q35", "PVH, microvm", "disk image, PVH", "disk image, UKI", "flint run"] {
        assert!(ok(1, "flint", &format!("debian-cloud ({variant})")), "flint's {variant} row: {json:#}");
    }
    // qboot, where installed (scripts/setup.sh installs it), also runs on microvm, its own machine.
    if ok(1, "qboot", "debian-cloud") {
        assert!(ok(1, "qboot", "debian-cloud (microvm)"), "qboot's microvm row: {json:#}");
        assert!(ok(0, "qboot", "PVH (microvm)"), "qboot's microvm null row: {json:#}");
    }

    // flint's kernel runs carry the phases of its init's timeline (but its plain microvm row,
    // whose one serial port is the console; the `flint run` row has its status port); the
    // others have none.
    for row in scenarios[1]["results"].as_array().unwrap().iter().filter(|row| row["status"] == "ok") {
        let names: Vec<&str> = row["phases"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        if row["firmware"] == "flint" && !row["kernel"].as_str().unwrap().contains("microvm") {
            assert_eq!(names, ["qemu", "firmware", "kernel", "init", "workload", "shutdown"], "{row:#}");
        } else {
            assert!(names.is_empty(), "{row:#}");
        }
    }

    // The headline: flint as `flint run` boots against each other firmware's fastest row,
    // and each firmware's cost over the floor on each machine.
    let headline = &json["headline"];
    let end_to_end = headline["end_to_end"].as_array().unwrap_or_else(|| panic!("no headline: {json:#}"));
    assert_eq!(end_to_end.len(), 1, "{headline:#}");
    assert_eq!(end_to_end[0]["scenario"], "debian");
    assert_eq!(end_to_end[0]["flint"]["label"], "flint · debian-cloud · flint run · microvm", "{headline:#}");
    let peers: Vec<&str> = end_to_end[0]["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|peer| {
            assert!(peer["ratio_to_flint"].as_f64().unwrap() > 0.0, "{peer:#}");
            assert!(peer["label"].as_str().unwrap().starts_with(peer["firmware"].as_str().unwrap()), "{peer:#}");
            peer["firmware"].as_str().unwrap()
        })
        .collect();
    for firmware in ["qboot", "SeaBIOS", "OVMF"] {
        assert_eq!(
            peers.contains(&firmware),
            ok(1, firmware, "debian-cloud"),
            "{firmware} in the headline: {headline:#}"
        );
    }
    let overhead = headline["firmware_overhead"].as_array().unwrap();
    let machines: Vec<&str> = overhead.iter().map(|entry| entry["machine"].as_str().unwrap()).collect();
    assert_eq!(machines, ["pc", "microvm"], "{headline:#}");
    for entry in overhead {
        assert!(entry["floor_ms"].as_f64().unwrap() > 0.0, "{entry:#}");
        let firmwares = entry["firmwares"].as_array().unwrap();
        assert!(firmwares.iter().any(|firmware| firmware["firmware"] == "flint"), "{entry:#}");
        assert!(firmwares.iter().all(|firmware| firmware["over_floor_ms"].is_number()), "{entry:#}");
        // One repetition has no spread to give a standard error from.
        assert!(firmwares.iter().all(|firmware| firmware["over_floor_error_ms"].is_null()), "{entry:#}");
    }
    let table = report.table();
    let headline_at = table.find("\nHeadline (medians of 1 runs").unwrap_or_else(|| panic!("no headline:\n{table}"));
    assert!(headline_at < table.find("\nnull:").unwrap(), "the table opens with its headline:\n{table}");

    let svg = std::fs::read_to_string(output.path().join("report.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "not a whole SVG document:\n{svg}");
    assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    // Every bar that ran says firmware · kernel · boot path · machine, and no two alike.
    let labels: Vec<&str> = svg
        .split("</text>")
        .filter_map(|element| element.rsplit_once('>').map(|(_, text)| text.trim()))
        .filter(|text| text.matches(" · ").count() == 3)
        .collect();
    // The panels come in the report's order, a bar per row that ran.
    let mut rest = labels.as_slice();
    for scenario in scenarios {
        let ran = scenario["results"].as_array().unwrap().iter().filter(|row| row["status"] == "ok").count();
        assert!(rest.len() >= ran, "{} bars short in {}: {labels:#?}", ran - rest.len(), scenario["name"]);
        let (mine, next) = rest.split_at(ran);
        for label in mine {
            assert_eq!(mine.iter().filter(|other| *other == label).count(), 1, "{label:?} twice: {mine:#?}");
        }
        rest = next;
    }
    assert!(rest.is_empty(), "bars of no row: {rest:#?}");
    for label in [
        "floor · none · reset vector · pc",
        "flint · null · bzImage · pc",
        "flint · null · PVH · microvm",
        "flint · debian-cloud · bzImage · pc",
        "flint · debian-cloud · PVH · q35",
        "flint · debian-cloud · PVH · microvm",
        "flint · debian-cloud · disk image, UKI · pc",
        "flint · debian-cloud · flint run · microvm",
    ] {
        assert!(labels.contains(&label), "no bar {label:?}: {labels:#?}");
    }
    if ok(1, "qboot", "debian-cloud") {
        assert!(labels.contains(&"qboot · debian-cloud · bzImage · microvm"), "{labels:#?}");
    }
    assert!(svg.contains("Headline, end to end: flint (flint run, microvm)"), "the chart's headline");
    assert!(svg.contains("Headline, over the floor on microvm"), "the chart's headline");
}

/// The kernel-entry scenario: Debian's cloud kernel with its 64-bit entry made an exit. Every
/// firmware that boots it must end QEMU there, with the exit stub's status (`check` holds each
/// row to it), on both machines; OVMF, which would start it through its EFI stub, is not run.
#[test]
fn kernel_entry_rows_end_at_startup_64() {
    let (_, json, _output) = reduced_bench(vec![ScenarioName::KernelEntry]);
    let rows = json["scenarios"][0]["results"].as_array().unwrap();
    let status = |firmware: &str, kernel: &str| {
        let row = rows.iter().find(|row| row["firmware"] == firmware && row["kernel"] == kernel);
        row.and_then(|row| row["status"].as_str()).unwrap_or("absent")
    };
    let qboot = std::path::Path::new("/usr/share/qemu/qboot.rom").exists();
    for kernel in ["debian-cloud (to startup_64)", "debian-cloud (to startup_64, microvm)"] {
        assert_eq!(status("flint", kernel), "ok", "{json:#}");
        assert_eq!(status("qboot", kernel), if qboot { "ok" } else { "unavailable" }, "{json:#}");
    }
    assert_ne!(status("OVMF", "debian-cloud (to startup_64)"), "ok", "{json:#}");
    let overhead = json["headline"]["firmware_overhead"].as_array().unwrap();
    let machines: Vec<&str> = overhead.iter().map(|entry| entry["machine"].as_str().unwrap()).collect();
    assert_eq!(machines, ["pc", "microvm"], "{json:#}");
    assert!(overhead.iter().all(|entry| entry["scenario"] == "kernel-entry"), "{json:#}");
}
