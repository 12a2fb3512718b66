//! The [`Task`] trait and the [`TaskContext`] the runtime hands it.

use gearpump_core::{AppId, Message, TaskId, Timestamp, UserConfig};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The time a task starts from: the application's start clock (its recovery point). Sources
/// replay from it; other tasks may use it to load state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartTime(pub Timestamp);

/// A handle to a timer set with [`TaskContext::schedule`] or [`TaskContext::schedule_once`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerId(pub u64);

/// An error raised by a task. The runtime records it against the task and the application.
///
/// Anything that converts into `Box<dyn Error + Send + Sync>` (any error type, a `String`, a
/// `&str`) converts into a `TaskError`, so `?` works in task code.
pub struct TaskError {
    inner: Box<dyn std::error::Error + Send + Sync>,
}

impl TaskError {
    /// A task error with this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        TaskError { inner: message.to_string().into() }
    }
}

impl<E: Into<Box<dyn std::error::Error + Send + Sync>>> From<E> for TaskError {
    fn from(e: E) -> Self {
        TaskError { inner: e.into() }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)?;
        let mut source = self.inner.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskError({self})")
    }
}

/// What task callbacks return.
pub type TaskResult = Result<(), TaskError>;

/// A streaming task: the unit of parallelism. Each of a processor's tasks is one instance.
///
/// The runtime calls one method at a time; a task never needs locks for its own state. Every
/// method but [`Task::on_next`] has a default that does nothing.
pub trait Task: Send + 'static {
    /// Called once before any message, with the time to start from.
    fn on_start(&mut self, ctx: &mut TaskContext<'_>, start: StartTime) -> TaskResult {
        let _ = (ctx, start);
        Ok(())
    }

    /// Called for every message from upstream tasks and from this task itself.
    fn on_next(&mut self, ctx: &mut TaskContext<'_>, msg: Message) -> TaskResult;

    /// Called when a timer set with [`TaskContext::schedule`] or
    /// [`TaskContext::schedule_once`] fires.
    fn on_timer(&mut self, ctx: &mut TaskContext<'_>, timer: TimerId) -> TaskResult {
        let _ = (ctx, timer);
        Ok(())
    }

    /// Called when the min clock of the upstream processors moves forward: every message older
    /// than `watermark` has been delivered to this task.
    fn on_watermark_progress(&mut self, ctx: &mut TaskContext<'_>, watermark: Timestamp) -> TaskResult {
        let _ = (ctx, watermark);
        Ok(())
    }

    /// Called when the checkpoint at `time` is complete: every stateful task has persisted its
    /// state there and the application's min clock has passed it (like Flink's
    /// `notifyCheckpointComplete`). A transactional task ([`crate::Processor::transactional`],
    /// an exactly-once sink) commits here what it wrote for messages older than `time` and then
    /// reports its own checkpoint at `time`; only then may the application restart from
    /// `time`. A source may record its read position for `time`. Not called for applications
    /// without stateful processors.
    fn on_checkpoint_complete(&mut self, ctx: &mut TaskContext<'_>, time: Timestamp) -> TaskResult {
        let _ = (ctx, time);
        Ok(())
    }

    /// The lowest timestamp this task may still emit on its own account, beyond its inputs: a
    /// source's watermark, or the oldest timestamp a stateful task still holds in state.
    ///
    /// `None` (the default) lets the runtime decide: a task with upstream processors is bounded
    /// by them; a task without (a source) by the largest timestamp it has output so far, which
    /// assumes roughly increasing timestamps, as the guide does. A source that has ended returns
    /// `Some(Timestamp::MAX)`; when every source has, the application drains and succeeds.
    fn watermark(&self) -> Option<Timestamp> {
        None
    }

    /// Called once when the task stops (application finished, killed, or the task is
    /// restarted). Cancel resources here.
    fn on_stop(&mut self, ctx: &mut TaskContext<'_>) {
        let _ = ctx;
    }
}

/// What a task knows about itself; given to task factories and through [`TaskContext`].
#[derive(Clone, Debug)]
pub struct TaskInfo {
    /// This task's id.
    pub task_id: TaskId,
    /// How many tasks the processor has.
    pub parallelism: u32,
    /// The application's id.
    pub app_id: AppId,
    /// The application's name.
    pub app_name: String,
    /// The processor's description.
    pub description: String,
    /// The application config with the processor's task config layered on top.
    pub config: Arc<UserConfig>,
    /// Whose state the tasks take when they start at the processor's birth (see
    /// [`crate::Predecessor`]).
    pub predecessor: Option<crate::Predecessor>,
}

/// What the runtime provides behind a [`TaskContext`]. Implemented by the executor; tests of
/// task logic may implement it with a recorder.
pub trait TaskIo {
    /// Sends `msg` downstream through every outgoing edge's partitioner.
    fn output(&mut self, msg: Message);
    /// Queues `msg` for this task's own `on_next`, after what it is doing now.
    fn send_self(&mut self, msg: Message);
    /// Sets a timer firing after `delay`, then every `interval` if given.
    fn schedule(&mut self, delay: Duration, interval: Option<Duration>) -> TimerId;
    /// Cancels a timer; unknown or fired one-shot timers are ignored.
    fn cancel(&mut self, timer: TimerId);
    /// The min clock of the upstream processors; see [`TaskContext::upstream_min_clock`].
    fn upstream_min_clock(&self) -> Timestamp;
    /// Whether a downstream task has the maximum of un-acked messages; see
    /// [`TaskContext::is_backpressured`].
    fn is_backpressured(&self) -> bool;
    /// Where checkpoints are kept; see [`TaskContext::state_store`]. None by default (a test
    /// recorder, a runtime without one).
    fn state_store(&self) -> Option<&dyn crate::StateStore> {
        None
    }
}

/// A task's window on the runtime, passed to every [`Task`] callback.
pub struct TaskContext<'a> {
    info: &'a TaskInfo,
    io: &'a mut dyn TaskIo,
}

impl<'a> TaskContext<'a> {
    /// Creates a context; called by the runtime (or a test harness).
    pub fn new(info: &'a TaskInfo, io: &'a mut dyn TaskIo) -> Self {
        TaskContext { info, io }
    }

    /// Sends a message downstream. Each outgoing edge's partitioner picks the target task(s).
    #[inline]
    pub fn output(&mut self, msg: Message) {
        self.io.output(msg);
    }

    /// Sends a message to this task itself; it arrives at `on_next` after the current callback.
    /// This is how a task without upstream keeps itself going, as the guide's `Split` does.
    pub fn send_self(&mut self, msg: Message) {
        self.io.send_self(msg);
    }

    /// Calls [`Task::on_timer`] after `initial_delay` and then every `interval`, until
    /// cancelled with [`TaskContext::cancel`].
    pub fn schedule(&mut self, initial_delay: Duration, interval: Duration) -> TimerId {
        self.io.schedule(initial_delay, Some(interval))
    }

    /// Calls [`Task::on_timer`] once after `delay`.
    pub fn schedule_once(&mut self, delay: Duration) -> TimerId {
        self.io.schedule(delay, None)
    }

    /// Cancels a timer.
    pub fn cancel(&mut self, timer: TimerId) {
        self.io.cancel(timer);
    }

    /// The min clock of this task's upstream processors: every message older than it has been
    /// delivered to this task. A source has no upstream; for it this is its start time.
    pub fn upstream_min_clock(&self) -> Timestamp {
        self.io.upstream_min_clock()
    }

    /// Whether a downstream task has the maximum number of un-acked messages
    /// (`max-pending-message-count-per-connection`). The runtime takes no more input while it
    /// is so; a task that emits many messages per call (a source reading a batch) should stop
    /// early and message itself to continue, so the window is never overrun.
    #[inline]
    pub fn is_backpressured(&self) -> bool {
        self.io.is_backpressured()
    }

    /// Where this task's checkpoints are kept (used by [`crate::Persistent`]); `None` where the
    /// runtime has none.
    pub fn state_store(&self) -> Option<&dyn crate::StateStore> {
        self.io.state_store()
    }

    /// This task's id.
    pub fn task_id(&self) -> TaskId {
        self.info.task_id
    }

    /// The number of tasks of this task's processor.
    pub fn parallelism(&self) -> u32 {
        self.info.parallelism
    }

    /// The application's name.
    pub fn app_name(&self) -> &str {
        &self.info.app_name
    }

    /// The application's id.
    pub fn app_id(&self) -> AppId {
        self.info.app_id
    }

    /// The user config: the application's, with the processor's task config on top.
    pub fn config(&self) -> &UserConfig {
        &self.info.config
    }

    /// Everything known about this task.
    pub fn info(&self) -> &TaskInfo {
        self.info
    }
}

/// Builds one task instance for the task described by [`TaskInfo`].
pub type TaskFactory = Arc<dyn Fn(&TaskInfo) -> Result<Box<dyn Task>, TaskError> + Send + Sync>;

/// A task type that can build itself: `Processor::new::<T>(parallelism)` names it by its Rust
/// type path, a stable name the REST API and dynamic DAG changes can refer to.
pub trait CreateTask: Task + Sized {
    /// Creates the task instance for `info`.
    fn create(info: &TaskInfo) -> Result<Self, TaskError>;
}
