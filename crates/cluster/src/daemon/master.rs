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
use crate::core::{App, Effect, MasterCore, MasterError, Notice, Submission};
use crate::env::ProcessEnv;
use gearpump_config::HostPort;
use gearpump_core::{AppId, Timestamp, WorkerId};
use gearpump_metrics::{MetricsStore, Retention};
use gearpump_protocol::{AppDetail, ClusterSnapshot, MasterSummary, ProcessGauges, WorkerDetail};
use gearpump_protocol::{
    ClusterSecret, MasterReply, MasterRequest, PortLimits, ProtocolError, WorkerCommand, read_msg,
};
use gearpump_streaming::AppStatus;
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

/// What the daemon keeps of a worker's connection (its slots are the core's).
struct WorkerRecord {
    registered: i64,
    pid: u32,
    config: String,
    log_dir: String,
    last_seen: Instant,
    out: Out,
}

/// What the daemon keeps of an application besides the core's record.
struct AppRecord {
    artifact: String,
    args: Vec<String>,
    /// How many executors it asked for (0: one per worker).
    executors: u32,
    /// What its AppMaster last reported.
    runtime: Option<gearpump_protocol::AppRuntime>,
}

impl AppRecord {
    /// An application's record before its AppMaster registers.
    fn new(artifact: String, args: Vec<String>, executors: u32) -> Self {
        AppRecord { artifact, args, executors, runtime: None }
    }
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
    /// Where slots go and which waiting request is served first
    /// (`gearpump.scheduling.scheduler-class`).
    pub scheduler: std::sync::Arc<dyn crate::scheduler::Scheduler>,
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

/// The daemon master: a driver of [`MasterCore`] that adds connections, the artifact store,
/// metrics and Raft replication.
struct MasterState {
    timing: ControlTiming,
    store: ArtifactStore,
    /// Every master, as the processes it starts learn them.
    masters: Vec<HostPort>,
    same_process: bool,
    core: MasterCore,
    workers: BTreeMap<WorkerId, WorkerRecord>,
    apps: BTreeMap<AppId, AppRecord>,
    /// Who is on each connection, and where pushes to it go.
    peers: BTreeMap<u64, (Peer, Out)>,
    /// Clients waiting for an answer the core gives later (a DAG change), by connection.
    askers: BTreeMap<u64, Out>,
    /// Clients waiting for a log a worker reads: by request, their connection and where the
    /// answer goes; and the number of the next request.
    log_reads: BTreeMap<u64, (u64, Out)>,
    next_log_read: u64,
    summary: MasterSummary,
    metrics: MetricsStore,
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

/// The core's record of a replicated application (its current AppMaster counts as alive
/// until a worker says otherwise), and the daemon's.
fn from_meta(meta: AppMeta) -> (App, AppRecord) {
    let AppMeta { mut app, artifact, args, executors } = meta;
    app.appmaster_exits = app.appmaster_launches.saturating_sub(1);
    (app, AppRecord::new(artifact, args, executors))
}

fn refused(e: &MasterError) -> MasterReply {
    MasterReply::Refused(e.clone())
}

impl MasterState {
    fn handle(&mut self, req: MasterRequest, conn: u64, out: &Out) -> Option<MasterReply> {
        let reply = self.answer(req, conn, out);
        self.act();
        reply
    }

    fn answer(&mut self, req: MasterRequest, conn: u64, out: &Out) -> Option<MasterReply> {
        let now = Timestamp::now();
        let registering = match &req {
            MasterRequest::RegisterAppMaster { app_id, .. } => Some(*app_id),
            _ => None,
        };
        let asks_change = matches!(req, MasterRequest::ChangeDag { .. });
        let req = match self.core.answer(req, conn, now) {
            // Answered once the AppMaster has ([`Effect::Reply`]).
            Ok(None) if asks_change => {
                self.askers.insert(conn, out.clone());
                return None;
            }
            Ok(reply) => {
                if let (Some(app_id), Some(MasterReply::Ok)) = (registering, &reply) {
                    self.peers.insert(conn, (Peer::AppMaster(app_id), out.clone()));
                }
                return reply.map(|reply| match reply {
                    // Just after a failover, too few slots means "not yet", not "no".
                    MasterReply::Refused(MasterError::NoSlotsFor { .. } | MasterError::NoSlotsOn { .. })
                        if self.rejoining() =>
                    {
                        refused(&MasterError::WorkersRejoining)
                    }
                    reply => reply,
                });
            }
            Err(req) => *req,
        };
        Some(match req {
            MasterRequest::RegisterWorker { host, slots, pid, config, log_dir, previous, running } => {
                let id = self.core.register_worker(previous, host.clone(), slots, &running, now);
                tracing::info!(worker = %id, %host, slots, pid, again = previous.is_some(), "Worker registered.");
                let record = WorkerRecord {
                    registered: now.0,
                    pid,
                    config,
                    log_dir,
                    last_seen: Instant::now(),
                    out: out.clone(),
                };
                self.workers.insert(id, record);
                self.peers.insert(conn, (Peer::Worker(id), out.clone()));
                MasterReply::WorkerRegistered {
                    worker: id,
                    heartbeat_interval_ms: self.timing.heartbeat_interval.as_millis() as u64,
                }
            }
            MasterRequest::Heartbeat { worker, process } => {
                match self
                    .workers
                    .get_mut(&worker)
                    .filter(|_| self.core.workers().get(&worker).is_some_and(|w| w.alive))
                {
                    Some(w) => {
                        w.last_seen = Instant::now();
                        self.metrics.record(now.0, process.metrics(&format!("worker{worker}")));
                        // Heartbeats need no answer; silence keeps the connection free for pushes.
                        return None;
                    }
                    None => MasterReply::Error(format!("worker {worker} is not registered (or was declared dead)")),
                }
            }
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
            MasterRequest::SubmitApp { name, artifact, args, tasks, user, executors, kind, priority } => {
                if !self.store.contains(&artifact) {
                    return Some(MasterReply::Error(format!("no uploaded application binary {artifact}")));
                }
                let rejoining = self.rejoining();
                match self.core.submit(Submission { name, kind, priority, user, tasks }, None, now) {
                    Err(MasterError::NotEnoughSlots { .. }) if rejoining => refused(&MasterError::WorkersRejoining),
                    Ok(app_id) => {
                        self.apps.insert(app_id, AppRecord::new(artifact, args, executors));
                        MasterReply::Submitted { app_id }
                    }
                    Err(e) => refused(&e),
                }
            }
            MasterRequest::LaunchExecutor { app_id, executor, worker, env } => {
                if let Err(e) = self.core.check_launch(app_id, conn, worker) {
                    return Some(refused(&e));
                }
                let (Some(app), Some(w)) = (self.apps.get(&app_id), self.workers.get(&worker)) else {
                    return Some(refused(&MasterError::WorkerNotAlive(worker)));
                };
                let env = [self.app_env(app_id).vars(), env].concat();
                let cmd = WorkerCommand::Launch {
                    app_id,
                    executor,
                    artifact: app.artifact.clone(),
                    args: app.args.clone(),
                    env,
                };
                self.outbox.push((w.out.clone(), MasterReply::Worker(cmd)));
                MasterReply::Ok
            }
            MasterRequest::AppReport { app_id, time, runtime, metrics } => {
                if self.core.check_appmaster(app_id, conn).is_ok_and(|a| !a.status.is_terminal())
                    && let Some(app) = self.apps.get_mut(&app_id)
                {
                    app.runtime = Some(*runtime);
                    self.metrics.record(time, metrics);
                }
                return None;
            }
            MasterRequest::Snapshot => MasterReply::Snapshot(Box::new(self.snapshot())),
            MasterRequest::QueryMetrics { path, option } => MasterReply::Metrics(self.metrics.query(&path, option)),
            MasterRequest::ReadLog { app_id, executor, bytes } => {
                let Some(app) = self.core.app(app_id) else { return Some(refused(&MasterError::UnknownApp(app_id))) };
                let worker = if executor < 0 {
                    Some(app.worker)
                } else {
                    let runtime = self.apps.get(&app_id).and_then(|r| r.runtime.as_ref());
                    runtime.and_then(|r| r.executors.iter().find(|e| e.id == executor)).map(|e| e.worker)
                };
                let Some(worker) = worker else {
                    let why = format!("application {app_id} has no executor {executor}");
                    return Some(refused(&MasterError::Invalid(why)));
                };
                let Some(w) =
                    self.workers.get(&worker).filter(|_| self.core.workers().get(&worker).is_some_and(|w| w.alive))
                else {
                    return Some(refused(&MasterError::WorkerNotAlive(worker)));
                };
                self.next_log_read += 1;
                let request = self.next_log_read;
                self.log_reads.insert(request, (conn, out.clone()));
                let read = WorkerCommand::ReadLog { request, app_id, executor, bytes };
                let _ = w.out.send(MasterReply::Worker(read));
                // Answered when the worker has read it.
                return None;
            }
            MasterRequest::LogRead { request, path, result } => {
                if let Some((_, out)) = self.log_reads.remove(&request) {
                    let _ = out.send(match result {
                        Ok(text) => MasterReply::Log { path, text },
                        Err(e) => MasterReply::Error(e),
                    });
                }
                return None;
            }
            MasterRequest::RestartApp { app_id } => match self.core.restart(app_id, now) {
                Ok(again) => {
                    tracing::info!(%app_id, new = %again, "Restarting application.");
                    if let Some(a) = self.apps.get(&app_id) {
                        let record = AppRecord::new(a.artifact.clone(), a.args.clone(), a.executors);
                        self.apps.insert(again, record);
                    }
                    MasterReply::Submitted { app_id: again }
                }
                Err(e) => refused(&e),
            },
            // Answered by the connection itself.
            MasterRequest::WhoLeads | MasterRequest::Raft { .. } => return None,
            other => MasterReply::Error(format!("the master does not take {other:?}")),
        })
    }

    /// Carries out what the core decided: pushes to workers and AppMasters (sent once the
    /// change is committed), logs.
    fn act(&mut self) {
        for effect in self.core.take_effects() {
            match effect {
                Effect::LaunchAppMaster { app: app_id, worker, attempt, start_clock } => {
                    let (Some(app), Some(w)) = (self.apps.get(&app_id), self.workers.get(&worker)) else { continue };
                    let (artifact, args) = (app.artifact.clone(), app.args.clone());
                    let env = ProcessEnv { start_clock, attempt, ..self.app_env(app_id) }.vars();
                    let cmd = WorkerCommand::Launch { app_id, executor: -1, artifact, args, env };
                    self.outbox.push((w.out.clone(), MasterReply::Worker(cmd)));
                    tracing::info!(%app_id, %worker, attempt, "Launching the AppMaster.");
                }
                Effect::EndProcesses { app: app_id, worker, grace } => {
                    let Some(w) = self.workers.get(&worker) else { continue };
                    let kill = WorkerCommand::KillApp { app_id, grace_ms: grace.as_millis() as u64 };
                    self.outbox.push((w.out.clone(), MasterReply::Worker(kill)));
                }
                Effect::Granted { conn, allocation, .. } => {
                    if let Some((_, out)) = self.peers.get(&conn) {
                        self.outbox.push((out.clone(), MasterReply::Granted(allocation)));
                    }
                }
                Effect::ToAppMaster { app: app_id, conn, notice } => {
                    let kill = notice == Notice::Kill;
                    let sent = self.peers.get(&conn).is_some_and(|(_, out)| out.send(notice.push()).is_ok());
                    // Its connection is gone: a kill ends the application at once.
                    if !sent && kill {
                        self.core.set_status(app_id, None, AppStatus::Terminated, None, Timestamp::now());
                    }
                }
                Effect::Reply { conn, reply } => {
                    if let Some(out) = self.askers.remove(&conn) {
                        self.outbox.push((out, reply));
                    }
                }
                Effect::StatusChanged { app: app_id, status, error } => match &error {
                    Some(e) => tracing::warn!(%app_id, %status, error = %e, "Application status changed."),
                    None => tracing::info!(%app_id, %status, "Application status changed."),
                },
            }
        }
    }

    /// Just after a failover the workers are still registering again: too few free slots then
    /// means "not yet", not "no".
    fn rejoining(&self) -> bool {
        self.leading_since.is_some_and(|t| t.elapsed() < self.timing.worker_timeout)
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
                .core
                .worker_infos()
                .into_iter()
                .filter_map(|info| {
                    let w = self.workers.get(&info.id)?;
                    Some(WorkerDetail {
                        registered: w.registered,
                        pid: w.pid,
                        config: w.config.clone(),
                        log_dir: w.log_dir.clone(),
                        info,
                    })
                })
                .collect(),
            apps: self
                .core
                .apps()
                .values()
                .map(|a| AppDetail { info: a.info(), runtime: self.apps.get(&a.id).and_then(|r| r.runtime.clone()) })
                .collect(),
        }
    }

    /// What every process of the application learns from its environment.
    fn app_env(&self, app_id: AppId) -> ProcessEnv {
        ProcessEnv {
            app_id: Some(app_id),
            masters: self.masters.clone(),
            user: self.core.app(app_id).map(|a| a.user.clone()),
            executors: self.apps.get(&app_id).map_or(0, |a| a.executors),
            same_process: self.same_process,
            // Relative paths of the application (its checkpoint store) are the master's.
            home: Some(PathBuf::from(&self.summary.home)),
            ..ProcessEnv::default()
        }
    }

    fn disconnected(&mut self, conn: u64) {
        self.store.abandon(conn);
        self.askers.remove(&conn);
        self.log_reads.retain(|_, (asker, _)| *asker != conn);
        let now = Timestamp::now();
        match self.peers.remove(&conn).map(|(peer, _)| peer) {
            Some(Peer::Worker(id)) => self.core.worker_lost(id, "its connection closed", now),
            Some(Peer::AppMaster(app_id)) => self.core.appmaster_disconnected(app_id, conn, now),
            None => {}
        }
        self.act();
    }

    /// Sends the metrics that changed since the last report to the configured reporter (a
    /// process that stopped reporting is not sent again and again with its old time).
    fn report(&mut self, reporter: &Reporter) {
        let since = self.reported_up_to;
        let points: Vec<_> = self.metrics.latest().filter(|p| p.time > since).cloned().collect();
        self.reported_up_to = points.iter().map(|p| p.time).max().unwrap_or(since);
        reporter.send(points);
    }

    /// The replicated part of the state.
    fn replicated(&self) -> Replicated {
        let (next_app, next_worker) = self.core.next_ids();
        let apps = self
            .core
            .apps()
            .iter()
            .map(|(id, a)| {
                let record = self.apps.get(id);
                // What belongs to this leader's connections is not replicated.
                let app =
                    App { appmaster_exits: 0, appmaster: None, address: None, change_asked_by: None, ..a.clone() };
                let meta = AppMeta {
                    app,
                    artifact: record.map(|r| r.artifact.clone()).unwrap_or_default(),
                    args: record.map(|r| r.args.clone()).unwrap_or_default(),
                    executors: record.map_or(0, |r| r.executors),
                };
                (*id, meta)
            })
            .collect();
        Replicated { next_app, next_worker, apps, artifacts: self.artifacts.clone() }
    }

    /// Makes the state `from` (committed), keeping what is known besides of the applications
    /// still in it; slot use follows the applications' holdings.
    fn rebuild(&mut self, from: Replicated) {
        let mut apps = Vec::new();
        let mut records = BTreeMap::new();
        for (id, meta) in &from.apps {
            let (app, mut record) = from_meta(meta.clone());
            if let Some(known) = self.apps.remove(id) {
                record.runtime = known.runtime;
            }
            apps.push(app);
            records.insert(*id, record);
        }
        self.apps = records;
        self.core.restore(apps, from.next_app.max(1), from.next_worker.max(1));
        self.core.take_effects();
        self.artifacts = from.artifacts.clone();
        self.committed = from;
        self.outbox.clear();
    }

    /// This master now leads, with the replicated state `from`: workers and AppMasters will
    /// register again.
    fn start_leading(&mut self, from: Replicated) {
        self.workers.clear();
        self.peers.clear();
        self.apps.clear();
        self.core.forget_connections();
        self.rebuild(from);
        self.leading_since = Some(Instant::now());
        self.orphans_checked = false;
        tracing::info!(apps = self.apps.len(), next_app = self.core.next_ids().0, "Leading the masters.");
    }

    /// This master no longer leads: it forgets who is connected.
    fn stop_leading(&mut self) {
        self.workers.clear();
        self.peers.clear();
        self.askers.clear();
        self.log_reads.clear();
        self.core.forget_connections();
        self.leading_since = None;
        self.outbox.clear();
        tracing::warn!("No longer leading the masters.");
    }

    fn tick(&mut self) {
        let now = Timestamp::now();
        // After a failover, workers that did not register again within the worker timeout
        // are dead.
        if let Some(since) = self.leading_since
            && !self.orphans_checked
            && since.elapsed() >= self.timing.worker_timeout
        {
            self.orphans_checked = true;
            self.core.lose_unregistered_workers(now);
        }
        self.metrics.record(now.0, ProcessGauges::of_this_process().metrics("master"));
        let timeout = self.timing.worker_timeout;
        let silent: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(id, w)| self.core.workers().get(id).is_some_and(|c| c.alive) && w.last_seen.elapsed() > timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in silent {
            self.core.worker_lost(id, &format!("no heartbeat for {timeout:?}"), now);
        }
        self.act();
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
            | MasterRequest::ReadLog { .. }
            | MasterRequest::LogRead { .. }
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
            // A client told its DAG change was made hears that it was not.
            for (out, msg) in &state.outbox {
                if matches!(msg, MasterReply::DagChanged { .. }) {
                    let _ = out.send(MasterReply::Error(format!("the masters could not record the DAG change: {why}")));
                }
            }
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
        same_process,
        summary,
        retention,
        reporter,
        total_retries,
        stop_timeout,
        scheduler,
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
        masters: members.clone(),
        same_process,
        core: MasterCore::new(total_retries, stop_timeout).with_scheduler(scheduler),
        workers: BTreeMap::new(),
        apps: BTreeMap::new(),
        peers: BTreeMap::new(),
        askers: BTreeMap::new(),
        log_reads: BTreeMap::new(),
        // Numbered from this master's start time, so that no answer meant for another master
        // (a worker's, sent as it re-registered) matches a request of this one.
        next_log_read: (Timestamp::now().0 as u64) << 16,
        summary: MasterSummary { started: Timestamp::now().0, ..summary },
        metrics: MetricsStore::new(retention),
        reported_up_to: i64::MIN,
        artifacts: BTreeSet::new(),
        committed: Replicated::default(),
        outbox: Vec::new(),
        leading_since: None,
        orphans_checked: false,
        leadership: leadership.clone(),
    };
    if let Some((reporter, every)) = &reporter {
        tracing::info!(reporter = %reporter, every = ?every, "Reporting metrics.");
    }
    let tick_every = (timing.heartbeat_interval / 2).max(Duration::from_millis(50));
    let actor_raft = raft.clone();
    let actor_tx = tx.clone();
    let actor_secret = secret.clone();
    let actor_leadership = leadership.clone();
    let actor = tokio::spawn(async move {
        let raft = actor_raft;
        let mut leading = false;
        let mut tick = tokio::time::interval(tick_every);
        // A tick late behind a slow commit is not made up for with a burst.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut report =
            reporter.as_ref().map(|(_, every)| tokio::time::interval_at(tokio::time::Instant::now() + *every, *every));
        loop {
            // What came in first: after the actor waited on a slow commit, the heartbeats that
            // arrived meanwhile count before a tick judges the workers' silence.
            let cmd = tokio::select! {
                biased;
                cmd = rx.recv() => match cmd {
                    Some(cmd) => cmd,
                    None => break,
                },
                _ = tick.tick() => Command::Tick,
                _ = async { report.as_mut().expect("guarded").tick().await }, if report.is_some() => Command::Report,
            };
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
                    if let Some((r, _)) = &reporter {
                        state.report(r);
                    }
                }
            }
        }
    });
    let mut next_conn = 0u64;
    let accept = gearpump_protocol::serve_port(listener, limits, "master", |stream, peer| {
        next_conn += 1;
        let (tx, conn) = (tx.clone(), next_conn);
        let (raft, leadership, epoch) = (raft.clone(), leadership.clone(), epoch_rx.clone());
        let (me, secret, hello_timeout) = (me.to_string(), secret.clone(), limits.hello_timeout);
        async move {
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
        }
    });
    tokio::select! {
        _ = accept => {}
        _ = shutdown => {}
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
    super::detect_dead_peer(&stream)?;
    let (mut rd, wr) = gearpump_protocol::accept_control(stream, &ctx.secret, ctx.hello_timeout).await?;
    let (out, writer) = gearpump_protocol::spawn_writer::<MasterReply, _>(wr);
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
    if raft_peer {
        tracing::debug!(conn, ?result, "Another master's Raft connection closed.");
        tokio::spawn(raft::on_peer_connection_closed(ctx.raft.clone()));
    }
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
