//! Executors: groups of an application's tasks, each on a worker, and the data plane between
//! them.
//!
//! With [`DataPlane::InMemory`] every executor of the process shares one [`Directory`] and
//! messages between any two tasks move without serialisation. With [`DataPlane::Tcp`] each
//! executor has its own directory and data server, and a message to a task of another executor
//! is encoded onto a TCP connection, exactly as between processes; only tasks of the same
//! executor exchange values in memory.

use crate::pool::TaskPool;
use crate::task::{Control, Destination, OutEdge, TaskCell, TaskEvent, TaskRunner};
use crate::timer::Timers;
use gearpump_api::{StartTime, StreamApplication, TaskError, TaskInfo};
use gearpump_core::{AppId, Codecs, ExecutorId, TaskId, Timestamp, WorkerId};
use gearpump_transport::AckMessage;
use gearpump_transport::flow::FlowConfig;
use gearpump_transport::tcp::{ClusterSecret, Connection, DataServer, FrameSink, PortLimits, RetryPolicy};
use gearpump_transport::wire::EncodedBatch;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use tokio::sync::mpsc::UnboundedSender;

/// How tasks of different executors exchange messages.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum DataPlane {
    /// By moving values in memory (the embedded cluster's default).
    #[default]
    InMemory,
    /// Over TCP, one data server per executor bound on `host`.
    Tcp {
        /// The address executors bind and connect to.
        host: IpAddr,
        /// Connect retries.
        retry: RetryPolicy,
        /// The cluster secret every data connection proves.
        secret: ClusterSecret,
    },
}

impl DataPlane {
    /// TCP on `host`, with default retries, for executors that all live in this process (an
    /// embedded cluster): the data ports take only connections proving a secret drawn at
    /// random here, so nothing else on the host can feed them.
    pub fn tcp(host: IpAddr) -> Self {
        let secret = ClusterSecret::new(gearpump_core::auth::nonce()).expect("32 random bytes are a usable secret");
        DataPlane::Tcp { host, retry: RetryPolicy::default(), secret }
    }
}

/// Tasks reachable in memory, by id.
#[derive(Default)]
pub struct Directory {
    cells: HashMap<TaskId, Arc<TaskCell>>,
}

impl Directory {
    /// The cell of `task`.
    pub fn get(&self, task: TaskId) -> Option<&Arc<TaskCell>> {
        self.cells.get(&task)
    }
}

/// Delivers frames arriving on an executor's connections to its tasks. The directory is set
/// once the tasks exist (a data port is bound, and announced, before that); frames for a task
/// that does not exist (yet) are dropped with a warning.
#[derive(Clone, Default)]
pub struct ExecutorSink {
    directory: Arc<OnceLock<Arc<Directory>>>,
}

impl ExecutorSink {
    fn get(&self, task: TaskId) -> Option<&Arc<TaskCell>> {
        self.directory.get().and_then(|d| d.get(task))
    }

    fn with(directory: Arc<Directory>) -> Self {
        let sink = ExecutorSink::default();
        let _ = sink.directory.set(directory);
        sink
    }
}

impl FrameSink for ExecutorSink {
    fn batch(&self, target: TaskId, batch: EncodedBatch, reply: &Arc<Connection>) {
        match self.get(target) {
            Some(cell) => cell.push_encoded(batch, reply.clone()),
            None => {
                tracing::warn!(%target, peer = %reply.peer(), "Dropped a batch for a task this executor does not run.")
            }
        }
    }

    fn ack(&self, target: TaskId, ack: AckMessage) {
        match self.get(target) {
            Some(cell) => cell.push_control(Control::Ack(ack)),
            None => tracing::warn!(%target, "Dropped an Ack for a task this executor does not run."),
        }
    }
}

/// One executor's tasks.
pub struct Executor {
    /// Its id within the application.
    pub id: ExecutorId,
    /// The worker it runs on.
    pub worker: WorkerId,
    /// Its tasks.
    pub tasks: Vec<TaskId>,
}

/// Shared process-level runtime: the task pool and the timer thread.
#[derive(Clone)]
pub struct Runtime {
    pool: Arc<TaskPool>,
    timers: Arc<Timers>,
}

impl Runtime {
    /// A runtime over `pool`.
    pub fn new(pool: Arc<TaskPool>) -> Self {
        Runtime { pool, timers: Timers::start() }
    }

    /// Stops the timer thread and the pool.
    pub fn shutdown(&self) {
        self.timers.shutdown();
        self.pool.shutdown();
    }
}

/// A running application's tasks across its executors.
pub struct Deployment {
    /// The executors and their tasks.
    pub executors: Vec<Executor>,
    all: Vec<Arc<TaskCell>>,
    cells: HashMap<TaskId, Arc<TaskCell>>,
    /// Per executor (one shared entry for the in-memory data plane).
    directories: Vec<Arc<Directory>>,
    servers: Vec<DataServer>,
    /// Every executor's data port (TCP data plane only).
    peers: Vec<SocketAddr>,
    /// The executors whose tasks run in this process.
    local: Vec<usize>,
    connections: Mutex<HashMap<(usize, usize), Arc<Connection>>>,
}

/// Everything [`Deployment::launch`] needs besides the application.
pub struct LaunchSpec<'a> {
    /// The process runtime.
    pub runtime: &'a Runtime,
    /// The application's id.
    pub app_id: AppId,
    /// Flow-control settings.
    pub flow: FlowConfig,
    /// The tasks' session.
    pub session: u32,
    /// Where tasks report.
    pub events: &'a UnboundedSender<TaskEvent>,
    /// The data plane between executors.
    pub data_plane: DataPlane,
    /// The codecs for values crossing executors (the application's, with the cluster's
    /// `gearpump.serializers` applied).
    pub codecs: Arc<Codecs>,
    /// Time one `on_next` call in this many (0: never); see [`crate::MetricsConfig`].
    pub sample_rate: u32,
    /// Where persistent tasks keep checkpoints (applications with stateful processors).
    pub state: Option<Arc<dyn gearpump_api::StateStore>>,
}

impl Deployment {
    /// Creates every task of `app`, placed on `executors`, all in this process, wired to its
    /// downstream tasks. Nothing runs until [`Deployment::start`].
    pub fn launch(
        spec: &LaunchSpec<'_>,
        app: &StreamApplication,
        executors: Vec<Executor>,
    ) -> Result<Deployment, TaskError> {
        let local: Vec<usize> = (0..executors.len()).collect();
        let mut servers = Vec::new();
        let mut sinks = Vec::new();
        if let DataPlane::Tcp { host, secret, .. } = &spec.data_plane {
            for _ in &local {
                let sink = ExecutorSink::default();
                let server = DataServer::bind_with(
                    SocketAddr::new(*host, 0),
                    Arc::new(sink.clone()),
                    spec.codecs.clone(),
                    PortLimits::default(),
                    secret.clone(),
                )
                .map_err(|e| TaskError::msg(format!("binding a data port on {host}: {e}")))?;
                servers.push(server);
                sinks.push(sink);
            }
        }
        let peers = servers.iter().map(DataServer::local_addr).collect();
        Self::build(spec, app, executors, local, servers, &sinks, peers)
    }

    /// Creates the tasks of executor `me` only (this process is that executor), wired in
    /// memory to each other and over TCP to the tasks of the other executors, which listen at
    /// `peers[i]`. `server` is this executor's data port, bound already and delivering to
    /// `sink`.
    pub fn launch_executor(
        spec: &LaunchSpec<'_>,
        app: &StreamApplication,
        executors: Vec<Executor>,
        me: usize,
        server: DataServer,
        sink: ExecutorSink,
        peers: Vec<SocketAddr>,
    ) -> Result<Deployment, TaskError> {
        Self::build(spec, app, executors, vec![me], vec![server], &[sink], peers)
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        spec: &LaunchSpec<'_>,
        app: &StreamApplication,
        executors: Vec<Executor>,
        local: Vec<usize>,
        servers: Vec<DataServer>,
        sinks: &[ExecutorSink],
        peers: Vec<SocketAddr>,
    ) -> Result<Deployment, TaskError> {
        let mut per_executor: Vec<Directory> = local.iter().map(|_| Directory::default()).collect();
        let mut all = Vec::new();
        let mut cells = HashMap::new();
        for (slot, &e) in local.iter().enumerate() {
            for &task in &executors[e].tasks {
                let cell = TaskCell::new(task, spec.runtime.pool.shared().clone(), spec.events.clone());
                per_executor[slot].cells.insert(task, cell.clone());
                cells.insert(task, cell.clone());
                all.push(cell);
            }
        }
        let directories: Vec<Arc<Directory>> = match spec.data_plane {
            DataPlane::InMemory => vec![Arc::new(Directory { cells: cells.clone() })],
            DataPlane::Tcp { .. } => per_executor.into_iter().map(Arc::new).collect(),
        };
        for (sink, directory) in sinks.iter().zip(&directories) {
            let _ = sink.directory.set(directory.clone());
        }
        let mut deployment = Deployment {
            executors,
            all,
            cells,
            directories,
            servers,
            peers,
            local,
            connections: Mutex::new(HashMap::new()),
        };
        if let Err(e) = deployment.wire(spec, app) {
            // Installed runners hold their downstream cells; drop them or the cells leak.
            deployment.clear();
            return Err(e);
        }
        Ok(deployment)
    }

    fn executor_of(&self) -> HashMap<TaskId, usize> {
        self.executors.iter().enumerate().flat_map(|(e, ex)| ex.tasks.iter().map(move |t| (*t, e))).collect()
    }

    /// Builds every task and its outgoing edges, and installs its runner.
    fn wire(&mut self, spec: &LaunchSpec<'_>, app: &StreamApplication) -> Result<(), TaskError> {
        let dag = app.dag();
        let codecs = spec.codecs.clone();
        let executor_of = self.executor_of();
        let tcp = match &spec.data_plane {
            DataPlane::Tcp { retry, secret, .. } => Some((*retry, secret.clone())),
            DataPlane::InMemory => None,
        };
        for cell in &self.all {
            let id = cell.id();
            let mine = executor_of[&id];
            let processor = dag.processor(id.processor);
            let info = TaskInfo {
                task_id: id,
                parallelism: processor.parallelism,
                app_id: spec.app_id,
                app_name: app.name().to_string(),
                description: processor.description.clone(),
                config: Arc::new(app.config().clone().merge(&processor.config)),
                predecessor: processor.predecessor,
            };
            let task = (dag.factory(id.processor))(&info)
                .map_err(|e| TaskError::msg(format!("creating task {id} of {:?}: {e}", processor.task_type)))?;
            let mut edges = Vec::new();
            for edge in dag.outgoing(id.processor) {
                let n = dag.processor(edge.to).parallelism;
                let mut targets = Vec::with_capacity(n as usize);
                for i in 0..n {
                    let t = TaskId { processor: edge.to, index: i };
                    let theirs = executor_of[&t];
                    let dest = match &tcp {
                        Some((retry, secret)) if theirs != mine => {
                            Destination::Remote(self.connection(mine, theirs, *retry, secret, &codecs)?)
                        }
                        _ => Destination::Local(self.cells.get(&t).cloned().ok_or_else(|| {
                            TaskError::msg(format!("task {t} is placed on executor {theirs}, which is not reachable"))
                        })?),
                    };
                    targets.push((t, dest));
                }
                let life = dag.processor(edge.to).life;
                edges.push(OutEdge::new(edge.partitioner.instantiate(), targets, spec.flow, life));
            }
            let is_source = dag.upstream(id.processor).is_empty();
            let slot = if tcp.is_some() { self.local.iter().position(|&e| e == mine).unwrap_or(0) } else { 0 };
            let directory = self.directories[slot].clone();
            let runner = TaskRunner::new(
                task,
                info,
                cell,
                spec.session,
                edges,
                is_source,
                spec.runtime.timers.clone(),
                directory,
                spec.sample_rate,
            )
            .with_state_store(spec.state.clone());
            cell.install(runner);
        }
        Ok(())
    }

    /// The connection from executor `from` to executor `to`, made on first use.
    fn connection(
        &self,
        from: usize,
        to: usize,
        retry: RetryPolicy,
        secret: &ClusterSecret,
        codecs: &Arc<Codecs>,
    ) -> Result<Arc<Connection>, TaskError> {
        let mut conns = self.connections.lock();
        if let Some(c) = conns.get(&(from, to)) {
            return Ok(c.clone());
        }
        let slot = self.local.iter().position(|&e| e == from).unwrap_or(0);
        let sink = Arc::new(ExecutorSink::with(self.directories[slot].clone()));
        let addr =
            *self.peers.get(to).ok_or_else(|| TaskError::msg(format!("no data port known for executor {to}")))?;
        let conn = Connection::connect(addr, sink, codecs.clone(), retry, secret)
            .map_err(|e| TaskError::msg(format!("connecting to the data port {addr}: {e}")))?;
        conns.insert((from, to), conn.clone());
        Ok(conn)
    }

    /// Starts every task from `start`.
    pub fn start(&self, start: StartTime) {
        for cell in &self.all {
            cell.push_control(Control::Start(start));
        }
    }

    /// Asks every task to report its clock.
    pub fn tick(&self) {
        for cell in &self.all {
            cell.push_control(Control::Tick);
        }
    }

    /// Tells `task` its upstream min clock.
    pub fn upstream_clock(&self, task: TaskId, clock: Timestamp) {
        if let Some(cell) = self.cells.get(&task) {
            cell.push_control(Control::UpstreamClock(clock));
        }
    }

    /// Tells every task that the checkpoint at `time` is complete.
    pub fn checkpoint_complete(&self, time: Timestamp) {
        for cell in &self.all {
            cell.push_control(Control::CheckpointComplete(time));
        }
    }

    /// Stops every task.
    pub fn stop(&self) {
        for cell in &self.all {
            cell.push_control(Control::Stop);
        }
    }

    /// The tasks.
    pub fn cells(&self) -> &[Arc<TaskCell>] {
        &self.all
    }

    /// Every task's counters, as reported to the AppMaster.
    pub fn counters(&self) -> Vec<gearpump_protocol::TaskCounters> {
        use std::sync::atomic::Ordering::Relaxed;
        self.all
            .iter()
            .map(|cell| {
                let c = cell.counters();
                let h = *c.histograms.lock();
                gearpump_protocol::TaskCounters {
                    task: cell.id(),
                    received: c.received.load(Relaxed),
                    sent: c.sent.load(Relaxed),
                    latency_samples: c.latency_samples.load(Relaxed),
                    latency_p50_us: c.latency_p50_us.load(Relaxed),
                    latency_p99_us: c.latency_p99_us.load(Relaxed),
                    queued: c.queued.load(Relaxed),
                    blocked_ns: c.blocked_ns.load(Relaxed),
                    edges_blocked_ns: c.edges_blocked_ns.lock().clone(),
                    clock: Timestamp(c.clock.load(Relaxed)),
                    receive_latency: h.receive_latency,
                    process_time: h.process_time,
                }
            })
            .collect()
    }

    /// Drops every runner (releasing the tasks) and closes the data plane.
    pub fn clear(&self) {
        for cell in &self.all {
            cell.clear();
        }
        for (_, c) in self.connections.lock().drain() {
            c.close();
        }
        for s in &self.servers {
            s.shutdown();
        }
    }
}
