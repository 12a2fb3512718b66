//! The worker daemon: registers its slots, sends heartbeats, and runs the processes of
//! application binaries as the master asks.
//!
//! A launched process is the application binary itself, given its role in the environment
//! (`GEARPUMP_ROLE` = `appmaster` or `executor`, with `GEARPUMP_APP_ID`,
//! `GEARPUMP_EXECUTOR_ID`, `GEARPUMP_MASTERS`, …). The binary is fetched from the master's
//! artifact store once per worker and cached. Its output goes to
//! `<gearpump.log.application.dir>/app<id>/<role>.log`. When it exits, the master is told.

use super::ControlTiming;
use super::DuplexClient;
use super::artifacts;
use crate::env::{ProcessEnv, ProcessRole};
use gearpump_config::HostPort;
use gearpump_core::AppId;
use gearpump_protocol::{MasterReply, MasterRequest, ProcessGauges, ProtocolError, WorkerCommand};
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// What a worker needs to run.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// `gearpump.cluster.masters`.
    pub masters: Vec<HostPort>,
    /// `gearpump.worker.slots`.
    pub slots: u32,
    /// `gearpump.hostname`.
    pub host: String,
    /// Control-plane timing.
    pub timing: ControlTiming,
    /// Where fetched binaries are cached.
    pub work_dir: PathBuf,
    /// `gearpump.log.application.dir`.
    pub app_log_dir: PathBuf,
    /// Reconnection backoff to the master: first and longest wait (`gearpump.netty.base-sleep-ms`,
    /// `gearpump.netty.max-sleep-ms`).
    pub reconnect: (Duration, Duration),
    /// The worker's configuration as HOCON ([`gearpump_config::GearConfig::to_hocon`]),
    /// handed to the processes it starts as `GEARPUMP_CONF`.
    pub system_config: String,
    /// The cluster secret it proves to the masters (its processes read theirs from
    /// `GEARPUMP_CONF`).
    pub secret: gearpump_protocol::ClusterSecret,
}

/// The processes running, per application: executor id (-1: the AppMaster) and how to kill it
/// (after how long a grace to exit by itself).
type Kills = Arc<Mutex<HashMap<AppId, Vec<(i32, oneshot::Sender<Duration>)>>>>;

/// Runs a worker until `shutdown` completes, or until no master has been reachable for
/// `master_timeout` (an error). The processes it started are killed when it stops.
pub async fn run_worker(settings: WorkerSettings, shutdown: impl Future<Output = ()>) -> Result<(), ProtocolError> {
    let kills: Kills = Arc::default();
    let work = serve(settings, kills.clone());
    let result = tokio::select! {
        r = work => r,
        _ = shutdown => Ok(()),
    };
    for (_, senders) in kills.lock().expect("kills lock").drain() {
        for (_, k) in senders {
            let _ = k.send(Duration::ZERO);
        }
    }
    result
}

async fn serve(settings: WorkerSettings, kills: Kills) -> Result<(), ProtocolError> {
    let mut lost_since = Instant::now();
    let (base_sleep, max_sleep) = settings.reconnect;
    let mut sleep = base_sleep;
    // Exits of processes are reported to whichever master leads when they happen, or to the
    // next one: they wait here while no master is reachable.
    let (exits_tx, mut exits) = mpsc::unbounded_channel::<MasterRequest>();
    let mut previous = None;
    loop {
        match DuplexClient::connect(&settings.masters, &settings.secret).await {
            Ok((mut client, mut pushes)) => {
                let running: Vec<(AppId, i32)> = {
                    let kills = kills.lock().expect("kills lock");
                    kills.iter().flat_map(|(app, ks)| ks.iter().map(move |(e, _)| (*app, *e))).collect()
                };
                let req = MasterRequest::RegisterWorker {
                    host: settings.host.clone(),
                    slots: settings.slots,
                    pid: std::process::id(),
                    config: settings.system_config.clone(),
                    log_dir: settings.app_log_dir.display().to_string(),
                    previous,
                    running,
                };
                // A registration can fail while the masters elect a leader (a refusal, or the
                // connection closed): that is a master not reachable yet, retried until
                // `master_timeout`, not a reason to stop.
                let (id, interval) = match client.ask(req, Duration::from_secs(10)).await {
                    Ok(MasterReply::WorkerRegistered { worker, heartbeat_interval_ms }) => {
                        (worker, Duration::from_millis(heartbeat_interval_ms.max(10)))
                    }
                    answer => {
                        let why = match answer {
                            Ok(MasterReply::Error(e)) => e,
                            Ok(other) => format!("unexpected answer {other:?}"),
                            Err(e) => e.to_string(),
                        };
                        if lost_since.elapsed() > settings.timing.master_timeout {
                            tracing::error!(error = %why, "No master registered us for {:?}; exiting.", settings.timing.master_timeout);
                            return Err(ProtocolError::NoLeader(why));
                        }
                        tracing::warn!(master = %client.master, error = %why, "Registering failed; trying again.");
                        tokio::time::sleep(sleep).await;
                        sleep = (sleep * 2).min(max_sleep);
                        continue;
                    }
                };
                tracing::info!(worker = %id, master = %client.master, slots = settings.slots, "Registered with the master.");
                previous = Some(id);
                sleep = base_sleep;
                let mut ticker = tokio::time::interval(interval);
                loop {
                    tokio::select! {
                        _ = ticker.tick() => {
                            if client.tell(MasterRequest::Heartbeat { worker: id, process: ProcessGauges::of_this_process() }).is_err() {
                                break;
                            }
                        }
                        Some(exit) = exits.recv() => {
                            if client.tell(exit.clone()).is_err() {
                                // An exit is news for whichever master leads next; a log read
                                // answers only the master that asked.
                                if !matches!(exit, MasterRequest::LogRead { .. }) {
                                    let _ = exits_tx.send(exit);
                                }
                                break;
                            }
                        }
                        push = pushes.recv() => match push {
                            Some(MasterReply::Worker(cmd)) => handle(cmd, &settings, &kills, &exits_tx),
                            Some(_) => {}
                            None => {
                                tracing::warn!(worker = %id, "Lost the master.");
                                break;
                            }
                        },
                        reply = client.next_reply() => match reply {
                            Some(MasterReply::Error(e)) => {
                                tracing::warn!(worker = %id, error = %e, "The master refused us; registering again.");
                                break;
                            }
                            Some(MasterReply::NotLeader { leader }) => {
                                tracing::warn!(worker = %id, ?leader, "The master no longer leads; finding the leader.");
                                break;
                            }
                            Some(_) => {}
                            None => {
                                tracing::warn!(worker = %id, "Lost the master.");
                                break;
                            }
                        },
                    }
                }
                lost_since = Instant::now();
            }
            // Another secret or certificate will not come by waiting: the operator must fix
            // the config.
            Err(e) if e.is_permanent() => {
                tracing::error!(error = %e, "Cannot speak with the masters; exiting.");
                return Err(e);
            }
            Err(e) => {
                if lost_since.elapsed() > settings.timing.master_timeout {
                    tracing::error!(error = %e, "No master reachable for {:?}; exiting.", settings.timing.master_timeout);
                    return Err(e);
                }
                tracing::debug!(error = %e, "No master reachable yet.");
                tokio::time::sleep(sleep).await;
                sleep = (sleep * 2).min(max_sleep);
            }
        }
    }
}

fn handle(cmd: WorkerCommand, settings: &WorkerSettings, kills: &Kills, exits: &mpsc::UnboundedSender<MasterRequest>) {
    match cmd {
        WorkerCommand::Launch { app_id, executor, artifact, args, env } => {
            let (kill_tx, kill_rx) = oneshot::channel();
            kills.lock().expect("kills lock").entry(app_id).or_default().push((executor, kill_tx));
            let (settings, exits, kills) = (settings.clone(), exits.clone(), kills.clone());
            tokio::spawn(async move {
                let code = match launch(&settings, app_id, executor, &artifact, &args, &env, kill_rx).await {
                    Ok(code) => code,
                    Err(e) => {
                        tracing::error!(%app_id, executor, error = %e, "Launching a process failed.");
                        None
                    }
                };
                if let Some(running) = kills.lock().expect("kills lock").get_mut(&app_id) {
                    running.retain(|(e, _)| *e != executor);
                }
                let _ = exits.send(MasterRequest::ProcessExited { app_id, executor, code });
            });
        }
        WorkerCommand::ReadLog { request, app_id, executor, bytes } => {
            let name = if executor < 0 { "appmaster".to_string() } else { format!("executor{executor}") };
            let path = settings.app_log_dir.join(format!("app{}", app_id.0)).join(format!("{name}.log"));
            let exits = exits.clone();
            tokio::task::spawn_blocking(move || {
                let result = tail(&path, bytes);
                let path = path.display().to_string();
                let _ = exits.send(MasterRequest::LogRead { request, path, result });
            });
        }
        WorkerCommand::KillApp { app_id, grace_ms } => {
            if let Some(senders) = kills.lock().expect("kills lock").remove(&app_id) {
                let grace = Duration::from_millis(grace_ms);
                tracing::info!(%app_id, processes = senders.len(), ?grace, "Ending the application's processes.");
                for (_, k) in senders {
                    let _ = k.send(grace);
                }
            }
        }
    }
}

/// The last `bytes` of the log at `path`, from the start of a line, without terminal colours.
fn tail(path: &Path, bytes: u32) -> Result<String, String> {
    use std::io::{Read, Seek, SeekFrom};
    let failed = |e: std::io::Error| format!("reading {}: {e}", path.display());
    let mut file = std::fs::File::open(path).map_err(failed)?;
    let from = file.metadata().map_err(failed)?.len().saturating_sub(u64::from(bytes));
    file.seek(SeekFrom::Start(from)).map_err(failed)?;
    let mut raw = Vec::new();
    file.take(u64::from(bytes)).read_to_end(&mut raw).map_err(failed)?;
    let text = String::from_utf8_lossy(&raw);
    let text = if from > 0 { text.split_once('\n').map_or("", |(_, rest)| rest) } else { &text };
    // `ESC [ … m` colour codes, as the terminal-minded log format writes them.
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    Ok(plain)
}

/// Fetches the binary (once), runs it, waits for it; returns its exit code.
async fn launch(
    settings: &WorkerSettings,
    app_id: AppId,
    executor: i32,
    artifact: &str,
    args: &[String],
    env: &[(String, String)],
    kill: oneshot::Receiver<Duration>,
) -> Result<Option<i32>, LaunchError> {
    let binary = fetch(settings, artifact).await?;
    let role = if executor < 0 { ProcessRole::AppMaster } else { ProcessRole::Executor };
    let hostname = settings.host.parse().map_err(|_| {
        LaunchError::Config(format!("gearpump.hostname {:?} is not an IP address, which processes bind", settings.host))
    })?;
    let mine = ProcessEnv {
        role: Some(role),
        executor: Some(executor),
        hostname: Some(hostname),
        conf: Some(settings.system_config.clone()),
        ..ProcessEnv::default()
    };
    let log_dir = settings.app_log_dir.join(format!("app{}", app_id.0));
    std::fs::create_dir_all(&log_dir)?;
    let name = if executor < 0 { "appmaster".to_string() } else { format!("executor{executor}") };
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log_dir.join(format!("{name}.log")))?;
    let mut command = tokio::process::Command::new(&binary);
    // Nothing of the contract leaks in from the worker's own environment.
    for name in ProcessEnv::NAMES {
        command.env_remove(name);
    }
    let mut child = command
        .args(args)
        .envs(env.iter().cloned())
        .envs(mine.vars())
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    tracing::info!(%app_id, executor, pid = child.id().unwrap_or(0), role = role.as_str(), "Process started.");
    let status = tokio::select! {
        s = child.wait() => s?,
        Ok(grace) = kill => {
            // An application that ended normally has its processes exit by themselves (its
            // tasks stopped, its sinks closed): they get `grace` to do so before the kill.
            match tokio::time::timeout(grace, child.wait()).await {
                Ok(status) => status?,
                Err(_) => {
                    if !grace.is_zero() {
                        tracing::warn!(%app_id, executor, ?grace, "The process did not exit in time; killing it.");
                    }
                    let _ = child.start_kill();
                    child.wait().await?
                }
            }
        }
    };
    tracing::info!(%app_id, executor, %status, "Process exited.");
    Ok(status.code())
}

/// The binary, from this worker's cache, or fetched from the master and checked against its
/// content id.
async fn fetch(settings: &WorkerSettings, artifact: &str) -> Result<PathBuf, LaunchError> {
    if artifact.is_empty() || !artifact.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(LaunchError::Fetch(format!("bad artifact id {artifact:?}")));
    }
    let cache = settings.work_dir.join("artifacts");
    std::fs::create_dir_all(&cache)?;
    let path = cache.join(artifact);
    if path.is_file() {
        return Ok(path);
    }
    let mut client = super::MasterClient::connect(&settings.masters, &settings.secret).await?;
    let tmp = cache.join(format!(".fetch-{}-{artifact}", std::process::id()));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        match client.fetch_artifact(artifact, |bytes| f.write_all(bytes)).await? {
            Ok(()) => {}
            Err(MasterReply::Error(e)) => return Err(LaunchError::Fetch(e)),
            Err(other) => return Err(LaunchError::Fetch(format!("unexpected answer {other:?}"))),
        }
        f.sync_all()?;
    }
    if !artifacts::verify(&tmp, artifact)? {
        let _ = std::fs::remove_file(&tmp);
        return Err(LaunchError::Fetch(format!("the binary fetched as {artifact} does not match its id")));
    }
    set_executable(&tmp)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

fn set_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

/// Starting an application process failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A file or process operation failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Talking to the master failed.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The master would not hand out the binary.
    #[error("fetching the application binary: {0}")]
    Fetch(String),
    /// The worker's configuration does not allow starting it.
    #[error("{0}")]
    Config(String),
}
