//! Applications that are not streams: the guide's non-streaming applications
//! (DistributedShell, DistributeService).
//!
//! Such an application brings its own AppMaster ([`AppMaster`]) and executors ([`Executor`]),
//! both plain Rust types in the application binary. On a cluster the binary plays every role,
//! as a streaming one does: `gear app` runs it as the client that submits it, a worker starts
//! it as the AppMaster, and the AppMaster has workers start it as each executor. The runtime
//! here does the rest:
//!
//! - the AppMaster asks the master for slots where its [`Placement`]s say (any worker, one on
//!   every worker, a given worker), has the workers start executors there, and keeps them:
//!   a lost executor is replaced, and [`Placement::EachWorker`] follows workers that join;
//! - it serves clients: [`AppClient`] resolves an application id to its AppMaster through the
//!   master and sends it typed requests ([`AppMaster::Request`]); the AppMaster's
//!   [`AppMaster::on_request`] answers, asking its executors ([`AppMasterContext::ask_all`]);
//! - when the application is killed, the executors are told to exit and are waited for
//!   before the end is reported.
//!
//! User code runs on threads of its own: an AppMaster handles one client request at a time,
//! an executor one task at a time, and either may block (run a command, copy a file).
//! Every connection (executor, client) proves the cluster secret, as every other does.

use crate::daemon::{DuplexClient, ask_leader};
use crate::remote::{RoleError, other, register_appmaster, unexpected};
use gearpump_config::HostPort;
use gearpump_core::{AppId, AppStatus, UserConfig, WorkerId};
use gearpump_protocol::{
    ClusterSecret, Locality, MasterReply, MasterRequest, ProtocolError, WorkerInfo, read_msg, write_msg,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// A value that crosses processes: serialised with postcard.
pub trait Payload: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> Payload for T {}

/// Where an application wants executors (one slot each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// One executor on every live worker, including workers that join later.
    EachWorker,
    /// This many executors, spread over any workers.
    Anywhere(u32),
    /// One executor on this worker.
    OnWorker(WorkerId),
}

/// An executor as its AppMaster knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorInfo {
    /// Its id within the application.
    pub id: i32,
    /// The worker it runs on.
    pub worker: WorkerId,
    /// The address it connected from.
    pub host: String,
}

/// What an executor is told about itself.
#[derive(Debug, Clone)]
pub struct ExecutorContext {
    /// Its application.
    pub app_id: AppId,
    /// Its id within the application.
    pub executor_id: i32,
    /// The worker it runs on.
    pub worker: WorkerId,
    /// The application's configuration.
    pub config: UserConfig,
}

/// What an AppMaster is told about its application when it is created.
#[derive(Debug, Clone)]
pub struct AppContext {
    /// The application.
    pub app_id: AppId,
    /// Its name.
    pub name: String,
    /// Its configuration.
    pub config: UserConfig,
}

/// The user's part of an executor: it does the tasks its AppMaster sends, one at a time.
pub trait Executor: Send + 'static {
    /// What it is asked to do.
    type Task: Payload + Clone;
    /// What it answers.
    type Output: Payload;
    /// Does `task`; an `Err` is reported to the AppMaster as this executor's failure.
    fn on_task(&mut self, ctx: &ExecutorContext, task: Self::Task) -> Result<Self::Output, String>;
}

/// The user's part of an AppMaster: where its executors go, and how it answers clients.
pub trait AppMaster: Send + 'static {
    /// The kind of application it runs (`DistributedShell`, say): a client checks it before it
    /// sends anything, so a request never reaches an application of another kind.
    const KIND: &'static str;
    /// Its executors.
    type Executor: Executor;
    /// What clients ask.
    type Request: Payload;
    /// What it answers.
    type Response: Payload;

    /// Where it wants executors. By default one on every worker.
    fn placement(&self) -> Vec<Placement> {
        vec![Placement::EachWorker]
    }

    /// Answers a client's request, asking the executors as needed; an `Err` reaches the
    /// client as the request's error.
    fn on_request(
        &mut self,
        ctx: &mut AppMasterContext<Self::Executor>,
        request: Self::Request,
    ) -> Result<Self::Response, String>;

    /// An executor registered (it is in [`AppMasterContext::executors`] from now on).
    fn on_executor_started(&mut self, _ctx: &mut AppMasterContext<Self::Executor>, _executor: &ExecutorInfo) {}

    /// An executor was lost (its process or its worker died); a replacement is launched if
    /// the placement still wants one.
    fn on_executor_lost(&mut self, _ctx: &mut AppMasterContext<Self::Executor>, _executor: &ExecutorInfo) {}
}

type MakeMaster<M> = Arc<dyn Fn(&AppContext) -> M + Send + Sync>;
type MakeExecutor<M> = Arc<dyn Fn(&ExecutorContext) -> <M as AppMaster>::Executor + Send + Sync>;

/// A non-streaming application: a name, a configuration, and how to make its AppMaster and
/// its executors (called in the process of each).
pub struct Application<M: AppMaster> {
    name: String,
    config: UserConfig,
    master: MakeMaster<M>,
    executor: MakeExecutor<M>,
}

impl<M: AppMaster> Clone for Application<M> {
    fn clone(&self) -> Self {
        Application {
            name: self.name.clone(),
            config: self.config.clone(),
            master: self.master.clone(),
            executor: self.executor.clone(),
        }
    }
}

impl<M: AppMaster> Application<M> {
    /// An application `name` whose AppMaster `master` makes and whose executors `executor`
    /// makes.
    pub fn new(
        name: impl Into<String>,
        master: impl Fn(&AppContext) -> M + Send + Sync + 'static,
        executor: impl Fn(&ExecutorContext) -> M::Executor + Send + Sync + 'static,
    ) -> Self {
        Application {
            name: name.into(),
            config: UserConfig::empty(),
            master: Arc::new(master),
            executor: Arc::new(executor),
        }
    }

    /// With this configuration (handed to the AppMaster and every executor).
    pub fn with_config(mut self, config: UserConfig) -> Self {
        self.config = config;
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its configuration.
    pub fn config(&self) -> &UserConfig {
        &self.config
    }
}

/// What the AppMaster's user code may do: see its executors and ask them.
pub struct AppMasterContext<E: Executor> {
    app_id: AppId,
    executors: Vec<ExecutorInfo>,
    asks: mpsc::UnboundedSender<Ask>,
    _executor: std::marker::PhantomData<fn() -> E>,
}

impl<E: Executor> AppMasterContext<E> {
    /// The application.
    pub fn app_id(&self) -> AppId {
        self.app_id
    }

    /// The executors registered now, by id.
    pub fn executors(&self) -> &[ExecutorInfo] {
        &self.executors
    }

    /// Sends `task` to every executor registered now and waits for all their answers (an
    /// executor lost meanwhile answers with an error saying so). In executor order.
    pub fn ask_all(&mut self, task: &E::Task) -> Vec<(ExecutorInfo, Result<E::Output, String>)> {
        let targets: Vec<i32> = self.executors.iter().map(|e| e.id).collect();
        self.ask_some(&targets, task, None)
    }

    /// [`ask_all`](Self::ask_all), waiting at most `within`: an executor that has not answered
    /// by then answers with an error saying so. It still finishes the task (its answer is
    /// dropped), and the tasks sent to it later wait for that.
    pub fn ask_all_within(
        &mut self,
        task: &E::Task,
        within: Duration,
    ) -> Vec<(ExecutorInfo, Result<E::Output, String>)> {
        let targets: Vec<i32> = self.executors.iter().map(|e| e.id).collect();
        self.ask_some(&targets, task, Some(within))
    }

    /// Sends `task` to executor `id` and waits for its answer.
    pub fn ask(&mut self, id: i32, task: &E::Task) -> Result<E::Output, String> {
        self.ask_within_or_not(id, task, None)
    }

    /// [`ask`](Self::ask), waiting at most `within` (see [`ask_all_within`](Self::ask_all_within)).
    pub fn ask_within(&mut self, id: i32, task: &E::Task, within: Duration) -> Result<E::Output, String> {
        self.ask_within_or_not(id, task, Some(within))
    }

    fn ask_within_or_not(&mut self, id: i32, task: &E::Task, within: Option<Duration>) -> Result<E::Output, String> {
        match self.ask_some(&[id], task, within).pop() {
            Some((_, result)) => result,
            None => Err(format!("no executor {id}")),
        }
    }

    fn ask_some(
        &mut self,
        targets: &[i32],
        task: &E::Task,
        within: Option<Duration>,
    ) -> Vec<(ExecutorInfo, Result<E::Output, String>)> {
        let body = match postcard::to_stdvec(task) {
            Ok(b) => b,
            // Every executor asked gets the same error: the task cannot be sent.
            Err(e) => {
                let why = format!("the task cannot be serialised: {e}");
                let asked = self.executors.iter().filter(|x| targets.contains(&x.id));
                return asked.map(|x| (x.clone(), Err(why.clone()))).collect();
            }
        };
        let (reply, answers) = oneshot::channel();
        if self.asks.send(Ask { targets: targets.to_vec(), body, within, reply }).is_err() {
            return Vec::new();
        }
        let answers = answers.blocking_recv().unwrap_or_default();
        answers
            .into_iter()
            .map(|(info, result)| {
                let result = result.and_then(|b| postcard::from_bytes(&b).map_err(|e| format!("a bad answer: {e}")));
                (info, result)
            })
            .collect()
    }
}

/// The AppMaster's user thread asks executors.
struct Ask {
    targets: Vec<i32>,
    body: Vec<u8>,
    /// How long the answers may take.
    within: Option<Duration>,
    reply: oneshot::Sender<Vec<(ExecutorInfo, Result<Vec<u8>, String>)>>,
}

/// The first message on a connection to a non-streaming AppMaster.
#[derive(Debug, Serialize, Deserialize)]
enum Hello {
    /// An executor of it.
    Executor { id: i32 },
    /// A client of an application of `kind`.
    Client { kind: String },
}

/// From the AppMaster to an executor.
#[derive(Debug, Serialize, Deserialize)]
enum ToExecutor {
    /// Registered: the worker it runs on.
    Welcome { worker: WorkerId },
    /// A task, answered with the same `seq`.
    Task { seq: u64, body: Vec<u8> },
    /// The application ended.
    Exit,
}

/// From an executor: the answer to task `seq`.
#[derive(Debug, Serialize, Deserialize)]
struct Done {
    seq: u64,
    result: Result<Vec<u8>, String>,
}

/// The AppMaster's answer to a client's request (or to its hello: `Ok(empty)`).
type ClientAnswer = Result<Vec<u8>, String>;

/// What the connections deliver to the AppMaster's loop.
enum Event {
    ExecutorUp {
        id: i32,
        host: String,
        commands: mpsc::UnboundedSender<ToExecutor>,
    },
    ExecutorDone {
        id: i32,
        done: Done,
    },
    ExecutorDown {
        id: i32,
    },
    /// The time for the answers to ask `key` is up.
    Expired {
        key: u64,
        within: Duration,
    },
    Client {
        body: Vec<u8>,
        reply: oneshot::Sender<ClientAnswer>,
    },
}

/// What the AppMaster's loop hands its user thread.
enum UserEvent {
    Request { body: Vec<u8>, reply: oneshot::Sender<ClientAnswer> },
    Started(ExecutorInfo),
    Lost(ExecutorInfo),
    Executors(Vec<ExecutorInfo>),
}

/// An executor the AppMaster launched.
struct Launched {
    worker: WorkerId,
    /// Which placement it serves.
    placement: usize,
    /// Once registered: its host and where its commands go.
    link: Option<(String, mpsc::UnboundedSender<ToExecutor>)>,
    /// When it was launched.
    since: tokio::time::Instant,
}

/// How long a launched executor may take to register before it counts as lost (its process
/// did not start, or died before it connected).
const REGISTER_WITHIN: Duration = Duration::from_secs(60);

/// Answers still awaited for one [`Ask`].
struct Gather {
    answers: Vec<(ExecutorInfo, Option<Result<Vec<u8>, String>>)>,
    reply: Option<oneshot::Sender<Vec<(ExecutorInfo, Result<Vec<u8>, String>)>>>,
}

impl Gather {
    /// Executor `id` answered; replies once every executor has. Whether it has.
    fn settle(&mut self, id: i32, result: Result<Vec<u8>, String>) -> bool {
        if let Some(slot) = self.answers.iter_mut().find(|(i, r)| i.id == id && r.is_none()) {
            slot.1 = Some(result);
        }
        self.finish()
    }

    /// Replies if every executor answered; whether the reply is sent.
    fn finish(&mut self) -> bool {
        if self.answers.iter().all(|(_, r)| r.is_some())
            && let Some(reply) = self.reply.take()
        {
            let _ = reply.send(self.answers.drain(..).map(|(i, r)| (i, r.expect("settled"))).collect());
        }
        self.reply.is_none()
    }
}

/// Executor `id`'s answer to ask `key`; the ask is done once every executor answered.
fn settle(gathers: &mut HashMap<u64, Gather>, key: u64, id: i32, result: Result<Vec<u8>, String>) {
    if gathers.get_mut(&key).is_some_and(|g| g.settle(id, result)) {
        gathers.remove(&key);
    }
}

/// Runs user code; a panic becomes an error naming `who` (the request or task fails, the
/// application runs on).
fn guarded<T>(who: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        Err(format!("{who} panicked: {what}"))
    })
}

/// How an AppMaster reaches its master: over the network (a cluster's leading master), or in
/// this process (the embedded cluster's).
pub(crate) trait MasterLink: Send + 'static {
    /// Asks the master.
    fn ask(&mut self, req: MasterRequest) -> impl Future<Output = Result<MasterReply, RoleError>> + Send;
    /// After the pushes ended (the master went away): registers again with whichever master
    /// leads now; the new pushes.
    fn reconnect(&mut self) -> impl Future<Output = Result<mpsc::UnboundedReceiver<MasterReply>, RoleError>> + Send;
}

/// The AppMaster's link to a cluster's leading master.
struct RemoteLink {
    client: DuplexClient,
    app_id: AppId,
    address: SocketAddr,
}

impl MasterLink for RemoteLink {
    async fn ask(&mut self, req: MasterRequest) -> Result<MasterReply, RoleError> {
        Ok(self.client.ask(req, Duration::from_secs(30)).await?)
    }

    async fn reconnect(&mut self) -> Result<mpsc::UnboundedReceiver<MasterReply>, RoleError> {
        let (client, pushes) = register_appmaster(self.app_id, Some(self.address), Duration::from_secs(10)).await?;
        tracing::info!(app_id = %self.app_id, master = %client.master, "Registered with the leading master again.");
        self.client = client;
        Ok(pushes)
    }
}

/// A request of an embedded cluster's AppMaster to its master, with where the answer goes.
pub(crate) type EmbeddedRequest = gearpump_streaming::MasterAsk;

/// The AppMaster's link to the embedded cluster's master, in this process.
struct EmbeddedLink {
    app_id: AppId,
    requests: mpsc::UnboundedSender<EmbeddedRequest>,
}

impl MasterLink for EmbeddedLink {
    async fn ask(&mut self, req: MasterRequest) -> Result<MasterReply, RoleError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || RoleError::Refused(gearpump_protocol::MasterError::ClusterStopped.to_string());
        self.requests.send((self.app_id, req, reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())
    }

    async fn reconnect(&mut self) -> Result<mpsc::UnboundedReceiver<MasterReply>, RoleError> {
        Err(RoleError::Refused(gearpump_protocol::MasterError::ClusterStopped.to_string()))
    }
}

/// What the embedded master hands a launcher of an AppMaster.
pub(crate) struct Launching {
    pub(crate) app_id: AppId,
    pub(crate) attempt: u32,
    /// The embedded cluster's secret (its AppMasters listen on loopback all the same).
    pub(crate) secret: ClusterSecret,
    pub(crate) stop_timeout: Duration,
    /// Where the AppMaster's requests go.
    pub(crate) requests: mpsc::UnboundedSender<EmbeddedRequest>,
    /// What the master pushes to it ([`MasterReply::KillRequested`]).
    pub(crate) pushes: mpsc::UnboundedReceiver<MasterReply>,
    /// Where a streaming AppMaster publishes its live stats.
    pub(crate) stats: Arc<parking_lot::Mutex<gearpump_streaming::AppStats>>,
}

/// Starts an application's AppMaster (and, through it, its executors) as tasks of the
/// embedded cluster, whatever the application's type.
pub(crate) type Launch = Arc<dyn Fn(Launching) + Send + Sync>;

/// How the embedded cluster starts `app`'s AppMaster.
pub(crate) fn embedded_launcher<M: AppMaster>(app: Application<M>) -> Launch {
    Arc::new(move |l: Launching| {
        let app = app.clone();
        tokio::spawn(async move {
            let Launching { app_id, attempt, secret, stop_timeout, requests, pushes, .. } = l;
            let mut link = EmbeddedLink { app_id, requests };
            let started = async {
                let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
                let address = Some(listener.local_addr()?);
                match link.ask(MasterRequest::RegisterAppMaster { app_id, attempt, address }).await? {
                    MasterReply::Ok => Ok(listener),
                    other => Err(unexpected(other)),
                }
            };
            let listener = match started.await {
                Ok(l) => l,
                Err(e) => {
                    let error = Some(format!("starting the AppMaster: {e}"));
                    let _ = link.ask(MasterRequest::AppStatus { app_id, status: AppStatus::Failed, error }).await;
                    return;
                }
            };
            let setup = AppMasterSetup {
                app_id,
                attempt,
                secret,
                limits: gearpump_protocol::PortLimits::default(),
                stop_timeout,
                master_timeout: Duration::ZERO,
                in_process: true,
            };
            if let Err(e) = appmaster_main(app, setup, listener, link, pushes).await {
                tracing::warn!(%app_id, error = %e, "The application failed.");
            }
        });
    })
}

/// What an AppMaster runs with.
pub(crate) struct AppMasterSetup {
    pub(crate) app_id: AppId,
    /// Which AppMaster of the application this is (0: the first).
    pub(crate) attempt: u32,
    pub(crate) secret: ClusterSecret,
    pub(crate) limits: gearpump_protocol::PortLimits,
    /// `gearpump.application.stop-timeout-ms`.
    pub(crate) stop_timeout: Duration,
    /// `gearpump.cluster.master-timeout-ms`.
    pub(crate) master_timeout: Duration,
    /// Run the executors in this process rather than have workers start them.
    pub(crate) in_process: bool,
}

/// The AppMaster role of a non-streaming application: runs until the application is killed
/// (or its master is gone for longer than `gearpump.cluster.master-timeout-ms`).
pub fn run_appmaster<M: AppMaster>(app: &Application<M>) -> Result<(), RoleError> {
    let env = crate::env::ProcessEnv::current()?;
    let app_id = env.need_app_id()?;
    let host = env.host();
    crate::remote::role_runtime()?.block_on(async move {
        let rc = crate::remote::role_config()?;
        let setup = AppMasterSetup {
            app_id,
            attempt: env.attempt,
            secret: rc.secret.clone(),
            limits: rc.limits,
            stop_timeout: rc.settings.stop_timeout,
            master_timeout: rc.settings.master_timeout,
            in_process: env.same_process,
        };
        let listener = TcpListener::bind((host, 0)).await?;
        let address = listener.local_addr()?;
        let (client, pushes) = register_appmaster(app_id, Some(address), Duration::from_secs(30)).await?;
        appmaster_main(app.clone(), setup, listener, RemoteLink { client, app_id, address }, pushes).await
    })
}

/// An AppMaster: serves executors and clients on `listener`, keeps the executors its
/// placements want, answers clients with the user's AppMaster, until the application is killed.
pub(crate) async fn appmaster_main<M: AppMaster, L: MasterLink>(
    app: Application<M>,
    setup: AppMasterSetup,
    listener: TcpListener,
    mut master: L,
    mut pushes: mpsc::UnboundedReceiver<MasterReply>,
) -> Result<(), RoleError> {
    let AppMasterSetup { app_id, attempt, secret, limits, stop_timeout, master_timeout, in_process } = setup;
    let address = listener.local_addr()?;
    {
        let (events_tx, mut events) = mpsc::unbounded_channel::<Event>();
        let expiries = events_tx.clone();
        tokio::spawn(accept(listener, limits, secret.clone(), M::KIND, events_tx));

        // The user's AppMaster, on a thread of its own.
        let (asks_tx, mut asks) = mpsc::unbounded_channel::<Ask>();
        let (user_tx, user_rx) = std::sync::mpsc::channel::<UserEvent>();
        let context = AppContext { app_id, name: app.name.clone(), config: app.config.clone() };
        let mut user = (app.master)(&context);
        let placements = user.placement();
        std::thread::Builder::new().name("gearpump-appmaster".into()).spawn(move || {
            let mut ctx = AppMasterContext::<M::Executor> {
                app_id,
                executors: Vec::new(),
                asks: asks_tx,
                _executor: std::marker::PhantomData,
            };
            while let Ok(event) = user_rx.recv() {
                match event {
                    UserEvent::Executors(now) => ctx.executors = now,
                    UserEvent::Started(info) => user.on_executor_started(&mut ctx, &info),
                    UserEvent::Lost(info) => user.on_executor_lost(&mut ctx, &info),
                    UserEvent::Request { body, reply } => {
                        let answer = match postcard::from_bytes::<M::Request>(&body) {
                            Err(e) => Err(format!("a request this application cannot read: {e}")),
                            Ok(request) => guarded("the AppMaster", || user.on_request(&mut ctx, request))
                                .and_then(|r| postcard::to_stdvec(&r).map_err(|e| e.to_string())),
                        };
                        let _ = reply.send(answer);
                    }
                }
            }
        })?;

        let in_process: Option<InProcess> = in_process.then(|| {
            let app = app.clone();
            let secret = secret.clone();
            Arc::new(move |id| {
                let (app, secret) = (app.clone(), secret.clone());
                tokio::spawn(async move {
                    if let Err(e) = executor_session(app, address, id, app_id, secret).await {
                        tracing::error!(executor = id, error = %e, "An in-process executor failed.");
                    }
                });
            }) as InProcess
        });
        let mut launched: BTreeMap<i32, Launched> = BTreeMap::new();
        let mut next_id = attempt as i32 * 1000;
        // Slots the application holds but no executor uses (of executors that died).
        let mut spare: Vec<WorkerId> = Vec::new();
        // Whether a request for slots waits at the master.
        let mut queued = false;
        let mut seq = 0u64;
        let mut pending: HashMap<u64, (u64, i32)> = HashMap::new();
        let mut gathers: HashMap<u64, Gather> = HashMap::new();
        let mut active = false;
        let mut master_lost: Option<tokio::time::Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let registered = |l: &BTreeMap<i32, Launched>| {
            l.iter().filter(|(_, e)| e.link.is_some()).map(|(id, e)| info(*id, e)).collect()
        };
        let started = tokio::time::Instant::now();
        let outcome: Result<AppStatus, RoleError> = loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Some(since) = master_lost {
                        match tokio::time::timeout(Duration::from_secs(5), master.reconnect()).await {
                            // Requests that waited at the old master are gone with it.
                            Ok(Ok(p)) => (pushes, master_lost, queued) = (p, None, false),
                            Ok(Err(RoleError::Refused(e))) => break Err(RoleError::Refused(e)),
                            _ if since.elapsed() > master_timeout => {
                                break Err(other(format!("no master for {master_timeout:?}")));
                            }
                            _ => {}
                        }
                        continue;
                    }
                    let silent: Vec<i32> = launched
                        .iter()
                        .filter(|(_, e)| e.link.is_none() && e.since.elapsed() > REGISTER_WITHIN)
                        .map(|(id, _)| *id)
                        .collect();
                    for id in silent {
                        let e = launched.remove(&id).expect("listed");
                        tracing::warn!(%app_id, executor = id, worker = %e.worker, "An executor never registered; launching another.");
                        spare.push(e.worker);
                    }
                    let ctx = Reconcile { app_id, placements: &placements, in_process: in_process.clone(), control: address };
                    if let Err(e) = ctx.run(&mut master, &mut launched, &mut spare, &mut next_id, &mut queued).await {
                        tracing::warn!(%app_id, error = %e, "Launching executors failed; trying again.");
                    }
                    let up = launched.values().filter(|e| e.link.is_some()).count();
                    // Active once every executor launched has registered (or, with some
                    // up, after 30 s); failed if none could be started in 60 s.
                    let waited = started.elapsed();
                    if !active && up > 0 && (up == launched.len() || waited > Duration::from_secs(30)) {
                        let status = MasterRequest::AppStatus { app_id, status: AppStatus::Active, error: None };
                        master.ask(status).await?;
                        active = true;
                        tracing::info!(%app_id, executors = up, "Application active.");
                    } else if !active && waited > Duration::from_secs(60) {
                        break Err(other("no executor could be started within 60 s"));
                    }
                }
                push = pushes.recv(), if master_lost.is_none() => match push {
                    Some(MasterReply::KillRequested) => {
                        tracing::info!(%app_id, "Kill requested.");
                        break Ok(AppStatus::Terminated);
                    }
                    // Slots of a request that waited: the next round launches on them.
                    Some(MasterReply::Granted(granted)) => {
                        spare.extend(granted.into_iter().flat_map(|(w, n)| std::iter::repeat_n(w, n as usize)));
                        queued = false;
                    }
                    Some(_) => {}
                    None => {
                        tracing::warn!(%app_id, "Lost the master; looking for the leader.");
                        master_lost = Some(tokio::time::Instant::now());
                    }
                },
                Some(ask) = asks.recv() => {
                    let key = seq;
                    seq += 1;
                    let mut gather = Gather { answers: Vec::new(), reply: Some(ask.reply) };
                    for id in ask.targets {
                        let Some(e) = launched.get(&id) else { continue };
                        let Some((_, commands)) = &e.link else { continue };
                        seq += 1;
                        pending.insert(seq, (key, id));
                        gather.answers.push((info(id, e), None));
                        if commands.send(ToExecutor::Task { seq, body: ask.body.clone() }).is_err() {
                            gather.settle(id, Err(format!("executor {id} was lost")));
                        }
                    }
                    if !gather.finish() {
                        gathers.insert(key, gather);
                        if let Some(within) = ask.within {
                            let expiries = expiries.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(within).await;
                                let _ = expiries.send(Event::Expired { key, within });
                            });
                        }
                    }
                }
                Some(event) = events.recv() => match event {
                    Event::ExecutorUp { id, host, commands } => match launched.get_mut(&id) {
                        Some(e) if e.link.is_none() => {
                            let _ = commands.send(ToExecutor::Welcome { worker: e.worker });
                            e.link = Some((host, commands));
                            tracing::info!(%app_id, executor = id, worker = %e.worker, "Executor registered.");
                            let executor = info(id, e);
                            let _ = user_tx.send(UserEvent::Executors(registered(&launched)));
                            let _ = user_tx.send(UserEvent::Started(executor));
                        }
                        _ => {
                            let _ = commands.send(ToExecutor::Exit);
                        }
                    },
                    Event::ExecutorDone { id, done } => {
                        // Only the executor a task went to answers it.
                        if pending.get(&done.seq).is_some_and(|(_, to)| *to == id)
                            && let Some((key, id)) = pending.remove(&done.seq)
                        {
                            settle(&mut gathers, key, id, done.result);
                        }
                    }
                    Event::ExecutorDown { id } => {
                        let Some(e) = launched.remove(&id) else { continue };
                        tracing::warn!(%app_id, executor = id, worker = %e.worker, "Lost an executor.");
                        spare.push(e.worker);
                        let lost: Vec<u64> = pending.iter().filter(|(_, (_, i))| *i == id).map(|(s, _)| *s).collect();
                        for s in lost {
                            let (key, _) = pending.remove(&s).expect("listed");
                            settle(&mut gathers, key, id, Err(format!("executor {id} on worker {} was lost", e.worker)));
                        }
                        if e.link.is_some() {
                            let _ = user_tx.send(UserEvent::Executors(registered(&launched)));
                            let _ = user_tx.send(UserEvent::Lost(info(id, &e)));
                        }
                    }
                    Event::Expired { key, within } => {
                        let late: Vec<u64> = pending.iter().filter(|(_, (k, _))| *k == key).map(|(s, _)| *s).collect();
                        for s in late {
                            let (_, id) = pending.remove(&s).expect("listed");
                            settle(&mut gathers, key, id, Err(format!("executor {id} did not answer within {within:?}")));
                        }
                    }
                    Event::Client { body, reply } => {
                        let _ = user_tx.send(UserEvent::Request { body, reply });
                    }
                },
            }
        };
        // The end: executors exit by themselves, and the end is reported once they have.
        for e in launched.values() {
            if let Some((_, commands)) = &e.link {
                let _ = commands.send(ToExecutor::Exit);
            }
        }
        let deadline = tokio::time::Instant::now() + stop_timeout;
        while launched.values().any(|e| e.link.is_some()) {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(Event::ExecutorDown { id })) => {
                    launched.remove(&id);
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        let (status, error) = match &outcome {
            Ok(status) => (*status, None),
            Err(e) => (AppStatus::Failed, Some(e.to_string())),
        };
        tracing::info!(%app_id, %status, ?error, "The application ended.");
        let _ = master.ask(MasterRequest::AppStatus { app_id, status, error }).await;
        outcome.map(|_| ())
    }
}

fn info(id: i32, e: &Launched) -> ExecutorInfo {
    ExecutorInfo { id, worker: e.worker, host: e.link.as_ref().map(|(h, _)| h.clone()).unwrap_or_default() }
}

/// Starts executor `id` in this process (`gear local -sameprocess`).
type InProcess = Arc<dyn Fn(i32) + Send + Sync>;

/// One round of keeping the executors the placements want.
struct Reconcile<'a> {
    app_id: AppId,
    placements: &'a [Placement],
    in_process: Option<InProcess>,
    control: SocketAddr,
}

impl Reconcile<'_> {
    /// Launches what is missing: for each placement, executors on the workers it wants that
    /// have none, on a spare slot of the application's there if it has one, else on slots
    /// asked of the master.
    async fn run(
        &self,
        master: &mut impl MasterLink,
        launched: &mut BTreeMap<i32, Launched>,
        spare: &mut Vec<WorkerId>,
        next_id: &mut i32,
        queued: &mut bool,
    ) -> Result<(), RoleError> {
        let app_id = self.app_id;
        let workers = match master.ask(MasterRequest::ListWorkers).await? {
            MasterReply::Workers(w) => w,
            other => return Err(unexpected(other)),
        };
        let alive = |w: WorkerId| workers.iter().any(|i: &WorkerInfo| i.id == w && i.alive);
        // Slots on dead workers went with them; so did their executors (their connections end).
        spare.retain(|w| alive(*w));
        for (index, placement) in self.placements.iter().enumerate() {
            let placed: Vec<WorkerId> = launched.values().filter(|e| e.placement == index).map(|e| e.worker).collect();
            for (locality, n) in missing(*placement, &workers, &placed) {
                let mut slots = take_spare(spare, locality, n);
                let short = n - slots.len() as u32;
                // A request that waits is granted by a push; asking again meanwhile would
                // queue more.
                if short > 0 && !*queued {
                    let req = MasterRequest::RequestResources { app_id, slots: short, locality };
                    match master.ask(req).await? {
                        MasterReply::Resources(granted) => {
                            slots.extend(granted.into_iter().flat_map(|(w, n)| std::iter::repeat_n(w, n as usize)))
                        }
                        MasterReply::Queued => {
                            tracing::info!(%app_id, short, "Too few free slots; waiting for them.");
                            *queued = true;
                        }
                        MasterReply::Refused(e) => {
                            tracing::debug!(%app_id, error = %e, "No slots for an executor yet.");
                        }
                        other => return Err(unexpected(other)),
                    }
                }
                for worker in slots {
                    let id = *next_id;
                    *next_id += 1;
                    self.launch(master, id, worker).await?;
                    launched.insert(
                        id,
                        Launched { worker, placement: index, link: None, since: tokio::time::Instant::now() },
                    );
                }
            }
        }
        Ok(())
    }

    async fn launch(&self, master: &mut impl MasterLink, id: i32, worker: WorkerId) -> Result<(), RoleError> {
        let app_id = self.app_id;
        if let Some(start) = &self.in_process {
            // `gear local -sameprocess`: the executor runs in this process (it still holds its slot).
            start(id);
            return Ok(());
        }
        let env = crate::env::ProcessEnv { appmaster: Some(self.control), ..Default::default() }.vars();
        tracing::info!(%app_id, executor = id, %worker, "Launching an executor.");
        match master.ask(MasterRequest::LaunchExecutor { app_id, executor: id, worker, env }).await? {
            MasterReply::Ok => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

/// The executors `placement` still wants, as (where, how many), given the `workers` and the
/// workers its executors were launched on (`placed`).
fn missing(placement: Placement, workers: &[WorkerInfo], placed: &[WorkerId]) -> Vec<(Locality, u32)> {
    let alive = |w: WorkerId| workers.iter().any(|i| i.id == w && i.alive);
    let none_on = |w: WorkerId| !placed.contains(&w);
    match placement {
        Placement::EachWorker => {
            workers.iter().filter(|w| w.alive && none_on(w.id)).map(|w| (Locality::Worker(w.id), 1)).collect()
        }
        Placement::OnWorker(w) if alive(w) && none_on(w) => vec![(Locality::Worker(w), 1)],
        Placement::OnWorker(_) => Vec::new(),
        Placement::Anywhere(n) => {
            let have = placed.iter().filter(|w| alive(**w)).count() as u32;
            if n > have { vec![(Locality::Any, n - have)] } else { Vec::new() }
        }
    }
}

/// Takes up to `n` of the application's spare slots that suit `locality`.
fn take_spare(spare: &mut Vec<WorkerId>, locality: Locality, n: u32) -> Vec<WorkerId> {
    let suits = |w: &WorkerId| !matches!(locality, Locality::Worker(x) if x != *w);
    let mut slots = Vec::new();
    while slots.len() < n as usize
        && let Some(i) = spare.iter().position(suits)
    {
        slots.push(spare.remove(i));
    }
    slots
}

/// Accepts executors' and clients' connections to the AppMaster.
async fn accept(
    listener: TcpListener,
    limits: gearpump_protocol::PortLimits,
    secret: ClusterSecret,
    kind: &'static str,
    events: mpsc::UnboundedSender<Event>,
) {
    gearpump_protocol::serve_port(listener, limits, "appmaster", |stream, peer| {
        let (events, secret) = (events.clone(), secret.clone());
        async move {
            if let Err(e) = serve(stream, peer, limits.hello_timeout, &secret, kind, events).await {
                tracing::warn!(%peer, error = %e, "A connection to the AppMaster ended.");
            }
        }
    })
    .await
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    hello_timeout: Duration,
    secret: &ClusterSecret,
    kind: &str,
    events: mpsc::UnboundedSender<Event>,
) -> Result<(), ProtocolError> {
    let (mut rd, mut wr) = gearpump_protocol::accept_control(stream, secret, hello_timeout).await?;
    match read_msg::<_, Hello>(&mut rd).await? {
        Hello::Executor { id } => {
            let (tx, _) = gearpump_protocol::spawn_writer::<ToExecutor, _>(wr);
            let _ = events.send(Event::ExecutorUp { id, host: peer.ip().to_string(), commands: tx });
            while let Ok(done) = read_msg::<_, Done>(&mut rd).await {
                let _ = events.send(Event::ExecutorDone { id, done });
            }
            let _ = events.send(Event::ExecutorDown { id });
        }
        Hello::Client { kind: wanted } if wanted != kind => {
            let why = format!("this is a {kind} application, not a {wanted} one");
            write_msg(&mut wr, &ClientAnswer::Err(why)).await?;
        }
        Hello::Client { .. } => {
            write_msg(&mut wr, &ClientAnswer::Ok(Vec::new())).await?;
            while let Ok(body) = read_msg::<_, Vec<u8>>(&mut rd).await {
                let (reply, answer) = oneshot::channel();
                if events.send(Event::Client { body, reply }).is_err() {
                    break;
                }
                let answer = answer.await.unwrap_or_else(|_| Err("the AppMaster is ending".into()));
                write_msg(&mut wr, &answer).await?;
            }
        }
    }
    Ok(())
}

/// The executor role of a non-streaming application: does its AppMaster's tasks until told
/// to exit (or the AppMaster is gone).
pub fn run_executor<M: AppMaster>(app: &Application<M>) -> Result<(), RoleError> {
    let env = crate::env::ProcessEnv::current()?;
    let (id, appmaster, app_id) = (env.need_executor()?, env.need_appmaster()?, env.need_app_id()?);
    let secret = crate::remote::role_config()?.secret.clone();
    crate::remote::role_runtime()?.block_on(executor_session(app.clone(), appmaster, id, app_id, secret))
}

/// An executor: registers with the AppMaster at `appmaster` as executor `id` and does its
/// tasks until told to exit.
async fn executor_session<M: AppMaster>(
    app: Application<M>,
    appmaster: SocketAddr,
    id: i32,
    app_id: AppId,
    secret: ClusterSecret,
) -> Result<(), RoleError> {
    let (mut rd, mut wr) = connect(appmaster, &secret).await?;
    write_msg(&mut wr, &Hello::Executor { id }).await?;
    let worker = match read_msg::<_, ToExecutor>(&mut rd).await? {
        ToExecutor::Welcome { worker } => worker,
        ToExecutor::Exit => return Err(other("the AppMaster does not want this executor")),
        other_msg => return Err(other(format!("unexpected first message from the AppMaster: {other_msg:?}"))),
    };
    let ctx = ExecutorContext { app_id, executor_id: id, worker, config: app.config.clone() };
    let mut user = (app.executor)(&ctx);
    let (tasks_tx, tasks) = std::sync::mpsc::channel::<(u64, Vec<u8>)>();
    let (done_tx, writer) = gearpump_protocol::spawn_writer::<Done, _>(wr);
    // Tasks run one at a time on a thread of their own, so a long one blocks no connection.
    std::thread::Builder::new().name("gearpump-executor".into()).spawn(move || {
        while let Ok((seq, body)) = tasks.recv() {
            let result = match postcard::from_bytes::<<M::Executor as Executor>::Task>(&body) {
                Err(e) => Err(format!("a task this executor cannot read: {e}")),
                Ok(task) => guarded("the executor", || user.on_task(&ctx, task))
                    .and_then(|o| postcard::to_stdvec(&o).map_err(|e| e.to_string())),
            };
            if done_tx.send(Done { seq, result }).is_err() {
                break;
            }
        }
    })?;
    loop {
        match read_msg::<_, ToExecutor>(&mut rd).await {
            Ok(ToExecutor::Task { seq, body }) => {
                let _ = tasks_tx.send((seq, body));
            }
            Ok(ToExecutor::Welcome { .. }) => {}
            Ok(ToExecutor::Exit) => break,
            Err(e) => {
                tracing::warn!(executor = id, error = %e, "Lost the AppMaster; exiting.");
                break;
            }
        }
    }
    // A task still running is abandoned with the process.
    drop(tasks_tx);
    writer.abort();
    Ok(())
}

type Reader = tokio::io::ReadHalf<gearpump_protocol::ControlStream>;
type Writer = tokio::io::WriteHalf<gearpump_protocol::ControlStream>;

async fn connect(to: SocketAddr, secret: &ClusterSecret) -> Result<(Reader, Writer), ProtocolError> {
    gearpump_protocol::open_control(TcpStream::connect(to).await?, &to.ip().to_string(), secret).await
}

/// Why a client could not talk to an application.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The master refused (no such application, it ended, …).
    #[error(transparent)]
    Refused(#[from] gearpump_protocol::MasterError),
    /// The application is of another kind.
    #[error("application {app_id} is a {kind} application, not a {wanted} one")]
    WrongKind {
        /// The application.
        app_id: AppId,
        /// Its kind.
        kind: String,
        /// The kind the client speaks to.
        wanted: &'static str,
    },
    /// Its AppMaster serves no clients right now (it is being relaunched).
    #[error("application {0} has no AppMaster serving clients right now; try again")]
    NotServing(AppId),
    /// The request failed in the application.
    #[error("the application answered with an error: {0}")]
    Failed(String),
    /// The connection failed.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Something else.
    #[error("{0}")]
    Other(String),
}

/// Opens a client's connection to the AppMaster at `address`, which checks the kind.
async fn hello<M: AppMaster>(address: SocketAddr, secret: &ClusterSecret) -> Result<(Reader, Writer), ClientError> {
    let (mut rd, mut wr) = connect(address, secret).await?;
    write_msg(&mut wr, &Hello::Client { kind: M::KIND.to_string() }).await?;
    read_msg::<_, ClientAnswer>(&mut rd).await?.map_err(ClientError::Failed)?;
    Ok((rd, wr))
}

/// A client of one running non-streaming application: resolves its id to its AppMaster
/// through the master, then sends it requests.
pub struct AppClient<M: AppMaster> {
    rt: tokio::runtime::Runtime,
    rd: Reader,
    wr: Writer,
    _master: std::marker::PhantomData<fn() -> M>,
}

impl<M: AppMaster> AppClient<M> {
    /// Connects to the AppMaster of application `app_id` on the cluster whose masters are
    /// `masters`, proving `secret` (the cluster's, as in its `gear.conf`). Fails clearly if
    /// there is no such application, it is not running, or it is not of `M`'s kind.
    pub fn connect(masters: &[HostPort], secret: &ClusterSecret, app_id: AppId) -> Result<Self, ClientError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ProtocolError::Io)?;
        let (rd, wr) = rt.block_on(async {
            let req = MasterRequest::ResolveAppMaster { app_id };
            let address = match ask_leader(masters, secret, &req, Duration::from_secs(30)).await? {
                MasterReply::AppMaster { kind, .. } if kind != M::KIND => {
                    return Err(ClientError::WrongKind { app_id, kind, wanted: M::KIND });
                }
                MasterReply::AppMaster { address: None, .. } => return Err(ClientError::NotServing(app_id)),
                MasterReply::AppMaster { address: Some(a), .. } => a,
                MasterReply::Refused(e) => return Err(e.into()),
                other => return Err(ClientError::Other(format!("unexpected answer from the master: {other:?}"))),
            };
            hello::<M>(address, secret).await
        })?;
        Ok(AppClient { rt, rd, wr, _master: std::marker::PhantomData })
    }

    /// Connects to the AppMaster serving clients at `address` (resolved by the caller).
    pub(crate) fn connect_at(address: SocketAddr, secret: &ClusterSecret) -> Result<Self, ClientError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ProtocolError::Io)?;
        let (rd, wr) = rt.block_on(hello::<M>(address, secret))?;
        Ok(AppClient { rt, rd, wr, _master: std::marker::PhantomData })
    }

    /// Sends `request` and waits for the answer.
    pub fn ask(&mut self, request: &M::Request) -> Result<M::Response, ClientError> {
        let body = postcard::to_stdvec(request).map_err(|e| ClientError::Other(e.to_string()))?;
        let (rd, wr) = (&mut self.rd, &mut self.wr);
        let answer = self.rt.block_on(async {
            write_msg(wr, &body).await?;
            read_msg::<_, ClientAnswer>(rd).await
        })?;
        let body = answer.map_err(ClientError::Failed)?;
        postcard::from_bytes(&body).map_err(|e| ClientError::Other(format!("an answer this client cannot read: {e}")))
    }
}

/// The client role (started by `gear app`): uploads this binary and submits `app` to the
/// cluster; returns its id.
pub fn submit<M: AppMaster>(app: &Application<M>) -> Result<AppId, RoleError> {
    crate::remote::submit_this_binary(&app.name, 0, M::KIND)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers(alive: &[bool]) -> Vec<WorkerInfo> {
        let info = |(i, a): (usize, &bool)| WorkerInfo {
            id: WorkerId(i as u32 + 1),
            host: "h".into(),
            slots: 4,
            used: 0,
            alive: *a,
        };
        alive.iter().enumerate().map(info).collect()
    }

    #[test]
    fn each_worker_wants_one_executor_on_every_live_worker_without_one() {
        let ws = workers(&[true, false, true, true]);
        let placed = [WorkerId(1), WorkerId(2)];
        let wanted = missing(Placement::EachWorker, &ws, &placed);
        assert_eq!(wanted, [(Locality::Worker(WorkerId(3)), 1), (Locality::Worker(WorkerId(4)), 1)]);
        // A worker that joins is wanted too; one that has an executor is not.
        let placed = [WorkerId(1), WorkerId(3), WorkerId(4)];
        assert_eq!(missing(Placement::EachWorker, &ws, &placed), []);
    }

    #[test]
    fn a_given_worker_is_wanted_only_while_alive_and_without_an_executor() {
        let ws = workers(&[true, false]);
        assert_eq!(missing(Placement::OnWorker(WorkerId(1)), &ws, &[]), [(Locality::Worker(WorkerId(1)), 1)]);
        assert_eq!(missing(Placement::OnWorker(WorkerId(1)), &ws, &[WorkerId(1)]), []);
        assert_eq!(missing(Placement::OnWorker(WorkerId(2)), &ws, &[]), [], "a dead worker");
        assert_eq!(missing(Placement::OnWorker(WorkerId(9)), &ws, &[]), [], "an unknown worker");
    }

    #[test]
    fn anywhere_counts_only_executors_on_live_workers() {
        let ws = workers(&[true, false]);
        let placed = [WorkerId(1), WorkerId(2)];
        assert_eq!(missing(Placement::Anywhere(3), &ws, &placed), [(Locality::Any, 2)]);
        assert_eq!(missing(Placement::Anywhere(1), &ws, &placed), []);
    }

    #[test]
    fn spare_slots_are_reused_where_the_locality_allows() {
        let mut spare = vec![WorkerId(1), WorkerId(2), WorkerId(2)];
        assert_eq!(take_spare(&mut spare, Locality::Worker(WorkerId(2)), 3), [WorkerId(2), WorkerId(2)]);
        assert_eq!(spare, [WorkerId(1)]);
        assert_eq!(take_spare(&mut spare, Locality::Worker(WorkerId(3)), 1), []);
        assert_eq!(take_spare(&mut spare, Locality::Any, 2), [WorkerId(1)]);
        assert!(spare.is_empty());
    }
}
