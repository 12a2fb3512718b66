//! ComplexDAG on the embedded cluster: `complexdag -runseconds 10`.

use clap::Parser;
use gearpump_examples::{RunArgs, complexdag, run_example};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 12 processors, 15 hash edges; every node appends its name to the message.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    run: RunArgs,
}

fn main() -> std::process::ExitCode {
    gearpump_examples::main_with(run)
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse_from(gearpump::cli::normalize_args(std::env::args()));
    run_example(complexdag::application(None, None)?, &args.run)
}
