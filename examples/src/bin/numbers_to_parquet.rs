//! Numbers into Parquet, exactly once: `numbers_to_parquet -messages 1000000 -sinkTask 2
//! -output 's3://bucket/numbers?region=us-east-1'` (or a directory, or an hdfs:// URL).

use clap::Parser;
use gearpump_examples::{NumberArgs, RunArgs, numbers_to_parquet, run_example};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Numbered messages → Parquet part files of (n, square, parity), each number exactly once.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    numbers: NumberArgs,
    /// Sink tasks (each writes its own part files).
    #[arg(long = "sinkTask", default_value_t = 1)]
    sink_task: u32,
    /// Where the part files go: a directory, or an s3://, hdfs:// or webhdfs:// URL.
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
        numbers_to_parquet::application(a.numbers.messages, a.numbers.per_ms, a.numbers.pace, a.sink_task, &a.output)?;
    run_example(app, &a.run)
}
