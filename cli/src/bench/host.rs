//! Facts about the host a report was measured on, so figures are never read without them.

use crate::env;
use crate::qemu::QEMU;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Host {
    /// The UTC day of the run, `YYYY-MM-DD`.
    pub date: String,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// CPUs this process may use (what `nproc` prints).
    pub cpus: usize,
    /// The first line of `qemu-system-x86_64 --version`.
    pub qemu: String,
    pub accel: String,
    /// The 1-minute load average before and after the runs: other work on the machine
    /// slows QEMU down, and the spread of the samples follows it.
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
}

pub fn describe(accel: &str) -> Result<Host> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name")?.split_once(':').map(|(_, model)| model.trim().to_string()))
        .unwrap_or_else(|| "unknown".into());
    let version = env::tool_output(Command::new(QEMU).arg("--version")).context("cannot ask QEMU its version")?;
    let days = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs() / 86_400);
    Ok(Host {
        date: civil_date(days),
        cpu_model,
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        qemu: version.lines().next().unwrap_or_default().to_string(),
        accel: accel.to_string(),
        load_before: load_average(),
        load_after: None,
    })
}

/// The 1-minute load average, from /proc/loadavg.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_date(days: u64) -> String {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_from_day_numbers() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(11_016), "2000-02-29");
        assert_eq!(civil_date(19_782), "2024-02-29");
        assert_eq!(civil_date(20_819), "2027-01-01");
    }
}
