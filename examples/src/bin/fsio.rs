//! FSIO: SequenceFiles in, SequenceFiles out, exactly once, on any store:
//! `fsio -input hdfs://namenode:8020/in -output hdfs://namenode:8020/out -source 1 -sink 2`.

use clap::Parser;
use gearpump_connectors::files::seqfile::Compression;
use gearpump_examples::{RunArgs, fsio, run_example};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// (LongWritable, Text) SequenceFiles → hash → SequenceFiles, each record exactly once.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The SequenceFiles read: a directory, a glob (`…/*.seq`) or a file; a local path or an
    /// hdfs://, webhdfs:// or s3:// URL.
    #[arg(long)]
    input: String,
    /// The directory the part files go to (a path or URL, as -input).
    #[arg(long)]
    output: String,
    /// Source tasks.
    #[arg(long, default_value_t = 1)]
    source: u32,
    /// Sink tasks.
    #[arg(long, default_value_t = 1)]
    sink: u32,
    /// At most this many records per second per source task (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    pace: u64,
    /// Compression of the files written: none, record or block.
    #[arg(long, default_value = "none", value_parser = ["none", "record", "block"])]
    compression: String,
    /// Records (ms of application time) per group of part files; a group is committed when
    /// the checkpoint at its end completes.
    #[arg(long = "rollTime", default_value_t = 100_000)]
    roll_time: i64,
    /// Checkpoint interval in ms of application time.
    #[arg(long = "checkpointInterval", default_value_t = 1000)]
    checkpoint_interval: i64,
    /// Where checkpoints are kept (a directory or a store URL).
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
    let compression = match a.compression.as_str() {
        "record" => Compression::Record,
        "block" => Compression::Block,
        _ => Compression::None,
    };
    let app = fsio::application(&fsio::Options {
        input: a.input,
        output: a.output,
        source_tasks: a.source,
        sink_tasks: a.sink,
        pace: a.pace,
        compression,
        roll_time: a.roll_time,
        checkpoint_interval_ms: a.checkpoint_interval,
        checkpoint_dir: a.checkpoint_dir,
    })?;
    run_example(app, &a.run)
}
