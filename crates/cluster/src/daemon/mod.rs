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
pub mod reporter;
mod submit;
pub mod worker;

pub use master::{MasterOptions, run_master};
pub use submit::{SubmitBinaryError, submit_binary};
pub use worker::{WorkerSettings, run_worker};

use gearpump_config::{GearConfig, HostPort};
use gearpump_protocol::{MasterReply, MasterRequest, ProtocolError, read_hello, read_msg, write_hello, write_msg};
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
        let ms = |k| conf.get_num::<u64>(k).map(Duration::from_millis);
        Ok(ControlTiming {
            heartbeat_interval: ms("gearpump.cluster.heartbeat-interval-ms")?,
            worker_timeout: ms("gearpump.cluster.worker-timeout-ms")?,
            master_timeout: ms("gearpump.cluster.master-timeout-ms")?,
        })
    }
}

async fn connect_any(masters: &[HostPort]) -> Result<(TcpStream, HostPort), ProtocolError> {
    let mut last = ProtocolError::Closed;
    for m in masters {
        match TcpStream::connect((m.host.as_str(), m.port)).await {
            Ok(mut stream) => {
                stream.set_nodelay(true)?;
                write_hello(&mut stream).await?;
                read_hello(&mut stream).await?;
                return Ok((stream, m.clone()));
            }
            Err(e) => last = ProtocolError::Io(e),
        }
    }
    Err(last)
}

/// A client connection to a master: one request, one answer.
pub struct MasterClient {
    stream: TcpStream,
    /// The master it is connected to.
    pub master: HostPort,
}

impl MasterClient {
    /// Connects to the first master of `masters` that answers.
    pub async fn connect(masters: &[HostPort]) -> Result<MasterClient, ProtocolError> {
        let (stream, master) = connect_any(masters).await?;
        Ok(MasterClient { stream, master })
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

/// A connection on which the master also pushes: answers come in request order on one
/// channel, pushes ([`MasterReply::is_push`]) on another.
pub struct DuplexClient {
    requests: mpsc::UnboundedSender<MasterRequest>,
    replies: mpsc::UnboundedReceiver<MasterReply>,
    /// The master it is connected to.
    pub master: HostPort,
}

impl DuplexClient {
    /// Connects; returns the client and the channel of pushes. Both end when the connection
    /// does.
    pub async fn connect(
        masters: &[HostPort],
    ) -> Result<(DuplexClient, mpsc::UnboundedReceiver<MasterReply>), ProtocolError> {
        let (stream, master) = connect_any(masters).await?;
        let (mut rd, mut wr) = stream.into_split();
        let (requests, mut outbox) = mpsc::unbounded_channel::<MasterRequest>();
        let (reply_tx, replies) = mpsc::unbounded_channel();
        let (push_tx, pushes) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(req) = outbox.recv().await {
                if write_msg(&mut wr, &req).await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            while let Ok(msg) = read_msg::<_, MasterReply>(&mut rd).await {
                let is_push = msg.is_push();
                let sent = if is_push { push_tx.send(msg).is_ok() } else { reply_tx.send(msg).is_ok() };
                if !sent {
                    break;
                }
            }
        });
        Ok((DuplexClient { requests, replies, master }, pushes))
    }

    /// Sends a request that gets no answer.
    pub fn tell(&self, req: MasterRequest) -> Result<(), ProtocolError> {
        self.requests.send(req).map_err(|_| ProtocolError::Closed)
    }

    /// Sends a request and waits for its answer, at most `timeout`.
    pub async fn ask(&mut self, req: MasterRequest, timeout: Duration) -> Result<MasterReply, ProtocolError> {
        self.tell(req)?;
        tokio::time::timeout(timeout, self.replies.recv())
            .await
            .map_err(|_| ProtocolError::Timeout(timeout))?
            .ok_or(ProtocolError::Closed)
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
        }
    }

    async fn workers(master: &HostPort) -> Vec<gearpump_protocol::WorkerInfo> {
        let mut c = MasterClient::connect(std::slice::from_ref(master)).await.unwrap();
        match c.ask(&MasterRequest::ListWorkers, Duration::from_secs(5)).await.unwrap() {
            MasterReply::Workers(w) => w,
            other => panic!("{other:?}"),
        }
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_worker_is_declared_dead() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let master = HostPort { host: "127.0.0.1".into(), port: listener.local_addr().unwrap().port() };
        let root = std::env::temp_dir().join(format!("gear-silent-{}", std::process::id()));
        let store = artifacts::ArtifactStore::open(root.to_str().unwrap()).unwrap();
        let options = MasterOptions {
            timing: timing(),
            store,
            masters: master.to_string(),
            same_process: false,
            summary: Default::default(),
            retention: Default::default(),
            reporter: None,
            total_retries: 5,
        };
        tokio::spawn(run_master(listener, options, std::future::pending()));
        // Register by hand, then say nothing more (and keep the connection open).
        let mut c = MasterClient::connect(std::slice::from_ref(&master)).await.unwrap();
        let req = MasterRequest::RegisterWorker {
            host: "quiet".into(),
            slots: 1,
            pid: 1,
            config: String::new(),
            log_dir: String::new(),
        };
        assert!(matches!(c.ask(&req, Duration::from_secs(5)).await.unwrap(), MasterReply::WorkerRegistered { .. }));
        assert!(workers(&master).await[0].alive);
        tokio::time::sleep(timing().worker_timeout * 3).await;
        assert!(!workers(&master).await[0].alive);
    }
}
