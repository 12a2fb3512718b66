//! Exporters' formats: Prometheus text, Graphite plaintext, log-file lines.
//!
//! Each renders the latest points of a [`MetricsStore`](crate::MetricsStore); sending them
//! (an HTTP response, a TCP connection to Graphite, a file) is the caller's business.

use crate::value::{MetricPoint, MetricValue};
use metrics_exporter_prometheus::PrometheusBuilder;

/// Splits `app1.processor0.task2:sendThroughput` into the Prometheus metric name and labels:
/// `gearpump_send_throughput` with `app="1"`, `processor="0"`, `task="2"`.
fn prometheus_name(name: &str) -> (String, Vec<(String, String)>) {
    let (scope, field) = name.split_once(':').unwrap_or(("", name));
    let mut labels = Vec::new();
    let mut unlabeled = Vec::new();
    for part in scope.split('.').filter(|p| !p.is_empty()) {
        let digits = part.find(|c: char| c.is_ascii_digit());
        match digits {
            Some(i) if i > 0 && part[i..].chars().all(|c| c.is_ascii_digit()) => {
                labels.push((part[..i].to_string(), part[i..].to_string()));
            }
            _ => unlabeled.push(part),
        }
    }
    let mut snake = String::from("gearpump_");
    for part in unlabeled {
        snake.push_str(part);
        snake.push('_');
    }
    for c in field.chars() {
        if c.is_ascii_uppercase() {
            snake.push('_');
            snake.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            snake.push(c);
        } else {
            snake.push('_');
        }
    }
    (snake, labels)
}

/// The Prometheus text exposition of `points` (their latest values): meters as a
/// `_total` counter plus `_rate` and `_m1_rate` gauges, histograms as gauges with a `quantile`
/// label plus `_mean`, `_stddev` and `_count`, gauges and counters as themselves.
pub fn prometheus<'a>(points: impl IntoIterator<Item = &'a MetricPoint>) -> String {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        for p in points {
            let (name, labels) = prometheus_name(&p.metric.name);
            let gauge = |suffix: &str, extra: Option<(&str, &str)>, v: f64| {
                let mut l: Vec<metrics::Label> =
                    labels.iter().map(|(k, v)| metrics::Label::new(k.clone(), v.clone())).collect();
                if let Some((k, v)) = extra {
                    l.push(metrics::Label::new(k.to_string(), v.to_string()));
                }
                metrics::gauge!(format!("{name}{suffix}"), l).set(v);
            };
            match &p.metric.value {
                MetricValue::Meter { count, mean_rate, m1 } => {
                    let l: Vec<metrics::Label> =
                        labels.iter().map(|(k, v)| metrics::Label::new(k.clone(), v.clone())).collect();
                    metrics::counter!(format!("{name}_total"), l).absolute(*count);
                    gauge("_rate", None, *mean_rate);
                    gauge("_m1_rate", None, *m1);
                }
                MetricValue::Histogram(h) => {
                    for (q, v) in [("0.5", h.median), ("0.95", h.p95), ("0.99", h.p99), ("0.999", h.p999)] {
                        gauge("", Some(("quantile", q)), v);
                    }
                    gauge("_mean", None, h.mean);
                    gauge("_stddev", None, h.stddev);
                    gauge("_count", None, h.count as f64);
                }
                MetricValue::Gauge(v) => gauge("", None, *v),
                MetricValue::Counter(v) => {
                    let l: Vec<metrics::Label> =
                        labels.iter().map(|(k, v)| metrics::Label::new(k.clone(), v.clone())).collect();
                    metrics::counter!(format!("{name}_total"), l).absolute(*v);
                }
            }
        }
    });
    handle.render()
}

/// The fields of a value, as `(suffix, number)`: what Graphite and the log file show.
pub fn fields(value: &MetricValue) -> Vec<(&'static str, f64)> {
    match value {
        MetricValue::Meter { count, mean_rate, m1 } => {
            vec![("count", *count as f64), ("meanRate", *mean_rate), ("m1", *m1)]
        }
        MetricValue::Histogram(h) => vec![
            ("count", h.count as f64),
            ("mean", h.mean),
            ("stddev", h.stddev),
            ("median", h.median),
            ("p95", h.p95),
            ("p99", h.p99),
            ("p999", h.p999),
        ],
        MetricValue::Gauge(v) => vec![("value", *v)],
        MetricValue::Counter(v) => vec![("count", *v as f64)],
    }
}

/// Graphite's plaintext protocol: `path value seconds\n` per field, with `prefix.` before
/// each path and `:` turned into `.` (Graphite paths are dot-separated).
pub fn graphite<'a>(prefix: &str, points: impl IntoIterator<Item = &'a MetricPoint>) -> String {
    let mut out = String::new();
    for p in points {
        let path = p.metric.name.replace(':', ".");
        for (field, v) in fields(&p.metric.value) {
            out.push_str(&format!("{prefix}.{path}.{field} {v} {}\n", p.time / 1000));
        }
    }
    out
}

/// One line per metric: `time name type field=value ...`, for the log-file reporter.
pub fn log_lines<'a>(points: impl IntoIterator<Item = &'a MetricPoint>) -> String {
    let mut out = String::new();
    for p in points {
        let kind = p.metric.value.type_name().rsplit('.').next().unwrap_or("");
        out.push_str(&format!("{} {} {kind}", p.time, p.metric.name));
        for (field, v) in fields(&p.metric.value) {
            out.push_str(&format!(" {field}={v}"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HistogramSummary, Metric};

    fn points() -> Vec<MetricPoint> {
        let m = |name: &str, value| MetricPoint { time: 5000, metric: Metric { name: name.into(), value } };
        vec![
            m("app1.processor0.task1:sendThroughput", MetricValue::Meter { count: 10, mean_rate: 2.5, m1: 2.0 }),
            m(
                "app1.processor1.task0:receiveLatency",
                MetricValue::Histogram(HistogramSummary {
                    count: 3,
                    mean: 1.5,
                    stddev: 0.5,
                    median: 1.0,
                    p95: 2.0,
                    p99: 2.0,
                    p999: 2.0,
                }),
            ),
            m("app1.executor0:memory.rss", MetricValue::Gauge(1024.0)),
            m("master:thread.count", MetricValue::Gauge(7.0)),
        ]
    }

    #[test]
    fn prometheus_text_parses_with_a_real_parser() {
        let text = prometheus(&points());
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
        let find = |name: &str| scrape.samples.iter().find(|s| s.metric == name).unwrap_or_else(|| panic!("{name}"));
        let sent = find("gearpump_send_throughput_total");
        assert_eq!(sent.labels.get("app"), Some("1"));
        assert_eq!(sent.labels.get("task"), Some("1"));
        assert!(matches!(sent.value, prometheus_parse::Value::Counter(v) if v == 10.0));
        assert!(find("gearpump_memory_rss").labels.get("executor") == Some("0"));
        assert!(find("gearpump_master_thread_count").labels.get("app").is_none());
        assert!(
            scrape
                .samples
                .iter()
                .any(|s| s.metric == "gearpump_receive_latency" && s.labels.get("quantile") == Some("0.99"))
        );
    }

    #[test]
    fn graphite_and_log_lines_carry_every_field() {
        let g = graphite("gearpump", &points());
        assert!(g.contains("gearpump.app1.processor0.task1.sendThroughput.count 10 5\n"), "{g}");
        assert!(g.contains("gearpump.app1.processor1.task0.receiveLatency.p99 2 5\n"), "{g}");
        let l = log_lines(&points());
        assert!(l.contains("5000 app1.executor0:memory.rss Gauge value=1024\n"), "{l}");
    }
}
