//! WordCount on the embedded cluster: `wordcount -split 2 -sum 2 -runseconds 30`.

use clap::Parser;
use gearpump::PartitionerSpec;
use gearpump_examples::{RunArgs, run_example, wordcount};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Split cycles a fixed text into words; Sum counts them and logs throughput every 5 s.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// How many Split tasks.
    #[arg(long, default_value_t = 1)]
    split: u32,
    /// How many Sum tasks.
    #[arg(long, default_value_t = 1)]
    sum: u32,
    /// Stop after this many rounds of the text (default: run forever).
    #[arg(long)]
    rounds: Option<u64>,
    /// A directory where each Sum task writes its counts when it stops.
    #[arg(long)]
    output: Option<String>,
    #[command(flatten)]
    run: RunArgs,
}

fn main() -> std::process::ExitCode {
    gearpump_examples::main_with(run)
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse_from(gearpump::cli::normalize_args(std::env::args()));
    let mut config = gearpump::UserConfig::empty();
    if let Some(dir) = &args.output {
        config.set(wordcount::Sum::OUTPUT, dir);
    }
    let app = wordcount::application_with(args.split, args.sum, PartitionerSpec::hash(), args.rounds, None, config)?;
    run_example(app, &args.run)
}
