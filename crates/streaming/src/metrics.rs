//! What an AppMaster reports: its tasks' counters turned into named metrics, and its
//! application described for the REST API.

use gearpump_api::StreamApplication;
use gearpump_core::{AppId, Timestamp};
use gearpump_metrics::{HistogramSummary, Meter, Metric, MetricValue};
use gearpump_protocol::{AppRuntime, EdgeInfo, ProcessGauges, ProcessorInfo, TaskCounters};
use std::collections::{BTreeMap, HashMap};

/// Metric settings (`gearpump.metrics.*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `gearpump.metrics.enabled` (false): collect and report metrics at all.
    pub enabled: bool,
    /// `gearpump.metrics.sample-rate` (10): time one message in this many.
    pub sample_rate: u32,
    /// `gearpump.metrics.report-interval-ms` (15000): how often reporters send.
    pub report_interval_ms: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: false, sample_rate: 10, report_interval_ms: 15_000 }
    }
}

impl MetricsConfig {
    /// The sample rate tasks use: 0 (never time) unless metrics are enabled.
    pub fn task_sample_rate(&self) -> u32 {
        if self.enabled { self.sample_rate.max(1) } else { 0 }
    }
}

/// Turns successive counter reports into the original's metrics:
///
/// - per task, `app<a>.processor<p>.task<i>:` `sendThroughput` and `receiveThroughput`
///   (meters), `processTime` and `receiveLatency` (histograms, ms), `pendingMessages` (gauge:
///   input queued) and `blockedTime` (counter: ms back-pressured);
/// - the same per processor, `app<a>.processor<p>:…`, over its tasks;
/// - per executor process, `app<a>.executor<e>:memory.rss` and `:thread.count`;
/// - `app<a>:minClock` and `app<a>:clockLag` (ms behind now).
#[derive(Debug)]
pub struct MetricsCollector {
    app_id: AppId,
    meters: HashMap<String, Meter>,
}

impl MetricsCollector {
    /// A collector for one application.
    pub fn new(app_id: AppId) -> Self {
        MetricsCollector { app_id, meters: HashMap::new() }
    }

    fn meter(&mut self, name: String, count: u64, now: i64) -> Metric {
        let value = self.meters.entry(name.clone()).or_insert_with(|| Meter::new(now)).update(count, now);
        Metric { name, value }
    }

    /// The metrics at `now` (ms since the epoch).
    pub fn collect(
        &mut self,
        now: i64,
        tasks: &[TaskCounters],
        processes: &[(i32, ProcessGauges)],
        min_clock: Timestamp,
    ) -> Vec<Metric> {
        let app = self.app_id;
        let mut out = Vec::new();
        let mut by_processor: BTreeMap<u32, Vec<&TaskCounters>> = BTreeMap::new();
        for c in tasks {
            by_processor.entry(c.task.processor.0).or_default().push(c);
        }
        for (p, tasks) in by_processor {
            for c in &tasks {
                let scope = format!("app{app}.processor{p}.task{}", c.task.index);
                out.extend(self.group(&scope, std::slice::from_ref(c), now));
            }
            out.extend(self.group(&format!("app{app}.processor{p}"), &tasks, now));
        }
        // A live process has a thread: zeros are gauges not reported yet, not a measurement.
        for (e, g) in processes.iter().filter(|(_, g)| g.threads > 0) {
            out.extend(g.metrics(&format!("app{app}.executor{e}")));
        }
        // Before its tasks report, the clock is the start clock (0 for a new application): a
        // lag measured from it would be the age of the epoch. Lag is "behind now", which means
        // something when timestamps are wall-clock times.
        if min_clock > Timestamp(0) && min_clock < Timestamp::MAX {
            out.push(Metric { name: format!("app{app}:minClock"), value: MetricValue::Gauge(min_clock.0 as f64) });
            let lag = (now - min_clock.0).max(0);
            out.push(Metric { name: format!("app{app}:clockLag"), value: MetricValue::Gauge(lag as f64) });
        }
        out
    }

    fn group(&mut self, scope: &str, tasks: &[&TaskCounters], now: i64) -> Vec<Metric> {
        let sent = tasks.iter().map(|c| c.sent).sum();
        let received = tasks.iter().map(|c| c.received).sum();
        let hist = |f: fn(&TaskCounters) -> HistogramSummary| {
            HistogramSummary::combine(&tasks.iter().map(|c| f(c)).collect::<Vec<_>>())
        };
        vec![
            self.meter(format!("{scope}:sendThroughput"), sent, now),
            self.meter(format!("{scope}:receiveThroughput"), received, now),
            Metric { name: format!("{scope}:processTime"), value: MetricValue::Histogram(hist(|c| c.process_time)) },
            Metric {
                name: format!("{scope}:receiveLatency"),
                value: MetricValue::Histogram(hist(|c| c.receive_latency)),
            },
            Metric {
                name: format!("{scope}:pendingMessages"),
                value: MetricValue::Gauge(tasks.iter().map(|c| c.queued).sum::<u64>() as f64),
            },
            Metric {
                name: format!("{scope}:blockedTime"),
                value: MetricValue::Counter(tasks.iter().map(|c| c.blocked_ns).sum::<u64>() / 1_000_000),
            },
        ]
    }
}

/// The static part of an application's [`AppRuntime`]: processors, edges and config.
pub fn describe(app: &StreamApplication) -> AppRuntime {
    let dag = app.dag();
    AppRuntime {
        clock: Timestamp(0),
        start_clock: Timestamp(0),
        restarts: 0,
        processors: dag
            .processors()
            .iter()
            .map(|p| ProcessorInfo {
                id: p.id.0,
                task_type: p.task_type.clone(),
                parallelism: p.parallelism,
                description: p.description.clone(),
                birth: p.life.birth.0,
                death: p.life.death.0,
                retired: p.retired,
            })
            .collect(),
        edges: dag
            .edges()
            .iter()
            .map(|e| EdgeInfo {
                from: e.from.0,
                to: e.to.0,
                partitioner: e.partitioner.name().to_string(),
                back_pressure_permille: 0,
            })
            .collect(),
        executors: Vec::new(),
        stalling: Vec::new(),
        config: app.config().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        appmaster_pid: std::process::id(),
        version: app.version(),
        task_types: app.task_types().map(str::to_string).collect(),
        processor_clocks: Vec::new(),
        errors: Vec::new(),
        checkpoints: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gearpump_core::TaskId;

    fn counters(task: TaskId, sent: u64) -> TaskCounters {
        TaskCounters {
            task,
            received: sent / 2,
            sent,
            latency_samples: 0,
            latency_p50_us: 0,
            latency_p99_us: 0,
            queued: 3,
            blocked_ns: 2_000_000,
            edges_blocked_ns: Vec::new(),
            clock: Timestamp(0),
            receive_latency: HistogramSummary::default(),
            process_time: HistogramSummary { count: 1, mean: 0.5, median: 0.5, ..HistogramSummary::default() },
        }
    }

    #[test]
    fn tasks_and_processors_get_the_original_metric_names() {
        let mut c = MetricsCollector::new(AppId(3));
        let tasks = [counters(TaskId::new(0, 0), 10), counters(TaskId::new(0, 1), 30)];
        c.collect(0, &tasks, &[], Timestamp(0));
        let tasks = [counters(TaskId::new(0, 0), 110), counters(TaskId::new(0, 1), 130)];
        let out = c.collect(1000, &tasks, &[(0, ProcessGauges { rss_bytes: 1, threads: 2 })], Timestamp(400));
        let get = |n: &str| out.iter().find(|m| m.name == n).unwrap_or_else(|| panic!("{n}")).value.clone();
        assert_eq!(
            get("app3.processor0.task1:sendThroughput"),
            MetricValue::Meter { count: 130, mean_rate: 130.0, m1: 100.0 }
        );
        assert_eq!(
            get("app3.processor0:sendThroughput"),
            MetricValue::Meter { count: 240, mean_rate: 240.0, m1: 200.0 }
        );
        assert_eq!(get("app3.processor0:pendingMessages"), MetricValue::Gauge(6.0));
        assert_eq!(get("app3.processor0:blockedTime"), MetricValue::Counter(4));
        assert!(
            matches!(get("app3.processor0:processTime"), MetricValue::Histogram(h) if h.count == 2 && h.mean == 0.5)
        );
        assert_eq!(get("app3.executor0:thread.count"), MetricValue::Gauge(2.0));
        assert_eq!(get("app3:clockLag"), MetricValue::Gauge(600.0));
    }

    #[test]
    fn unreported_gauges_and_an_unstarted_clock_are_not_metrics() {
        let mut c = MetricsCollector::new(AppId(1));
        let out = c.collect(
            5000,
            &[],
            &[(0, ProcessGauges::default()), (1, ProcessGauges { rss_bytes: 9, threads: 1 })],
            Timestamp(0),
        );
        let names: Vec<&str> = out.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["app1.executor1:memory.rss", "app1.executor1:thread.count"]);
    }
}
