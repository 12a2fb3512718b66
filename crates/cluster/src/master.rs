//! The master actor.

use crate::scheduler;
use gearpump_api::{AppError, StreamApplication};
use gearpump_core::{AppId, Timestamp, WorkerId};
use gearpump_metrics::{MetricsStore, Retention};
use gearpump_protocol::{AppRuntime, ProcessGauges};
use gearpump_streaming::appmaster::{self, AppMasterCommand, AppMasterSpec};
use gearpump_streaming::{AppStats, AppStatus, DataPlane, MetricsConfig, Runtime, ToMaster};
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
        }
    }
}

impl ClusterConfig {
    /// The settings `gear.conf` gives: `gearpump.worker.slots` and the flow-control keys
    /// (`gearpump.streaming.ack-once-every-message-count`,
    /// `gearpump.streaming.max-pending-message-count-per-connection`); the rest as default.
    pub fn from_gear_config(conf: &gearpump_config::GearConfig) -> Result<Self, gearpump_config::ConfigError> {
        conf.validate()?;
        Ok(ClusterConfig {
            slots_per_worker: conf.get_num("gearpump.worker.slots")?,
            flow: FlowConfig {
                ack_once_every: conf.get_num("gearpump.streaming.ack-once-every-message-count")?,
                max_pending: conf.get_num("gearpump.streaming.max-pending-message-count-per-connection")?,
            },
            metrics: metrics_config(conf)?,
            retention: retention(conf)?,
            total_retries: conf.get_num("gearpump.application.total-retries")?,
            stop_timeout: Duration::from_millis(conf.get_num("gearpump.application.stop-timeout-ms")?),
            ..ClusterConfig::default()
        })
    }
}

/// `gearpump.metrics.*` of a configuration.
pub fn metrics_config(conf: &gearpump_config::GearConfig) -> Result<MetricsConfig, gearpump_config::ConfigError> {
    Ok(MetricsConfig {
        enabled: conf.get_bool("gearpump.metrics.enabled")?,
        sample_rate: conf.get_num("gearpump.metrics.sample-rate")?,
        report_interval_ms: conf.get_num("gearpump.metrics.report-interval-ms")?,
    })
}

/// `gearpump.retainRecentData` and `gearpump.retainHistoryData` of a configuration.
pub fn retention(conf: &gearpump_config::GearConfig) -> Result<Retention, gearpump_config::ConfigError> {
    Ok(Retention {
        recent_interval_ms: conf.get_num("gearpump.retainRecentData.intervalMs")?,
        recent_keep_ms: conf.get_num::<i64>("gearpump.retainRecentData.seconds")?.saturating_mul(1000),
        history_interval_ms: conf.get_num("gearpump.retainHistoryData.intervalMs")?,
        history_keep_ms: conf.get_num::<i64>("gearpump.retainHistoryData.hours")?.saturating_mul(3_600_000),
    })
}

/// An application as the master lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppSummary {
    /// Its id.
    pub id: AppId,
    /// Its name.
    pub name: String,
    /// Its status.
    pub status: AppStatus,
    /// When it was submitted.
    pub submission_time: Timestamp,
    /// When it became active.
    pub start_time: Option<Timestamp>,
    /// When it ended.
    pub finish_time: Option<Timestamp>,
    /// Who submitted it.
    pub user: String,
    /// The worker its AppMaster runs on.
    pub app_master_worker: WorkerId,
    /// Why it failed.
    pub error: Option<String>,
}

/// A worker as the master lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSummary {
    /// Its id.
    pub id: WorkerId,
    /// Its slots.
    pub slots: u32,
    /// Slots in use.
    pub used: u32,
}

/// Why a submission was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The application is invalid.
    #[error(transparent)]
    Invalid(#[from] AppError),
    /// An application of that name is still running.
    #[error("an application named {name:?} is already running as application {id}")]
    DuplicateName {
        /// The name.
        name: String,
        /// The running application.
        id: AppId,
    },
    /// The cluster has too few free slots.
    #[error("not enough free slots: the application needs {needed}, the cluster has {free}")]
    NotEnoughSlots {
        /// Slots needed (tasks + 1 for the AppMaster).
        needed: u32,
        /// Slots free.
        free: u32,
    },
    /// No such application (to restart).
    #[error("application {0} does not exist")]
    UnknownApp(AppId),
    /// The master is gone.
    #[error("the cluster has shut down")]
    ClusterStopped,
}

/// Why a kill (or a replay) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KillError {
    /// No such application.
    #[error("application {0} does not exist")]
    UnknownApp(AppId),
    /// It has already ended.
    #[error("application {id} is not running; it is {status}")]
    NotRunning {
        /// The application.
        id: AppId,
        /// Its final status.
        status: AppStatus,
    },
    /// The master is gone.
    #[error("the cluster has shut down")]
    ClusterStopped,
}

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
        }
    }
}

pub(crate) enum MasterCommand {
    Submit { app: Box<StreamApplication>, user: Option<String>, reply: oneshot::Sender<Result<AppId, SubmitError>> },
    Kill { id: AppId, reply: oneshot::Sender<Result<(), KillError>> },
    Replay { id: AppId, reply: oneshot::Sender<Result<(), KillError>> },
    Restart { id: AppId, reply: oneshot::Sender<Result<AppId, SubmitError>> },
}

struct Worker {
    id: WorkerId,
    slots: u32,
    used: u32,
}

struct AppRecord {
    /// The application, for a restart.
    app: StreamApplication,
    appmaster: Option<mpsc::UnboundedSender<AppMasterCommand>>,
    /// Slots held: the AppMaster's and, once allocated, the executors'.
    held: Vec<(WorkerId, u32)>,
}

pub(crate) struct Master {
    config: ClusterConfig,
    runtime: Runtime,
    workers: Vec<Worker>,
    apps: BTreeMap<AppId, AppRecord>,
    next_id: u32,
    board: Arc<Board>,
    to_master: mpsc::UnboundedSender<ToMaster>,
}

impl Master {
    /// Starts the master actor with `config.workers` workers registered.
    pub(crate) fn spawn(
        config: ClusterConfig,
        runtime: Runtime,
        board: Arc<Board>,
    ) -> mpsc::UnboundedSender<MasterCommand> {
        let (tx, commands) = mpsc::unbounded_channel();
        let (to_master, from_appmasters) = mpsc::unbounded_channel();
        let workers =
            (1..=config.workers).map(|i| Worker { id: WorkerId(i), slots: config.slots_per_worker, used: 0 }).collect();
        let master = Master { config, runtime, workers, apps: BTreeMap::new(), next_id: 1, board, to_master };
        for w in &master.workers {
            tracing::info!(worker = %w.id, slots = w.slots, "Worker registered.");
        }
        master.publish_workers();
        tokio::spawn(master.run(commands, from_appmasters));
        tx
    }

    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<MasterCommand>,
        mut from_appmasters: mpsc::UnboundedReceiver<ToMaster>,
    ) {
        loop {
            tokio::select! {
                c = commands.recv() => match c {
                    Some(MasterCommand::Submit { app, user, reply }) => {
                        let _ = reply.send(self.submit_replacing(*app, None, user));
                    }
                    Some(MasterCommand::Kill { id, reply }) => {
                        let _ = reply.send(self.command(id, AppMasterCommand::Kill));
                    }
                    Some(MasterCommand::Replay { id, reply }) => {
                        let _ = reply.send(self.command(id, AppMasterCommand::Replay));
                    }
                    Some(MasterCommand::Restart { id, reply }) => {
                        let _ = reply.send(self.restart(id));
                    }
                    None => break,
                },
                Some(m) = from_appmasters.recv() => self.on_appmaster(m),
            }
        }
        // Every client is gone: end what is still running.
        for record in self.apps.values_mut() {
            if let Some(am) = record.appmaster.take() {
                let _ = am.send(AppMasterCommand::Kill);
            }
        }
    }

    fn free(&self) -> Vec<(WorkerId, u32)> {
        self.workers.iter().map(|w| (w.id, w.slots - w.used)).collect()
    }

    fn take_slots(&mut self, allocation: &[(WorkerId, u32)]) {
        for &(id, n) in allocation {
            if let Some(w) = self.workers.iter_mut().find(|w| w.id == id) {
                w.used += n;
            }
        }
        self.publish_workers();
    }

    fn publish_workers(&self) {
        *self.board.workers.lock() =
            self.workers.iter().map(|w| WorkerSummary { id: w.id, slots: w.slots, used: w.used }).collect();
    }

    /// Kills the application if it runs and submits it again (under a new id).
    fn restart(&mut self, id: AppId) -> Result<AppId, SubmitError> {
        let app = self.apps.get(&id).map(|r| r.app.clone()).ok_or(SubmitError::UnknownApp(id))?;
        let user = self.board.apps.lock().get(&id).map(|(s, _)| s.user.clone());
        let _ = self.command(id, AppMasterCommand::Kill);
        self.submit_replacing(app, Some(id), user)
    }

    /// Submits `app` as `user` (default: the cluster's); an application of the same name may
    /// still run if it is `replacing` (being killed for a restart).
    fn submit_replacing(
        &mut self,
        app: StreamApplication,
        replacing: Option<AppId>,
        user: Option<String>,
    ) -> Result<AppId, SubmitError> {
        {
            let apps = self.board.apps.lock();
            if let Some((summary, _)) =
                apps.values().find(|(s, _)| s.name == app.name() && !s.status.is_terminal() && Some(s.id) != replacing)
            {
                return Err(SubmitError::DuplicateName { name: app.name().to_string(), id: summary.id });
            }
        }
        let needed = app.dag().task_count() + 1;
        let free: u32 = self.free().iter().map(|(_, f)| f).sum();
        if needed > free {
            return Err(SubmitError::NotEnoughSlots { needed, free });
        }
        let am_slot = scheduler::allocate(&self.free(), 1).ok_or(SubmitError::NotEnoughSlots { needed, free })?;
        self.take_slots(&am_slot);
        let id = AppId(self.next_id);
        self.next_id += 1;
        let stats = Arc::new(Mutex::new(AppStats::default()));
        let summary = AppSummary {
            id,
            name: app.name().to_string(),
            status: AppStatus::Pending,
            submission_time: Timestamp::now(),
            start_time: None,
            finish_time: None,
            user: user.unwrap_or_else(|| self.config.user.clone()),
            app_master_worker: am_slot[0].0,
            error: None,
        };
        tracing::info!(app_id = %id, name = %summary.name, worker = %summary.app_master_worker, "Application submitted; launching its AppMaster.");
        self.board.apps.lock().insert(id, (summary, stats.clone()));
        self.board.changed.notify_all();
        let record_app = app.clone();
        let appmaster = appmaster::spawn(AppMasterSpec {
            app_id: id,
            app,
            runtime: self.runtime.clone(),
            flow: self.config.flow,
            data_plane: self.config.data_plane.clone(),
            clock_interval: self.config.clock_interval,
            to_master: self.to_master.clone(),
            stats,
            metrics: self.config.metrics,
            total_retries: self.config.total_retries,
            stop_timeout: self.config.stop_timeout,
        });
        self.apps.insert(id, AppRecord { app: record_app, appmaster: Some(appmaster), held: am_slot });
        Ok(id)
    }

    /// Sends a running application's AppMaster `command` (a kill or a replay).
    fn command(&mut self, id: AppId, command: AppMasterCommand) -> Result<(), KillError> {
        let status = self.board.apps.lock().get(&id).map(|(s, _)| s.status).ok_or(KillError::UnknownApp(id))?;
        if status.is_terminal() {
            return Err(KillError::NotRunning { id, status });
        }
        let record = self.apps.get(&id).ok_or(KillError::UnknownApp(id))?;
        tracing::info!(app_id = %id, ?command, "Telling the AppMaster.");
        if let Some(am) = &record.appmaster {
            let _ = am.send(command);
        }
        Ok(())
    }

    fn on_appmaster(&mut self, message: ToMaster) {
        match message {
            ToMaster::Report { app_id, time, runtime, metrics } => {
                self.board.runtimes.lock().insert(app_id, *runtime);
                let mut store = self.board.metrics.lock();
                store.record(time, metrics);
                let gauges = ProcessGauges::of_this_process();
                store.record(time, gauges.metrics("master"));
                for w in &self.workers {
                    store.record(time, gauges.metrics(&format!("worker{}", w.id)));
                }
            }
            ToMaster::RequestResources { app_id, slots, reply } => match scheduler::allocate(&self.free(), slots) {
                Some(allocation) => {
                    self.take_slots(&allocation);
                    if let Some(r) = self.apps.get_mut(&app_id) {
                        r.held.extend(allocation.iter().copied());
                    }
                    tracing::info!(%app_id, ?allocation, "Slots allocated; launching executors.");
                    let _ = reply.send(Ok(allocation));
                }
                None => {
                    let _ = reply.send(Err(format!("not enough free slots for {slots} tasks")));
                }
            },
            ToMaster::Status { app_id, status, error } => {
                {
                    let mut apps = self.board.apps.lock();
                    let Some((summary, _)) = apps.get_mut(&app_id) else { return };
                    if summary.status.is_terminal() {
                        return;
                    }
                    summary.status = status;
                    match status {
                        AppStatus::Active => summary.start_time = Some(Timestamp::now()),
                        s if s.is_terminal() => {
                            summary.finish_time = Some(Timestamp::now());
                            summary.error = error.clone();
                        }
                        _ => {}
                    }
                }
                match &error {
                    Some(e) => tracing::warn!(%app_id, %status, error = %e, "Application status changed."),
                    None => tracing::info!(%app_id, %status, "Application status changed."),
                }
                if status.is_terminal()
                    && let Some(record) = self.apps.get_mut(&app_id)
                {
                    record.appmaster = None;
                    for (id, n) in std::mem::take(&mut record.held) {
                        if let Some(w) = self.workers.iter_mut().find(|w| w.id == id) {
                            w.used -= n;
                        }
                    }
                    self.publish_workers();
                }
                self.board.changed.notify_all();
            }
        }
    }
}
