//! Checkpoint decisions, as pure state machines: when a stateful task persists its state
//! ([`CheckpointSchedule`]) and which time an application restarts from ([`RecoveryPoint`]).
//!
//! The guide's exactly-once scheme (its List 1): a stateful task keeps a *checkpoint state*
//! (messages older than the next checkpoint time Tc) beside its current state. When every
//! message older than Tc has reached it (its upstream min clock passes Tc) it persists the
//! checkpoint state as "the state at Tc". After a failure every stateful task loads its state at
//! the start clock and the sources replay from there, so each message counts exactly once.
//!
//! The start clock must therefore be a time at which *every* stateful task has a checkpoint,
//! and no later than the application's min clock (so nothing older is still in flight
//! downstream of a stateful task). [`RecoveryPoint`] tracks exactly that.

use gearpump_core::{TaskId, Timestamp};
use std::collections::{BTreeMap, BTreeSet};

/// When one stateful task checkpoints.
///
/// The next checkpoint time for interval `I`, after seeing messages up to time `t`, is
/// `(1 + t / I) * I`: the first multiple of `I` past everything seen, so the state split at it
/// never holds a message from after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointSchedule {
    interval: i64,
    /// The next time to checkpoint at.
    next: Timestamp,
    /// The largest message time seen.
    max_seen: Timestamp,
}

impl CheckpointSchedule {
    /// A schedule with `interval` (ms, at least 1) for a task starting at `start`.
    pub fn new(interval: i64, start: Timestamp) -> Self {
        let interval = interval.max(1);
        CheckpointSchedule { interval, next: Self::after(interval, start), max_seen: start }
    }

    /// The first multiple of `interval` after `t`.
    fn after(interval: i64, t: Timestamp) -> Timestamp {
        if t.0 < 0 {
            // Before the epoch (an unset start): the first checkpoint is at the first interval.
            return Timestamp(interval);
        }
        Timestamp(t.0.saturating_div(interval).saturating_add(1).saturating_mul(interval))
    }

    /// The time the next checkpoint will be taken at: messages older than it belong to the
    /// checkpoint state.
    pub fn checkpoint_time(&self) -> Timestamp {
        self.next
    }

    /// A message of time `t` was processed.
    pub fn on_message(&mut self, t: Timestamp) {
        self.max_seen = self.max_seen.max(t);
    }

    /// The upstream min clock moved to `watermark`: returns the time to checkpoint at, if every
    /// message older than the checkpoint time has now arrived. The schedule then moves on past
    /// everything seen so far.
    pub fn on_watermark(&mut self, watermark: Timestamp) -> Option<Timestamp> {
        if watermark < self.next {
            return None;
        }
        let due = self.next;
        self.next = Self::after(self.interval, self.max_seen.max(due));
        Some(due)
    }
}

/// The application's recovery point: the latest time at which every stateful task has a
/// checkpoint and which the min clock has passed.
///
/// Without stateful tasks it is simply the min clock (at-least-once replay).
///
/// Some stateful tasks are *committers* (exactly-once sinks): their checkpoint at a time is the
/// commit of their output there, which they may only make once every other stateful task has
/// a checkpoint at that time: the two phases of a two-phase commit. So a checkpoint time
/// first becomes *complete* ([`RecoveryPoint::complete_checkpoint`]: every non-committer has
/// it and the min clock passed it; committers are told to commit) and then, once committers
/// report it too, the start clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryPoint {
    /// Checkpoint times reported by each stateful task, at or after the start clock.
    checkpoints: BTreeMap<TaskId, BTreeSet<Timestamp>>,
    /// The stateful tasks that commit on complete checkpoints.
    committers: BTreeSet<TaskId>,
    /// The latest complete checkpoint announced.
    complete: Timestamp,
    start: Timestamp,
}

impl RecoveryPoint {
    /// A recovery point for `stateful` tasks, starting at `start` (where each has its initial
    /// state).
    pub fn new(stateful: impl IntoIterator<Item = TaskId>, start: Timestamp) -> Self {
        RecoveryPoint {
            checkpoints: stateful.into_iter().map(|t| (t, BTreeSet::from([start]))).collect(),
            committers: BTreeSet::new(),
            complete: start,
            start,
        }
    }

    /// Makes `committers` (which must be among the stateful tasks) commit on complete
    /// checkpoints.
    #[must_use]
    pub fn with_committers(mut self, committers: impl IntoIterator<Item = TaskId>) -> Self {
        self.committers = committers.into_iter().filter(|t| self.checkpoints.contains_key(t)).collect();
        self
    }

    /// The latest time at or before `min_clock` that every stateful task in `of` has a
    /// checkpoint at.
    fn latest_common<'a>(
        &'a self,
        min_clock: Timestamp,
        mut of: impl FnMut(&TaskId) -> bool + 'a,
    ) -> Option<Timestamp> {
        let mut sets = self.checkpoints.iter().filter(|(t, _)| of(t)).map(|(_, s)| s).peekable();
        let first = (*sets.peek()?).clone();
        let all: Vec<&BTreeSet<Timestamp>> = sets.collect();
        first.range(..=min_clock).rev().find(|t| all.iter().all(|s| s.contains(t))).copied()
    }

    /// The min clock is `min_clock`: returns the checkpoint time that just became complete, if
    /// one did: the latest time every stateful task but the committers has a checkpoint at,
    /// no later than the min clock. `None` without stateful tasks (nothing to commit).
    pub fn complete_checkpoint(&mut self, min_clock: Timestamp) -> Option<Timestamp> {
        if self.checkpoints.is_empty() {
            return None;
        }
        let committers = &self.committers;
        let candidate = if committers.len() == self.checkpoints.len() {
            // Only committers: every time the min clock passes is complete for the others.
            min_clock
        } else {
            self.latest_common(min_clock, |t| !committers.contains(t))?
        };
        if candidate <= self.complete {
            return None;
        }
        self.complete = candidate;
        Some(candidate)
    }

    /// The start clock: where the application restarts from after a failure.
    pub fn start_clock(&self) -> Timestamp {
        self.start
    }

    /// `task` persisted its state at `time`. A report from a task that is not stateful is
    /// ignored.
    pub fn on_checkpoint(&mut self, task: TaskId, time: Timestamp) {
        if time < self.start {
            return;
        }
        if let Some(times) = self.checkpoints.get_mut(&task) {
            times.insert(time);
        }
    }

    /// The min clock moved to `min_clock`: moves the start clock as far as it may go and
    /// returns it if it moved. Checkpoints older than the new start clock are forgotten (their
    /// files may be deleted).
    pub fn on_min_clock(&mut self, min_clock: Timestamp) -> Option<Timestamp> {
        let candidate = if self.checkpoints.is_empty() {
            min_clock
        } else {
            // The latest time every stateful task has, no later than the min clock.
            self.latest_common(min_clock, |_| true)?
        };
        if candidate <= self.start {
            return None;
        }
        self.start = candidate;
        for times in self.checkpoints.values_mut() {
            times.retain(|t| *t >= candidate);
        }
        Some(candidate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_checkpoints_when_the_watermark_passes_and_moves_past_what_it_saw() {
        // (event, value, expected checkpoint, next checkpoint time after)
        let steps: &[(&str, i64, Option<i64>, i64)] = &[
            ("msg", 100, None, 1000),
            ("wm", 999, None, 1000),
            ("msg", 2500, None, 1000),
            // Everything before 1000 has arrived: checkpoint at 1000; 2500 was seen, so the next
            // checkpoint is at 3000, not 2000.
            ("wm", 1000, Some(1000), 3000),
            ("wm", 2000, None, 3000),
            ("wm", 3500, Some(3000), 4000),
            // A watermark jump far ahead (an idle source) checkpoints once, then moves on.
            ("wm", 9000, Some(4000), 5000),
        ];
        let mut s = CheckpointSchedule::new(1000, Timestamp(0));
        for (i, &(event, value, checkpoint, next)) in steps.iter().enumerate() {
            let got = match event {
                "msg" => {
                    s.on_message(Timestamp(value));
                    None
                }
                _ => s.on_watermark(Timestamp(value)),
            };
            assert_eq!(got, checkpoint.map(Timestamp), "step {i}: {event} {value}");
            assert_eq!(s.checkpoint_time(), Timestamp(next), "step {i}");
        }
    }

    #[test]
    fn the_first_checkpoint_follows_the_start_time() {
        for (interval, start, first) in [(1000, 0, 1000), (1000, 1500, 2000), (1000, 2000, 3000), (7, -5, 7), (0, 3, 4)]
        {
            assert_eq!(
                CheckpointSchedule::new(interval, Timestamp(start)).checkpoint_time(),
                Timestamp(first),
                "interval {interval} start {start}"
            );
        }
    }

    const A: TaskId = TaskId::new(1, 0);
    const B: TaskId = TaskId::new(1, 1);
    const C: TaskId = TaskId::new(2, 0);

    #[test]
    fn the_start_clock_is_the_latest_common_checkpoint_the_min_clock_has_passed() {
        let mut r = RecoveryPoint::new([A, B, C], Timestamp(0));
        r.on_checkpoint(A, Timestamp(1000));
        r.on_checkpoint(B, Timestamp(1000));
        assert_eq!(r.on_min_clock(Timestamp(5000)), None, "C has no checkpoint at 1000 yet");
        r.on_checkpoint(C, Timestamp(1000));
        assert_eq!(r.on_min_clock(Timestamp(900)), None, "the min clock has not passed 1000");
        assert_eq!(r.on_min_clock(Timestamp(1000)), Some(Timestamp(1000)));
        // Tasks that skipped times: A has 2000 and 3000, B only 3000, C 2000 and 3000.
        for (t, time) in [(A, 2000), (A, 3000), (B, 3000), (C, 2000), (C, 3000)] {
            r.on_checkpoint(t, Timestamp(time));
        }
        assert_eq!(r.on_min_clock(Timestamp(2500)), None, "2000 is not common, 3000 not passed");
        assert_eq!(r.on_min_clock(Timestamp(3000)), Some(Timestamp(3000)));
        assert_eq!(r.start_clock(), Timestamp(3000));
        // Old and foreign reports change nothing.
        r.on_checkpoint(A, Timestamp(1000));
        r.on_checkpoint(TaskId::new(0, 0), Timestamp(9000));
        assert_eq!(r.on_min_clock(Timestamp(9000)), None);
    }

    #[test]
    fn committers_commit_on_complete_checkpoints_and_only_then_move_the_start_clock() {
        // A and B are counts, C an exactly-once sink.
        let mut r = RecoveryPoint::new([A, B, C], Timestamp(0)).with_committers([C]);
        r.on_checkpoint(A, Timestamp(1000));
        assert_eq!(r.complete_checkpoint(Timestamp(1500)), None, "B has no checkpoint at 1000");
        r.on_checkpoint(B, Timestamp(1000));
        assert_eq!(r.complete_checkpoint(Timestamp(900)), None, "the min clock has not passed 1000");
        assert_eq!(r.complete_checkpoint(Timestamp(1500)), Some(Timestamp(1000)), "C is told to commit");
        assert_eq!(r.complete_checkpoint(Timestamp(1600)), None, "announced once");
        assert_eq!(r.on_min_clock(Timestamp(1600)), None, "C has not committed yet");
        r.on_checkpoint(C, Timestamp(1000));
        assert_eq!(r.on_min_clock(Timestamp(1600)), Some(Timestamp(1000)));
        // Only committers: every min clock move completes a checkpoint for them.
        let mut only = RecoveryPoint::new([C], Timestamp(0)).with_committers([C]);
        assert_eq!(only.complete_checkpoint(Timestamp(700)), Some(Timestamp(700)));
        assert_eq!(only.on_min_clock(Timestamp(700)), None);
        only.on_checkpoint(C, Timestamp(700));
        assert_eq!(only.on_min_clock(Timestamp(800)), Some(Timestamp(700)));
        // Without stateful tasks there is nothing to commit.
        assert_eq!(RecoveryPoint::new([], Timestamp(0)).complete_checkpoint(Timestamp(5)), None);
    }

    #[test]
    fn without_stateful_tasks_the_start_clock_follows_the_min_clock() {
        let mut r = RecoveryPoint::new([], Timestamp(0));
        assert_eq!(r.on_min_clock(Timestamp(0)), None);
        assert_eq!(r.on_min_clock(Timestamp(70)), Some(Timestamp(70)));
        assert_eq!(r.on_min_clock(Timestamp(50)), None, "never backwards");
        assert_eq!(r.start_clock(), Timestamp(70));
    }
}
