//! Summaries of one (scenario, firmware) pair's wall times.

use serde::{Deserialize, Serialize};

/// Resamplings behind [`median_difference_error`]: enough for its first two digits.
const BOOTSTRAP_ROUNDS: usize = 1000;

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

/// The standard error of `median(a) - median(b)`: how much that difference moves when each
/// set is resampled with replacement (a bootstrap), so a reader can tell a lead from the
/// host's noise. Seeded: one report gives one answer. `None` when a set has fewer than two
/// samples, which have no spread to measure.
pub fn median_difference_error(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let mut rng = fastrand::Rng::with_seed(0);
    let mut resampled_median = |samples: &[f64]| {
        let resample: Vec<f64> = (0..samples.len()).map(|_| samples[rng.usize(..samples.len())]).collect();
        Stats::of(&resample).map_or(0.0, |stats| stats.median_ms)
    };
    let differences: Vec<f64> = (0..BOOTSTRAP_ROUNDS).map(|_| resampled_median(a) - resampled_median(b)).collect();
    let mean = differences.iter().sum::<f64>() / differences.len() as f64;
    let variance = differences.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (differences.len() - 1) as f64;
    Some(variance.sqrt())
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

    #[test]
    fn the_error_of_a_difference_of_medians_follows_the_spread() {
        // Too few samples to resample; no spread, no error.
        assert_eq!(median_difference_error(&[1.0], &[1.0, 2.0]), None);
        assert_eq!(median_difference_error(&[5.0; 9], &[3.0; 9]), Some(0.0));
        // Twice the spread, twice the error; the same inputs, the same answer.
        let narrow: Vec<f64> = (0..21).map(|i| 30.0 + f64::from(i % 7)).collect();
        let wide: Vec<f64> = narrow.iter().map(|ms| 2.0 * ms).collect();
        let steady = [30.0; 21];
        let (small, large) =
            (median_difference_error(&narrow, &steady).unwrap(), median_difference_error(&wide, &steady).unwrap());
        assert!(small > 0.3 && small < 3.0, "{small}");
        assert!((large / small - 2.0).abs() < 1e-9, "{small} {large}");
        assert_eq!(median_difference_error(&narrow, &steady), Some(small));
    }
}
