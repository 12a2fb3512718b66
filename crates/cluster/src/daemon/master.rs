//! The master daemon: workers, applications, the artifact store and the scheduler, behind the
//! control protocol.
//!
//! One actor owns the state; each connection is a task that forwards requests to it and writes
//! back what it answers, plus what it pushes (launch and kill commands to workers, kill requests
//! to AppMasters).

use super::ControlTiming;
use super::artifacts::ArtifactStore;
use super::reporter::Reporter;
use crate::scheduler;
use gearpump_core::{AppId, Timestamp, WorkerId};
use gearpump_metrics::{MetricsStore, Retention};
use gearpump_protocol::{AppDetail, ClusterSnapshot, MasterSummary, ProcessGauges, WorkerDetail};
use gearpump_protocol::{
    AppInfo, MasterReply, MasterRequest, ProtocolError, WorkerCommand, WorkerInfo, read_hello, read_msg, write_hello,
    write_msg,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

type Out = mpsc::UnboundedSender<MasterReply>;

struct WorkerRecord {
    registered: i64,
    pid: u32,
    config: String,
    log_dir: String,
    host: String,
    slots: u32,
    used: u32,
    last_seen: Instant,
    alive: bool,
    out: Out,
}

struct AppRecord {
    info: AppInfo,
    artifact: String,
    args: Vec<String>,
    /// Slots held, per worker.
    held: Vec<(WorkerId, u32)>,
    /// How many executors it asked for (0: one per worker).
    executors: u32,
    /// Its tasks, for a restart.
    tasks: u32,
    appmaster: Option<Out>,
    /// The connection of its current AppMaster (an earlier one's end is not news).
    appmaster_conn: Option<u64>,
    /// AppMaster processes launched, and how many of them have exited: an exit while a newer
    /// one was launched is an earlier AppMaster's.
    appmaster_launches: u32,
    appmaster_exits: u32,
    /// What its AppMaster last reported.
    runtime: Option<gearpump_protocol::AppRuntime>,
    /// Where a new AppMaster resumes: the start clock the current one last recorded.
    start_clock: i64,
}

enum Command {
    Request { req: MasterRequest, conn: u64, out: Out },
    Disconnected { conn: u64 },
    Tick,
    Report,
}

/// Who is on the other end of a connection.
#[derive(Clone, Copy)]
enum Peer {
    Worker(WorkerId),
    AppMaster(AppId),
}

/// What a master runs with.
#[derive(Debug, Clone)]
pub struct MasterOptions {
    /// Control-plane timing.
    pub timing: ControlTiming,
    /// Where uploaded binaries go.
    pub store: ArtifactStore,
    /// `gearpump.cluster.masters` as `host:port,…`, handed to the processes it starts.
    pub masters: String,
    /// Run each application's executors inside its AppMaster process (`gear local
    /// -sameprocess`) instead of as processes of their own.
    pub same_process: bool,
    /// What the REST API shows of this master: address, members, directories, config.
    pub summary: MasterSummary,
    /// How long metric series are kept.
    pub retention: Retention,
    /// Where metrics go besides the REST API, and how often.
    pub reporter: Option<(Reporter, Duration)>,
    /// How many times an application's AppMaster is relaunched after it died
    /// (`gearpump.application.total-retries`).
    pub total_retries: u32,
}

/// What an application is submitted with: by a client, or again by a restart.
struct Submission {
    name: String,
    artifact: String,
    args: Vec<String>,
    tasks: u32,
    user: String,
    executors: u32,
}

struct MasterState {
    timing: ControlTiming,
    store: ArtifactStore,
    masters: String,
    same_process: bool,
    workers: BTreeMap<WorkerId, WorkerRecord>,
    apps: BTreeMap<AppId, AppRecord>,
    peers: BTreeMap<u64, Peer>,
    next_worker: u32,
    next_app: u32,
    summary: MasterSummary,
    metrics: MetricsStore,
    /// `gearpump.application.total-retries`: AppMaster restarts an application may have.
    total_retries: u32,
    /// The newest point time the reporter has sent: each report sends only newer points.
    reported_up_to: i64,
}

fn is_terminal(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "terminated")
}

impl MasterState {
    fn handle(&mut self, req: MasterRequest, conn: u64, out: &Out) -> Option<MasterReply> {
        Some(match req {
            MasterRequest::RegisterWorker { host, slots, pid, config, log_dir } => {
                let id = WorkerId(self.next_worker);
                self.next_worker += 1;
                tracing::info!(worker = %id, %host, slots, pid, "Worker registered.");
                let record = WorkerRecord {
                    registered: Timestamp::now().0,
                    pid,
                    config,
                    log_dir,
                    host,
                    slots,
                    used: 0,
                    last_seen: Instant::now(),
                    alive: true,
                    out: out.clone(),
                };
                self.workers.insert(id, record);
                self.peers.insert(conn, Peer::Worker(id));
                MasterReply::WorkerRegistered {
                    worker: id,
                    heartbeat_interval_ms: self.timing.heartbeat_interval.as_millis() as u64,
                }
            }
            MasterRequest::Heartbeat { worker, process } => match self.workers.get_mut(&worker) {
                Some(w) if w.alive => {
                    w.last_seen = Instant::now();
                    self.metrics.record(Timestamp::now().0, process.metrics(&format!("worker{worker}")));
                    // Heartbeats need no answer; silence keeps the connection free for pushes.
                    return None;
                }
                _ => MasterReply::Error(format!("worker {worker} is not registered (or was declared dead)")),
            },
            MasterRequest::ListWorkers => MasterReply::Workers(
                self.workers
                    .iter()
                    .map(|(id, w)| WorkerInfo {
                        id: *id,
                        host: w.host.clone(),
                        slots: w.slots,
                        used: w.used,
                        alive: w.alive,
                    })
                    .collect(),
            ),
            MasterRequest::ListApps => MasterReply::Apps(self.apps.values().map(|a| a.info.clone()).collect()),
            MasterRequest::KillApp { app_id } => self.kill(app_id),
            MasterRequest::ReplayApp { app_id } => match self.apps.get(&app_id) {
                None => MasterReply::Error(format!("application {app_id} does not exist")),
                Some(app) if is_terminal(&app.info.status) => {
                    MasterReply::Error(format!("application {app_id} is not running; it is {}", app.info.status))
                }
                Some(app) => match &app.appmaster {
                    Some(am) if am.send(MasterReply::ReplayRequested).is_ok() => {
                        tracing::info!(%app_id, "Replay requested.");
                        MasterReply::Ok
                    }
                    _ => MasterReply::Error(format!("application {app_id} has no AppMaster right now; try again")),
                },
            },
            MasterRequest::UploadArtifact { bytes, last } => {
                let stored = self.store.append(conn, &bytes).map_err(|e| e.to_string()).and_then(|()| {
                    if last { self.store.finish(conn).map(Some).map_err(|e| e.to_string()) } else { Ok(None) }
                });
                match stored {
                    Ok(Some(id)) => {
                        tracing::info!(artifact = %id, "Application binary stored.");
                        MasterReply::ArtifactStored { id }
                    }
                    Ok(None) => MasterReply::Ok,
                    Err(e) => {
                        self.store.abandon(conn);
                        MasterReply::Error(format!("storing the application binary in {}: {e}", self.store.describe()))
                    }
                }
            }
            MasterRequest::FetchArtifact { id, offset } => match self.store.read(&id, offset) {
                Ok((bytes, last)) => MasterReply::ArtifactData { bytes, last },
                Err(e) => MasterReply::Error(format!("reading artifact {id}: {e}")),
            },
            MasterRequest::SubmitApp { name, artifact, args, tasks, user, executors } => {
                self.submit(Submission { name, artifact, args, tasks, user, executors }, None)
            }
            MasterRequest::RegisterAppMaster { app_id } => match self.apps.get_mut(&app_id) {
                Some(app) if !is_terminal(&app.info.status) => {
                    app.appmaster = Some(out.clone());
                    app.appmaster_conn = Some(conn);
                    self.peers.insert(conn, Peer::AppMaster(app_id));
                    tracing::info!(%app_id, "AppMaster registered.");
                    MasterReply::Ok
                }
                Some(app) => MasterReply::Error(format!("application {app_id} is {}", app.info.status)),
                None => MasterReply::Error(format!("application {app_id} does not exist")),
            },
            MasterRequest::RequestResources { app_id, slots } => {
                if self.apps.get(&app_id).is_some_and(|a| a.appmaster_conn != Some(conn)) {
                    return Some(MasterReply::Error(format!("application {app_id} has another AppMaster now")));
                }
                let free: Vec<(WorkerId, u32)> =
                    self.workers.iter().filter(|(_, w)| w.alive).map(|(id, w)| (*id, w.slots - w.used)).collect();
                match (self.apps.contains_key(&app_id), scheduler::allocate(&free, slots)) {
                    (false, _) => MasterReply::Error(format!("application {app_id} does not exist")),
                    (true, None) => MasterReply::Error(format!("not enough free slots for {slots} tasks")),
                    (true, Some(allocation)) => {
                        self.take(app_id, &allocation);
                        tracing::info!(%app_id, ?allocation, "Slots allocated.");
                        MasterReply::Resources(allocation)
                    }
                }
            }
            MasterRequest::LaunchExecutor { app_id, executor, worker, env } => {
                let Some(app) = self.apps.get(&app_id) else {
                    return Some(MasterReply::Error(format!("application {app_id} does not exist")));
                };
                if app.appmaster_conn != Some(conn) {
                    return Some(MasterReply::Error(format!("application {app_id} has another AppMaster now")));
                }
                let env = [self.app_env(app_id), env].concat();
                let cmd = WorkerCommand::Launch {
                    app_id,
                    executor,
                    artifact: app.artifact.clone(),
                    args: app.args.clone(),
                    env,
                };
                match self.workers.get(&worker) {
                    Some(w) if w.alive => {
                        let _ = w.out.send(MasterReply::Worker(cmd));
                        MasterReply::Ok
                    }
                    _ => MasterReply::Error(format!("worker {worker} is not alive")),
                }
            }
            MasterRequest::AppStatus { app_id, status, error } => {
                // An AppMaster the master has replaced already speaks for nothing.
                if self.apps.get(&app_id).is_some_and(|a| a.appmaster_conn == Some(conn)) {
                    self.set_status(app_id, &status, error);
                } else {
                    tracing::info!(%app_id, status, ?error, "Ignored the status of a replaced AppMaster.");
                }
                MasterReply::Ok
            }
            MasterRequest::AppReport { app_id, time, runtime, metrics } => {
                if let Some(app) = self.apps.get_mut(&app_id)
                    && !is_terminal(&app.info.status)
                    && app.appmaster_conn == Some(conn)
                {
                    app.runtime = Some(*runtime);
                    self.metrics.record(time, metrics);
                }
                return None;
            }
            MasterRequest::Snapshot => MasterReply::Snapshot(Box::new(self.snapshot())),
            MasterRequest::QueryMetrics { path, option } => MasterReply::Metrics(self.metrics.query(&path, option)),
            MasterRequest::RestartApp { app_id } => self.restart(app_id),
            MasterRequest::StartClock { app_id, clock } => match self.apps.get_mut(&app_id) {
                Some(app) if app.appmaster_conn == Some(conn) => {
                    app.start_clock = app.start_clock.max(clock);
                    MasterReply::Ok
                }
                _ => MasterReply::Error(format!("application {app_id} has another AppMaster, or none")),
            },
            MasterRequest::ProcessExited { app_id, executor, code } => {
                if executor == -1
                    && let Some(app) = self.apps.get_mut(&app_id)
                    && !is_terminal(&app.info.status)
                {
                    app.appmaster_exits += 1;
                    // Not an earlier AppMaster's exit, noticed after its successor was launched.
                    if app.appmaster_exits >= app.appmaster_launches {
                        let why = format!(
                            "the AppMaster process exited ({})",
                            code.map_or("killed".into(), |c| format!("status {c}"))
                        );
                        self.appmaster_lost(app_id, &why);
                    }
                }
                return None;
            }
        })
    }

    fn snapshot(&self) -> ClusterSnapshot {
        ClusterSnapshot {
            master: self.summary.clone(),
            workers: self
                .workers
                .iter()
                .map(|(id, w)| WorkerDetail {
                    info: WorkerInfo { id: *id, host: w.host.clone(), slots: w.slots, used: w.used, alive: w.alive },
                    registered: w.registered,
                    pid: w.pid,
                    config: w.config.clone(),
                    log_dir: w.log_dir.clone(),
                })
                .collect(),
            apps: self.apps.values().map(|a| AppDetail { info: a.info.clone(), runtime: a.runtime.clone() }).collect(),
        }
    }

    /// Kills the application if it runs and submits its binary and arguments again.
    fn restart(&mut self, app_id: AppId) -> MasterReply {
        let Some(app) = self.apps.get(&app_id) else {
            return MasterReply::Error(format!("application {app_id} does not exist"));
        };
        let again = Submission {
            name: app.info.name.clone(),
            artifact: app.artifact.clone(),
            args: app.args.clone(),
            tasks: app.tasks,
            user: app.info.user.clone(),
            executors: app.executors,
        };
        if !is_terminal(&app.info.status) {
            self.kill(app_id);
        }
        tracing::info!(%app_id, "Restarting application.");
        self.submit(again, Some(app_id))
    }

    fn app_env(&self, app_id: AppId) -> Vec<(String, String)> {
        let (user, executors) = self.apps.get(&app_id).map(|a| (a.info.user.clone(), a.executors)).unwrap_or_default();
        vec![
            ("GEARPUMP_APP_ID".into(), app_id.0.to_string()),
            ("GEARPUMP_MASTERS".into(), self.masters.clone()),
            ("GEARPUMP_USER".into(), user),
            ("GEARPUMP_EXECUTORS".into(), executors.to_string()),
            ("GEARPUMP_SAME_PROCESS".into(), if self.same_process { "1" } else { "0" }.into()),
            // Relative paths of the application (its checkpoint store) are the master's.
            ("GEARPUMP_HOME".into(), self.summary.home.clone()),
        ]
    }

    fn take(&mut self, app_id: AppId, allocation: &[(WorkerId, u32)]) {
        for &(id, n) in allocation {
            if let Some(w) = self.workers.get_mut(&id) {
                w.used += n;
            }
        }
        if let Some(app) = self.apps.get_mut(&app_id) {
            app.held.extend_from_slice(allocation);
        }
    }

    /// Accepts an application (`replacing`: the one a restart replaces, whose name may still
    /// be running) and launches its AppMaster.
    fn submit(&mut self, submission: Submission, replacing: Option<AppId>) -> MasterReply {
        let Submission { name, artifact, args, tasks, user, executors } = submission;
        let name = name.as_str();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return MasterReply::Error(format!(
                "invalid application name {name:?}: only letters, digits and underscore"
            ));
        }
        if let Some(running) = self
            .apps
            .values()
            .find(|a| a.info.name == *name && !is_terminal(&a.info.status) && Some(a.info.id) != replacing)
        {
            return MasterReply::Error(format!(
                "an application named {name:?} is already running as application {}",
                running.info.id
            ));
        }
        if !self.store.contains(&artifact) {
            return MasterReply::Error(format!("no uploaded application binary {artifact}"));
        }
        let free: Vec<(WorkerId, u32)> =
            self.workers.iter().filter(|(_, w)| w.alive).map(|(id, w)| (*id, w.slots - w.used)).collect();
        let total: u32 = free.iter().map(|(_, f)| f).sum();
        if tasks + 1 > total {
            return MasterReply::Error(format!(
                "not enough free slots: the application needs {}, the cluster has {total}",
                tasks + 1
            ));
        }
        let Some(am) = scheduler::allocate(&free, 1) else {
            return MasterReply::Error("no worker has a free slot".into());
        };
        let app_id = AppId(self.next_app);
        self.next_app += 1;
        let worker = am[0].0;
        let info = AppInfo {
            id: app_id,
            name: name.to_string(),
            status: "pending".into(),
            worker: Some(worker),
            user,
            submission_time: Timestamp::now().0,
            start_time: None,
            finish_time: None,
            error: None,
        };
        self.apps.insert(
            app_id,
            AppRecord {
                info,
                artifact: artifact.clone(),
                args: args.clone(),
                held: Vec::new(),
                appmaster: None,
                appmaster_conn: None,
                appmaster_launches: 1,
                appmaster_exits: 0,
                executors,
                tasks,
                runtime: None,
                start_clock: 0,
            },
        );
        self.take(app_id, &am);
        let cmd = WorkerCommand::Launch { app_id, executor: -1, artifact, args, env: self.app_env(app_id) };
        let _ = self.workers[&worker].out.send(MasterReply::Worker(cmd));
        tracing::info!(%app_id, %name, %worker, "Application submitted; launching its AppMaster.");
        MasterReply::Submitted { app_id }
    }

    fn kill(&mut self, app_id: AppId) -> MasterReply {
        let Some(app) = self.apps.get(&app_id) else {
            return MasterReply::Error(format!("application {app_id} does not exist"));
        };
        if is_terminal(&app.info.status) {
            return MasterReply::Error(format!("application {app_id} is not running; it is {}", app.info.status));
        }
        tracing::info!(%app_id, "Killing application.");
        match &app.appmaster {
            // The AppMaster stops its tasks (on_stop runs) and reports `terminated`.
            Some(am) if am.send(MasterReply::KillRequested).is_ok() => {}
            _ => self.set_status(app_id, "terminated", None),
        }
        MasterReply::Ok
    }

    fn set_status(&mut self, app_id: AppId, status: &str, error: Option<String>) {
        let Some(app) = self.apps.get_mut(&app_id) else { return };
        if is_terminal(&app.info.status) {
            return;
        }
        app.info.status = status.to_string();
        if status == "active" {
            app.info.start_time = Some(Timestamp::now().0);
        }
        match &error {
            Some(e) => tracing::warn!(%app_id, status, error = %e, "Application status changed."),
            None => tracing::info!(%app_id, status, "Application status changed."),
        }
        if is_terminal(status) {
            app.info.finish_time = Some(Timestamp::now().0);
            app.info.error = error;
            app.appmaster = None;
            for (id, n) in std::mem::take(&mut app.held) {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.used = w.used.saturating_sub(n);
                }
            }
            // Whatever processes remain go.
            for w in self.workers.values().filter(|w| w.alive) {
                let _ = w.out.send(MasterReply::Worker(WorkerCommand::KillApp { app_id }));
            }
        }
    }

    fn disconnected(&mut self, conn: u64) {
        self.store.abandon(conn);
        match self.peers.remove(&conn) {
            Some(Peer::Worker(id)) => self.worker_lost(id, "its connection closed"),
            Some(Peer::AppMaster(app_id)) => {
                if let Some(app) = self.apps.get(&app_id)
                    && !is_terminal(&app.info.status)
                    && app.appmaster_conn == Some(conn)
                {
                    self.appmaster_lost(app_id, "the AppMaster disconnected");
                }
            }
            None => {}
        }
    }

    fn worker_lost(&mut self, id: WorkerId, why: &str) {
        let Some(w) = self.workers.get_mut(&id) else { return };
        if !w.alive {
            return;
        }
        w.alive = false;
        tracing::warn!(worker = %id, host = %w.host, "Worker is dead: {why}.");
        // Its slots are gone. An application whose AppMaster ran there gets a new AppMaster;
        // the others lose executors, which their AppMasters replace on live workers.
        let mut orphaned = Vec::new();
        for app in self.apps.values_mut().filter(|a| !is_terminal(&a.info.status)) {
            app.held.retain(|(w, _)| *w != id);
            if app.info.worker == Some(id) {
                orphaned.push(app.info.id);
            }
        }
        for app_id in orphaned {
            self.appmaster_lost(app_id, &format!("worker {id}, where its AppMaster ran, died"));
        }
    }

    /// The AppMaster of a running application is gone (its process or its worker died):
    /// launches a new one, which restarts the tasks from the start clock its predecessor last
    /// reported (exactly-once state resumes from the checkpoints there). Past the restart
    /// budget (`gearpump.application.total-retries`) the application fails.
    fn appmaster_lost(&mut self, app_id: AppId, why: &str) {
        let budget = self.total_retries;
        let Some(app) = self.apps.get_mut(&app_id) else { return };
        if is_terminal(&app.info.status) {
            return;
        }
        app.appmaster = None;
        app.appmaster_conn = None;
        let attempt = app.appmaster_launches;
        if attempt > budget {
            let error = format!("{why}; its AppMaster was restarted {budget} times already");
            return self.set_status(app_id, "failed", Some(error));
        }
        let start_clock = app.start_clock;
        // Its executors go with it, and its slots are free for the new AppMaster to ask for.
        for w in self.workers.values().filter(|w| w.alive) {
            let _ = w.out.send(MasterReply::Worker(WorkerCommand::KillApp { app_id }));
        }
        for (id, n) in std::mem::take(&mut app.held) {
            if let Some(w) = self.workers.get_mut(&id) {
                w.used = w.used.saturating_sub(n);
            }
        }
        let free: Vec<(WorkerId, u32)> =
            self.workers.iter().filter(|(_, w)| w.alive).map(|(id, w)| (*id, w.slots - w.used)).collect();
        let Some(am) = scheduler::allocate(&free, 1) else {
            let error = format!("{why}; no worker has a free slot for a new AppMaster");
            return self.set_status(app_id, "failed", Some(error));
        };
        let worker = am[0].0;
        self.take(app_id, &am);
        let Some(app) = self.apps.get_mut(&app_id) else { return };
        app.appmaster_launches += 1;
        app.info.worker = Some(worker);
        app.info.status = "pending".into();
        let (artifact, args) = (app.artifact.clone(), app.args.clone());
        let mut env = self.app_env(app_id);
        env.push(("GEARPUMP_START_CLOCK".into(), start_clock.to_string()));
        env.push(("GEARPUMP_APPMASTER_ATTEMPT".into(), attempt.to_string()));
        let cmd = WorkerCommand::Launch { app_id, executor: -1, artifact, args, env };
        let _ = self.workers[&worker].out.send(MasterReply::Worker(cmd));
        tracing::warn!(%app_id, %worker, start_clock, attempt, "{why}: launching a new AppMaster.");
    }

    /// Sends the metrics that changed since the last report to the configured reporter (a
    /// process that stopped reporting is not sent again and again with its old time).
    fn report(&mut self, reporter: &Reporter) {
        let since = self.reported_up_to;
        let points: Vec<_> = self.metrics.latest().filter(|p| p.time > since).cloned().collect();
        self.reported_up_to = points.iter().map(|p| p.time).max().unwrap_or(since);
        reporter.send(points);
    }

    fn tick(&mut self) {
        let now = Timestamp::now().0;
        self.metrics.record(now, ProcessGauges::of_this_process().metrics("master"));
        let timeout = self.timing.worker_timeout;
        let silent: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.alive && w.last_seen.elapsed() > timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in silent {
            self.worker_lost(id, &format!("no heartbeat for {timeout:?}"));
        }
    }
}

/// Runs a master on `listener` until `shutdown` completes.
pub async fn run_master(listener: TcpListener, options: MasterOptions, shutdown: impl Future<Output = ()>) {
    let MasterOptions { timing, store, masters, same_process, summary, retention, reporter, total_retries } = options;
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(%addr, jarstore = %store.describe(), "Master started.");
    let (tx, mut rx) = mpsc::unbounded_channel::<Command>();
    let mut state = MasterState {
        timing,
        store,
        masters,
        same_process,
        workers: BTreeMap::new(),
        apps: BTreeMap::new(),
        peers: BTreeMap::new(),
        next_worker: 1,
        next_app: 1,
        summary: MasterSummary { started: Timestamp::now().0, ..summary },
        metrics: MetricsStore::new(retention),
        reported_up_to: i64::MIN,
        total_retries,
    };
    let reporter_task = reporter.map(|(reporter, every)| {
        let ticker = tx.clone();
        tracing::info!(reporter = %reporter, every = ?every, "Reporting metrics.");
        let task = tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.tick().await;
            loop {
                interval.tick().await;
                if ticker.send(Command::Report).is_err() {
                    break;
                }
            }
        });
        (reporter, task)
    });
    let reporter = reporter_task.as_ref().map(|(r, _)| r.clone());
    let ticker = tx.clone();
    let tick_every = (timing.heartbeat_interval / 2).max(Duration::from_millis(50));
    let tick_task = tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick_every);
        loop {
            interval.tick().await;
            if ticker.send(Command::Tick).is_err() {
                break;
            }
        }
    });
    let actor = tokio::spawn(async move {
        while let Some(cmd) = rx.recv().await {
            match cmd {
                Command::Request { req, conn, out } => {
                    if let Some(reply) = state.handle(req, conn, &out) {
                        let _ = out.send(reply);
                    }
                }
                Command::Disconnected { conn } => state.disconnected(conn),
                Command::Tick => state.tick(),
                Command::Report => {
                    if let Some(r) = &reporter {
                        state.report(r);
                    }
                }
            }
        }
    });
    let accept = async {
        let mut next_conn = 0u64;
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    next_conn += 1;
                    let tx = tx.clone();
                    let conn = next_conn;
                    tokio::spawn(async move {
                        if let Err(e) = serve_connection(stream, conn, &tx).await {
                            match e {
                                ProtocolError::Closed => tracing::debug!(%peer, "Control connection closed."),
                                e => tracing::warn!(%peer, error = %e, "Dropped a control connection."),
                            }
                        }
                        let _ = tx.send(Command::Disconnected { conn });
                    });
                }
                Err(e) => tracing::warn!(error = %e, "Accepting a control connection failed."),
            }
        }
    };
    tokio::select! {
        _ = accept => {}
        _ = shutdown => {}
    }
    tick_task.abort();
    if let Some((_, task)) = reporter_task {
        task.abort();
    }
    actor.abort();
    tracing::info!(%addr, "Master stopped.");
}

async fn serve_connection(
    stream: TcpStream,
    conn: u64,
    tx: &mpsc::UnboundedSender<Command>,
) -> Result<(), ProtocolError> {
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    read_hello(&mut rd).await?;
    write_hello(&mut wr).await?;
    let (out, mut outbox) = mpsc::unbounded_channel::<MasterReply>();
    let writer = tokio::spawn(async move {
        while let Some(msg) = outbox.recv().await {
            if write_msg(&mut wr, &msg).await.is_err() {
                break;
            }
        }
    });
    let result = loop {
        let req: MasterRequest = match read_msg(&mut rd).await {
            Ok(r) => r,
            Err(e) => break Err(e),
        };
        if tx.send(Command::Request { req, conn, out: out.clone() }).is_err() {
            break Ok(());
        }
    };
    writer.abort();
    result
}
