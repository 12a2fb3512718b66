//! Metric values.

use serde::{Deserialize, Serialize};

/// A metric's value, of one of the original's kinds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MetricValue {
    /// Events counted, with their rates per second.
    Meter {
        /// Events since the start.
        count: u64,
        /// Events per second since the start.
        mean_rate: f64,
        /// Events per second, exponentially weighted over about a minute.
        m1: f64,
    },
    /// A distribution (times in milliseconds).
    Histogram(HistogramSummary),
    /// A level that goes up and down.
    Gauge(f64),
    /// A total that only grows.
    Counter(u64),
}

impl MetricValue {
    /// The original's class-like type name, shown as `$type` by the REST API.
    pub fn type_name(&self) -> &'static str {
        match self {
            MetricValue::Meter { .. } => "io.gearpump.metrics.Metrics.Meter",
            MetricValue::Histogram(_) => "io.gearpump.metrics.Metrics.Histogram",
            MetricValue::Gauge(_) => "io.gearpump.metrics.Metrics.Gauge",
            MetricValue::Counter(_) => "io.gearpump.metrics.Metrics.Counter",
        }
    }
}

/// A histogram's summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HistogramSummary {
    /// Samples taken.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub stddev: f64,
    /// Median.
    pub median: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
}

impl HistogramSummary {
    /// Combines summaries of disjoint sample sets (of a processor's tasks). Mean and stddev are
    /// exact; the percentiles are the sample-weighted mean of the parts' (an estimate, as the
    /// parts' samples are not at hand).
    pub fn combine(parts: &[HistogramSummary]) -> HistogramSummary {
        let count: u64 = parts.iter().map(|p| p.count).sum();
        if count == 0 {
            return HistogramSummary::default();
        }
        let n = count as f64;
        let w = |f: fn(&HistogramSummary) -> f64| parts.iter().map(|p| f(p) * p.count as f64).sum::<f64>() / n;
        let mean = w(|p| p.mean);
        // E[x²] of each part is stddev² + mean².
        let second = w(|p| p.stddev * p.stddev + p.mean * p.mean);
        HistogramSummary {
            count,
            mean,
            stddev: (second - mean * mean).max(0.0).sqrt(),
            median: w(|p| p.median),
            p95: w(|p| p.p95),
            p99: w(|p| p.p99),
            p999: w(|p| p.p999),
        }
    }
}

/// A named metric's value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// `app1.processor0.task0:sendThroughput`, `app1.executor0:memory.rss`, `worker2:thread.count`.
    pub name: String,
    /// Its value.
    pub value: MetricValue,
}

/// A metric's value at a time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    /// Milliseconds since the epoch.
    pub time: i64,
    /// The metric.
    pub metric: Metric,
}

/// Whether a metric named `name` is under `path`: the path itself, or the path followed by
/// `.` or `:` (so `app1.processor1` does not select `app1.processor10`). A trailing `*`
/// selects by plain prefix; an empty path selects everything.
pub fn path_matches(path: &str, name: &str) -> bool {
    if let Some(prefix) = path.strip_suffix('*') {
        return name.starts_with(prefix);
    }
    if path.is_empty() {
        return true;
    }
    match name.strip_prefix(path) {
        Some(rest) => rest.is_empty() || rest.starts_with('.') || rest.starts_with(':'),
        None => false,
    }
}

/// A meter: a count observed from time to time, turned into a mean rate and an exponentially
/// weighted one-minute rate.
#[derive(Clone, Debug, PartialEq)]
pub struct Meter {
    start: i64,
    last_time: i64,
    last_count: u64,
    m1: Option<f64>,
}

impl Meter {
    /// A meter started at `now` (ms) with nothing counted.
    pub fn new(now: i64) -> Meter {
        Meter { start: now, last_time: now, last_count: 0, m1: None }
    }

    /// Takes the total `count` at `now` (ms); returns the meter's value.
    pub fn update(&mut self, count: u64, now: i64) -> MetricValue {
        let dt = (now - self.last_time) as f64 / 1000.0;
        if dt > 0.0 {
            let rate = count.saturating_sub(self.last_count) as f64 / dt;
            // α for a one-minute window at this update interval.
            let alpha = 1.0 - (-dt / 60.0).exp();
            self.m1 = Some(match self.m1 {
                None => rate,
                Some(m1) => m1 + alpha * (rate - m1),
            });
            self.last_time = now;
        }
        self.last_count = count;
        let elapsed = (now - self.start) as f64 / 1000.0;
        let mean_rate = if elapsed > 0.0 { count as f64 / elapsed } else { 0.0 };
        MetricValue::Meter { count, mean_rate, m1: self.m1.unwrap_or(0.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_select_whole_segments() {
        for (path, name, expected) in [
            ("app1.processor1", "app1.processor1.task0:sendThroughput", true),
            ("app1.processor1", "app1.processor1:sendThroughput", true),
            ("app1.processor1", "app1.processor10.task0:sendThroughput", false),
            ("app1.processor*", "app1.processor10.task0:sendThroughput", true),
            ("app1", "app12.processor0:sendThroughput", false),
            ("", "anything", true),
            ("app1.processor0.task0:sendThroughput", "app1.processor0.task0:sendThroughput", true),
        ] {
            assert_eq!(path_matches(path, name), expected, "{path} vs {name}");
        }
    }

    #[test]
    fn meter_rates_follow_the_counts() {
        let mut m = Meter::new(0);
        assert_eq!(m.update(0, 0), MetricValue::Meter { count: 0, mean_rate: 0.0, m1: 0.0 });
        let MetricValue::Meter { count, mean_rate, m1 } = m.update(1000, 1000) else { panic!() };
        assert_eq!((count, mean_rate, m1), (1000, 1000.0, 1000.0));
        // The rate drops to zero: the mean halves, the one-minute rate decays a little.
        let MetricValue::Meter { mean_rate, m1, .. } = m.update(1000, 2000) else { panic!() };
        assert_eq!(mean_rate, 500.0);
        assert!(m1 < 1000.0 && m1 > 950.0, "{m1}");
    }

    #[test]
    fn combined_histograms_keep_exact_mean_and_spread() {
        let a = HistogramSummary { count: 1, mean: 1.0, stddev: 0.0, median: 1.0, p95: 1.0, p99: 1.0, p999: 1.0 };
        let b = HistogramSummary { count: 1, mean: 3.0, stddev: 0.0, median: 3.0, p95: 3.0, p99: 3.0, p999: 3.0 };
        let c = HistogramSummary::combine(&[a, b]);
        assert_eq!((c.count, c.mean, c.stddev, c.median), (2, 2.0, 1.0, 2.0));
        assert_eq!(HistogramSummary::combine(&[]), HistogramSummary::default());
    }
}
