//! MessageCount on the embedded cluster (or a cluster, with `gear app`):
//! `message_count -messages 1000000 -countTask 2 -output /tmp/counts`.

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
    /// Where checkpoints are kept.
    #[arg(long = "checkpointDir")]
    checkpoint_dir: Option<String>,
    #[command(flatten)]
    run: RunArgs,
}

fn main() -> std::process::ExitCode {
    gearpump_examples::main_with(run)
}

fn run() -> anyhow::Result<()> {
    let a = Args::parse_from(gearpump::cli::normalize_args(std::env::args()));
    if a.count_task == 0 {
        anyhow::bail!("-countTask must be at least 1");
    }
    let options = message_count::Options {
        messages: a.numbers.messages,
        per_ms: a.numbers.per_ms,
        pace: a.numbers.pace,
        count_tasks: a.count_task,
        checkpoint_interval_ms: a.checkpoint_interval,
        output: a.output,
        checkpoint_dir: a.checkpoint_dir,
    };
    run_example(message_count::application(&options)?, &a.run)
}
