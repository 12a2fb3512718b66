//! # gearpump-examples
//!
//! The example applications of the guide, each a library module (so tests can build the same
//! DAGs) and an application binary in `src/bin/`:
//!
//! - [`wordcount`]: Split cycles a fixed text into words → hash → Sum counts them and logs its
//!   throughput every 5 s.
//! - [`sol`]: the throughput benchmark: producer → shuffle → a chain of processors.
//! - [`complexdag`]: 12 processors (2 sources, 5 inner nodes, 5 sinks) joined by 15 hash
//!   edges; each appends its name to the message.
//!
//! Every binary accepts the guide's single-dash options (`-split 4`) and GNU ones (`--split 4`),
//! and `-runseconds N` for a bounded run that ends with a summary line.

pub mod complexdag;
pub mod sol;
pub mod wordcount;

use std::time::Duration;

/// Turns the examples' `-runseconds` (negative: forever) into a run length.
pub fn run_for(seconds: i64) -> Option<Duration> {
    u64::try_from(seconds).ok().map(Duration::from_secs)
}

/// Runs `body` as a binary's `main`: an error is printed with its causes (no backtrace) and the
/// process exits with status 1.
pub fn main_with(body: impl FnOnce() -> anyhow::Result<()>) -> std::process::ExitCode {
    match body() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The examples' `-dataPlane`: `memory` (default) or `tcp` (every edge between executors on a
/// loopback TCP connection, as between processes).
pub fn data_plane(name: &str) -> anyhow::Result<gearpump::DataPlane> {
    match name {
        "memory" => Ok(gearpump::DataPlane::InMemory),
        "tcp" => Ok(gearpump::DataPlane::Tcp { host: [127, 0, 0, 1].into(), retry: gearpump::RetryPolicy::default() }),
        other => anyhow::bail!("-dataPlane must be memory or tcp, got {other:?}"),
    }
}

/// Runs an example application on the embedded cluster and prints its summary line.
pub fn run_example(
    app: gearpump::StreamApplication,
    runseconds: i64,
    data_plane: gearpump::DataPlane,
) -> anyhow::Result<()> {
    // The examples show their dashboard, with metrics on (gearpump.metrics.enabled is off by
    // default on a cluster).
    let metrics = gearpump::MetricsConfig { enabled: true, ..Default::default() };
    let cluster = gearpump::ClusterConfig { data_plane, metrics, ..Default::default() };
    let services = Some(("127.0.0.1".to_string(), 8090));
    let options = gearpump::RunOptions { run_for: run_for(runseconds), cluster, services };
    let report = gearpump::run(app, options)?;
    println!("{}", report.summary_line());
    if report.summary.status == gearpump::AppStatus::Failed {
        anyhow::bail!("the application failed");
    }
    Ok(())
}
