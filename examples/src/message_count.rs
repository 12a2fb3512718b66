//! MessageCount, the guide's exactly-once example: a replayable source of numbered messages →
//! hash → a persistent count (checkpointed every `state.checkpoint.interval.ms`). Whatever
//! fails on the way (a task, an executor process), the final count is the number of messages
//! produced, each counted once.
//!
//! The original read from Kafka; here the source is the deterministic [`NumberSource`], which
//! replays from any timestamp just as a Kafka source does from its offset↔time map.

use gearpump::prelude::*;
use gearpump::{NumberSource, api::TaskError};

/// Counts messages and sums their values, exactly once; with an output directory, writes
/// `count-<index>.txt` (`<count> <sum>`) when it stops.
pub struct Count {
    output: Option<std::path::PathBuf>,
    last: (u64, u64),
}

impl Count {
    /// Config key: a directory for the final counts.
    pub const OUTPUT: &'static str = "count.output";
}

impl PersistentTask for Count {
    type State = (u64, u64);

    fn on_start(&mut self, ctx: &mut TaskContext<'_>, _: StartTime, state: &PersistentState<(u64, u64)>) -> TaskResult {
        self.output = ctx.config().get_str(Self::OUTPUT).map(std::path::PathBuf::from);
        self.last = state.get();
        tracing::info!(task = %ctx.task_id(), count = self.last.0, "Count restored its state.");
        Ok(())
    }

    fn process(
        &mut self,
        _ctx: &mut TaskContext<'_>,
        msg: Message,
        state: &mut PersistentState<(u64, u64)>,
    ) -> TaskResult {
        let n = *msg.get::<u64>().ok_or_else(|| format!("Count expects numbers, got {:?}", msg.value()))?;
        state.update(msg.timestamp(), (1, n));
        self.last.0 += 1;
        self.last.1 += n;
        Ok(())
    }

    fn on_stop(&mut self, ctx: &mut TaskContext<'_>) {
        let Some(dir) = &self.output else { return };
        let path = dir.join(format!("count-{}.txt", ctx.task_id().index));
        // Written whole, then renamed: a reader never sees half a file.
        let tmp = path.with_extension("tmp");
        let line = format!("{} {}", self.last.0, self.last.1);
        if let Err(e) = std::fs::write(&tmp, line).and_then(|()| std::fs::rename(&tmp, &path)) {
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
}

/// The MessageCount application.
pub fn application(o: &Options) -> Result<StreamApplication, gearpump::AppError> {
    let (messages, per_ms, pace) = (o.messages, o.per_ms, o.pace);
    let source = Processor::source("gearpump_examples::message_count::Numbers", 1, move |_| {
        let numbers = NumberSource::new(messages, per_ms);
        Ok::<_, TaskError>(if pace > 0 { numbers.paced(pace) } else { numbers })
    });
    let count = Processor::persistent("gearpump_examples::message_count::Count", o.count_tasks, |_| {
        Ok(Count { output: None, last: (0, 0) })
    });
    let mut config = UserConfig::empty().with(gearpump::api::state::CHECKPOINT_INTERVAL_KEY, o.checkpoint_interval_ms);
    if let Some(dir) = &o.output {
        config.set(Count::OUTPUT, dir);
    }
    if let Some(dir) = &o.checkpoint_dir {
        config.set("state.checkpoint.store.rootpath", dir);
    }
    StreamApplication::builder("messageCount").edge(&source, PartitionerSpec::hash(), &count).config(config).build()
}
