//! The masters' replicated state, kept consistent with Raft (openraft).
//!
//! What must survive the loss of a master is small and changes rarely: the applications (their
//! descriptions, status, the slots they hold, their AppMaster launches and start clock), the
//! next application and worker ids, and which binaries were uploaded. That is [`Replicated`];
//! the leader changes it only through log entries ([`Change`]) that a majority of the masters
//! has stored. What changes all the time (heartbeats, metrics, which connection is whose) stays
//! in the leader's memory and is rebuilt from workers and AppMasters when they re-register.
//!
//! - [`LogStore`]: the Raft log and vote in files under the master's data directory: one
//!   append-only file of checksummed records (fsync'd before an append is acknowledged; a torn
//!   last record is dropped on open), rewritten atomically on truncation and purge.
//! - [`StateMachine`]: [`Replicated`] in memory, snapshots in a file written atomically.
//! - [`Network`]: Raft messages as [`MasterRequest::Raft`] on the masters' control port.
//!
//! Node ids are positions in `gearpump.cluster.masters`, from 1.

// openraft's storage traits fix the error type (`StorageError`, large); the helpers here
// return it too so that `?` carries it.
#![allow(clippy::result_large_err)]

use crate::core::App;
use gearpump_config::HostPort;
use gearpump_core::AppId;
use gearpump_protocol::{MasterReply, MasterRequest};
use gearpump_storage::{BlobStore, LocalDir};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, LogState, RaftLogReader, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Cursor, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

openraft::declare_raft_types!(
    /// The masters' Raft: log entries are [`Change`]s.
    pub TypeConfig:
        D = Change,
        R = (),
);

/// The masters' Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;

/// A node id: the master's position in `gearpump.cluster.masters`, from 1.
pub type NodeId = u64;

/// An application as every master keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppMeta {
    /// The master core's record (without what belongs to the leader's connections).
    pub app: App,
    /// Its binary.
    pub artifact: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// How many executors it asked for (0: one per worker).
    pub executors: u32,
}

/// The state the masters replicate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replicated {
    /// The next application id.
    pub next_app: u32,
    /// The next worker id.
    pub next_worker: u32,
    /// Every application.
    pub apps: BTreeMap<AppId, AppMeta>,
    /// The ids of the uploaded binaries.
    pub artifacts: BTreeSet<String>,
}

/// One log entry: applications written whole, counters raised, binaries added.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Applications, replacing what was kept of them.
    pub apps: Vec<AppMeta>,
    /// The next application id, if it moved.
    pub next_app: Option<u32>,
    /// The next worker id, if it moved.
    pub next_worker: Option<u32>,
    /// Binaries now stored on a majority of the masters.
    pub artifacts: Vec<String>,
}

impl Change {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty() && self.next_app.is_none() && self.next_worker.is_none() && self.artifacts.is_empty()
    }
}

impl Replicated {
    /// Applies `change`. Counters only move forward.
    pub fn apply(&mut self, change: &Change) {
        for app in &change.apps {
            self.apps.insert(app.app.id, app.clone());
        }
        if let Some(n) = change.next_app {
            self.next_app = self.next_app.max(n);
        }
        if let Some(n) = change.next_worker {
            self.next_worker = self.next_worker.max(n);
        }
        self.artifacts.extend(change.artifacts.iter().cloned());
    }

    /// What turns `self` into `now`, for the parts a master changes.
    pub fn diff(&self, now: &Replicated) -> Change {
        Change {
            apps: now.apps.iter().filter(|(id, a)| self.apps.get(id) != Some(a)).map(|(_, a)| a.clone()).collect(),
            next_app: (now.next_app != self.next_app).then_some(now.next_app),
            next_worker: (now.next_worker != self.next_worker).then_some(now.next_worker),
            artifacts: now.artifacts.difference(&self.artifacts).cloned().collect(),
        }
    }
}

/// The Raft settings of the masters. A follower stands for election once the leader's lease
/// (`election_timeout_max`) and then its own random timeout (`election_timeout_min` to max)
/// have passed without a heartbeat: 1.3–1.6 s after a leader's last one (the guide's masters
/// took up to 15 s). Heartbeats every 150 ms, each allowed `RPC_LIMIT`, leave room for a
/// busy machine.
pub fn config() -> Arc<openraft::Config> {
    let config = openraft::Config {
        cluster_name: "gearpump-masters".into(),
        heartbeat_interval: 150,
        election_timeout_min: 500,
        election_timeout_max: 800,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(1000),
        max_in_snapshot_log_to_keep: 100,
        ..Default::default()
    };
    Arc::new(config.validate().expect("the masters' Raft settings are valid"))
}

/// How long the masters after the first wait, each, before standing for election when the
/// leader's process is found dead (so that two do not split the vote).
const STAND_AFTER: Duration = Duration::from_millis(200);

/// A Raft connection from another master closed. If that master leads and its process is
/// gone (see `probe`: its port refuses connections),
/// this master stands for election at once, instead of after the leader's lease and its own
/// election timeout (1.3–1.6 s of silence). The surviving masters stand one after another by
/// node id (`STAND_AFTER` apart), each only if no new leader has appeared by then. A leader
/// that is alive but unreachable (a partition) does not refuse connections: then the usual
/// timeouts decide, as before.
pub async fn on_peer_connection_closed(raft: Raft) {
    let before = raft.metrics().borrow().clone();
    let Some(leader) = before.current_leader.filter(|l| *l != before.id) else {
        tracing::debug!(leader = ?before.current_leader, "A Raft connection closed; no other master leads.");
        return;
    };
    let Some(addr) = before.membership_config.membership().get_node(&leader).map(|n| n.addr.clone()) else {
        return;
    };
    if let Probe::There(why) = probe(&addr).await {
        tracing::debug!(leader, %addr, %why, "A Raft connection closed; the leader's process is there.");
        return;
    }
    // Among the masters left, by id: the first stands now, the next a moment later.
    let rank = before.id.saturating_sub(1) - u64::from(leader < before.id);
    tokio::time::sleep(STAND_AFTER * rank as u32).await;
    let now = raft.metrics().borrow().clone();
    if now.current_leader.is_some_and(|l| l != leader) {
        tracing::debug!(leader = ?now.current_leader, "A new leader appeared before this master stood.");
        return;
    }
    tracing::warn!(leader, %addr, "The leading master's process is gone; standing for election now.");
    if let Err(e) = raft.trigger().elect().await {
        tracing::warn!(error = %e, "Standing for election failed.");
    }
}

/// What a probe of a master's port found.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    /// Its process is gone: the port refuses connections.
    Gone,
    /// It is there, for the reason given (a partitioned master's port times out).
    There(String),
}

/// Whether the process listening on `addr` is gone. A process being killed closes its
/// connections before its listening socket, whose backlog still completes a connection for a
/// few milliseconds and then hangs it up; so a connection taken and hung up without a word is
/// tried again a moment later. (A live master waits for this side to speak first; one whose
/// port is full hangs up every time, and counts as there.)
async fn probe(addr: &str) -> Probe {
    use tokio::io::AsyncReadExt;
    let gone = |e: &std::io::Error| {
        matches!(e.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset)
    };
    for _ in 0..5 {
        let connect = tokio::time::timeout(Duration::from_millis(300), tokio::net::TcpStream::connect(addr)).await;
        let mut tcp = match connect {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) if gone(&e) => return Probe::Gone,
            Ok(Err(e)) => return Probe::There(format!("connecting: {e}")),
            Err(_) => return Probe::There("connecting timed out".into()),
        };
        match tokio::time::timeout(Duration::from_millis(250), tcp.read(&mut [0u8; 1])).await {
            Ok(Ok(0)) => {}
            Ok(Err(e)) if gone(&e) => {}
            Ok(other) => return Probe::There(format!("it answered {other:?}")),
            Err(_) => return Probe::There("it took a connection and waited".into()),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Probe::There("it took connections and hung them up (a full port)".into())
}

/// The members of the masters' Raft: node ids and addresses.
pub fn members(masters: &[HostPort]) -> BTreeMap<NodeId, BasicNode> {
    masters.iter().enumerate().map(|(i, m)| (i as NodeId + 1, BasicNode::new(m.to_string()))).collect()
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn write_failed(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write(&io_err(e)).into()
}

fn read_failed(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::read(&io_err(e)).into()
}

/// A record of the log file: length, CRC-32, postcard-encoded entry.
fn encode_record(entry: &Entry<TypeConfig>) -> Result<Vec<u8>, StorageError<NodeId>> {
    Ok(frame_record(&postcard::to_stdvec(entry).map_err(write_failed)?))
}

/// `body` framed as a record: its length and CRC-32 first.
fn frame_record(body: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(body.len() + 8);
    record.extend_from_slice(&(body.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    record.extend_from_slice(body);
    record
}

/// The entries of a log file; a torn last record is dropped, a damaged one elsewhere is an
/// error naming the file.
fn decode_records(bytes: &[u8], path: &Path) -> Result<(Vec<Entry<TypeConfig>>, usize), StorageError<NodeId>> {
    let mut entries = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= 8 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        let Some(body) = bytes.get(at + 8..at + 8 + len) else { break };
        if crc32fast::hash(body) != crc {
            if at + 8 + len == bytes.len() {
                break; // the last record, torn
            }
            return Err(read_failed(format!("{}: record at byte {at} fails its checksum", path.display())));
        }
        let entry = postcard::from_bytes(body).map_err(|e| {
            let at = format!("{}: record at byte {at}", path.display());
            read_failed(format!("{at} does not decode ({e}); was it written by another version of gear?"))
        })?;
        entries.push(entry);
        at += 8 + len;
    }
    Ok((entries, at))
}

struct LogInner {
    blobs: LocalDir,
    path: PathBuf,
    file: std::fs::File,
    log: BTreeMap<u64, Entry<TypeConfig>>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
    purged: Option<LogId<NodeId>>,
}

impl LogInner {
    fn save<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StorageError<NodeId>> {
        let bytes = postcard::to_stdvec(value).map_err(write_failed)?;
        self.blobs.put(name, &mut &bytes[..]).map_err(write_failed)?;
        Ok(())
    }

    /// Writes the whole log anew (after a truncation or purge), atomically.
    fn rewrite(&mut self) -> Result<(), StorageError<NodeId>> {
        let mut bytes = Vec::new();
        for entry in self.log.values() {
            bytes.extend(encode_record(entry)?);
        }
        self.blobs.put("log", &mut &bytes[..]).map_err(write_failed)?;
        self.file = std::fs::OpenOptions::new().append(true).open(&self.path).map_err(write_failed)?;
        Ok(())
    }
}

fn load<T: for<'a> Deserialize<'a>>(blobs: &LocalDir, name: &str) -> Result<Option<T>, StorageError<NodeId>> {
    if !blobs.exists(name) {
        return Ok(None);
    }
    let (bytes, _) = blobs.read_at(name, 0, usize::MAX).map_err(read_failed)?;
    postcard::from_bytes(&bytes)
        .map(Some)
        .map_err(|e| read_failed(format!("{} is damaged: {e}", blobs.describe() + "/" + name)))
}

/// The Raft log and vote of one master, in files.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

impl LogStore {
    /// Opens (or creates) the log in directory `dir`.
    pub fn open(dir: &Path) -> Result<LogStore, StorageError<NodeId>> {
        let blobs = LocalDir::open(dir).map_err(write_failed)?;
        let path = dir.join("log");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(read_failed(e)),
        };
        let (entries, good) = decode_records(&bytes, &path)?;
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(write_failed)?;
        if good < bytes.len() {
            tracing::warn!(log = %path.display(), "Dropped a torn last record of the Raft log.");
            file.set_len(good as u64).map_err(write_failed)?;
        }
        let log = entries.into_iter().map(|e| (e.log_id.index, e)).collect();
        let inner = LogInner {
            vote: load(&blobs, "vote")?,
            committed: load(&blobs, "committed")?,
            purged: load(&blobs, "purged")?,
            blobs,
            path,
            file,
            log,
        };
        Ok(LogStore { inner: Arc::new(Mutex::new(inner)) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        self.inner.lock().expect("raft log lock")
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        Ok(self.lock().log.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.lock();
        let last = inner.log.values().next_back().map(|e| e.log_id).or(inner.purged);
        Ok(LogState { last_purged_log_id: inner.purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        inner.save("vote", vote)?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        match &committed {
            Some(c) => inner.save("committed", c)?,
            None => inner.blobs.delete("committed").map_err(write_failed)?,
        }
        inner.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.lock();
        let mut bytes = Vec::new();
        let entries: Vec<_> = entries.into_iter().collect();
        for entry in &entries {
            bytes.extend(encode_record(entry)?);
        }
        let written = inner.file.write_all(&bytes).and_then(|()| inner.file.sync_data());
        if let Err(e) = written {
            let err = write_failed(&e);
            callback.log_io_completed(Err(e));
            return Err(err);
        }
        for entry in entries {
            inner.log.insert(entry.log_id.index, entry);
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        inner.log.split_off(&log_id.index);
        inner.rewrite()
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        inner.save("purged", &log_id)?;
        inner.purged = Some(log_id);
        inner.log = inner.log.split_off(&(log_id.index + 1));
        inner.rewrite()
    }
}

/// What the state machine holds: the replicated state and how far it got.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Applied {
    last: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    state: Replicated,
}

/// A snapshot as stored: its metadata and the encoded [`Applied`].
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

/// The replicated state of one master, readable by the master while Raft applies to it.
#[derive(Clone)]
pub struct StateMachine {
    applied: Arc<RwLock<Applied>>,
    blobs: Arc<LocalDir>,
    /// Told each binary id that a change adds (a master that lacks one fetches it).
    artifacts: tokio::sync::mpsc::UnboundedSender<String>,
}

impl StateMachine {
    /// The state machine kept in `dir`, starting from its snapshot there if any; binaries that
    /// changes add are sent on `artifacts`.
    pub fn open(
        dir: &Path,
        artifacts: tokio::sync::mpsc::UnboundedSender<String>,
    ) -> Result<StateMachine, StorageError<NodeId>> {
        let blobs = LocalDir::open(dir).map_err(write_failed)?;
        let mut applied = Applied::default();
        if let Some(snapshot) = load::<StoredSnapshot>(&blobs, "snapshot")? {
            applied = postcard::from_bytes(&snapshot.data).map_err(read_failed)?;
            for id in &applied.state.artifacts {
                let _ = artifacts.send(id.clone());
            }
        }
        Ok(StateMachine { applied: Arc::new(RwLock::new(applied)), blobs: Arc::new(blobs), artifacts })
    }

    /// The replicated state as applied so far.
    pub fn state(&self) -> Replicated {
        self.applied.read().expect("state machine lock").state.clone()
    }

    fn snapshot_of(&self, applied: &Applied) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let data = postcard::to_stdvec(applied).map_err(write_failed)?;
        let meta = SnapshotMeta {
            last_log_id: applied.last,
            last_membership: applied.membership.clone(),
            snapshot_id: format!(
                "{}-{}",
                applied.last.map_or(0, |l| l.leader_id.term),
                applied.last.map_or(0, |l| l.index)
            ),
        };
        let stored =
            postcard::to_stdvec(&StoredSnapshot { meta: meta.clone(), data: data.clone() }).map_err(write_failed)?;
        self.blobs.put("snapshot", &mut &stored[..]).map_err(write_failed)?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let applied = self.applied.read().expect("state machine lock").clone();
        self.snapshot_of(&applied)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>> {
        let applied = self.applied.read().expect("state machine lock");
        Ok((applied.last, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut applied = self.applied.write().expect("state machine lock");
        let mut results = Vec::new();
        for entry in entries {
            applied.last = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(change) => {
                    for id in &change.artifacts {
                        let _ = self.artifacts.send(id.clone());
                    }
                    applied.state.apply(&change);
                }
                EntryPayload::Membership(m) => applied.membership = StoredMembership::new(Some(entry.log_id), m),
            }
            results.push(());
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let applied: Applied = postcard::from_bytes(&data).map_err(read_failed)?;
        let stored = postcard::to_stdvec(&StoredSnapshot { meta: meta.clone(), data }).map_err(write_failed)?;
        self.blobs.put("snapshot", &mut &stored[..]).map_err(write_failed)?;
        for id in &applied.state.artifacts {
            let _ = self.artifacts.send(id.clone());
        }
        *self.applied.write().expect("state machine lock") = applied;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(load::<StoredSnapshot>(&self.blobs, "snapshot")?
            .map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}

/// A Raft request between masters.
#[derive(Serialize, Deserialize)]
pub enum Rpc {
    /// Append entries (and heartbeats).
    Append(AppendEntriesRequest<TypeConfig>),
    /// Ask for a vote.
    Vote(VoteRequest<NodeId>),
    /// A piece of a snapshot.
    Snapshot(InstallSnapshotRequest<TypeConfig>),
}

/// Answers a Raft request from another master: the encoded response, led by the number of
/// the call it answers (see [`Connection`]).
pub async fn serve_rpc(raft: &Raft, rpc: &[u8]) -> Vec<u8> {
    let Ok((call, rest)) = postcard::take_from_bytes::<u64>(rpc) else { return Vec::new() };
    let encoded = match postcard::from_bytes::<Rpc>(rest) {
        Err(e) => postcard::to_stdvec(&(call, Err::<(), String>(format!("undecodable Raft request: {e}")))),
        Ok(Rpc::Append(req)) => postcard::to_stdvec(&(call, Ok::<_, String>(raft.append_entries(req).await))),
        Ok(Rpc::Vote(req)) => postcard::to_stdvec(&(call, Ok::<_, String>(raft.vote(req).await))),
        Ok(Rpc::Snapshot(req)) => postcard::to_stdvec(&(call, Ok::<_, String>(raft.install_snapshot(req).await))),
    };
    encoded.unwrap_or_default()
}

/// Makes [`Connection`]s to the other masters.
pub struct Network {
    /// The cluster secret the other masters must hold.
    pub secret: gearpump_protocol::ClusterSecret,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        Connection { target, addr: node.addr.clone(), client: None, secret: self.secret.clone(), calls: 0 }
    }
}

/// Raft messages to one other master, on one control connection (made again when it fails).
///
/// Every call is numbered and its answer must carry the same number, or the connection is
/// dropped and the call fails as unreachable. Raft is only safe if an answer is never taken
/// for another request's: a late "success" of a heartbeat read as the answer to an append
/// makes the leader count entries a follower never stored, and commit them without a
/// majority. (Before calls took their connection with them, a call openraft cancelled left
/// its late answer for the next call to read; a follower then met a log entry below its
/// commit index that differed from its own, and openraft's debug assertion in `has_log_id`
/// fired. The numbers make any such pairing fail loudly instead.)
pub struct Connection {
    target: NodeId,
    addr: String,
    client: Option<super::MasterClient>,
    secret: gearpump_protocol::ClusterSecret,
    /// The number of the last call.
    calls: u64,
}

impl Connection {
    async fn call<Resp, E>(&mut self, rpc: Rpc, timeout: Duration) -> Result<Resp, RPCError<NodeId, BasicNode, E>>
    where
        Resp: for<'a> Deserialize<'a>,
        E: std::error::Error + for<'a> Deserialize<'a>,
    {
        let unreachable = |e: &dyn std::fmt::Display| RPCError::Unreachable(Unreachable::new(&io_err(e)));
        self.calls += 1;
        let call = self.calls;
        let bytes = postcard::to_stdvec(&(call, rpc)).map_err(|e| RPCError::Network(NetworkError::new(&io_err(e))))?;
        // The connection is out of `self` while a call uses it, and goes back only once the
        // answer is in: a call openraft gives up on (its own, shorter heartbeat limit drops
        // this future) takes the connection with it, so the next call does not read that
        // call's late answer, nor wait on a socket stuck in retransmission backoff after a
        // partition (which kept a healed leader from rejoining for minutes).
        let mut client = match self.client.take() {
            Some(client) => client,
            None => {
                let addr: HostPort = self.addr.parse().map_err(|e: String| unreachable(&e))?;
                let connect = super::MasterClient::connect_direct(&addr, &self.secret);
                tokio::time::timeout(timeout, connect)
                    .await
                    .map_err(|_| unreachable(&"connecting timed out"))?
                    .map_err(|e| unreachable(&e))?
            }
        };
        let reply = client.ask(&MasterRequest::Raft { rpc: bytes }, timeout).await.map_err(|e| unreachable(&e))?;
        let MasterReply::Raft { bytes } = reply else {
            return Err(unreachable(&format!("master {} answered {reply:?}", self.addr)));
        };
        let answered = postcard::take_from_bytes::<u64>(&bytes).map(|(n, _)| n).ok();
        if answered != Some(call) {
            let answered = answered.map_or("no call".to_string(), |n| format!("call {n}"));
            return Err(unreachable(&format!("master {} answered {answered} to call {call}", self.addr)));
        }
        self.client = Some(client);
        match postcard::from_bytes::<(u64, Result<Result<Resp, E>, String>)>(&bytes).map(|(_, r)| r) {
            Ok(Ok(Ok(resp))) => Ok(resp),
            Ok(Ok(Err(e))) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Ok(Err(e)) => Err(RPCError::Network(NetworkError::new(&io_err(e)))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&io_err(e)))),
        }
    }
}

/// The least time a Raft message may take: openraft's own limit for a heartbeat is its
/// interval, which a loaded machine misses, and a missed answer costs the connection.
const RPC_LIMIT: Duration = Duration::from_millis(700);

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Rpc::Append(rpc), option.hard_ttl().max(RPC_LIMIT)).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.call(Rpc::Snapshot(rpc), option.hard_ttl().max(RPC_LIMIT)).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Rpc::Vote(rpc), option.hard_ttl().max(RPC_LIMIT)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gearpump_core::WorkerId;

    /// A master stand-in on 127.0.0.1 that answers every Raft call with `answer(call)`: the
    /// call number to put on the answer, a delay and whether the follower agreed.
    async fn peer(answer: fn(u64) -> (u64, Duration, bool)) -> String {
        use gearpump_protocol::{ClusterSecret, accept_control, read_msg, write_msg};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) =
                        accept_control(tcp, &ClusterSecret::none(), Duration::from_secs(5)).await.unwrap();
                    while let Ok(MasterRequest::Raft { rpc }) = read_msg(&mut r).await {
                        let (call, _) = postcard::take_from_bytes::<u64>(&rpc).unwrap();
                        let (number, delay, agreed) = answer(call);
                        tokio::time::sleep(delay).await;
                        let resp = if agreed {
                            AppendEntriesResponse::<NodeId>::Success
                        } else {
                            AppendEntriesResponse::Conflict
                        };
                        let answer = Ok::<_, String>(Ok::<_, RaftError<NodeId>>(resp));
                        let bytes = postcard::to_stdvec(&(number, answer)).unwrap();
                        if write_msg(&mut w, &MasterReply::Raft { bytes }).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn heartbeat() -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: None,
            leader_commit: None,
            entries: vec![],
        }
    }

    async fn connection(addr: String) -> Connection {
        let mut network = Network { secret: gearpump_protocol::ClusterSecret::none() };
        network.new_client(2, &BasicNode { addr }).await
    }

    #[tokio::test]
    async fn a_leader_is_gone_when_its_port_refuses_not_when_it_waits_or_is_full() {
        // Nothing listens: gone.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap().to_string();
        drop(closed);
        assert_eq!(probe(&addr).await, Probe::Gone);
        // A live master takes the connection and waits for a hello: there.
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = live.local_addr().unwrap().to_string();
        let held = tokio::spawn(async move {
            let mut kept = Vec::new();
            while let Ok((tcp, _)) = live.accept().await {
                kept.push(tcp);
            }
        });
        assert_eq!(probe(&addr).await, Probe::There("it took a connection and waited".into()));
        held.abort();
        // A full port hangs up every connection at once: there, all the same.
        let full = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = full.local_addr().unwrap().to_string();
        let hangs_up = tokio::spawn(async move {
            while let Ok((tcp, _)) = full.accept().await {
                drop(tcp);
            }
        });
        assert_eq!(probe(&addr).await, Probe::There("it took connections and hung them up (a full port)".into()));
        hangs_up.abort();
    }

    #[tokio::test]
    async fn a_call_cancelled_before_its_answer_leaves_that_answer_to_no_other_call() {
        // The first call is answered late, and with a conflict; the second at once, agreed.
        let addr = peer(|call| (call, Duration::from_millis(if call == 1 { 400 } else { 0 }), call != 1)).await;
        let mut conn = connection(addr).await;
        let option = RPCOption::new(Duration::from_secs(5));
        let cancelled = tokio::time::timeout(Duration::from_millis(50), conn.append_entries(heartbeat(), option)).await;
        assert!(cancelled.is_err(), "the first call was cancelled");
        let option = RPCOption::new(Duration::from_secs(5));
        let second = conn.append_entries(heartbeat(), option).await.expect("the second call is answered");
        assert_eq!(second, AppendEntriesResponse::Success, "the second call got its own answer");
    }

    #[tokio::test]
    async fn an_answer_numbered_for_another_call_fails_the_call_and_drops_the_connection() {
        let addr = peer(|call| (call + 1, Duration::ZERO, true)).await;
        let mut conn = connection(addr).await;
        let option = RPCOption::new(Duration::from_secs(5));
        let err = conn.append_entries(heartbeat(), option).await.expect_err("a wrongly numbered answer");
        assert!(matches!(err, RPCError::Unreachable(_)), "{err}");
        assert!(err.to_string().contains("answered call 2 to call 1"), "{err}");
        assert!(conn.client.is_none(), "the connection is dropped");
    }

    fn app(id: u32, status: &str) -> AppMeta {
        let app = App {
            id: AppId(id),
            name: format!("a{id}"),
            kind: "streaming".into(),
            priority: Default::default(),
            user: "u".into(),
            status: gearpump_core::AppStatus::from_name(status).expect("a status"),
            submission_time: gearpump_core::Timestamp(1),
            start_time: None,
            finish_time: None,
            error: None,
            worker: WorkerId(1),
            tasks: 1,
            held: vec![(WorkerId(1), 2)],
            appmaster_launches: 1,
            appmaster_exits: 0,
            appmaster: None,
            address: None,
            start_clock: gearpump_core::Timestamp(0),
            dag_changes: Vec::new(),
            change_asked_by: None,
        };
        AppMeta { app, artifact: "abc".into(), args: vec![], executors: 0 }
    }

    #[test]
    fn a_diff_applied_gives_the_new_state() {
        let mut before = Replicated { next_app: 2, next_worker: 3, ..Default::default() };
        before.apps.insert(AppId(1), app(1, "active"));
        let mut after = before.clone();
        after.apps.get_mut(&AppId(1)).unwrap().app.start_clock = gearpump_core::Timestamp(500);
        after.apps.insert(AppId(2), app(2, "pending"));
        after.next_app = 3;
        after.artifacts.insert("abc".into());
        let change = before.diff(&after);
        assert_eq!(change.apps.len(), 2);
        assert_eq!((change.next_app, change.next_worker), (Some(3), None));
        let mut applied = before.clone();
        applied.apply(&change);
        assert_eq!(applied, after);
        assert!(after.diff(&after).is_empty());
        // A DAG change is part of the application the masters replicate, and survives the
        // log's encoding: a new leader resumes the latest DAG version.
        let mut changed = after.clone();
        let rescale = gearpump_core::DagChange::Rescale { processor_id: gearpump_core::ProcessorId(1), parallelism: 4 };
        let applied_change = gearpump_core::AppliedChange { change: rescale, transit: gearpump_core::Timestamp(700) };
        changed.apps.get_mut(&AppId(1)).unwrap().app.dag_changes.push(applied_change);
        let change = after.diff(&changed);
        let decoded: Change = postcard::from_bytes(&postcard::to_stdvec(&change).unwrap()).unwrap();
        let mut follower = after.clone();
        follower.apply(&decoded);
        assert_eq!(follower, changed);
    }

    fn entry(term: u64, index: u64, n: u32) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(Change { next_app: Some(n), ..Default::default() }),
        }
    }

    #[test]
    fn the_log_survives_a_reopen_drops_a_torn_tail_and_names_a_damaged_record() {
        let dir = std::env::temp_dir().join(format!("gear-raft-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut bytes = Vec::new();
        for i in 1..=3 {
            bytes.extend(encode_record(&entry(1, i, i as u32)).unwrap());
        }
        let (entries, good) = decode_records(&bytes, &dir).unwrap();
        assert_eq!((entries.len(), good), (3, bytes.len()));
        // A torn last record is dropped.
        let (entries, good) = decode_records(&bytes[..bytes.len() - 3], &dir).unwrap();
        assert_eq!(entries.len(), 2);
        std::fs::write(dir.join("log"), &bytes[..bytes.len() - 3]).unwrap();
        let store = LogStore::open(&dir).unwrap();
        assert_eq!(store.lock().log.len(), 2);
        assert_eq!(std::fs::metadata(dir.join("log")).unwrap().len(), good as u64);
        drop(store);
        // A damaged record before the end is an error naming the file.
        let mut damaged = bytes.clone();
        damaged[10] ^= 0xff;
        let err = decode_records(&damaged, &dir.join("log")).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        // A sound record this version cannot read (another version's) names the file too.
        let foreign = frame_record(&[0xff; 3]);
        let err = decode_records(&foreign, &dir.join("log")).unwrap_err().to_string();
        let named = format!("{}: record at byte 0 does not decode", dir.join("log").display());
        assert!(err.contains(&named), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A fresh directory, removed when dropped.
    struct TempDir(PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn temp_dir(what: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("gear-raft-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    struct Builder;
    impl openraft::testing::StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
        async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<NodeId>> {
            let dir = temp_dir("suite");
            let (tx, _) = tokio::sync::mpsc::unbounded_channel();
            let log = LogStore::open(&dir.0)?;
            let sm = StateMachine::open(&dir.0, tx)?;
            Ok((dir, log, sm))
        }
    }

    /// openraft's own conformance suite for log stores and state machines.
    #[test]
    fn the_stores_pass_openraft_s_storage_suite() {
        openraft::testing::Suite::test_all(Builder).unwrap();
    }

    #[tokio::test]
    async fn log_vote_and_snapshot_survive_a_restart() {
        use openraft::storage::RaftLogStorageExt;
        let dir = temp_dir("restart");
        let (tx, mut artifacts) = tokio::sync::mpsc::unbounded_channel();
        {
            let mut log = LogStore::open(&dir.0).unwrap();
            let mut sm = StateMachine::open(&dir.0, tx.clone()).unwrap();
            let vote = Vote::new(3, 2);
            log.save_vote(&vote).await.unwrap();
            log.blocking_append((1..=5).map(|i| entry(3, i, i as u32))).await.unwrap();
            let mut add = entry(3, 6, 9);
            add.payload = EntryPayload::Normal(Change { artifacts: vec!["bin-1".into()], ..Default::default() });
            log.blocking_append([add.clone()]).await.unwrap();
            sm.apply((1..=5).map(|i| entry(3, i, i as u32)).chain([add])).await.unwrap();
            sm.build_snapshot().await.unwrap();
            // Entries up to 4 are in the snapshot; a conflict replaces 6.
            log.purge(LogId::new(openraft::CommittedLeaderId::new(3, 1), 4)).await.unwrap();
            log.truncate(LogId::new(openraft::CommittedLeaderId::new(3, 1), 6)).await.unwrap();
            log.blocking_append([entry(4, 6, 7)]).await.unwrap();
        }
        assert_eq!(artifacts.recv().await.unwrap(), "bin-1");
        let mut log = LogStore::open(&dir.0).unwrap();
        let mut sm = StateMachine::open(&dir.0, tx).unwrap();
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 2)));
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(4));
        assert_eq!(state.last_log_id.map(|l| (l.leader_id.term, l.index)), Some((4, 6)));
        let entries = log.try_get_log_entries(0..100).await.unwrap();
        assert_eq!(entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), [5, 6]);
        // The state machine starts from its snapshot, which names the binary again.
        let (applied, _) = sm.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(6));
        assert_eq!(sm.state().next_app, 5);
        assert!(sm.state().artifacts.contains("bin-1"));
        assert_eq!(artifacts.recv().await.unwrap(), "bin-1");
    }
}
