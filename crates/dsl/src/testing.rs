//! Driving operators in unit tests: a task context with no runtime behind it, and a collector
//! that records what reaches it.

use crate::chain::{Collector, Control, Cx};
use gearpump_api::{TaskContext, TaskInfo, TaskIo, TaskResult, TimerId};
use gearpump_core::{AppId, Message, ProcessorId, TaskId, Timestamp, UserConfig};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A runtime that does nothing but hand out timer ids.
#[derive(Default)]
pub(crate) struct NoIo {
    timers: u64,
}

impl TaskIo for NoIo {
    fn output(&mut self, _msg: Message) {}
    fn send_self(&mut self, _msg: Message) {}
    fn schedule(&mut self, _delay: Duration, _interval: Option<Duration>) -> TimerId {
        self.timers += 1;
        TimerId(self.timers)
    }
    fn cancel(&mut self, _timer: TimerId) {}
    fn upstream_min_clock(&self) -> Timestamp {
        Timestamp::MIN
    }
    fn is_backpressured(&self) -> bool {
        false
    }
}

pub(crate) fn info() -> TaskInfo {
    TaskInfo {
        task_id: TaskId { processor: ProcessorId(0), index: 0 },
        parallelism: 1,
        app_id: AppId(1),
        app_name: "test".into(),
        description: "test".into(),
        config: Arc::new(UserConfig::empty()),
        predecessor: None,
    }
}

/// Runs `f` with an operator context whose checkpoint time is `checkpoint`.
pub(crate) fn with_cx<R>(checkpoint: Timestamp, f: impl FnOnce(&mut Cx<'_, '_>) -> R) -> R {
    let info = info();
    let mut io = NoIo::default();
    let mut ctx = TaskContext::new(&info, &mut io);
    let mut cx = Cx { ctx: &mut ctx, checkpoint };
    f(&mut cx)
}

/// Records the values that reach it, with their timestamps.
pub(crate) struct Record<T>(pub(crate) Arc<Mutex<Vec<(T, Timestamp)>>>);

impl<T: Send> Collector<T> for Record<T> {
    fn collect(&mut self, _cx: &mut Cx<'_, '_>, value: T, time: Timestamp) -> TaskResult {
        self.0.lock().expect("not poisoned").push((value, time));
        Ok(())
    }

    fn control(&mut self, _cx: &mut Cx<'_, '_>, _event: &mut Control<'_>) -> TaskResult {
        Ok(())
    }
}
