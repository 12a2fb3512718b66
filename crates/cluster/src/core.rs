//! The master's decisions, as a pure state machine shared by both masters.
//!
//! [`MasterCore`] owns what a master decides: the workers' slots, the application table, the
//! submission checks (name rule, duplicate names, task limit, free slots), kill and replay,
//! restart, which AppMaster speaks for an application, its relaunch and budget, and what a
//! dead worker takes with it. It does no I/O and reads no clock: events come in as method
//! calls (time passed in as a [`Timestamp`]), and what the driver must do comes out as
//! [`Effect`]s, drained with [`MasterCore::take_effects`].
//!
//! Two thin drivers run it: the embedded cluster's master ([`crate::master`]), whose
//! AppMasters are tasks in this process, and the daemon master ([`crate::daemon::master`]),
//! which adds sockets, Raft replication and the artifact store. Scenario tests below run the
//! core alone, in microseconds.

use crate::scheduler::{self, PriorityScheduler, Scheduler, Waiting};
use gearpump_core::{AppId, Timestamp, WorkerId};
use gearpump_protocol::{AppInfo, MasterReply, MasterRequest, WorkerInfo};
pub use gearpump_protocol::{Locality, MasterError, Priority};
use gearpump_streaming::AppStatus;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// What a driver must do for the core.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Start the AppMaster of `app` on `worker`: launch number `attempt` (0: the first),
    /// resuming from `start_clock`.
    LaunchAppMaster {
        /// The application.
        app: AppId,
        /// Where.
        worker: WorkerId,
        /// Which launch (0: the first).
        attempt: u32,
        /// Where its tasks start.
        start_clock: Timestamp,
    },
    /// End every process of `app` on `worker`; those still running after `grace` are killed.
    EndProcesses {
        /// The application.
        app: AppId,
        /// Where.
        worker: WorkerId,
        /// How long they may take to exit by themselves.
        grace: Duration,
    },
    /// Tell the AppMaster registered on connection `conn` of `app` to act.
    ToAppMaster {
        /// The application.
        app: AppId,
        /// The AppMaster's connection.
        conn: u64,
        /// What to do.
        notice: Notice,
    },
    /// Slots of a request that waited are granted: tell the AppMaster on `conn`.
    Granted {
        /// The application.
        app: AppId,
        /// Its AppMaster's connection.
        conn: u64,
        /// The slots, per worker.
        allocation: Vec<(WorkerId, u32)>,
    },
    /// Answer the request connection `conn` made earlier (a DAG change, answered once the
    /// application's AppMaster did).
    Reply {
        /// The connection that asked.
        conn: u64,
        /// The answer.
        reply: MasterReply,
    },
    /// `app`'s status changed (to log and publish).
    StatusChanged {
        /// The application.
        app: AppId,
        /// The new status.
        status: AppStatus,
        /// Why, for a failure.
        error: Option<String>,
    },
}

/// What an AppMaster is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Stop every task and end as terminated.
    Kill,
    /// Restart every task from the start clock.
    Replay,
    /// A client asks for this DAG change, to make DAG `version`.
    ChangeDag {
        /// The version it makes.
        version: u32,
        /// The change.
        change: gearpump_core::DagChange,
    },
}

impl Notice {
    /// What the AppMaster is sent.
    pub fn push(self) -> MasterReply {
        match self {
            Notice::Kill => MasterReply::KillRequested,
            Notice::Replay => MasterReply::ReplayRequested,
            Notice::ChangeDag { version, change } => MasterReply::ChangeDag { version, change },
        }
    }
}

/// A worker's slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    /// Where it runs.
    pub host: String,
    /// Its slots.
    pub slots: u32,
    /// Slots held by applications.
    pub used: u32,
    /// Whether it is alive.
    pub alive: bool,
}

/// An application as the master keeps it. The masters replicate it whole but for what
/// belongs to the leader's connections (`appmaster_exits`, `appmaster`, `address`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct App {
    /// Its id.
    pub id: AppId,
    /// Its name.
    pub name: String,
    /// Its kind ([`gearpump_protocol::STREAMING`], or what its own AppMaster names).
    pub kind: String,
    /// How urgent its requests for slots are.
    pub priority: Priority,
    /// Who submitted it.
    pub user: String,
    /// Its status.
    pub status: AppStatus,
    /// When it was submitted.
    pub submission_time: Timestamp,
    /// When it became active.
    pub start_time: Option<Timestamp>,
    /// When it ended.
    pub finish_time: Option<Timestamp>,
    /// Why it failed.
    pub error: Option<String>,
    /// The worker of its (current) AppMaster.
    pub worker: WorkerId,
    /// How many tasks it has.
    pub tasks: u32,
    /// Slots held, per worker: its AppMaster's and its executors'.
    pub held: Vec<(WorkerId, u32)>,
    /// AppMasters launched (1: the first).
    pub appmaster_launches: u32,
    /// AppMaster processes seen to exit: an exit while a newer one was launched is an
    /// earlier AppMaster's.
    #[serde(skip)]
    pub appmaster_exits: u32,
    /// The connection of the AppMaster that speaks for it, once registered.
    #[serde(skip)]
    pub appmaster: Option<u64>,
    /// Where that AppMaster serves clients, as it registered (non-streaming applications).
    #[serde(skip)]
    pub address: Option<std::net::SocketAddr>,
    /// Where a new AppMaster resumes: the start clock the current one last recorded.
    pub start_clock: Timestamp,
    /// The dynamic DAG changes made, oldest first: the DAG version is their number.
    #[serde(default)]
    pub dag_changes: Vec<gearpump_core::AppliedChange>,
    /// The connection of the client waiting for the answer to a DAG change under way.
    #[serde(skip)]
    pub change_asked_by: Option<u64>,
}

impl App {
    /// The application as the protocol shows it.
    pub fn info(&self) -> AppInfo {
        AppInfo {
            id: self.id,
            name: self.name.clone(),
            kind: self.kind.clone(),
            status: self.status,
            worker: Some(self.worker),
            user: self.user.clone(),
            submission_time: self.submission_time,
            start_time: self.start_time,
            finish_time: self.finish_time,
            error: self.error.clone(),
        }
    }
}

/// What is submitted: by a client, or again by a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The application's name.
    pub name: String,
    /// Its kind ([`gearpump_protocol::STREAMING`], or what its own AppMaster names).
    pub kind: String,
    /// How urgent its requests for slots are.
    pub priority: Priority,
    /// Who submits it.
    pub user: String,
    /// How many tasks it has (slots it needs besides its AppMaster's).
    pub tasks: u32,
}

/// The master's state and decisions. See the module docs.
#[derive(Debug, Clone)]
pub struct MasterCore {
    workers: BTreeMap<WorkerId, Worker>,
    apps: BTreeMap<AppId, App>,
    next_app: u32,
    next_worker: u32,
    /// AppMaster relaunches an application may have (`gearpump.application.total-retries`).
    total_retries: u32,
    /// How long an ended application's processes may take to exit
    /// (`gearpump.application.stop-timeout-ms`).
    stop_timeout: Duration,
    effects: Vec<Effect>,
    /// Decides where slots go and which waiting request goes first.
    scheduler: Arc<dyn Scheduler>,
    /// Requests for slots waiting until enough are free.
    waiting: Vec<Waiting>,
    next_seq: u64,
}

/// The answer to a request for slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Granted now: the slots, per worker.
    Now(Vec<(WorkerId, u32)>),
    /// Too few are free: the request waits and is granted later ([`Effect::Granted`]).
    Queued,
}

impl MasterCore {
    /// An empty master: ids from 1.
    pub fn new(total_retries: u32, stop_timeout: Duration) -> Self {
        MasterCore {
            workers: BTreeMap::new(),
            apps: BTreeMap::new(),
            next_app: 1,
            next_worker: 1,
            total_retries,
            stop_timeout,
            effects: Vec::new(),
            scheduler: Arc::new(PriorityScheduler),
            waiting: Vec::new(),
            next_seq: 0,
        }
    }

    /// The same master deciding with `scheduler` (by default [`PriorityScheduler`]).
    pub fn with_scheduler(mut self, scheduler: Arc<dyn Scheduler>) -> Self {
        self.scheduler = scheduler;
        self
    }

    /// What the driver must do since the last call.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// The applications, by id.
    pub fn apps(&self) -> &BTreeMap<AppId, App> {
        &self.apps
    }

    /// One application.
    pub fn app(&self, id: AppId) -> Option<&App> {
        self.apps.get(&id)
    }

    /// The workers, by id.
    pub fn workers(&self) -> &BTreeMap<WorkerId, Worker> {
        &self.workers
    }

    /// The workers as the protocol shows them.
    pub fn worker_infos(&self) -> Vec<WorkerInfo> {
        let info = |(id, w): (&WorkerId, &Worker)| WorkerInfo {
            id: *id,
            host: w.host.clone(),
            slots: w.slots,
            used: w.used,
            alive: w.alive,
        };
        self.workers.iter().map(info).collect()
    }

    /// Answers what both masters answer alike: listings, kill, replay and what an AppMaster
    /// (on connection `conn`) asks or tells; `Ok(None)` for a notice that needs no answer.
    /// Any other request is handed back for the driver to answer.
    pub fn answer(
        &mut self,
        req: MasterRequest,
        conn: u64,
        now: Timestamp,
    ) -> Result<Option<MasterReply>, Box<MasterRequest>> {
        let done = |r: Result<(), MasterError>| r.map_or_else(MasterReply::Refused, |()| MasterReply::Ok);
        Ok(Some(match req {
            MasterRequest::ListWorkers => MasterReply::Workers(self.worker_infos()),
            MasterRequest::ListApps => MasterReply::Apps(self.apps.values().map(App::info).collect()),
            MasterRequest::KillApp { app_id } => {
                tracing::info!(%app_id, "Killing application.");
                done(self.kill(app_id, now))
            }
            MasterRequest::ReplayApp { app_id } => {
                tracing::info!(%app_id, "Replay requested.");
                done(self.replay(app_id))
            }
            MasterRequest::RegisterAppMaster { app_id, attempt, address } => {
                let registered = self.register_appmaster(app_id, attempt, conn);
                if let (Ok(()), Some(app)) = (&registered, self.apps.get_mut(&app_id)) {
                    app.address = address;
                    tracing::info!(%app_id, "AppMaster registered.");
                }
                done(registered)
            }
            MasterRequest::ResolveAppMaster { app_id } => match self.running(app_id) {
                // Only the address of the AppMaster that speaks for it now.
                Ok(a) => MasterReply::AppMaster { kind: a.kind.clone(), address: a.appmaster.and(a.address) },
                Err(e) => MasterReply::Refused(e),
            },
            MasterRequest::RequestResources { app_id, slots, locality } => {
                match self.request_resources(app_id, conn, slots, locality) {
                    Ok(Grant::Now(allocation)) => {
                        tracing::info!(%app_id, ?allocation, "Slots allocated.");
                        MasterReply::Resources(allocation)
                    }
                    Ok(Grant::Queued) => MasterReply::Queued,
                    Err(e) => MasterReply::Refused(e),
                }
            }
            MasterRequest::MoreResources { app_id, slots } => match self.more_resources(app_id, conn, slots) {
                Ok(allocation) => {
                    tracing::info!(%app_id, ?allocation, "More slots allocated.");
                    MasterReply::Resources(allocation)
                }
                Err(e) => MasterReply::Refused(e),
            },
            MasterRequest::AppStatus { app_id, status, error } => {
                // An AppMaster the master has replaced already speaks for nothing.
                if !self.set_status(app_id, Some(conn), status, error.clone(), now) {
                    tracing::info!(%app_id, %status, ?error, "Ignored the status of a replaced AppMaster.");
                }
                MasterReply::Ok
            }
            MasterRequest::StartClock { app_id, clock } => done(self.record_start_clock(app_id, conn, clock)),
            MasterRequest::ChangeDag { app_id, change } => match self.change_dag(app_id, change, conn) {
                // Answered once the AppMaster has ([`Effect::Reply`]).
                Ok(()) => return Ok(None),
                Err(e) => MasterReply::Refused(e),
            },
            MasterRequest::DagChanged { app_id, version, outcome } => {
                done(self.dag_changed(app_id, conn, version, outcome))
            }
            MasterRequest::DagChanges { app_id } => match self.apps.get(&app_id) {
                Some(a) => MasterReply::DagChanges(a.dag_changes.clone()),
                None => MasterReply::Refused(MasterError::UnknownApp(app_id)),
            },
            MasterRequest::ProcessExited { app_id, executor, code } => {
                self.process_exited(app_id, executor, code, now);
                return Ok(None);
            }
            other => return Err(Box::new(other)),
        }))
    }

    /// The ids the next application and the next worker get.
    pub fn next_ids(&self) -> (u32, u32) {
        (self.next_app, self.next_worker)
    }

    /// Takes the state another master replicated: the applications and next ids (after a
    /// failover). Workers re-register; an application's AppMaster speaks again once it does.
    pub fn restore(&mut self, apps: impl IntoIterator<Item = App>, next_app: u32, next_worker: u32) {
        let known = std::mem::take(&mut self.apps);
        self.apps = apps
            .into_iter()
            .map(|mut app| {
                // What only this master knew (its AppMaster's connection, the exits it saw, a
                // client waiting for a DAG change) stays.
                if let Some(k) = known.get(&app.id) {
                    (app.appmaster, app.appmaster_exits, app.address) = (k.appmaster, k.appmaster_exits, k.address);
                    app.change_asked_by = k.change_asked_by;
                }
                (app.id, app)
            })
            .collect();
        (self.next_app, self.next_worker) = (next_app, next_worker);
        let held: Vec<(WorkerId, u32)> = self.live_holdings();
        for w in self.workers.values_mut() {
            w.used = 0;
        }
        for (id, n) in held {
            if let Some(w) = self.workers.get_mut(&id) {
                w.used += n;
            }
        }
    }

    /// Forgets the workers and AppMasters connected (this master stopped leading, or starts
    /// to): they register again with whichever master leads.
    pub fn forget_connections(&mut self) {
        self.workers.clear();
        for app in self.apps.values_mut() {
            app.appmaster = None;
            app.change_asked_by = None;
        }
    }

    /// After a failover, the workers that have not registered again (within the worker
    /// timeout) are dead: applications' slots there are gone, and AppMasters that ran there
    /// are relaunched.
    pub fn lose_unregistered_workers(&mut self, now: Timestamp) {
        let mut lost = Vec::new();
        for app in self.apps.values_mut().filter(|a| !a.status.is_terminal()) {
            app.held.retain(|(w, _)| self.workers.contains_key(w));
            if !self.workers.contains_key(&app.worker) {
                lost.push((app.id, app.worker));
            }
        }
        for (id, w) in lost {
            self.appmaster_lost(id, &format!("worker {w}, where its AppMaster ran, did not come back"), now);
        }
    }

    fn live_holdings(&self) -> Vec<(WorkerId, u32)> {
        self.apps.values().filter(|a| !a.status.is_terminal()).flat_map(|a| a.held.iter().copied()).collect()
    }

    /// Free slots per live worker.
    pub fn free(&self) -> Vec<(WorkerId, u32)> {
        self.workers.iter().filter(|(_, w)| w.alive).map(|(id, w)| (*id, w.slots.saturating_sub(w.used))).collect()
    }

    /// A worker on `host` joins with `slots`; one that an earlier leader knew (`previous`) keeps its id,
    /// since applications hold its slots by it. `running` are the processes it still runs
    /// (application, executor; -1: the AppMaster): an AppMaster it ran and no longer runs ended
    /// while no master listened, and its application gets a new one. Returns its id.
    pub fn register_worker(
        &mut self,
        previous: Option<WorkerId>,
        host: String,
        slots: u32,
        running: &[(AppId, i32)],
        now: Timestamp,
    ) -> WorkerId {
        let id = match previous {
            Some(id) if id.0 < self.next_worker && !self.workers.get(&id).is_some_and(|w| w.alive) => id,
            _ => {
                self.next_worker += 1;
                WorkerId(self.next_worker - 1)
            }
        };
        let used = self.live_holdings().iter().filter(|(w, _)| *w == id).map(|(_, n)| n).sum();
        self.workers.insert(id, Worker { host, slots, used, alive: true });
        let gone: Vec<AppId> = self
            .apps
            .values()
            .filter(|a| !a.status.is_terminal() && a.worker == id && a.appmaster.is_none())
            .filter(|a| !running.contains(&(a.id, -1)))
            .map(|a| a.id)
            .collect();
        for app in gone {
            self.appmaster_lost(app, &format!("its AppMaster is no longer running on worker {id}"), now);
        }
        self.serve_waiting();
        id
    }

    /// A worker died: its slots are gone. An application whose AppMaster ran there gets a new
    /// AppMaster; the others lose executors, which their AppMasters replace.
    pub fn worker_lost(&mut self, id: WorkerId, why: &str, now: Timestamp) {
        let Some(w) = self.workers.get_mut(&id) else { return };
        if !w.alive {
            return;
        }
        w.alive = false;
        tracing::warn!(worker = %id, "Worker is dead: {why}.");
        let mut orphaned = Vec::new();
        for app in self.apps.values_mut().filter(|a| !a.status.is_terminal()) {
            app.held.retain(|(w, _)| *w != id);
            if app.worker == id {
                orphaned.push(app.id);
            }
        }
        for app in orphaned {
            self.appmaster_lost(app, &format!("worker {id}, where its AppMaster ran, died"), now);
        }
    }

    /// Accepts an application and launches its AppMaster; `replacing` is the application a
    /// restart replaces, whose name may still be running. Returns the new id.
    pub fn submit(
        &mut self,
        submission: Submission,
        replacing: Option<AppId>,
        now: Timestamp,
    ) -> Result<AppId, MasterError> {
        let Submission { name, kind, priority, user, tasks } = submission;
        gearpump_api::validate_app_name(&name).map_err(|e| MasterError::Invalid(e.to_string()))?;
        if let Some(running) =
            self.apps.values().find(|a| a.name == name && !a.status.is_terminal() && Some(a.id) != replacing)
        {
            return Err(MasterError::DuplicateName { name, id: running.id });
        }
        if tasks > gearpump_api::MAX_TASKS {
            return Err(MasterError::TooManyTasks { tasks, max: gearpump_api::MAX_TASKS });
        }
        let free = self.free();
        // In u64: numbers from the network must not overflow.
        let total: u64 = free.iter().map(|(_, f)| u64::from(*f)).sum();
        let needed = u64::from(tasks) + 1;
        let am = match scheduler::allocate(&free, 1) {
            Some(am) if needed <= total => am,
            _ => return Err(MasterError::NotEnoughSlots { needed, free: total }),
        };
        let id = AppId(self.next_app);
        self.next_app += 1;
        let worker = am[0].0;
        self.apps.insert(
            id,
            App {
                id,
                name,
                kind,
                priority,
                user,
                status: AppStatus::Pending,
                submission_time: now,
                start_time: None,
                finish_time: None,
                error: None,
                worker,
                tasks,
                held: Vec::new(),
                appmaster_launches: 1,
                appmaster_exits: 0,
                appmaster: None,
                address: None,
                start_clock: Timestamp(0),
                dag_changes: Vec::new(),
                change_asked_by: None,
            },
        );
        self.take(id, &am);
        self.effects.push(Effect::LaunchAppMaster { app: id, worker, attempt: 0, start_clock: Timestamp(0) });
        Ok(id)
    }

    /// Kills (if it runs) and submits again what `id` was submitted with; the new id.
    pub fn restart(&mut self, id: AppId, now: Timestamp) -> Result<AppId, MasterError> {
        let app = self.apps.get(&id).ok_or(MasterError::UnknownApp(id))?;
        let again = Submission {
            name: app.name.clone(),
            kind: app.kind.clone(),
            priority: app.priority,
            user: app.user.clone(),
            tasks: app.tasks,
        };
        if !app.status.is_terminal() {
            self.kill(id, now)?;
        }
        self.submit(again, Some(id), now)
    }

    /// Kills a running application: its AppMaster stops the tasks (their `on_stop` runs) and
    /// reports `terminated`; without one, it ends at once.
    pub fn kill(&mut self, id: AppId, now: Timestamp) -> Result<(), MasterError> {
        let app = self.running(id)?;
        match app.appmaster {
            Some(conn) => self.effects.push(Effect::ToAppMaster { app: id, conn, notice: Notice::Kill }),
            None => {
                self.set_status(id, None, AppStatus::Terminated, None, now);
            }
        }
        Ok(())
    }

    /// Restarts a running application's tasks from its start clock.
    pub fn replay(&mut self, id: AppId) -> Result<(), MasterError> {
        let conn = self.running(id)?.appmaster.ok_or(MasterError::NoAppMaster(id))?;
        self.effects.push(Effect::ToAppMaster { app: id, conn, notice: Notice::Replay });
        Ok(())
    }

    fn running(&self, id: AppId) -> Result<&App, MasterError> {
        let app = self.apps.get(&id).ok_or(MasterError::UnknownApp(id))?;
        if app.status.is_terminal() {
            return Err(MasterError::NotRunning { id, status: app.status });
        }
        Ok(app)
    }

    /// Launch number `attempt` (0: the first) of `id`'s AppMaster registers on connection
    /// `conn`: from now on it speaks for the application.
    pub fn register_appmaster(&mut self, id: AppId, attempt: u32, conn: u64) -> Result<(), MasterError> {
        let app = self.apps.get_mut(&id).ok_or(MasterError::UnknownApp(id))?;
        let this = attempt.saturating_add(1);
        if this != app.appmaster_launches {
            return Err(MasterError::NewerAppMaster { id, newest: app.appmaster_launches, this });
        }
        if app.status.is_terminal() {
            return Err(MasterError::NotRunning { id, status: app.status });
        }
        app.appmaster = Some(conn);
        Ok(())
    }

    /// Checks that connection `conn` is the AppMaster speaking for `id`.
    pub fn check_appmaster(&self, id: AppId, conn: u64) -> Result<&App, MasterError> {
        let app = self.apps.get(&id).ok_or(MasterError::UnknownApp(id))?;
        if app.appmaster != Some(conn) {
            return Err(MasterError::ReplacedAppMaster(id));
        }
        Ok(app)
    }

    /// `id`'s AppMaster (on `conn`) asks for `wanted` slots where `locality` says; they are its
    /// until it ends. Too few free (or, by the scheduler, requests of a higher priority waiting
    /// first): a request for slots anywhere or on a live worker waits ([`Grant::Queued`]).
    pub fn request_resources(
        &mut self,
        id: AppId,
        conn: u64,
        wanted: u32,
        locality: Locality,
    ) -> Result<Grant, MasterError> {
        let priority = self.check_appmaster(id, conn)?.priority;
        let placed = if self.scheduler.must_wait(priority, &self.waiting) {
            Err(MasterError::NoSlotsFor { wanted })
        } else {
            self.scheduler.place(&self.free(), wanted, locality)
        };
        match placed {
            Ok(allocation) => {
                self.take(id, &allocation);
                Ok(Grant::Now(allocation))
            }
            Err(MasterError::NoSlotsFor { .. } | MasterError::NoSlotsOn { .. })
                if locality != Locality::EachWorker && wanted <= self.capacity(locality) =>
            {
                self.next_seq += 1;
                let seq = self.next_seq;
                self.waiting.push(Waiting { app: id, conn, slots: wanted, locality, priority, seq });
                tracing::info!(app_id = %id, wanted, ?locality, ?priority, "Too few free slots: the request waits.");
                Ok(Grant::Queued)
            }
            Err(e) => Err(e),
        }
    }

    /// `id`'s AppMaster (on `conn`) asks for `wanted` more slots, now or not at all (requests
    /// waiting for slots keep theirs to come).
    pub fn more_resources(&mut self, id: AppId, conn: u64, wanted: u32) -> Result<Vec<(WorkerId, u32)>, MasterError> {
        self.check_appmaster(id, conn)?;
        let free: u32 = self.free().iter().map(|(_, n)| n).sum();
        let waiting: u32 = self.waiting.iter().map(|w| w.slots).sum();
        let spare = free.saturating_sub(waiting);
        if spare < wanted {
            return Err(MasterError::NotEnoughSlots { needed: u64::from(wanted), free: u64::from(spare) });
        }
        let allocation = self.scheduler.place(&self.free(), wanted, Locality::Any)?;
        self.take(id, &allocation);
        Ok(allocation)
    }

    /// The most slots a request with `locality` could ever get from the live workers.
    fn capacity(&self, locality: Locality) -> u32 {
        let live = self.workers.iter().filter(|(_, w)| w.alive);
        match locality {
            Locality::Worker(id) => live.filter(|(w, _)| **w == id).map(|(_, w)| w.slots).sum(),
            _ => live.map(|(_, w)| w.slots).fold(0u32, u32::saturating_add),
        }
    }

    /// The requests waiting for slots, in no particular order.
    pub fn waiting(&self) -> &[Waiting] {
        &self.waiting
    }

    /// Grants what waits and now fits, in the scheduler's order; drops requests whose
    /// AppMaster no longer speaks for a running application.
    fn serve_waiting(&mut self) {
        let apps = &self.apps;
        self.waiting
            .retain(|w| apps.get(&w.app).is_some_and(|a| !a.status.is_terminal() && a.appmaster == Some(w.conn)));
        let mut waiting = std::mem::take(&mut self.waiting);
        self.scheduler.order(&mut waiting);
        for w in waiting {
            let higher_waits = self.scheduler.must_wait(w.priority, &self.waiting);
            match self.scheduler.place(&self.free(), w.slots, w.locality) {
                Ok(allocation) if !higher_waits => {
                    self.take(w.app, &allocation);
                    tracing::info!(app_id = %w.app, ?allocation, "Slots granted to a request that waited.");
                    self.effects.push(Effect::Granted { app: w.app, conn: w.conn, allocation });
                }
                _ => self.waiting.push(w),
            }
        }
    }

    /// `id`'s AppMaster (on `conn`) may start an executor on `worker`.
    pub fn check_launch(&self, id: AppId, conn: u64, worker: WorkerId) -> Result<(), MasterError> {
        self.check_appmaster(id, conn)?;
        match self.workers.get(&worker) {
            Some(w) if w.alive => Ok(()),
            _ => Err(MasterError::WorkerNotAlive(worker)),
        }
    }

    /// `id`'s AppMaster (on `conn`) recorded its start clock.
    pub fn record_start_clock(&mut self, id: AppId, conn: u64, clock: Timestamp) -> Result<(), MasterError> {
        self.check_appmaster(id, conn)?;
        let app = self.apps.get_mut(&id).ok_or(MasterError::UnknownApp(id))?;
        app.start_clock = app.start_clock.max(clock);
        Ok(())
    }

    /// A client on `conn` asks for a change of `id`'s DAG: its AppMaster is told, and the
    /// client answered once the AppMaster has ([`MasterCore::dag_changed`]). One at a time.
    pub fn change_dag(&mut self, id: AppId, change: gearpump_core::DagChange, conn: u64) -> Result<(), MasterError> {
        let app = self.running(id)?;
        if app.kind != gearpump_protocol::STREAMING {
            return Err(MasterError::Invalid(format!(
                "application {id} is a {:?} application; only streaming applications have a DAG to change",
                app.kind
            )));
        }
        if app.change_asked_by.is_some() {
            return Err(MasterError::DagChangePending(id));
        }
        let am = app.appmaster.filter(|_| app.status == AppStatus::Active).ok_or(MasterError::NoAppMaster(id))?;
        let version = app.dag_changes.len() as u32 + 1;
        tracing::info!(app_id = %id, version, %change, "DAG change asked for.");
        self.apps.get_mut(&id).expect("running").change_asked_by = Some(conn);
        self.effects.push(Effect::ToAppMaster { app: id, conn: am, notice: Notice::ChangeDag { version, change } });
        Ok(())
    }

    /// `id`'s AppMaster (on `conn`) answered a DAG change: made as `outcome` says (recorded:
    /// a new AppMaster resumes it), or refused with why. The client that asked is answered.
    pub fn dag_changed(
        &mut self,
        id: AppId,
        conn: u64,
        version: u32,
        outcome: Result<gearpump_core::AppliedChange, String>,
    ) -> Result<(), MasterError> {
        self.check_appmaster(id, conn)?;
        let app = self.apps.get_mut(&id).ok_or(MasterError::UnknownApp(id))?;
        let expected = app.dag_changes.len() as u32 + 1;
        let reply = match outcome {
            Ok(applied) if version == expected => {
                tracing::info!(app_id = %id, version, change = %applied.change, transit = %applied.transit, "DAG changed.");
                // Every message before the transit time was processed by the DAG before: a new
                // AppMaster starts the new DAG no earlier.
                app.start_clock = app.start_clock.max(applied.transit);
                app.dag_changes.push(applied);
                MasterReply::DagChanged { version }
            }
            Ok(_) => MasterReply::Refused(MasterError::DagChangeRefused(format!(
                "the AppMaster made version {version}; the masters expected {expected}"
            ))),
            Err(why) => {
                tracing::info!(app_id = %id, version, %why, "The AppMaster refused a DAG change.");
                MasterReply::Refused(MasterError::DagChangeRefused(why))
            }
        };
        if let Some(client) = app.change_asked_by.take() {
            self.effects.push(Effect::Reply { conn: client, reply });
        }
        Ok(())
    }

    /// A DAG change under way for `id` will not be answered by its AppMaster: `why`.
    fn abandon_change(&mut self, id: AppId, why: &str) {
        if let Some(client) = self.apps.get_mut(&id).and_then(|a| a.change_asked_by.take()) {
            let reply = MasterReply::Refused(MasterError::DagChangeRefused(why.to_string()));
            self.effects.push(Effect::Reply { conn: client, reply });
        }
    }

    /// `id`'s status changed, as its AppMaster on `conn` says (`None`: the master itself).
    /// An AppMaster that was replaced speaks for nothing: then this returns `false`. An ended
    /// application's status is final; its slots are freed and its remaining processes end,
    /// given the stop timeout to exit by themselves.
    pub fn set_status(
        &mut self,
        id: AppId,
        conn: Option<u64>,
        status: AppStatus,
        error: Option<String>,
        now: Timestamp,
    ) -> bool {
        let Some(app) = self.apps.get_mut(&id) else { return false };
        if conn.is_some() && app.appmaster != conn {
            return false;
        }
        if app.status.is_terminal() {
            return true;
        }
        app.status = status;
        match status {
            AppStatus::Active => app.start_time = Some(now),
            s if s.is_terminal() => {
                app.finish_time = Some(now);
                app.error = error.clone();
                app.appmaster = None;
            }
            _ => {}
        }
        if status.is_terminal() {
            self.abandon_change(id, &format!("the application ended ({status})"));
        }
        self.effects.push(Effect::StatusChanged { app: id, status, error });
        if status.is_terminal() {
            self.release(id);
            let grace = self.stop_timeout;
            self.end_processes(id, grace);
            self.serve_waiting();
        }
        true
    }

    /// A process of `id` exited on a worker (`executor` -1: an AppMaster).
    pub fn process_exited(&mut self, id: AppId, executor: i32, code: Option<i32>, now: Timestamp) {
        if executor != -1 {
            return;
        }
        let Some(app) = self.apps.get_mut(&id) else { return };
        if app.status.is_terminal() {
            return;
        }
        app.appmaster_exits += 1;
        // Not an earlier AppMaster's exit, noticed after its successor was launched.
        if app.appmaster_exits >= app.appmaster_launches {
            let why =
                format!("the AppMaster process exited ({})", code.map_or("killed".into(), |c| format!("status {c}")));
            self.appmaster_lost(id, &why, now);
        }
    }

    /// The connection of `id`'s AppMaster closed.
    pub fn appmaster_disconnected(&mut self, id: AppId, conn: u64, now: Timestamp) {
        if self.apps.get(&id).is_some_and(|a| !a.status.is_terminal() && a.appmaster == Some(conn)) {
            self.appmaster_lost(id, "the AppMaster disconnected", now);
        }
    }

    /// The AppMaster of a running application is gone: a new one is launched, which restarts
    /// the tasks from the start clock its predecessor last recorded. Past the budget
    /// (`gearpump.application.total-retries` relaunches) the application fails.
    pub fn appmaster_lost(&mut self, id: AppId, why: &str, now: Timestamp) {
        let budget = self.total_retries;
        let Some(app) = self.apps.get_mut(&id) else { return };
        if app.status.is_terminal() {
            return;
        }
        app.appmaster = None;
        self.abandon_change(id, &format!("the AppMaster was lost before it answered ({why})"));
        let Some(app) = self.apps.get_mut(&id) else { return };
        if app.appmaster_launches > budget {
            let error = format!("{why}; its AppMaster was restarted {budget} times already");
            self.set_status(id, None, AppStatus::Failed, Some(error), now);
            return;
        }
        // Its executors go with it, at once (they must not run beside the new AppMaster's),
        // and its slots are free for the new AppMaster to ask for.
        self.end_processes(id, Duration::ZERO);
        self.release(id);
        let Some(am) = scheduler::allocate(&self.free(), 1) else {
            let error = format!("{why}; no worker has a free slot for a new AppMaster");
            self.set_status(id, None, AppStatus::Failed, Some(error), now);
            return;
        };
        let worker = am[0].0;
        self.take(id, &am);
        let Some(app) = self.apps.get_mut(&id) else { return };
        app.worker = worker;
        app.status = AppStatus::Pending;
        app.appmaster_launches += 1;
        let (attempt, start_clock) = (app.appmaster_launches - 1, app.start_clock);
        tracing::warn!(app_id = %id, %why, %worker, attempt, %start_clock, "Launching a new AppMaster.");
        self.effects.push(Effect::LaunchAppMaster { app: id, worker, attempt, start_clock });
        self.serve_waiting();
    }

    fn take(&mut self, id: AppId, allocation: &[(WorkerId, u32)]) {
        for &(w, n) in allocation {
            if let Some(w) = self.workers.get_mut(&w) {
                w.used += n;
            }
        }
        if let Some(app) = self.apps.get_mut(&id) {
            app.held.extend_from_slice(allocation);
        }
    }

    fn release(&mut self, id: AppId) {
        let Some(app) = self.apps.get_mut(&id) else { return };
        for (w, n) in std::mem::take(&mut app.held) {
            if let Some(w) = self.workers.get_mut(&w) {
                w.used = w.used.saturating_sub(n);
            }
        }
    }

    fn end_processes(&mut self, id: AppId, grace: Duration) {
        for (&worker, _) in self.workers.iter().filter(|(_, w)| w.alive) {
            self.effects.push(Effect::EndProcesses { app: id, worker, grace });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timestamp = Timestamp(1000);
    const H: &str = "127.0.0.1";
    const GRACE: Duration = Duration::from_secs(30);

    /// A master with two workers of `slots` each and a budget of `retries` relaunches.
    fn core(slots: u32, retries: u32) -> MasterCore {
        let mut c = MasterCore::new(retries, GRACE);
        assert_eq!(c.register_worker(None, H.into(), slots, &[], T), WorkerId(1));
        assert_eq!(c.register_worker(None, H.into(), slots, &[], T), WorkerId(2));
        c
    }

    fn sub(name: &str, tasks: u32) -> Submission {
        Submission {
            name: name.into(),
            kind: gearpump_protocol::STREAMING.into(),
            priority: Priority::Normal,
            user: "alice".into(),
            tasks,
        }
    }

    fn used(c: &MasterCore) -> Vec<u32> {
        c.workers().values().map(|w| w.used).collect()
    }

    /// Submits `name` and registers its AppMaster on connection `conn`, which takes slots for
    /// its tasks, and reports it active.
    fn running(c: &mut MasterCore, name: &str, tasks: u32, conn: u64) -> AppId {
        let id = c.submit(sub(name, tasks), None, T).unwrap();
        c.register_appmaster(id, 0, conn).unwrap();
        c.request_resources(id, conn, tasks, Locality::Any).unwrap();
        assert!(c.set_status(id, Some(conn), AppStatus::Active, None, T));
        c.take_effects();
        id
    }

    #[test]
    fn a_submission_launches_an_appmaster_and_holds_its_slot() {
        let mut c = core(4, 5);
        let id = c.submit(sub("wordCount", 3), None, T).unwrap();
        assert_eq!(id, AppId(1));
        assert_eq!(
            c.take_effects(),
            vec![Effect::LaunchAppMaster { app: id, worker: WorkerId(1), attempt: 0, start_clock: Timestamp(0) }]
        );
        assert_eq!(used(&c), vec![1, 0]);
        let app = c.app(id).unwrap();
        assert_eq!((app.status, app.user.as_str(), app.submission_time), (AppStatus::Pending, "alice", T));
        // Its AppMaster asks for its tasks' slots: spread over both workers.
        c.register_appmaster(id, 0, 7).unwrap();
        assert_eq!(
            c.request_resources(id, 7, 3, Locality::Any).unwrap(),
            Grant::Now(vec![(WorkerId(1), 1), (WorkerId(2), 2)])
        );
        assert_eq!(used(&c), vec![2, 2]);
        // More than is free waits; more than the cluster has is refused.
        assert_eq!(c.request_resources(id, 7, 5, Locality::Any), Ok(Grant::Queued));
        assert_eq!(c.request_resources(id, 7, 9, Locality::Any), Err(MasterError::NoSlotsFor { wanted: 9 }));
    }

    #[test]
    fn requests_honour_their_locality() {
        let mut c = core(2, 5);
        let id = c.submit(sub("shell", 0), None, T).unwrap();
        c.register_appmaster(id, 0, 7).unwrap();
        // One on each worker (worker 1 has one slot left after the AppMaster's).
        assert_eq!(
            c.request_resources(id, 7, 1, Locality::EachWorker).unwrap(),
            Grant::Now(vec![(WorkerId(1), 1), (WorkerId(2), 1)])
        );
        assert_eq!(used(&c), vec![2, 1]);
        // Worker 1 is full: it is left out, and asked for by name the request waits (more
        // than it has is refused).
        assert_eq!(c.request_resources(id, 7, 1, Locality::EachWorker).unwrap(), Grant::Now(vec![(WorkerId(2), 1)]));
        assert_eq!(c.request_resources(id, 7, 1, Locality::Worker(WorkerId(1))), Ok(Grant::Queued));
        assert_eq!(
            c.request_resources(id, 7, 3, Locality::Worker(WorkerId(1))),
            Err(MasterError::NoSlotsOn { worker: WorkerId(1), wanted: 3 })
        );
        assert_eq!(
            c.request_resources(id, 7, 1, Locality::Worker(WorkerId(9))),
            Err(MasterError::WorkerNotAlive(WorkerId(9)))
        );
        assert_eq!(c.request_resources(id, 7, 1, Locality::EachWorker), Err(MasterError::NoSlotsFor { wanted: 1 }));
        // A new worker joins: a request on it is granted there.
        let w3 = c.register_worker(None, H.into(), 2, &[], T);
        assert_eq!(c.request_resources(id, 7, 2, Locality::Worker(w3)).unwrap(), Grant::Now(vec![(w3, 2)]));
        assert_eq!(used(&c), vec![2, 2, 2]);
        // The slots go with the application, and so does its waiting request.
        c.kill(id, T).unwrap();
        c.set_status(id, Some(7), AppStatus::Terminated, None, T);
        assert_eq!(used(&c), vec![0, 0, 0]);
        assert!(c.waiting().is_empty());
    }

    /// Three applications on 8 slots: one holds 6, then a low and a high priority one each
    /// ask for more than is free. When the first ends, the scheduler decides who is served.
    fn served_after_release(scheduler: Arc<dyn Scheduler>) -> Vec<(AppId, Vec<(WorkerId, u32)>)> {
        let mut c = core(4, 5).with_scheduler(scheduler);
        let filler = running(&mut c, "filler", 5, 1);
        let mut submit = |name: &str, priority: Priority, conn: u64| {
            let id = c.submit(Submission { priority, ..sub(name, 0) }, None, T).unwrap();
            c.register_appmaster(id, 0, conn).unwrap();
            id
        };
        let low = submit("low", Priority::Low, 2);
        let high = submit("high", Priority::High, 3);
        assert_eq!(c.request_resources(low, 2, 3, Locality::Any), Ok(Grant::Queued));
        assert_eq!(c.request_resources(high, 3, 5, Locality::Any), Ok(Grant::Queued));
        c.take_effects();
        assert!(c.set_status(filler, Some(1), AppStatus::Succeeded, None, T));
        c.take_effects()
            .into_iter()
            .filter_map(|e| match e {
                Effect::Granted { app, allocation, .. } => Some((app, allocation)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_priority_scheduler_serves_higher_priority_first_when_slots_are_short() {
        // 6 slots free up: the high priority request (5) goes first; the low one (3) waits on.
        let served = served_after_release(Arc::new(PriorityScheduler));
        assert_eq!(served.iter().map(|(app, _)| *app).collect::<Vec<_>>(), vec![AppId(3)]);
        assert_eq!(served[0].1.iter().map(|(_, n)| n).sum::<u32>(), 5);
        // First come, first served: the low priority request (first) goes first, and the high
        // one no longer fits.
        let served = served_after_release(Arc::new(scheduler::FifoScheduler));
        assert_eq!(served.iter().map(|(app, _)| *app).collect::<Vec<_>>(), vec![AppId(2)]);
        // A new request must not pass a waiting one of higher priority, even when it fits.
        let mut c = core(2, 5);
        let filler = running(&mut c, "filler", 1, 1);
        let high = c.submit(Submission { priority: Priority::High, ..sub("high", 0) }, None, T).unwrap();
        c.register_appmaster(high, 0, 2).unwrap();
        assert_eq!(c.request_resources(high, 2, 3, Locality::Any), Ok(Grant::Queued));
        let normal = c.submit(sub("normal", 0), None, T).unwrap();
        c.register_appmaster(normal, 0, 3).unwrap();
        assert_eq!(c.free().iter().map(|(_, f)| f).sum::<u32>(), 0);
        assert!(c.set_status(filler, Some(1), AppStatus::Succeeded, None, T));
        // 2 free, too few for the high request (3); the normal one (1) would fit but waits.
        assert_eq!(c.free().iter().map(|(_, f)| f).sum::<u32>(), 2);
        assert_eq!(c.request_resources(normal, 3, 1, Locality::Any), Ok(Grant::Queued));
        assert_eq!(c.waiting().len(), 2);
        assert_eq!(scheduler::named("io.gearpump.cluster.scheduler.PriorityScheduler").unwrap().name(), "priority");
        assert!(scheduler::named("round-robin").unwrap_err().contains("not a known scheduler"));
    }

    #[test]
    fn submissions_are_checked_by_one_rule_set() {
        let mut c = core(4, 5);
        running(&mut c, "wordCount", 2, 1);
        assert!(matches!(c.submit(sub("bad name!", 1), None, T), Err(MasterError::Invalid(_))));
        assert!(matches!(c.submit(sub("", 1), None, T), Err(MasterError::Invalid(_))));
        assert_eq!(
            c.submit(sub("wordCount", 1), None, T),
            Err(MasterError::DuplicateName { name: "wordCount".into(), id: AppId(1) })
        );
        let too_many = gearpump_api::MAX_TASKS + 1;
        assert_eq!(
            c.submit(sub("big", too_many), None, T),
            Err(MasterError::TooManyTasks { tasks: too_many, max: gearpump_api::MAX_TASKS })
        );
        // 3 of 8 slots are held: 5 free, and 5 tasks need 6.
        assert_eq!(c.submit(sub("five", 5), None, T), Err(MasterError::NotEnoughSlots { needed: 6, free: 5 }));
        assert_eq!(c.submit(sub("four", 4), None, T), Ok(AppId(2)));
        assert!(c.take_effects().iter().all(|e| matches!(e, Effect::LaunchAppMaster { .. })));
        // A refused submission used no id.
        assert_eq!(c.next_ids().0, 3);
    }

    #[test]
    fn an_ended_application_frees_its_slots_and_its_processes_get_the_stop_timeout() {
        let mut c = core(4, 5);
        let id = running(&mut c, "a", 3, 1);
        assert_eq!(used(&c), vec![2, 2]);
        assert!(c.set_status(id, Some(1), AppStatus::Succeeded, None, Timestamp(2000)));
        let effects = c.take_effects();
        assert_eq!(
            effects,
            vec![
                Effect::StatusChanged { app: id, status: AppStatus::Succeeded, error: None },
                Effect::EndProcesses { app: id, worker: WorkerId(1), grace: GRACE },
                Effect::EndProcesses { app: id, worker: WorkerId(2), grace: GRACE },
            ]
        );
        assert_eq!(used(&c), vec![0, 0]);
        let app = c.app(id).unwrap();
        assert_eq!((app.finish_time, app.appmaster), (Some(Timestamp(2000)), None));
        // Final: a later status changes nothing, and the name is free again.
        c.set_status(id, None, AppStatus::Failed, Some("late".into()), T);
        assert_eq!(c.app(id).unwrap().status, AppStatus::Succeeded);
        assert_eq!(c.submit(sub("a", 1), None, T), Ok(AppId(2)));
    }

    #[test]
    fn kill_and_replay_go_to_the_appmaster_that_speaks_for_the_application() {
        let mut c = core(4, 5);
        let id = running(&mut c, "a", 1, 9);
        c.replay(id).unwrap();
        c.kill(id, T).unwrap();
        assert_eq!(
            c.take_effects(),
            vec![
                Effect::ToAppMaster { app: id, conn: 9, notice: Notice::Replay },
                Effect::ToAppMaster { app: id, conn: 9, notice: Notice::Kill },
            ]
        );
        assert_eq!(c.app(id).unwrap().status, AppStatus::Active, "until the AppMaster reports");
        assert!(c.set_status(id, Some(9), AppStatus::Terminated, None, T));
        assert_eq!(c.kill(id, T), Err(MasterError::NotRunning { id, status: AppStatus::Terminated }));
        assert_eq!(c.replay(id), Err(MasterError::NotRunning { id, status: AppStatus::Terminated }));
        assert_eq!(c.kill(AppId(99), T), Err(MasterError::UnknownApp(AppId(99))));
        assert!(MasterError::UnknownApp(AppId(99)).is_not_found());
        // Without an AppMaster yet: a kill ends it at once; a replay is refused.
        let pending = c.submit(sub("b", 1), None, T).unwrap();
        assert_eq!(c.replay(pending), Err(MasterError::NoAppMaster(pending)));
        c.kill(pending, T).unwrap();
        assert_eq!(c.app(pending).unwrap().status, AppStatus::Terminated);
    }

    #[test]
    fn a_dag_change_goes_to_the_appmaster_one_at_a_time_and_its_answer_to_the_client() {
        use gearpump_core::{AppliedChange, DagChange, ProcessorId};
        let mut c = core(4, 5);
        let id = running(&mut c, "a", 1, 9);
        c.take_effects();
        let rescale = DagChange::Rescale { processor_id: ProcessorId(1), parallelism: 3 };
        let ask = |c: &mut MasterCore, client: u64| {
            c.answer(MasterRequest::ChangeDag { app_id: id, change: rescale.clone() }, client, T).unwrap()
        };
        // Client 100 asks: the AppMaster on 9 is told; the client is answered later.
        assert_eq!(ask(&mut c, 100), None);
        let notice = Notice::ChangeDag { version: 1, change: rescale.clone() };
        assert_eq!(c.take_effects(), vec![Effect::ToAppMaster { app: id, conn: 9, notice }]);
        // Another change meanwhile is refused in the guide's words.
        let Some(MasterReply::Refused(e)) = ask(&mut c, 101) else { panic!("refused") };
        assert_eq!(e.to_string(), "application 1 is in the process of handling previous dynamic dag change");
        // Only the AppMaster speaks for the change; once it has, the masters keep it and
        // the client has its answer.
        let applied = AppliedChange { change: rescale.clone(), transit: Timestamp(700) };
        assert_eq!(c.dag_changed(id, 55, 1, Ok(applied.clone())), Err(MasterError::ReplacedAppMaster(id)));
        c.dag_changed(id, 9, 1, Ok(applied.clone())).unwrap();
        assert_eq!(c.take_effects(), vec![Effect::Reply { conn: 100, reply: MasterReply::DagChanged { version: 1 } }]);
        let app = c.app(id).unwrap();
        assert_eq!((app.dag_changes.clone(), app.start_clock), (vec![applied.clone()], Timestamp(700)));
        assert_eq!(
            c.answer(MasterRequest::DagChanges { app_id: id }, 1, T),
            Ok(Some(MasterReply::DagChanges(vec![applied])))
        );
        // A refusal reaches the client with the AppMaster's reason, and changes nothing.
        assert_eq!(ask(&mut c, 102), None);
        c.take_effects();
        c.dag_changed(id, 9, 2, Err("unknown task type \"X\"".into())).unwrap();
        let why = MasterError::DagChangeRefused("unknown task type \"X\"".into());
        assert_eq!(c.take_effects(), vec![Effect::Reply { conn: 102, reply: MasterReply::Refused(why) }]);
        assert_eq!(c.app(id).unwrap().dag_changes.len(), 1);
        // The AppMaster lost before it answers: the client hears so, and may ask again.
        assert_eq!(ask(&mut c, 103), None);
        c.take_effects();
        c.appmaster_disconnected(id, 9, T);
        let effects = c.take_effects();
        // (and the new AppMaster resumes no earlier than the change's transit time)
        assert!(effects.iter().any(|e| matches!(e, Effect::LaunchAppMaster { start_clock: Timestamp(700), .. })));
        assert!(
            matches!(&effects[0], Effect::Reply { conn: 103, reply: MasterReply::Refused(MasterError::DagChangeRefused(w)) } if w.contains("AppMaster was lost")),
            "{effects:?}"
        );
        // No AppMaster speaks for it now; a non-streaming application has no DAG.
        assert!(matches!(ask(&mut c, 104), Some(MasterReply::Refused(MasterError::NoAppMaster(_)))));
        let other = c.submit(Submission { kind: "shell".into(), ..sub("b", 1) }, None, T).unwrap();
        let req = MasterRequest::ChangeDag { app_id: other, change: rescale.clone() };
        let Ok(Some(MasterReply::Refused(e))) = c.answer(req, 105, T) else { panic!("refused") };
        assert!(e.to_string().contains("only streaming applications have a DAG"), "{e}");
    }

    #[test]
    fn requests_both_masters_answer_alike_are_answered_by_the_core() {
        let mut c = core(4, 1);
        let id = c.submit(sub("shell", 0), None, T).unwrap();
        let address: std::net::SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let ask = |c: &mut MasterCore, req, conn| c.answer(req, conn, T);
        // The AppMaster registers with where it serves clients; clients resolve it there.
        let register = MasterRequest::RegisterAppMaster { app_id: id, attempt: 0, address: Some(address) };
        assert_eq!(ask(&mut c, register, 7), Ok(Some(MasterReply::Ok)));
        let resolve = MasterRequest::ResolveAppMaster { app_id: id };
        let kind = gearpump_protocol::STREAMING.to_string();
        assert_eq!(ask(&mut c, resolve.clone(), 1), Ok(Some(MasterReply::AppMaster { kind, address: Some(address) })));
        let slots = MasterRequest::RequestResources { app_id: id, slots: 2, locality: Locality::Any };
        assert!(matches!(ask(&mut c, slots.clone(), 7), Ok(Some(MasterReply::Resources(_)))));
        // Another connection does not speak for the application.
        assert_eq!(ask(&mut c, slots, 8), Ok(Some(MasterReply::Refused(MasterError::ReplacedAppMaster(id)))));
        let clock = MasterRequest::StartClock { app_id: id, clock: Timestamp(42) };
        assert_eq!(ask(&mut c, clock, 7), Ok(Some(MasterReply::Ok)));
        assert_eq!(c.app(id).unwrap().start_clock, Timestamp(42));
        let Ok(Some(MasterReply::Workers(workers))) = ask(&mut c, MasterRequest::ListWorkers, 1) else { panic!() };
        assert!(workers.iter().all(|w| w.host == H && w.alive && w.slots == 4));
        assert_eq!(workers.iter().map(|w| w.used).sum::<u32>(), 3, "the AppMaster's slot and its two");
        // A status from a connection that does not speak for it changes nothing.
        let active = |conn| (MasterRequest::AppStatus { app_id: id, status: AppStatus::Active, error: None }, conn);
        let (req, conn) = active(8);
        assert_eq!(ask(&mut c, req, conn), Ok(Some(MasterReply::Ok)));
        assert_eq!(c.app(id).unwrap().status, AppStatus::Pending);
        let (req, conn) = active(7);
        ask(&mut c, req, conn).unwrap();
        let Ok(Some(MasterReply::Apps(apps))) = ask(&mut c, MasterRequest::ListApps, 1) else { panic!() };
        assert_eq!((apps[0].id, apps[0].status, apps[0].start_time), (id, AppStatus::Active, Some(T)));
        c.take_effects();
        assert_eq!(ask(&mut c, MasterRequest::KillApp { app_id: id }, 1), Ok(Some(MasterReply::Ok)));
        let kill = Effect::ToAppMaster { app: id, conn: 7, notice: Notice::Kill };
        assert_eq!(c.take_effects(), [kill]);
        // A notice needs no answer; what only a driver can answer is handed back.
        let exited = MasterRequest::ProcessExited { app_id: id, executor: 0, code: Some(0) };
        assert_eq!(ask(&mut c, exited, 3), Ok(None));
        let snapshot = ask(&mut c, MasterRequest::Snapshot, 1);
        assert_eq!(snapshot, Err(Box::new(MasterRequest::Snapshot)));
        // Ended, it is resolved no more.
        c.set_status(id, Some(7), AppStatus::Terminated, None, T);
        let ended = MasterError::NotRunning { id, status: AppStatus::Terminated };
        assert_eq!(ask(&mut c, resolve, 1), Ok(Some(MasterReply::Refused(ended))));
    }

    #[test]
    fn a_restart_kills_and_submits_again_under_a_new_id() {
        let mut c = core(4, 5);
        let id = running(&mut c, "a", 1, 1);
        let again = c.restart(id, T).unwrap();
        assert_eq!(again, AppId(2));
        let effects = c.take_effects();
        assert_eq!(effects[0], Effect::ToAppMaster { app: id, conn: 1, notice: Notice::Kill });
        assert!(matches!(effects[1], Effect::LaunchAppMaster { app: AppId(2), attempt: 0, .. }));
        assert_eq!((c.app(again).unwrap().name.as_str(), c.app(again).unwrap().user.as_str()), ("a", "alice"));
        assert_eq!(c.restart(AppId(9), T), Err(MasterError::UnknownApp(AppId(9))));
    }

    #[test]
    fn worker_dies_appmaster_relaunched_elsewhere_until_the_budget_is_spent() {
        let mut c = core(4, 1);
        let id = running(&mut c, "a", 2, 1);
        c.record_start_clock(id, 1, Timestamp(500)).unwrap();
        c.record_start_clock(id, 1, Timestamp(400)).unwrap();
        assert_eq!(c.app(id).unwrap().worker, WorkerId(1));
        // The AppMaster's worker dies: a new AppMaster on worker 2 resumes at the start clock;
        // the old one's processes end at once.
        c.worker_lost(WorkerId(1), "no heartbeat", T);
        let effects = c.take_effects();
        assert_eq!(
            effects,
            vec![
                Effect::EndProcesses { app: id, worker: WorkerId(2), grace: Duration::ZERO },
                Effect::LaunchAppMaster { app: id, worker: WorkerId(2), attempt: 1, start_clock: Timestamp(500) },
            ]
        );
        assert_eq!(used(&c), vec![2, 1], "worker 1's count is moot; worker 2 holds the new AppMaster");
        // The old AppMaster speaks for nothing now; the new one registers.
        assert_eq!(c.request_resources(id, 1, 1, Locality::Any), Err(MasterError::ReplacedAppMaster(id)));
        assert!(!c.set_status(id, Some(1), AppStatus::Failed, None, T));
        assert_eq!(c.register_appmaster(id, 0, 1), Err(MasterError::NewerAppMaster { id, newest: 2, this: 1 }));
        c.register_appmaster(id, 1, 2).unwrap();
        // Its connection closes: the budget (1 relaunch) is spent, and the application fails.
        // (The first AppMaster's exit is never reported: its worker died with it.)
        c.appmaster_disconnected(id, 2, Timestamp(3000));
        let app = c.app(id).unwrap();
        assert_eq!(app.status, AppStatus::Failed);
        assert_eq!(app.finish_time, Some(Timestamp(3000)));
        let error = app.error.clone().unwrap();
        assert!(error.contains("disconnected") && error.contains("restarted 1 times"), "{error}");
        assert_eq!(used(&c), vec![2, 0], "the dead worker is not counted again");
    }

    #[test]
    fn only_the_current_appmasters_exit_or_disconnect_is_news() {
        let mut c = core(4, 5);
        let id = running(&mut c, "a", 1, 1);
        // Executors exiting, or a stale connection closing, change nothing.
        c.process_exited(id, 0, Some(0), T);
        c.appmaster_disconnected(id, 99, T);
        assert_eq!(c.take_effects(), vec![]);
        c.appmaster_disconnected(id, 1, T);
        assert_eq!(c.app(id).unwrap().appmaster_launches, 2);
        c.take_effects();
        // The first AppMaster's exit, noticed after its successor was launched, is old news.
        c.process_exited(id, -1, None, T);
        assert_eq!(c.take_effects(), vec![]);
        c.process_exited(id, -1, None, T);
        assert!(matches!(c.take_effects().last(), Some(Effect::LaunchAppMaster { attempt: 2, .. })));
    }

    #[test]
    fn no_free_slot_for_a_new_appmaster_fails_the_application() {
        let mut c = core(2, 5);
        let id = running(&mut c, "a", 2, 1);
        let other = running(&mut c, "b", 0, 2);
        assert_eq!(used(&c), vec![2, 2]);
        assert_eq!((c.app(id).unwrap().worker, c.app(other).unwrap().worker), (WorkerId(1), WorkerId(2)));
        c.worker_lost(WorkerId(2), "gone", T);
        // b's AppMaster was on worker 2, and worker 1 has no free slot for a new one.
        let app = c.app(other).unwrap();
        assert_eq!(app.status, AppStatus::Failed, "{app:?}");
        assert!(app.error.as_deref().unwrap().contains("no worker has a free slot"));
        assert_eq!(c.app(id).unwrap().status, AppStatus::Active);
        assert_eq!(c.check_launch(id, 1, WorkerId(2)), Err(MasterError::WorkerNotAlive(WorkerId(2))));
        assert_eq!(c.check_launch(id, 1, WorkerId(1)), Ok(()));
    }

    #[test]
    fn a_worker_that_registers_again_keeps_its_id_and_its_lost_appmasters_are_replaced() {
        let mut c = core(4, 5);
        let id = running(&mut c, "a", 2, 1);
        // What the masters replicate has no connections.
        let replicated: Vec<App> = c.apps().values().cloned().map(|a| App { appmaster: None, ..a }).collect();
        let (next_app, next_worker) = c.next_ids();
        // A new leader knows the applications but not the workers or connections.
        let mut leader = MasterCore::new(5, GRACE);
        leader.restore(replicated.clone(), next_app, next_worker);
        assert_eq!(leader.app(id).unwrap().appmaster, None);
        // Worker 2 comes back running an executor, worker 1 running the AppMaster: nothing to do.
        assert_eq!(leader.register_worker(Some(WorkerId(2)), H.into(), 4, &[(id, 0)], T), WorkerId(2));
        assert_eq!(leader.workers()[&WorkerId(2)].used, 1, "its slots are held by the application");
        assert_eq!(leader.register_worker(Some(WorkerId(1)), H.into(), 4, &[(id, -1), (id, 0)], T), WorkerId(1));
        assert_eq!(leader.take_effects(), vec![]);
        // The same, had worker 1 lost the AppMaster meanwhile: a new one.
        let mut leader = MasterCore::new(5, GRACE);
        leader.restore(replicated, next_app, next_worker);
        leader.register_worker(Some(WorkerId(2)), H.into(), 4, &[], T);
        leader.register_worker(Some(WorkerId(1)), H.into(), 4, &[(id, 0)], T);
        assert!(matches!(leader.take_effects().last(), Some(Effect::LaunchAppMaster { attempt: 1, .. })));
        // An unknown id, or one alive already, gets a new id.
        assert_eq!(leader.register_worker(Some(WorkerId(1)), H.into(), 4, &[], T), WorkerId(3));
        assert_eq!(leader.register_worker(Some(WorkerId(40)), H.into(), 4, &[], T), WorkerId(4));
    }

    #[test]
    fn after_a_failover_workers_that_do_not_come_back_take_their_appmasters_with_them() {
        let mut c = core(4, 5);
        let id = running(&mut c, "a", 2, 1);
        // This master stops leading: it forgets who was connected, not the applications.
        c.forget_connections();
        assert!(c.workers().is_empty());
        assert_eq!(c.app(id).unwrap().appmaster, None);
        assert_eq!(c.replay(id), Err(MasterError::NoAppMaster(id)));
        // Leading again, only worker 2 comes back within the worker timeout.
        c.register_worker(Some(WorkerId(2)), H.into(), 4, &[(id, 0)], T);
        c.lose_unregistered_workers(T);
        let app = c.app(id).unwrap();
        // Its slots are free for the new AppMaster to ask for; it holds its own.
        assert_eq!(app.held, vec![(WorkerId(2), 1)], "{app:?}");
        assert_eq!(c.workers()[&WorkerId(2)].used, 1);
        assert_eq!((app.status, app.worker, app.appmaster_launches), (AppStatus::Pending, WorkerId(2), 2));
        assert_eq!(
            c.take_effects(),
            vec![
                Effect::EndProcesses { app: id, worker: WorkerId(2), grace: Duration::ZERO },
                Effect::LaunchAppMaster { app: id, worker: WorkerId(2), attempt: 1, start_clock: Timestamp(0) },
            ]
        );
        // Its new AppMaster registers and reports active again.
        c.register_appmaster(id, 1, 5).unwrap();
        assert!(c.set_status(id, Some(5), AppStatus::Active, None, Timestamp(5000)));
        assert_eq!(c.app(id).unwrap().start_time, Some(Timestamp(5000)));
    }
}
