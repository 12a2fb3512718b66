//! The cluster roles of an application binary.
//!
//! The same binary plays every role (DESIGN §3); a worker or `gear app` sets `GEARPUMP_ROLE`:
//!
//! - `client`: upload this binary to the master's artifact store, submit the application it
//!   builds, report the application id, exit.
//! - `appmaster`: ask the master for slots, have workers start executor processes, place the
//!   tasks on them, run the clock service, decide the outcome, report it.
//! - `executor`: bind a data port, report to the AppMaster, create the tasks it is given (wired
//!   in memory to each other and over TCP to the other executors), run them.
//!
//! Control messages travel on framed connections ([`gearpump_protocol`]); data between
//! executors on the TCP data plane.

use crate::daemon::{DuplexClient, MasterClient, artifacts::CHUNK};
use crate::env::{EnvError, ProcessEnv};
use gearpump_api::{StartTime, StreamApplication};
use gearpump_config::{GearConfig, HostPort};
use gearpump_core::{AppId, AppStatus, ProcessorId, TaskId, Timestamp, WorkerId};
use gearpump_protocol::{
    ClusterSecret, ExecutorCommand, ExecutorReport, ExecutorStatus, Locality, MasterReply, MasterRequest,
    ProtocolError, TaskCounters, read_msg, write_msg,
};
use gearpump_streaming::appmaster::{flow_from_config, place};
use gearpump_streaming::supervisor::Ending;
use gearpump_streaming::{
    DataPlane, Deployment, Event, Executor, ExecutorSink, LaunchSpec, Progress, Runtime, TaskEvent, TaskPool,
};
use gearpump_transport::flow::FlowConfig;
use gearpump_transport::tcp::{DataServer, RetryPolicy};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A cluster role failed.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    /// An environment variable the role needs is missing or wrong.
    #[error("environment variable {name}: {reason}")]
    Env {
        /// The variable.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The control plane failed.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The master refused.
    #[error("the master refused: {0}")]
    Refused(String),
    /// The application was killed while its AppMaster waited for slots.
    #[error("killed while waiting for slots")]
    Killed,
    /// Something else went wrong.
    #[error("{0}")]
    Other(String),
}

impl From<std::io::Error> for RoleError {
    fn from(e: std::io::Error) -> Self {
        RoleError::Protocol(ProtocolError::Io(e))
    }
}

impl From<EnvError> for RoleError {
    fn from(e: EnvError) -> Self {
        RoleError::Env { name: e.name, reason: e.reason }
    }
}

/// Any error as a role's.
pub(crate) fn other(e: impl std::fmt::Display) -> RoleError {
    RoleError::Other(e.to_string())
}

/// This process's environment ([`ProcessEnv::current`]).
fn process_env() -> Result<&'static ProcessEnv, RoleError> {
    Ok(ProcessEnv::current()?)
}

/// `GEARPUMP_MASTERS`: `host:port,host:port`.
pub fn masters_from_env() -> Result<Vec<HostPort>, RoleError> {
    Ok(process_env()?.need_masters()?.to_vec())
}

/// What a role reads of the cluster's configuration, as the worker handed it over
/// (`GEARPUMP_CONF`; else the defaults): parsed once per process.
pub(crate) struct RoleConfig {
    pub(crate) conf: GearConfig,
    pub(crate) settings: gearpump_config::Settings,
    pub(crate) secret: ClusterSecret,
    /// `gearpump.network.*`: what the role's listening ports allow.
    pub(crate) limits: gearpump_protocol::PortLimits,
}

/// This process's [`RoleConfig`]. Keys this binary's version does not know (a cluster
/// upgraded after the binary was built) are left out with a warning, not an error: the
/// configuration is written for the cluster.
pub(crate) fn role_config() -> Result<&'static RoleConfig, RoleError> {
    static CONFIG: std::sync::OnceLock<Result<RoleConfig, String>> = std::sync::OnceLock::new();
    let read = || {
        let conf = match &process_env().map_err(|e| e.to_string())?.conf {
            None => GearConfig::defaults(),
            Some(text) => {
                let (conf, ignored) = GearConfig::defaults()
                    .with_str_ignoring_unknown("GEARPUMP_CONF", text)
                    .map_err(|e| e.to_string())?;
                if !ignored.is_empty() {
                    tracing::warn!(keys = ?ignored, "The cluster's configuration has keys this application binary's gearpump version does not know; they are left out.");
                }
                conf
            }
        };
        let settings = conf.settings().map_err(|e| e.to_string())?;
        let secret = conf.cluster_secret().map_err(|e| e.to_string())?;
        let limits = crate::daemon::port_limits(&conf).map_err(|e| e.to_string())?;
        Ok(RoleConfig { conf, settings, secret, limits })
    };
    CONFIG.get_or_init(read).as_ref().map_err(|e| RoleError::Other(e.clone()))
}

/// What the cluster's configuration says about the data plane, with the application's
/// overrides of the flow-control keys on top.
#[derive(Clone)]
struct DataPlaneSettings {
    flow: FlowConfig,
    retry: RetryPolicy,
    codecs: Arc<gearpump_core::Codecs>,
    metrics: gearpump_streaming::MetricsConfig,
}

fn data_plane_settings(app: &StreamApplication) -> Result<DataPlaneSettings, RoleError> {
    let RoleConfig { conf: sys, settings: s, .. } = role_config()?;
    let base = FlowConfig { ack_once_every: s.ack_once_every, max_pending: s.max_pending };
    let flow = flow_from_config(app.config(), base).map_err(other)?;
    let retry = RetryPolicy { max_retries: s.max_retries, base_sleep: s.base_sleep, max_sleep: s.max_sleep };
    let mut codecs = app.codecs().clone();
    let serializers = sys.map("gearpump.serializers");
    codecs.apply_serializers(serializers.iter().map(|(t, c)| (t.as_str(), c.as_str()))).map_err(RoleError::Other)?;
    let metrics = crate::master::metrics_config(s);
    Ok(DataPlaneSettings { flow, retry, codecs: Arc::new(codecs), metrics })
}

pub(crate) fn role_runtime() -> Result<tokio::runtime::Runtime, RoleError> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?)
}

/// A master's answer a role did not expect, or a refusal, as the role's error.
pub(crate) fn unexpected(reply: MasterReply) -> RoleError {
    match reply {
        MasterReply::Error(e) => RoleError::Refused(e),
        MasterReply::Refused(e) => RoleError::Refused(e.to_string()),
        other => RoleError::Other(format!("unexpected answer from the master: {other:?}")),
    }
}

/// The client role: uploads this binary, submits `app`, returns its id.
pub fn run_client(app: &StreamApplication) -> Result<AppId, RoleError> {
    submit_this_binary(app.name(), app.dag().task_count(), gearpump_protocol::STREAMING)
}

/// The client role of any application: uploads this binary (unless the masters hold it
/// already) and submits it as application `name` of `kind` needing `tasks` slots besides its
/// AppMaster's; returns its id.
pub(crate) fn submit_this_binary(name: &str, tasks: u32, kind: &str) -> Result<AppId, RoleError> {
    let env = process_env()?;
    let masters = env.need_masters()?;
    let prefix = &env.name_prefix;
    let name = if prefix.is_empty() { name.to_string() } else { format!("{prefix}_{name}") };
    let user = env.user.clone().unwrap_or_else(crate::current_user);
    let exe = std::env::current_exe()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kind = kind.to_string();
    role_runtime()?.block_on(async {
        let bytes = std::fs::read(&exe)?;
        let id = crate::daemon::artifacts::content_id(&bytes[..])?;
        // A leader change during the upload closes the connection: ask the new leader (the
        // binary is content-addressed; what it holds already is not sent again).
        let deadline = tokio::time::Instant::now() + crate::daemon::LEADER_PATIENCE;
        let (mut client, artifact) = loop {
            match upload(masters, &exe, &bytes, &id).await {
                Err(RoleError::Protocol(e)) if !e.is_permanent() && tokio::time::Instant::now() < deadline => {
                    eprintln!("Lost the leading master during the upload ({e}); asking the leader again.");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => break other?,
            }
        };
        let executors = env.executors;
        let priority = env.priority;
        let submit = MasterRequest::SubmitApp { name, artifact, args, tasks, user, executors, kind, priority };
        // A master that has just taken over may not know its workers yet: ask again a moment later.
        let deadline = tokio::time::Instant::now() + crate::daemon::LEADER_PATIENCE;
        loop {
            match client.ask(&submit, Duration::from_secs(60)).await? {
                MasterReply::Submitted { app_id } => return Ok(app_id),
                MasterReply::Refused(gearpump_protocol::MasterError::WorkersRejoining)
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => return Err(unexpected(other)),
            }
        }
    })
}

/// Connects to the leading master and makes sure it holds this binary (`bytes`, content id
/// `id`), uploading it unless the masters have it already (submitted before).
async fn upload(
    masters: &[HostPort],
    exe: &std::path::Path,
    bytes: &[u8],
    id: &str,
) -> Result<(MasterClient, String), RoleError> {
    let mut client = MasterClient::connect(masters, &role_config()?.secret).await?;
    let artifact = match client.ask(&MasterRequest::HasArtifact { id: id.to_string() }, Duration::from_secs(30)).await?
    {
        MasterReply::ArtifactStored { id } => {
            eprintln!("{} is stored on the masters already.", exe.display());
            id
        }
        MasterReply::Ok => {
            let chunk = |offset: u64| {
                let start = offset as usize;
                let end = (start + CHUNK).min(bytes.len());
                let percent = (end * 100).checked_div(bytes.len()).unwrap_or(100);
                eprintln!("Uploading {} ({} MiB): {percent}%", exe.display(), bytes.len() >> 20);
                Ok((bytes[start..end].to_vec(), end == bytes.len()))
            };
            match client.upload_artifact(chunk).await? {
                Ok(artifact) => artifact,
                Err(reply) => return Err(not_leading(reply)),
            }
        }
        other => return Err(not_leading(other)),
    };
    Ok((client, artifact))
}

/// A master's answer the upload did not expect: one that no longer leads is as good as a
/// closed connection (the leader is looked for again).
fn not_leading(reply: MasterReply) -> RoleError {
    match reply {
        MasterReply::NotLeader { .. } => RoleError::Protocol(ProtocolError::Closed),
        other => unexpected(other),
    }
}

/// Asks the master for `slots` slots on any workers; when too few are free, waits for the
/// grant (the application killed meanwhile: [`RoleError::Killed`]). A master lost meanwhile
/// (a failover) is replaced by the one that leads now, and asked again: requests waiting for
/// slots are the leader's alone, not replicated.
async fn request_slots(
    master: &mut DuplexClient,
    pushes: &mut mpsc::UnboundedReceiver<MasterReply>,
    app_id: AppId,
    slots: u32,
) -> Result<Vec<(WorkerId, u32)>, RoleError> {
    let req = MasterRequest::RequestResources { app_id, slots, locality: Locality::Any };
    loop {
        match master.ask(req.clone(), Duration::from_secs(30)).await {
            Ok(MasterReply::Resources(a)) => return Ok(a),
            Ok(MasterReply::Queued) => {
                tracing::info!(%app_id, slots, "Too few free slots; waiting for the master to grant them.");
                loop {
                    match pushes.recv().await {
                        Some(MasterReply::Granted(a)) => return Ok(a),
                        Some(MasterReply::KillRequested) => return Err(RoleError::Killed),
                        Some(_) => {}
                        None => break,
                    }
                }
            }
            // A master that has just taken over does not know every worker yet.
            Ok(MasterReply::Refused(gearpump_protocol::MasterError::WorkersRejoining)) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Ok(other) => return Err(unexpected(other)),
            Err(e) => tracing::debug!(%app_id, error = %e, "Asking for slots failed."),
        }
        tracing::warn!(%app_id, "Lost the master while waiting for slots; asking the leading master again.");
        (*master, *pushes) = register_again(app_id).await?;
    }
}

/// Registers with whichever master leads now, trying for `gearpump.cluster.master-timeout`
/// (a failover elects a new leader within a second or two).
async fn register_again(app_id: AppId) -> Result<(DuplexClient, mpsc::UnboundedReceiver<MasterReply>), RoleError> {
    let patience = role_config()?.settings.master_timeout;
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let error = match tokio::time::timeout(
            Duration::from_secs(5),
            register_appmaster(app_id, None, Duration::from_secs(10)),
        )
        .await
        {
            Ok(Ok(registered)) => {
                tracing::info!(%app_id, master = %registered.0.master, "Registered with the leading master again.");
                return Ok(registered);
            }
            // A newer AppMaster runs the application: this one must stop.
            Ok(Err(RoleError::Refused(e))) => return Err(RoleError::Refused(e)),
            Ok(Err(e)) => e,
            Err(_) => RoleError::Other("the master did not answer".into()),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(RoleError::Other(format!("no leading master within {patience:?}: {error}")));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What an executor's control connection delivers to the AppMaster, in order.
enum LinkEvent {
    /// Connected: where commands to it go. Always before its first report.
    Up(mpsc::UnboundedSender<ExecutorCommand>),
    /// A report.
    Report(ExecutorReport),
    /// The connection ended.
    Down,
}

struct ExecutorLink {
    commands: mpsc::UnboundedSender<ExecutorCommand>,
    data_addr: Option<SocketAddr>,
    pid: u32,
    worker: WorkerId,
    gauges: gearpump_protocol::ProcessGauges,
    tasks: Vec<TaskId>,
    alive: bool,
}

/// Exits this process when the process that started it (its worker) is gone, whatever killed
/// it: an orphaned AppMaster or executor would otherwise run on with nobody to stop it.
pub fn exit_with_parent() {
    let parent = std::os::unix::process::parent_id();
    let watch = move || {
        loop {
            std::thread::sleep(Duration::from_millis(250));
            if std::os::unix::process::parent_id() != parent {
                tracing::error!(parent, "The worker that started this process is gone; exiting.");
                std::process::exit(1);
            }
        }
    };
    if let Err(e) = std::thread::Builder::new().name("gearpump-parent-watch".into()).spawn(watch) {
        tracing::warn!(error = %e, "Cannot watch the parent process.");
    }
}

/// How often an AppMaster of an application without state records its start clock with the
/// master, at most: each record is a write every master stores, and such a start clock moves
/// with every clock report. (With state, the start clock moves only at checkpoints, and each
/// move is recorded at once: a new AppMaster must restore the newest checkpoint there is, and
/// older checkpoints are deleted only once a newer start clock is recorded.)
const START_CLOCK_EVERY: Duration = Duration::from_secs(2);

/// Which AppMaster of its application this process is (0: the first).
fn appmaster_attempt() -> u32 {
    ProcessEnv::current().map_or(0, |e| e.attempt)
}

/// Connects to the leading master and registers as the AppMaster of `app_id` (again, after
/// the master it knew died or stopped leading), serving clients at `address` if given.
pub(crate) async fn register_appmaster(
    app_id: AppId,
    address: Option<SocketAddr>,
    timeout: Duration,
) -> Result<(DuplexClient, mpsc::UnboundedReceiver<MasterReply>), RoleError> {
    let masters = masters_from_env()?;
    let (mut master, pushes) = DuplexClient::connect(&masters, &role_config()?.secret).await?;
    let attempt = appmaster_attempt();
    match master.ask(MasterRequest::RegisterAppMaster { app_id, attempt, address }, timeout).await? {
        MasterReply::Ok => Ok((master, pushes)),
        other => Err(unexpected(other)),
    }
}

/// The AppMaster role: runs `app` on executor processes until it ends; reports the outcome.
pub fn run_appmaster(app: &StreamApplication) -> Result<(), RoleError> {
    let app_id = process_env()?.need_app_id()?;
    let hostname = process_env()?.host().to_string();
    role_runtime()?.block_on(async move {
        let (mut master, mut pushes) = register_appmaster(app_id, None, Duration::from_secs(30)).await?;
        // Registered first, so that a bad configuration is reported as the application's error.
        let outcome = match data_plane_settings(app) {
            Ok(settings) => appmaster_loop(app, app_id, &settings, &hostname, &mut master, &mut pushes).await,
            Err(e) => Err(e),
        };
        let outcome = match outcome {
            Err(RoleError::Killed) => Ok(AppStatus::Terminated),
            other => other,
        };
        let (status, error) = match &outcome {
            Ok(status) => (*status, None),
            Err(e) => (AppStatus::Failed, Some(e.to_string())),
        };
        tracing::info!(%app_id, %status, ?error, "The application ended.");
        let _ = master.ask(MasterRequest::AppStatus { app_id, status, error }, Duration::from_secs(10)).await;
        outcome.map(|_| ())
    })
}

async fn appmaster_loop(
    app: &StreamApplication,
    app_id: AppId,
    settings: &DataPlaneSettings,
    hostname: &str,
    master: &mut DuplexClient,
    pushes: &mut mpsc::UnboundedReceiver<MasterReply>,
) -> Result<AppStatus, RoleError> {
    // A new AppMaster resumes the DAG version the masters recorded.
    let base = app;
    let app = &match master.ask(MasterRequest::DagChanges { app_id }, Duration::from_secs(30)).await? {
        MasterReply::DagChanges(changes) => base.with_changes(&changes).map_err(other)?,
        other => return Err(unexpected(other)),
    };
    if app.version() > 0 {
        tracing::info!(%app_id, version = app.version(), "Resuming the changed DAG.");
    }
    let allocation = request_slots(master, pushes, app_id, app.dag().task_count()).await?;
    let wanted = process_env()?.executors;
    let allocation = crate::scheduler::split_into_executors(&allocation, wanted);
    let listener = TcpListener::bind((hostname, 0)).await?;
    let control = listener.local_addr()?;
    let RoleConfig { settings: s, secret, limits, .. } = role_config()?;
    let limits = *limits;
    // Executors of every incarnation connect back here and register under their ids.
    let (link_tx, link_events) = mpsc::unbounded_channel::<(i32, LinkEvent)>();
    tokio::spawn(gearpump_protocol::serve_port(listener, limits, "appmaster", move |stream, peer| {
        let (link_tx, secret) = (link_tx.clone(), secret.clone());
        async move { serve_executor(stream, peer, limits.hello_timeout, &secret, link_tx).await }
    }));
    // A new AppMaster of a running application (the master relaunched it after its
    // predecessor died) resumes from the start clock that one reported.
    let attempt = appmaster_attempt();
    let start = process_env()?.start_clock;
    let checkpoint_dir = gearpump_streaming::checkpoint_dir(app_id, app).map_err(other)?;
    let checkpoints = match &checkpoint_dir {
        Some(dir) => {
            let store = gearpump_streaming::open_checkpoints(dir).map_err(other)?;
            // A new application: checkpoints left under its id by an earlier run are not its own.
            if attempt == 0 {
                store.clear().map_err(|e| RoleError::Other(format!("clearing old checkpoints: {e}")))?;
            }
            Some(store)
        }
        None => None,
    };
    if attempt > 0 {
        tracing::warn!(%app_id, attempt, %start, "A new AppMaster: restarting every task from the start clock.");
    }
    let mut executors = Processes {
        app: app.clone(),
        app_id,
        hostname,
        master,
        pushes,
        link_events,
        // Executor ids are new for every AppMaster too (logs and reports never mix).
        launcher: Launcher {
            base,
            app: app.clone(),
            app_id,
            settings,
            control,
            allocation,
            checkpoint_dir,
            next_executor: attempt as i32 * 1000,
        },
        first: 0,
        links: Vec::new(),
        counters: HashMap::new(),
        earlier: 0,
        active_since: std::time::Instant::now(),
        reconnecting: None,
        pending_start: None,
        start_recorded: std::time::Instant::now(),
        checkpoints,
        stop_timeout: s.stop_timeout,
    };
    let how = gearpump_streaming::Supervision {
        start,
        total_retries: s.total_retries,
        stop_timeout: s.stop_timeout,
        tick: Duration::from_millis(100),
        metrics: settings.metrics.enabled,
    };
    match gearpump_streaming::supervise(&mut executors, app, app_id, how).await? {
        Ending::Failed(e) => Err(RoleError::Other(e)),
        other => Ok(other.status()),
    }
}

/// A reconnection to the leading master under way.
type Reconnecting = tokio::task::JoinHandle<Result<(DuplexClient, mpsc::UnboundedReceiver<MasterReply>), RoleError>>;

/// The executors of a distributed application: processes on the workers (or, with
/// `-sameprocess`, tasks of this process) that connect back over TCP, and the leading master,
/// found again after a failover. What the one AppMaster loop ([`gearpump_streaming::supervise`])
/// drives on a real cluster.
struct Processes<'a> {
    /// The application as it runs now (its DAG version).
    app: StreamApplication,
    app_id: AppId,
    hostname: &'a str,
    master: &'a mut DuplexClient,
    pushes: &'a mut mpsc::UnboundedReceiver<MasterReply>,
    link_events: mpsc::UnboundedReceiver<(i32, LinkEvent)>,
    launcher: Launcher<'a>,
    /// The id of the first executor of the current incarnation, and the links to them all.
    first: i32,
    links: Vec<ExecutorLink>,
    counters: HashMap<TaskId, TaskCounters>,
    /// Messages the sinks received in incarnations before a restart (the new tasks count from 0).
    earlier: u64,
    active_since: std::time::Instant,
    /// The master was lost: looking for the one that leads now. The application keeps
    /// running meanwhile, for `gearpump.cluster.master-timeout` (see [`register_again`]).
    reconnecting: Option<Reconnecting>,
    /// The newest start clock not yet recorded with the master, and when one last was.
    pending_start: Option<Timestamp>,
    start_recorded: std::time::Instant,
    checkpoints: Option<gearpump_storage::CheckpointStore>,
    stop_timeout: Duration,
}

impl Processes<'_> {
    /// What an executor's connection says, as the supervisor needs to hear it.
    fn on_link(&mut self, id: i32, event: LinkEvent) -> Option<Event> {
        // Reports of an earlier incarnation's executors (exiting) are stale.
        let Some(i) = usize::try_from(id - self.first).ok().filter(|i| *i < self.links.len()) else {
            exit_if_stale(event);
            return None;
        };
        match event {
            LinkEvent::Report(report) => match TaskEvent::from_report(report) {
                Ok(event) => Some(Event::Task(event)),
                Err(ExecutorReport::Counters(cs, gauges)) => {
                    self.links[i].gauges = gauges;
                    self.counters.extend(cs.into_iter().map(|c| (c.task, c)));
                    None
                }
                Err(_) => None,
            },
            LinkEvent::Down if self.links[i].alive => {
                self.links[i].alive = false;
                tracing::warn!(app_id = %self.app_id, executor = id, "Lost an executor.");
                // Its tasks will not report stopping.
                Some(Event::Lost { tasks: self.links[i].tasks.clone(), why: format!("executor {id} was lost") })
            }
            LinkEvent::Up(_) | LinkEvent::Down => None,
        }
    }

    /// Records the pending start clock with the master when due. The master records it first
    /// (a Raft write on every master): a new AppMaster must find the checkpoints at whatever
    /// start clock the master holds, so older ones go only after. Without state, at most every
    /// [`START_CLOCK_EVERY`].
    async fn record_start_clock(&mut self) {
        let Some(clock) = self.pending_start else { return };
        if self.reconnecting.is_some()
            || (self.checkpoints.is_none() && self.start_recorded.elapsed() < START_CLOCK_EVERY)
        {
            return;
        }
        self.pending_start = None;
        self.start_recorded = std::time::Instant::now();
        let req = MasterRequest::StartClock { app_id: self.app_id, clock };
        let recorded = matches!(self.master.ask(req, Duration::from_secs(10)).await, Ok(MasterReply::Ok));
        if let Some(store) = self.checkpoints.as_ref().filter(|_| recorded) {
            gearpump_streaming::state::prune_checkpoints(store, self.app.dag(), clock);
        }
    }
}

impl gearpump_streaming::Executors for Processes<'_> {
    type Error = RoleError;

    async fn launch(&mut self, incarnation: u32, start: Timestamp, app: &StreamApplication) -> Result<(), RoleError> {
        if incarnation > 0 {
            stop_all(&self.links, true);
            self.earlier += sink_counters(&self.app, &self.counters).iter().map(|c| c.received).sum::<u64>();
            self.counters.clear();
        }
        self.app = app.clone();
        self.launcher.app = app.clone();
        (self.first, self.links) =
            self.launcher.launch(incarnation, start, self.master, self.pushes, &mut self.link_events).await?;
        Ok(())
    }

    async fn make_room(&mut self, next: &StreamApplication) -> Result<(), String> {
        let held: u32 = self.launcher.allocation.iter().map(|(_, n)| n).sum();
        let wanted = next.dag().task_count().saturating_sub(held);
        if wanted == 0 {
            return Ok(());
        }
        let req = MasterRequest::MoreResources { app_id: self.app_id, slots: wanted };
        match self.master.ask(req, Duration::from_secs(30)).await {
            Ok(MasterReply::Resources(more)) => {
                // On a worker the application has an executor on, that executor runs more
                // tasks; elsewhere a new executor runs them.
                for (worker, n) in more {
                    match self.launcher.allocation.iter_mut().find(|(w, _)| *w == worker) {
                        Some((_, slots)) => *slots += n,
                        None => self.launcher.allocation.push((worker, n)),
                    }
                }
                Ok(())
            }
            Ok(other) => Err(format!("the new DAG needs {wanted} more slots: {}", unexpected(other))),
            Err(e) => Err(format!("asking the master for {wanted} more slots: {e}")),
        }
    }

    async fn answer_change(&mut self, version: u32, outcome: Result<gearpump_core::AppliedChange, String>) -> bool {
        let req = MasterRequest::DagChanged { app_id: self.app_id, version, outcome };
        matches!(self.master.ask(req, Duration::from_secs(30)).await, Ok(MasterReply::Ok))
    }

    async fn active(&mut self) -> Result<(), RoleError> {
        // Asked, not told: every request on this connection gets its answer in order.
        let req = MasterRequest::AppStatus { app_id: self.app_id, status: AppStatus::Active, error: None };
        match self.master.ask(req, Duration::from_secs(30)).await? {
            MasterReply::Ok => {
                self.active_since = std::time::Instant::now();
                Ok(())
            }
            other => Err(unexpected(other)),
        }
    }

    async fn next(&mut self) -> Result<Option<Event>, RoleError> {
        let app_id = self.app_id;
        loop {
            let reconnecting = &mut self.reconnecting;
            tokio::select! {
                event = self.link_events.recv() => match event {
                    None => return Ok(None),
                    Some((id, event)) => {
                        if let Some(event) = self.on_link(id, event) {
                            return Ok(Some(event));
                        }
                    }
                },
                push = self.pushes.recv(), if reconnecting.is_none() => match push {
                    Some(MasterReply::KillRequested) => {
                        tracing::info!(%app_id, "Kill requested.");
                        return Ok(Some(Event::Kill));
                    }
                    Some(MasterReply::ReplayRequested) => return Ok(Some(Event::Replay)),
                    Some(MasterReply::ChangeDag { version, change }) => return Ok(Some(Event::ChangeDag { version, change })),
                    Some(_) => {}
                    None => {
                        tracing::warn!(%app_id, "Lost the master; the application keeps running while looking for the leader.");
                        self.reconnecting = Some(tokio::spawn(register_again(app_id)));
                    }
                },
                joined = async { reconnecting.as_mut().expect("guarded").await }, if reconnecting.is_some() => {
                    self.reconnecting = None;
                    match joined.map_err(other).and_then(|r| r) {
                        Ok((client, pushes)) => (*self.master, *self.pushes) = (client, pushes),
                        // A newer AppMaster runs the application: this one must stop.
                        Err(RoleError::Refused(e)) => {
                            tracing::error!(%app_id, error = %e, "The master refused this AppMaster.");
                            return Err(RoleError::Refused(e));
                        }
                        Err(e) => return Ok(Some(Event::GiveUp(e.to_string()))),
                    }
                }
            }
        }
    }

    fn upstream_clock(&mut self, task: TaskId, clock: Timestamp) {
        if let Some(l) = self.links.iter().find(|l| l.tasks.contains(&task)) {
            let _ = l.commands.send(ExecutorCommand::UpstreamClock { task, clock });
        }
    }

    fn stop_all(&mut self) {
        stop_all(&self.links, false);
    }

    fn checkpoint_complete(&mut self, time: Timestamp) {
        for l in &self.links {
            let _ = l.commands.send(ExecutorCommand::CheckpointComplete { time });
        }
    }

    async fn start_clock(&mut self, clock: Timestamp) {
        self.pending_start = Some(clock);
        self.record_start_clock().await;
    }

    async fn tick(&mut self, _: Timestamp, _: bool) {
        self.record_start_clock().await;
    }

    fn progress(&self) -> Option<Progress> {
        if self.reconnecting.is_some() {
            return None;
        }
        let executors = self
            .links
            .iter()
            .enumerate()
            .map(|(i, l)| gearpump_protocol::ExecutorInfo {
                id: self.first + i as i32,
                worker: l.worker,
                pid: l.pid,
                host: l.data_addr.map_or_else(|| self.hostname.to_string(), |a| a.ip().to_string()),
                tasks: l.tasks.clone(),
                status: if l.alive { ExecutorStatus::Active } else { ExecutorStatus::Lost },
            })
            .collect();
        let processes = self.links.iter().enumerate().map(|(i, l)| (self.first + i as i32, l.gauges)).collect();
        Some(Progress { tasks: self.counters.values().cloned().collect(), processes, executors })
    }

    fn send_report(
        &mut self,
        time: i64,
        runtime: Box<gearpump_protocol::AppRuntime>,
        metrics: Vec<gearpump_metrics::Metric>,
    ) {
        let _ = self.master.tell(MasterRequest::AppReport { app_id: self.app_id, time, runtime, metrics });
    }

    async fn finish(&mut self, ending: &Ending, _: Timestamp) {
        // Every task has stopped (`on_stop` ran, sinks closed): the executors exit by
        // themselves, and the end is reported once they have, so that nothing of theirs is killed.
        stop_all(&self.links, true);
        let exited = wait_for_exits(&self.links, self.first, &mut self.link_events, self.stop_timeout).await;
        if exited < self.links.iter().filter(|l| l.alive).count() {
            tracing::warn!(app_id = %self.app_id, timeout = ?self.stop_timeout,
                "Some executors did not exit in time; their workers will kill them.");
        }
        let status = ending.status().as_str();
        let elapsed = self.active_since.elapsed();
        tracing::info!("{}", summary(&self.app, self.app_id, status, elapsed, self.earlier, &self.counters));
    }
}

/// Starts one incarnation of an application's executors: each time the tasks restart, they
/// run on new executor processes (new ids) on the slots the application holds.
struct Launcher<'a> {
    /// The application as the binary builds it: what executors in this process start from.
    base: &'a StreamApplication,
    /// The application as it runs now.
    app: StreamApplication,
    app_id: AppId,
    settings: &'a DataPlaneSettings,
    /// Where executors connect back to.
    control: SocketAddr,
    /// The application's slots, one entry per executor.
    allocation: Vec<(WorkerId, u32)>,
    checkpoint_dir: Option<String>,
    /// The id the next executor gets.
    next_executor: i32,
}

impl Launcher<'_> {
    /// Replaces the slots on workers that died with new ones from the master.
    async fn replace_lost_slots(
        &mut self,
        master: &mut DuplexClient,
        pushes: &mut mpsc::UnboundedReceiver<MasterReply>,
    ) -> Result<(), RoleError> {
        let workers = match master.ask(MasterRequest::ListWorkers, Duration::from_secs(30)).await? {
            MasterReply::Workers(w) => w,
            other => return Err(unexpected(other)),
        };
        let alive = |id: WorkerId| workers.iter().any(|w| w.id == id && w.alive);
        let lost: u32 = self.allocation.iter().filter(|(w, _)| !alive(*w)).map(|(_, n)| n).sum();
        if lost == 0 {
            return Ok(());
        }
        let app_id = self.app_id;
        let more = match request_slots(master, pushes, app_id, lost).await {
            Err(RoleError::Refused(e)) => {
                return Err(RoleError::Other(format!("replacing {lost} slots of dead workers: {e}")));
            }
            other => other?,
        };
        tracing::warn!(%app_id, lost, replacement = ?more, "Slots on dead workers replaced.");
        self.allocation.retain(|(w, _)| alive(*w));
        self.allocation.extend(more);
        Ok(())
    }

    /// Launches the executors of `incarnation` (on live workers), waits until they registered
    /// and created their tasks, and starts the tasks from `start`. Returns the id of the
    /// first executor and their links.
    async fn launch(
        &mut self,
        incarnation: u32,
        start: Timestamp,
        master: &mut DuplexClient,
        pushes: &mut mpsc::UnboundedReceiver<MasterReply>,
        events: &mut mpsc::UnboundedReceiver<(i32, LinkEvent)>,
    ) -> Result<(i32, Vec<ExecutorLink>), RoleError> {
        let (base, app, app_id, settings) = (self.base, self.app.clone(), self.app_id, self.settings);
        // With GEARPUMP_SAME_PROCESS (gear local -sameprocess) the executors run here, on one
        // shared task pool, instead of as processes on the workers; they still hold their slots.
        let same_process = process_env()?.same_process;
        let shared = same_process.then(|| Runtime::new(TaskPool::with_available_cores()));
        // A worker may die under us (the master learns it a moment after an executor there
        // went away): then get slots elsewhere and launch the whole set again, with new ids.
        let mut tries = 0;
        let first = loop {
            tries += 1;
            if incarnation > 0 || tries > 1 {
                self.replace_lost_slots(master, pushes).await?;
            }
            let first = self.next_executor;
            self.next_executor += self.allocation.len() as i32;
            let mut refused = None;
            for (i, &(worker, _)) in self.allocation.iter().enumerate() {
                let id = first + i as i32;
                if let Some(rt) = &shared {
                    let (base, settings, rt) = (base.clone(), settings.clone(), rt.clone());
                    let target =
                        ExecutorTarget { me: id, appmaster: self.control, app_id, host: process_env()?.host() };
                    tokio::spawn(async move {
                        if let Err(e) = executor_main(&base, target, &settings, Some(rt), &mut None).await {
                            tracing::error!(executor = id, error = %e, "An in-process executor failed.");
                        }
                    });
                    continue;
                }
                let env = ProcessEnv { appmaster: Some(self.control), ..ProcessEnv::default() }.vars();
                let req = MasterRequest::LaunchExecutor { app_id, executor: id, worker, env };
                match master.ask(req, Duration::from_secs(30)).await? {
                    MasterReply::Ok => {}
                    MasterReply::Error(e) => {
                        refused = Some(e);
                        break;
                    }
                    MasterReply::Refused(e) => {
                        refused = Some(e.to_string());
                        break;
                    }
                    other => return Err(unexpected(other)),
                }
            }
            match refused {
                None => break first,
                // Those launched already register under ids now stale, and are told to exit.
                Some(e) if tries < 10 => {
                    tracing::warn!(%app_id, error = %e, "Launching executors failed; again.");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Some(e) => return Err(RoleError::Other(format!("launching executors: {e}"))),
            }
        };
        let executors: Vec<Executor> = place(&app, &self.allocation);
        let n = executors.len();
        let mut links: Vec<ExecutorLink> = executors
            .iter()
            .map(|e| ExecutorLink {
                commands: mpsc::unbounded_channel().0,
                data_addr: None,
                pid: 0,
                worker: e.worker,
                gauges: Default::default(),
                tasks: e.tasks.clone(),
                alive: true,
            })
            .collect();
        // Waits for one report from each executor of this incarnation; older ones are stale.
        let mut wait_all = async |what: &str,
                                  links: &mut Vec<ExecutorLink>,
                                  mut take: Box<
            dyn FnMut(usize, &mut ExecutorLink, ExecutorReport) -> Result<bool, RoleError> + Send,
        >|
               -> Result<(), RoleError> {
            let mut waiting = n;
            let all = async {
                while waiting > 0 {
                    let Some((id, event)) = events.recv().await else {
                        return Err(RoleError::Other("lost the executors' connections".into()));
                    };
                    let Some(i) = usize::try_from(id - first).ok().filter(|i| *i < n) else {
                        exit_if_stale(event);
                        continue;
                    };
                    match event {
                        LinkEvent::Up(commands) => links[i].commands = commands,
                        LinkEvent::Report(r) => {
                            if take(i, &mut links[i], r)? {
                                waiting -= 1;
                            }
                        }
                        LinkEvent::Down => {
                            stop_all(links, true);
                            return Err(RoleError::Other(format!("executor {id} went away before it was {what}")));
                        }
                    }
                }
                Ok(())
            };
            tokio::time::timeout(Duration::from_secs(120), all)
                .await
                .map_err(|_| RoleError::Other(format!("executors were not {what} within 120 s")))?
        };
        wait_all(
            "registered",
            &mut links,
            Box::new(|i, link, r| match r {
                ExecutorReport::Register { data_addr, pid, .. } => {
                    tracing::info!(executor = i, %data_addr, pid, "Executor registered.");
                    link.data_addr = Some(data_addr);
                    link.pid = pid;
                    Ok(true)
                }
                other => {
                    tracing::warn!(executor = i, ?other, "Unexpected report before registration.");
                    Ok(false)
                }
            }),
        )
        .await?;
        let data_addrs: Vec<SocketAddr> = links.iter().map(|l| l.data_addr.expect("registered")).collect();
        let placement: Vec<Vec<TaskId>> = executors.iter().map(|e| e.tasks.clone()).collect();
        // Each incarnation of the tasks (of any AppMaster) has its own session, so nothing of an
        // earlier one is taken for theirs.
        let session = app_id.0.wrapping_mul(2_654_435_761) ^ ((first as u32).wrapping_mul(0x9e37_79b9) | 1);
        for l in &links {
            let _ = l.commands.send(ExecutorCommand::Assign {
                placement: placement.clone(),
                data_addrs: data_addrs.clone(),
                session,
                ack_once_every: settings.flow.ack_once_every,
                max_pending: settings.flow.max_pending,
                first_executor: first,
                checkpoints: self.checkpoint_dir.clone(),
                changes: app.changes().to_vec(),
            });
        }
        wait_all(
            "ready",
            &mut links,
            Box::new(move |i, _, r| match r {
                ExecutorReport::Ready => Ok(true),
                ExecutorReport::LaunchFailed(e) => {
                    Err(RoleError::Other(format!("executor {} could not create its tasks: {e}", first + i as i32)))
                }
                _ => Ok(false),
            }),
        )
        .await
        .inspect_err(|_| stop_all(&links, true))?;
        for l in &links {
            let _ = l.commands.send(ExecutorCommand::Start { clock: start });
        }
        Ok((first, links))
    }
}

/// Waits until the executors in `links` (ids from `first`) that were alive have closed their
/// connections, for at most `timeout`; returns how many did.
async fn wait_for_exits(
    links: &[ExecutorLink],
    first: i32,
    events: &mut mpsc::UnboundedReceiver<(i32, LinkEvent)>,
    timeout: Duration,
) -> usize {
    let mut alive: Vec<bool> = links.iter().map(|l| l.alive).collect();
    let mut exited = 0;
    let deadline = tokio::time::Instant::now() + timeout;
    while alive.iter().any(|a| *a) {
        let Ok(Some((id, event))) = tokio::time::timeout_at(deadline, events.recv()).await else { break };
        match (usize::try_from(id - first).ok().filter(|i| *i < links.len()), event) {
            (Some(i), LinkEvent::Down) if alive[i] => {
                alive[i] = false;
                exited += 1;
            }
            (None, event) => exit_if_stale(event),
            _ => {}
        }
    }
    exited
}

/// An executor of an earlier incarnation (or of a launch given up) that connects now is told
/// to exit: nothing of it is wanted.
fn exit_if_stale(event: LinkEvent) {
    if let LinkEvent::Up(commands) = event {
        let _ = commands.send(ExecutorCommand::Exit);
    }
}

fn stop_all(links: &[ExecutorLink], exit: bool) {
    for l in links {
        let _ = l.commands.send(if exit { ExecutorCommand::Exit } else { ExecutorCommand::Stop });
    }
}

/// One executor's control connection, on the AppMaster's side: its events, under its id.
async fn serve_executor(
    stream: TcpStream,
    peer: SocketAddr,
    hello_timeout: Duration,
    secret: &ClusterSecret,
    events: mpsc::UnboundedSender<(i32, LinkEvent)>,
) {
    let (mut rd, wr) = match gearpump_protocol::accept_control(stream, secret, hello_timeout).await {
        Ok(halves) => halves,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "Refused a connection to the AppMaster.");
            return;
        }
    };
    let first: ExecutorReport = match read_msg(&mut rd).await {
        Ok(r) => r,
        Err(_) => return,
    };
    let ExecutorReport::Register { executor: id, .. } = first else {
        tracing::warn!(?first, "A connection to the AppMaster did not register as an executor.");
        return;
    };
    let (tx, _) = gearpump_protocol::spawn_writer::<ExecutorCommand, _>(wr);
    let _ = events.send((id, LinkEvent::Up(tx)));
    let _ = events.send((id, LinkEvent::Report(first)));
    while let Ok(r) = read_msg::<_, ExecutorReport>(&mut rd).await {
        if events.send((id, LinkEvent::Report(r))).is_err() {
            return;
        }
    }
    let _ = events.send((id, LinkEvent::Down));
}

/// The executor role: runs the tasks the AppMaster assigns until told to exit.
pub fn run_executor(app: &StreamApplication) -> Result<(), RoleError> {
    let env = process_env()?;
    let (me, appmaster, app_id, host) = (env.need_executor()?, env.need_appmaster()?, env.need_app_id()?, env.host());
    let settings = data_plane_settings(app)?;
    // The task pool is sized when the executor learns how many tasks it runs.
    let mut created: Option<Runtime> = None;
    let target = ExecutorTarget { me, appmaster, app_id, host };
    let result = role_runtime()?.block_on(executor_main(app, target, &settings, None, &mut created));
    if let Some(rt) = created {
        // The pool's threads are joined, unless a task is stuck (past the stop timeout): then
        // the process exits without it.
        let (done, joined) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            rt.shutdown();
            let _ = done.send(());
        });
        if joined.recv_timeout(Duration::from_secs(2)).is_err() {
            tracing::warn!("A task is still running; exiting without it.");
        }
    }
    result
}

/// Which executor to be, and where its AppMaster listens.
#[derive(Clone, Copy)]
struct ExecutorTarget {
    me: i32,
    appmaster: SocketAddr,
    app_id: AppId,
    host: std::net::IpAddr,
}

/// An executor: binds its data port, reports to the AppMaster, runs what it is assigned.
/// Runs its tasks on `shared` if given, else on a pool it creates (handed back in `created`).
async fn executor_main(
    app: &StreamApplication,
    target: ExecutorTarget,
    settings: &DataPlaneSettings,
    shared: Option<Runtime>,
    created: &mut Option<Runtime>,
) -> Result<(), RoleError> {
    let ExecutorTarget { me, appmaster, app_id, host } = target;
    {
        let sink = ExecutorSink::default();
        let RoleConfig { secret, limits, .. } = role_config()?;
        let server = DataServer::bind_with(
            SocketAddr::new(host, 0),
            Arc::new(sink.clone()),
            settings.codecs.clone(),
            *limits,
            secret.clone(),
        )?;
        let data_addr = server.local_addr();
        let tcp = TcpStream::connect(appmaster).await?;
        let (mut rd, mut wr) = gearpump_protocol::open_control(tcp, &appmaster.ip().to_string(), secret).await?;
        write_msg(&mut wr, &ExecutorReport::Register { executor: me, data_addr, pid: std::process::id() }).await?;
        let (out_tx, writer) = gearpump_protocol::spawn_writer::<ExecutorReport, _>(wr);
        let (events_tx, mut events) = mpsc::unbounded_channel::<TaskEvent>();
        let forward = out_tx.clone();
        let forwarder = tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if forward.send(e.into()).is_err() {
                    break;
                }
            }
        });
        let mut server = Some((server, sink));
        let mut deployment: Option<Arc<Deployment>> = None;
        let mut ticker: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            let cmd: ExecutorCommand = match read_msg(&mut rd).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "Lost the AppMaster; exiting.");
                    break;
                }
            };
            match cmd {
                ExecutorCommand::Assign {
                    placement,
                    data_addrs,
                    session,
                    ack_once_every,
                    max_pending,
                    first_executor,
                    checkpoints,
                    changes,
                } => {
                    // The tasks of the DAG version the AppMaster runs.
                    let changed;
                    let app = if changes.is_empty() {
                        app
                    } else {
                        match app.with_changes(&changes) {
                            Ok(a) => {
                                changed = a;
                                &changed
                            }
                            Err(e) => {
                                let why = format!("applying the DAG changes: {e}");
                                let _ = out_tx.send(ExecutorReport::LaunchFailed(why));
                                continue;
                            }
                        }
                    };
                    let Some(index) = usize::try_from(me - first_executor).ok().filter(|i| *i < placement.len()) else {
                        let why = format!("executor {me} is not in a placement starting at {first_executor}");
                        let _ = out_tx.send(ExecutorReport::LaunchFailed(why));
                        continue;
                    };
                    let executors: Vec<Executor> = placement
                        .iter()
                        .enumerate()
                        .map(|(i, tasks)| Executor {
                            id: gearpump_core::ExecutorId(i as i32),
                            worker: WorkerId(0),
                            tasks: tasks.clone(),
                        })
                        .collect();
                    // No more threads than tasks: an idle pool thread only competes for a core.
                    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
                    let mine = executors.get(index).map_or(1, |e| e.tasks.len()).max(1);
                    let rt = match &shared {
                        Some(rt) => rt,
                        None => created.insert(Runtime::new(TaskPool::new(cores.min(mine)))),
                    };
                    let state = match checkpoints.as_deref().map(gearpump_streaming::open_checkpoints).transpose() {
                        Ok(store) => store.map(|store| {
                            Arc::new(gearpump_streaming::TaskStates::new(store, events_tx.clone(), Timestamp(0)))
                                as Arc<dyn gearpump_api::StateStore>
                        }),
                        Err(e) => {
                            let _ = out_tx.send(ExecutorReport::LaunchFailed(e.to_string()));
                            continue;
                        }
                    };
                    let spec = LaunchSpec {
                        state,
                        runtime: rt,
                        app_id,
                        flow: FlowConfig { ack_once_every, max_pending },
                        session,
                        events: &events_tx,
                        data_plane: DataPlane::Tcp { host, retry: settings.retry, secret: secret.clone() },
                        codecs: settings.codecs.clone(),
                        sample_rate: settings.metrics.task_sample_rate(),
                    };
                    let Some((server, sink)) = server.take() else { continue };
                    match Deployment::launch_executor(&spec, app, executors, index, server, sink, data_addrs) {
                        Ok(d) => {
                            deployment = Some(Arc::new(d));
                            let _ = out_tx.send(ExecutorReport::Ready);
                        }
                        Err(e) => {
                            let _ = out_tx.send(ExecutorReport::LaunchFailed(e.to_string()));
                        }
                    }
                }
                ExecutorCommand::Start { clock } => {
                    if let Some(d) = &deployment {
                        d.start(StartTime(clock));
                        let (d, out) = (d.clone(), out_tx.clone());
                        ticker = Some(tokio::spawn(async move {
                            let mut interval = tokio::time::interval(Duration::from_millis(100));
                            loop {
                                interval.tick().await;
                                d.tick();
                                let gauges = gearpump_protocol::ProcessGauges::of_this_process();
                                let _ = out.send(ExecutorReport::Counters(d.counters(), gauges));
                            }
                        }));
                    }
                }
                ExecutorCommand::UpstreamClock { task, clock } => {
                    if let Some(d) = &deployment {
                        d.upstream_clock(task, clock);
                    }
                }
                ExecutorCommand::CheckpointComplete { time } => {
                    if let Some(d) = &deployment {
                        d.checkpoint_complete(time);
                    }
                }
                ExecutorCommand::Stop => {
                    if let Some(t) = ticker.take() {
                        t.abort();
                    }
                    if let Some(d) = &deployment {
                        d.stop();
                    }
                }
                ExecutorCommand::Exit => break,
            }
        }
        if let Some(t) = ticker.take() {
            t.abort();
        }
        // Let the last reports go out: the AppMaster has every task's `Stopped` already (it
        // tells executors to exit only then), so forwarding stops, and the writer ends once
        // it has written what is queued.
        forwarder.abort();
        let _ = forwarder.await;
        drop(out_tx);
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
        if let Some(d) = deployment {
            // A task still busy (its `on_stop` past the stop timeout) is left behind.
            let _ = tokio::time::timeout(Duration::from_secs(2), tokio::task::spawn_blocking(move || d.clear())).await;
        }
        Ok::<(), RoleError>(())
    }
}

/// The counters of the sink processors' tasks (those without outgoing edges).
fn sink_counters<'a>(app: &StreamApplication, counters: &'a HashMap<TaskId, TaskCounters>) -> Vec<&'a TaskCounters> {
    let dag = app.dag();
    let sinks: Vec<ProcessorId> =
        dag.processors().iter().filter(|p| dag.outgoing(p.id).next().is_none()).map(|p| p.id).collect();
    counters.values().filter(|c| sinks.contains(&c.task.processor)).collect()
}

/// The summary line of a distributed run: messages received by the sink processors per second
/// of activity (`earlier`: received before the last restart, then the current tasks'), and
/// their worst receive latency.
fn summary(
    app: &StreamApplication,
    app_id: AppId,
    status: &str,
    elapsed: Duration,
    earlier: u64,
    counters: &HashMap<TaskId, TaskCounters>,
) -> String {
    let at_sinks = sink_counters(app, counters);
    let processed: u64 = earlier + at_sinks.iter().map(|c| c.received).sum::<u64>();
    let secs = elapsed.as_secs_f64().max(1e-9);
    let mut line = format!(
        "Summary: application {} (app {app_id}) {status} after {:.1} s: {processed} messages processed, {:.0} messages/s",
        app.name(),
        elapsed.as_secs_f64(),
        processed as f64 / secs
    );
    let sampled = at_sinks.iter().filter(|c| c.latency_samples > 0);
    let p50 = sampled.clone().map(|c| c.latency_p50_us).max();
    let p99 = sampled.map(|c| c.latency_p99_us).max();
    if let (Some(p50), Some(p99)) = (p50, p99) {
        line.push_str(&format!(", receive latency p50 {:.3} ms, p99 {:.3} ms", p50 as f64 / 1e3, p99 as f64 / 1e3));
    }
    line
}
