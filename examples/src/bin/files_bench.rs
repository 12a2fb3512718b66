//! File throughput on one store, 100-byte records by default, on the embedded cluster:
//!
//! 1. write `-records` records through the exactly-once file sink (text lines, or
//!    SequenceFiles with `-format seq`; `-sinks` tasks), timed from submission to the
//!    application's end (every part committed);
//! 2. read them back with the file source (`-sources` tasks) into a count, timed the same way.
//!
//! `files_bench -url hdfs://127.0.0.1:8020/bench -records 2000000` (or a directory, or an
//! s3:// or webhdfs:// URL). Prints one line per phase: records, seconds, records/s, MB/s.

use clap::Parser;
use gearpump::prelude::*;
use gearpump::{AppStatus, ClusterConfig, EmbeddedCluster, NumberSource};
use gearpump_connectors::files::{FileSink, FileSource};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// File sink and source throughput on one store.
#[derive(Parser)]
struct Args {
    /// Where the files go: a directory or a store URL. Emptied first.
    #[arg(long)]
    url: String,
    /// Records.
    #[arg(long, default_value_t = 2_000_000)]
    records: u64,
    /// text (100-byte lines) or seq (SequenceFiles of (i64, 90-character Text)).
    #[arg(long, default_value = "text", value_parser = ["text", "seq"])]
    format: String,
    /// Sink tasks.
    #[arg(long, default_value_t = 2)]
    sinks: u32,
    /// Source tasks.
    #[arg(long, default_value_t = 2)]
    sources: u32,
    /// Where checkpoints go (default: a temporary directory).
    #[arg(long = "checkpointDir")]
    checkpoint_dir: Option<String>,
}

struct Count(Arc<AtomicU64>);
impl Task for Count {
    fn on_next(&mut self, _: &mut TaskContext<'_>, _: Message) -> TaskResult {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A 100-byte line (99 characters and the newline) for number `n`.
fn line(msg: &Message) -> Result<String, gearpump::api::TaskError> {
    Ok(format!("{:0>99}", msg.get::<u64>().copied().unwrap_or_default()))
}

/// An (i64, Text) record of about 100 bytes for number `n`.
fn record(msg: &Message) -> Result<(i64, String), gearpump::api::TaskError> {
    let n = msg.get::<u64>().copied().unwrap_or_default();
    Ok((n as i64, format!("{n:0>90}")))
}

fn run() -> anyhow::Result<()> {
    let a = Args::parse_from(gearpump::cli::normalize_args(std::env::args()));
    let ckpt = a.checkpoint_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("gearpump-files-bench-{}", std::process::id())).display().to_string()
    });
    let config = UserConfig::empty().with("state.checkpoint.store.rootpath", ckpt.clone());
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    let client = cluster.client();
    let run_app = |app: StreamApplication| -> anyhow::Result<f64> {
        let t0 = Instant::now();
        let id = client.submit(app)?;
        let summary = client.wait(id, Duration::from_secs(3600))?;
        anyhow::ensure!(summary.status == AppStatus::Succeeded, "{summary:?}");
        Ok(t0.elapsed().as_secs_f64())
    };
    let report = |phase: &str, secs: f64, bytes: u64| {
        println!(
            "{phase:<6} {:<5} {} records in {secs:.2} s: {:.0} records/s, {:.1} MB/s",
            a.format,
            a.records,
            a.records as f64 / secs,
            bytes as f64 / secs / 1e6
        );
    };
    // 1. Write: 1000 numbers a millisecond of application time, so that a part holds 1 s of it.
    let (records, url) = (a.records, a.url.clone());
    let source = Processor::source("Numbers", 1, move |_| Ok(NumberSource::new(records, 1000)));
    let text = a.format == "text";
    let sink = if text {
        Processor::sink("Files", a.sinks, move |_| Ok(FileSink::text(url.clone(), line)))
    } else {
        Processor::sink("Files", a.sinks, move |_| Ok(FileSink::sequence_file(url.clone(), record)))
    };
    let write = StreamApplication::builder("filesWrite")
        .edge(&source, PartitionerSpec::hash(), &sink)
        .config(config.clone())
        .build()?;
    let secs = run_app(write)?;
    let listed = gearpump_storage::Files::open(&a.url)?.list("")?;
    let bytes: u64 = listed.iter().filter(|f| f.path.starts_with("part-")).map(|f| f.size).sum();
    report("write", secs, bytes);
    // 2. Read them back into a count.
    let counted = Arc::new(AtomicU64::new(0));
    let c = counted.clone();
    let url = a.url.clone();
    let read = if text {
        Processor::source("Read", a.sources, move |_| Ok(FileSource::text(format!("{url}/part-*"))))
    } else {
        Processor::source("Read", a.sources, move |_| {
            Ok(FileSource::sequence_file::<i64, String>(format!("{url}/part-*")))
        })
    };
    let count = Processor::from_fn("Count", a.sources, move |_| Ok(Count(c.clone())));
    let app =
        StreamApplication::builder("filesRead").edge(&read, PartitionerSpec::hash(), &count).config(config).build()?;
    let secs = run_app(app)?;
    anyhow::ensure!(
        counted.load(Ordering::Relaxed) == a.records,
        "read {} of {}",
        counted.load(Ordering::Relaxed),
        a.records
    );
    report("read", secs, bytes);
    cluster.shutdown();
    let _ = std::fs::remove_dir_all(&ckpt);
    Ok(())
}

fn main() -> std::process::ExitCode {
    gearpump_examples::main_with(run)
}
