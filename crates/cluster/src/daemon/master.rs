//! The master daemon: workers, applications, the artifact store and the scheduler, behind the
//! control protocol.
//!
//! One actor owns the state; each connection is a task that forwards requests to it and writes
//! back what it answers, plus what it pushes (launch and kill commands to workers, kill requests
//! to AppMasters).
//!
//! With several masters (`gearpump.cluster.masters`), only the Raft leader serves: the others
//! answer [`MasterReply::NotLeader`], and clients find the leader by asking any master
//! ([`MasterRequest::WhoLeads`]). The leader's every change of the replicated state
//! ([`raft::Replicated`]: applications, next ids, binaries) is a Raft log entry that a majority
//! of the masters stores before the change takes effect: the answer, and what is pushed to
//! workers, wait for it. A change the majority does not take is refused and forgotten. A master
//! that becomes leader rebuilds its state from the replicated one; workers and AppMasters
//! re-register with it, keeping their ids and their processes. A leader that loses its
//! majority stops answering as one.

use super::ControlTiming;
use super::artifacts::ArtifactStore;
use super::raft::{self, AppMeta, Change, Raft, Replicated};
use super::reporter::Reporter;
use crate::scheduler;
use gearpump_config::HostPort;
use gearpump_core::{AppId, Timestamp, WorkerId};
use gearpump_metrics::{MetricsStore, Retention};
use gearpump_protocol::{AppDetail, ClusterSnapshot, MasterSummary, ProcessGauges, WorkerDetail};
use gearpump_protocol::{
    AppInfo, ClusterSecret, ConnectionGate, MasterReply, MasterRequest, PortLimits, ProtocolError, WorkerCommand,
    WorkerInfo, read_msg, server_handshake, write_msg,
};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// How long the leader waits for a majority to store a change before refusing it.
const WRITE_LIMIT: Duration = Duration::from_secs(5);

/// A leader that has heard from no majority for this long does not act as one (well above
/// the heartbeat interval, so a busy disk does not make the leader flap).
const QUORUM_SILENCE: Duration = Duration::from_millis(2000);

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
    Request {
        req: MasterRequest,
        conn: u64,
        out: Out,
    },
    Disconnected {
        conn: u64,
    },
    Tick,
    Report,
    /// This master started or stopped leading.
    Leadership {
        leading: bool,
    },
    /// An uploaded binary was copied to `stored` other masters.
    ArtifactCopied {
        id: String,
        stored: usize,
        failures: Vec<String>,
        out: Out,
    },
}

/// Who leads, as the connections answer [`MasterRequest::WhoLeads`] without asking the actor.
#[derive(Debug, Clone, Default)]
struct Leadership {
    /// The leader's address, if known (and, if it is this master, backed by a majority).
    leader: Option<String>,
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
    /// How long an ended application's processes may take to exit by themselves before
    /// their workers kill them (`gearpump.application.stop-timeout-ms`).
    pub stop_timeout: Duration,
    /// This master's address, as `gearpump.cluster.masters` lists it.
    pub me: HostPort,
    /// Every master, this one included: the members of the masters' Raft.
    pub members: Vec<HostPort>,
    /// Where this master keeps its Raft log and snapshots.
    pub data_dir: PathBuf,
    /// Connections its control port keeps open at once, and the time each has to say hello.
    pub limits: PortLimits,
    /// The cluster secret every peer must prove it holds (and this master proves to them).
    pub secret: ClusterSecret,
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
    /// `gearpump.application.stop-timeout-ms`: how long an ended application's processes
    /// may take to exit.
    stop_timeout: Duration,
    /// The newest point time the reporter has sent: each report sends only newer points.
    reported_up_to: i64,
    /// The binaries a majority of the masters stores.
    artifacts: BTreeSet<String>,
    /// The replicated state as last committed: what a change is measured against.
    committed: Replicated,
    /// Pushes to send once the change that caused them is committed.
    outbox: Vec<(Out, MasterReply)>,
    /// When this master started leading: workers that have not re-registered a while after
    /// are dead.
    leading_since: Option<Instant>,
    /// Whether the workers of the replicated state were checked after the failover.
    orphans_checked: bool,
    /// Who leads, shared with the connections.
    leadership: Arc<RwLock<Leadership>>,
}

impl AppRecord {
    /// What every master keeps of it.
    fn meta(&self) -> AppMeta {
        AppMeta {
            info: self.info.clone(),
            artifact: self.artifact.clone(),
            args: self.args.clone(),
            held: self.held.clone(),
            executors: self.executors,
            tasks: self.tasks,
            appmaster_launches: self.appmaster_launches,
            start_clock: self.start_clock,
        }
    }

    /// The record of `meta`, with what this master knew of it besides (`known`), if anything.
    fn from_meta(meta: AppMeta, known: Option<AppRecord>) -> AppRecord {
        let AppMeta { info, artifact, args, held, executors, tasks, appmaster_launches, start_clock } = meta;
        let (appmaster, appmaster_conn, appmaster_exits, runtime) = match known {
            Some(k) => (k.appmaster, k.appmaster_conn, k.appmaster_exits, k.runtime),
            // Its current AppMaster is alive until a worker says otherwise.
            None => (None, None, appmaster_launches.saturating_sub(1), None),
        };
        AppRecord {
            info,
            artifact,
            args,
            held,
            executors,
            tasks,
            appmaster,
            appmaster_conn,
            appmaster_launches,
            appmaster_exits,
            runtime,
            start_clock,
        }
    }
}

fn is_terminal(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "terminated")
}

impl MasterState {
    fn handle(&mut self, req: MasterRequest, conn: u64, out: &Out) -> Option<MasterReply> {
        Some(match req {
            MasterRequest::RegisterWorker { host, slots, pid, config, log_dir, previous, running } => {
                // A worker that an earlier leader knew keeps its id (applications hold its
                // slots by it).
                let id = match previous {
                    Some(id) if id.0 < self.next_worker && !self.workers.get(&id).is_some_and(|w| w.alive) => id,
                    _ => {
                        self.next_worker += 1;
                        WorkerId(self.next_worker - 1)
                    }
                };
                let used = self.slots_held_on(id);
                tracing::info!(worker = %id, %host, slots, pid, again = previous.is_some(), "Worker registered.");
                let record = WorkerRecord {
                    registered: Timestamp::now().0,
                    pid,
                    config,
                    log_dir,
                    host,
                    slots,
                    used,
                    last_seen: Instant::now(),
                    alive: true,
                    out: out.clone(),
                };
                self.workers.insert(id, record);
                self.peers.insert(conn, Peer::Worker(id));
                // An AppMaster this worker ran and no longer runs ended while no master
                // listened (a failover): its application needs a new one.
                let gone: Vec<AppId> = self
                    .apps
                    .values()
                    .filter(|a| !is_terminal(&a.info.status) && a.info.worker == Some(id) && a.appmaster.is_none())
                    .filter(|a| !running.contains(&(a.info.id, -1)))
                    .map(|a| a.info.id)
                    .collect();
                for app_id in gone {
                    self.appmaster_lost(app_id, &format!("its AppMaster is no longer running on worker {id}"));
                }
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
            MasterRequest::HasArtifact { id } => {
                if self.artifacts.contains(&id) && self.store.contains(&id) {
                    MasterReply::ArtifactStored { id }
                } else {
                    MasterReply::Ok
                }
            }
            MasterRequest::FetchArtifact { id, offset } => match self.store.read(&id, offset) {
                Ok((bytes, last)) => MasterReply::ArtifactData { bytes, last },
                Err(e) => MasterReply::Error(format!("reading artifact {id}: {e}")),
            },
            MasterRequest::SubmitApp { name, artifact, args, tasks, user, executors } => {
                self.submit(Submission { name, artifact, args, tasks, user, executors }, None)
            }
            MasterRequest::RegisterAppMaster { app_id, attempt } => match self.apps.get_mut(&app_id) {
                Some(app) if u64::from(attempt) + 1 != u64::from(app.appmaster_launches) => {
                    MasterReply::Error(format!(
                        "application {app_id} has a newer AppMaster (launch {}) than this one ({})",
                        app.appmaster_launches,
                        u64::from(attempt) + 1
                    ))
                }
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
                let free: Vec<(WorkerId, u32)> = self
                    .workers
                    .iter()
                    .filter(|(_, w)| w.alive)
                    .map(|(id, w)| (*id, w.slots.saturating_sub(w.used)))
                    .collect();
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
                        self.outbox.push((w.out.clone(), MasterReply::Worker(cmd)));
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
            // Answered by the connection itself.
            MasterRequest::WhoLeads | MasterRequest::Raft { .. } => return None,
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
        let leadership = self.leadership.read().expect("leadership lock").clone();
        ClusterSnapshot {
            // In step with a majority exactly while a leader is known.
            master: MasterSummary {
                synced: leadership.leader.is_some(),
                leader: leadership.leader,
                ..self.summary.clone()
            },
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
        if tasks > gearpump_api::MAX_TASKS {
            return MasterReply::Error(format!(
                "the application asks for {tasks} tasks; at most {} are allowed",
                gearpump_api::MAX_TASKS
            ));
        }
        let free: Vec<(WorkerId, u32)> =
            self.workers.iter().filter(|(_, w)| w.alive).map(|(id, w)| (*id, w.slots.saturating_sub(w.used))).collect();
        // Counted in u64: numbers from the network must not overflow (a panic here stopped
        // the master's actor while its connections stayed open).
        let total: u64 = free.iter().map(|(_, f)| u64::from(*f)).sum();
        let needed = u64::from(tasks) + 1;
        if needed > total {
            return MasterReply::Error(format!(
                "not enough free slots: the application needs {needed}, the cluster has {total}"
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
        self.outbox.push((self.workers[&worker].out.clone(), MasterReply::Worker(cmd)));
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
            // Whatever processes remain go, once they had the time to exit by themselves
            // (the AppMaster waited for its tasks to stop and its executors to exit).
            let grace_ms = self.stop_timeout.as_millis() as u64;
            for w in self.workers.values().filter(|w| w.alive) {
                self.outbox.push((w.out.clone(), MasterReply::Worker(WorkerCommand::KillApp { app_id, grace_ms })));
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
        // Its executors go with it, at once (they must not run beside the new AppMaster's),
        // and its slots are free for the new AppMaster to ask for.
        for w in self.workers.values().filter(|w| w.alive) {
            let kill = WorkerCommand::KillApp { app_id, grace_ms: 0 };
            self.outbox.push((w.out.clone(), MasterReply::Worker(kill)));
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
        self.outbox.push((self.workers[&worker].out.clone(), MasterReply::Worker(cmd)));
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

    /// The slots running applications hold on worker `id`.
    fn slots_held_on(&self, id: WorkerId) -> u32 {
        let running = self.apps.values().filter(|a| !is_terminal(&a.info.status));
        running.flat_map(|a| a.held.iter()).filter(|(w, _)| *w == id).map(|(_, n)| n).sum()
    }

    /// The replicated part of the state.
    fn replicated(&self) -> Replicated {
        Replicated {
            next_app: self.next_app,
            next_worker: self.next_worker,
            apps: self.apps.iter().map(|(id, a)| (*id, a.meta())).collect(),
            artifacts: self.artifacts.clone(),
        }
    }

    /// Makes the state `from` (committed), keeping what is known besides of the applications
    /// still in it; slot use follows the applications' holdings.
    fn rebuild(&mut self, from: Replicated) {
        let mut apps = BTreeMap::new();
        for (id, meta) in &from.apps {
            apps.insert(*id, AppRecord::from_meta(meta.clone(), self.apps.remove(id)));
        }
        self.apps = apps;
        self.next_app = from.next_app.max(1);
        self.next_worker = from.next_worker.max(1);
        self.artifacts = from.artifacts.clone();
        self.committed = from;
        self.outbox.clear();
        let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
        for id in ids {
            let used = self.slots_held_on(id);
            self.workers.get_mut(&id).expect("a listed worker").used = used;
        }
    }

    /// This master now leads, with the replicated state `from`: workers and AppMasters will
    /// register again.
    fn start_leading(&mut self, from: Replicated) {
        self.workers.clear();
        self.peers.clear();
        self.apps.clear();
        self.rebuild(from);
        self.leading_since = Some(Instant::now());
        self.orphans_checked = false;
        tracing::info!(apps = self.apps.len(), next_app = self.next_app, "Leading the masters.");
    }

    /// This master no longer leads: it forgets who is connected.
    fn stop_leading(&mut self) {
        self.workers.clear();
        self.peers.clear();
        self.leading_since = None;
        self.outbox.clear();
        for app in self.apps.values_mut() {
            app.appmaster = None;
            app.appmaster_conn = None;
        }
        tracing::warn!("No longer leading the masters.");
    }

    /// After a failover, workers that did not register again within the worker timeout are
    /// dead: their slots are gone and AppMasters that ran there are relaunched.
    fn check_orphans(&mut self) {
        let Some(since) = self.leading_since else { return };
        if self.orphans_checked || since.elapsed() < self.timing.worker_timeout {
            return;
        }
        self.orphans_checked = true;
        let mut lost = Vec::new();
        for app in self.apps.values_mut().filter(|a| !is_terminal(&a.info.status)) {
            app.held.retain(|(w, _)| self.workers.contains_key(w));
            if let Some(w) = app.info.worker.filter(|w| !self.workers.contains_key(w)) {
                lost.push((app.info.id, w));
            }
        }
        for (app_id, w) in lost {
            self.appmaster_lost(app_id, &format!("worker {w}, where its AppMaster ran, did not come back"));
        }
    }

    fn tick(&mut self) {
        self.check_orphans();
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

/// Whether `req` may change the replicated state.
fn may_change(req: &MasterRequest) -> bool {
    !matches!(
        req,
        MasterRequest::Heartbeat { .. }
            | MasterRequest::AppReport { .. }
            | MasterRequest::ListApps
            | MasterRequest::ListWorkers
            | MasterRequest::Snapshot
            | MasterRequest::QueryMetrics { .. }
            | MasterRequest::FetchArtifact { .. }
            | MasterRequest::HasArtifact { .. }
    )
}

/// Commits what the last event changed of the replicated state, then sends what it pushes and
/// `reply`. A change a majority does not store within [`WRITE_LIMIT`] is undone and `reply`
/// becomes an error.
async fn commit(state: &mut MasterState, raft: &Raft, reply: Option<(Out, MasterReply)>) {
    let now = state.replicated();
    let change: Change = state.committed.diff(&now);
    if !change.is_empty() {
        let written = tokio::time::timeout(WRITE_LIMIT, raft.client_write(change)).await;
        let failure = match written {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no majority of the masters stored it within {WRITE_LIMIT:?}")),
        };
        if let Some(why) = failure {
            tracing::warn!(error = %why, "A change of the replicated state was refused.");
            let committed = state.committed.clone();
            state.rebuild(committed);
            if let Some((out, _)) = reply {
                let _ = out.send(MasterReply::Error(format!(
                    "the masters could not agree on the change: {why}; nothing changed"
                )));
            }
            return;
        }
        state.committed = now;
    }
    for (out, msg) in std::mem::take(&mut state.outbox) {
        let _ = out.send(msg);
    }
    if let Some((out, reply)) = reply {
        let _ = out.send(reply);
    }
}

/// Copies binary `id` from `store` to the master at `to`.
async fn copy_artifact(store: &ArtifactStore, id: &str, to: &HostPort, secret: &ClusterSecret) -> Result<(), String> {
    let mut client = super::MasterClient::connect_direct(to, secret).await.map_err(|e| format!("{to}: {e}"))?;
    let chunk = |offset| store.read(id, offset).map_err(std::io::Error::other);
    match client.upload_artifact(chunk).await {
        Ok(Ok(got)) if got == id => Ok(()),
        Ok(Ok(got)) => Err(format!("{to} stored {got}, not {id}")),
        Ok(Err(other)) => Err(format!("{to} answered {other:?}")),
        Err(e) => Err(format!("{to}: {e}")),
    }
}

/// Fetches binary `id` from any of `peers` into `store` (a master that was away when it was
/// uploaded).
async fn fetch_artifact(
    store: &ArtifactStore,
    id: &str,
    peers: &[HostPort],
    upload: u64,
    secret: &ClusterSecret,
) -> Result<(), String> {
    let mut why = String::from("no other master");
    for peer in peers {
        let fetched = async {
            let mut client = super::MasterClient::connect_direct(peer, secret).await.map_err(|e| e.to_string())?;
            match client.fetch_artifact(id, |bytes| store.append(upload, bytes)).await {
                Ok(Ok(())) => {}
                Ok(Err(other)) => return Err(format!("{other:?}")),
                Err(e) => return Err(e.to_string()),
            }
            match store.finish(upload) {
                Ok(got) if got == id => Ok(()),
                Ok(got) => Err(format!("fetched {got}, not {id}")),
                Err(e) => Err(e.to_string()),
            }
        }
        .await;
        match fetched {
            Ok(()) => return Ok(()),
            Err(e) => {
                store.abandon(upload);
                why = format!("{peer}: {e}");
            }
        }
    }
    Err(why)
}

/// Starts this master's Raft node (initializing the cluster of `members` on first start).
async fn start_raft(
    me: &HostPort,
    members: &[HostPort],
    dir: &std::path::Path,
    artifacts: mpsc::UnboundedSender<String>,
    secret: &ClusterSecret,
) -> Result<(Raft, raft::StateMachine, u64), String> {
    let id =
        members.iter().position(|m| m == me).ok_or_else(|| format!("master {me} is not among {members:?}"))? as u64 + 1;
    let dir = dir.join("raft");
    let log = raft::LogStore::open(&dir).map_err(|e| format!("opening the Raft log in {}: {e}", dir.display()))?;
    let sm = raft::StateMachine::open(&dir, artifacts)
        .map_err(|e| format!("opening the Raft snapshot in {}: {e}", dir.display()))?;
    let node = Raft::new(id, raft::config(), raft::Network { secret: secret.clone() }, log, sm.clone())
        .await
        .map_err(|e| format!("starting Raft: {e}"))?;
    if !node.is_initialized().await.map_err(|e| e.to_string())? {
        // Every master initializes with the same members; the first election decides.
        if let Err(e) = node.initialize(raft::members(members)).await {
            tracing::debug!(error = %e, "Raft initialization");
        }
    }
    Ok((node, sm, id))
}

/// Whether this master leads: its Raft node `claims` leadership, a majority of the `members`
/// answered it within [`QUORUM_SILENCE`] (`quorum_ms` ago), and it has applied every entry
/// its log held when it became leader (`catch_up`, kept across calls).
fn decide_leading(
    claims: bool,
    members: usize,
    quorum_ms: Option<u64>,
    applied: Option<u64>,
    last_log: Option<u64>,
    catch_up: &mut Option<u64>,
) -> bool {
    let backed = members == 1 || quorum_ms.is_some_and(|ms| ms < QUORUM_SILENCE.as_millis() as u64);
    if !claims {
        *catch_up = None;
    } else if catch_up.is_none() {
        *catch_up = Some(last_log.unwrap_or(0));
    }
    let caught_up = catch_up.is_some_and(|target| applied.unwrap_or(0) >= target);
    claims && backed && caught_up
}

/// Watches this master's Raft node and tells the actor when it starts or stops leading. A
/// leader leads only once it has applied every entry of its log (so its state is the whole
/// replicated one) and only while a majority has answered it within [`QUORUM_SILENCE`], so
/// the minority side of a partition stops acting as leader.
async fn watch_leadership(
    raft: Raft,
    id: u64,
    members: Vec<HostPort>,
    shared: Arc<RwLock<Leadership>>,
    tx: mpsc::UnboundedSender<Command>,
) {
    let mut metrics = raft.metrics();
    let mut leading = false;
    // The last log index when this master became leader: it leads once that is applied.
    let mut catch_up: Option<u64> = None;
    loop {
        let (claims, current, quorum_ms, applied, last_log) = {
            let m = metrics.borrow_and_update();
            let claims = m.state == openraft::ServerState::Leader && m.current_leader == Some(id);
            (claims, m.current_leader, m.millis_since_quorum_ack, m.last_applied.map(|l| l.index), m.last_log_index)
        };
        let now_leading = decide_leading(claims, members.len(), quorum_ms, applied, last_log, &mut catch_up);
        let addr = |n: u64| members.get(n as usize - 1).map(ToString::to_string);
        let leader = if claims { now_leading.then(|| addr(id)).flatten() } else { current.and_then(addr) };
        shared.write().expect("leadership lock").leader = leader;
        if now_leading != leading {
            leading = now_leading;
            if tx.send(Command::Leadership { leading }).is_err() {
                return;
            }
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// A master could not start.
#[derive(Debug, thiserror::Error)]
#[error("the master cannot start: {0}")]
pub struct MasterStartError(String);

/// Runs a master on `listener` until `shutdown` completes. Fails at once if its Raft node
/// cannot start (an unreadable or damaged log, or this master missing from `members`).
pub async fn run_master(
    listener: TcpListener,
    options: MasterOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), MasterStartError> {
    let MasterOptions {
        timing,
        store,
        masters,
        same_process,
        summary,
        retention,
        reporter,
        total_retries,
        stop_timeout,
        me,
        members,
        data_dir,
        limits,
        secret,
    } = options;
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let (artifact_tx, mut artifact_rx) = mpsc::unbounded_channel::<String>();
    let (raft, sm, node_id) = match start_raft(&me, &members, &data_dir, artifact_tx, &secret).await {
        Ok(r) => r,
        Err(e) => return Err(MasterStartError(e)),
    };
    tracing::info!(%addr, node = node_id, masters = members.len(), jarstore = %store.describe(), "Master started.");
    let peers: Vec<HostPort> = members.iter().filter(|m| **m != me).cloned().collect();
    let majority = members.len() / 2 + 1;
    // Binaries the replicated state names that this master lacks are fetched from the others.
    let fetcher = {
        let (store, peers, secret) = (store.clone(), peers.clone(), secret.clone());
        tokio::spawn(async move {
            let mut upload = u64::MAX / 2;
            while let Some(id) = artifact_rx.recv().await {
                for attempt in 0..30 {
                    if store.contains(&id) {
                        break;
                    }
                    upload += 1;
                    match fetch_artifact(&store, &id, &peers, upload, &secret).await {
                        Ok(()) => tracing::info!(artifact = %id, "Fetched a binary from another master."),
                        Err(e) => {
                            tracing::warn!(artifact = %id, attempt, error = %e, "Fetching a binary failed.");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        })
    };
    let leadership = Arc::new(RwLock::new(Leadership::default()));
    let (epoch_tx, epoch_rx) = watch::channel(0u64);
    let (tx, mut rx) = mpsc::unbounded_channel::<Command>();
    let watcher =
        tokio::spawn(watch_leadership(raft.clone(), node_id, members.clone(), leadership.clone(), tx.clone()));
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
        stop_timeout,
        artifacts: BTreeSet::new(),
        committed: Replicated::default(),
        outbox: Vec::new(),
        leading_since: None,
        orphans_checked: false,
        leadership: leadership.clone(),
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
    let actor_raft = raft.clone();
    let actor_tx = tx.clone();
    let actor_secret = secret.clone();
    let actor_leadership = leadership.clone();
    let actor = tokio::spawn(async move {
        let raft = actor_raft;
        let mut leading = false;
        while let Some(cmd) = rx.recv().await {
            match cmd {
                Command::Leadership { leading: now } => {
                    if now && !leading {
                        state.start_leading(sm.state());
                    } else if !now && leading {
                        state.stop_leading();
                        // Workers, AppMasters and clients go and find the new leader.
                        epoch_tx.send_modify(|e| *e += 1);
                    }
                    leading = now;
                }
                Command::Request { req, conn, out } => {
                    let artifacts =
                        matches!(req, MasterRequest::UploadArtifact { .. } | MasterRequest::FetchArtifact { .. });
                    if !leading && !artifacts {
                        let leader = actor_leadership.read().expect("leadership lock").leader.clone();
                        let _ = out.send(MasterReply::NotLeader { leader });
                        continue;
                    }
                    let check = may_change(&req);
                    let reply = state.handle(req, conn, &out);
                    // A new binary counts as uploaded once a majority of the masters has it.
                    if let Some(MasterReply::ArtifactStored { id }) = &reply
                        && leading
                        && !state.artifacts.contains(id)
                    {
                        if peers.is_empty() {
                            state.artifacts.insert(id.clone());
                        } else {
                            let (tx, id) = (actor_tx.clone(), id.clone());
                            let mut copies = tokio::task::JoinSet::new();
                            for peer in peers.clone() {
                                let (store, id, secret) = (state.store.clone(), id.clone(), actor_secret.clone());
                                copies.spawn(async move { copy_artifact(&store, &id, &peer, &secret).await });
                            }
                            tokio::spawn(async move {
                                let (mut stored, mut failures) = (0, Vec::new());
                                while let Some(copied) = copies.join_next().await {
                                    match copied {
                                        Ok(Ok(())) => stored += 1,
                                        Ok(Err(e)) => failures.push(e),
                                        Err(e) => failures.push(e.to_string()),
                                    }
                                }
                                let _ = tx.send(Command::ArtifactCopied { id, stored, failures, out });
                            });
                            continue;
                        }
                    }
                    // A follower keeps binaries only (copies from the leader, fetches).
                    if leading && (check || !state.outbox.is_empty()) {
                        commit(&mut state, &raft, reply.map(|r| (out, r))).await;
                    } else if let Some(reply) = reply {
                        let _ = out.send(reply);
                    }
                }
                Command::ArtifactCopied { id, stored, failures, out } => {
                    if stored + 1 >= majority {
                        if !failures.is_empty() {
                            tracing::warn!(artifact = %id, ?failures, "Some masters did not take a copy of the binary; they will fetch it.");
                        }
                        state.artifacts.insert(id.clone());
                        commit(&mut state, &raft, Some((out, MasterReply::ArtifactStored { id }))).await;
                    } else {
                        let why = format!(
                            "the binary reached {} of {} masters, not a majority: {}",
                            stored + 1,
                            peers.len() + 1,
                            failures.join("; ")
                        );
                        let _ = out.send(MasterReply::Error(why));
                    }
                }
                Command::Disconnected { conn } => {
                    if leading {
                        state.disconnected(conn);
                        commit(&mut state, &raft, None).await;
                    } else {
                        state.store.abandon(conn);
                    }
                }
                Command::Tick => {
                    if leading {
                        state.tick();
                        commit(&mut state, &raft, None).await;
                    }
                }
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
        let gate = ConnectionGate::new(limits);
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let Some(admitted) = gate.admit("master", peer) else { continue };
                    next_conn += 1;
                    let tx = tx.clone();
                    let conn = next_conn;
                    let (raft, leadership, epoch) = (raft.clone(), leadership.clone(), epoch_rx.clone());
                    let me = me.to_string();
                    let secret = secret.clone();
                    tokio::spawn(async move {
                        let _admitted = admitted;
                        let hello_timeout = limits.hello_timeout;
                        let ctx = ConnectionContext { raft, leadership, epoch, me, hello_timeout, secret };
                        if let Err(e) = serve_connection(stream, conn, &tx, ctx).await {
                            match e {
                                ProtocolError::Closed => tracing::debug!(%peer, "Control connection closed."),
                                e @ (ProtocolError::NotAuthenticated { .. } | ProtocolError::Tls(_)) => {
                                    tracing::warn!(%peer, error = %e, "Refused a control connection.");
                                }
                                e => tracing::warn!(%peer, error = %e, "Dropped a control connection."),
                            }
                        }
                        let _ = tx.send(Command::Disconnected { conn });
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Accepting a control connection failed.");
                    // Out of file descriptors, say: do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
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
    watcher.abort();
    fetcher.abort();
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "Stopping Raft failed.");
    }
    tracing::info!(%addr, "Master stopped.");
    Ok(())
}

/// What a connection needs besides the actor.
struct ConnectionContext {
    raft: Raft,
    leadership: Arc<RwLock<Leadership>>,
    /// Bumped when this master stops leading: connections of clients close.
    epoch: watch::Receiver<u64>,
    me: String,
    hello_timeout: Duration,
    secret: ClusterSecret,
}

async fn serve_connection(
    stream: TcpStream,
    conn: u64,
    tx: &mpsc::UnboundedSender<Command>,
    mut ctx: ConnectionContext,
) -> Result<(), ProtocolError> {
    stream.set_nodelay(true)?;
    super::detect_dead_peer(&stream)?;
    let stream = gearpump_protocol::accept_stream(stream, &ctx.secret, ctx.hello_timeout).await?;
    let (mut rd, mut wr) = tokio::io::split(stream);
    server_handshake(&mut rd, &mut wr, &ctx.secret, ctx.hello_timeout).await?;
    let (out, mut outbox) = mpsc::unbounded_channel::<MasterReply>();
    let writer = tokio::spawn(async move {
        while let Some(msg) = outbox.recv().await {
            if write_msg(&mut wr, &msg).await.is_err() {
                break;
            }
        }
    });
    ctx.epoch.borrow_and_update();
    // Another master's Raft connection stays whoever leads.
    let mut raft_peer = false;
    let result = loop {
        let req: MasterRequest = tokio::select! {
            r = read_msg(&mut rd) => match r {
                Ok(r) => r,
                Err(e) => break Err(e),
            },
            _ = ctx.epoch.changed(), if !raft_peer => break Ok(()),
        };
        match req {
            MasterRequest::Raft { rpc } => {
                raft_peer = true;
                let bytes = raft::serve_rpc(&ctx.raft, &rpc).await;
                let _ = out.send(MasterReply::Raft { bytes });
            }
            MasterRequest::WhoLeads => {
                let leader = ctx.leadership.read().expect("leadership lock").leader.clone();
                let _ = out.send(MasterReply::Leader { leader, me: ctx.me.clone() });
            }
            req => {
                if tx.send(Command::Request { req, conn, out: out.clone() }).is_err() {
                    break Ok(());
                }
            }
        }
    };
    writer.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_leads_once_caught_up_and_only_while_a_majority_answers() {
        let mut catch_up = None;
        // A follower does not lead.
        assert!(!decide_leading(false, 3, None, Some(10), Some(10), &mut catch_up));
        // Elected with 12 entries, 10 applied: not yet.
        assert!(!decide_leading(true, 3, Some(0), Some(10), Some(12), &mut catch_up));
        assert_eq!(catch_up, Some(12));
        // New entries of its own do not move the bar.
        assert!(decide_leading(true, 3, Some(100), Some(12), Some(15), &mut catch_up));
        // No majority for longer than QUORUM_SILENCE: it stops acting as leader.
        assert!(!decide_leading(true, 3, Some(2500), Some(15), Some(15), &mut catch_up));
        assert!(!decide_leading(true, 3, None, Some(15), Some(15), &mut catch_up));
        // Heard from a majority again.
        assert!(decide_leading(true, 3, Some(50), Some(15), Some(15), &mut catch_up));
        // Deposed, then elected again later: caught up against the new log.
        assert!(!decide_leading(false, 3, None, Some(15), Some(15), &mut catch_up));
        assert_eq!(catch_up, None);
        assert!(!decide_leading(true, 3, Some(10), Some(15), Some(20), &mut catch_up));
        // A single master needs no one else.
        let mut alone = None;
        assert!(decide_leading(true, 1, None, Some(3), Some(3), &mut alone));
    }
}
