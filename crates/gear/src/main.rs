//! `gear`: the one command of a Gearpump cluster.
//!
//! ```text
//! gear master -ip <ip> -port <port>     a master
//! gear worker                           a worker (masters and slots from gear.conf)
//! gear local [-workernum 2]             a master and workers in one process
//! gear info                             the applications
//! gear kill -appid <id>                 kill an application
//! ```
//!
//! Every command takes `-conf FILE`, layered over `conf/gear.conf` (under `$GEARPUMP_HOME` if
//! set, else the working directory) and the built-in defaults. The guide's single-dash options
//! work as well as GNU ones.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use gearpump_cluster::daemon::{ControlTiming, MasterClient, run_master, run_worker};
use gearpump_config::{GearConfig, HostPort};
use gearpump_core::AppId;
use gearpump_protocol::{MasterReply, MasterRequest};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Gearpump in Rust: run cluster daemons and manage applications.
#[derive(Parser)]
#[command(name = "gear", version)]
struct Cli {
    /// A configuration file layered over conf/gear.conf.
    #[arg(long, global = true)]
    conf: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Starts a master; its address must be one of gearpump.cluster.masters.
    Master {
        /// The address to listen on.
        #[arg(long)]
        ip: String,
        /// The port to listen on.
        #[arg(long)]
        port: u16,
    },
    /// Starts a worker, registering with the masters of gearpump.cluster.masters.
    Worker,
    /// Starts a master and workers in one process, at the first address of
    /// gearpump.cluster.masters.
    Local {
        /// How many workers.
        #[arg(long, default_value_t = 2)]
        workernum: u32,
    },
    /// Lists the applications.
    Info,
    /// Kills an application.
    Kill {
        /// The application's id.
        #[arg(long)]
        appid: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(gearpump::cli::normalize_args(std::env::args()));
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// defaults < conf/gear.conf < -conf FILE.
fn load_config(extra: Option<&Path>) -> anyhow::Result<GearConfig> {
    let home = std::env::var_os("GEARPUMP_HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    let mut conf = GearConfig::defaults().with_optional_file(&home.join("conf/gear.conf"))?;
    if let Some(path) = extra {
        conf = conf.with_file(path)?;
    }
    conf.validate()?;
    Ok(conf)
}

/// Logs to stderr and to `<gearpump.log.daemon.dir>/<name>.log`.
fn init_daemon_logging(conf: &GearConfig, name: &str) -> anyhow::Result<PathBuf> {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let dir = PathBuf::from(conf.get_str("gearpump.log.daemon.dir").unwrap_or("logs"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating the log directory {}", dir.display()))?;
    let path = dir.join(format!("{name}.log"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening the log file {}", path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let writer = std::io::stderr.and(std::sync::Mutex::new(file));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(writer).try_init();
    Ok(path)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let conf = load_config(cli.conf.as_deref())?;
    let timing = ControlTiming::from_config(&conf)?;
    let masters = conf.masters()?;
    match cli.command {
        Command::Master { ip, port } => {
            let me = HostPort { host: ip.clone(), port };
            if !masters.contains(&me) {
                let list: Vec<String> = masters.iter().map(ToString::to_string).collect();
                bail!("master {me} is not in gearpump.cluster.masters [{}]; add it there", list.join(", "));
            }
            let log = init_daemon_logging(&conf, &format!("master-{ip}-{port}"))?;
            tracing::info!(log = %log.display(), "Logging to a file too.");
            runtime()?.block_on(async {
                let listener = tokio::net::TcpListener::bind((ip.as_str(), port))
                    .await
                    .with_context(|| format!("binding the master port {me}"))?;
                run_master(listener, timing, ctrl_c()).await;
                Ok(())
            })
        }
        Command::Worker => {
            let log = init_daemon_logging(&conf, &format!("worker-{}", std::process::id()))?;
            tracing::info!(log = %log.display(), "Logging to a file too.");
            let slots = conf.worker_slots();
            let host = conf.hostname().to_string();
            runtime()?.block_on(run_worker(masters, slots, host, timing, ctrl_c())).context("the worker stopped")
        }
        Command::Local { workernum } => {
            let me = masters.first().context("gearpump.cluster.masters is empty")?.clone();
            let log = init_daemon_logging(&conf, "local")?;
            tracing::info!(log = %log.display(), master = %me, workers = workernum, "Starting a local cluster.");
            let slots = conf.worker_slots();
            let host = conf.hostname().to_string();
            runtime()?.block_on(async {
                let listener = tokio::net::TcpListener::bind((me.host.as_str(), me.port))
                    .await
                    .with_context(|| format!("binding the master port {me}"))?;
                let master = tokio::spawn(run_master(listener, timing, ctrl_c()));
                for _ in 0..workernum {
                    let (m, h) = (vec![me.clone()], host.clone());
                    tokio::spawn(async move {
                        if let Err(e) = run_worker(m, slots, h, timing, std::future::pending()).await {
                            tracing::error!(error = %e, "A local worker stopped.");
                        }
                    });
                }
                let _ = master.await;
                Ok(())
            })
        }
        Command::Info => {
            let apps = match ask(&masters, &MasterRequest::ListApps)? {
                MasterReply::Apps(apps) => apps,
                other => bail!("unexpected answer from the master: {other:?}"),
            };
            println!("== Application Information ==");
            for a in apps {
                let worker = a.worker.map(|w| w.to_string()).unwrap_or_else(|| "-".into());
                println!("application: {}, name: {}, status: {}, worker: {}", a.id, a.name, a.status, worker);
            }
            Ok(())
        }
        Command::Kill { appid } => match ask(&masters, &MasterRequest::KillApp { app_id: AppId(appid) })? {
            MasterReply::Ok => {
                println!("Killed application {appid}.");
                Ok(())
            }
            MasterReply::Error(e) => bail!("{e}"),
            other => bail!("unexpected answer from the master: {other:?}"),
        },
    }
}

/// One request to the first master that answers.
fn ask(masters: &[HostPort], req: &MasterRequest) -> anyhow::Result<MasterReply> {
    let list: Vec<String> = masters.iter().map(ToString::to_string).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let mut client = MasterClient::connect(masters)
            .await
            .with_context(|| format!("no master answers at {}", list.join(", ")))?;
        Ok(client.ask(req, Duration::from_secs(30)).await?)
    })
}
