//! WindowAverage: `window_average -messages 100000 -window_size 5000 -window_step 5000`.

use clap::Parser;
use gearpump_examples::{RunArgs, run_example, window_average};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Numbers (value n at time n ms) → averages over sliding windows, exactly once.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Numbers in all.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Window length, ms.
    #[arg(long = "window_size", default_value_t = 5000)]
    window_size: i64,
    /// Window start interval, ms.
    #[arg(long = "window_step", default_value_t = 5000)]
    window_step: i64,
    /// A directory for the averages (`window-<task>.txt`).
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
    let app = window_average::application(
        a.messages,
        a.window_size,
        a.window_step,
        a.output.as_deref(),
        a.checkpoint_dir.as_deref(),
    )?;
    run_example(app, &a.run)
}
