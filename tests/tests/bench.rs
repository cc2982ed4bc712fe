//! `flint bench` in reduced mode: one repetition of the null-kernel and Debian scenarios with
//! every firmware. Checks that each case booted the way it must, that report.json has the
//! documented keys and that report.svg is a whole SVG document; never the timings, which
//! depend on the machine.

use flint::bench::{BenchOptions, Firmware, ScenarioName};
use flint_tests::*;
use serde_json::Value;

#[test]
fn reduced_bench_reports_every_case() {
    let output = tempfile::tempdir().unwrap();
    let options = BenchOptions {
        repetitions: 1,
        scenarios: vec![ScenarioName::Null, ScenarioName::Debian],
        compare: Firmware::ALL.to_vec(),
        output: output.path().to_path_buf(),
        firmware: Some(firmware()),
        accel: "tcg".into(),
    };
    let report = flint::bench::run(&options).expect("the bench runs");
    // Unsupported and not-installed firmwares are reported as such; nothing may fail.
    report.check().expect("every case ends the way it must");

    let json: Value = serde_json::from_slice(&std::fs::read(output.path().join("report.json")).unwrap()).unwrap();
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

    let svg = std::fs::read_to_string(output.path().join("report.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "not a whole SVG document:\n{svg}");
    assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    assert!(svg.contains("flint / bzImage") && svg.contains("flint (flint-init)"), "bars are labelled");
}
