//! Sources and sinks: [`DataSource`] and [`DataSink`] wrapped as tasks.

use crate::task::{StartTime, Task, TaskContext, TaskResult, TimerId};
use gearpump_core::{Message, Timestamp};
use std::time::Duration;

/// A source of messages, read by a [`SourceTask`].
pub trait DataSource: Send + 'static {
    /// Opens the source to read from `start_time` (replayable sources seek to it).
    fn open(&mut self, ctx: &mut TaskContext<'_>, start_time: Timestamp) -> TaskResult;

    /// The next message, or `None` if there is none right now.
    fn read(&mut self) -> Result<Option<Message>, crate::TaskError>;

    /// The lowest timestamp the source may still produce. `Some(Timestamp::MAX)` once it has
    /// ended. `None` (the default) means "the largest timestamp read so far".
    fn watermark(&self) -> Option<Timestamp> {
        None
    }

    /// Closes the source.
    fn close(&mut self) {}
}

/// A destination of messages, written by a [`SinkTask`].
pub trait DataSink: Send + 'static {
    /// Opens the sink.
    fn open(&mut self, ctx: &mut TaskContext<'_>) -> TaskResult {
        let _ = ctx;
        Ok(())
    }

    /// Writes one message.
    fn write(&mut self, msg: Message) -> TaskResult;

    /// Closes the sink, flushing what it buffered.
    fn close(&mut self) {}
}

/// The self-message that keeps a source task reading.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct ReadMore;

/// Runs a [`DataSource`] as a task: reads up to `batch` messages per turn, outputs them, and
/// messages itself to continue; when the source has nothing, it polls again after a short delay;
/// when its watermark reaches `MAX`, it stops reading.
pub struct SourceTask<S> {
    source: S,
    batch: usize,
    poll_interval: Duration,
    ended: bool,
}

impl<S: DataSource> SourceTask<S> {
    /// Config key: messages read per turn (default 1000).
    pub const BATCH_KEY: &'static str = "gearpump.source.read.batch";

    /// Wraps `source`, reading 1000 messages per turn.
    pub fn new(source: S) -> Self {
        SourceTask { source, batch: 1000, poll_interval: Duration::from_millis(10), ended: false }
    }

    /// Sets how many messages are read per turn.
    #[must_use]
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    fn read_some(&mut self, ctx: &mut TaskContext<'_>) -> TaskResult {
        let mut read = 0;
        while read < self.batch && !ctx.is_backpressured() {
            match self.source.read()? {
                Some(msg) => {
                    ctx.output(msg);
                    read += 1;
                }
                None => break,
            }
        }
        if self.source.watermark() == Some(Timestamp::MAX) {
            self.ended = true;
        } else if read == 0 {
            ctx.schedule_once(self.poll_interval);
        } else {
            ctx.send_self(Message::new(ReadMore, Timestamp::MIN));
        }
        Ok(())
    }
}

impl<S: DataSource> Task for SourceTask<S> {
    fn on_start(&mut self, ctx: &mut TaskContext<'_>, start: StartTime) -> TaskResult {
        self.batch = ctx.config().get_or(Self::BATCH_KEY, self.batch)?.max(1);
        self.source.open(ctx, start.0)?;
        ctx.send_self(Message::new(ReadMore, Timestamp::MIN));
        Ok(())
    }

    fn on_next(&mut self, ctx: &mut TaskContext<'_>, _msg: Message) -> TaskResult {
        if self.ended { Ok(()) } else { self.read_some(ctx) }
    }

    fn on_timer(&mut self, ctx: &mut TaskContext<'_>, _timer: TimerId) -> TaskResult {
        if self.ended { Ok(()) } else { self.read_some(ctx) }
    }

    fn watermark(&self) -> Option<Timestamp> {
        if self.ended { Some(Timestamp::MAX) } else { self.source.watermark() }
    }

    fn on_stop(&mut self, _ctx: &mut TaskContext<'_>) {
        self.source.close();
    }
}

/// Runs a [`DataSink`] as a task.
pub struct SinkTask<S> {
    sink: S,
}

impl<S: DataSink> SinkTask<S> {
    /// Wraps `sink`.
    pub fn new(sink: S) -> Self {
        SinkTask { sink }
    }
}

impl<S: DataSink> Task for SinkTask<S> {
    fn on_start(&mut self, ctx: &mut TaskContext<'_>, _start: StartTime) -> TaskResult {
        self.sink.open(ctx)
    }

    fn on_next(&mut self, _ctx: &mut TaskContext<'_>, msg: Message) -> TaskResult {
        self.sink.write(msg)
    }

    fn on_stop(&mut self, _ctx: &mut TaskContext<'_>) {
        self.sink.close();
    }
}

impl crate::Processor {
    /// A source processor: each task runs the [`DataSource`] that `make` builds.
    pub fn source<S, F>(task_type: impl Into<String>, parallelism: u32, make: F) -> Self
    where
        S: DataSource,
        F: Fn(&crate::TaskInfo) -> Result<S, crate::TaskError> + Send + Sync + 'static,
    {
        crate::Processor::from_fn(task_type, parallelism, move |info| Ok(SourceTask::new(make(info)?)))
    }

    /// A sink processor: each task runs the [`DataSink`] that `make` builds.
    pub fn sink<S, F>(task_type: impl Into<String>, parallelism: u32, make: F) -> Self
    where
        S: DataSink,
        F: Fn(&crate::TaskInfo) -> Result<S, crate::TaskError> + Send + Sync + 'static,
    {
        crate::Processor::from_fn(task_type, parallelism, move |info| Ok(SinkTask::new(make(info)?)))
    }
}
