//! The master actor.

use crate::application::{Launch, Launching};
use crate::core::{Effect, MasterCore, MasterError, Submission};
use gearpump_api::StreamApplication;
use gearpump_core::{AppId, Timestamp};
use gearpump_metrics::{MetricsStore, Retention};
use gearpump_protocol::{AppDetail, AppInfo, AppRuntime, ClusterSnapshot, MasterReply, MasterRequest};
use gearpump_protocol::{MasterSummary, ProcessGauges, WorkerDetail, WorkerInfo};
use gearpump_streaming::appmaster::{self, AppMasterSpec};
use gearpump_streaming::{AppStats, DataPlane, MetricsConfig, Runtime};
use gearpump_transport::flow::FlowConfig;
use parking_lot::{Condvar, Mutex};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Settings of an embedded cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// How many workers (2).
    pub workers: u32,
    /// Slots per worker (`gearpump.worker.slots`, 100).
    pub slots_per_worker: u32,
    /// Threads running tasks (the machine's cores).
    pub task_threads: usize,
    /// Flow control (`gearpump.streaming.ack-once-every-message-count` = 100,
    /// `gearpump.streaming.max-pending-message-count-per-connection` = 1000).
    pub flow: FlowConfig,
    /// How often tasks report their clock (100 ms).
    pub clock_interval: Duration,
    /// How tasks of different executors exchange messages: in memory (default), or over
    /// loopback TCP exactly as between processes.
    pub data_plane: DataPlane,
    /// The user recorded as the submitter.
    pub user: String,
    /// Metric settings (`gearpump.metrics.*`).
    pub metrics: MetricsConfig,
    /// How long metric series are kept (`gearpump.retainRecentData`, `retainHistoryData`).
    pub retention: Retention,
    /// How many times an application's tasks are restarted after failures before it fails
    /// (`gearpump.application.total-retries`, 5).
    pub total_retries: u32,
    /// How long tasks may take to stop when the application ends or recovers
    /// (`gearpump.application.stop-timeout-ms`, 30 s).
    pub stop_timeout: Duration,
    /// Where slots go and which waiting request is served first
    /// (`gearpump.scheduling.scheduler-class`; the priority scheduler).
    pub scheduler: Arc<dyn crate::scheduler::Scheduler>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            workers: 2,
            slots_per_worker: 100,
            task_threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            flow: FlowConfig::default(),
            clock_interval: Duration::from_millis(100),
            data_plane: DataPlane::InMemory,
            user: crate::current_user(),
            metrics: MetricsConfig::default(),
            retention: Retention::default(),
            total_retries: 5,
            stop_timeout: gearpump_streaming::supervisor::DEFAULT_STOP_TIMEOUT,
            scheduler: Arc::new(crate::scheduler::PriorityScheduler),
        }
    }
}

impl ClusterConfig {
    /// The settings `gear.conf` gives: `gearpump.worker.slots` and the flow-control keys
    /// (`gearpump.streaming.ack-once-every-message-count`,
    /// `gearpump.streaming.max-pending-message-count-per-connection`); the rest as default.
    pub fn from_gear_config(conf: &gearpump_config::GearConfig) -> Result<Self, gearpump_config::ConfigError> {
        conf.validate()?;
        let s = conf.settings()?;
        Ok(ClusterConfig {
            slots_per_worker: s.worker_slots,
            flow: FlowConfig { ack_once_every: s.ack_once_every, max_pending: s.max_pending },
            metrics: metrics_config(&s),
            retention: retention(&s),
            total_retries: s.total_retries,
            stop_timeout: s.stop_timeout,
            scheduler: crate::scheduler::named(&s.scheduler).map_err(|e| gearpump_config::ConfigError::Invalid {
                key: "gearpump.scheduling.scheduler-class".into(),
                value: s.scheduler.clone(),
                reason: e,
            })?,
            ..ClusterConfig::default()
        })
    }
}

/// `gearpump.metrics.*` of the settings.
pub fn metrics_config(s: &gearpump_config::Settings) -> MetricsConfig {
    MetricsConfig {
        enabled: s.metrics_enabled,
        sample_rate: s.metrics_sample_rate,
        report_interval_ms: s.metrics_report_interval_ms,
    }
}

/// `gearpump.retainRecentData` and `gearpump.retainHistoryData` of the settings.
pub fn retention(s: &gearpump_config::Settings) -> Retention {
    Retention {
        recent_interval_ms: s.recent.0,
        recent_keep_ms: s.recent.1,
        history_interval_ms: s.history.0,
        history_keep_ms: s.history.1,
    }
}

/// An application as the master lists it.
pub type AppSummary = AppInfo;

/// A worker as the master lists it.
pub type WorkerSummary = WorkerInfo;

/// Why a submission (or a restart) was refused: see [`MasterError`].
pub type SubmitError = MasterError;

/// Why a kill (or a replay) was refused: see [`MasterError`].
pub type KillError = MasterError;

/// An application's summary and its live stats, as the board holds them.
pub(crate) type AppEntry = (AppSummary, Arc<Mutex<AppStats>>);

/// Read side of the master's state, shared with clients so `list` and `wait` need no round trip.
pub(crate) struct Board {
    pub(crate) apps: Mutex<BTreeMap<AppId, AppEntry>>,
    pub(crate) workers: Mutex<Vec<WorkerSummary>>,
    pub(crate) changed: Condvar,
    /// What each AppMaster last reported of its application.
    pub(crate) runtimes: Mutex<BTreeMap<AppId, AppRuntime>>,
    /// Every metric reported.
    pub(crate) metrics: Mutex<MetricsStore>,
    /// When the cluster started, ms since the epoch.
    pub(crate) started: Timestamp,
    /// What connections to its AppMasters prove (they listen on loopback): made up per cluster.
    pub(crate) secret: gearpump_protocol::ClusterSecret,
}

/// A secret no other process knows.
fn made_up_secret() -> gearpump_protocol::ClusterSecret {
    let text: String = std::iter::repeat_with(fastrand::alphanumeric).take(32).collect();
    gearpump_protocol::ClusterSecret::new(text).expect("32 characters are long enough")
}

impl Board {
    pub(crate) fn new(retention: Retention) -> Board {
        Board {
            apps: Mutex::default(),
            workers: Mutex::default(),
            changed: Condvar::new(),
            runtimes: Mutex::default(),
            metrics: Mutex::new(MetricsStore::new(retention)),
            started: Timestamp::now(),
            secret: made_up_secret(),
        }
    }
}

pub(crate) enum MasterCommand {
    Submit {
        app: Box<StreamApplication>,
        user: Option<String>,
        reply: oneshot::Sender<Result<AppId, SubmitError>>,
    },
    /// A non-streaming application: its name, kind and how to start its AppMaster.
    SubmitOther {
        name: String,
        kind: &'static str,
        launch: Launch,
        user: Option<String>,
        reply: oneshot::Sender<Result<AppId, SubmitError>>,
    },
    /// A request as a daemon master takes it (kill, replay, restart, resolve, …).
    Ask {
        req: MasterRequest,
        reply: oneshot::Sender<MasterReply>,
    },
}

/// What the embedded master keeps of an application besides the core's record.
struct AppRecord {
    /// How to start its AppMaster, for a restart or a new AppMaster.
    launch: Launch,
    /// What the master pushes to its running AppMaster.
    pushes: Option<mpsc::UnboundedSender<MasterReply>>,
    stats: Arc<Mutex<AppStats>>,
}

/// The embedded master: a driver of [`MasterCore`] whose AppMasters are tasks in this process
/// (each registered on a "connection" numbered by its application id).
pub(crate) struct Master {
    config: ClusterConfig,
    runtime: Runtime,
    core: MasterCore,
    apps: BTreeMap<AppId, AppRecord>,
    board: Arc<Board>,
    /// Where the AppMasters send their requests.
    requests: mpsc::UnboundedSender<crate::application::EmbeddedRequest>,
    /// Clients waiting for an answer the core gives later (a DAG change), by "connection":
    /// each client request gets one of its own, above every application's.
    waiting: std::collections::HashMap<u64, oneshot::Sender<MasterReply>>,
    next_client: u64,
}

impl Master {
    /// Starts the master actor with `config.workers` workers registered.
    pub(crate) fn spawn(
        config: ClusterConfig,
        runtime: Runtime,
        board: Arc<Board>,
    ) -> mpsc::UnboundedSender<MasterCommand> {
        let (tx, commands) = mpsc::unbounded_channel();
        let mut core =
            MasterCore::new(config.total_retries, config.stop_timeout).with_scheduler(config.scheduler.clone());
        for _ in 0..config.workers {
            let id = core.register_worker(None, "127.0.0.1".into(), config.slots_per_worker, &[], Timestamp::now());
            tracing::info!(worker = %id, slots = config.slots_per_worker, "Worker registered.");
        }
        let (requests, from_others) = mpsc::unbounded_channel();
        let (waiting, next_client) = (Default::default(), 1 << 32);
        let master = Master { config, runtime, core, apps: BTreeMap::new(), board, requests, waiting, next_client };
        master.publish();
        tokio::spawn(master.run(commands, from_others));
        tx
    }

    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<MasterCommand>,
        mut from_others: mpsc::UnboundedReceiver<crate::application::EmbeddedRequest>,
    ) {
        loop {
            tokio::select! {
                c = commands.recv() => match c {
                    Some(MasterCommand::Submit { app, user, reply }) => {
                        let (name, tasks) = (app.name().to_string(), app.dag().task_count());
                        let launch = self.stream_launch(*app);
                        let _ = reply.send(self.submit(name, gearpump_protocol::STREAMING, tasks, launch, user));
                    }
                    Some(MasterCommand::SubmitOther { name, kind, launch, user, reply }) => {
                        let _ = reply.send(self.submit(name, kind, 0, launch, user));
                    }
                    Some(MasterCommand::Ask { req, reply }) => {
                        self.next_client += 1;
                        let conn = self.next_client;
                        match self.on_request(None, req, conn) {
                            Some(answer) => {
                                self.act();
                                let _ = reply.send(answer);
                            }
                            None => {
                                self.waiting.insert(conn, reply);
                            }
                        }
                    }
                    None => break,
                },
                Some((app_id, req, reply)) = from_others.recv() => {
                    let answer = self.on_request(Some(app_id), req, u64::from(app_id.0)).unwrap_or(MasterReply::Ok);
                    self.act();
                    let _ = reply.send(answer);
                }
            }
            self.act();
        }
        // Every client is gone: end what is still running.
        for pushes in self.apps.values_mut().filter_map(|r| r.pushes.take()) {
            let _ = pushes.send(MasterReply::KillRequested);
        }
    }

    /// Submits an application of `kind` needing `tasks` slots besides its AppMaster's.
    fn submit(
        &mut self,
        name: String,
        kind: &str,
        tasks: u32,
        launch: Launch,
        user: Option<String>,
    ) -> Result<AppId, SubmitError> {
        let user = user.unwrap_or_else(|| self.config.user.clone());
        let submission = Submission { name, kind: kind.into(), priority: Default::default(), user, tasks };
        let id = self.core.submit(submission, None, Timestamp::now());
        if let Ok(id) = id {
            self.record(id, launch);
        }
        // Published before the answer: the client looks the application up there.
        self.act();
        id
    }

    /// How a streaming application's AppMaster starts here: as a task of this process, its
    /// tasks on the cluster's task pool.
    fn stream_launch(&self, app: StreamApplication) -> Launch {
        let (runtime, c) = (self.runtime.clone(), self.config.clone());
        Arc::new(move |l: Launching| {
            appmaster::spawn(AppMasterSpec {
                app_id: l.app_id,
                app: app.clone(),
                runtime: runtime.clone(),
                flow: c.flow,
                data_plane: c.data_plane.clone(),
                clock_interval: c.clock_interval,
                requests: l.requests,
                pushes: l.pushes,
                stats: l.stats,
                metrics: c.metrics,
                total_retries: c.total_retries,
                stop_timeout: l.stop_timeout,
            })
        })
    }

    /// Keeps what the core does not: how to start the application and its live stats.
    fn record(&mut self, id: AppId, launch: Launch) {
        self.apps.insert(id, AppRecord { launch, pushes: None, stats: Arc::default() });
    }

    /// Carries out what the core decided, and publishes the new state.
    fn act(&mut self) {
        for effect in self.core.take_effects() {
            match effect {
                Effect::LaunchAppMaster { app: id, worker, attempt, .. } => {
                    let Some(record) = self.apps.get_mut(&id) else { continue };
                    tracing::info!(app_id = %id, %worker, "Application submitted; launching its AppMaster.");
                    let (pushes, pushed) = mpsc::unbounded_channel();
                    (record.launch)(Launching {
                        app_id: id,
                        attempt,
                        secret: self.board.secret.clone(),
                        stop_timeout: self.config.stop_timeout,
                        requests: self.requests.clone(),
                        pushes: pushed,
                        stats: record.stats.clone(),
                    });
                    record.pushes = Some(pushes);
                    // In this process the AppMaster is there at once.
                    let _ = self.core.register_appmaster(id, attempt, u64::from(id.0));
                }
                Effect::ToAppMaster { app, notice, .. } => {
                    tracing::info!(app_id = %app, ?notice, "Telling the AppMaster.");
                    self.push(app, notice.push());
                }
                Effect::Reply { conn, reply } => {
                    if let Some(waiting) = self.waiting.remove(&conn) {
                        let _ = waiting.send(reply);
                    }
                }
                Effect::StatusChanged { app, status, error } => {
                    match &error {
                        Some(e) => tracing::warn!(app_id = %app, %status, error = %e, "Application status changed."),
                        None => tracing::info!(app_id = %app, %status, "Application status changed."),
                    }
                    if status.is_terminal()
                        && let Some(record) = self.apps.get_mut(&app)
                    {
                        record.pushes = None;
                    }
                }
                // The AppMaster stopped its tasks in this process before it reported the end.
                Effect::EndProcesses { .. } => {}
                Effect::Granted { app, allocation, .. } => self.push(app, MasterReply::Granted(allocation)),
            }
        }
        self.publish();
    }

    /// Pushes `reply` to `app`'s running AppMaster.
    fn push(&self, app: AppId, reply: MasterReply) {
        if let Some(pushes) = self.apps.get(&app).and_then(|r| r.pushes.as_ref()) {
            let _ = pushes.send(reply);
        }
    }

    /// The board shows what the core holds.
    fn publish(&self) {
        *self.board.workers.lock() = self.core.worker_infos();
        let mut apps = self.board.apps.lock();
        for (id, a) in self.core.apps() {
            let stats = self.apps.get(id).map(|r| r.stats.clone()).unwrap_or_default();
            apps.insert(*id, (a.info(), stats));
        }
        self.board.changed.notify_all();
    }

    /// The cluster as the REST API shows it.
    fn snapshot(&self) -> ClusterSnapshot {
        let pid = std::process::id();
        let home = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
        let (started, me) = (self.board.started.0, format!("embedded@{pid}"));
        let runtimes = self.board.runtimes.lock();
        ClusterSnapshot {
            master: MasterSummary {
                address: me.clone(),
                members: vec![me.clone()],
                started,
                jar_store: String::new(),
                log_dir: String::new(),
                home,
                config: String::new(),
                leader: Some(me),
                synced: true,
            },
            workers: (self.core.worker_infos().into_iter())
                .map(|info| WorkerDetail {
                    info,
                    registered: started,
                    pid,
                    config: String::new(),
                    log_dir: String::new(),
                })
                .collect(),
            apps: (self.core.apps().values())
                .map(|a| AppDetail { info: a.info(), runtime: runtimes.get(&a.id).cloned() })
                .collect(),
        }
    }

    /// A request of a client (`from` none) or of `from`'s AppMaster, in this process, on
    /// "connection" `conn`: the core answers most (`None`: later, or no answer is due);
    /// executors run in this process, so none is launched through the master.
    fn on_request(&mut self, from: Option<AppId>, req: MasterRequest, conn: u64) -> Option<MasterReply> {
        let now = Timestamp::now();
        // A client asks what a client of a daemon master may; the rest is an AppMaster's (or a
        // worker's) to say, and would let a client speak for an application.
        let a_clients = matches!(
            req,
            MasterRequest::ListApps
                | MasterRequest::ListWorkers
                | MasterRequest::KillApp { .. }
                | MasterRequest::ReplayApp { .. }
                | MasterRequest::RestartApp { .. }
                | MasterRequest::ResolveAppMaster { .. }
                | MasterRequest::Snapshot
                | MasterRequest::QueryMetrics { .. }
                | MasterRequest::ChangeDag { .. }
                | MasterRequest::DagChanges { .. }
                | MasterRequest::ReadLog { .. }
        );
        if from.is_none() && !a_clients {
            let why = format!("a client does not send {req:?}: only an application's AppMaster or a worker does");
            return Some(MasterReply::Refused(MasterError::Invalid(why)));
        }
        // An AppMaster here speaks on a "connection" numbered by its application's id.
        let req = match self.core.answer(req, conn, now) {
            Ok(answer) => return answer,
            Err(req) => *req,
        };
        Some(match req {
            MasterRequest::RestartApp { app_id } => match self.core.restart(app_id, now) {
                Ok(again) => {
                    if let Some(launch) = self.apps.get(&app_id).map(|r| r.launch.clone()) {
                        self.record(again, launch);
                    }
                    MasterReply::Submitted { app_id: again }
                }
                Err(e) => MasterReply::Refused(e),
            },
            MasterRequest::ReadLog { .. } => MasterReply::Refused(MasterError::Invalid(
                "the embedded cluster keeps no log per process: its AppMasters and executors log to this \
                 process's own output"
                    .into(),
            )),
            MasterRequest::Snapshot => MasterReply::Snapshot(Box::new(self.snapshot())),
            MasterRequest::QueryMetrics { path, option } => {
                MasterReply::Metrics(self.board.metrics.lock().query(&path, option))
            }
            MasterRequest::AppReport { app_id, time, runtime, metrics } if from == Some(app_id) => {
                self.board.runtimes.lock().insert(app_id, *runtime);
                let mut store = self.board.metrics.lock();
                store.record(time, metrics);
                let gauges = ProcessGauges::of_this_process();
                store.record(time, gauges.metrics("master"));
                for w in self.core.workers().keys() {
                    store.record(time, gauges.metrics(&format!("worker{w}")));
                }
                MasterReply::Ok
            }
            other => MasterReply::Refused(MasterError::Invalid(format!(
                "the embedded cluster's master does not take {other:?}"
            ))),
        })
    }
}
