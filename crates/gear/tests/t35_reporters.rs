//! The metric reporters of a real cluster: `gear local` running wordcount sends its metrics to
//! a Graphite server (a listener in this test speaking the plaintext protocol) and, in another
//! cluster, appends them to `metrics.log` in the daemon log directory.

mod common;

use common::{Proc, wait_until};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::mpsc;

/// `gear local -workernum 1` with `conf_lines`, running wordcount; its directory and processes.
fn local_running_wordcount(name: &str, conf_lines: &str) -> (common::TestDir, Proc) {
    let (dir, conf, _) = common::cluster_dir(name, conf_lines);
    let local = common::gear_local(&dir, &conf, &["-workernum", "1"]);
    let submit = || common::submit_wordcount(&dir, &conf);
    // The master may not listen yet; `gear app` says so and fails, so try until it is up.
    wait_until("wordcount is submitted", || submit().status.success());
    (dir, local)
}

/// The count in a Graphite line `<prefix>.<metric>.count <value> <time>`, if it is one.
fn graphite_count(line: &str, metric: &str) -> Option<u64> {
    let mut parts = line.split(' ');
    let path = parts.next()?;
    if path != format!("gearpump.{metric}.count") {
        return None;
    }
    let value = parts.next()?.parse().ok()?;
    let time: i64 = parts.next()?.parse().ok()?;
    assert!(time > 1_600_000_000, "graphite times are seconds since the epoch: {line}");
    Some(value)
}

#[test]
fn graphite_receives_rising_meter_counts() {
    let graphite = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = graphite.local_addr().unwrap().port();
    let (lines_tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for conn in graphite.incoming() {
            let Ok(conn) = conn else { return };
            for line in BufReader::new(conn).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    return;
                }
            }
        }
    });
    let (_dir, _local) = local_running_wordcount(
        "graphite",
        &format!(
            "gearpump.metrics.enabled = true\ngearpump.metrics.reporter = \"graphite\"\n\
             gearpump.metrics.graphite.port = {port}\ngearpump.metrics.report-interval-ms = 300\n"
        ),
    );
    let metric = "app1.processor1.receiveThroughput";
    let mut counts = Vec::new();
    wait_until("Graphite gets two rising receive counts", || {
        while let Ok(line) = lines.try_recv() {
            if let Some(c) = graphite_count(&line, metric) {
                counts.push(c);
            }
        }
        counts.iter().filter(|c| **c > 0).collect::<std::collections::BTreeSet<_>>().len() >= 2
    });
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "meter counts only rise: {counts:?}");
}

fn metrics_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("logs/metrics.log")).unwrap_or_default()
}

#[test]
fn the_log_file_reporter_appends_every_metric_kind() {
    let (dir, _local) = local_running_wordcount(
        "logfile",
        "gearpump.metrics.enabled = true\ngearpump.metrics.reporter = \"logfile\"\n\
         gearpump.metrics.report-interval-ms = 300\n",
    );
    wait_until("metrics.log has the task meters and histograms", || {
        let log = metrics_log(&dir);
        log.contains("app1.processor1.task0:receiveThroughput Meter count=")
            && log.contains("app1.processor1.task0:processTime Histogram")
            && log.contains("app1.executor")
    });
    let log = metrics_log(&dir);
    let line = log.lines().find(|l| l.contains(":processTime Histogram")).unwrap();
    for field in ["mean=", "stddev=", "median=", "p95=", "p99=", "p999="] {
        assert!(line.contains(field), "{field} in {line}");
    }
}
