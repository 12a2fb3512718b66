//! A windowed count and sum in the typed DSL, exactly once into files:
//! `window_count -messages 1000000 -perMs 100 -keys 10 -windowMs 1000 -output /tmp/windows`.

use clap::Parser;
use gearpump_examples::window_count::{Options, application};
use gearpump_examples::{RunArgs, run_example};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Numbers → a count and sum per key and tumbling window → `<key> <start> <end> <count> <sum>`
/// lines in files, exactly once.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Numbers in all.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Numbers per millisecond of application time.
    #[arg(long = "perMs", default_value_t = 100)]
    per_ms: u64,
    /// Numbers per second the source reads at most (0: as fast as it can).
    #[arg(long, default_value_t = 0)]
    pace: u64,
    /// Keys.
    #[arg(long, default_value_t = 10)]
    keys: u64,
    /// Window length, ms.
    #[arg(long = "windowMs", default_value_t = 1000)]
    window_ms: u64,
    /// Tasks of the windowed count and of the file sink.
    #[arg(long, default_value_t = 2)]
    parallelism: u32,
    /// Where the files go: a directory or a store URL.
    #[arg(long)]
    output: String,
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
    let o = Options {
        messages: a.messages,
        per_ms: a.per_ms,
        pace: a.pace,
        keys: a.keys,
        window_ms: a.window_ms,
        parallelism: a.parallelism,
        output: a.output,
        checkpoint_dir: a.checkpoint_dir,
    };
    run_example(application(&o)?, &a.run)
}
