//! SOL on the embedded cluster: `sol -streamProducer 1 -streamProcessor 1 -runseconds 30`.

use clap::Parser;
use gearpump_examples::{RunArgs, run_example, sol};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The throughput benchmark: producers → shuffle → stages of processors.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// How many producer tasks.
    #[arg(long = "streamProducer", default_value_t = 1)]
    stream_producer: u32,
    /// How many processor tasks per stage.
    #[arg(long = "streamProcessor", default_value_t = 1)]
    stream_processor: u32,
    /// Message size in bytes.
    #[arg(long = "bytesPerMessage", default_value_t = 100)]
    bytes_per_message: usize,
    /// Stages, the producer included (at least 2).
    #[arg(long, default_value_t = 2)]
    stages: u32,
    #[command(flatten)]
    run: RunArgs,
}

fn main() -> std::process::ExitCode {
    gearpump_examples::main_with(run)
}

fn run() -> anyhow::Result<()> {
    let a = Args::parse_from(gearpump::cli::normalize_args(std::env::args()));
    if a.stages < 2 {
        anyhow::bail!("-stages must be at least 2 (a producer and a processor stage), got {}", a.stages);
    }
    let app = sol::application(a.stream_producer, a.stream_processor, a.bytes_per_message, a.stages, None)?;
    run_example(app, &a.run)
}
