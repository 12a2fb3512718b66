//! Numbers into files, at least once: `numbers_to_files -messages 1000000 -sinkTask 2 -output /tmp/numbers`.

use clap::Parser;
use gearpump_examples::{NumberArgs, RunArgs, numbers_to_files, run_example};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Numbered messages → line files, every number at least once across failures.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    numbers: NumberArgs,
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
    let app =
        numbers_to_files::application(a.numbers.messages, a.numbers.per_ms, a.numbers.pace, a.sink_task, &a.output)?;
    run_example(app, &a.run)
}
