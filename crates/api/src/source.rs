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

    /// How long the source task waits before reading again after [`DataSource::read`] found
    /// nothing (default 10 ms). A source fed by a busy client (Kafka) asks for less while
    /// records keep coming.
    fn poll_interval(&self) -> Duration {
        Duration::from_millis(10)
    }

    /// The checkpoint at `time` is complete (see [`Task::on_checkpoint_complete`]): a source
    /// that stores its read position with the application's checkpoints records it here.
    fn on_checkpoint_complete(&mut self, ctx: &mut TaskContext<'_>, time: Timestamp) -> TaskResult {
        let _ = (ctx, time);
        Ok(())
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

    /// Makes what was written durable; called every [`SinkTask::FLUSH_INTERVAL_KEY`]
    /// milliseconds.
    fn flush(&mut self) -> TaskResult {
        Ok(())
    }

    /// The oldest timestamp written but not yet durable (`None`: nothing is pending). The
    /// application's min clock does not pass it, so a recovery replays what a crash could lose:
    /// at-least-once delivery into the sink.
    fn watermark(&self) -> Option<Timestamp> {
        None
    }

    /// Called when the upstream min clock moves to `watermark`: every message older than it
    /// has been written. An exactly-once sink makes what it holds for them durable (the first
    /// phase of its commit) before its [`DataSink::watermark`] lets the clock pass.
    fn on_watermark_progress(&mut self, ctx: &mut TaskContext<'_>, watermark: Timestamp) -> TaskResult {
        let _ = (ctx, watermark);
        Ok(())
    }

    /// The checkpoint at `time` is complete (see [`Task::on_checkpoint_complete`]): an
    /// exactly-once sink commits what it wrote for messages older than `time`, then reports its
    /// own checkpoint there (`ctx.state_store()`), which lets the application restart from it.
    fn on_checkpoint_complete(&mut self, ctx: &mut TaskContext<'_>, time: Timestamp) -> TaskResult {
        let _ = (ctx, time);
        Ok(())
    }

    /// Whether this sink commits on checkpoints (see [`DataSink::on_checkpoint_complete`]):
    /// [`crate::Processor::sink`] then makes its processor [`crate::Processor::transactional`].
    const TRANSACTIONAL: bool = false;

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
    ended: bool,
}

impl<S: DataSource> SourceTask<S> {
    /// Config key: messages read per turn (default 1000).
    pub const BATCH_KEY: &'static str = "gearpump.source.read.batch";

    /// Wraps `source`, reading 1000 messages per turn.
    pub fn new(source: S) -> Self {
        SourceTask { source, batch: 1000, ended: false }
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
            ctx.schedule_once(self.source.poll_interval());
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

    fn on_checkpoint_complete(&mut self, ctx: &mut TaskContext<'_>, time: Timestamp) -> TaskResult {
        self.source.on_checkpoint_complete(ctx, time)
    }

    fn on_stop(&mut self, _ctx: &mut TaskContext<'_>) {
        self.source.close();
    }
}

/// Runs a [`DataSink`] as a task, flushing it on a timer.
pub struct SinkTask<S> {
    sink: S,
}

impl<S: DataSink> SinkTask<S> {
    /// Config key: how often (ms) the sink is flushed (default 100).
    pub const FLUSH_INTERVAL_KEY: &'static str = "gearpump.sink.flush.interval.ms";

    /// Wraps `sink`.
    pub fn new(sink: S) -> Self {
        SinkTask { sink }
    }
}

impl<S: DataSink> Task for SinkTask<S> {
    fn on_start(&mut self, ctx: &mut TaskContext<'_>, _start: StartTime) -> TaskResult {
        let every: u64 = ctx.config().get_or(Self::FLUSH_INTERVAL_KEY, 100)?;
        self.sink.open(ctx)?;
        let every = Duration::from_millis(every.max(1));
        ctx.schedule(every, every);
        Ok(())
    }

    fn on_next(&mut self, _ctx: &mut TaskContext<'_>, msg: Message) -> TaskResult {
        self.sink.write(msg)
    }

    fn on_timer(&mut self, _ctx: &mut TaskContext<'_>, _timer: TimerId) -> TaskResult {
        self.sink.flush()
    }

    fn watermark(&self) -> Option<Timestamp> {
        self.sink.watermark()
    }

    fn on_watermark_progress(&mut self, ctx: &mut TaskContext<'_>, watermark: Timestamp) -> TaskResult {
        self.sink.on_watermark_progress(ctx, watermark)
    }

    fn on_checkpoint_complete(&mut self, ctx: &mut TaskContext<'_>, time: Timestamp) -> TaskResult {
        self.sink.on_checkpoint_complete(ctx, time)
    }

    fn on_stop(&mut self, _ctx: &mut TaskContext<'_>) {
        self.sink.close();
    }
}

/// A deterministic, replayable source: the numbers `1..=count` (as `u64`), number `n` stamped
/// `n / per_ms` (so `per_ms` numbers per millisecond of application time). Opened at a start
/// time it replays from the first number stamped at or after it, as a time-replayable source
/// must; its watermark is the time of the next number, and `MAX` once all were read.
///
/// ```
/// use gearpump_api::{DataSource, source::NumberSource};
/// let mut numbers = NumberSource::new(10, 2); // 1..=10, two per millisecond
/// assert_eq!(numbers.replay_from(gearpump_core::Timestamp(3)), 6); // 6 is stamped 3 ms
/// ```
#[derive(Clone, Debug)]
pub struct NumberSource {
    count: u64,
    per_ms: u64,
    next: u64,
    /// At most this many numbers per second of wall-clock time, from when it was opened.
    pace: Option<(u64, std::time::Instant, u64)>,
}

impl NumberSource {
    /// The numbers `1..=count`, `per_ms` (at least 1) per millisecond.
    pub fn new(count: u64, per_ms: u64) -> Self {
        NumberSource { count, per_ms: per_ms.max(1), next: 1, pace: None }
    }

    /// Emits at most `per_second` numbers per second of wall-clock time (a demo or a test
    /// that wants the run to last).
    #[must_use]
    pub fn paced(mut self, per_second: u64) -> Self {
        self.pace = Some((per_second.max(1), std::time::Instant::now(), self.next));
        self
    }

    /// The time number `n` is stamped with.
    pub fn time_of(&self, n: u64) -> Timestamp {
        Timestamp(i64::try_from(n / self.per_ms).unwrap_or(i64::MAX))
    }

    /// Seeks to the first number stamped at or after `start`; returns it.
    pub fn replay_from(&mut self, start: Timestamp) -> u64 {
        let first = u64::try_from(start.0.max(0)).unwrap_or(0).saturating_mul(self.per_ms);
        self.next = first.max(1);
        self.next
    }
}

impl DataSource for NumberSource {
    fn open(&mut self, _ctx: &mut TaskContext<'_>, start_time: Timestamp) -> TaskResult {
        let first = self.replay_from(start_time);
        if let Some((rate, _, _)) = self.pace {
            self.pace = Some((rate, std::time::Instant::now(), first));
        }
        Ok(())
    }

    fn read(&mut self) -> Result<Option<Message>, crate::TaskError> {
        if self.next > self.count {
            return Ok(None);
        }
        if let Some((rate, since, first)) = self.pace {
            let allowed = first + (since.elapsed().as_micros() as u64).saturating_mul(rate) / 1_000_000;
            if self.next > allowed {
                return Ok(None);
            }
        }
        let n = self.next;
        self.next += 1;
        Ok(Some(Message::new(n, self.time_of(n))))
    }

    fn watermark(&self) -> Option<Timestamp> {
        Some(if self.next > self.count { Timestamp::MAX } else { self.time_of(self.next) })
    }
}

/// Drops messages stamped before a start time: for sources that can only seek approximately
/// (to an offset near a time), so that a replay from the start clock emits nothing older.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeStampFilter {
    start: Timestamp,
}

impl TimeStampFilter {
    /// Keeps messages stamped at or after `start`.
    pub fn new(start: Timestamp) -> Self {
        TimeStampFilter { start }
    }

    /// The start time.
    pub fn start(&self) -> Timestamp {
        self.start
    }

    /// `msg` if it is not older than the start time.
    pub fn filter(&self, msg: Message) -> Option<Message> {
        (msg.timestamp() >= self.start).then_some(msg)
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
        let p = crate::Processor::from_fn(task_type, parallelism, move |info| Ok(SinkTask::new(make(info)?)));
        if S::TRANSACTIONAL { p.transactional() } else { p }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_replay_from_any_time_and_end_with_the_max_watermark() {
        // (count, per_ms, start, first number read, numbers read)
        for (count, per_ms, start, first, read) in
            [(10, 1, 0, 1, 10), (10, 1, 4, 4, 7), (10, 3, 2, 6, 5), (10, 3, 99, 0, 0), (5, 1, -7, 1, 5)]
        {
            let mut s = NumberSource::new(count, per_ms);
            s.replay_from(Timestamp(start));
            let mut got = Vec::new();
            while let Some(m) = s.read().unwrap() {
                let n = *m.get::<u64>().unwrap();
                assert!(m.timestamp() >= Timestamp(start), "{n} at {:?} is older than {start}", m.timestamp());
                assert_eq!(m.timestamp(), s.time_of(n));
                got.push(n);
            }
            assert_eq!(got.first().copied().unwrap_or(0), first, "count {count} per_ms {per_ms} start {start}");
            assert_eq!(got.len(), read, "count {count} per_ms {per_ms} start {start}");
            assert_eq!(s.watermark(), Some(Timestamp::MAX));
        }
        let mut s = NumberSource::new(10, 2);
        assert_eq!(s.watermark(), Some(Timestamp(0)));
        s.read().unwrap();
        assert_eq!(s.watermark(), Some(Timestamp(1)), "2 is stamped 1 ms");
    }

    #[test]
    fn the_filter_drops_what_is_older_than_its_start() {
        let f = TimeStampFilter::new(Timestamp(10));
        assert!(f.filter(Message::new(1u64, Timestamp(9))).is_none());
        assert!(f.filter(Message::new(1u64, Timestamp(10))).is_some());
    }
}
