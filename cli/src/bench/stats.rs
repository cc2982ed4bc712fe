//! Summaries of one (scenario, firmware) pair's wall times.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub n: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

impl Stats {
    /// `None` for no samples.
    pub fn of(samples_ms: &[f64]) -> Option<Stats> {
        let mut sorted = samples_ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median_ms = match n {
            0 => return None,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Some(Stats { n, median_ms, min_ms: sorted[0], max_ms: sorted[n - 1] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        assert_eq!(Stats::of(&[]), None);
        assert_eq!(Stats::of(&[3.0]), Some(Stats { n: 1, median_ms: 3.0, min_ms: 3.0, max_ms: 3.0 }));
        assert_eq!(Stats::of(&[5.0, 1.0, 3.0]), Some(Stats { n: 3, median_ms: 3.0, min_ms: 1.0, max_ms: 5.0 }));
        assert_eq!(Stats::of(&[4.0, 1.0, 2.0, 10.0]).unwrap().median_ms, 3.0);
    }
}
