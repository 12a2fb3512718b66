//! # gearpump-metrics
//!
//! What the runtime measures and how it is kept and shown, without I/O:
//!
//! - [`MetricValue`] and [`Metric`]: the original's metric kinds (meters, histograms, gauges,
//!   counters) under the original's names (`app<id>.processor<p>.task<i>:sendThroughput`).
//! - [`Meter`]: turns successive counts into a mean rate and a one-minute rate.
//! - [`HistogramSummary`]: mean, stddev, median, p95, p99, p999.
//! - [`MetricsStore`]: the latest value of every metric plus the recent and history series the
//!   guide's `retainRecentData` and `retainHistoryData` describe; answers the REST API's
//!   `readLatest`, `readRecent` and `readHistory`.
//! - [`exporters`]: the Prometheus text format (rendered by `metrics-exporter-prometheus`),
//!   Graphite's plaintext protocol and the log-file lines.
//!
//! Time is always passed in (milliseconds since the epoch), so every part is tested without
//! clocks or sleeps.

pub mod exporters;
mod store;
mod value;

pub use store::{MetricsStore, ReadOption, Retention};
pub use value::{HistogramSummary, Meter, Metric, MetricPoint, MetricValue, path_matches};
