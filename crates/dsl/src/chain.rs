//! The runtime side of the DSL: chained operators inside one task.
//!
//! A chain is a head (a source, or the processor's incoming edges) followed by operators that
//! call each other directly. Each operator is an [`Operator`] wrapped in a [`Link`], which owns
//! the next collector in the chain: a value goes from one operator to the next as a typed Rust
//! value, by one call, with no queue, no `Message` and no `Any` in between. Only the end of a
//! chain turns values into messages ([`Emit`]), where they leave the task through the
//! processor's outgoing edges.
//!
//! Lifecycle events (start, watermark, timers, checkpoints, stop) travel down the same links
//! as [`Control`], each operator handling it before passing it on, so a window fires before the
//! sink after it sees the watermark.

use crate::Watermarks;
use gearpump_api::state::CHECKPOINT_INTERVAL_KEY;
use gearpump_api::{DataSource, StartTime, Task, TaskContext, TaskError, TaskInfo, TaskResult, TimerId};
use gearpump_clock::CheckpointSchedule;
use gearpump_core::{Message, TaskId, Timestamp, Value};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What an operator sees of its task while it handles a value or an event.
pub struct Cx<'a, 'b> {
    /// The task's context: output, timers, config, state store.
    pub(crate) ctx: &'a mut TaskContext<'b>,
    /// The task's next checkpoint time: state changed by values stamped before it belongs to
    /// the checkpoint taken there (stateless chains: `MAX`).
    pub(crate) checkpoint: Timestamp,
}

impl<'b> Cx<'_, 'b> {
    /// The task's context.
    pub(crate) fn ctx(&mut self) -> &mut TaskContext<'b> {
        self.ctx
    }
}

/// The state a chain restores at its start: one blob per old task (one for its own
/// checkpoint; several when a dynamic DAG change rescaled the processor), each holding one part
/// per stateful operator in chain order.
pub(crate) struct Restore {
    /// The blobs: per old task, per stateful operator.
    pub(crate) blobs: Vec<Vec<Vec<u8>>>,
    /// The next stateful operator's position.
    pub(crate) next: usize,
    /// `Some((index, parts))` when the blobs are an old processor's, to be split: this task keeps
    /// the keys that the key partitioner deals to task `index` of `parts`.
    pub(crate) split: Option<(u32, u32)>,
}

impl Restore {
    /// The parts of the next stateful operator, one per old task.
    pub(crate) fn take(&mut self) -> Vec<&[u8]> {
        let i = self.next;
        self.next += 1;
        self.blobs.iter().filter_map(|b| b.get(i).map(Vec::as_slice)).collect()
    }
}

/// A lifecycle event passed down a chain.
pub(crate) enum Control<'s> {
    /// The task starts (after state is restored).
    Start(StartTime),
    /// Stateful operators take their restored state, in chain order.
    Restore(&'s mut Restore),
    /// The upstream min clock moved: every value older has arrived.
    Watermark(Timestamp),
    /// A timer fired; the operator that set it handles it.
    Timer(TimerId),
    /// The application's checkpoint at this time is complete.
    CheckpointComplete(Timestamp),
    /// Stateful operators append their state as of the checkpoint time.
    Snapshot(&'s mut Vec<Vec<u8>>),
    /// The checkpoint was saved: the checkpoint time moves on.
    Advance,
    /// The lowest time an operator may still emit or hold unsettled (a sink's pending writes).
    OwnWatermark(&'s mut Option<Timestamp>),
    /// The task stops.
    Stop,
}

/// Takes values of type `T`: the next operator of a chain, or the chain's end.
pub(crate) trait Collector<T>: Send {
    /// Handles one value stamped `time`.
    fn collect(&mut self, cx: &mut Cx<'_, '_>, value: T, time: Timestamp) -> TaskResult;
    /// Handles a lifecycle event and passes it on.
    fn control(&mut self, cx: &mut Cx<'_, '_>, event: &mut Control<'_>) -> TaskResult;
    /// Whether values given to it go nowhere (an operator may then skip making them).
    fn discards(&self) -> bool {
        false
    }
}

/// One operator of a chain: turns values of `In` into values of `Out` for the next collector.
pub(crate) trait Operator<In>: Send + 'static {
    /// What it outputs.
    type Out;
    /// Handles one value.
    fn process(
        &mut self,
        cx: &mut Cx<'_, '_>,
        value: In,
        time: Timestamp,
        out: &mut dyn Collector<Self::Out>,
    ) -> TaskResult;
    /// Handles a lifecycle event before it goes on to `out`.
    fn control(
        &mut self,
        cx: &mut Cx<'_, '_>,
        event: &mut Control<'_>,
        out: &mut dyn Collector<Self::Out>,
    ) -> TaskResult {
        let _ = (cx, event, out);
        Ok(())
    }
}

/// An operator and the rest of its chain.
pub(crate) struct Link<In, O: Operator<In>> {
    op: O,
    next: Box<dyn Collector<O::Out>>,
    _in: PhantomData<fn(In)>,
}

impl<In, O: Operator<In>> Link<In, O> {
    pub(crate) fn new(op: O, next: Box<dyn Collector<O::Out>>) -> Self {
        Link { op, next, _in: PhantomData }
    }
}

impl<In, O: Operator<In>> Collector<In> for Link<In, O> {
    #[inline]
    fn collect(&mut self, cx: &mut Cx<'_, '_>, value: In, time: Timestamp) -> TaskResult {
        self.op.process(cx, value, time, &mut *self.next)
    }

    fn control(&mut self, cx: &mut Cx<'_, '_>, event: &mut Control<'_>) -> TaskResult {
        self.op.control(cx, event, &mut *self.next)?;
        self.next.control(cx, event)
    }
}

/// The end of a chain whose values leave the task: each becomes a message sent through the
/// processor's outgoing edges.
pub(crate) struct Emit<T>(PhantomData<fn(T)>);

impl<T> Emit<T> {
    pub(crate) fn new() -> Self {
        Emit(PhantomData)
    }
}

impl<T: Value> Collector<T> for Emit<T> {
    #[inline]
    fn collect(&mut self, cx: &mut Cx<'_, '_>, value: T, time: Timestamp) -> TaskResult {
        cx.ctx.output(Message::new(value, time));
        Ok(())
    }

    fn control(&mut self, _cx: &mut Cx<'_, '_>, _event: &mut Control<'_>) -> TaskResult {
        Ok(())
    }
}

/// The end of a chain nothing consumes.
pub(crate) struct Discard;

impl<T> Collector<T> for Discard {
    #[inline]
    fn collect(&mut self, _cx: &mut Cx<'_, '_>, _value: T, _time: Timestamp) -> TaskResult {
        Ok(())
    }

    fn control(&mut self, _cx: &mut Cx<'_, '_>, _event: &mut Control<'_>) -> TaskResult {
        Ok(())
    }

    fn discards(&self) -> bool {
        true
    }
}

/// Builds one task's chain from a collector of type `T` on.
pub(crate) type CollectorFactory<T> = Arc<dyn Fn(&TaskInfo) -> Result<Box<dyn Collector<T>>, TaskError> + Send + Sync>;

/// The part of a chain task shared by every kind of head: the first collector, checkpoints of
/// the stateful operators, and the lifecycle events.
pub(crate) struct Chain<T> {
    first: Box<dyn Collector<T>>,
    stateful: bool,
    schedule: Option<CheckpointSchedule>,
}

impl<T> Chain<T> {
    pub(crate) fn new(first: Box<dyn Collector<T>>, stateful: bool) -> Self {
        Chain { first, stateful, schedule: None }
    }

    fn checkpoint_time(&self) -> Timestamp {
        self.schedule.as_ref().map_or(Timestamp::MAX, CheckpointSchedule::checkpoint_time)
    }

    fn control(&mut self, ctx: &mut TaskContext<'_>, mut event: Control<'_>) -> TaskResult {
        let checkpoint = self.checkpoint_time();
        self.first.control(&mut Cx { ctx, checkpoint }, &mut event)
    }

    /// Restores the chain's state at `start` (stateful chains) and starts its operators.
    pub(crate) fn start(&mut self, ctx: &mut TaskContext<'_>, start: StartTime) -> TaskResult {
        if self.stateful {
            let interval: i64 = ctx.config().get_or(CHECKPOINT_INTERVAL_KEY, 1000)?;
            if interval <= 0 {
                return Err(TaskError::msg(format!("{CHECKPOINT_INTERVAL_KEY} must be positive, not {interval}")));
            }
            let mut restore = load(ctx, start.0)?;
            self.control(ctx, Control::Restore(&mut restore))?;
            self.schedule = Some(CheckpointSchedule::new(interval, start.0));
        }
        self.control(ctx, Control::Start(start))
    }

    /// Passes one value stamped `time` into the chain.
    #[inline]
    pub(crate) fn push(&mut self, ctx: &mut TaskContext<'_>, value: T, time: Timestamp) -> TaskResult {
        let checkpoint = match &mut self.schedule {
            Some(s) => {
                s.on_message(time);
                s.checkpoint_time()
            }
            None => Timestamp::MAX,
        };
        self.first.collect(&mut Cx { ctx, checkpoint }, value, time)
    }

    /// The upstream min clock moved to `watermark`: takes the checkpoints that are due, then
    /// lets the operators act on it.
    pub(crate) fn watermark(&mut self, ctx: &mut TaskContext<'_>, watermark: Timestamp) -> TaskResult {
        // As in `Persistent`: the watermark may pass the checkpoint after the one due as well;
        // right after a checkpoint every value seen is older than the next time, so a second
        // checkpoint there holds the whole state. Two at most.
        for _ in 0..2 {
            let Some(s) = &mut self.schedule else { break };
            let Some(due) = s.on_watermark(watermark) else { break };
            let mut parts = Vec::new();
            let checkpoint = due;
            self.first.control(&mut Cx { ctx, checkpoint }, &mut Control::Snapshot(&mut parts))?;
            let bytes = postcard::to_allocvec(&parts)
                .map_err(|e| TaskError::msg(format!("encoding the state of task {}: {e}", ctx.task_id())))?;
            store(ctx)?.save(ctx.task_id(), due, &bytes)?;
            self.control(ctx, Control::Advance)?;
        }
        self.control(ctx, Control::Watermark(watermark))
    }

    pub(crate) fn timer(&mut self, ctx: &mut TaskContext<'_>, timer: TimerId) -> TaskResult {
        self.control(ctx, Control::Timer(timer))
    }

    pub(crate) fn checkpoint_complete(&mut self, ctx: &mut TaskContext<'_>, time: Timestamp) -> TaskResult {
        self.control(ctx, Control::CheckpointComplete(time))
    }

    pub(crate) fn stop(&mut self, ctx: &mut TaskContext<'_>) {
        if let Err(e) = self.control(ctx, Control::Stop) {
            tracing::error!(task = %ctx.task_id(), error = %e, "An operator failed to stop cleanly.");
        }
    }

    /// Asks the operators for the lowest time they hold (after any event that changed it).
    pub(crate) fn query_watermark(&mut self, ctx: &mut TaskContext<'_>) -> Result<Option<Timestamp>, TaskError> {
        let mut w = None;
        self.control(ctx, Control::OwnWatermark(&mut w))?;
        Ok(w)
    }
}

fn store<'c>(ctx: &'c TaskContext<'_>) -> Result<&'c dyn gearpump_api::StateStore, TaskError> {
    ctx.state_store().ok_or_else(|| TaskError::msg("this runtime has no checkpoint store for stateful operators"))
}

/// The state a stateful chain starts from at `start`: its own checkpoint there, or, when a
/// dynamic DAG change made its processor at `start`, its predecessor's tasks' checkpoints.
fn load(ctx: &TaskContext<'_>, start: Timestamp) -> Result<Restore, TaskError> {
    let store = store(ctx)?;
    let decode = |task: TaskId, bytes: Vec<u8>| -> Result<Vec<Vec<u8>>, TaskError> {
        postcard::from_bytes(&bytes).map_err(|e| {
            TaskError::msg(format!("the checkpoint of task {task} at {start} does not decode as its state: {e}"))
        })
    };
    let id = ctx.task_id();
    match ctx.info().predecessor.filter(|p| p.transit == start) {
        Some(p) => {
            let mut blobs = Vec::new();
            for index in 0..p.parallelism {
                let old = TaskId { processor: p.processor, index };
                if let Some(bytes) = store.load(old, start)? {
                    blobs.push(decode(old, bytes)?);
                }
            }
            Ok(Restore { blobs, next: 0, split: Some((id.index, ctx.info().parallelism)) })
        }
        None => {
            let blobs = match store.load(id, start)? {
                Some(bytes) => vec![decode(id, bytes)?],
                None => Vec::new(),
            };
            Ok(Restore { blobs, next: 0, split: None })
        }
    }
}

/// A chain fed by its processor's incoming edges: each message's value is taken out as `T`.
pub(crate) struct EdgeTask<T> {
    chain: Chain<T>,
    watermark: Option<Timestamp>,
}

impl<T> EdgeTask<T> {
    pub(crate) fn new(chain: Chain<T>) -> Self {
        EdgeTask { chain, watermark: None }
    }
}

/// Takes a message's value out as `T`, or names what it was instead.
#[inline]
pub(crate) fn value_of<T: Value + Clone>(msg: Message) -> Result<(T, Timestamp), TaskError> {
    let time = msg.timestamp();
    match msg.into_value::<T>() {
        Ok(v) => Ok((v, time)),
        Err(msg) => Err(TaskError::msg(format!(
            "expected a value of type {}, got one of type {}",
            std::any::type_name::<T>(),
            msg.value().type_name()
        ))),
    }
}

impl<T: Value + Clone> Task for EdgeTask<T> {
    fn on_start(&mut self, ctx: &mut TaskContext<'_>, start: StartTime) -> TaskResult {
        self.chain.start(ctx, start)?;
        self.watermark = self.chain.query_watermark(ctx)?;
        Ok(())
    }

    #[inline]
    fn on_next(&mut self, ctx: &mut TaskContext<'_>, msg: Message) -> TaskResult {
        let (value, time) = value_of::<T>(msg)?;
        self.chain.push(ctx, value, time)
    }

    fn on_timer(&mut self, ctx: &mut TaskContext<'_>, timer: TimerId) -> TaskResult {
        self.chain.timer(ctx, timer)?;
        self.watermark = self.chain.query_watermark(ctx)?;
        Ok(())
    }

    fn on_watermark_progress(&mut self, ctx: &mut TaskContext<'_>, watermark: Timestamp) -> TaskResult {
        self.chain.watermark(ctx, watermark)?;
        self.watermark = self.chain.query_watermark(ctx)?;
        Ok(())
    }

    fn on_checkpoint_complete(&mut self, ctx: &mut TaskContext<'_>, time: Timestamp) -> TaskResult {
        self.chain.checkpoint_complete(ctx, time)?;
        self.watermark = self.chain.query_watermark(ctx)?;
        Ok(())
    }

    fn watermark(&self) -> Option<Timestamp> {
        self.watermark
    }

    fn on_stop(&mut self, ctx: &mut TaskContext<'_>) {
        self.chain.stop(ctx);
    }
}

/// The self-message that keeps a source chain reading.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct ReadMore;

/// Config key: how many records a source chain reads per turn (default 1000), as for
/// [`gearpump_api::SourceTask`].
pub const READ_BATCH_KEY: &str = "gearpump.source.read.batch";

/// What a source chain reads from.
pub(crate) trait Head<T>: Send + 'static {
    /// Opens it at `start`.
    fn open(&mut self, ctx: &mut TaskContext<'_>, start: Timestamp) -> TaskResult;
    /// The next value and its time, if one is there now.
    fn next(&mut self) -> Result<Option<(T, Timestamp)>, TaskError>;
    /// The lowest time it may still produce; `MAX` once it has ended.
    fn watermark(&self) -> Timestamp;
    /// How long to wait after finding nothing.
    fn poll_interval(&self) -> Duration;
    /// The checkpoint at `time` is complete.
    fn checkpoint_complete(&mut self, ctx: &mut TaskContext<'_>, time: Timestamp) -> TaskResult;
    /// Closes it.
    fn close(&mut self);
}

/// A [`DataSource`] as a chain's head: its messages' values are taken out as `T`.
pub(crate) struct SourceHead<S, T> {
    pub(crate) source: S,
    /// The largest time read (the watermark when the source gives none).
    pub(crate) max_read: Timestamp,
    pub(crate) _t: PhantomData<fn() -> T>,
}

impl<S: DataSource, T: Value + Clone> Head<T> for SourceHead<S, T> {
    fn open(&mut self, ctx: &mut TaskContext<'_>, start: Timestamp) -> TaskResult {
        self.max_read = start;
        self.source.open(ctx, start)
    }

    #[inline]
    fn next(&mut self) -> Result<Option<(T, Timestamp)>, TaskError> {
        match self.source.read()? {
            Some(msg) => {
                let (v, t) = value_of::<T>(msg)?;
                self.max_read = self.max_read.max(t);
                Ok(Some((v, t)))
            }
            None => Ok(None),
        }
    }

    fn watermark(&self) -> Timestamp {
        self.source.watermark().unwrap_or(self.max_read)
    }

    fn poll_interval(&self) -> Duration {
        self.source.poll_interval()
    }

    fn checkpoint_complete(&mut self, ctx: &mut TaskContext<'_>, time: Timestamp) -> TaskResult {
        self.source.on_checkpoint_complete(ctx, time)
    }

    fn close(&mut self) {
        self.source.close();
    }
}

/// An iterator of stamped values as a chain's head (see `Pipeline::generate`). Opened at a
/// start time it skips the values stamped before it.
pub(crate) struct IterHead<I, T> {
    pub(crate) iter: Option<I>,
    /// Stamps the values instead of the times the iterator gives.
    pub(crate) assign: Option<crate::pipeline::Assigner<T>>,
    pub(crate) start: Timestamp,
    pub(crate) max_read: Timestamp,
    pub(crate) ended: bool,
}

impl<T: Send + 'static, I: Iterator<Item = (Timestamp, T)> + Send + 'static> Head<T> for IterHead<I, T> {
    fn open(&mut self, _ctx: &mut TaskContext<'_>, start: Timestamp) -> TaskResult {
        self.start = start;
        self.max_read = start;
        Ok(())
    }

    #[inline]
    fn next(&mut self) -> Result<Option<(T, Timestamp)>, TaskError> {
        let Some(iter) = &mut self.iter else { return Ok(None) };
        for (t, v) in iter.by_ref() {
            let t = match &self.assign {
                Some(assign) => assign(&v),
                None => t,
            };
            if t >= self.start {
                self.max_read = self.max_read.max(t);
                return Ok(Some((v, t)));
            }
        }
        self.ended = true;
        self.iter = None;
        Ok(None)
    }

    fn watermark(&self) -> Timestamp {
        if self.ended { Timestamp::MAX } else { self.max_read }
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(10)
    }

    fn checkpoint_complete(&mut self, _ctx: &mut TaskContext<'_>, _time: Timestamp) -> TaskResult {
        Ok(())
    }

    fn close(&mut self) {}
}

/// A chain that starts at a source: reads a batch per turn into the chain and messages itself
/// to go on (as [`gearpump_api::SourceTask`] does), stopping early when a downstream task is
/// backpressured.
pub(crate) struct SourceTask<H, T> {
    head: H,
    chain: Chain<T>,
    batch: usize,
    ended: bool,
    poll: Option<TimerId>,
    /// The source's watermark (monotone).
    watermark: Timestamp,
    held: Option<Timestamp>,
    strategy: Watermarks,
    last_record: Instant,
}

impl<T, H: Head<T>> SourceTask<H, T> {
    pub(crate) fn new(head: H, chain: Chain<T>, strategy: Watermarks) -> Self {
        SourceTask {
            head,
            chain,
            batch: 1000,
            ended: false,
            poll: None,
            watermark: Timestamp::MIN,
            held: None,
            strategy,
            last_record: Instant::now(),
        }
    }

    /// Moves the watermark as the strategy says, from the head's.
    fn update_watermark(&mut self) {
        let head = self.head.watermark();
        if head == Timestamp::MAX {
            self.watermark = Timestamp::MAX;
            self.ended = true;
            return;
        }
        let mut w = Timestamp(head.0.saturating_sub(self.strategy.out_of_orderness));
        if let Some(idle) = self.strategy.idle
            && self.last_record.elapsed() >= idle
        {
            let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
            w = w.max(Timestamp(Timestamp::now().0.saturating_sub(idle_ms)));
        }
        self.watermark = self.watermark.max(w);
    }

    fn read_some(&mut self, ctx: &mut TaskContext<'_>) -> TaskResult {
        let mut read = 0;
        while read < self.batch && !ctx.is_backpressured() {
            match self.head.next()? {
                Some((value, time)) => {
                    self.chain.push(ctx, value, time)?;
                    read += 1;
                }
                None => break,
            }
        }
        if read > 0 {
            self.last_record = Instant::now();
        }
        self.update_watermark();
        if !self.ended {
            if read == 0 {
                self.poll = Some(ctx.schedule_once(self.head.poll_interval()));
            } else {
                ctx.send_self(Message::new(ReadMore, Timestamp::MIN));
            }
        }
        Ok(())
    }

    fn refresh(&mut self, ctx: &mut TaskContext<'_>) -> TaskResult {
        self.held = self.chain.query_watermark(ctx)?;
        Ok(())
    }
}

impl<T: Send + 'static, H: Head<T>> Task for SourceTask<H, T> {
    fn on_start(&mut self, ctx: &mut TaskContext<'_>, start: StartTime) -> TaskResult {
        self.batch = ctx.config().get_or(READ_BATCH_KEY, self.batch)?.max(1);
        self.head.open(ctx, start.0)?;
        self.watermark = start.0;
        self.last_record = Instant::now();
        self.update_watermark();
        self.chain.start(ctx, start)?;
        ctx.send_self(Message::new(ReadMore, Timestamp::MIN));
        self.refresh(ctx)
    }

    fn on_next(&mut self, ctx: &mut TaskContext<'_>, _msg: Message) -> TaskResult {
        if !self.ended {
            self.read_some(ctx)?;
            self.refresh(ctx)?;
        }
        Ok(())
    }

    fn on_timer(&mut self, ctx: &mut TaskContext<'_>, timer: TimerId) -> TaskResult {
        if self.poll == Some(timer) {
            self.poll = None;
            if !self.ended {
                self.read_some(ctx)?;
            }
        } else {
            self.chain.timer(ctx, timer)?;
        }
        self.refresh(ctx)
    }

    fn on_watermark_progress(&mut self, ctx: &mut TaskContext<'_>, watermark: Timestamp) -> TaskResult {
        self.chain.watermark(ctx, watermark)?;
        self.refresh(ctx)
    }

    fn on_checkpoint_complete(&mut self, ctx: &mut TaskContext<'_>, time: Timestamp) -> TaskResult {
        self.head.checkpoint_complete(ctx, time)?;
        self.chain.checkpoint_complete(ctx, time)?;
        self.refresh(ctx)
    }

    fn watermark(&self) -> Option<Timestamp> {
        let own = self.held.map_or(self.watermark, |h| h.min(self.watermark));
        Some(own)
    }

    fn on_stop(&mut self, ctx: &mut TaskContext<'_>) {
        self.chain.stop(ctx);
        self.head.close();
    }
}
