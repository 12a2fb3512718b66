//! Exactly-once state: [`PersistentTask`], its [`PersistentState`], and the [`StateStore`] the
//! runtime keeps checkpoints in.
//!
//! A persistent task folds messages into a state that is a [`Monoid`] (a count, a sum, a map
//! of counts…). The runtime splits the state at the next checkpoint time Tc: updates from
//! messages older than Tc go to the *checkpoint state*, later ones beside it. When the
//! upstream min clock passes Tc, every message older than Tc has arrived, so the checkpoint
//! state is persisted as "the state at Tc" (the guide's List 1), and Tc moves past everything
//! seen. After a failure the application restarts from a time every stateful task has a
//! checkpoint at, each task loads it, and the sources replay from there: each message is
//! counted exactly once.
//!
//! ```
//! use gearpump_api::prelude::*;
//! use gearpump_api::state::{PersistentState, PersistentTask};
//!
//! /// Counts the messages it sees, exactly once across failures.
//! struct Count;
//! impl PersistentTask for Count {
//!     type State = u64;
//!     fn process(&mut self, _ctx: &mut TaskContext<'_>, msg: Message, state: &mut PersistentState<u64>) -> TaskResult {
//!         state.update(msg.timestamp(), 1);
//!         Ok(())
//!     }
//! }
//! let count = Processor::persistent("Count", 2, |_| Ok(Count));
//! ```
//!
//! `state.checkpoint.interval.ms` (application or task config, default 1000) sets the interval
//! in application time.

use crate::task::{StartTime, Task, TaskContext, TaskError, TaskInfo, TaskResult, TimerId};
use gearpump_clock::CheckpointSchedule;
use gearpump_core::{Message, TaskId, Timestamp};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};

/// Config key: the checkpoint interval in milliseconds of application time (default 1000).
pub const CHECKPOINT_INTERVAL_KEY: &str = "state.checkpoint.interval.ms";

/// A state that can be built up piece by piece: `zero` is [`Default`], and [`Monoid::combine`]
/// adds one piece into another (associatively). Counts, sums and maps of them are monoids.
pub trait Monoid: Default + Clone + Serialize + DeserializeOwned + Send + 'static {
    /// Adds `other` into `self`.
    fn combine(&mut self, other: Self);

    /// The part of this state that task `index` of `parts` holds once its processor is
    /// rescaled or replaced by a dynamic DAG change: each old task's state is split this way,
    /// and a new task's state is its parts combined. The default puts everything in task 0
    /// (right for a total: a count, a sum); maps keep the keys the hash partitioner deals to
    /// task `index` (a message whose value is the key goes there). Override it when messages
    /// are routed by something else.
    fn split(&self, index: u32, parts: u32) -> Self {
        let _ = parts;
        if index == 0 { self.clone() } else { Self::default() }
    }
}

/// Whether `key` belongs to task `index` of `parts`, as the hash partitioner deals it.
fn dealt_to<K: Serialize>(key: &K, index: u32, parts: u32) -> bool {
    gearpump_core::serde_hash(key) % u64::from(parts.max(1)) == u64::from(index)
}

macro_rules! sum_monoid {
    ($($t:ty),*) => {$(
        impl Monoid for $t {
            fn combine(&mut self, other: Self) {
                *self += other;
            }
        }
    )*};
}
sum_monoid!(u32, u64, i32, i64, f64, usize);

impl<K: Ord + Clone + Serialize + DeserializeOwned + Send + 'static, V: Monoid> Monoid for BTreeMap<K, V> {
    fn combine(&mut self, other: Self) {
        for (k, v) in other {
            self.entry(k).or_default().combine(v);
        }
    }

    fn split(&self, index: u32, parts: u32) -> Self {
        self.iter().filter(|(k, _)| dealt_to(*k, index, parts)).map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl<K, V> Monoid for HashMap<K, V>
where
    K: std::hash::Hash + Eq + Clone + Serialize + DeserializeOwned + Send + 'static,
    V: Monoid,
{
    fn combine(&mut self, other: Self) {
        for (k, v) in other {
            self.entry(k).or_default().combine(v);
        }
    }

    fn split(&self, index: u32, parts: u32) -> Self {
        self.iter().filter(|(k, _)| dealt_to(*k, index, parts)).map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl<A: Monoid, B: Monoid> Monoid for (A, B) {
    fn combine(&mut self, other: Self) {
        self.0.combine(other.0);
        self.1.combine(other.1);
    }

    fn split(&self, index: u32, parts: u32) -> Self {
        (self.0.split(index, parts), self.1.split(index, parts))
    }
}

/// Where the runtime keeps checkpoints: the state of a task at a time, as bytes. The runtime
/// provides it through [`TaskContext::state_store`].
pub trait StateStore: Send + Sync {
    /// The state of `task` at `time`; `Ok(None)` if the task has no checkpoint at all (a new
    /// application). A checkpoint that is missing while others exist, or that is corrupt, is an
    /// error.
    fn load(&self, task: TaskId, time: Timestamp) -> Result<Option<Vec<u8>>, TaskError>;
    /// Persists `state` as the state of `task` at `time`.
    fn save(&self, task: TaskId, time: Timestamp, state: &[u8]) -> Result<(), TaskError>;
    /// Deletes the checkpoints of `task` older than `time` (the runtime prunes those of stateful
    /// tasks itself; a task that saves positions of its own, as a source does, prunes them).
    fn prune(&self, task: TaskId, time: Timestamp) -> Result<(), TaskError> {
        let _ = (task, time);
        Ok(())
    }
}

/// The state of a [`PersistentTask`], split at the next checkpoint time.
#[derive(Clone, Debug, PartialEq)]
pub struct PersistentState<S> {
    /// Updates from messages older than `checkpoint_time`: what the next checkpoint holds.
    before: S,
    /// Updates from messages at or after it.
    after: S,
    checkpoint_time: Timestamp,
}

impl<S: Monoid> PersistentState<S> {
    /// A state starting from `initial`, split at `checkpoint_time`.
    pub fn new(initial: S, checkpoint_time: Timestamp) -> Self {
        PersistentState { before: initial, after: S::default(), checkpoint_time }
    }

    /// Adds the update `delta` caused by a message of time `time`.
    pub fn update(&mut self, time: Timestamp, delta: S) {
        if time < self.checkpoint_time { self.before.combine(delta) } else { self.after.combine(delta) }
    }

    /// The whole current state (a copy: both halves combined).
    pub fn get(&self) -> S {
        let mut all = self.before.clone();
        all.combine(self.after.clone());
        all
    }

    /// The state as of the next checkpoint time: updates from older messages only.
    pub fn checkpoint_state(&self) -> &S {
        &self.before
    }

    /// The time the state is split at.
    pub fn checkpoint_time(&self) -> Timestamp {
        self.checkpoint_time
    }

    /// The checkpoint at the split time was persisted: everything becomes checkpoint state and
    /// the split moves to `next`.
    fn advance(&mut self, next: Timestamp) {
        let after = std::mem::take(&mut self.after);
        self.before.combine(after);
        self.checkpoint_time = next;
    }
}

/// A task whose state is checkpointed, for exactly-once results. Wrap it with
/// [`crate::Processor::persistent`].
pub trait PersistentTask: Send + 'static {
    /// Its state.
    type State: Monoid;

    /// Called once the state at `start` is restored (or fresh), before any message.
    fn on_start(
        &mut self,
        ctx: &mut TaskContext<'_>,
        start: StartTime,
        state: &PersistentState<Self::State>,
    ) -> TaskResult {
        let _ = (ctx, start, state);
        Ok(())
    }

    /// Handles one message: folds it into `state` with [`PersistentState::update`] and may
    /// output messages.
    fn process(
        &mut self,
        ctx: &mut TaskContext<'_>,
        msg: Message,
        state: &mut PersistentState<Self::State>,
    ) -> TaskResult;

    /// Called after the checkpoint at `time` was persisted (an aggregation may emit its result
    /// for the closed period here).
    fn on_checkpoint(
        &mut self,
        ctx: &mut TaskContext<'_>,
        time: Timestamp,
        state: &PersistentState<Self::State>,
    ) -> TaskResult {
        let _ = (ctx, time, state);
        Ok(())
    }

    /// Called when the upstream min clock moves to `watermark` (after any checkpoint it made
    /// due): every message older than it has arrived, so results up to it are final (a window
    /// ending by then may be emitted).
    fn on_watermark(
        &mut self,
        ctx: &mut TaskContext<'_>,
        watermark: Timestamp,
        state: &PersistentState<Self::State>,
    ) -> TaskResult {
        let _ = (ctx, watermark, state);
        Ok(())
    }

    /// Called when the task stops.
    fn on_stop(&mut self, ctx: &mut TaskContext<'_>) {
        let _ = ctx;
    }
}

/// Runs a [`PersistentTask`] as a [`Task`]: restores its state at the start time, splits
/// updates at the checkpoint time and persists the checkpoint state when the upstream min clock
/// passes it.
pub struct Persistent<T: PersistentTask> {
    task: T,
    state: PersistentState<T::State>,
    schedule: Option<CheckpointSchedule>,
}

impl<T: PersistentTask> Persistent<T> {
    /// Wraps `task`.
    pub fn new(task: T) -> Self {
        Persistent { task, state: PersistentState::new(T::State::default(), Timestamp::MAX), schedule: None }
    }

    fn store<'c>(ctx: &'c TaskContext<'_>) -> Result<&'c dyn StateStore, TaskError> {
        ctx.state_store().ok_or_else(|| TaskError::msg("this runtime has no checkpoint store for persistent tasks"))
    }
}

impl<T: PersistentTask> Task for Persistent<T> {
    fn on_start(&mut self, ctx: &mut TaskContext<'_>, start: StartTime) -> TaskResult {
        let interval: i64 = ctx.config().get_or(CHECKPOINT_INTERVAL_KEY, 1000)?;
        if interval <= 0 {
            return Err(TaskError::msg(format!("{CHECKPOINT_INTERVAL_KEY} must be positive, not {interval}")));
        }
        let id = ctx.task_id();
        let decode = |task: TaskId, bytes: Vec<u8>| -> Result<T::State, TaskError> {
            postcard::from_bytes(&bytes).map_err(|e| {
                TaskError::msg(format!(
                    "the checkpoint of task {task} at {} does not decode as its state: {e}",
                    start.0
                ))
            })
        };
        let store = Self::store(ctx)?;
        // Born at this start by a dynamic DAG change: the state is the predecessor's there,
        // split anew over this processor's tasks.
        let initial = match ctx.info().predecessor.filter(|p| p.transit == start.0) {
            Some(p) => {
                let mut state = T::State::default();
                for index in 0..p.parallelism {
                    let old = TaskId { processor: p.processor, index };
                    if let Some(bytes) = store.load(old, start.0)? {
                        state.combine(decode(old, bytes)?.split(id.index, ctx.info().parallelism));
                    }
                }
                state
            }
            None => match store.load(id, start.0)? {
                None => T::State::default(),
                Some(bytes) => decode(id, bytes)?,
            },
        };
        let schedule = CheckpointSchedule::new(interval, start.0);
        self.state = PersistentState::new(initial, schedule.checkpoint_time());
        self.schedule = Some(schedule);
        self.task.on_start(ctx, start, &self.state)
    }

    fn on_next(&mut self, ctx: &mut TaskContext<'_>, msg: Message) -> TaskResult {
        if let Some(s) = &mut self.schedule {
            s.on_message(msg.timestamp());
        }
        self.task.process(ctx, msg, &mut self.state)
    }

    fn on_watermark_progress(&mut self, ctx: &mut TaskContext<'_>, watermark: Timestamp) -> TaskResult {
        // The watermark may pass the next checkpoint time after the one due as well (a jump,
        // or the end of the input): right after a checkpoint every message seen is older than
        // the next time, so a second checkpoint there holds the whole state. Two at most: a
        // third would hold nothing new.
        for _ in 0..2 {
            let Some(s) = &mut self.schedule else { return Ok(()) };
            let Some(due) = s.on_watermark(watermark) else { break };
            let next = s.checkpoint_time();
            let bytes = postcard::to_allocvec(self.state.checkpoint_state())
                .map_err(|e| TaskError::msg(format!("encoding the state of task {}: {e}", ctx.task_id())))?;
            Self::store(ctx)?.save(ctx.task_id(), due, &bytes)?;
            self.state.advance(next);
            self.task.on_checkpoint(ctx, due, &self.state)?;
        }
        self.task.on_watermark(ctx, watermark, &self.state)
    }

    fn on_timer(&mut self, _ctx: &mut TaskContext<'_>, _timer: TimerId) -> TaskResult {
        Ok(())
    }

    fn on_stop(&mut self, ctx: &mut TaskContext<'_>) {
        self.task.on_stop(ctx);
    }
}

impl crate::Processor {
    /// A processor of persistent tasks built by `make`: their state is checkpointed every
    /// `state.checkpoint.interval.ms` of application time and restored after a failure.
    pub fn persistent<T, F>(task_type: impl Into<String>, parallelism: u32, make: F) -> Self
    where
        T: PersistentTask,
        F: Fn(&TaskInfo) -> Result<T, TaskError> + Send + Sync + 'static,
    {
        crate::Processor::from_fn(task_type, parallelism, move |info| Ok(Persistent::new(make(info)?))).stateful()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_split_over_new_tasks_keeps_every_part_once() {
        // A total goes whole to task 0.
        assert_eq!((0..3).map(|i| 7u64.split(i, 3)).collect::<Vec<_>>(), vec![7, 0, 0]);
        // A map's keys go where the hash partitioner sends a message carrying the key.
        let counts: BTreeMap<String, u64> = (0..100).map(|i| (format!("w{i}"), i)).collect();
        let parts: Vec<BTreeMap<String, u64>> = (0..4).map(|i| counts.split(i, 4)).collect();
        for (i, part) in parts.iter().enumerate() {
            for k in part.keys() {
                let sent_to = gearpump_core::Value::hash_code(k) % 4;
                assert_eq!(sent_to, i as u64, "{k}");
            }
        }
        let mut whole = BTreeMap::new();
        for part in parts {
            whole.combine(part);
        }
        assert_eq!(whole, counts);
        // Pairs split each half.
        let pair = (5u64, counts);
        assert_eq!(pair.split(0, 2).0, 5);
        assert_eq!(pair.split(1, 2).0, 0);
        assert_eq!(pair.split(0, 2).1.len() + pair.split(1, 2).1.len(), 100);
    }
}
