//! KafkaWordCount on the embedded cluster (or a cluster, with `gear app`): lines from
//! `-sourceTopic` → Split → Sum → `<word> <count>` records to `-sinkTopic`.
//! `kafka_wordcount -brokerList 127.0.0.1:9092 -sourceTopic lines -sinkTopic counts`.

use clap::Parser;
use gearpump_examples::kafka::{WordCountParallelism, wordcount};
use gearpump_examples::{KafkaArgs, RunArgs, run_example};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Kafka → Split → Sum → Kafka.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Source tasks.
    #[arg(long, default_value_t = 1)]
    source: u32,
    /// Split tasks.
    #[arg(long, default_value_t = 1)]
    split: u32,
    /// Sum tasks.
    #[arg(long, default_value_t = 1)]
    sum: u32,
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
    let p = WordCountParallelism { source: a.source, split: a.split, sum: a.sum, sink: a.sink };
    run_example(wordcount(&a.kafka.topics(), p, gearpump::UserConfig::empty())?, &a.run)
}
