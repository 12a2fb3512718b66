//! The AppMaster of a streaming application: asks the master for slots, places the tasks on
//! executors, runs the clock service, and decides when the application has succeeded, failed
//! or been killed.

use crate::executor::{DataPlane, Deployment, Executor, LaunchSpec, Runtime};
use crate::supervisor::{Action, Supervisor};
use crate::task::TaskEvent;
use gearpump_api::{StartTime, StreamApplication};
use gearpump_clock::ClockService;
use gearpump_core::{AppId, ExecutorId, ProcessorId, TaskId, Timestamp, WorkerId};
use gearpump_transport::flow::FlowConfig;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub use gearpump_core::AppStatus;

/// One task's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskStats {
    /// The task.
    pub task: TaskId,
    /// Messages received from upstream.
    pub received: u64,
    /// Messages sent downstream (once per target).
    pub sent: u64,
    /// The most input messages it ever had queued.
    pub max_queued: u64,
    /// The most un-acked messages to one downstream task it ever had.
    pub max_pending: u64,
    /// Its last reported min clock.
    pub clock: Timestamp,
    /// Receive latency of its input, if it has any.
    pub latency: Option<Latency>,
}

/// Receive-latency percentiles: from a batch's flush at the sender to its processing here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latency {
    /// Samples (one per batch of up to `ack_once_every` messages).
    pub samples: u64,
    /// Median, in microseconds.
    pub p50_us: u64,
    /// 99th percentile, in microseconds.
    pub p99_us: u64,
    /// 99.9th percentile, in microseconds.
    pub p999_us: u64,
}

/// One processor's counters, summed over its tasks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessorStats {
    /// The processor.
    pub id: ProcessorId,
    /// Its task type.
    pub task_type: String,
    /// Messages its tasks received.
    pub received: u64,
    /// Messages its tasks sent.
    pub sent: u64,
    /// Per task.
    pub tasks: Vec<TaskStats>,
}

/// Where an executor runs and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutorSummary {
    /// Its id.
    pub id: ExecutorId,
    /// Its worker.
    pub worker: WorkerId,
    /// Its tasks.
    pub tasks: Vec<TaskId>,
}

/// A snapshot of a running (or finished) application.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppStats {
    /// The application min clock.
    pub min_clock: Option<Timestamp>,
    /// Per processor.
    pub processors: Vec<ProcessorStats>,
    /// The executors.
    pub executors: Vec<ExecutorSummary>,
}

/// What an AppMaster asks of, or tells, the master.
#[derive(Debug)]
pub enum ToMaster {
    /// Asks for `slots` slots; the answer is a list of (worker, slots on it).
    RequestResources {
        /// The application.
        app_id: AppId,
        /// Slots wanted.
        slots: u32,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Vec<(WorkerId, u32)>, String>>,
    },
    /// The periodic report: the application's runtime description and metrics.
    Report {
        /// The application.
        app_id: AppId,
        /// When, ms since the epoch.
        time: i64,
        /// DAG, executors, clock, stalling tasks.
        runtime: Box<gearpump_protocol::AppRuntime>,
        /// Metrics (empty unless enabled).
        metrics: Vec<gearpump_metrics::Metric>,
    },
    /// The application's status changed. A terminal status also releases its slots.
    Status {
        /// The application.
        app_id: AppId,
        /// Its new status.
        status: AppStatus,
        /// The error behind a failure.
        error: Option<String>,
    },
}

/// Commands to a running AppMaster.
#[derive(Debug)]
pub enum AppMasterCommand {
    /// Stop every task and end as `terminated`.
    Kill,
    /// Restart every task from the start clock (`gear replay`, REST `appmaster/<id>/replay`).
    Replay,
}

/// Everything an AppMaster needs to run.
pub struct AppMasterSpec {
    /// The application's id.
    pub app_id: AppId,
    /// The application.
    pub app: StreamApplication,
    /// The process runtime its tasks run on.
    pub runtime: Runtime,
    /// Flow-control settings.
    pub flow: FlowConfig,
    /// The data plane between executors.
    pub data_plane: DataPlane,
    /// How often tasks report their clocks (100 ms).
    pub clock_interval: Duration,
    /// Where it reports to the master.
    pub to_master: mpsc::UnboundedSender<ToMaster>,
    /// Where it publishes its stats.
    pub stats: Arc<Mutex<AppStats>>,
    /// Metric settings.
    pub metrics: crate::MetricsConfig,
    /// How many times tasks are restarted after failures before the application fails
    /// (`gearpump.application.total-retries`, 5).
    pub total_retries: u32,
    /// How long tasks may take to stop (`gearpump.application.stop-timeout-ms`, 30 s).
    pub stop_timeout: std::time::Duration,
}

/// Starts an AppMaster on the current tokio runtime; returns its command channel.
pub fn spawn(spec: AppMasterSpec) -> mpsc::UnboundedSender<AppMasterCommand> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(spec, rx));
    tx
}

/// Config key: ask for an Ack after this many messages to one task.
pub const ACK_ONCE_EVERY_KEY: &str = "gearpump.streaming.ack-once-every-message-count";
/// Config key: stop taking input while this many messages to one task are un-acked.
pub const MAX_PENDING_KEY: &str = "gearpump.streaming.max-pending-message-count-per-connection";

/// The cluster's flow settings with the application config's overrides on top.
pub fn flow_from_config(
    config: &gearpump_core::UserConfig,
    base: FlowConfig,
) -> Result<FlowConfig, gearpump_core::ConfigError> {
    let flow = FlowConfig {
        ack_once_every: config.get_or(ACK_ONCE_EVERY_KEY, base.ack_once_every)?,
        max_pending: config.get_or(MAX_PENDING_KEY, base.max_pending)?,
    };
    for (key, value) in [(ACK_ONCE_EVERY_KEY, flow.ack_once_every), (MAX_PENDING_KEY, flow.max_pending)] {
        if value == 0 {
            return Err(gearpump_core::ConfigError {
                key: key.to_string(),
                value: "0".into(),
                expected: "a positive count",
                reason: "must be at least 1".into(),
            });
        }
    }
    Ok(flow)
}

/// How often an AppMaster reports its runtime and metrics to the master (what the dashboard
/// shows live; reporters send on their own `report-interval-ms`).
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Builds an AppMaster's periodic report: the runtime description with the clock, executors
/// and stalling tasks, and the metrics if enabled.
#[derive(Debug)]
pub struct Reporter {
    base: gearpump_protocol::AppRuntime,
    collector: Option<crate::MetricsCollector>,
    health: gearpump_clock::HealthCheck,
}

impl Reporter {
    /// A reporter for `app`; `metrics` turns metric collection on.
    pub fn new(app_id: AppId, app: &StreamApplication, metrics: bool) -> Self {
        Reporter {
            base: crate::metrics::describe(app),
            collector: metrics.then(|| crate::MetricsCollector::new(app_id)),
            health: gearpump_clock::HealthCheck::default(),
        }
    }

    /// The report now.
    pub fn report(
        &mut self,
        tasks: &[gearpump_protocol::TaskCounters],
        processes: &[(i32, gearpump_protocol::ProcessGauges)],
        min_clock: Timestamp,
        executors: Vec<gearpump_protocol::ExecutorInfo>,
    ) -> (i64, Box<gearpump_protocol::AppRuntime>, Vec<gearpump_metrics::Metric>) {
        let now = Timestamp::now().0;
        let clocks: Vec<(TaskId, Timestamp)> =
            tasks.iter().map(|c| (TaskId::from_u64(c.task), Timestamp(c.clock))).collect();
        let stalling = self.health.check(now, min_clock, &clocks);
        let runtime = gearpump_protocol::AppRuntime {
            clock: min_clock.0,
            executors,
            stalling: stalling.iter().map(|t| t.to_u64()).collect(),
            ..self.base.clone()
        };
        let metrics = match &mut self.collector {
            Some(c) => c.collect(now, tasks, processes, min_clock),
            None => Vec::new(),
        };
        (now, Box::new(runtime), metrics)
    }
}

/// Places tasks round robin over executors, each up to its slots, processor by processor.
pub fn place(app: &StreamApplication, allocation: &[(WorkerId, u32)]) -> Vec<Executor> {
    let mut executors: Vec<(Executor, u32)> = allocation
        .iter()
        .enumerate()
        .map(|(i, &(worker, slots))| (Executor { id: ExecutorId(i as i32), worker, tasks: Vec::new() }, slots))
        .collect();
    let mut next = 0;
    let n = executors.len();
    for p in app.dag().processors() {
        for index in 0..p.parallelism {
            // Total slots equal total tasks, so a free executor always exists.
            while executors[next % n].1 == 0 {
                next += 1;
            }
            let (ex, free) = &mut executors[next % n];
            ex.tasks.push(TaskId { processor: p.id, index });
            *free -= 1;
            next += 1;
        }
    }
    executors.into_iter().map(|(e, _)| e).collect()
}

fn snapshot(app: &StreamApplication, deployment: &Deployment, clock: &ClockService) -> AppStats {
    let mut processors: Vec<ProcessorStats> = app
        .dag()
        .processors()
        .iter()
        .map(|p| ProcessorStats { id: p.id, task_type: p.task_type.clone(), received: 0, sent: 0, tasks: Vec::new() })
        .collect();
    for cell in deployment.cells() {
        let c = cell.counters();
        let s = TaskStats {
            task: cell.id(),
            received: c.received.load(Ordering::Relaxed),
            sent: c.sent.load(Ordering::Relaxed),
            max_queued: c.max_queued.load(Ordering::Relaxed),
            max_pending: c.max_pending.load(Ordering::Relaxed),
            clock: Timestamp(c.clock.load(Ordering::Relaxed)),
            latency: match c.latency_samples.load(Ordering::Relaxed) {
                0 => None,
                samples => Some(Latency {
                    samples,
                    p50_us: c.latency_p50_us.load(Ordering::Relaxed),
                    p99_us: c.latency_p99_us.load(Ordering::Relaxed),
                    p999_us: c.latency_p999_us.load(Ordering::Relaxed),
                }),
            },
        };
        let p = &mut processors[cell.id().processor.0 as usize];
        p.received += s.received;
        p.sent += s.sent;
        p.tasks.push(s);
    }
    for p in &mut processors {
        p.tasks.sort_by_key(|t| t.task);
    }
    AppStats {
        min_clock: Some(clock.min_clock()),
        processors,
        executors: deployment
            .executors
            .iter()
            .map(|e| ExecutorSummary { id: e.id, worker: e.worker, tasks: e.tasks.clone() })
            .collect(),
    }
}

async fn run(spec: AppMasterSpec, mut commands: mpsc::UnboundedReceiver<AppMasterCommand>) {
    let AppMasterSpec {
        app_id,
        app,
        runtime,
        flow,
        data_plane,
        clock_interval,
        to_master,
        stats,
        metrics,
        total_retries,
        stop_timeout,
    } = spec;
    let report = |status: AppStatus, error: Option<String>| {
        let _ = to_master.send(ToMaster::Status { app_id, status, error });
    };
    let dag = app.dag();
    let total = dag.task_count();

    let (reply, mut answer) = oneshot::channel();
    if to_master.send(ToMaster::RequestResources { app_id, slots: total, reply }).is_err() {
        return;
    }
    // Too few free slots: the master answers once it grants them; a kill meanwhile ends it.
    let answer = loop {
        tokio::select! {
            answer = &mut answer => break answer,
            command = commands.recv() => match command {
                Some(AppMasterCommand::Kill) | None => return report(AppStatus::Terminated, None),
                Some(_) => {}
            },
        }
    };
    let allocation = match answer {
        Ok(Ok(allocation)) => allocation,
        Ok(Err(error)) => return report(AppStatus::Failed, Some(error)),
        Err(_) => return,
    };
    let flow = match flow_from_config(app.config(), flow) {
        Ok(flow) => flow,
        Err(e) => return report(AppStatus::Failed, Some(e.to_string())),
    };
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let start = Timestamp(0);
    // A new application: checkpoints left under its id (an earlier run) are not its own.
    let checkpoints = match crate::state::checkpoint_store(app_id, &app) {
        Ok(store) => store,
        Err(e) => return report(AppStatus::Failed, Some(e.to_string())),
    };
    if let Some(Err(e)) = checkpoints.as_ref().map(gearpump_storage::CheckpointStore::clear) {
        return report(AppStatus::Failed, Some(format!("clearing old checkpoints: {e}")));
    }
    let state: Option<std::sync::Arc<dyn gearpump_api::StateStore>> = checkpoints.clone().map(|store| {
        std::sync::Arc::new(crate::state::TaskStates::new(store, events_tx.clone(), start)) as std::sync::Arc<_>
    });
    let launch = |attempt: u32| {
        let spec = LaunchSpec {
            runtime: &runtime,
            app_id,
            flow,
            // Each incarnation of the tasks has its own session, so nothing of an earlier one
            // is taken for theirs.
            session: app_id.0.wrapping_mul(2_654_435_761) ^ (attempt.wrapping_mul(0x9e37_79b9) | 1),
            events: &events_tx,
            data_plane: data_plane.clone(),
            codecs: std::sync::Arc::new(app.codecs().clone()),
            sample_rate: metrics.task_sample_rate(),
            state: state.clone(),
        };
        Deployment::launch(&spec, &app, place(&app, &allocation))
    };
    let mut deployment = match launch(0) {
        Ok(d) => d,
        Err(e) => return report(AppStatus::Failed, Some(e.to_string())),
    };
    let mut supervisor = Supervisor::new(dag, start, total_retries).with_stop_timeout(stop_timeout);
    deployment.start(StartTime(start));
    *stats.lock() = snapshot(&app, &deployment, supervisor.clock());
    report(AppStatus::Active, None);

    let mut tick = tokio::time::interval(clock_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut commands_open = true;
    let mut reporter = Reporter::new(app_id, &app, metrics.enabled);
    let executors: Vec<gearpump_protocol::ExecutorInfo> = deployment
        .executors
        .iter()
        .map(|e| gearpump_protocol::ExecutorInfo {
            id: e.id.0,
            worker: e.worker,
            pid: std::process::id(),
            host: "127.0.0.1".into(),
            tasks: e.tasks.iter().map(|t| t.to_u64()).collect(),
            status: "active".into(),
        })
        .collect();
    let mut last_report = std::time::Instant::now() - REPORT_EVERY;
    loop {
        let actions = tokio::select! {
            _ = tick.tick() => {
                if supervisor.ending().is_none() {
                    deployment.tick();
                }
                *stats.lock() = snapshot(&app, &deployment, supervisor.clock());
                if last_report.elapsed() >= REPORT_EVERY {
                    last_report = std::time::Instant::now();
                    let gauges = gearpump_protocol::ProcessGauges::of_this_process();
                    let processes: Vec<_> = executors.iter().map(|e| (e.id, gauges)).collect();
                    let min_clock = supervisor.clock().min_clock();
                    let (time, mut runtime, metrics) =
                        reporter.report(&deployment.counters(), &processes, min_clock, executors.clone());
                    runtime.start_clock = supervisor.start_clock().0;
                    runtime.restarts = supervisor.restarts();
                    let _ = to_master.send(ToMaster::Report { app_id, time, runtime, metrics });
                }
                supervisor.on_tick(std::time::Instant::now())
            }
            event = events.recv() => match event {
                Some(TaskEvent::Clock { task, clock }) => supervisor.on_clock(task, clock),
                Some(TaskEvent::Failed { task, error }) => supervisor.on_task_failed(task, &error),
                Some(TaskEvent::Stopped { task }) => supervisor.on_task_stopped(task),
                Some(TaskEvent::Checkpointed { task, time }) => supervisor.on_checkpoint(task, time),
                None => break,
            },
            command = commands.recv(), if commands_open => {
                // A replay restarts the tasks; a kill, or every handle dropped, ends the application.
                match command {
                    Some(AppMasterCommand::Replay) => supervisor.on_replay(),
                    Some(AppMasterCommand::Kill) | None => {
                        commands_open = command.is_some();
                        supervisor.on_kill()
                    }
                }
            }
        };
        let mut done = false;
        for action in actions {
            match action {
                Action::UpstreamClock(task, clock) => deployment.upstream_clock(task, clock),
                Action::StopAll => deployment.stop(),
                Action::Restart { start, why } => {
                    tracing::warn!(%app_id, %start, %why, restart = supervisor.restarts(), "Restarting every task from the start clock.");
                    deployment.clear();
                    deployment = match launch(supervisor.restarts()) {
                        Ok(d) => d,
                        Err(e) => {
                            report(AppStatus::Failed, Some(format!("restarting after {why}: {e}")));
                            return;
                        }
                    };
                    deployment.start(StartTime(start));
                }
                Action::CheckpointComplete(time) => deployment.checkpoint_complete(time),
                Action::StartClock(clock) => {
                    if let Some(store) = &checkpoints {
                        crate::state::prune_checkpoints(store, dag, clock);
                    }
                }
                Action::Done => done = true,
            }
        }
        if done {
            break;
        }
    }
    *stats.lock() = snapshot(&app, &deployment, supervisor.clock());
    deployment.clear();
    let ending = supervisor.into_ending();
    report(ending.status(), ending.error().map(str::to_string));
}

#[cfg(test)]
mod tests {
    use super::*;
    use gearpump_api::{Message, Processor, Task, TaskContext, TaskResult};

    struct Nop;
    impl Task for Nop {
        fn on_next(&mut self, _: &mut TaskContext<'_>, _: Message) -> TaskResult {
            Ok(())
        }
    }

    #[test]
    fn application_config_overrides_flow_settings_and_names_bad_keys() {
        let base = FlowConfig::default();
        let conf = gearpump_core::UserConfig::empty().with(ACK_ONCE_EVERY_KEY, 10);
        assert_eq!(flow_from_config(&conf, base).unwrap(), FlowConfig { ack_once_every: 10, max_pending: 1000 });
        let bad = gearpump_core::UserConfig::empty().with(MAX_PENDING_KEY, "lots");
        assert_eq!(flow_from_config(&bad, base).unwrap_err().key, MAX_PENDING_KEY);
        let zero = gearpump_core::UserConfig::empty().with(ACK_ONCE_EVERY_KEY, 0);
        assert_eq!(flow_from_config(&zero, base).unwrap_err().key, ACK_ONCE_EVERY_KEY);
    }

    #[test]
    fn placement_spreads_each_processor_over_executors_within_slots() {
        let a = Processor::from_fn("A", 3, |_| Ok(Nop));
        let b = Processor::from_fn("B", 2, |_| Ok(Nop));
        let app = StreamApplication::builder("x").path([&a, &b]).build().unwrap();
        let placed = place(&app, &[(WorkerId(1), 2), (WorkerId(2), 3)]);
        let tasks: Vec<Vec<TaskId>> = placed.iter().map(|e| e.tasks.clone()).collect();
        assert_eq!(
            tasks,
            vec![
                vec![TaskId::new(0, 0), TaskId::new(0, 2)],
                vec![TaskId::new(0, 1), TaskId::new(1, 0), TaskId::new(1, 1)],
            ]
        );
    }
}
