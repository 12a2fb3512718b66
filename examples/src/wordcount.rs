//! WordCount, as in the guide: Split → hash → Sum.

use gearpump::prelude::*;
use gearpump::{Value, api::TaskError};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The text Split cycles through.
pub const TEXT_TO_SPLIT: &str = "the quick brown fox jumps over the lazy dog\n\
    gearpump is a lightweight real time big data streaming engine\n\
    every message carries a timestamp and the min clock tells what is done\n\
    flow control keeps every queue bounded from the sink back to the source";

/// The count of every word in `text` times `rounds`.
pub fn expected_counts(text: &str, rounds: u64) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for word in text.split_whitespace() {
        *counts.entry(word.to_string()).or_insert(0) += rounds;
    }
    counts
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Continue;

/// Splits the text into words and outputs them, then messages itself to go on. Without a round
/// limit it cycles forever, as the guide's Split does; with one, task `i` of `n` emits the
/// rounds `r` with `r % n == i`, then ends (its watermark becomes `MAX`).
pub struct Split {
    words: Vec<Arc<dyn Value>>,
    rounds_left: Option<u64>,
}

impl Split {
    /// Config key: the text to split (default [`TEXT_TO_SPLIT`]).
    pub const TEXT: &'static str = "split.text";
    /// Config key: how many rounds of the text in all (default: forever).
    pub const ROUNDS: &'static str = "split.rounds";

    /// A Split task for `info`, configured from its user config.
    pub fn new(info: &TaskInfo) -> Result<Self, TaskError> {
        let text = info.config.get_str(Self::TEXT).unwrap_or(TEXT_TO_SPLIT);
        // The words are allocated once and shared by every message that carries them.
        let words = text.split_whitespace().map(|w| Arc::new(w.to_string()) as Arc<dyn Value>).collect();
        let rounds_left = info.config.get::<u64>(Self::ROUNDS)?.map(|total| {
            let (n, i) = (u64::from(info.parallelism), u64::from(info.task_id.index));
            total / n + u64::from(i < total % n)
        });
        Ok(Split { words, rounds_left })
    }
}

impl Task for Split {
    fn on_start(&mut self, ctx: &mut TaskContext<'_>, _start: StartTime) -> TaskResult {
        ctx.send_self(Message::new(Continue, Timestamp::now()));
        Ok(())
    }

    fn on_next(&mut self, ctx: &mut TaskContext<'_>, _msg: Message) -> TaskResult {
        if let Some(left) = &mut self.rounds_left {
            if *left == 0 {
                return Ok(());
            }
            *left -= 1;
        }
        let now = Timestamp::now();
        for word in &self.words {
            ctx.output(Message::from_shared(word.clone(), now));
        }
        ctx.send_self(Message::new(Continue, now));
        Ok(())
    }

    fn watermark(&self) -> Option<Timestamp> {
        (self.rounds_left == Some(0)).then_some(Timestamp::MAX)
    }
}

/// Shared word counts that Sum tasks add theirs to when they stop (for tests and reports).
pub type CountSink = Arc<Mutex<HashMap<String, u64>>>;

/// Counts words; logs its throughput every 5 seconds.
pub struct Sum {
    counts: HashMap<String, u64>,
    word_count: u64,
    snapshot_count: u64,
    snapshot_time: Instant,
    report_every: Duration,
    timer: Option<TimerId>,
    sink: Option<CountSink>,
    output: Option<std::path::PathBuf>,
}

impl Sum {
    /// A Sum that reports throughput every `report_every`.
    pub fn new(report_every: Duration) -> Self {
        Sum {
            counts: HashMap::new(),
            word_count: 0,
            snapshot_count: 0,
            snapshot_time: Instant::now(),
            report_every,
            timer: None,
            sink: None,
            output: None,
        }
    }

    /// Config key: a directory where each Sum task writes its counts (`sum-<index>.txt`, one
    /// `word count` line each) when it stops.
    pub const OUTPUT: &'static str = "sum.output";

    /// Adds this task's counts to `sink` when it stops.
    #[must_use]
    pub fn reporting_to(mut self, sink: CountSink) -> Self {
        self.sink = Some(sink);
        self
    }
}

impl Task for Sum {
    fn on_start(&mut self, ctx: &mut TaskContext<'_>, _start: StartTime) -> TaskResult {
        self.output = ctx.config().get_str(Self::OUTPUT).map(std::path::PathBuf::from);
        self.snapshot_time = Instant::now();
        self.timer = Some(ctx.schedule(self.report_every, self.report_every));
        Ok(())
    }

    fn on_next(&mut self, _ctx: &mut TaskContext<'_>, msg: Message) -> TaskResult {
        let word: &String = msg.get().ok_or_else(|| format!("Sum expects words, got {:?}", msg.value()))?;
        match self.counts.get_mut(word) {
            Some(n) => *n += 1,
            None => {
                self.counts.insert(word.clone(), 1);
            }
        }
        self.word_count += 1;
        Ok(())
    }

    fn on_timer(&mut self, ctx: &mut TaskContext<'_>, _timer: TimerId) -> TaskResult {
        let now = Instant::now();
        let secs = now.duration_since(self.snapshot_time).as_secs_f64();
        let words = self.word_count - self.snapshot_count;
        tracing::info!(task = %ctx.task_id(), "Task {} Throughput: ({words}, {secs:.0}) (words, second)", ctx.task_id());
        self.snapshot_count = self.word_count;
        self.snapshot_time = now;
        Ok(())
    }

    fn on_stop(&mut self, ctx: &mut TaskContext<'_>) {
        if let Some(t) = self.timer.take() {
            ctx.cancel(t);
        }
        if let Some(dir) = &self.output {
            let mut lines: Vec<String> = self.counts.iter().map(|(w, n)| format!("{w} {n}")).collect();
            lines.sort();
            let path = dir.join(format!("sum-{}.txt", ctx.task_id().index));
            // Written whole, then renamed: a reader never sees half a file.
            let tmp = path.with_extension("tmp");
            let written = std::fs::write(&tmp, lines.join("\n")).and_then(|()| std::fs::rename(&tmp, &path));
            if let Err(e) = written {
                tracing::error!(path = %path.display(), error = %e, "Cannot write the counts.");
            }
        }
        if let Some(sink) = &self.sink {
            let mut total = sink.lock();
            for (w, n) in self.counts.drain() {
                *total.entry(w).or_insert(0) += n;
            }
        }
    }
}

/// The WordCount application with `split` Split tasks and `sum` Sum tasks joined by
/// `partitioner`. `rounds` bounds the text rounds (None: forever); `sink` collects the counts.
pub fn application(
    split: u32,
    sum: u32,
    partitioner: PartitionerSpec,
    rounds: Option<u64>,
    sink: Option<CountSink>,
) -> Result<StreamApplication, gearpump::AppError> {
    application_with(split, sum, partitioner, rounds, sink, UserConfig::empty())
}

/// [`application`] with extra application config (such as [`Sum::OUTPUT`]).
pub fn application_with(
    split: u32,
    sum: u32,
    partitioner: PartitionerSpec,
    rounds: Option<u64>,
    sink: Option<CountSink>,
    config: UserConfig,
) -> Result<StreamApplication, gearpump::AppError> {
    let split_p = Processor::from_fn(std::any::type_name::<Split>(), split, Split::new).description("Split");
    let sum_p = Processor::from_fn(std::any::type_name::<Sum>(), sum, move |_| {
        let s = Sum::new(Duration::from_secs(5));
        Ok(match &sink {
            Some(sink) => s.reporting_to(sink.clone()),
            None => s,
        })
    })
    .description("Sum");
    let mut config = config;
    if let Some(r) = rounds {
        config.set(Split::ROUNDS, r);
    }
    StreamApplication::builder("wordCount")
        .config(config)
        .edge(&split_p, partitioner, &sum_p)
        // A system-level codec the cluster may switch on for words:
        // gearpump.serializers { "alloc::string::String" = "raw_utf8" }.
        .named_codec::<String, _, _>(
            "raw_utf8",
            |word, out| {
                out.extend_from_slice(word.as_bytes());
                Ok(())
            },
            |bytes| {
                String::from_utf8(bytes.to_vec()).map_err(|e| gearpump::CodecError::Decode {
                    type_name: "alloc::string::String",
                    reason: e.to_string(),
                })
            },
        )
        .build()
}
