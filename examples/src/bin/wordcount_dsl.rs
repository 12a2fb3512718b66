//! WordCount in the typed DSL on the embedded cluster: `wordcount_dsl -parallelism 2 -runseconds 30`.
//! Logs a word's count at every millionth occurrence.

use clap::Parser;
use gearpump_examples::{RunArgs, run_example, wordcount_dsl};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Lines → split → count per word, written as one typed pipeline.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Tasks per operator.
    #[arg(long, default_value_t = 1)]
    parallelism: u32,
    /// Stop after this many rounds of the text (default: run forever).
    #[arg(long)]
    rounds: Option<u64>,
    #[command(flatten)]
    run: RunArgs,
}

fn main() -> std::process::ExitCode {
    gearpump_examples::main_with(run)
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse_from(gearpump::cli::normalize_args(std::env::args()));
    run_example(
        wordcount_dsl::application(args.rounds, args.parallelism, None, gearpump::UserConfig::empty())?,
        &args.run,
    )
}
