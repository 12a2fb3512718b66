//! How a running application ends, decided by a pure state machine.
//!
//! Both AppMasters (the embedded one, with tasks in this process, and the distributed one, with
//! executor processes) feed a [`Supervisor`] what happens to the tasks and execute the
//! [`Action`]s it returns. It owns the application's [`ClockService`]: every task clock report
//! is answered with the task's upstream min clock, and when the min clock reaches the end of
//! time the application has succeeded. A failed task, lost tasks, a kill or giving up end it
//! otherwise. The first ending wins; then every task is stopped, and once all have stopped (or
//! were lost) the application is done.

use crate::appmaster::AppStatus;
use gearpump_api::Dag;
use gearpump_clock::ClockService;
use gearpump_core::{ProcessorId, TaskId, Timestamp};

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
    /// Every task has stopped: report [`Supervisor::ending`] and finish.
    Done,
}

/// The outcome logic of an AppMaster. See the module docs.
#[derive(Debug, Clone)]
pub struct Supervisor {
    clock: ClockService,
    tasks: u32,
    stopped: u32,
    ending: Option<Ending>,
}

impl Supervisor {
    /// A supervisor for `dag`'s tasks, all starting at `start`.
    pub fn new(dag: &Dag, start: Timestamp) -> Self {
        let parallelism: Vec<u32> = dag.processors().iter().map(|p| p.parallelism).collect();
        let edges: Vec<(ProcessorId, ProcessorId)> = dag.edges().iter().map(|e| (e.from, e.to)).collect();
        Supervisor {
            clock: ClockService::new(&parallelism, &edges, start),
            tasks: dag.task_count(),
            stopped: 0,
            ending: None,
        }
    }

    /// A task reported its min clock.
    pub fn on_clock(&mut self, task: TaskId, clock: Timestamp) -> Vec<Action> {
        if self.ending.is_some() {
            return Vec::new();
        }
        let mut actions: Vec<Action> =
            self.clock.report(task, clock).map(|up| Action::UpstreamClock(task, up)).into_iter().collect();
        if self.clock.is_finished() {
            actions.extend(self.end(Ending::Succeeded));
        }
        actions
    }

    /// A task failed.
    pub fn on_task_failed(&mut self, task: TaskId, error: &str) -> Vec<Action> {
        self.end(Ending::Failed(format!("task {task} failed: {error}")))
    }

    /// A task stopped.
    pub fn on_task_stopped(&mut self) -> Vec<Action> {
        self.stopped += 1;
        self.done_if_all_stopped()
    }

    /// `count` tasks are gone without stopping (their executor was lost).
    pub fn on_tasks_lost(&mut self, count: u32, why: String) -> Vec<Action> {
        self.stopped += count;
        let mut actions = self.end(Ending::Failed(why));
        actions.extend(self.done_if_all_stopped());
        actions
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
        vec![Action::StopAll]
    }

    fn done_if_all_stopped(&self) -> Vec<Action> {
        if self.ending.is_some() && self.stopped >= self.tasks { vec![Action::Done] } else { Vec::new() }
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
        Supervisor::new(app.dag(), Timestamp(0))
    }

    const SRC: TaskId = TaskId::new(0, 0);
    const SINK0: TaskId = TaskId::new(1, 0);
    const SINK1: TaskId = TaskId::new(1, 1);

    #[test]
    fn clocks_are_answered_and_the_end_of_time_succeeds() {
        let mut s = supervisor();
        assert_eq!(s.on_clock(SRC, Timestamp(5)), vec![]);
        assert_eq!(s.on_clock(SINK0, Timestamp(3)), vec![Action::UpstreamClock(SINK0, Timestamp(5))]);
        assert_eq!(s.on_clock(SRC, Timestamp::MAX), vec![]);
        assert_eq!(s.on_clock(SINK0, Timestamp::MAX), vec![Action::UpstreamClock(SINK0, Timestamp::MAX)]);
        assert_eq!(
            s.on_clock(SINK1, Timestamp::MAX),
            vec![Action::UpstreamClock(SINK1, Timestamp::MAX), Action::StopAll]
        );
        assert_eq!(s.ending(), Some(&Ending::Succeeded));
        // After the ending, clocks are ignored.
        assert_eq!(s.on_clock(SINK1, Timestamp(9)), vec![]);
        assert_eq!(s.on_task_stopped(), vec![]);
        assert_eq!(s.on_task_stopped(), vec![]);
        assert_eq!(s.on_task_stopped(), vec![Action::Done]);
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
        assert_eq!(s.on_tasks_lost(2, "executor 1 was lost".into()), vec![Action::StopAll]);
        assert_eq!(s.on_task_stopped(), vec![Action::Done]);
        assert_eq!(s.into_ending(), Ending::Failed("executor 1 was lost".into()));
        // Losing every task at once ends and finishes in one step.
        let mut s = supervisor();
        assert_eq!(s.on_tasks_lost(3, "all gone".into()), vec![Action::StopAll, Action::Done]);
    }

    #[test]
    fn stopping_without_an_ending_is_not_done() {
        let mut s = supervisor();
        for _ in 0..3 {
            assert_eq!(s.on_task_stopped(), vec![]);
        }
        assert_eq!(s.into_ending(), Ending::Failed("the AppMaster lost its tasks".into()));
    }
}
