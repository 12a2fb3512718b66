//! The metrics store: latest values and retained series.

use crate::value::{Metric, MetricPoint, path_matches};
use std::collections::{BTreeMap, VecDeque};

/// How long series are kept, and how far apart their points are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// `gearpump.retainRecentData.intervalMs` (15000).
    pub recent_interval_ms: i64,
    /// `gearpump.retainRecentData.seconds` × 1000 (300 s).
    pub recent_keep_ms: i64,
    /// `gearpump.retainHistoryData.intervalMs` (3600000).
    pub history_interval_ms: i64,
    /// `gearpump.retainHistoryData.hours` × 3600000 (72 h).
    pub history_keep_ms: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            recent_interval_ms: 15_000,
            recent_keep_ms: 300_000,
            history_interval_ms: 3_600_000,
            history_keep_ms: 72 * 3_600_000,
        }
    }
}

/// Which points a query returns (the REST API's `readOption`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ReadOption {
    /// The newest point of each metric.
    Latest,
    /// The fine-grained series.
    Recent,
    /// The coarse series.
    History,
}

impl std::str::FromStr for ReadOption {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "readLatest" => Ok(ReadOption::Latest),
            "readRecent" => Ok(ReadOption::Recent),
            "readHistory" => Ok(ReadOption::History),
            other => Err(format!("readOption must be readLatest, readRecent or readHistory, not {other:?}")),
        }
    }
}

#[derive(Debug)]
struct Series {
    latest: MetricPoint,
    recent: VecDeque<MetricPoint>,
    history: VecDeque<MetricPoint>,
}

/// Every metric's latest value, and its recent and history series.
///
/// A point joins a series when at least the series' interval has passed since the series'
/// last point; points older than the series' retention are dropped as new ones arrive. A
/// metric that has not been recorded for the whole history retention (an application that
/// ended long ago, a worker that left) is forgotten, so a long-lived master's memory is
/// bounded by what is alive.
#[derive(Debug, Default)]
pub struct MetricsStore {
    retention: Retention,
    series: BTreeMap<String, Series>,
    /// When silent metrics were last looked for.
    last_expiry: i64,
}

impl MetricsStore {
    /// An empty store.
    pub fn new(retention: Retention) -> MetricsStore {
        MetricsStore { retention, series: BTreeMap::new(), last_expiry: i64::MIN }
    }

    /// Records metrics observed at `time` (ms since the epoch).
    pub fn record(&mut self, time: i64, metrics: impl IntoIterator<Item = Metric>) {
        let r = self.retention;
        // Looking for silent metrics walks them all: do it once per recent interval.
        if time.saturating_sub(self.last_expiry) >= r.recent_interval_ms {
            self.last_expiry = time;
            self.series.retain(|_, s| time - s.latest.time <= r.history_keep_ms);
        }
        for metric in metrics {
            let point = MetricPoint { time, metric };
            match self.series.get_mut(&point.metric.name) {
                None => {
                    let series = Series {
                        latest: point.clone(),
                        recent: VecDeque::from([point.clone()]),
                        history: VecDeque::from([point.clone()]),
                    };
                    self.series.insert(point.metric.name.clone(), series);
                }
                Some(s) => {
                    push(&mut s.recent, &point, r.recent_interval_ms, r.recent_keep_ms);
                    push(&mut s.history, &point, r.history_interval_ms, r.history_keep_ms);
                    s.latest = point;
                }
            }
        }
    }

    /// The points of every metric under `path` (see [`path_matches`]), by name then time.
    pub fn query(&self, path: &str, option: ReadOption) -> Vec<MetricPoint> {
        let mut out = Vec::new();
        for (name, s) in &self.series {
            if !path_matches(path, name) {
                continue;
            }
            match option {
                ReadOption::Latest => out.push(s.latest.clone()),
                ReadOption::Recent => out.extend(s.recent.iter().cloned()),
                ReadOption::History => out.extend(s.history.iter().cloned()),
            }
        }
        out
    }

    /// The latest point of every metric.
    pub fn latest(&self) -> impl Iterator<Item = &MetricPoint> {
        self.series.values().map(|s| &s.latest)
    }

    /// How many metrics are kept.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether no metric is kept.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

fn push(series: &mut VecDeque<MetricPoint>, point: &MetricPoint, interval: i64, keep: i64) {
    if series.back().is_none_or(|last| point.time - last.time >= interval) {
        series.push_back(point.clone());
    }
    while series.front().is_some_and(|first| point.time - first.time > keep) {
        series.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MetricValue;

    fn counter(name: &str, v: u64) -> Metric {
        Metric { name: name.into(), value: MetricValue::Counter(v) }
    }

    #[test]
    fn series_keep_points_at_their_interval_within_their_retention() {
        let r = Retention { recent_interval_ms: 10, recent_keep_ms: 30, history_interval_ms: 20, history_keep_ms: 100 };
        let mut store = MetricsStore::new(r);
        for t in 0..=50 {
            store.record(t, [counter("app1.processor0:x", t as u64)]);
        }
        let times = |o| store.query("app1", o).iter().map(|p| p.time).collect::<Vec<_>>();
        assert_eq!(times(ReadOption::Latest), vec![50]);
        assert_eq!(times(ReadOption::Recent), vec![20, 30, 40, 50]);
        assert_eq!(times(ReadOption::History), vec![0, 20, 40]);
        assert!(store.query("app2", ReadOption::Latest).is_empty());
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn metrics_silent_for_the_history_retention_are_forgotten() {
        let r = Retention { recent_interval_ms: 10, recent_keep_ms: 30, history_interval_ms: 20, history_keep_ms: 100 };
        let mut store = MetricsStore::new(r);
        store.record(0, [counter("app1.processor0:x", 1)]);
        for t in (0..=100).step_by(10) {
            store.record(t, [counter("app2.processor0:x", 1)]);
        }
        assert_eq!(store.len(), 2, "app1 was last seen exactly one retention ago");
        store.record(110, [counter("app2.processor0:x", 1)]);
        assert_eq!(store.len(), 1);
        assert!(store.query("app1", ReadOption::History).is_empty());
    }

    #[test]
    fn read_options_parse_by_the_guide_names() {
        assert_eq!("readRecent".parse::<ReadOption>(), Ok(ReadOption::Recent));
        assert!("recent".parse::<ReadOption>().unwrap_err().contains("readLatest"));
    }
}
