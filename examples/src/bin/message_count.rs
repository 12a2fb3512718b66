//! MessageCount on the embedded cluster (or a cluster, with `gear app`):
//! `message_count -messages 1000000 -countTask 2 -output /tmp/counts`, or from Kafka:
//! `message_count -brokerList 127.0.0.1:9092 -sourceTopic numbers -sinkTopic counts -countTask 2`.

use clap::Parser;
use gearpump_examples::{NumberArgs, RunArgs, message_count, run_example};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Numbered messages → a checkpointed count, exactly once across failures.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    numbers: NumberArgs,
    /// Count tasks.
    #[arg(long = "countTask", default_value_t = 1)]
    count_task: u32,
    /// Checkpoint interval in ms of application time.
    #[arg(long = "checkpointInterval", default_value_t = 1000)]
    checkpoint_interval: i64,
    /// A directory where each count task writes `count-<i>.txt` when it stops.
    #[arg(long)]
    output: Option<String>,
    /// Milliseconds each count task takes to stop (before it writes its file), as a sink
    /// flushing to slow storage would.
    #[arg(long = "stopDelayMs", default_value_t = 0)]
    stop_delay_ms: u64,
    /// Where checkpoints are kept.
    #[arg(long = "checkpointDir")]
    checkpoint_dir: Option<String>,
    /// Kafka brokers (`host:port,…`): read the numbers from -sourceTopic instead.
    #[arg(long = "brokerList")]
    broker_list: Option<String>,
    /// The Kafka topic of numbers (decimal text).
    #[arg(long = "sourceTopic", requires = "broker_list")]
    source_topic: Option<String>,
    /// A Kafka topic for `<number> <count task> <count>`, one record per number.
    #[arg(long = "sinkTopic", requires = "broker_list")]
    sink_topic: Option<String>,
    /// Kafka source tasks.
    #[arg(long = "sourceTask", default_value_t = 1)]
    source_task: u32,
    /// Kafka sink tasks.
    #[arg(long = "sinkTask", default_value_t = 1)]
    sink_task: u32,
    /// The sink's guarantee: exactlyOnce (transactions committed on checkpoints) or atLeastOnce.
    #[arg(long = "sinkMode", default_value = "exactlyOnce", value_parser = ["exactlyOnce", "atLeastOnce"])]
    sink_mode: String,
    #[command(flatten)]
    run: RunArgs,
}

fn main() -> std::process::ExitCode {
    gearpump_examples::main_with(run)
}

fn run() -> anyhow::Result<()> {
    let a = Args::parse_from(gearpump::cli::normalize_args(std::env::args()));
    if a.count_task == 0 || a.source_task == 0 || a.sink_task == 0 {
        anyhow::bail!("-countTask, -sourceTask and -sinkTask must be at least 1");
    }
    let kafka = match (a.broker_list, a.source_topic) {
        (Some(brokers), Some(source_topic)) => Some(message_count::KafkaOptions {
            brokers,
            source_topic,
            sink_topic: a.sink_topic,
            source_tasks: a.source_task,
            sink_tasks: a.sink_task,
            exactly_once: a.sink_mode == "exactlyOnce",
        }),
        (Some(_), None) => anyhow::bail!("-brokerList needs -sourceTopic"),
        _ => None,
    };
    let options = message_count::Options {
        messages: a.numbers.messages,
        per_ms: a.numbers.per_ms,
        pace: a.numbers.pace,
        count_tasks: a.count_task,
        checkpoint_interval_ms: a.checkpoint_interval,
        output: a.output,
        checkpoint_dir: a.checkpoint_dir,
        kafka,
        config: gearpump::UserConfig::empty().with(message_count::Count::STOP_DELAY, a.stop_delay_ms),
    };
    run_example(message_count::application(&options)?, &a.run)
}
