//! The word count of `gearpump_examples::words`, with the Task API or the DSL, on the embedded
//! cluster: `wordcount_bench -api dsl -words 50000000 -parallelism 2`. Prints the wall time and
//! the words per second, and checks that every word was counted.

use clap::Parser;
use gearpump::{AppStatus, ClusterConfig, EmbeddedCluster};
use gearpump_examples::words;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs one word count to its end and reports its throughput.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Which API the job is written with: task or dsl.
    #[arg(long, default_value = "dsl", value_parser = ["task", "dsl"])]
    api: String,
    /// How many words in all.
    #[arg(long, default_value_t = 50_000_000)]
    words: u64,
    /// Tasks per processor (sources, splits, counts).
    #[arg(long, default_value_t = 2)]
    parallelism: u32,
    /// Threads of the embedded cluster's task pool (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// An application setting, `NAME=VALUE` (repeatable), e.g.
    /// `-config gearpump.streaming.ack-once-every-message-count=1000`.
    #[arg(long = "config", value_name = "NAME=VALUE")]
    config: Vec<String>,
}

fn main() -> std::process::ExitCode {
    gearpump_examples::main_with(run)
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse_from(gearpump::cli::normalize_args(std::env::args()));
    // The DSL's counts are checkpointed (exactly once): into a directory of this run's own.
    let checkpoints = std::env::temp_dir().join(format!("gearpump-wordcount-bench-{}", std::process::id()));
    let mut config = gearpump::UserConfig::empty().with("state.checkpoint.store.rootpath", checkpoints.display());
    for setting in &args.config {
        let (name, value) = setting
            .split_once('=')
            .map(|(name, value)| (name.trim(), value.trim()))
            .filter(|(name, _)| !name.is_empty())
            .ok_or_else(|| anyhow::anyhow!("-config {setting:?}: write NAME=VALUE, with a setting's name"))?;
        config = config.with(name, value);
    }
    let app = match args.api.as_str() {
        "task" => words::task_api(args.words, args.parallelism, config)?,
        _ => words::dsl(args.words, args.parallelism, config)?,
    };
    let expected =
        words::lines_per_task(args.words, args.parallelism) * u64::from(args.parallelism) * words::WORDS_PER_LINE;
    let mut cluster_config = ClusterConfig::default();
    if let Some(threads) = args.threads {
        cluster_config.task_threads = usize::from(threads);
    }
    let cluster = EmbeddedCluster::start(cluster_config);
    let client = cluster.client();
    let started = Instant::now();
    let id = client.submit(app)?;
    let summary = client.wait(id, Duration::from_secs(3600))?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        summary.status == AppStatus::Succeeded,
        "the word count ended {:?}: {}",
        summary.status,
        summary.error.as_deref().unwrap_or("no error given")
    );
    let stats = client.stats(id).ok_or_else(|| anyhow::anyhow!("no statistics for application {id}"))?;
    let counted = stats.processors.last().map_or(0, |p| p.received);
    cluster.shutdown();
    let _ = std::fs::remove_dir_all(&checkpoints);
    anyhow::ensure!(counted == expected, "{counted} words counted of {expected}");
    println!(
        "api={} words={expected} parallelism={} wall={secs:.2}s throughput={:.2}M words/s",
        args.api,
        args.parallelism,
        expected as f64 / secs / 1e6
    );
    Ok(())
}
