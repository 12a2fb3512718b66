//! A windowed count and sum in the typed DSL, written exactly once to files: numbers `1..=n`
//! (number `i` stamped `i / per_ms` ms), keyed by `i % keys`, counted and summed per tumbling
//! window, `<key> <window start> <window end> <count> <sum>` lines written by the exactly-once
//! file sink. Across failures every window's line is in the committed files once, exact.

use gearpump::dsl::{Window, Windowed};
use gearpump::prelude::*;
use gearpump::{DslError, NumberSource, Pipeline};
use gearpump_connectors::files::FileSink;
use std::time::Duration;

/// What to count, and where the results go.
#[derive(Clone, Debug)]
pub struct Options {
    /// Numbers in all.
    pub messages: u64,
    /// Numbers per millisecond of application time.
    pub per_ms: u64,
    /// Numbers per second of wall time the source reads at most (0: as fast as it can).
    pub pace: u64,
    /// Keys (`i % keys`).
    pub keys: u64,
    /// Window length, ms.
    pub window_ms: u64,
    /// Tasks of the windowed count and of the sink.
    pub parallelism: u32,
    /// Where the files go (a directory, `hdfs://`, `s3://`, …).
    pub output: String,
    /// Where checkpoints are kept (default: the cluster's).
    pub checkpoint_dir: Option<String>,
}

/// The application.
pub fn application(o: &Options) -> Result<StreamApplication, DslError> {
    let mut config = UserConfig::empty();
    if let Some(dir) = &o.checkpoint_dir {
        config.set("state.checkpoint.store.rootpath", dir);
    }
    let p = Pipeline::new("windowCount");
    p.config(config);
    let (messages, per_ms, pace, keys) = (o.messages, o.per_ms.max(1), o.pace, o.keys.max(1));
    let output = o.output.clone();
    p.source("numbers", 1, move |_| {
        let numbers = NumberSource::new(messages, per_ms);
        Ok(if pace > 0 { numbers.paced(pace) } else { numbers })
    })
    .key_by(move |i: &u64| i % keys)
    .window(Window::tumbling(Duration::from_millis(o.window_ms)))
    .aggregate(CountAndSum)
    .parallelism(o.parallelism)
    .map(|w: Windowed<u64, (u64, u64)>| {
        format!("{} {} {} {} {}", w.key, w.window.start, w.window.end, w.value.0, w.value.1)
    })
    .name("format")
    .sink(move |_| {
        Ok(FileSink::text(output.clone(), |m| m.get::<String>().cloned().ok_or_else(|| "expected a line".into())))
    })
    .name("files");
    p.build()
}

/// Counts and sums a window's numbers.
struct CountAndSum;

impl gearpump::dsl::Aggregator<u64> for CountAndSum {
    type Acc = (u64, u64);
    type Out = (u64, u64);

    fn create(&self) -> (u64, u64) {
        (0, 0)
    }

    fn add(&self, acc: &mut (u64, u64), value: u64) {
        acc.0 += 1;
        acc.1 += value;
    }

    fn merge(&self, acc: &mut (u64, u64), other: (u64, u64)) {
        acc.0 += other.0;
        acc.1 += other.1;
    }

    fn result(&self, acc: &(u64, u64)) -> (u64, u64) {
        *acc
    }
}
