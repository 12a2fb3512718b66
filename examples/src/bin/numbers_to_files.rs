//! Numbers into files, at least once: `numbers_to_files -messages 1000000 -sinkTask 2 -output /tmp/numbers`.

use clap::Parser;
use gearpump_examples::{RunArgs, numbers_to_files, run_example};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Numbered messages → line files, every number at least once across failures.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Messages in all.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Messages per millisecond of application time.
    #[arg(long = "perMs", default_value_t = 100)]
    per_ms: u64,
    /// At most this many messages per second (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    pace: u64,
    /// Sink tasks (one file each).
    #[arg(long = "sinkTask", default_value_t = 1)]
    sink_task: u32,
    /// The directory of the files.
    #[arg(long)]
    output: String,
    #[command(flatten)]
    run: RunArgs,
}

fn main() -> std::process::ExitCode {
    gearpump_examples::main_with(run)
}

fn run() -> anyhow::Result<()> {
    let a = Args::parse_from(gearpump::cli::normalize_args(std::env::args()));
    let app = numbers_to_files::application(a.messages, a.per_ms, a.pace, a.sink_task, &a.output)?;
    run_example(app, &a.run)
}
