//! # gearpump-clock
//!
//! The application clock as a pure state machine (no threads, no timers, no I/O): the AppMaster
//! feeds it task clock reports and forwards what it returns.
//!
//! Every task reports its *min clock* periodically: a lower bound on the timestamp of any message
//! it still holds or may still emit (its un-acked output, its state, its own watermark, and for a
//! task with upstream processors the upstream min clock it was last told). The
//! [`ClockService`] keeps the latest report of each task and derives:
//!
//! - each processor's clock: the min over its tasks, never moving backwards;
//! - each task's *upstream min clock*: the min over the clocks of its processor's upstream
//!   processors (none for a source), returned in reply to every report;
//! - the application's min clock: the min over all processors, never moving backwards. Every
//!   source message older than it has been fully processed; when it reaches
//!   [`Timestamp::MAX`] the application has succeeded.
//!
//! [`checkpoint`] holds the exactly-once decisions: when a stateful task checkpoints
//! ([`CheckpointSchedule`]) and where an application restarts from ([`RecoveryPoint`]).
//!
//! ```
//! use gearpump_clock::ClockService;
//! use gearpump_core::{ProcessorId, TaskId, Timestamp};
//!
//! // source (1 task) → sink (1 task), starting at time 0.
//! let mut clock = ClockService::new(&[1, 1], &[(ProcessorId(0), ProcessorId(1))], Timestamp(0));
//! assert_eq!(clock.report(TaskId::new(0, 0), Timestamp(10)), None); // sources have no upstream
//! assert_eq!(clock.report(TaskId::new(1, 0), Timestamp(7)), Some(Timestamp(10)));
//! assert_eq!(clock.min_clock(), Timestamp(7));
//! ```

pub mod checkpoint;

pub use checkpoint::{CheckpointSchedule, RecoveryPoint};

use gearpump_core::{ProcessorId, TaskId, Timestamp};

/// The clock of one processor.
#[derive(Debug, Clone)]
struct ProcessorClock {
    tasks: Vec<Timestamp>,
    upstream: Vec<ProcessorId>,
    clock: Timestamp,
}

/// The global clock service of one application. See the crate docs.
#[derive(Debug, Clone)]
pub struct ClockService {
    processors: Vec<ProcessorClock>,
    min_clock: Timestamp,
    start: Timestamp,
}

impl ClockService {
    /// A clock service for processors with the given parallelisms (indexed by processor id) and
    /// edges `(upstream, downstream)`, every task starting at `start`.
    pub fn new(parallelism: &[u32], edges: &[(ProcessorId, ProcessorId)], start: Timestamp) -> Self {
        let processors = parallelism
            .iter()
            .enumerate()
            .map(|(i, &n)| ProcessorClock {
                tasks: vec![start; n as usize],
                upstream: edges.iter().filter(|(_, to)| to.0 as usize == i).map(|(from, _)| *from).collect(),
                // A processor without tasks (one a DAG change retired) holds nothing back.
                clock: if n == 0 { Timestamp::MAX } else { start },
            })
            .collect();
        ClockService { processors, min_clock: start, start }
    }

    /// Records `task`'s min clock and returns its upstream min clock (`None` for a source).
    /// Reports for unknown tasks are ignored (and answered with `None`).
    pub fn report(&mut self, task: TaskId, clock: Timestamp) -> Option<Timestamp> {
        let p = task.processor.0 as usize;
        let slot = self.processors.get_mut(p).and_then(|pc| pc.tasks.get_mut(task.index as usize))?;
        *slot = clock;
        let pc = &mut self.processors[p];
        let task_min = pc.tasks.iter().copied().min().unwrap_or(Timestamp::MAX);
        // Monotonic: a late report cannot pull a processor's clock back.
        pc.clock = pc.clock.max(task_min);
        let app_min = self.processors.iter().map(|pc| pc.clock).min().unwrap_or(Timestamp::MAX);
        self.min_clock = self.min_clock.max(app_min);
        self.upstream_min_clock(task.processor)
    }

    /// The min clock over `processor`'s upstream processors, `None` for a source.
    pub fn upstream_min_clock(&self, processor: ProcessorId) -> Option<Timestamp> {
        let pc = self.processors.get(processor.0 as usize)?;
        pc.upstream.iter().map(|u| self.processors[u.0 as usize].clock).min()
    }

    /// Whether the application's min clock has moved past the clock it started at.
    pub fn has_moved(&self) -> bool {
        self.min_clock > self.start
    }

    /// The tasks directly downstream of `processor` with their upstream min clock, for those
    /// whose upstream min clock has moved past the start. Reports answer only the reporting task;
    /// this lets the caller push a move at once (after a start or a restart, say) rather than
    /// wait for each downstream task's next report.
    pub fn downstream_clocks(&self, processor: ProcessorId) -> Vec<(TaskId, Timestamp)> {
        let mut tasks = Vec::new();
        for (d, pc) in self.processors.iter().enumerate() {
            let d = ProcessorId(d as u32);
            if !pc.upstream.contains(&processor) {
                continue;
            }
            match self.upstream_min_clock(d) {
                Some(up) if up > self.start => {
                    tasks.extend((0..pc.tasks.len() as u32).map(|i| (TaskId::new(d.0, i), up)))
                }
                _ => {}
            }
        }
        tasks
    }

    /// A processor's clock.
    pub fn processor_clock(&self, processor: ProcessorId) -> Option<Timestamp> {
        self.processors.get(processor.0 as usize).map(|pc| pc.clock)
    }

    /// The application's min clock.
    pub fn min_clock(&self) -> Timestamp {
        self.min_clock
    }

    /// Whether the min clock has reached the end of time: every source ended and every message
    /// was processed.
    pub fn is_finished(&self) -> bool {
        self.min_clock == Timestamp::MAX
    }

    /// The processors whose clock equals the application min clock, in id order: the ones
    /// holding the application back.
    pub fn slowest_processors(&self) -> Vec<ProcessorId> {
        (0..self.processors.len())
            .filter(|&i| self.processors[i].clock == self.min_clock)
            .map(|i| ProcessorId(i as u32))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P0: ProcessorId = ProcessorId(0);
    const P1: ProcessorId = ProcessorId(1);
    const P2: ProcessorId = ProcessorId(2);

    /// Diamond-ish: P0 (2 tasks) → P2, P1 (1 task) → P2 (2 tasks).
    fn service() -> ClockService {
        ClockService::new(&[2, 1, 2], &[(P0, P2), (P1, P2)], Timestamp(0))
    }

    #[test]
    fn downstream_clocks_name_the_tasks_whose_upstream_moved_past_the_start() {
        let mut c = service();
        assert!(c.downstream_clocks(P0).is_empty(), "nothing moved yet");
        c.report(TaskId::new(0, 0), Timestamp(10));
        c.report(TaskId::new(0, 1), Timestamp(20));
        // P2's upstream clock is min(P0 = 10, P1 = 0): not past the start yet.
        assert!(c.downstream_clocks(P0).is_empty());
        c.report(TaskId::new(1, 0), Timestamp(5));
        let up = vec![(TaskId::new(2, 0), Timestamp(5)), (TaskId::new(2, 1), Timestamp(5))];
        assert_eq!(c.downstream_clocks(P1), up);
        assert_eq!(c.downstream_clocks(P0), up);
        assert!(c.downstream_clocks(P2).is_empty(), "a sink has nothing downstream");
        assert!(!c.has_moved());
        c.report(TaskId::new(2, 0), Timestamp(5));
        c.report(TaskId::new(2, 1), Timestamp(5));
        assert!(c.has_moved());
    }

    #[test]
    fn table_of_reports() {
        // (task, reported clock, expected reply, expected app min clock after)
        let steps: &[(TaskId, i64, Option<i64>, i64)] = &[
            (TaskId::new(0, 0), 10, None, 0),
            (TaskId::new(0, 1), 20, None, 0),
            (TaskId::new(1, 0), 5, None, 0),
            // P2's upstream is min(P0 = 10, P1 = 5).
            (TaskId::new(2, 0), 3, Some(5), 0),
            (TaskId::new(2, 1), 4, Some(5), 3),
            (TaskId::new(1, 0), 30, None, 3),
            (TaskId::new(2, 0), 9, Some(10), 4),
            (TaskId::new(2, 1), 10, Some(10), 9),
        ];
        let mut s = service();
        for (i, &(task, clock, reply, min)) in steps.iter().enumerate() {
            assert_eq!(s.report(task, Timestamp(clock)), reply.map(Timestamp), "step {i}: reply");
            assert_eq!(s.min_clock(), Timestamp(min), "step {i}: min clock");
        }
    }

    #[test]
    fn sources_get_no_upstream_clock() {
        let mut s = service();
        assert_eq!(s.report(TaskId::new(0, 0), Timestamp(100)), None);
        assert_eq!(s.report(TaskId::new(1, 0), Timestamp(100)), None);
        assert_eq!(s.upstream_min_clock(P0), None);
    }

    #[test]
    fn never_moves_backwards() {
        let mut s = ClockService::new(&[1, 1], &[(P0, P1)], Timestamp(0));
        s.report(TaskId::new(0, 0), Timestamp(50));
        s.report(TaskId::new(1, 0), Timestamp(40));
        assert_eq!(s.min_clock(), Timestamp(40));
        // A stale, lower report does not pull any clock back.
        s.report(TaskId::new(1, 0), Timestamp(20));
        s.report(TaskId::new(0, 0), Timestamp(10));
        assert_eq!(s.min_clock(), Timestamp(40));
        assert_eq!(s.processor_clock(P0), Some(Timestamp(50)));
        assert_eq!(s.report(TaskId::new(1, 0), Timestamp(45)), Some(Timestamp(50)));
        assert_eq!(s.min_clock(), Timestamp(45));
    }

    #[test]
    fn finishes_when_everything_reaches_max() {
        let mut s = ClockService::new(&[1, 1], &[(P0, P1)], Timestamp(0));
        s.report(TaskId::new(0, 0), Timestamp::MAX);
        assert!(!s.is_finished());
        assert_eq!(s.slowest_processors(), vec![P1]);
        assert_eq!(s.report(TaskId::new(1, 0), Timestamp::MAX), Some(Timestamp::MAX));
        assert!(s.is_finished());
    }

    #[test]
    fn a_processor_without_tasks_holds_nothing_back() {
        // source → sink, and a retired processor 2 with no tasks and no edges.
        let mut clock = ClockService::new(&[1, 1, 0], &[(P0, P1)], Timestamp(0));
        clock.report(TaskId::new(0, 0), Timestamp(10));
        clock.report(TaskId::new(1, 0), Timestamp(7));
        assert_eq!(clock.min_clock(), Timestamp(7));
    }

    #[test]
    fn unknown_tasks_are_ignored() {
        let mut s = service();
        assert_eq!(s.report(TaskId::new(9, 0), Timestamp(1)), None);
        assert_eq!(s.report(TaskId::new(0, 7), Timestamp(1)), None);
        assert_eq!(s.min_clock(), Timestamp(0));
    }
}

/// How long the application clock may stand still before the tasks holding it are reported as
/// stalling.
pub const STALL_AFTER_MS: i64 = 10_000;

/// Finds stalling tasks: when the application min clock has not moved for
/// [`STALL_AFTER_MS`], the tasks whose own clock equals it are what holds it back. A finished
/// application (clock at the end of time) never stalls.
#[derive(Debug, Clone, Default)]
pub struct HealthCheck {
    last: Option<(Timestamp, i64)>,
}

impl HealthCheck {
    /// Takes the min clock and each task's clock at `now` (ms); returns the stalling tasks.
    pub fn check(&mut self, now: i64, min_clock: Timestamp, tasks: &[(TaskId, Timestamp)]) -> Vec<TaskId> {
        let since = match self.last {
            Some((clock, since)) if clock == min_clock => since,
            _ => {
                self.last = Some((min_clock, now));
                now
            }
        };
        if min_clock == Timestamp::MAX || now - since < STALL_AFTER_MS {
            return Vec::new();
        }
        tasks.iter().filter(|(_, c)| *c <= min_clock).map(|(t, _)| *t).collect()
    }
}

#[cfg(test)]
mod health_tests {
    use super::*;

    #[test]
    fn tasks_holding_a_still_clock_are_stalling() {
        let tasks = [(TaskId::new(0, 0), Timestamp(5)), (TaskId::new(1, 0), Timestamp(9))];
        let mut h = HealthCheck::default();
        for (now, clock, expected) in [
            (0, 5, vec![]),
            (9_999, 5, vec![]),
            (10_000, 5, vec![TaskId::new(0, 0)]),
            (10_500, 6, vec![]),
            (20_499, 6, vec![]),
            (20_500, 6, vec![TaskId::new(0, 0)]),
        ] {
            let tasks: Vec<_> = tasks
                .iter()
                .map(|&(t, c)| (t, if clock == 6 && t.processor.0 == 0 { Timestamp(6) } else { c }))
                .collect();
            assert_eq!(h.check(now, Timestamp(clock), &tasks), expected, "at {now}");
        }
        let mut done = HealthCheck::default();
        assert!(done.check(0, Timestamp::MAX, &tasks).is_empty());
        assert!(done.check(60_000, Timestamp::MAX, &tasks).is_empty());
    }
}
