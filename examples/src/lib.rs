//! # gearpump-examples
//!
//! The example applications of the guide, each a library module (so tests can build the same
//! DAGs) and an application binary in `src/bin/`:
//!
//! - [`wordcount`]: Split cycles a fixed text into words → hash → Sum counts them and logs its
//!   throughput every 5 s.
//! - [`sol`]: the throughput benchmark: producer → shuffle → a chain of processors.
//! - [`message_count`]: the guide's exactly-once MessageCount: numbered messages → a
//!   checkpointed count.
//! - [`numbers_to_files`]: numbered messages into line files, at least once.
//! - [`window_average`]: the guide's WindowAverage: averages over sliding windows, exactly once.
//! - [`kafka`]: KafkaWordCount (Kafka → Split → Sum → Kafka) and Kafka read/write.
//! - [`distributedshell`] and [`distributeservice`]: the guide's non-streaming applications,
//!   one executor on every worker, each with a client (`distributedshell_client`,
//!   `distributeservice_client`) that talks to the running application.
//! - [`complexdag`]: 12 processors (2 sources, 5 inner nodes, 5 sinks) joined by 15 hash
//!   edges; each appends its name to the message.
//!
//! Every binary accepts the guide's single-dash options (`-split 4`) and GNU ones (`--split 4`),
//! and the options of [`RunArgs`]: `-runseconds N` for a bounded run that ends with a summary
//! line, `-dataPlane memory|tcp`, `-metrics true|false` and `-servicesPort 8090`.

pub mod complexdag;
pub mod distributedshell;
pub mod distributeservice;
pub mod fsio;
pub mod kafka;
pub mod message_count;
pub mod numbers_to_files;
pub mod numbers_to_parquet;
pub mod sol;
pub mod window_average;
pub mod window_count;
pub mod wordcount;
pub mod wordcount_dsl;
pub mod words;

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
            // Errors may quote store URLs with credentials in them.
            eprintln!("error: {}", gearpump::redact(&format!("{e:#}")));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The options of the examples that read [`gearpump::NumberSource`] (flattened into theirs).
#[derive(Clone, Debug, clap::Args)]
pub struct NumberArgs {
    /// Messages in all (the numbers 1..=messages).
    #[arg(long, default_value_t = 1_000_000)]
    pub messages: u64,
    /// Messages per millisecond of application time.
    #[arg(long = "perMs", default_value_t = 100)]
    pub per_ms: u64,
    /// At most this many messages per second (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub pace: u64,
}

/// The Kafka options of the Kafka examples (flattened into theirs).
#[derive(Clone, Debug, clap::Args)]
pub struct KafkaArgs {
    /// Kafka brokers, `host:port,…`.
    #[arg(long = "brokerList", default_value = "127.0.0.1:9092")]
    pub broker_list: String,
    /// The topic read.
    #[arg(long = "sourceTopic", default_value = "topic1")]
    pub source_topic: String,
    /// The topic written.
    #[arg(long = "sinkTopic", default_value = "topic2")]
    pub sink_topic: String,
}

impl KafkaArgs {
    /// The topics these options name.
    pub fn topics(&self) -> kafka::Topics {
        kafka::Topics {
            brokers: self.broker_list.clone(),
            source: self.source_topic.clone(),
            sink: self.sink_topic.clone(),
        }
    }
}

/// The options every example binary takes (flattened into its own).
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// How long to run, in seconds; negative runs until killed.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub runseconds: i64,
    /// How executors exchange messages: memory, or tcp (loopback sockets, as between processes).
    #[arg(long = "dataPlane", default_value = "memory", value_parser = ["memory", "tcp"])]
    pub data_plane: String,
    /// Collect metrics (the dashboard's charts): true or false.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics: bool,
    /// Where the dashboard listens (a free port if this one is taken).
    #[arg(long = "servicesPort", default_value_t = 8090)]
    pub services_port: u16,
}

impl RunArgs {
    /// The embedded cluster's data plane.
    pub fn data_plane(&self) -> gearpump::DataPlane {
        match self.data_plane.as_str() {
            "tcp" => gearpump::DataPlane::tcp([127, 0, 0, 1].into()),
            _ => gearpump::DataPlane::InMemory,
        }
    }
}

/// Runs an example application on the embedded cluster with its dashboard and prints its
/// summary line.
pub fn run_example(app: gearpump::StreamApplication, args: &RunArgs) -> anyhow::Result<()> {
    // The examples show their dashboard, with metrics on unless `-metrics false` (on a
    // cluster, gearpump.metrics.enabled is off by default).
    let metrics = gearpump::MetricsConfig { enabled: args.metrics, ..Default::default() };
    let cluster = gearpump::ClusterConfig { data_plane: args.data_plane(), metrics, ..Default::default() };
    let services = Some(("127.0.0.1".to_string(), args.services_port));
    let options = gearpump::RunOptions { run_for: run_for(args.runseconds), cluster, services };
    let report = gearpump::run(app, options)?;
    println!("{}", report.summary_line());
    if report.summary.status == gearpump::AppStatus::Failed {
        anyhow::bail!("the application failed");
    }
    Ok(())
}
