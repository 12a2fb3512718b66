//! Kafka read/write on the embedded cluster (or a cluster, with `gear app`): every record of
//! `-sourceTopic` to `-sinkTopic`.
//! `kafka_readwrite -source 1 -sink 1 -brokerList 127.0.0.1:9092 -sourceTopic topic1 -sinkTopic topic2`.

use clap::Parser;
use gearpump_examples::{KafkaArgs, RunArgs, kafka, run_example};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Kafka → shuffle → Kafka.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Source tasks.
    #[arg(long, default_value_t = 1)]
    source: u32,
    /// Sink tasks.
    #[arg(long, default_value_t = 1)]
    sink: u32,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    run: RunArgs,
}

fn main() -> std::process::ExitCode {
    gearpump_examples::main_with(run)
}

fn run() -> anyhow::Result<()> {
    let a = Args::parse_from(gearpump::cli::normalize_args(std::env::args()));
    run_example(kafka::read_write(&a.kafka.topics(), a.source, a.sink, gearpump::UserConfig::empty())?, &a.run)
}
