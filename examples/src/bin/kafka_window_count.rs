//! Kafka-to-Kafka windowed word count in the typed DSL: lines from `-sourceTopic` → a count per
//! word and tumbling window → `<word> <start> <end> <count>` records to `-sinkTopic`, exactly
//! once. `kafka_window_count -brokerList 127.0.0.1:9092 -sourceTopic lines -sinkTopic counts -windowMs 10000`.

use clap::Parser;
use gearpump_examples::kafka::window_count;
use gearpump_examples::{KafkaArgs, RunArgs, run_example};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Kafka → words → windowed counts → Kafka.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Tasks per operator.
    #[arg(long, default_value_t = 1)]
    parallelism: u32,
    /// The windows' length, ms.
    #[arg(long = "windowMs", default_value_t = 10_000)]
    window_ms: u64,
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
    let window = std::time::Duration::from_millis(a.window_ms);
    run_example(window_count(&a.kafka.topics(), window, a.parallelism, gearpump::UserConfig::empty())?, &a.run)
}
