//! The networked daemons.
//!
//! - [`master`]: the master: workers, applications, slots, the artifact store.
//! - [`worker`]: registers with a master, sends heartbeats, launches the processes of
//!   application binaries (AppMasters and executors) and reports their exits.
//! - [`artifacts`]: the store of uploaded application binaries.
//! - [`MasterClient`] (one request, one answer) and [`DuplexClient`] (requests, answers and
//!   pushes on one connection, for workers and AppMasters).
//!
//! The master notices a dead worker at once when its connection closes, and within
//! `gearpump.cluster.worker-timeout-ms` when it goes silent. A worker that loses its master
//! keeps trying and exits after `gearpump.cluster.master-timeout-ms`.

pub mod artifacts;
pub mod master;
pub mod raft;
pub mod reporter;
mod submit;
pub mod worker;

pub use master::{MasterOptions, MasterStartError, run_master};
pub use submit::{SubmitBinaryError, SubmitOptions, submit_binary};
pub use worker::{WorkerSettings, run_worker};

use gearpump_config::{GearConfig, HostPort};
use gearpump_protocol::{ClusterSecret, ControlStream, MasterReply, MasterRequest, ProtocolError, read_msg, write_msg};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Timing settings of the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlTiming {
    /// How often workers send heartbeats.
    pub heartbeat_interval: Duration,
    /// Silence after which a worker is dead.
    pub worker_timeout: Duration,
    /// How long a worker tries to reach a master before it exits.
    pub master_timeout: Duration,
}

impl ControlTiming {
    /// The timing `gear.conf` gives.
    pub fn from_config(conf: &GearConfig) -> Result<Self, gearpump_config::ConfigError> {
        Ok(Self::from_settings(&conf.settings()?))
    }

    /// The timing of typed settings.
    pub fn from_settings(s: &gearpump_config::Settings) -> Self {
        ControlTiming {
            heartbeat_interval: s.heartbeat_interval,
            worker_timeout: s.worker_timeout,
            master_timeout: s.master_timeout,
        }
    }
}

/// How long a client looks for the leading master (an election takes about a second).
pub const LEADER_PATIENCE: Duration = Duration::from_secs(10);

/// How long connecting to a master may take (a master behind a partition never answers).
const CONNECT_LIMIT: Duration = Duration::from_secs(2);

/// `gearpump.network.*` of `conf`: what every listening port of a daemon, AppMaster or
/// executor allows.
pub fn port_limits(conf: &GearConfig) -> Result<gearpump_protocol::PortLimits, gearpump_config::ConfigError> {
    let (max_connections, hello_timeout) = conf.port_limits()?;
    Ok(gearpump_protocol::PortLimits { max_connections: max_connections as usize, hello_timeout })
}

/// Makes a dead peer show as an error within seconds on a connection that waits for it: a
/// master or client cut off by a partition sends no FIN, and without this a connection to it
/// would wait for TCP's retransmissions for a quarter of an hour.
pub fn detect_dead_peer(stream: &TcpStream) -> std::io::Result<()> {
    let sock = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(1))
        .with_interval(Duration::from_secs(1))
        .with_retries(3);
    sock.set_tcp_keepalive(&keepalive)?;
    sock.set_tcp_user_timeout(Some(Duration::from_secs(5)))
}

/// Connects to the master at `m` and proves this node holds `secret` (the master proves it
/// too).
async fn connect_to(m: &HostPort, secret: &ClusterSecret) -> Result<ControlStream, ProtocolError> {
    let tcp = tokio::time::timeout(CONNECT_LIMIT, TcpStream::connect((m.host.as_str(), m.port)))
        .await
        .map_err(|_| ProtocolError::Timeout(CONNECT_LIMIT))??;
    detect_dead_peer(&tcp)?;
    let (r, w) = tokio::time::timeout(CONNECT_LIMIT, gearpump_protocol::open_control(tcp, &m.host, secret))
        .await
        .map_err(|_| ProtocolError::Timeout(CONNECT_LIMIT))??;
    Ok(r.unsplit(w))
}

/// Asks the master on `stream` which master leads.
async fn who_leads(stream: &mut ControlStream) -> Result<(Option<String>, String), ProtocolError> {
    let exchange = async {
        write_msg(stream, &MasterRequest::WhoLeads).await?;
        read_msg::<_, MasterReply>(stream).await
    };
    match tokio::time::timeout(Duration::from_secs(2), exchange).await {
        Ok(Ok(MasterReply::Leader { leader, me })) => Ok((leader, me)),
        Ok(Ok(other)) => Err(ProtocolError::Decode(format!("unexpected answer to WhoLeads: {other:?}"))),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ProtocolError::Timeout(Duration::from_secs(2))),
    }
}

/// Connects to the leading master: asks the masters of `masters` in turn which one leads and
/// follows the answer; while an election runs (no master knows a leader), tries again, for up
/// to [`LEADER_PATIENCE`].
async fn connect_leader(
    masters: &[HostPort],
    secret: &ClusterSecret,
) -> Result<(ControlStream, HostPort), ProtocolError> {
    let deadline = tokio::time::Instant::now() + LEADER_PATIENCE;
    let mut last = ProtocolError::Closed;
    loop {
        let mut reached = false;
        for m in masters {
            let mut stream = match connect_to(m, secret).await {
                Ok(stream) => stream,
                // Asking again will not change the secret or the certificates: say so at once.
                Err(e) if e.is_permanent() => {
                    tracing::error!(master = %m, error = %e, "Cannot speak with the master.");
                    return Err(e);
                }
                Err(e) => {
                    last = ProtocolError::Io(std::io::Error::other(format!("{m}: {e}")));
                    continue;
                }
            };
            reached = true;
            let (leader, me) = match who_leads(&mut stream).await {
                Ok(answer) => answer,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            match leader {
                Some(l) if l == me => return Ok((stream, m.clone())),
                Some(l) => {
                    // Follow the answer, even to a master missing from this list.
                    let Ok(addr) = l.parse::<HostPort>() else { continue };
                    if let Ok(mut stream) = connect_to(&addr, secret).await
                        && let Ok((Some(l2), me2)) = who_leads(&mut stream).await
                        && l2 == me2
                    {
                        return Ok((stream, addr));
                    }
                }
                None => {}
            }
            last = ProtocolError::NoLeader(format!("{me} knows no leader yet"));
        }
        if tokio::time::Instant::now() >= deadline {
            let list: Vec<String> = masters.iter().map(ToString::to_string).collect();
            let what = if reached { "none of them leads with a majority" } else { "no master answers" };
            return Err(ProtocolError::NoLeader(format!(
                "asked {} for {LEADER_PATIENCE:?}: {what} (last: {last})",
                list.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asks the leading master of `masters`, waiting at most `timeout` for the answer; a master
/// that stopped leading between the connection and the question is asked again (through the
/// new leader), for up to [`LEADER_PATIENCE`].
pub async fn ask_leader(
    masters: &[HostPort],
    secret: &ClusterSecret,
    req: &MasterRequest,
    timeout: Duration,
) -> Result<MasterReply, ProtocolError> {
    let deadline = tokio::time::Instant::now() + LEADER_PATIENCE;
    loop {
        let mut client = MasterClient::connect(masters, secret).await?;
        match client.ask(req, timeout).await? {
            MasterReply::NotLeader { .. } if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            reply => return Ok(reply),
        }
    }
}

/// A client connection to a master: one request, one answer. An answer that does not come in
/// time leaves the connection unusable (a late one would be taken for the next request's).
pub struct MasterClient {
    /// `None` once an answer did not come in time.
    stream: Option<ControlStream>,
    /// The master it is connected to.
    pub master: HostPort,
}

impl MasterClient {
    /// Connects to the leading master of `masters` (see [`LEADER_PATIENCE`]), proving this
    /// node holds the cluster `secret`.
    pub async fn connect(masters: &[HostPort], secret: &ClusterSecret) -> Result<MasterClient, ProtocolError> {
        let (stream, master) = connect_leader(masters, secret).await?;
        Ok(MasterClient { stream: Some(stream), master })
    }

    /// Connects to the master at `master`, leader or not (masters among themselves).
    pub async fn connect_direct(master: &HostPort, secret: &ClusterSecret) -> Result<MasterClient, ProtocolError> {
        Ok(MasterClient { stream: Some(connect_to(master, secret).await?), master: master.clone() })
    }

    /// Sends a request and waits for the answer, at most `timeout`; past that the connection
    /// is closed.
    pub async fn ask(&mut self, req: &MasterRequest, timeout: Duration) -> Result<MasterReply, ProtocolError> {
        let stream = self.stream.as_mut().ok_or(ProtocolError::Closed)?;
        let exchange = async {
            write_msg(stream, req).await?;
            read_msg(stream).await
        };
        let answer = tokio::time::timeout(timeout, exchange).await;
        answer.map_err(|_| {
            self.stream = None;
            ProtocolError::Timeout(timeout)
        })?
    }

    /// Uploads a binary in chunks that `chunk(offset)` gives as (bytes, whether last);
    /// returns its id, or what the master answered instead.
    pub async fn upload_artifact(
        &mut self,
        mut chunk: impl FnMut(u64) -> std::io::Result<(Vec<u8>, bool)>,
    ) -> Result<Result<String, MasterReply>, ProtocolError> {
        let mut offset = 0;
        loop {
            let (bytes, last) = chunk(offset)?;
            offset += bytes.len() as u64;
            match self.ask(&MasterRequest::UploadArtifact { bytes, last }, ARTIFACT_CHUNK_LIMIT).await? {
                MasterReply::Ok if !last => {}
                MasterReply::ArtifactStored { id } if last => return Ok(Ok(id)),
                other => return Ok(Err(other)),
            }
        }
    }

    /// Fetches binary `id`, giving its chunks to `sink` in order; `Ok(Err(answer))` if the
    /// master answered something else (it lacks the binary).
    pub async fn fetch_artifact(
        &mut self,
        id: &str,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<Result<(), MasterReply>, ProtocolError> {
        let mut offset = 0;
        loop {
            let req = MasterRequest::FetchArtifact { id: id.to_string(), offset };
            match self.ask(&req, ARTIFACT_CHUNK_LIMIT).await? {
                MasterReply::ArtifactData { bytes, last } => {
                    sink(&bytes)?;
                    offset += bytes.len() as u64;
                    if last {
                        return Ok(Ok(()));
                    }
                }
                other => return Ok(Err(other)),
            }
        }
    }
}

/// How long one chunk of a binary may take to cross to or from a master.
const ARTIFACT_CHUNK_LIMIT: Duration = Duration::from_secs(120);

/// A connection on which the master also pushes: answers come in request order on one
/// channel, pushes ([`MasterReply::is_push`]) on another. An answer that does not come in
/// time closes the connection (a late one would be taken for the next request's).
pub struct DuplexClient {
    requests: mpsc::UnboundedSender<MasterRequest>,
    replies: mpsc::UnboundedReceiver<MasterReply>,
    /// The tasks that write and read the connection.
    tasks: [tokio::task::JoinHandle<()>; 2],
    /// The master it is connected to.
    pub master: HostPort,
}

impl Drop for DuplexClient {
    fn drop(&mut self) {
        // What was told still goes out (the writer ends once it has written it); nothing more
        // is read.
        self.tasks[1].abort();
    }
}

impl DuplexClient {
    /// Connects to the leading master; returns the client and the channel of pushes. Both end
    /// when the connection does (as it does when that master stops leading).
    pub async fn connect(
        masters: &[HostPort],
        secret: &ClusterSecret,
    ) -> Result<(DuplexClient, mpsc::UnboundedReceiver<MasterReply>), ProtocolError> {
        let (stream, master) = connect_leader(masters, secret).await?;
        let (mut rd, wr) = tokio::io::split(stream);
        let (requests, writer) = gearpump_protocol::spawn_writer(wr);
        let (reply_tx, replies) = mpsc::unbounded_channel();
        let (push_tx, pushes) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            while let Ok(msg) = read_msg::<_, MasterReply>(&mut rd).await {
                let is_push = msg.is_push();
                let sent = if is_push { push_tx.send(msg).is_ok() } else { reply_tx.send(msg).is_ok() };
                if !sent {
                    break;
                }
            }
        });
        Ok((DuplexClient { requests, replies, tasks: [writer, reader], master }, pushes))
    }

    /// Closes the connection: asks fail from now on and the pushes end.
    fn close(&mut self) {
        self.tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }

    /// Sends a request that gets no answer.
    pub fn tell(&self, req: MasterRequest) -> Result<(), ProtocolError> {
        self.requests.send(req).map_err(|_| ProtocolError::Closed)
    }

    /// Sends a request and waits for its answer, at most `timeout`; past that the connection
    /// is closed.
    pub async fn ask(&mut self, req: MasterRequest, timeout: Duration) -> Result<MasterReply, ProtocolError> {
        self.tell(req)?;
        match tokio::time::timeout(timeout, self.replies.recv()).await {
            Ok(reply) => reply.ok_or(ProtocolError::Closed),
            Err(_) => {
                self.close();
                Err(ProtocolError::Timeout(timeout))
            }
        }
    }

    /// The next unsolicited answer (a refusal of something told), or `None` when the
    /// connection has closed.
    pub async fn next_reply(&mut self) -> Option<MasterReply> {
        self.replies.recv().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gearpump_protocol::MasterError;
    use tokio::net::TcpListener;

    fn timing() -> ControlTiming {
        ControlTiming {
            heartbeat_interval: Duration::from_millis(50),
            worker_timeout: Duration::from_millis(300),
            master_timeout: Duration::from_millis(500),
        }
    }

    fn settings(masters: Vec<HostPort>) -> WorkerSettings {
        let dir = std::env::temp_dir().join(format!("gear-daemon-test-{}", std::process::id()));
        WorkerSettings {
            masters,
            slots: 1,
            host: "127.0.0.1".into(),
            timing: timing(),
            work_dir: dir.join("work"),
            app_log_dir: dir.join("logs"),
            reconnect: (Duration::from_millis(10), Duration::from_millis(50)),
            system_config: String::new(),
            secret: ClusterSecret::none(),
        }
    }

    async fn workers(master: &HostPort) -> Vec<gearpump_protocol::WorkerInfo> {
        let mut c = MasterClient::connect(std::slice::from_ref(master), &ClusterSecret::none()).await.unwrap();
        match c.ask(&MasterRequest::ListWorkers, Duration::from_secs(5)).await.unwrap() {
            MasterReply::Workers(w) => w,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_answer_too_late_closes_the_connection_rather_than_answer_the_next_request() {
        // A master that answers who leads at once, then everything else a while later.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let master = HostPort { host: "127.0.0.1".into(), port: listener.local_addr().unwrap().port() };
        let me = master.to_string();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let me = me.clone();
                tokio::spawn(async move {
                    let hello = Duration::from_secs(5);
                    let (mut rd, mut wr) =
                        gearpump_protocol::accept_control(stream, &ClusterSecret::none(), hello).await.unwrap();
                    while let Ok(req) = read_msg::<_, MasterRequest>(&mut rd).await {
                        let reply = match req {
                            MasterRequest::WhoLeads => MasterReply::Leader { leader: Some(me.clone()), me: me.clone() },
                            _ => {
                                tokio::time::sleep(Duration::from_millis(300)).await;
                                MasterReply::Workers(Vec::new())
                            }
                        };
                        if write_msg(&mut wr, &reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let mut one = MasterClient::connect(std::slice::from_ref(&master), &ClusterSecret::none()).await.unwrap();
        let late = one.ask(&MasterRequest::ListWorkers, Duration::from_millis(50)).await;
        assert!(matches!(late, Err(ProtocolError::Timeout(_))), "{late:?}");
        let next = one.ask(&MasterRequest::ListApps, Duration::from_secs(2)).await;
        assert!(matches!(next, Err(ProtocolError::Closed)), "{next:?}");
        let (mut client, mut pushes) = DuplexClient::connect(&[master], &ClusterSecret::none()).await.unwrap();
        let late = client.ask(MasterRequest::ListWorkers, Duration::from_millis(50)).await;
        assert!(matches!(late, Err(ProtocolError::Timeout(_))), "{late:?}");
        // The late answer reaches no one: the next request fails, and the pushes end, so the
        // caller connects again.
        let next = client.ask(MasterRequest::ListApps, Duration::from_secs(2)).await;
        assert!(matches!(next, Err(ProtocolError::Closed)), "{next:?}");
        let ended = tokio::time::timeout(Duration::from_secs(2), pushes.recv()).await;
        assert!(matches!(ended, Ok(None)), "{ended:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_worker_without_a_master_exits_after_the_timeout() {
        let free = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let gone = HostPort { host: "127.0.0.1".into(), port: free };
        let started = std::time::Instant::now();
        let result = run_worker(settings(vec![gone]), std::future::pending()).await;
        assert!(result.is_err());
        assert!(started.elapsed() >= timing().master_timeout);
    }

    /// Starts a master on a free port with `limits`.
    async fn start_master(name: &str, limits: gearpump_protocol::PortLimits) -> HostPort {
        start_master_with(name, limits, ClusterSecret::none()).await
    }

    /// Starts a master on a free port with `limits` and `secret`.
    async fn start_master_with(name: &str, limits: gearpump_protocol::PortLimits, secret: ClusterSecret) -> HostPort {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let master = HostPort { host: "127.0.0.1".into(), port: listener.local_addr().unwrap().port() };
        let root = std::env::temp_dir().join(format!("gear-{name}-{}", std::process::id()));
        let store = artifacts::ArtifactStore::open(root.to_str().unwrap()).unwrap();
        let options = MasterOptions {
            timing: timing(),
            store,
            same_process: false,
            summary: Default::default(),
            retention: Default::default(),
            reporter: None,
            total_retries: 5,
            stop_timeout: gearpump_streaming::supervisor::DEFAULT_STOP_TIMEOUT,
            scheduler: std::sync::Arc::new(crate::scheduler::PriorityScheduler),
            me: master.clone(),
            members: vec![master.clone()],
            data_dir: root.join("master-data"),
            limits,
            secret,
        };
        tokio::spawn(run_master(listener, options, std::future::pending()));
        master
    }

    /// A worker registered by hand as `host` with `slots`; it stays registered while the
    /// returned connection is kept.
    async fn register_by_hand(master: &HostPort, host: &str, slots: u32) -> MasterClient {
        let mut c = MasterClient::connect(std::slice::from_ref(master), &ClusterSecret::none()).await.unwrap();
        let req = MasterRequest::RegisterWorker {
            host: host.into(),
            slots,
            pid: 1,
            config: String::new(),
            log_dir: String::new(),
            previous: None,
            running: Vec::new(),
        };
        let answer = c.ask(&req, Duration::from_secs(5)).await.unwrap();
        assert!(matches!(answer, MasterReply::WorkerRegistered { .. }), "{answer:?}");
        c
    }

    /// Whether the other end closed `c` (a read sees the end, or a reset).
    async fn closed_by_peer(c: &mut tokio::net::TcpStream) -> bool {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 64];
        loop {
            match tokio::time::timeout(Duration::from_secs(60), c.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_control_port_drops_silent_peers_and_refuses_too_many() {
        let limits = gearpump_protocol::PortLimits { max_connections: 4, hello_timeout: Duration::from_millis(300) };
        let master = start_master("limits", limits).await;
        let addr = master.to_string();
        // Wait until it answers.
        workers(&master).await;
        // A peer that never says hello is dropped.
        let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
        assert!(closed_by_peer(&mut silent).await, "a silent connection is closed");
        // Four greet and stay; a fifth is refused.
        let mut kept = Vec::new();
        for _ in 0..4 {
            let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let (mut r, mut w) = c.split();
            gearpump_protocol::client_handshake(&mut r, &mut w, &ClusterSecret::none()).await.unwrap();
            kept.push(c);
        }
        let mut fifth = tokio::net::TcpStream::connect(&addr).await.unwrap();
        assert!(closed_by_peer(&mut fifth).await, "the fifth connection is refused");
        // Once they leave, the master answers again.
        drop(kept);
        let mut answered = false;
        for _ in 0..100 {
            let ask = async {
                let mut c = MasterClient::connect(std::slice::from_ref(&master), &ClusterSecret::none()).await.ok()?;
                c.ask(&MasterRequest::ListWorkers, Duration::from_secs(5)).await.ok()
            };
            if ask.await.is_some() {
                answered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(answered, "the master serves again once the connections are gone");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_master_with_a_secret_serves_only_peers_that_hold_it() {
        let secret = ClusterSecret::new("the master test's secret").unwrap();
        let master = start_master_with("secret", Default::default(), secret.clone()).await;
        let masters = std::slice::from_ref(&master);
        let mut ok = MasterClient::connect(masters, &secret).await.unwrap();
        assert!(matches!(
            ok.ask(&MasterRequest::ListWorkers, Duration::from_secs(5)).await,
            Ok(MasterReply::Workers(_))
        ));
        // No secret: the master refuses, and says so without waiting for a leader.
        let started = std::time::Instant::now();
        let none = MasterClient::connect(masters, &ClusterSecret::none()).await.err().unwrap();
        assert!(matches!(none, ProtocolError::NotAuthenticated { secret_set: false }), "{none}");
        assert!(started.elapsed() < LEADER_PATIENCE, "refused at once, not after the leader search");
        // Another secret: the client finds the master cannot prove it holds this one.
        let other = ClusterSecret::new("some other secret, long").unwrap();
        let wrong = MasterClient::connect(masters, &other).await.err().unwrap();
        assert!(matches!(wrong, ProtocolError::NotAuthenticated { secret_set: true }), "{wrong}");
        // A worker with another secret exits at once instead of retrying until master-timeout.
        let mut s = settings(vec![master.clone()]);
        s.secret = other;
        s.timing.master_timeout = Duration::from_secs(600);
        let worker = tokio::time::timeout(Duration::from_secs(60), run_worker(s, std::future::pending())).await;
        assert!(matches!(worker, Ok(Err(ProtocolError::NotAuthenticated { .. }))), "{worker:?}");
        assert!(workers_with(&master, &secret).await.is_empty(), "nothing registered");
    }

    async fn workers_with(master: &HostPort, secret: &ClusterSecret) -> Vec<gearpump_protocol::WorkerInfo> {
        let mut c = MasterClient::connect(std::slice::from_ref(master), secret).await.unwrap();
        match c.ask(&MasterRequest::ListWorkers, Duration::from_secs(5)).await.unwrap() {
            MasterReply::Workers(w) => w,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn numbers_from_the_network_that_do_not_fit_are_refused_and_the_master_answers_on() {
        let master = start_master("numbers", Default::default()).await;
        // Two workers claiming every slot a u32 can count: their sum does not fit in one.
        let _hands = [
            register_by_hand(&master, "greedy0", u32::MAX).await,
            register_by_hand(&master, "greedy1", u32::MAX).await,
        ];
        let mut client = MasterClient::connect(std::slice::from_ref(&master), &ClusterSecret::none()).await.unwrap();
        let mut sent = false;
        let stored = client
            .upload_artifact(|_| {
                let last = !std::mem::replace(&mut sent, true);
                Ok((b"#!/bin/sh\n".to_vec(), last))
            })
            .await
            .unwrap();
        let Ok(artifact) = stored else { panic!("upload refused: {stored:?}") };
        for tasks in [u32::MAX, u32::MAX - 1] {
            let req = MasterRequest::SubmitApp {
                name: format!("huge{tasks}"),
                artifact: artifact.clone(),
                args: Vec::new(),
                tasks,
                user: "probe".into(),
                executors: 0,
                kind: gearpump_protocol::STREAMING.into(),
                priority: Default::default(),
            };
            // A u32 `tasks + 1` (and a u32 sum of the workers' slots) panicked the master's
            // actor: the master then answered nothing while its connections stayed open.
            match client.ask(&req, Duration::from_secs(10)).await.unwrap() {
                MasterReply::Refused(MasterError::TooManyTasks { tasks: t, .. }) => assert_eq!(t, tasks),
                other => panic!("{other:?}"),
            }
        }
        // A small application: its check adds up the two workers' free slots (which overflowed
        // a u32 sum) and accepts it.
        let req = MasterRequest::SubmitApp {
            name: "small".into(),
            artifact: artifact.clone(),
            args: Vec::new(),
            tasks: 1,
            user: "probe".into(),
            executors: 0,
            kind: gearpump_protocol::STREAMING.into(),
            priority: Default::default(),
        };
        let answer = client.ask(&req, Duration::from_secs(10)).await.unwrap();
        assert!(matches!(answer, MasterReply::Submitted { .. }), "{answer:?}");
        assert_eq!(workers(&master).await.len(), 2, "the master still answers");
        let snapshot = client.ask(&MasterRequest::Snapshot, Duration::from_secs(10)).await.unwrap();
        assert!(matches!(snapshot, MasterReply::Snapshot(_)), "{snapshot:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_worker_is_declared_dead() {
        let master = start_master("silent", Default::default()).await;
        // Register by hand, then say nothing more (and keep the connection open).
        let _c = register_by_hand(&master, "quiet", 1).await;
        assert!(workers(&master).await[0].alive);
        tokio::time::sleep(timing().worker_timeout * 3).await;
        assert!(!workers(&master).await[0].alive);
    }
}
