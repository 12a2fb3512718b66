//! # gearpump-protocol
//!
//! The control plane: what clients, masters, workers, AppMasters and executors say to each
//! other, and how it is framed on TCP.
//!
//! Control traffic is light (registrations, heartbeats, submissions, clock reports), so it is
//! plain framed serde: each frame is a little-endian `u32` length and a postcard-encoded
//! message, after a four-byte magic (`GPCP`) and a version from the connecting side. No RPC
//! framework: the message enums below are the whole protocol, readable in one place, and
//! postcard is already how values cross processes. A peer that sends the wrong magic, an
//! oversized frame or bytes that do not decode gets a [`ProtocolError`] naming what was wrong
//! and loses its connection; the daemon carries on.
//!
//! Every connection opens with the cluster secret's challenge–response
//! ([`client_handshake`], [`server_handshake`]); with `gearpump.tls.enabled` it runs inside TLS
//! ([`ControlStream`], opened by [`connect_stream`] and [`accept_stream`]).

mod control;
mod refusal;
mod stream;

pub use control::{ControlReader, ControlWriter, accept_control, open_control, serve_port, spawn_writer};
pub use gearpump_core::auth::ClusterSecret;
use gearpump_core::auth::{self, PROOF_LEN, Role};
pub use gearpump_core::config::PortLimits;
use gearpump_core::{AppId, AppStatus, TaskId, Timestamp, WorkerId};
pub use gearpump_metrics::ReadOption;
use gearpump_metrics::{HistogramSummary, Metric, MetricPoint, MetricValue};
pub use refusal::MasterError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;
pub use stream::{ControlStream, accept_stream, connect_stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The magic that opens a control connection.
pub const MAGIC: [u8; 4] = *b"GPCP";
/// The protocol version (2: the hello carries the cluster-secret challenge–response).
pub const VERSION: u16 = 2;
/// The largest control frame (an uploaded application binary travels in chunks below it).
pub const MAX_FRAME: usize = 16 << 20;

/// A control connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The peer is not speaking this protocol.
    #[error(
        "not a Gearpump control connection: magic {magic:?}, version {version}{}",
        match magic[0] {
            0x16 => " (a TLS hello: the peer has gearpump.tls.enabled, this node does not)",
            0x15 => " (a TLS alert: the peer has gearpump.tls.enabled, this node does not)",
            _ => "",
        }
    )]
    BadHello {
        /// The magic given.
        magic: [u8; 4],
        /// The version given.
        version: u16,
    },
    /// A frame over [`MAX_FRAME`].
    #[error("control frame of {0} bytes exceeds the limit of {MAX_FRAME}")]
    TooLarge(usize),
    /// A frame that does not decode.
    #[error("undecodable control message: {0}")]
    Decode(String),
    /// The peer closed the connection.
    #[error("the peer closed the connection")]
    Closed,
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// No master leads (an election, or too few masters alive for a majority).
    #[error("no leading master: {0}")]
    NoLeader(String),
    /// The peer did not prove that it holds this node's cluster secret (it has another, or
    /// none where this node has one, or one where this node has none).
    #[error(
        "the peer does not hold this node's cluster secret (gearpump.cluster.secret{})",
        if *secret_set { "" } else { ", which is not set here" }
    )]
    NotAuthenticated {
        /// Whether this node has a secret.
        secret_set: bool,
    },
    /// TLS could not be set up with the peer (see `gearpump.tls.*`).
    #[error("{0}")]
    Tls(String),
    /// The peer refused this node's proof of the cluster secret.
    #[error(
        "refused by the peer: this node does not hold its cluster secret (gearpump.cluster.secret{})",
        if *secret_set { " differs" } else { " is not set here" }
    )]
    Refused {
        /// Whether this node has a secret.
        secret_set: bool,
    },
}

impl ProtocolError {
    /// Whether trying again cannot help: the peers hold different cluster secrets, distrust
    /// each other's certificates, or do not speak the same protocol (TLS on one side only,
    /// say). The operator must fix the configuration; callers give up at once instead of
    /// retrying until a timeout.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ProtocolError::NotAuthenticated { .. }
                | ProtocolError::Refused { .. }
                | ProtocolError::Tls(_)
                | ProtocolError::BadHello { .. }
        )
    }
}

/// What a server answers once it has checked the client's proof.
const ACCEPTED: u8 = 0;
const REFUSED: u8 = 1;

/// Opens a connection from the client side: magic, version and a fresh nonce out; the
/// server's nonce and proof in; our proof out; the server's proof checked against `secret`
/// (a server without it is left at once); the server's verdict in. See
/// [`gearpump_core::auth`].
pub async fn client_handshake<R, W>(r: &mut R, w: &mut W, secret: &ClusterSecret) -> Result<(), ProtocolError>
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let own = auth::nonce();
    let mut hello = Vec::with_capacity(6 + PROOF_LEN);
    hello.extend_from_slice(&MAGIC);
    hello.extend_from_slice(&VERSION.to_le_bytes());
    hello.extend_from_slice(&own);
    w.write_all(&hello).await?;
    w.flush().await?;
    read_magic(r).await?;
    let theirs = read_32(r).await?;
    let proof = read_32(r).await?;
    // Our proof goes out whatever the server's is worth, so that a server refusing us learns
    // (and logs) who we are; it is good for this pair of nonces only.
    w.write_all(&secret.proof(Role::Client, &theirs, &own)).await?;
    w.flush().await?;
    if !secret.verify(Role::Server, &own, &theirs, &proof) {
        return Err(ProtocolError::NotAuthenticated { secret_set: secret.is_set() });
    }
    let mut verdict = [0u8; 1];
    r.read_exact(&mut verdict).await.map_err(eof)?;
    match verdict[0] {
        ACCEPTED => Ok(()),
        _ => Err(ProtocolError::Refused { secret_set: secret.is_set() }),
    }
}

/// Opens an accepted connection: the client's magic, version and nonce in; our nonce and
/// proof out; the client's proof in, checked against `secret`; the verdict out. All within
/// `timeout`. A client without the secret gets [`ProtocolError::NotAuthenticated`] here
/// (the caller logs it with the peer's address and drops the connection).
pub async fn server_handshake<R, W>(
    r: &mut R,
    w: &mut W,
    secret: &ClusterSecret,
    timeout: Duration,
) -> Result<(), ProtocolError>
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let exchange = async {
        read_magic(r).await?;
        let theirs = read_32(r).await?;
        let own = auth::nonce();
        let mut reply = Vec::with_capacity(6 + 2 * PROOF_LEN);
        reply.extend_from_slice(&MAGIC);
        reply.extend_from_slice(&VERSION.to_le_bytes());
        reply.extend_from_slice(&own);
        reply.extend_from_slice(&secret.proof(Role::Server, &theirs, &own));
        w.write_all(&reply).await?;
        w.flush().await?;
        let proof = read_32(r).await?;
        if secret.verify(Role::Client, &own, &theirs, &proof) {
            w.write_all(&[ACCEPTED]).await?;
            w.flush().await?;
            Ok(())
        } else {
            let _ = w.write_all(&[REFUSED]).await;
            let _ = w.flush().await;
            Err(ProtocolError::NotAuthenticated { secret_set: secret.is_set() })
        }
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| ProtocolError::Timeout(timeout))?
}

/// Reads and checks the opening magic and version.
async fn read_magic<R: AsyncReadExt + Unpin>(r: &mut R) -> Result<(), ProtocolError> {
    let mut hello = [0u8; 6];
    r.read_exact(&mut hello).await.map_err(eof)?;
    let magic: [u8; 4] = hello[..4].try_into().expect("4 bytes");
    let version = u16::from_le_bytes([hello[4], hello[5]]);
    if magic != MAGIC || version != VERSION {
        return Err(ProtocolError::BadHello { magic, version });
    }
    Ok(())
}

async fn read_32<R: AsyncReadExt + Unpin>(r: &mut R) -> Result<auth::Bytes32, ProtocolError> {
    let mut b = [0u8; PROOF_LEN];
    r.read_exact(&mut b).await.map_err(eof)?;
    Ok(b)
}

fn eof(e: std::io::Error) -> ProtocolError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof { ProtocolError::Closed } else { ProtocolError::Io(e) }
}

/// Writes one message.
pub async fn write_msg<W: AsyncWriteExt + Unpin, T: Serialize>(w: &mut W, msg: &T) -> Result<(), ProtocolError> {
    let body = postcard::to_stdvec(msg).map_err(|e| ProtocolError::Decode(e.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(ProtocolError::TooLarge(body.len()));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame).await?;
    // TLS holds back what the socket would not take at once until it is flushed (plain TCP
    // has nothing to flush).
    w.flush().await?;
    Ok(())
}

/// Reads one message.
pub async fn read_msg<R: AsyncReadExt + Unpin, T: DeserializeOwned>(r: &mut R) -> Result<T, ProtocolError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await.map_err(eof)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(ProtocolError::TooLarge(len));
    }
    let body = read_body(r, len).await?;
    postcard::from_bytes(&body).map_err(|e| ProtocolError::Decode(e.to_string()))
}

/// Reads a frame body of `len` bytes into a buffer that grows with the bytes actually
/// received: a peer that announces 16 MiB and sends nothing more costs 64 KiB, not 16 MiB.
pub async fn read_body<R: AsyncReadExt + Unpin>(r: &mut R, len: usize) -> Result<Vec<u8>, ProtocolError> {
    let mut body = Vec::with_capacity(len.min(FIRST_READ));
    let read = r.take(len as u64).read_to_end(&mut body).await?;
    if read < len {
        return Err(ProtocolError::Closed);
    }
    Ok(body)
}

/// What a frame's buffer starts at; it grows as bytes arrive.
const FIRST_READ: usize = 64 << 10;

/// Counts a port's open connections against [`PortLimits::max_connections`].
#[derive(Debug, Clone)]
pub struct ConnectionGate {
    open: std::sync::Arc<tokio::sync::Semaphore>,
    limits: PortLimits,
}

/// An admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Admitted(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

impl ConnectionGate {
    /// A gate with `limits`.
    pub fn new(limits: PortLimits) -> Self {
        ConnectionGate { open: std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1))), limits }
    }

    /// Admits a connection from `peer`, or logs a warning naming it and returns `None` when
    /// `port` already has as many open as allowed (the caller then drops the socket).
    pub fn admit(&self, port: &str, peer: std::net::SocketAddr) -> Option<Admitted> {
        match self.open.clone().try_acquire_owned() {
            Ok(permit) => Some(Admitted(permit)),
            Err(_) => {
                tracing::warn!(%peer, port, limit = self.limits.max_connections, "Refused a connection: too many open on this port.");
                None
            }
        }
    }
}

/// A processor of a DAG submitted as JSON (`POST master/submitdag`).
pub use gearpump_core::DagProcessor;

/// A DAG submitted as JSON (`POST master/submitdag`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DagRequest {
    /// The application's name.
    pub app_name: String,
    /// The processors, by id (`"0"`, `"1"`, …).
    pub processors: std::collections::BTreeMap<String, DagProcessor>,
    /// The edges: `[from, partitioner, to]`.
    #[serde(default)]
    pub edges: Vec<(String, String, String)>,
}

/// The kind of a streaming application ([`AppInfo::kind`]).
pub const STREAMING: &str = "streaming";

/// Where the slots an AppMaster asks for may be (the guide's resource locality).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Locality {
    /// On any workers, spread evenly.
    Any,
    /// The slots asked for on every live worker that has them free (workers that lack them
    /// are left out).
    EachWorker,
    /// All on this worker.
    Worker(WorkerId),
}

/// How urgent an application's requests for slots are: when slots are short, the priority
/// scheduler serves higher ones first (`gear app -priority low|normal|high`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Priority {
    /// Served after the others.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Served before the others.
    High,
}

impl std::str::FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Ok(Priority::Low),
            "normal" => Ok(Priority::Normal),
            "high" => Ok(Priority::High),
            _ => Err(format!("{s:?} is not a priority (low, normal, high)")),
        }
    }
}

/// An application as the master reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInfo {
    /// Its id.
    pub id: AppId,
    /// Its name.
    pub name: String,
    /// Its kind: [`STREAMING`] for a streaming application, else the kind its AppMaster
    /// names (`DistributedShell`, say).
    pub kind: String,
    /// Its status.
    pub status: AppStatus,
    /// The worker its AppMaster runs on.
    pub worker: Option<WorkerId>,
    /// Who submitted it.
    pub user: String,
    /// When it was submitted.
    pub submission_time: Timestamp,
    /// When it became active.
    pub start_time: Option<Timestamp>,
    /// When it ended.
    pub finish_time: Option<Timestamp>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A worker as the master reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Its id.
    pub id: WorkerId,
    /// Where it runs.
    pub host: String,
    /// Its slots.
    pub slots: u32,
    /// Slots in use.
    pub used: u32,
    /// Whether it is alive.
    pub alive: bool,
}

/// What anyone may ask of, or tell, the master.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MasterRequest {
    /// A worker joins with its slots.
    RegisterWorker {
        /// The worker's host.
        host: String,
        /// Its slots.
        slots: u32,
        /// Its process id.
        pid: u32,
        /// Its configuration, HOCON.
        config: String,
        /// Its log directory.
        log_dir: String,
        /// The id an earlier master gave it, kept across a master failover.
        previous: Option<WorkerId>,
        /// The processes it runs, `(application, executor)` (-1: an AppMaster).
        running: Vec<(AppId, i32)>,
    },
    /// A worker is alive.
    Heartbeat {
        /// The worker.
        worker: WorkerId,
        /// Its process's gauges.
        process: ProcessGauges,
    },
    /// The applications.
    ListApps,
    /// The workers.
    ListWorkers,
    /// Kill an application.
    KillApp {
        /// The application.
        app_id: AppId,
    },
    /// Restart a running application's tasks from its start clock (`gear replay`).
    ReplayApp {
        /// The application.
        app_id: AppId,
    },
    /// A chunk of an application binary being uploaded on this connection.
    UploadArtifact {
        /// The chunk.
        bytes: Vec<u8>,
        /// Whether it is the last one.
        last: bool,
    },
    /// A chunk of a stored application binary.
    FetchArtifact {
        /// The artifact's id.
        id: String,
        /// Where to read from.
        offset: u64,
    },
    /// Submit an application whose binary was uploaded.
    SubmitApp {
        /// Its name (already prefixed).
        name: String,
        /// The uploaded binary.
        artifact: String,
        /// The arguments the binary is run with in every role.
        args: Vec<String>,
        /// The tasks it runs (one slot each).
        tasks: u32,
        /// Who submits it.
        user: String,
        /// How many executors to run it on (0: one per worker it gets slots on).
        executors: u32,
        /// Its kind ([`STREAMING`], or the kind its own AppMaster names).
        kind: String,
        /// How urgent its requests for slots are.
        priority: Priority,
    },
    /// An AppMaster process reports for duty.
    RegisterAppMaster {
        /// Its application.
        app_id: AppId,
        /// Which AppMaster of it this is (0 first; the master counts relaunches): a replaced
        /// one may not register again after a master failover.
        attempt: u32,
        /// Where its clients reach it (an AppMaster that serves clients).
        address: Option<SocketAddr>,
    },
    /// Where the AppMaster of a running application serves its clients: answered with
    /// [`MasterReply::AppMaster`].
    ResolveAppMaster {
        /// The application.
        app_id: AppId,
    },
    /// An application's status changed (from its AppMaster).
    AppStatus {
        /// The application.
        app_id: AppId,
        /// The new status.
        status: AppStatus,
        /// Why it failed.
        error: Option<String>,
    },
    /// An AppMaster asks for slots for its tasks.
    RequestResources {
        /// The application.
        app_id: AppId,
        /// Slots wanted (with [`Locality::EachWorker`]: on each worker).
        slots: u32,
        /// Where they may be.
        locality: Locality,
    },
    /// An AppMaster asks for more slots now, on any workers (for a DAG change that adds
    /// tasks): granted at once ([`MasterReply::Resources`]) or refused, never queued.
    MoreResources {
        /// The application.
        app_id: AppId,
        /// Slots wanted.
        slots: u32,
    },
    /// An AppMaster asks for an executor process on a worker.
    LaunchExecutor {
        /// The application.
        app_id: AppId,
        /// The executor's id.
        executor: i32,
        /// The worker.
        worker: WorkerId,
        /// Extra environment (how to reach the AppMaster).
        env: Vec<(String, String)>,
    },
    /// An AppMaster's periodic report: how its application runs, and its metrics.
    AppReport {
        /// The application.
        app_id: AppId,
        /// When the metrics were taken, ms since the epoch.
        time: i64,
        /// The DAG, executors and clock.
        runtime: Box<AppRuntime>,
        /// Metrics (empty unless `gearpump.metrics.enabled`).
        metrics: Vec<Metric>,
    },
    /// Everything the REST API shows of the cluster.
    Snapshot,
    /// Metrics under a path (see [`gearpump_metrics::path_matches`]).
    QueryMetrics {
        /// The path.
        path: String,
        /// Latest, recent or history.
        option: ReadOption,
    },
    /// An AppMaster's start clock moved: the master keeps it, so that a new AppMaster resumes
    /// there. Answered once recorded; only then may older checkpoints be deleted.
    StartClock {
        /// The application.
        app_id: AppId,
        /// The start clock.
        clock: Timestamp,
    },
    /// Change the DAG of a running streaming application (a client asks): answered with
    /// [`MasterReply::DagChanged`] once its AppMaster has checked the change and the masters
    /// recorded it, or refused with why (only one change at a time).
    ChangeDag {
        /// The application.
        app_id: AppId,
        /// The change.
        change: gearpump_core::DagChange,
    },
    /// An AppMaster's answer to [`MasterReply::ChangeDag`]: the change as applied (the
    /// masters record it, and the AppMaster restarts its tasks as the new DAG once they
    /// have), or why it was refused.
    DagChanged {
        /// The application.
        app_id: AppId,
        /// The version the change makes.
        version: u32,
        /// The change with its transit time, or why not.
        outcome: Result<gearpump_core::AppliedChange, String>,
    },
    /// The DAG changes recorded for an application, oldest first (a new AppMaster resumes
    /// the latest version): answered with [`MasterReply::DagChanges`].
    DagChanges {
        /// The application.
        app_id: AppId,
    },
    /// The end of a process's log (a client asks): the AppMaster's (`executor` -1) or an
    /// executor's, read on the worker that ran it; answered with [`MasterReply::Log`].
    ReadLog {
        /// The application.
        app_id: AppId,
        /// The executor (-1: the AppMaster).
        executor: i32,
        /// At most this many bytes, from the end.
        bytes: u32,
    },
    /// A worker's answer to [`WorkerCommand::ReadLog`].
    LogRead {
        /// The request it answers.
        request: u64,
        /// The log file.
        path: String,
        /// The text, or why it could not be read.
        result: Result<String, String>,
    },
    /// Kill an application (if it runs) and submit its binary and arguments again.
    RestartApp {
        /// The application.
        app_id: AppId,
    },
    /// A process a worker launched has exited.
    ProcessExited {
        /// The application.
        app_id: AppId,
        /// The executor (-1: the AppMaster).
        executor: i32,
        /// Its exit status, if it exited normally.
        code: Option<i32>,
    },
    /// Whether binary `id` is stored on a majority of the masters already (answered with
    /// [`MasterReply::ArtifactStored`] if so, else [`MasterReply::Ok`]: upload it).
    HasArtifact {
        /// The binary's content id.
        id: String,
    },
    /// Which master leads (answered by any master, leader or not).
    WhoLeads,
    /// A Raft message between masters: a postcard-encoded request of the masters' Raft
    /// (append entries, vote, snapshot), answered with [`MasterReply::Raft`].
    Raft {
        /// The encoded request.
        rpc: Vec<u8>,
    },
}

/// Something a worker is told to do (pushed to it at any time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerCommand {
    /// Start a process of an application binary.
    Launch {
        /// The application.
        app_id: AppId,
        /// The executor id (-1: the AppMaster).
        executor: i32,
        /// The binary.
        artifact: String,
        /// Its arguments.
        args: Vec<String>,
        /// Extra environment, as `(name, value)`.
        env: Vec<(String, String)>,
    },
    /// Read the end of a process's log and answer with [`MasterRequest::LogRead`].
    ReadLog {
        /// The request, to answer.
        request: u64,
        /// The application.
        app_id: AppId,
        /// The executor (-1: the AppMaster).
        executor: i32,
        /// At most this many bytes, from the end.
        bytes: u32,
    },
    /// End every process of an application: each one still running after `grace_ms` (time
    /// to finish exiting by itself) is killed; 0 kills at once.
    KillApp {
        /// The application.
        app_id: AppId,
        /// How long a process may take to exit by itself, in milliseconds.
        grace_ms: u64,
    },
}

/// The master's answers and notices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MasterReply {
    /// A worker's id.
    WorkerRegistered {
        /// The id.
        worker: WorkerId,
        /// How often to send heartbeats.
        heartbeat_interval_ms: u64,
    },
    /// The applications.
    Apps(Vec<AppInfo>),
    /// The workers.
    Workers(Vec<WorkerInfo>),
    /// A request succeeded.
    Ok,
    /// An upload finished; the binary's id.
    ArtifactStored {
        /// The id.
        id: String,
    },
    /// A chunk of an artifact.
    ArtifactData {
        /// The bytes.
        bytes: Vec<u8>,
        /// Whether it is the last chunk.
        last: bool,
    },
    /// An application was accepted.
    Submitted {
        /// Its id.
        app_id: AppId,
    },
    /// Slots granted: (worker, slots on it).
    Resources(Vec<(WorkerId, u32)>),
    /// Too few slots are free now: the request waits, and is granted with a
    /// [`MasterReply::Granted`] push once they are (in the scheduler's order).
    Queued,
    /// Pushed to an AppMaster: slots of a request that waited are its now.
    Granted(Vec<(WorkerId, u32)>),
    /// The answer to [`MasterRequest::ResolveAppMaster`].
    AppMaster {
        /// The application's kind ([`AppInfo::kind`]).
        kind: String,
        /// Where its AppMaster serves clients; `None`: it serves none (a streaming
        /// application's), or it is being relaunched.
        address: Option<SocketAddr>,
    },
    /// Pushed to a worker.
    Worker(WorkerCommand),
    /// Pushed to an AppMaster: stop the application.
    KillRequested,
    /// Pushed to an AppMaster: restart the tasks from the start clock.
    ReplayRequested,
    /// Pushed to an AppMaster: a client asks for this DAG change, to make DAG `version`.
    /// Answered with [`MasterRequest::DagChanged`].
    ChangeDag {
        /// The version it makes.
        version: u32,
        /// The change.
        change: gearpump_core::DagChange,
    },
    /// A DAG change is recorded and under way: the DAG version it made.
    DagChanged {
        /// The new version.
        version: u32,
    },
    /// The DAG changes recorded for an application, oldest first.
    DagChanges(Vec<gearpump_core::AppliedChange>),
    /// The end of a process's log.
    Log {
        /// The log file, on its worker.
        path: String,
        /// Its last bytes, from the start of a line.
        text: String,
    },
    /// The cluster as the REST API shows it.
    Snapshot(Box<ClusterSnapshot>),
    /// Metric points.
    Metrics(Vec<MetricPoint>),
    /// A request failed (storage, I/O, the masters' agreement): why.
    Error(String),
    /// The master refused the request.
    Refused(MasterError),
    /// This master does not lead (or leads without a majority behind it); ask the leader.
    NotLeader {
        /// The leader's `host:port`, if this master knows one.
        leader: Option<String>,
    },
    /// Who leads: the answer to [`MasterRequest::WhoLeads`].
    Leader {
        /// The leader's `host:port`, if there is one this master knows of.
        leader: Option<String>,
        /// The master that answers, `host:port`.
        me: String,
    },
    /// The answer to [`MasterRequest::Raft`]: a postcard-encoded Raft response.
    Raft {
        /// The encoded response.
        bytes: Vec<u8>,
    },
}

impl MasterReply {
    /// Whether the master sends this unasked (to a worker or an AppMaster), rather than as
    /// the answer to a request.
    pub fn is_push(&self) -> bool {
        matches!(
            self,
            MasterReply::Worker(_)
                | MasterReply::KillRequested
                | MasterReply::ReplayRequested
                | MasterReply::ChangeDag { .. }
                | MasterReply::Granted(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs both sides of the handshake over an in-memory pipe; their results.
    async fn handshake(
        client: &ClusterSecret,
        server: &ClusterSecret,
    ) -> (Result<(), ProtocolError>, Result<(), ProtocolError>) {
        let (a, b) = tokio::io::duplex(1 << 16);
        // Each side drops its end when done, as a real peer closes its socket.
        let client_side = async move {
            let (mut r, mut w) = tokio::io::split(a);
            client_handshake(&mut r, &mut w, client).await
        };
        let server_side = async move {
            let (mut r, mut w) = tokio::io::split(b);
            server_handshake(&mut r, &mut w, server, Duration::from_secs(5)).await
        };
        tokio::join!(client_side, server_side)
    }

    #[tokio::test]
    async fn the_handshake_admits_only_peers_with_the_same_secret_both_ways() {
        let s = ClusterSecret::new("the cluster secret, long").unwrap();
        let other = ClusterSecret::new("another secret entirely").unwrap();
        let none = ClusterSecret::none();
        let (c, v) = handshake(&s, &s).await;
        assert!(c.is_ok() && v.is_ok(), "{c:?} {v:?}");
        let (c, v) = handshake(&none, &none).await;
        assert!(c.is_ok() && v.is_ok(), "{c:?} {v:?}");
        // The client finds that a server with another secret, or none, cannot prove it holds
        // the client's; the server refuses the client's proof.
        for (client, server) in [(&s, &other), (&s, &none)] {
            let (c, v) = handshake(client, server).await;
            assert!(matches!(c, Err(ProtocolError::NotAuthenticated { secret_set: true })), "{c:?}");
            assert!(v.is_err());
        }
        // A client without the secret is refused by a server that has one, and told so.
        let (c, v) = handshake(&none, &s).await;
        assert!(matches!(c, Err(ProtocolError::NotAuthenticated { secret_set: false })), "{c:?}");
        assert!(v.is_err());
        assert!(c.unwrap_err().to_string().contains("gearpump.cluster.secret"));
    }

    #[tokio::test]
    async fn a_client_that_answers_with_a_wrong_proof_is_refused_and_told() {
        // A client that checks nothing and sends a made-up proof (an attacker).
        let s = ClusterSecret::new("the cluster secret, long").unwrap();
        let (a, b) = tokio::io::duplex(1 << 16);
        let (mut ar, mut aw) = tokio::io::split(a);
        let (mut br, mut bw) = tokio::io::split(b);
        let attacker = async {
            let mut hello = MAGIC.to_vec();
            hello.extend_from_slice(&VERSION.to_le_bytes());
            hello.extend_from_slice(&[7; PROOF_LEN]);
            aw.write_all(&hello).await.unwrap();
            let mut reply = [0u8; 6 + 2 * PROOF_LEN];
            ar.read_exact(&mut reply).await.unwrap();
            aw.write_all(&[9; PROOF_LEN]).await.unwrap();
            let mut verdict = [0u8; 1];
            ar.read_exact(&mut verdict).await.unwrap();
            verdict[0]
        };
        let (verdict, served) = tokio::join!(attacker, server_handshake(&mut br, &mut bw, &s, Duration::from_secs(5)));
        assert_eq!(verdict, REFUSED);
        assert!(matches!(served, Err(ProtocolError::NotAuthenticated { .. })), "{served:?}");
    }

    #[tokio::test]
    async fn messages_round_trip_and_garbage_is_named() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write_msg(&mut a, &MasterRequest::KillApp { app_id: AppId(3) }).await.unwrap();
        let got: MasterRequest = read_msg(&mut b).await.unwrap();
        assert_eq!(got, MasterRequest::KillApp { app_id: AppId(3) });

        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert!(matches!(read_magic(&mut b).await, Err(ProtocolError::BadHello { .. })));

        // Silence is cut off at the timeout.
        let (_a, b) = tokio::io::duplex(1 << 16);
        let (mut br, mut bw) = tokio::io::split(b);
        let silent = server_handshake(&mut br, &mut bw, &ClusterSecret::none(), Duration::from_millis(50)).await;
        assert!(matches!(silent, Err(ProtocolError::Timeout(_))), "{silent:?}");

        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
        assert!(matches!(read_msg::<_, MasterRequest>(&mut b).await, Err(ProtocolError::TooLarge(_))));

        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&[3, 0, 0, 0, 99, 99, 99]).await.unwrap();
        assert!(matches!(read_msg::<_, MasterRequest>(&mut b).await, Err(ProtocolError::Decode(_))));
        drop(a);
        assert!(matches!(read_msg::<_, MasterRequest>(&mut b).await, Err(ProtocolError::Closed)));
    }
}

/// What an executor tells its AppMaster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ExecutorReport {
    /// The executor is up; its data port.
    Register {
        /// Its id.
        executor: i32,
        /// Its data port.
        data_addr: std::net::SocketAddr,
        /// Its process id.
        pid: u32,
    },
    /// Its tasks are created and wired.
    Ready,
    /// Creating its tasks failed.
    LaunchFailed(String),
    /// A task's min clock.
    Clock {
        /// The task.
        task: TaskId,
        /// Its clock.
        clock: Timestamp,
    },
    /// A task failed.
    TaskFailed {
        /// The task.
        task: TaskId,
        /// The error.
        error: String,
    },
    /// A task stopped.
    TaskStopped {
        /// The task.
        task: TaskId,
    },
    /// Counters of its tasks, and its process's gauges.
    Counters(Vec<TaskCounters>, ProcessGauges),
    /// A task persisted its state at a time.
    Checkpointed {
        /// The task.
        task: TaskId,
        /// The checkpoint time.
        time: Timestamp,
        /// How big the state was, in bytes.
        bytes: u64,
        /// How long writing it took, in microseconds.
        took_us: u64,
    },
}

/// A complete checkpoint as the REST API shows it: its time, when its first task saved and
/// when it became complete, and what each task saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointInfo {
    /// The checkpoint (application) time.
    pub time: Timestamp,
    /// When the first task saved its state, ms since the epoch.
    pub started: i64,
    /// When the checkpoint became complete, ms since the epoch.
    pub completed: i64,
    /// What each task saved: the task, bytes, and microseconds writing took.
    pub tasks: Vec<(TaskId, u64, u64)>,
}

/// One task's counters, as an executor reports them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCounters {
    /// The task.
    pub task: TaskId,
    /// Messages received.
    pub received: u64,
    /// Messages sent.
    pub sent: u64,
    /// Receive-latency samples.
    pub latency_samples: u64,
    /// Receive latency, median, µs.
    pub latency_p50_us: u64,
    /// Receive latency, 99th percentile, µs.
    pub latency_p99_us: u64,
    /// Input messages queued.
    pub queued: u64,
    /// Time spent back-pressured, ns.
    pub blocked_ns: u64,
    /// The same per outgoing edge, by downstream processor id.
    #[serde(default)]
    pub edges_blocked_ns: Vec<(u32, u64)>,
    /// Its min clock.
    pub clock: Timestamp,
    /// Recent receive latency, ms.
    pub receive_latency: HistogramSummary,
    /// Recent processing time per message, ms.
    pub process_time: HistogramSummary,
}

/// A process's own gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessGauges {
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// Threads.
    pub threads: u64,
}

impl ProcessGauges {
    /// This process's gauges, from `/proc/self/status` (zeros where it cannot be read).
    pub fn of_this_process() -> ProcessGauges {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
                .unwrap_or(0)
        };
        ProcessGauges { rss_bytes: field("VmRSS:") * 1024, threads: field("Threads:") }
    }

    /// As metrics named `<scope>:memory.rss` and `<scope>:thread.count`.
    pub fn metrics(&self, scope: &str) -> Vec<Metric> {
        vec![
            Metric { name: format!("{scope}:memory.rss"), value: MetricValue::Gauge(self.rss_bytes as f64) },
            Metric { name: format!("{scope}:thread.count"), value: MetricValue::Gauge(self.threads as f64) },
        ]
    }
}

/// A processor as the REST API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessorInfo {
    /// Its id.
    pub id: u32,
    /// Its task type.
    pub task_type: String,
    /// Its tasks.
    pub parallelism: u32,
    /// Its description.
    pub description: String,
    /// Its life: first timestamp.
    pub birth: i64,
    /// Its life: the timestamp from which it no longer runs.
    pub death: i64,
    /// Whether a dynamic DAG change retired it (it runs no tasks).
    #[serde(default)]
    pub retired: bool,
}

/// An edge as the REST API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeInfo {
    /// Upstream processor.
    pub from: u32,
    /// Downstream processor.
    pub to: u32,
    /// The partitioner's name.
    pub partitioner: String,
    /// Back-pressure on the edge over the last report: the share of the upstream tasks' time
    /// during which a downstream task of the edge held too many of their messages un-acked,
    /// in thousandths.
    #[serde(default)]
    pub back_pressure_permille: u32,
}

/// An executor as the REST API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorInfo {
    /// Its id.
    pub id: i32,
    /// Its worker.
    pub worker: WorkerId,
    /// Its process id (0 if unknown).
    pub pid: u32,
    /// Its host.
    pub host: String,
    /// Its tasks.
    pub tasks: Vec<TaskId>,
    /// Whether it runs.
    pub status: ExecutorStatus,
}

/// Whether an executor runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorStatus {
    /// It runs its tasks.
    Active,
    /// Its process or connection was lost.
    Lost,
}

impl ExecutorStatus {
    /// `active` or `lost`, as the REST API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorStatus::Active => "active",
            ExecutorStatus::Lost => "lost",
        }
    }
}

/// A running application as its AppMaster describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRuntime {
    /// The application min clock.
    pub clock: Timestamp,
    /// The start clock: where the application restarts from after a failure.
    #[serde(default)]
    pub start_clock: Timestamp,
    /// How many times its tasks were restarted after failures.
    #[serde(default)]
    pub restarts: u32,
    /// The processors.
    pub processors: Vec<ProcessorInfo>,
    /// The edges.
    pub edges: Vec<EdgeInfo>,
    /// The executors.
    pub executors: Vec<ExecutorInfo>,
    /// Tasks holding the min clock back.
    pub stalling: Vec<TaskId>,
    /// The application's config.
    pub config: Vec<(String, String)>,
    /// The AppMaster's process id.
    pub appmaster_pid: u32,
    /// The DAG version: how many dynamic DAG changes were made.
    #[serde(default)]
    pub version: u32,
    /// The task types the application binary can run by name (what a DAG change may name).
    #[serde(default)]
    pub task_types: Vec<String>,
    /// Each live processor's clock (the min over its tasks), by processor id.
    #[serde(default)]
    pub processor_clocks: Vec<(u32, Timestamp)>,
    /// The latest failures the AppMaster recovered from (or ended with), oldest first.
    #[serde(default)]
    pub errors: Vec<AppErrorInfo>,
    /// The latest complete checkpoints, oldest first.
    #[serde(default)]
    pub checkpoints: Vec<CheckpointInfo>,
}

/// A failure an AppMaster saw: when, which task (none: an executor or process was lost), what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppErrorInfo {
    /// When, ms since the epoch.
    pub time: i64,
    /// The task that failed, if one did.
    pub task: Option<TaskId>,
    /// What happened.
    pub error: String,
}

/// The master as the REST API shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterSummary {
    /// This master, `host:port`.
    pub address: String,
    /// Every master of the cluster.
    pub members: Vec<String>,
    /// When it started, ms since the epoch.
    pub started: i64,
    /// Where binaries are stored.
    pub jar_store: String,
    /// Its log directory.
    pub log_dir: String,
    /// Its working directory.
    pub home: String,
    /// Its configuration, HOCON.
    pub config: String,
    /// The leading master, `host:port`, if one is known.
    pub leader: Option<String>,
    /// Whether this master's replicated state is in step with a majority of the masters.
    pub synced: bool,
}

/// A worker as the REST API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerDetail {
    /// The summary.
    pub info: WorkerInfo,
    /// When it registered, ms since the epoch.
    pub registered: i64,
    /// Its process id.
    pub pid: u32,
    /// Its configuration, HOCON.
    pub config: String,
    /// Its log directory.
    pub log_dir: String,
}

/// An application as the REST API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppDetail {
    /// The summary.
    pub info: AppInfo,
    /// What its AppMaster last reported.
    pub runtime: Option<AppRuntime>,
}

/// The cluster as the REST API shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSnapshot {
    /// The master.
    pub master: MasterSummary,
    /// The workers.
    pub workers: Vec<WorkerDetail>,
    /// The applications.
    pub apps: Vec<AppDetail>,
}

/// What an AppMaster tells an executor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ExecutorCommand {
    /// Create these tasks. `placement[i]` lists the tasks of executor `i`, reachable at
    /// `data_addrs[i]`.
    Assign {
        /// Every executor's tasks.
        placement: Vec<Vec<TaskId>>,
        /// Every executor's data port.
        data_addrs: Vec<std::net::SocketAddr>,
        /// The tasks' session.
        session: u32,
        /// Flow control: ack once every N messages.
        ack_once_every: u32,
        /// Flow control: most un-acked messages per target.
        max_pending: u32,
        /// The id of executor 0 of this placement (executor `i` has id `first_executor + i`:
        /// every restart of the application's tasks gets new executors).
        first_executor: i32,
        /// Where persistent tasks keep checkpoints (an absolute directory), if the application
        /// has any.
        checkpoints: Option<String>,
        /// The dynamic DAG changes to apply to the binary's application: the DAG the tasks
        /// belong to.
        changes: Vec<gearpump_core::AppliedChange>,
    },
    /// Start every task from this clock.
    Start {
        /// The start clock.
        clock: Timestamp,
    },
    /// A task's upstream min clock.
    UpstreamClock {
        /// The task.
        task: TaskId,
        /// The clock.
        clock: Timestamp,
    },
    /// Stop every task.
    Stop,
    /// Exit the process.
    Exit,
    /// The checkpoint at `time` is complete: tell every task.
    CheckpointComplete {
        /// The checkpoint time.
        time: Timestamp,
    },
}
