//! How a running application recovers or ends, decided by a pure state machine.
//!
//! Both AppMasters (the embedded one, with tasks in this process, and the distributed one, with
//! executor processes) feed a [`Supervisor`] what happens to the tasks and execute the
//! [`Action`]s it returns. It owns the application's [`ClockService`]: every task clock report
//! is answered with the task's upstream min clock, and when the min clock reaches the end of
//! time the application has succeeded. It also owns the [`RecoveryPoint`]: stateful tasks'
//! checkpoints and the min clock move the start clock forward.
//!
//! A failed task or lost tasks (message loss, a dead executor) make a *recovery*, while the
//! restart budget (`gearpump.application.total-retries`) lasts: every task is stopped, and once
//! all have stopped (or were lost) the AppMaster restarts them all from the start clock. Past
//! the budget the failure ends the application. A kill or giving up end it too. The first
//! ending wins; then every task is stopped, and once all have stopped the application is done.
//!
//! A dynamic DAG change ([`Supervisor::on_change`]) restarts the tasks the same way, without
//! spending the budget, as the tasks of the new DAG: its transit time is the start clock, so
//! every message older than it was processed by the DAG before, and every later one is by the
//! new DAG (replayed by the sources from there), with the state of the checkpoints at it.

use crate::appmaster::AppStatus;
use gearpump_api::Dag;
use gearpump_clock::{ClockService, RecoveryPoint};
use gearpump_core::{ProcessorId, TaskId, Timestamp};
use std::time::{Duration, Instant};

/// How an application ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Every source ended and every message was processed.
    Succeeded,
    /// Something went wrong; what.
    Failed(String),
    /// It was killed.
    Terminated,
}

impl Ending {
    /// The application status it ends in.
    pub fn status(&self) -> AppStatus {
        match self {
            Ending::Succeeded => AppStatus::Succeeded,
            Ending::Failed(_) => AppStatus::Failed,
            Ending::Terminated => AppStatus::Terminated,
        }
    }

    /// The error behind a failure.
    pub fn error(&self) -> Option<&str> {
        match self {
            Ending::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// What the AppMaster must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Tell `task` its upstream min clock.
    UpstreamClock(TaskId, Timestamp),
    /// Stop every task.
    StopAll,
    /// Every task has stopped after a failure: start them all again from `start` (fresh
    /// tasks; stateful ones load their checkpoint at `start`; sources replay from it).
    Restart {
        /// The start clock.
        start: Timestamp,
        /// What made the recovery.
        why: String,
    },
    /// The checkpoint at this time is complete (every stateful task but the transactional ones
    /// has it, and the min clock passed it): tell every task, so transactional ones commit.
    CheckpointComplete(Timestamp),
    /// The start clock moved: persist it; checkpoints older than it may be deleted.
    StartClock(Timestamp),
    /// Every task has stopped: report [`Supervisor::ending`] and finish.
    Done,
}

/// The outcome logic of an AppMaster. See the module docs.
#[derive(Debug, Clone)]
pub struct Supervisor {
    clock: ClockService,
    parallelism: Vec<u32>,
    edges: Vec<(ProcessorId, ProcessorId)>,
    recovery: RecoveryPoint,
    tasks: u32,
    /// The tasks that have stopped (or were lost) since the last start: a set, so that a task
    /// that stopped and whose executor is lost afterwards counts once.
    stopped: std::collections::BTreeSet<TaskId>,
    ending: Option<Ending>,
    /// A recovery under way: why.
    recovering: Option<String>,
    retries_left: u32,
    restarts: u32,
    /// How long the tasks may take to stop (their `on_stop`, sinks' `close`).
    stop_timeout: Duration,
    /// Since when the tasks are being stopped, as first seen by [`Supervisor::on_tick`].
    stopping_since: Option<Instant>,
    /// The DAG the tasks restart as, after a dynamic DAG change.
    changed: Option<Dag>,
}

/// How long tasks may take to stop unless configured (`gearpump.application.stop-timeout-ms`).
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);

impl Supervisor {
    /// A supervisor for `dag`'s tasks, all starting at `start`, that restarts them up to
    /// `retries` times after failures.
    pub fn new(dag: &Dag, start: Timestamp, retries: u32) -> Self {
        let mut supervisor = Supervisor {
            clock: ClockService::new(&[], &[], start),
            parallelism: Vec::new(),
            edges: Vec::new(),
            recovery: RecoveryPoint::new(std::iter::empty(), start),
            tasks: 0,
            stopped: std::collections::BTreeSet::new(),
            ending: None,
            recovering: None,
            retries_left: retries,
            restarts: 0,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            stopping_since: None,
            changed: None,
        };
        supervisor.shape(dag, start);
        supervisor
    }

    /// Takes `dag`'s tasks (those of its live processors), all starting at `start`.
    fn shape(&mut self, dag: &Dag, start: Timestamp) {
        self.parallelism = dag.processors().iter().map(|p| dag.tasks_of(p.id)).collect();
        self.edges = dag.edges().iter().map(|e| (e.from, e.to)).collect();
        self.clock = ClockService::new(&self.parallelism, &self.edges, start);
        self.recovery = RecoveryPoint::new(dag.stateful_tasks(), start).with_committers(dag.transactional_tasks());
        self.tasks = dag.task_count();
    }

    /// The same, giving the tasks `timeout` to stop (run `on_stop`, close sinks) once told to;
    /// see [`Supervisor::on_tick`].
    pub fn with_stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// Time passes (the AppMaster calls this every few hundred milliseconds). Tasks told to
    /// stop that have not stopped within the stop timeout are given up as lost: a recovery
    /// ends without them, and an application ending with success does not succeed without
    /// what they would have written at the end (see [`Supervisor::on_tasks_lost`]).
    pub fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        if self.ending.is_none() && self.recovering.is_none() {
            self.stopping_since = None;
            return Vec::new();
        }
        let since = *self.stopping_since.get_or_insert(now);
        if now.saturating_duration_since(since) < self.stop_timeout {
            return Vec::new();
        }
        self.stopping_since = None;
        let unstopped: Vec<TaskId> = self.all_tasks().filter(|t| !self.stopped.contains(t)).collect();
        let names: Vec<String> = unstopped.iter().take(5).map(ToString::to_string).collect();
        let more = if unstopped.len() > names.len() {
            format!(" and {} more", unstopped.len() - names.len())
        } else {
            String::new()
        };
        let why = format!("task {}{more} did not stop within {:?}", names.join(", "), self.stop_timeout);
        self.on_tasks_lost(&unstopped, why)
    }

    /// Every task of the application.
    fn all_tasks(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.parallelism.iter().enumerate().flat_map(|(p, n)| (0..*n).map(move |i| TaskId::new(p as u32, i)))
    }

    /// A task reported its min clock.
    pub fn on_clock(&mut self, task: TaskId, clock: Timestamp) -> Vec<Action> {
        if self.ending.is_some() || self.recovering.is_some() {
            return Vec::new();
        }
        // Until the min clock first moves (after a start or a restart), a processor's clock
        // moving is pushed to the tasks downstream at once: each move reaches the next stage
        // within milliseconds instead of at its next report. At steady state, reports alone
        // carry clocks (no more control traffic).
        let unmoved = (!self.clock.has_moved()).then(|| self.clock.processor_clock(task.processor));
        let mut actions: Vec<Action> =
            self.clock.report(task, clock).map(|up| Action::UpstreamClock(task, up)).into_iter().collect();
        if let Some(before) = unmoved
            && self.clock.processor_clock(task.processor) != before
        {
            let pushed = self.clock.downstream_clocks(task.processor);
            actions.extend(pushed.into_iter().map(|(t, up)| Action::UpstreamClock(t, up)));
        }
        if let Some(complete) = self.recovery.complete_checkpoint(self.clock.min_clock()) {
            actions.push(Action::CheckpointComplete(complete));
        }
        if let Some(start) = self.recovery.on_min_clock(self.clock.min_clock()) {
            actions.push(Action::StartClock(start));
        }
        if self.clock.is_finished() {
            actions.extend(self.end(Ending::Succeeded));
        }
        actions
    }

    /// A stateful task persisted its state at `time`.
    pub fn on_checkpoint(&mut self, task: TaskId, time: Timestamp) -> Vec<Action> {
        if self.recovering.is_none() {
            self.recovery.on_checkpoint(task, time);
        }
        Vec::new()
    }

    /// A task failed (its own error, or message loss it detected).
    pub fn on_task_failed(&mut self, task: TaskId, error: &str) -> Vec<Action> {
        self.fail(format!("task {task} failed: {error}"))
    }

    /// A task stopped.
    pub fn on_task_stopped(&mut self, task: TaskId) -> Vec<Action> {
        self.stopped.insert(task);
        self.next_if_all_stopped()
    }

    /// `tasks` are gone (their executor was lost): those that had not stopped yet count as
    /// stopped, and their loss is a failure. Losing tasks that had stopped already changes
    /// nothing.
    pub fn on_tasks_lost(&mut self, tasks: &[TaskId], why: String) -> Vec<Action> {
        let unstopped: Vec<TaskId> = tasks.iter().copied().filter(|t| !self.stopped.contains(t)).collect();
        if unstopped.is_empty() {
            return Vec::new();
        }
        self.stopped.extend(unstopped);
        let mut actions = self.fail(why);
        actions.extend(self.next_if_all_stopped());
        actions
    }

    /// A replay was asked for (`gear replay`): every task restarts from the start clock, as in a
    /// recovery, without spending the restart budget.
    pub fn on_replay(&mut self) -> Vec<Action> {
        if self.ending.is_some() || self.recovering.is_some() {
            return Vec::new();
        }
        self.recovering = Some("a replay was requested".into());
        vec![Action::StopAll]
    }

    /// Whether a dynamic DAG change may start now: not while the tasks recover or end (nor
    /// while an earlier change is applied).
    pub fn may_change(&self) -> Result<(), &'static str> {
        match (&self.ending, &self.recovering) {
            (Some(_), _) => Err("the application is ending"),
            (None, Some(_)) => Err("the application is restarting its tasks"),
            (None, None) => Ok(()),
        }
    }

    /// A dynamic DAG change to `dag`, whose transit time is [`Supervisor::start_clock`] (see
    /// [`Supervisor::may_change`]): every task stops, and once all have, they restart from
    /// the start clock as `dag`'s tasks, without spending the restart budget.
    pub fn on_change(&mut self, dag: Dag) -> Vec<Action> {
        if self.may_change().is_err() {
            return Vec::new();
        }
        self.changed = Some(dag);
        self.recovering = Some("a dynamic DAG change".into());
        vec![Action::StopAll]
    }

    /// Recovers from `why` while the budget lasts, else ends the application with it.
    fn fail(&mut self, why: String) -> Vec<Action> {
        if self.recovering.is_some() {
            return Vec::new();
        }
        match self.ending {
            None => {}
            // Every message was processed and the tasks are stopping (their `on_stop`, sinks
            // closing), when one fails or is lost before it has stopped: what it writes at the
            // end would be missing. Recover (the tasks are stopping already) rather than
            // succeed without it.
            Some(Ending::Succeeded) => {
                let why = format!("{why}, while the application was ending");
                self.ending = None;
                if self.retries_left == 0 {
                    let why = if self.restarts > 0 { format!("{why} (after {} restarts)", self.restarts) } else { why };
                    self.ending = Some(Ending::Failed(why));
                } else {
                    self.retries_left -= 1;
                    self.recovering = Some(why);
                }
                return Vec::new();
            }
            Some(_) => return Vec::new(),
        }
        if self.retries_left == 0 {
            let why = if self.restarts > 0 { format!("{why} (after {} restarts)", self.restarts) } else { why };
            return self.end(Ending::Failed(why));
        }
        self.retries_left -= 1;
        self.recovering = Some(why);
        vec![Action::StopAll]
    }

    /// How many times the tasks were restarted.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// The start clock: where a restart starts from.
    pub fn start_clock(&self) -> Timestamp {
        self.recovery.start_clock()
    }

    /// The application is to be killed.
    pub fn on_kill(&mut self) -> Vec<Action> {
        self.end(Ending::Terminated)
    }

    /// The AppMaster cannot go on (it lost its master, say).
    pub fn on_give_up(&mut self, why: String) -> Vec<Action> {
        self.end(Ending::Failed(why))
    }

    fn end(&mut self, ending: Ending) -> Vec<Action> {
        if self.ending.is_some() {
            return Vec::new();
        }
        self.ending = Some(ending);
        if self.recovering.take().is_some() {
            // The tasks are stopping already; once they have, the application is done.
            return self.next_if_all_stopped();
        }
        vec![Action::StopAll]
    }

    fn next_if_all_stopped(&mut self) -> Vec<Action> {
        if self.stopped.len() < self.tasks as usize {
            return Vec::new();
        }
        if self.ending.is_some() {
            return vec![Action::Done];
        }
        let Some(why) = self.recovering.take() else { return Vec::new() };
        let start = self.recovery.start_clock();
        match self.changed.take() {
            Some(dag) => self.shape(&dag, start),
            None => {
                self.clock = ClockService::new(&self.parallelism, &self.edges, start);
                self.restarts += 1;
            }
        }
        self.stopped.clear();
        self.stopping_since = None;
        vec![Action::Restart { start, why }]
    }

    /// How the application ended, once it has.
    pub fn ending(&self) -> Option<&Ending> {
        self.ending.as_ref()
    }

    /// The ending, or a failure if the AppMaster stopped before deciding one.
    pub fn into_ending(self) -> Ending {
        self.ending.unwrap_or_else(|| Ending::Failed("the AppMaster lost its tasks".into()))
    }

    /// The application's clock service.
    pub fn clock(&self) -> &ClockService {
        &self.clock
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gearpump_api::{Message, Processor, StreamApplication, Task, TaskContext, TaskResult};

    struct Nop;
    impl Task for Nop {
        fn on_next(&mut self, _: &mut TaskContext<'_>, _: Message) -> TaskResult {
            Ok(())
        }
    }

    /// Source (1 task) → sink (2 tasks).
    fn supervisor() -> Supervisor {
        let source = Processor::from_fn("Source", 1, |_| Ok(Nop));
        let sink = Processor::from_fn("Sink", 2, |_| Ok(Nop));
        let app = StreamApplication::builder("s").path([&source, &sink]).build().unwrap();
        Supervisor::new(app.dag(), Timestamp(0), 0)
    }

    const SRC: TaskId = TaskId::new(0, 0);
    const SINK0: TaskId = TaskId::new(1, 0);
    const SINK1: TaskId = TaskId::new(1, 1);

    #[test]
    fn clocks_are_answered_and_the_end_of_time_succeeds() {
        let mut s = supervisor();
        // Before the min clock first moves, the source's move is pushed to the sink's tasks.
        let pushed = |t| vec![Action::UpstreamClock(SINK0, t), Action::UpstreamClock(SINK1, t)];
        assert_eq!(s.on_clock(SRC, Timestamp(5)), pushed(Timestamp(5)));
        assert_eq!(s.on_clock(SINK0, Timestamp(3)), vec![Action::UpstreamClock(SINK0, Timestamp(5))]);
        assert_eq!(s.on_clock(SRC, Timestamp::MAX), pushed(Timestamp::MAX));
        assert_eq!(s.on_clock(SINK0, Timestamp::MAX), vec![Action::UpstreamClock(SINK0, Timestamp::MAX)]);
        // The last task reaches the end of time: the min clock moves (and with it the start
        // clock, there being no stateful task), and the application has succeeded.
        assert_eq!(
            s.on_clock(SINK1, Timestamp::MAX),
            vec![Action::UpstreamClock(SINK1, Timestamp::MAX), Action::StartClock(Timestamp::MAX), Action::StopAll]
        );
        assert_eq!(s.ending(), Some(&Ending::Succeeded));
        // After the ending, clocks are ignored.
        assert_eq!(s.on_clock(SINK1, Timestamp(9)), vec![]);
        assert_eq!(s.on_task_stopped(SRC), vec![]);
        assert_eq!(s.on_task_stopped(SINK0), vec![]);
        assert_eq!(s.on_task_stopped(SINK0), vec![], "a task counts once");
        assert_eq!(s.on_task_stopped(SINK1), vec![Action::Done]);
    }

    #[test]
    fn clock_moves_are_pushed_downstream_only_until_the_min_clock_first_moves() {
        // Source (1 task) → middle (1 task) → sink (2 tasks).
        let source = Processor::from_fn("Source", 1, |_| Ok(Nop));
        let middle = Processor::from_fn("Middle", 1, |_| Ok(Nop));
        let sink = Processor::from_fn("Sink", 2, |_| Ok(Nop));
        let app = StreamApplication::builder("s").path([&source, &middle, &sink]).build().unwrap();
        let mut s = Supervisor::new(app.dag(), Timestamp(0), 1);
        let (src, mid, sink0, sink1) = (TaskId::new(0, 0), TaskId::new(1, 0), TaskId::new(2, 0), TaskId::new(2, 1));
        let up = Action::UpstreamClock;
        // After a restart (from 0), each stage's first move reaches the next stage at once.
        assert_eq!(s.on_task_failed(src, "boom"), vec![Action::StopAll]);
        for t in [src, mid, sink0] {
            assert_eq!(s.on_task_stopped(t), vec![]);
        }
        assert!(matches!(s.on_task_stopped(sink1)[..], [Action::Restart { start: Timestamp(0), .. }]));
        // A report that does not move the source's clock pushes nothing.
        assert_eq!(s.on_clock(src, Timestamp(0)), vec![]);
        assert_eq!(s.on_clock(src, Timestamp(7)), vec![up(mid, Timestamp(7))]);
        assert_eq!(
            s.on_clock(mid, Timestamp(7)),
            vec![up(mid, Timestamp(7)), up(sink0, Timestamp(7)), up(sink1, Timestamp(7))]
        );
        assert_eq!(s.on_clock(sink0, Timestamp(7)), vec![up(sink0, Timestamp(7))]);
        assert!(!s.clock().has_moved());
        // The last sink task: the min clock moves (the start clock with it, nothing being stateful).
        assert_eq!(s.on_clock(sink1, Timestamp(7)), vec![up(sink1, Timestamp(7)), Action::StartClock(Timestamp(7))]);
        // From now on reports are answered and nothing is pushed.
        assert_eq!(s.on_clock(src, Timestamp(20)), vec![]);
        assert_eq!(s.on_clock(mid, Timestamp(15)), vec![up(mid, Timestamp(20))]);
    }

    #[test]
    fn a_dag_change_restarts_the_tasks_as_the_new_dag_without_spending_the_budget() {
        let source = Processor::from_fn("Source", 1, |_| Ok(Nop));
        let sink = Processor::from_fn("Sink", 2, |_| Ok(Nop));
        let app = StreamApplication::builder("s").path([&source, &sink]).build().unwrap();
        let mut s = Supervisor::new(app.dag(), Timestamp(0), 0);
        s.on_clock(SRC, Timestamp(9));
        s.on_clock(SINK0, Timestamp(8));
        s.on_clock(SINK1, Timestamp(8));
        let start = s.start_clock();
        assert_eq!(start, Timestamp(8), "without state, the start clock follows the min clock");
        // The sink rescaled to 3 tasks (processor 2) from the start clock.
        let change = gearpump_core::DagChange::Rescale { processor_id: ProcessorId(1), parallelism: 3 };
        let next = app.apply(&change, start).unwrap();
        assert_eq!(s.may_change(), Ok(()));
        assert_eq!(s.on_change(next.dag().clone()), vec![Action::StopAll]);
        assert_eq!(s.may_change(), Err("the application is restarting its tasks"));
        assert_eq!(s.on_change(next.dag().clone()), vec![], "one change at a time");
        assert_eq!(s.on_task_stopped(SRC), vec![]);
        assert_eq!(s.on_task_stopped(SINK0), vec![]);
        let restart = s.on_task_stopped(SINK1);
        assert_eq!(restart, vec![Action::Restart { start, why: "a dynamic DAG change".into() }]);
        assert_eq!(s.restarts(), 0, "a change is not a failure");
        // The new DAG's tasks report; the retired processor's do not hold the clock.
        let new = |i| TaskId::new(2, i);
        s.on_clock(SRC, Timestamp(20));
        assert_eq!(s.on_clock(new(0), Timestamp(15)), vec![Action::UpstreamClock(new(0), Timestamp(20))]);
        s.on_clock(new(1), Timestamp(15));
        assert_eq!(s.clock().min_clock(), Timestamp(8), "task 2 of the new processor has not reported");
        s.on_clock(new(2), Timestamp(16));
        assert_eq!(s.clock().min_clock(), Timestamp(15));
        // A failure while the tasks stop for a change is part of the same restart.
        let mut t = Supervisor::new(app.dag(), Timestamp(0), 1);
        assert_eq!(t.on_change(next.dag().clone()), vec![Action::StopAll]);
        assert_eq!(t.on_task_failed(SINK0, "boom"), vec![]);
        assert_eq!(t.on_tasks_lost(&[SRC, SINK1], "executor lost".into()), vec![]);
        assert_eq!(
            t.on_task_stopped(SINK0),
            vec![Action::Restart { start: Timestamp(0), why: "a dynamic DAG change".into() }]
        );
        assert_eq!(t.may_change(), Ok(()));
        // The budget (0) is untouched: a failure now ends the application.
        assert_eq!(s.on_task_failed(new(1), "boom"), vec![Action::StopAll]);
        assert!(matches!(s.ending(), Some(Ending::Failed(_))));
        assert_eq!(s.may_change(), Err("the application is ending"));
    }

    #[test]
    fn the_first_ending_wins() {
        let cases: Vec<(&str, Ending)> = vec![
            ("fail", Ending::Failed(format!("task {SINK0} failed: boom"))),
            ("kill", Ending::Terminated),
            ("give up", Ending::Failed("no master".into())),
        ];
        for (first, expected) in cases {
            let mut s = supervisor();
            let actions = match first {
                "fail" => s.on_task_failed(SINK0, "boom"),
                "kill" => s.on_kill(),
                _ => s.on_give_up("no master".into()),
            };
            assert_eq!(actions, vec![Action::StopAll], "{first}");
            // Later endings change nothing and stop nothing twice.
            assert_eq!(s.on_kill(), vec![]);
            assert_eq!(s.on_task_failed(SINK1, "later"), vec![]);
            assert_eq!(s.ending(), Some(&expected), "{first}");
            assert_eq!(s.clone().into_ending().status(), expected.status());
        }
    }

    #[test]
    fn lost_tasks_count_as_stopped_and_fail_the_application() {
        let mut s = supervisor();
        assert_eq!(s.on_tasks_lost(&[SINK0, SINK1], "executor 1 was lost".into()), vec![Action::StopAll]);
        assert_eq!(s.on_task_stopped(SRC), vec![Action::Done]);
        assert_eq!(s.into_ending(), Ending::Failed("executor 1 was lost".into()));
        // Losing every task at once ends and finishes in one step.
        let mut s = supervisor();
        assert_eq!(s.on_tasks_lost(&[SRC, SINK0, SINK1], "all gone".into()), vec![Action::StopAll, Action::Done]);
    }

    #[test]
    fn stopping_without_an_ending_is_not_done() {
        let mut s = supervisor();
        for t in [SRC, SINK0, SINK1] {
            assert_eq!(s.on_task_stopped(t), vec![]);
        }
        assert_eq!(s.into_ending(), Ending::Failed("the AppMaster lost its tasks".into()));
    }

    /// Source (1 task) → a stateful count (1 task), restarting up to `retries` times.
    fn stateful(retries: u32) -> Supervisor {
        let source = Processor::from_fn("Source", 1, |_| Ok(Nop));
        let count = Processor::from_fn("Count", 1, |_| Ok(Nop)).stateful();
        let app = StreamApplication::builder("s").path([&source, &count]).build().unwrap();
        Supervisor::new(app.dag(), Timestamp(0), retries)
    }

    const COUNT: TaskId = TaskId::new(1, 0);

    #[test]
    fn failures_restart_every_task_from_the_start_clock_within_the_budget() {
        let mut s = stateful(2);
        s.on_clock(SRC, Timestamp(2500));
        assert_eq!(s.on_clock(COUNT, Timestamp(2500)), vec![Action::UpstreamClock(COUNT, Timestamp(2500))]);
        // The count checkpoints at 1000 and 2000; the checkpoint at 2000 is complete and the
        // start clock follows once the min clock has passed them.
        s.on_checkpoint(COUNT, Timestamp(1000));
        s.on_checkpoint(COUNT, Timestamp(2000));
        assert_eq!(
            s.on_clock(COUNT, Timestamp(2600)),
            vec![
                Action::UpstreamClock(COUNT, Timestamp(2500)),
                Action::CheckpointComplete(Timestamp(2000)),
                Action::StartClock(Timestamp(2000))
            ]
        );
        // A task fails: every task stops, then all restart from 2000.
        assert_eq!(s.on_task_failed(COUNT, "boom"), vec![Action::StopAll]);
        assert_eq!(s.on_task_failed(SRC, "also"), vec![], "one recovery at a time");
        assert_eq!(s.on_clock(SRC, Timestamp(9000)), vec![], "clocks of stopping tasks are ignored");
        assert_eq!(s.on_task_stopped(COUNT), vec![]);
        assert_eq!(
            s.on_task_stopped(SRC),
            vec![Action::Restart { start: Timestamp(2000), why: format!("task {COUNT} failed: boom") }]
        );
        assert_eq!(s.restarts(), 1);
        // The new incarnation's clock starts at the start clock.
        assert_eq!(s.clock().min_clock(), Timestamp(2000));
        assert_eq!(s.on_clock(COUNT, Timestamp(2100)), vec![Action::UpstreamClock(COUNT, Timestamp(2000))]);
        // A lost executor is a failure too; its tasks count as stopped.
        assert_eq!(s.on_tasks_lost(&[SRC], "executor 0 was lost".into()), vec![Action::StopAll]);
        assert_eq!(
            s.on_task_stopped(COUNT),
            vec![Action::Restart { start: Timestamp(2000), why: "executor 0 was lost".into() }]
        );
        // The budget is spent: the next failure ends the application.
        assert_eq!(s.on_task_failed(SRC, "again"), vec![Action::StopAll]);
        assert_eq!(s.ending(), Some(&Ending::Failed(format!("task {SRC} failed: again (after 2 restarts)"))));
        assert_eq!(s.on_task_stopped(SRC), vec![]);
        assert_eq!(s.on_task_stopped(COUNT), vec![Action::Done]);
    }

    #[test]
    fn a_replay_restarts_from_the_start_clock_without_spending_the_budget() {
        let mut s = stateful(0);
        s.on_checkpoint(COUNT, Timestamp(1000));
        s.on_clock(SRC, Timestamp(1500));
        s.on_clock(COUNT, Timestamp(1500));
        assert_eq!(s.start_clock(), Timestamp(1000));
        assert_eq!(s.on_replay(), vec![Action::StopAll]);
        assert_eq!(s.on_replay(), vec![], "one at a time");
        assert_eq!(s.on_task_stopped(SRC), vec![]);
        let why = "a replay was requested".to_string();
        assert_eq!(s.on_task_stopped(COUNT), vec![Action::Restart { start: Timestamp(1000), why }]);
        // With no budget at all, a failure still ends it: the replay spent nothing.
        assert_eq!(s.on_task_failed(SRC, "x"), vec![Action::StopAll]);
        assert!(matches!(s.ending(), Some(Ending::Failed(_))));
    }

    #[test]
    fn a_kill_during_a_recovery_ends_once_the_tasks_have_stopped() {
        let mut s = stateful(5);
        assert_eq!(s.on_task_failed(SRC, "boom"), vec![Action::StopAll]);
        assert_eq!(s.on_task_stopped(SRC), vec![]);
        assert_eq!(s.on_kill(), vec![], "the tasks are stopping already");
        assert_eq!(s.on_task_stopped(COUNT), vec![Action::Done]);
        assert_eq!(s.into_ending(), Ending::Terminated);
        // Killed while the tasks of a lost executor are being replaced.
        let mut s = stateful(5);
        assert_eq!(s.on_tasks_lost(&[SRC], "x".into()), vec![Action::StopAll]);
        assert_eq!(s.on_kill(), vec![]);
        assert_eq!(s.on_task_stopped(COUNT), vec![Action::Done]);
    }

    /// Runs `s` (source and count) to the end of time: it has succeeded and stops its tasks.
    fn to_the_end(s: &mut Supervisor) {
        s.on_clock(SRC, Timestamp::MAX);
        let actions = s.on_clock(COUNT, Timestamp::MAX);
        assert!(actions.contains(&Action::StopAll), "{actions:?}");
        assert_eq!(s.ending(), Some(&Ending::Succeeded));
    }

    #[test]
    fn a_task_lost_before_it_stopped_at_the_end_recovers_instead_of_succeeding() {
        // The count's executor dies after the last message, before its `on_stop` ran: what it
        // writes at the end would be missing. The tasks restart from the start clock.
        let mut s = stateful(1);
        to_the_end(&mut s);
        assert_eq!(s.on_task_stopped(SRC), vec![]);
        let actions = s.on_tasks_lost(&[COUNT], "executor 1 was lost".into());
        assert_eq!(
            actions,
            vec![Action::Restart {
                start: Timestamp(0),
                why: "executor 1 was lost, while the application was ending".into()
            }]
        );
        assert_eq!(s.ending(), None);
        // The next end succeeds.
        to_the_end(&mut s);
        assert_eq!(s.on_task_stopped(SRC), vec![]);
        assert_eq!(s.on_task_stopped(COUNT), vec![Action::Done]);
        assert_eq!(s.into_ending(), Ending::Succeeded);
    }

    #[test]
    fn a_task_lost_after_it_stopped_changes_nothing() {
        let mut s = stateful(1);
        to_the_end(&mut s);
        assert_eq!(s.on_task_stopped(COUNT), vec![]);
        assert_eq!(s.on_tasks_lost(&[COUNT], "executor 1 was lost".into()), vec![], "it had stopped");
        assert_eq!(s.on_task_stopped(SRC), vec![Action::Done]);
        assert_eq!(s.into_ending(), Ending::Succeeded);
    }

    #[test]
    fn a_task_lost_at_the_end_with_the_budget_spent_fails_the_application() {
        let mut s = stateful(0);
        to_the_end(&mut s);
        assert_eq!(s.on_tasks_lost(&[COUNT], "executor 1 was lost".into()), vec![]);
        assert_eq!(s.on_task_stopped(SRC), vec![Action::Done]);
        assert_eq!(s.into_ending(), Ending::Failed("executor 1 was lost, while the application was ending".into()));
    }

    #[test]
    fn a_task_that_does_not_stop_in_time_is_given_up() {
        let t0 = Instant::now();
        let secs = |n: u64| t0 + Duration::from_secs(n);
        // A recovery: the count hangs in `on_stop`; past the timeout the tasks restart anyway.
        let mut s = stateful(1).with_stop_timeout(Duration::from_secs(10));
        assert_eq!(s.on_tick(t0), vec![], "nothing is stopping");
        assert_eq!(s.on_task_failed(SRC, "boom"), vec![Action::StopAll]);
        assert_eq!(s.on_task_stopped(SRC), vec![]);
        assert_eq!(s.on_tick(secs(1)), vec![], "the timeout counts from the first tick");
        assert_eq!(s.on_tick(secs(10)), vec![]);
        let actions = s.on_tick(secs(11));
        assert_eq!(actions.len(), 1, "{actions:?}");
        assert!(matches!(&actions[0], Action::Restart { .. }), "{actions:?}");
        // The timeout starts afresh for the next stop.
        assert_eq!(s.on_tick(secs(12)), vec![]);
        to_the_end(&mut s);
        assert_eq!(s.on_tick(secs(13)), vec![]);
        assert_eq!(s.on_task_stopped(COUNT), vec![]);
        // The source's `close` hangs at the end, and the budget is spent: the application
        // fails naming it rather than succeed without what it writes last.
        assert_eq!(s.on_tick(secs(23)), vec![Action::Done]);
        let Ending::Failed(why) = s.into_ending() else { panic!("not failed") };
        assert!(why.contains("TaskId(processorId=0, index=0) did not stop within 10s"), "{why}");
        // A kill whose tasks do not stop ends as killed.
        let mut s = stateful(5).with_stop_timeout(Duration::from_secs(1));
        assert_eq!(s.on_kill(), vec![Action::StopAll]);
        assert_eq!(s.on_tick(secs(0)), vec![]);
        assert_eq!(s.on_tick(secs(1)), vec![Action::Done]);
        assert_eq!(s.into_ending(), Ending::Terminated);
    }
}
