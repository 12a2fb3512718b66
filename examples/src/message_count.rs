//! MessageCount, the guide's exactly-once example: a replayable source of numbered messages →
//! hash → a persistent count (checkpointed every `state.checkpoint.interval.ms`). Whatever
//! fails on the way (a task, an executor process), the final count is the number of messages
//! produced, each counted once.
//!
//! By default the source is the deterministic [`NumberSource`], which replays from any
//! timestamp. With [`KafkaOptions`] it reads the numbers (decimal text) from a Kafka topic, as
//! the guide's original did, and, given a sink topic, writes `<number> <count task> <count>`
//! for every number there, exactly once (or at least once) across failures.

use gearpump::prelude::*;
use gearpump::{NumberSource, api::TaskError};
use gearpump_connectors::kafka::{KafkaSink, KafkaSource};

/// Numbers at which a count task fails, once in each process: see [`Count::FAIL_AT`].
static FAILED: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());

/// The numbers at which a count task of this process failed as [`Count::FAIL_AT`] asked, so
/// far: a test checks that the failures it injected really happened.
pub fn failed_at() -> Vec<u64> {
    FAILED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

/// Counts messages and sums their values, exactly once; with an output directory, writes
/// `count-<index>.txt` (`<count> <sum>`) when it stops.
#[derive(Default)]
pub struct Count {
    output: Option<std::path::PathBuf>,
    last: (u64, u64),
    /// Whether each number goes on downstream as `<number> <task> <count so far>`.
    emit: bool,
    fail_at: Vec<u64>,
    stop_delay: std::time::Duration,
}

impl Count {
    /// Config key: a directory for the final counts.
    pub const OUTPUT: &'static str = "count.output";
    /// Config key: comma-separated numbers at which the task counting them fails, once per
    /// process (to watch a recovery).
    pub const FAIL_AT: &'static str = "count.fail.at";
    /// Config key: milliseconds each count task waits in `on_stop` before it writes its file,
    /// as a sink flushing to slow storage would (to watch an application end gracefully).
    pub const STOP_DELAY: &'static str = "count.stop.delay.ms";
}

impl PersistentTask for Count {
    type State = (u64, u64);

    fn on_start(&mut self, ctx: &mut TaskContext<'_>, _: StartTime, state: &PersistentState<(u64, u64)>) -> TaskResult {
        self.output = ctx.config().get_str(Self::OUTPUT).map(std::path::PathBuf::from);
        self.fail_at = ctx
            .config()
            .get_str(Self::FAIL_AT)
            .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
            .unwrap_or_default();
        let delay: Option<u64> = ctx.config().get(Self::STOP_DELAY).map_err(|e| e.to_string())?;
        self.stop_delay = std::time::Duration::from_millis(delay.unwrap_or(0));
        self.last = state.get();
        tracing::info!(task = %ctx.task_id(), count = self.last.0, "Count restored its state.");
        // After a dynamic DAG change to fewer count tasks, the files of the tasks that are no
        // more would add to the total: the count is in this processor's tasks now.
        if let (Some(dir), 0) = (&self.output, ctx.task_id().index) {
            let mine = ctx.info().parallelism;
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let index = name
                    .strip_prefix("count-")
                    .and_then(|n| n.strip_suffix(".txt"))
                    .and_then(|n| n.parse::<u32>().ok());
                if index.is_some_and(|i| i >= mine) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut TaskContext<'_>,
        msg: Message,
        state: &mut PersistentState<(u64, u64)>,
    ) -> TaskResult {
        let n = match msg.get::<u64>() {
            Some(n) => *n,
            // From Kafka: the number as text.
            None => msg
                .get::<String>()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| format!("Count expects numbers, got {:?}", msg.value()))?,
        };
        if self.fail_at.contains(&n) {
            let mut failed = FAILED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !failed.contains(&n) {
                failed.push(n);
                return Err(format!("failing at {n} as {} asks", Self::FAIL_AT).into());
            }
        }
        state.update(msg.timestamp(), (1, n));
        self.last.0 += 1;
        self.last.1 += n;
        if self.emit {
            ctx.output(Message::new(format!("{n} {} {}", ctx.task_id().index, self.last.0), msg.timestamp()));
        }
        Ok(())
    }

    fn on_stop(&mut self, ctx: &mut TaskContext<'_>) {
        let Some(dir) = &self.output else { return };
        std::thread::sleep(self.stop_delay);
        let path = dir.join(format!("count-{}.txt", ctx.task_id().index));
        // Written whole, then renamed: a reader never sees half a file.
        let tmp = path.with_extension("tmp");
        let line = format!("{} {}", self.last.0, self.last.1);
        if let Err(e) = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, line))
            .and_then(|()| std::fs::rename(&tmp, &path))
        {
            tracing::error!(path = %path.display(), error = %e, "Cannot write the count.");
        }
    }
}

/// How a MessageCount run is set up.
#[derive(Clone, Debug)]
pub struct Options {
    /// Messages in all (numbers `1..=messages`).
    pub messages: u64,
    /// Messages per millisecond of application time.
    pub per_ms: u64,
    /// At most this many messages per second of wall-clock time (0: as fast as possible).
    pub pace: u64,
    /// Count tasks.
    pub count_tasks: u32,
    /// Checkpoint interval, ms of application time.
    pub checkpoint_interval_ms: i64,
    /// Where the counts are written when the tasks stop.
    pub output: Option<String>,
    /// Where checkpoints are kept (default `checkpoints`).
    pub checkpoint_dir: Option<String>,
    /// More application config (layered on top of what the options set).
    pub config: UserConfig,
    /// Read the numbers from Kafka (and write results there) instead of counting
    /// [`NumberSource`]'s.
    pub kafka: Option<KafkaOptions>,
}

/// MessageCount's Kafka ends.
#[derive(Clone, Debug)]
pub struct KafkaOptions {
    /// The brokers, `host:port,…`.
    pub brokers: String,
    /// The topic of numbers (decimal text; the record's timestamp is the message's).
    pub source_topic: String,
    /// Where `<number> <count task> <count>` goes for every number, if anywhere.
    pub sink_topic: Option<String>,
    /// Source tasks.
    pub source_tasks: u32,
    /// Sink tasks.
    pub sink_tasks: u32,
    /// Exactly-once (transactional) sink, else at-least-once.
    pub exactly_once: bool,
}

/// The MessageCount application.
pub fn application(o: &Options) -> Result<StreamApplication, gearpump::AppError> {
    let (messages, per_ms, pace) = (o.messages, o.per_ms, o.pace);
    let emit = o.kafka.as_ref().is_some_and(|k| k.sink_topic.is_some());
    let source = match &o.kafka {
        Some(k) => {
            let (brokers, topic) = (k.brokers.clone(), k.source_topic.clone());
            Processor::source("gearpump_examples::message_count::KafkaNumbers", k.source_tasks, move |_| {
                Ok::<_, TaskError>(KafkaSource::new(brokers.clone(), topic.clone()).utf8())
            })
        }
        None => Processor::source("gearpump_examples::message_count::Numbers", 1, move |_| {
            let numbers = NumberSource::new(messages, per_ms);
            Ok::<_, TaskError>(if pace > 0 { numbers.paced(pace) } else { numbers })
        }),
    };
    let count = Processor::persistent("gearpump_examples::message_count::Count", o.count_tasks, move |_| {
        Ok(Count { emit, ..Count::default() })
    });
    let mut config = UserConfig::empty().with(gearpump::api::state::CHECKPOINT_INTERVAL_KEY, o.checkpoint_interval_ms);
    if let Some(dir) = &o.output {
        config.set(Count::OUTPUT, dir);
    }
    if let Some(dir) = &o.checkpoint_dir {
        config.set("state.checkpoint.store.rootpath", dir);
    }
    let config = config.merge(&o.config);
    let mut app = StreamApplication::builder("messageCount").edge(&source, PartitionerSpec::hash(), &count);
    if let Some(k) = o.kafka.as_ref().filter(|k| k.sink_topic.is_some()) {
        let (brokers, topic) = (k.brokers.clone(), k.sink_topic.clone().unwrap_or_default());
        let sink = if k.exactly_once {
            Processor::sink("gearpump_examples::message_count::ExactlyOnceSink", k.sink_tasks, move |_| {
                Ok(KafkaSink::new(brokers.clone(), topic.clone()).exactly_once())
            })
        } else {
            Processor::sink("gearpump_examples::message_count::Sink", k.sink_tasks, move |_| {
                Ok(KafkaSink::new(brokers.clone(), topic.clone()))
            })
        };
        // By the number: every replay sends a result to the same sink task, which the
        // exactly-once sink needs (round robin would deal them out anew; the build refuses it).
        let by_number = PartitionerSpec::group_by("number", |m: &Message| {
            m.get::<String>().and_then(|s| s.split(' ').next().map(str::to_string))
        });
        app = app.edge(&count, by_number, &sink);
    }
    app.config(config).build()
}
