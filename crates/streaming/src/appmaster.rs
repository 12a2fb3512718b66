//! The AppMaster of a streaming application: asks the master for slots, places the tasks on
//! executors, runs the clock service, and decides when the application has succeeded, failed
//! or been killed.
//!
//! [`supervise`] is the one AppMaster loop: it drives a [`Supervisor`] over an [`Executors`]
//! implementation and carries out its actions. This module's own implementation runs every
//! task in this process (the embedded cluster, [`spawn`]); `gearpump_cluster::remote` has the
//! one for executor processes on a real cluster.

use crate::executor::{DataPlane, Deployment, Executor, LaunchSpec, Runtime};
use crate::supervisor::{Action, Ending, Supervisor};
use crate::task::TaskEvent;
use gearpump_api::{StartTime, StreamApplication};
use gearpump_core::{AppId, ExecutorId, ProcessorId, TaskId, Timestamp, WorkerId};
use gearpump_protocol::{Locality, MasterReply, MasterRequest};
use gearpump_transport::flow::FlowConfig;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
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

/// A request of an AppMaster in this process to its master, with where the answer goes.
pub type MasterAsk = (AppId, MasterRequest, oneshot::Sender<MasterReply>);

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
    /// Where its requests to the master go (slots, status, reports).
    pub requests: mpsc::UnboundedSender<MasterAsk>,
    /// What the master pushes to it: a grant of slots it waits for, a kill, a replay.
    pub pushes: mpsc::UnboundedReceiver<MasterReply>,
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

/// Starts an AppMaster on the current tokio runtime.
pub fn spawn(spec: AppMasterSpec) {
    tokio::spawn(run(spec));
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
    /// Each edge's back-pressure (ns, all upstream tasks) at the last report, and its time.
    blocked: (i64, HashMap<(u32, u32), u64>),
}

impl Reporter {
    /// A reporter for `app`; `metrics` turns metric collection on.
    pub fn new(app_id: AppId, app: &StreamApplication, metrics: bool) -> Self {
        Reporter {
            base: crate::metrics::describe(app),
            collector: metrics.then(|| crate::MetricsCollector::new(app_id)),
            health: gearpump_clock::HealthCheck::default(),
            blocked: (0, HashMap::new()),
        }
    }

    /// Each edge's share of time back-pressured since the last report, in thousandths.
    fn back_pressure(
        &mut self,
        now: i64,
        tasks: &[gearpump_protocol::TaskCounters],
    ) -> Vec<gearpump_protocol::EdgeInfo> {
        let mut totals: HashMap<(u32, u32), u64> = HashMap::new();
        let mut upstream_tasks: HashMap<u32, u64> = HashMap::new();
        for c in tasks {
            *upstream_tasks.entry(c.task.processor.0).or_default() += 1;
            for (to, ns) in &c.edges_blocked_ns {
                *totals.entry((c.task.processor.0, *to)).or_default() += ns;
            }
        }
        let (then, before) = std::mem::replace(&mut self.blocked, (now, totals));
        let elapsed_ns = (now - then).max(1) as u64 * 1_000_000;
        let mut edges = self.base.edges.clone();
        for e in &mut edges {
            let grew = self
                .blocked
                .1
                .get(&(e.from, e.to))
                .copied()
                .unwrap_or(0)
                .saturating_sub(*before.get(&(e.from, e.to)).unwrap_or(&0));
            let over = elapsed_ns * upstream_tasks.get(&e.from).copied().unwrap_or(1).max(1);
            e.back_pressure_permille = if then == 0 { 0 } else { (grew.saturating_mul(1000) / over).min(1000) as u32 };
        }
        edges
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
        let clocks: Vec<(TaskId, Timestamp)> = tasks.iter().map(|c| (c.task, c.clock)).collect();
        let stalling = self.health.check(now, min_clock, &clocks);
        let edges = self.back_pressure(now, tasks);
        let runtime =
            gearpump_protocol::AppRuntime { clock: min_clock, executors, stalling, edges, ..self.base.clone() };
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
    for p in app.dag().live() {
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

fn snapshot(app: &StreamApplication, deployment: &Deployment, min_clock: Timestamp) -> AppStats {
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
        min_clock: Some(min_clock),
        processors,
        executors: deployment
            .executors
            .iter()
            .map(|e| ExecutorSummary { id: e.id, worker: e.worker, tasks: e.tasks.clone() })
            .collect(),
    }
}

/// What a streaming AppMaster hears from its executors and its master.
#[derive(Debug)]
pub enum Event {
    /// A task's report.
    Task(TaskEvent),
    /// An executor was lost with these tasks (they will not report stopping).
    Lost {
        /// Its tasks.
        tasks: Vec<TaskId>,
        /// What happened.
        why: String,
    },
    /// Kill the application.
    Kill,
    /// Restart every task from the start clock.
    Replay,
    /// A client asks for a DAG change, to make DAG `version`.
    ChangeDag {
        /// The version it makes.
        version: u32,
        /// The change.
        change: gearpump_core::DagChange,
    },
    /// The AppMaster cannot go on (its master has been unreachable too long).
    GiveUp(String),
}

/// For the periodic report: the tasks' counters, the executor processes' gauges, the executors.
#[derive(Debug, Default)]
pub struct Progress {
    /// Every task's counters.
    pub tasks: Vec<gearpump_protocol::TaskCounters>,
    /// Each executor process's gauges, by executor id.
    pub processes: Vec<(i32, gearpump_protocol::ProcessGauges)>,
    /// The executors.
    pub executors: Vec<gearpump_protocol::ExecutorInfo>,
}

/// Where a streaming application's tasks run, and the master its AppMaster answers to: tasks in
/// this process on the embedded cluster, or executor processes on workers and a remote master.
/// [`supervise`] drives a [`Supervisor`] over it; that is the one AppMaster loop of both.
pub trait Executors: Send {
    /// Why the AppMaster cannot go on.
    type Error: std::fmt::Display + Send;
    /// Runs incarnation `incarnation` of every task of `app` from `start`: the first (0), or a
    /// restart, which replaces the tasks of the incarnation before (all stopped or lost by
    /// then), perhaps of another DAG version.
    fn launch(
        &mut self,
        incarnation: u32,
        start: Timestamp,
        app: &StreamApplication,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Makes sure the slots held can run `next`'s tasks (a DAG change that adds tasks): asks
    /// the master for the missing ones, now or not at all (then: why not). Slots a change
    /// leaves idle stay held, for a later change, until the application ends.
    fn make_room(&mut self, next: &StreamApplication) -> impl Future<Output = Result<(), String>> + Send;
    /// Answers the master's [`Event::ChangeDag`]: the change as applied, or why not. Returns
    /// whether the master recorded the change (only then is it made).
    fn answer_change(
        &mut self,
        version: u32,
        outcome: Result<gearpump_core::AppliedChange, String>,
    ) -> impl Future<Output = bool> + Send;
    /// Tells the master the application is active (after the first launch).
    fn active(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// The next event; `None` when no more will come. Raced against a timer, so it must be
    /// cancel safe.
    fn next(&mut self) -> impl Future<Output = Result<Option<Event>, Self::Error>> + Send;
    /// Tells `task` its upstream min clock.
    fn upstream_clock(&mut self, task: TaskId, clock: Timestamp);
    /// Tells every task to stop.
    fn stop_all(&mut self);
    /// Tells every task that the checkpoint at `time` is complete.
    fn checkpoint_complete(&mut self, time: Timestamp);
    /// The start clock moved to `clock`: record it, and prune older checkpoints once recorded.
    fn start_clock(&mut self, clock: Timestamp) -> impl Future<Output = ()> + Send;
    /// Time passes (every clock interval); `min_clock` is the application's, `ending` says the
    /// tasks are stopping for good.
    fn tick(&mut self, min_clock: Timestamp, ending: bool) -> impl Future<Output = ()> + Send;
    /// What the periodic report says of the executors; `None` while the master cannot hear.
    fn progress(&self) -> Option<Progress>;
    /// Sends the periodic report.
    fn send_report(
        &mut self,
        time: i64,
        runtime: Box<gearpump_protocol::AppRuntime>,
        metrics: Vec<gearpump_metrics::Metric>,
    );
    /// Every task has stopped and the application ends with `ending`: let the executors go.
    fn finish(&mut self, ending: &Ending, min_clock: Timestamp) -> impl Future<Output = ()> + Send;
}

/// How a [`supervise`]d application is run.
#[derive(Clone, Copy, Debug)]
pub struct Supervision {
    /// Where its clock starts (0, or where an earlier AppMaster left it).
    pub start: Timestamp,
    /// Restarts after failures before the application fails.
    pub total_retries: u32,
    /// How long tasks may take to stop.
    pub stop_timeout: Duration,
    /// How often time passes for the supervisor and the executors.
    pub tick: Duration,
    /// Whether reports carry metrics.
    pub metrics: bool,
}

/// The AppMaster loop of a streaming application, over either kind of [`Executors`]: launches
/// the tasks, reports the application active, feeds the [`Supervisor`] every event and carries
/// out its actions (clocks, stops, restarts, checkpoints), reports progress every
/// [`REPORT_EVERY`], and returns how the application ended once every task has stopped.
pub async fn supervise<X: Executors>(
    x: &mut X,
    app: &StreamApplication,
    app_id: AppId,
    how: Supervision,
) -> Result<Ending, X::Error> {
    let mut start = how.start;
    let mut supervisor = Supervisor::new(app.dag(), start, how.total_retries).with_stop_timeout(how.stop_timeout);
    let mut app = app.clone();
    x.launch(0, start, &app).await?;
    x.active().await?;
    tracing::info!(%app_id, tasks = app.dag().task_count(), version = app.version(), "Application active.");
    let mut reporter = Reporter::new(app_id, &app, how.metrics);
    // A DAG change the master recorded, made at the next restart; and when it was asked for.
    let mut changed: Option<(StreamApplication, Instant)> = None;
    let mut tick = tokio::time::interval(how.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_report = Instant::now() - REPORT_EVERY;
    let mut incarnation = 0;
    // When the running tasks failed (or a DAG change was asked for), and (after the restart)
    // since when the clock is awaited.
    let (mut failed_at, mut clock_wait) = (None, None);
    // A DAG change asked for while the tasks restarted.
    let mut held: Option<(u32, gearpump_core::DagChange)> = None;
    // The latest failures and complete checkpoints, for the report.
    let mut errors = std::collections::VecDeque::new();
    let mut history = crate::history::CheckpointHistory::default();
    loop {
        let ready = if supervisor.may_change().is_ok() { held.take() } else { None };
        let actions = if let Some((version, change)) = ready {
            let (actions, next) = change_dag(x, &mut supervisor, &app, app_id, version, change).await;
            changed = next.or(changed);
            actions
        } else {
            tokio::select! {
                _ = tick.tick() => {
                    x.tick(supervisor.clock().min_clock(), supervisor.ending().is_some()).await;
                    if last_report.elapsed() >= REPORT_EVERY && let Some(p) = x.progress() {
                        last_report = Instant::now();
                        let min_clock = supervisor.clock().min_clock();
                        let (time, mut runtime, metrics) = reporter.report(&p.tasks, &p.processes, min_clock, p.executors);
                        runtime.start_clock = supervisor.start_clock();
                        runtime.restarts = supervisor.restarts();
                        let clocks = supervisor.clock();
                        runtime.processor_clocks = (app.dag().live())
                            .filter_map(|p| clocks.processor_clock(p.id).map(|c| (p.id.0, c)))
                            .collect();
                        runtime.errors = errors.iter().cloned().collect();
                        runtime.checkpoints = history.recent();
                        x.send_report(time, runtime, metrics);
                    }
                    supervisor.on_tick(Instant::now())
                }
                event = x.next() => match event? {
                    Some(Event::Task(TaskEvent::Clock { task, clock })) => supervisor.on_clock(task, clock),
                    Some(Event::Task(TaskEvent::Failed { task, error })) => {
                        remember(&mut errors, Some(task), &error);
                        supervisor.on_task_failed(task, &error)
                    }
                    Some(Event::Task(TaskEvent::Stopped { task })) => supervisor.on_task_stopped(task),
                    Some(Event::Task(TaskEvent::Checkpointed { task, time, bytes, took_us })) => {
                        history.on_saved(task, time, bytes, took_us, Timestamp::now().0);
                        supervisor.on_checkpoint(task, time)
                    }
                    Some(Event::Lost { tasks, why }) => {
                        remember(&mut errors, None, &why);
                        supervisor.on_tasks_lost(&tasks, why)
                    }
                    Some(Event::Kill) => supervisor.on_kill(),
                    Some(Event::Replay) => {
                        tracing::info!(%app_id, start = %supervisor.start_clock(), "Replay requested.");
                        supervisor.on_replay()
                    }
                    // Asked for while the tasks restart (after a failure, or an earlier change): made
                    // once they run again.
                    Some(Event::ChangeDag { version, change }) if supervisor.may_change().is_err() && supervisor.ending().is_none() => {
                        held = Some((version, change));
                        Vec::new()
                    }
                    Some(Event::ChangeDag { version, change }) => {
                        let (actions, next) = change_dag(x, &mut supervisor, &app, app_id, version, change).await;
                        changed = next.or(changed);
                        actions
                    }
                    Some(Event::GiveUp(why)) => supervisor.on_give_up(why),
                    None => break,
                },
            }
        };
        let mut done = false;
        for action in actions {
            match action {
                Action::UpstreamClock(task, clock) => x.upstream_clock(task, clock),
                Action::StopAll => {
                    if supervisor.ending().is_none() {
                        failed_at.get_or_insert_with(Instant::now);
                    }
                    x.stop_all();
                }
                Action::Restart { start: from, why } => {
                    let began = Instant::now();
                    tracing::warn!(%app_id, start = %from, %why, restart = supervisor.restarts(),
                        "Restarting every task from the start clock.");
                    start = from;
                    incarnation += 1;
                    let change = changed.take();
                    if let Some((next, _)) = &change {
                        app = next.clone();
                        reporter = Reporter::new(app_id, &app, how.metrics);
                    }
                    x.launch(incarnation, start, &app).await?;
                    tracing::info!(%app_id, start = %from, took = ?began.elapsed(), "Tasks restarted.");
                    match change {
                        Some((_, asked)) => {
                            tracing::info!(%app_id, version = app.version(), since_asked = ?asked.elapsed(), "The new DAG runs.");
                            // Its messages flow once the clock moves: timed from the request.
                            failed_at = None;
                            clock_wait = Some(asked);
                        }
                        None => clock_wait = failed_at.take(),
                    }
                }
                Action::CheckpointComplete(time) => {
                    history.on_complete(time, Timestamp::now().0);
                    x.checkpoint_complete(time)
                }
                Action::StartClock(clock) => x.start_clock(clock).await,
                Action::Done => done = true,
            }
        }
        // Recovery is over when the clock moves past the start clock again.
        let min_clock = supervisor.clock().min_clock();
        if let Some(since) = clock_wait
            && min_clock > start
        {
            clock_wait = None;
            tracing::info!(%app_id, %min_clock, since = ?since.elapsed(), "The clock moves again.");
        }
        if done {
            break;
        }
    }
    let min_clock = supervisor.clock().min_clock();
    let ending = supervisor.into_ending();
    x.finish(&ending, min_clock).await;
    Ok(ending)
}

/// How many failures the report keeps.
const ERRORS_KEPT: usize = 20;

/// Keeps a failure for the report (the latest [`ERRORS_KEPT`]).
fn remember(
    errors: &mut std::collections::VecDeque<gearpump_protocol::AppErrorInfo>,
    task: Option<TaskId>,
    error: &str,
) {
    if errors.len() == ERRORS_KEPT {
        errors.pop_front();
    }
    let time = Timestamp::now().0;
    errors.push_back(gearpump_protocol::AppErrorInfo { time, task, error: gearpump_core::redact(error).into_owned() });
}

/// Checks a DAG change asked for (to make `version`), makes room for its tasks, and answers
/// the master; once recorded, the supervisor restarts the tasks as the new DAG (returned with
/// when it was asked for), its transit time the start clock.
async fn change_dag<X: Executors>(
    x: &mut X,
    supervisor: &mut Supervisor,
    app: &StreamApplication,
    app_id: AppId,
    version: u32,
    change: gearpump_core::DagChange,
) -> (Vec<Action>, Option<(StreamApplication, Instant)>) {
    let asked = Instant::now();
    let transit = supervisor.start_clock();
    let next = match supervisor.may_change() {
        Err(why) => Err(why.to_string()),
        Ok(()) if version != app.version() + 1 => {
            Err(format!("the DAG runs at version {}; version {version} does not follow it", app.version()))
        }
        Ok(()) => app.apply(&change, transit).map_err(|e| e.to_string()),
    };
    let next = match next {
        Ok(next) => x.make_room(&next).await.map(|()| next),
        Err(why) => Err(why),
    };
    let outcome = next.as_ref().map(|n| n.changes().last().cloned().expect("applied")).map_err(Clone::clone);
    if let Err(why) = &outcome {
        tracing::warn!(%app_id, version, %change, %why, "Refused a DAG change; the DAG runs on as it was.");
    }
    let recorded = x.answer_change(version, outcome).await;
    match next {
        Ok(next) if recorded => {
            tracing::info!(%app_id, version, %change, %transit, "Changing the DAG: restarting the tasks as the new version.");
            (supervisor.on_change(next.dag().clone()), Some((next, asked)))
        }
        _ => (Vec::new(), None),
    }
}

/// The executors of the embedded cluster: every task in this process, on the in-memory data
/// plane, re-created on each restart.
struct InProcess {
    app_id: AppId,
    app: StreamApplication,
    runtime: Runtime,
    flow: FlowConfig,
    data_plane: DataPlane,
    events_tx: mpsc::UnboundedSender<TaskEvent>,
    events: mpsc::UnboundedReceiver<TaskEvent>,
    requests: mpsc::UnboundedSender<MasterAsk>,
    pushes: mpsc::UnboundedReceiver<MasterReply>,
    /// The master is gone (the cluster stopped): the application was told to end.
    master_gone: bool,
    stats: Arc<Mutex<AppStats>>,
    sample_rate: u32,
    allocation: Vec<(WorkerId, u32)>,
    checkpoints: Option<gearpump_storage::CheckpointStore>,
    state: Option<Arc<dyn gearpump_api::StateStore>>,
    deployment: Option<Deployment>,
}

impl Executors for InProcess {
    type Error = String;

    async fn launch(&mut self, incarnation: u32, start: Timestamp, app: &StreamApplication) -> Result<(), String> {
        if let Some(old) = self.deployment.take() {
            old.clear();
        }
        self.app = app.clone();
        let spec = LaunchSpec {
            runtime: &self.runtime,
            app_id: self.app_id,
            flow: self.flow,
            // Each incarnation of the tasks has its own session, so nothing of an earlier one
            // is taken for theirs.
            session: self.app_id.0.wrapping_mul(2_654_435_761) ^ (incarnation.wrapping_mul(0x9e37_79b9) | 1),
            events: &self.events_tx,
            data_plane: self.data_plane.clone(),
            codecs: Arc::new(self.app.codecs().clone()),
            sample_rate: self.sample_rate,
            state: self.state.clone(),
        };
        let deployment =
            Deployment::launch(&spec, &self.app, place(&self.app, &self.allocation)).map_err(|e| e.to_string())?;
        deployment.start(StartTime(start));
        *self.stats.lock() = snapshot(&self.app, &deployment, start);
        self.deployment = Some(deployment);
        Ok(())
    }

    async fn make_room(&mut self, next: &StreamApplication) -> Result<(), String> {
        let held: u32 = self.allocation.iter().map(|(_, n)| n).sum();
        let wanted = next.dag().task_count().saturating_sub(held);
        if wanted == 0 {
            return Ok(());
        }
        match ask(&self.requests, self.app_id, MasterRequest::MoreResources { app_id: self.app_id, slots: wanted })
            .await
        {
            Some(MasterReply::Resources(more)) => {
                self.allocation.extend(more);
                Ok(())
            }
            Some(MasterReply::Refused(e)) => Err(format!("the new DAG needs {wanted} more slots: {e}")),
            other => Err(format!("the master did not grant {wanted} more slots: {other:?}")),
        }
    }

    async fn answer_change(&mut self, version: u32, outcome: Result<gearpump_core::AppliedChange, String>) -> bool {
        let req = MasterRequest::DagChanged { app_id: self.app_id, version, outcome };
        matches!(ask(&self.requests, self.app_id, req).await, Some(MasterReply::Ok))
    }

    async fn active(&mut self) -> Result<(), String> {
        let req = MasterRequest::AppStatus { app_id: self.app_id, status: AppStatus::Active, error: None };
        match ask(&self.requests, self.app_id, req).await {
            Some(MasterReply::Ok) | None => Ok(()),
            Some(other) => Err(format!("the master refused the application: {other:?}")),
        }
    }

    async fn next(&mut self) -> Result<Option<Event>, String> {
        loop {
            tokio::select! {
                event = self.events.recv() => return Ok(event.map(Event::Task)),
                // A replay restarts the tasks; a kill, or the master gone, ends the application.
                push = self.pushes.recv(), if !self.master_gone => match push {
                    Some(MasterReply::ReplayRequested) => return Ok(Some(Event::Replay)),
                    Some(MasterReply::KillRequested) => return Ok(Some(Event::Kill)),
                    Some(MasterReply::ChangeDag { version, change }) => return Ok(Some(Event::ChangeDag { version, change })),
                    Some(_) => {}
                    None => {
                        self.master_gone = true;
                        return Ok(Some(Event::Kill));
                    }
                },
            }
        }
    }

    fn upstream_clock(&mut self, task: TaskId, clock: Timestamp) {
        if let Some(d) = &self.deployment {
            d.upstream_clock(task, clock);
        }
    }

    fn stop_all(&mut self) {
        if let Some(d) = &self.deployment {
            d.stop();
        }
    }

    fn checkpoint_complete(&mut self, time: Timestamp) {
        if let Some(d) = &self.deployment {
            d.checkpoint_complete(time);
        }
    }

    async fn start_clock(&mut self, clock: Timestamp) {
        if let Some(store) = &self.checkpoints {
            crate::state::prune_checkpoints(store, self.app.dag(), clock);
        }
    }

    async fn tick(&mut self, min_clock: Timestamp, ending: bool) {
        if let Some(d) = &self.deployment {
            if !ending {
                d.tick();
            }
            *self.stats.lock() = snapshot(&self.app, d, min_clock);
        }
    }

    fn progress(&self) -> Option<Progress> {
        let d = self.deployment.as_ref()?;
        let gauges = gearpump_protocol::ProcessGauges::of_this_process();
        let executors: Vec<gearpump_protocol::ExecutorInfo> = d
            .executors
            .iter()
            .map(|e| gearpump_protocol::ExecutorInfo {
                id: e.id.0,
                worker: e.worker,
                pid: std::process::id(),
                host: "127.0.0.1".into(),
                tasks: e.tasks.clone(),
                status: gearpump_protocol::ExecutorStatus::Active,
            })
            .collect();
        let processes = executors.iter().map(|e| (e.id, gauges)).collect();
        Some(Progress { tasks: d.counters(), processes, executors })
    }

    fn send_report(
        &mut self,
        time: i64,
        runtime: Box<gearpump_protocol::AppRuntime>,
        metrics: Vec<gearpump_metrics::Metric>,
    ) {
        let report = MasterRequest::AppReport { app_id: self.app_id, time, runtime, metrics };
        let _ = self.requests.send((self.app_id, report, oneshot::channel().0));
    }

    async fn finish(&mut self, _: &Ending, min_clock: Timestamp) {
        if let Some(d) = self.deployment.take() {
            *self.stats.lock() = snapshot(&self.app, &d, min_clock);
            d.clear();
        }
    }
}

/// Asks the master in this process; `None` when it is gone.
async fn ask(requests: &mpsc::UnboundedSender<MasterAsk>, app_id: AppId, req: MasterRequest) -> Option<MasterReply> {
    let (reply, answer) = oneshot::channel();
    requests.send((app_id, req, reply)).ok()?;
    answer.await.ok()
}

async fn run(spec: AppMasterSpec) {
    let AppMasterSpec {
        app_id,
        app,
        runtime,
        flow,
        data_plane,
        clock_interval,
        requests,
        mut pushes,
        stats,
        metrics,
        total_retries,
        stop_timeout,
    } = spec;
    let report = async |status: AppStatus, error: Option<String>| {
        ask(&requests, app_id, MasterRequest::AppStatus { app_id, status, error }).await;
    };
    let slots = MasterRequest::RequestResources { app_id, slots: app.dag().task_count(), locality: Locality::Any };
    let allocation = match ask(&requests, app_id, slots).await {
        Some(MasterReply::Resources(allocation)) => allocation,
        // Too few free slots: the master pushes them once granted; a kill meanwhile ends it.
        Some(MasterReply::Queued) => loop {
            match pushes.recv().await {
                Some(MasterReply::Granted(allocation)) => break allocation,
                Some(MasterReply::KillRequested) | None => return report(AppStatus::Terminated, None).await,
                Some(_) => {}
            }
        },
        Some(MasterReply::Refused(e)) => return report(AppStatus::Failed, Some(e.to_string())).await,
        Some(other) => return report(AppStatus::Failed, Some(format!("unexpected answer: {other:?}"))).await,
        None => return,
    };
    let flow = match flow_from_config(app.config(), flow) {
        Ok(flow) => flow,
        Err(e) => return report(AppStatus::Failed, Some(e.to_string())).await,
    };
    let (events_tx, events) = mpsc::unbounded_channel();
    let start = Timestamp(0);
    // A new application: checkpoints left under its id (an earlier run) are not its own.
    let checkpoints = match crate::state::checkpoint_store(app_id, &app) {
        Ok(store) => store,
        Err(e) => return report(AppStatus::Failed, Some(e.to_string())).await,
    };
    if let Some(Err(e)) = checkpoints.as_ref().map(gearpump_storage::CheckpointStore::clear) {
        return report(AppStatus::Failed, Some(format!("clearing old checkpoints: {e}"))).await;
    }
    let state = checkpoints.clone().map(|store| {
        Arc::new(crate::state::TaskStates::new(store, events_tx.clone(), start)) as Arc<dyn gearpump_api::StateStore>
    });
    let mut x = InProcess {
        app_id,
        app: app.clone(),
        runtime,
        flow,
        data_plane,
        events_tx,
        events,
        requests: requests.clone(),
        pushes,
        master_gone: false,
        stats,
        sample_rate: metrics.task_sample_rate(),
        allocation,
        checkpoints,
        state,
        deployment: None,
    };
    let how = Supervision { start, total_retries, stop_timeout, tick: clock_interval, metrics: metrics.enabled };
    match supervise(&mut x, &app, app_id, how).await {
        Ok(ending) => report(ending.status(), ending.error().map(str::to_string)).await,
        Err(e) => report(AppStatus::Failed, Some(e)).await,
    }
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
