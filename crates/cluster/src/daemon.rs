//! The networked daemons: a master serving the control protocol on TCP, and workers that
//! register with it and keep themselves alive with heartbeats.
//!
//! The master notices a dead worker at once when its connection closes, and within
//! `gearpump.cluster.worker-timeout-ms` when it goes silent. A worker that loses its master
//! keeps trying (with the `gearpump.netty` backoff) and exits after
//! `gearpump.cluster.master-timeout-ms`.

use gearpump_config::{GearConfig, HostPort};
use gearpump_core::{AppId, WorkerId};
use gearpump_protocol::{
    MasterReply, MasterRequest, ProtocolError, WorkerInfo, read_hello, read_msg, write_hello, write_msg,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

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
        let ms = |k| conf.get_num::<u64>(k).map(Duration::from_millis);
        Ok(ControlTiming {
            heartbeat_interval: ms("gearpump.cluster.heartbeat-interval-ms")?,
            worker_timeout: ms("gearpump.cluster.worker-timeout-ms")?,
            master_timeout: ms("gearpump.cluster.master-timeout-ms")?,
        })
    }
}

struct WorkerRecord {
    host: String,
    slots: u32,
    used: u32,
    last_seen: Instant,
    alive: bool,
}

enum Command {
    Request { req: MasterRequest, conn: u64, reply: oneshot::Sender<MasterReply> },
    Disconnected { conn: u64 },
    Tick,
}

struct MasterState {
    timing: ControlTiming,
    workers: BTreeMap<WorkerId, WorkerRecord>,
    /// Which connection registered which worker, to notice its death when it closes.
    worker_conn: BTreeMap<u64, WorkerId>,
    next_worker: u32,
}

impl MasterState {
    fn handle(&mut self, req: MasterRequest, conn: u64) -> MasterReply {
        match req {
            MasterRequest::RegisterWorker { host, slots, pid } => {
                let id = WorkerId(self.next_worker);
                self.next_worker += 1;
                tracing::info!(worker = %id, %host, slots, pid, "Worker registered.");
                self.workers.insert(id, WorkerRecord { host, slots, used: 0, last_seen: Instant::now(), alive: true });
                self.worker_conn.insert(conn, id);
                MasterReply::WorkerRegistered {
                    worker: id,
                    heartbeat_interval_ms: self.timing.heartbeat_interval.as_millis() as u64,
                }
            }
            MasterRequest::Heartbeat { worker } => match self.workers.get_mut(&worker) {
                Some(w) if w.alive => {
                    w.last_seen = Instant::now();
                    MasterReply::Ok
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
            MasterRequest::ListApps => MasterReply::Apps(Vec::new()),
            MasterRequest::KillApp { app_id } => MasterReply::Error(unknown_app(app_id)),
        }
    }

    fn worker_lost(&mut self, id: WorkerId, why: &str) {
        if let Some(w) = self.workers.get_mut(&id)
            && w.alive
        {
            w.alive = false;
            tracing::warn!(worker = %id, host = %w.host, "Worker is dead: {why}.");
        }
    }

    fn tick(&mut self) {
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

fn unknown_app(app_id: AppId) -> String {
    format!("application {app_id} does not exist")
}

/// Runs a master on `listener` until `shutdown` completes.
pub async fn run_master(listener: TcpListener, timing: ControlTiming, shutdown: impl Future<Output = ()>) {
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(%addr, "Master started.");
    let (tx, mut rx) = mpsc::unbounded_channel::<Command>();
    let mut state = MasterState { timing, workers: BTreeMap::new(), worker_conn: BTreeMap::new(), next_worker: 1 };
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
                Command::Request { req, conn, reply } => {
                    let _ = reply.send(state.handle(req, conn));
                }
                Command::Disconnected { conn } => {
                    if let Some(id) = state.worker_conn.remove(&conn) {
                        state.worker_lost(id, "its connection closed");
                    }
                }
                Command::Tick => state.tick(),
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
    actor.abort();
    tracing::info!(%addr, "Master stopped.");
}

async fn serve_connection(
    mut stream: TcpStream,
    conn: u64,
    tx: &mpsc::UnboundedSender<Command>,
) -> Result<(), ProtocolError> {
    stream.set_nodelay(true)?;
    read_hello(&mut stream).await?;
    write_hello(&mut stream).await?;
    loop {
        let req: MasterRequest = read_msg(&mut stream).await?;
        let (reply, answer) = oneshot::channel();
        if tx.send(Command::Request { req, conn, reply }).is_err() {
            return Ok(());
        }
        let Ok(answer) = answer.await else { return Ok(()) };
        write_msg(&mut stream, &answer).await?;
    }
}

/// A client connection to a master.
pub struct MasterClient {
    stream: TcpStream,
    /// The master it is connected to.
    pub master: HostPort,
}

impl MasterClient {
    /// Connects to the first master of `masters` that answers.
    pub async fn connect(masters: &[HostPort]) -> Result<MasterClient, ProtocolError> {
        let mut last = ProtocolError::Closed;
        for m in masters {
            match TcpStream::connect((m.host.as_str(), m.port)).await {
                Ok(mut stream) => {
                    stream.set_nodelay(true)?;
                    write_hello(&mut stream).await?;
                    read_hello(&mut stream).await?;
                    return Ok(MasterClient { stream, master: m.clone() });
                }
                Err(e) => last = ProtocolError::Io(e),
            }
        }
        Err(last)
    }

    /// Sends a request and waits for the answer, at most `timeout`.
    pub async fn ask(&mut self, req: &MasterRequest, timeout: Duration) -> Result<MasterReply, ProtocolError> {
        let exchange = async {
            write_msg(&mut self.stream, req).await?;
            read_msg(&mut self.stream).await
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| ProtocolError::Timeout(timeout))?
    }
}

/// Runs a worker: registers with a master, sends heartbeats, and re-registers if the master
/// is lost; exits with an error after `timing.master_timeout` without a master, or when
/// `shutdown` completes.
pub async fn run_worker(
    masters: Vec<HostPort>,
    slots: u32,
    host: String,
    timing: ControlTiming,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProtocolError> {
    let work = async {
        let mut lost_since = Instant::now();
        let mut sleep = Duration::from_millis(100);
        loop {
            match MasterClient::connect(&masters).await {
                Ok(mut client) => {
                    let req = MasterRequest::RegisterWorker { host: host.clone(), slots, pid: std::process::id() };
                    let (id, interval) = match client.ask(&req, Duration::from_secs(10)).await? {
                        MasterReply::WorkerRegistered { worker, heartbeat_interval_ms } => {
                            (worker, Duration::from_millis(heartbeat_interval_ms.max(10)))
                        }
                        other => return Err(ProtocolError::Decode(format!("unexpected answer {other:?}"))),
                    };
                    tracing::info!(worker = %id, master = %client.master, slots, "Registered with the master.");
                    sleep = Duration::from_millis(100);
                    loop {
                        tokio::time::sleep(interval).await;
                        match client.ask(&MasterRequest::Heartbeat { worker: id }, interval * 5).await {
                            Ok(MasterReply::Ok) => {}
                            Ok(other) => {
                                tracing::warn!(worker = %id, answer = ?other, "The master refused a heartbeat; registering again.");
                                break;
                            }
                            Err(e) => {
                                tracing::warn!(worker = %id, error = %e, "Lost the master.");
                                break;
                            }
                        }
                    }
                    lost_since = Instant::now();
                }
                Err(e) => {
                    if lost_since.elapsed() > timing.master_timeout {
                        tracing::error!(error = %e, "No master reachable for {:?}; exiting.", timing.master_timeout);
                        return Err(e);
                    }
                    tracing::debug!(error = %e, "No master reachable yet.");
                    tokio::time::sleep(sleep).await;
                    sleep = (sleep * 2).min(Duration::from_secs(1));
                }
            }
        }
    };
    tokio::select! {
        r = work => r,
        _ = shutdown => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> ControlTiming {
        ControlTiming {
            heartbeat_interval: Duration::from_millis(50),
            worker_timeout: Duration::from_millis(300),
            master_timeout: Duration::from_millis(500),
        }
    }

    async fn workers(master: &HostPort) -> Vec<WorkerInfo> {
        let mut c = MasterClient::connect(std::slice::from_ref(master)).await.unwrap();
        match c.ask(&MasterRequest::ListWorkers, Duration::from_secs(5)).await.unwrap() {
            MasterReply::Workers(w) => w,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn workers_register_and_a_stopped_worker_is_noticed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let master = HostPort { host: "127.0.0.1".into(), port: listener.local_addr().unwrap().port() };
        let (stop_master, master_stopped) = oneshot::channel::<()>();
        tokio::spawn(run_master(listener, timing(), async {
            let _ = master_stopped.await;
        }));
        let (stop_w1, w1_stopped) = oneshot::channel::<()>();
        let w1 = tokio::spawn(run_worker(vec![master.clone()], 4, "h1".into(), timing(), async {
            let _ = w1_stopped.await;
        }));
        let _w2 = tokio::spawn(run_worker(vec![master.clone()], 6, "h2".into(), timing(), std::future::pending()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while workers(&master).await.iter().filter(|w| w.alive).count() < 2 {
            assert!(Instant::now() < deadline, "workers did not register");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut slots: Vec<u32> = workers(&master).await.iter().map(|w| w.slots).collect();
        slots.sort_unstable();
        assert_eq!(slots, vec![4, 6]);
        // Stopping a worker closes its connection: it is dead at once.
        stop_w1.send(()).unwrap();
        w1.await.unwrap().unwrap();
        while workers(&master).await.iter().filter(|w| w.alive).count() != 1 {
            assert!(Instant::now() < deadline, "the stopped worker was not noticed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = stop_master.send(());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_worker_without_a_master_exits_after_the_timeout() {
        let free = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let gone = HostPort { host: "127.0.0.1".into(), port: free };
        let started = Instant::now();
        let result = run_worker(vec![gone], 1, "h".into(), timing(), std::future::pending()).await;
        assert!(result.is_err());
        assert!(started.elapsed() >= timing().master_timeout);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_worker_is_declared_dead() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let master = HostPort { host: "127.0.0.1".into(), port: listener.local_addr().unwrap().port() };
        tokio::spawn(run_master(listener, timing(), std::future::pending()));
        // Register by hand, then say nothing more.
        let mut c = MasterClient::connect(std::slice::from_ref(&master)).await.unwrap();
        let req = MasterRequest::RegisterWorker { host: "quiet".into(), slots: 1, pid: 1 };
        assert!(matches!(c.ask(&req, Duration::from_secs(5)).await.unwrap(), MasterReply::WorkerRegistered { .. }));
        assert!(workers(&master).await[0].alive);
        tokio::time::sleep(timing().worker_timeout * 3).await;
        assert!(!workers(&master).await[0].alive);
    }
}
