//! Histograms over a sliding window, for metrics that should show the present rather than the
//! whole run.

use gearpump_metrics::HistogramSummary;
use hdrhistogram::Histogram;
use std::time::{Duration, Instant};

/// How long each half of a [`WindowedHistogram`] collects: its summary covers the last 10 to
/// 20 seconds.
const HALF: Duration = Duration::from_secs(10);

/// Two histograms taking turns: samples go into the current one, and every [`HALF`] the
/// current becomes the previous and a fresh one starts. The summary merges both.
pub(crate) struct WindowedHistogram {
    current: Histogram<u64>,
    previous: Histogram<u64>,
    since: Instant,
    /// What one recorded unit is in milliseconds (1e-3 for µs, 1e-6 for ns).
    unit_ms: f64,
}

impl WindowedHistogram {
    /// A histogram of values from 1 to `max`, each unit worth `unit_ms` milliseconds.
    pub(crate) fn new(max: u64, unit_ms: f64) -> Self {
        let h = Histogram::new_with_bounds(1, max, 2).expect("valid histogram bounds");
        WindowedHistogram { previous: h.clone(), current: h, since: Instant::now(), unit_ms }
    }

    pub(crate) fn record(&mut self, value: u64) {
        self.current.saturating_record(value.max(1));
    }

    /// The summary of the last 10–20 s, in milliseconds.
    pub(crate) fn summary(&mut self) -> HistogramSummary {
        if self.since.elapsed() >= HALF {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.reset();
            self.since = Instant::now();
        }
        let mut merged = self.previous.clone();
        let _ = merged.add(&self.current);
        if merged.is_empty() {
            return HistogramSummary::default();
        }
        let ms = |v: u64| v as f64 * self.unit_ms;
        HistogramSummary {
            count: merged.len(),
            mean: merged.mean() * self.unit_ms,
            stddev: merged.stdev() * self.unit_ms,
            median: ms(merged.value_at_quantile(0.5)),
            p95: ms(merged.value_at_quantile(0.95)),
            p99: ms(merged.value_at_quantile(0.99)),
            p999: ms(merged.value_at_quantile(0.999)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_in_milliseconds() {
        let mut h = WindowedHistogram::new(1_000_000, 1e-3);
        for v in [1000, 2000, 3000] {
            h.record(v);
        }
        let s = h.summary();
        assert_eq!(s.count, 3);
        assert!((s.mean - 2.0).abs() < 0.05, "{s:?}");
        assert!((s.median - 2.0).abs() < 0.05, "{s:?}");
        assert!(s.p999 >= 2.9, "{s:?}");
        assert_eq!(WindowedHistogram::new(10, 1.0).summary(), HistogramSummary::default());
    }
}
