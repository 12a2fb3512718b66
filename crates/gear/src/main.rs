//! `gear`: the one command of a Gearpump cluster.
//!
//! ```text
//! gear master -ip <ip> -port <port>     a master
//! gear worker                           a worker (masters and slots from gear.conf)
//! gear local [-workernum 2]             a master and workers in one process
//! gear app -jar <binary> [args]         submit an application binary
//! gear info                             the applications
//! gear kill -appid <id>                 kill an application
//! ```
//!
//! Every command takes `-conf FILE`, layered over `conf/gear.conf` (under `$GEARPUMP_HOME` if
//! set, else the working directory) and the built-in defaults. The guide's single-dash options
//! work as well as GNU ones.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use gearpump_cluster::daemon::artifacts::ArtifactStore;
use gearpump_cluster::daemon::reporter::Reporter;
use gearpump_cluster::daemon::{ControlTiming, MasterOptions, WorkerSettings, run_master, run_worker};
use gearpump_cluster::daemon::{SubmitOptions, submit_binary};
use gearpump_config::{GearConfig, HostPort};
use gearpump_core::{AppId, AppStatus};
use gearpump_protocol::{ClusterSecret, MasterReply, MasterRequest, MasterSummary};
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
        /// Run each application's executors inside its AppMaster process rather than as
        /// processes of their own.
        #[arg(long)]
        sameprocess: bool,
        /// Also serve the REST API and dashboard (gearpump.services.host and .http).
        #[arg(long)]
        services: bool,
    },
    /// Serves the REST API and dashboard on gearpump.services.host and gearpump.services.http
    /// (8090), answering from the masters of gearpump.cluster.masters.
    Services,
    /// Submits an application binary: it is uploaded to the masters' artifact store and run
    /// on the workers as an AppMaster and executors.
    App {
        /// The application binary.
        #[arg(long, visible_alias = "bin")]
        jar: PathBuf,
        /// Prepended to the application's name, with `_` (default `gearpump.app.name.prefix`).
        #[arg(long = "namePrefix", default_value = "")]
        name_prefix: String,
        /// How many executor processes to run it on (default: one per worker it gets slots on).
        #[arg(long)]
        executors: Option<u32>,
        /// How urgent its requests for slots are when slots are short: low, normal or high
        /// (served in that order by the priority scheduler).
        #[arg(long, default_value = "normal")]
        priority: gearpump_protocol::Priority,
        /// Waits until the application ends; exits 0 if it succeeded, 1 if it failed or was
        /// killed (for scripts and CI).
        #[arg(long)]
        wait: bool,
        /// The application's own arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Lists the applications.
    Info,
    /// Kills an application.
    Kill {
        /// The application's id.
        #[arg(long)]
        appid: u32,
    },
    /// Replays a running application from its start clock: every task restarts there (with
    /// its checkpointed state) and the sources read again from it.
    Replay {
        /// The application's id.
        #[arg(long)]
        appid: u32,
    },
    /// Changes the DAG of a running streaming application (dynamic DAG): replaces, rescales
    /// or removes processors, or makes any change given as JSON (the body of REST
    /// `POST appmaster/<id>/dynamicdag`). Answers once the change is recorded; the tasks then
    /// restart as the new DAG from the start clock.
    #[command(name = "dynamicdag")]
    DynamicDag {
        /// The application's id.
        #[arg(long)]
        appid: u32,
        /// Replaces this processor by a new one of `-taskClass`.
        #[arg(long, conflicts_with_all = ["rescale", "remove", "change"], requires = "task_class")]
        replace: Option<u32>,
        /// The replacement's task type (one the application binary registered).
        #[arg(long = "taskClass")]
        task_class: Option<String>,
        /// Runs this processor with `-parallelism` tasks.
        #[arg(long, conflicts_with_all = ["remove", "change"], requires = "parallelism")]
        rescale: Option<u32>,
        /// The new number of tasks (for a replacement: default 1).
        #[arg(long)]
        parallelism: Option<u32>,
        /// The replacement starts from the replaced processor's task config.
        #[arg(long = "inheritConf")]
        inherit_conf: bool,
        /// Removes these processors (comma separated ids) and their edges.
        #[arg(long, value_delimiter = ',', conflicts_with = "change")]
        remove: Vec<u32>,
        /// Any change, as JSON: `{"attach": {"processors": {...}, "edges": [...]}}` and the like.
        #[arg(long)]
        change: Option<String>,
    },
    /// Reads a password (the first line of standard input) and prints its argon2 hash, for a
    /// user entry of gearpump.ui-security.admins, users or guests.
    Passwd,
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(gearpump::cli::normalize_args(std::env::args()));
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Errors may quote store URLs with credentials in them.
            eprintln!("error: {}", gearpump_core::redact(&format!("{e:#}")));
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
    for (key, why) in conf.without_effect() {
        eprintln!("warning: {key} has no effect here: {why}.");
    }
    Ok(conf)
}

/// Logs to stderr and to `<gearpump.log.daemon.dir>/<name>.log`.
fn init_daemon_logging(conf: &GearConfig, name: &str) -> anyhow::Result<PathBuf> {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let dir = conf.settings()?.daemon_log_dir;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating the log directory {}", dir.display()))?;
    let path = dir.join(format!("{name}.log"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening the log file {}", path.display()))?;
    // openraft narrates every election and membership step at INFO; its warnings still show.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
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
    if matches!(cli.command, Command::Passwd) {
        return passwd();
    }
    let conf = load_config(cli.conf.as_deref())?;
    // Typed once; the daemons read fields, not keys.
    let settings = conf.settings()?;
    let timing = ControlTiming::from_settings(&settings);
    let masters = settings.masters.clone();
    let secret = conf.cluster_secret()?;
    let worker_settings = |conf: &GearConfig| WorkerSettings {
        masters: masters.clone(),
        slots: settings.worker_slots,
        host: settings.hostname.clone(),
        timing,
        work_dir: PathBuf::from("worker-data"),
        app_log_dir: settings.application_log_dir.clone(),
        reconnect: (settings.base_sleep, settings.max_sleep),
        system_config: conf.to_hocon(),
        secret: secret.clone(),
    };
    let store = || -> anyhow::Result<ArtifactStore> {
        let root = settings.jarstore.as_str();
        ArtifactStore::open(root).with_context(|| {
            format!("opening the artifact store gearpump.jarstore.rootpath = {}", gearpump_core::redact(root))
        })
    };
    match cli.command {
        Command::Master { ip, port } => {
            crash_on_panic();
            let me = HostPort { host: ip.clone(), port };
            if !masters.contains(&me) {
                let list: Vec<String> = masters.iter().map(ToString::to_string).collect();
                bail!("master {me} is not in gearpump.cluster.masters [{}]; add it there", list.join(", "));
            }
            let log = init_daemon_logging(&conf, &format!("master-{ip}-{port}"))?;
            tracing::info!(log = %log.display(), "Logging to a file too.");
            warn_without_secret(&secret, &ip);
            runtime()?.block_on(async {
                let listener = tokio::net::TcpListener::bind((ip.as_str(), port))
                    .await
                    .with_context(|| format!("binding the master port {me}"))?;
                // The Raft log and snapshots: what this master must find again after a restart.
                let data_dir = PathBuf::from("master-data").join(format!("{}-{}", me.host, me.port));
                let options = master_options(&conf, &me, store()?, false, &masters, data_dir)?;
                run_master(listener, options, ctrl_c()).await?;
                Ok(())
            })
        }
        Command::Worker => {
            crash_on_panic();
            let log = init_daemon_logging(&conf, &format!("worker-{}", std::process::id()))?;
            tracing::info!(log = %log.display(), "Logging to a file too.");
            warn_without_secret(&secret, conf.hostname());
            runtime()?.block_on(run_worker(worker_settings(&conf), ctrl_c())).context("the worker stopped")
        }
        Command::Services => {
            let log = init_daemon_logging(&conf, "services")?;
            tracing::info!(log = %log.display(), "Logging to a file too.");
            let (host, port) = services_addr(&conf)?;
            runtime()?.block_on(async {
                let listener = tokio::net::TcpListener::bind((host.as_str(), port))
                    .await
                    .with_context(|| format!("binding the services port {host}:{port}"))?;
                let backend = std::sync::Arc::new(gearpump_services::RemoteBackend::new(
                    masters.clone(),
                    secret.clone(),
                    conf.to_hocon(),
                ));
                let limits = gearpump_services::RestLimits::from_config(&conf)?;
                let auth = std::sync::Arc::new(gearpump_services::RestAuth::from_config(&conf)?);
                println!("Dashboard: {}://{}/", scheme(&auth), listener.local_addr()?);
                gearpump_services::serve(listener, backend, limits, auth, ctrl_c()).await?;
                Ok(())
            })
        }
        Command::Local { workernum, sameprocess, services } => {
            crash_on_panic();
            let me = masters.first().context("gearpump.cluster.masters is empty")?.clone();
            let log = init_daemon_logging(&conf, "local")?;
            tracing::info!(log = %log.display(), master = %me, workers = workernum, "Starting a local cluster.");
            warn_without_secret(&secret, &me.host);
            let settings = worker_settings(&conf);
            runtime()?.block_on(async {
                let listener = tokio::net::TcpListener::bind((me.host.as_str(), me.port))
                    .await
                    .with_context(|| format!("binding the master port {me}"))?;
                // A local cluster is one master that starts empty every time.
                let data_dir = PathBuf::from("master-data").join("local");
                let _ = std::fs::remove_dir_all(&data_dir);
                let options =
                    master_options(&conf, &me, store()?, sameprocess, std::slice::from_ref(&me), data_dir.clone())?;
                let master = tokio::spawn(run_master(listener, options, ctrl_c()));
                if services {
                    let (host, port) = services_addr(&conf)?;
                    let listener = tokio::net::TcpListener::bind((host.as_str(), port))
                        .await
                        .with_context(|| format!("binding the services port {host}:{port}"))?;
                    let backend = std::sync::Arc::new(gearpump_services::RemoteBackend::new(
                        masters.clone(),
                        secret.clone(),
                        conf.to_hocon(),
                    ));
                    let limits = gearpump_services::RestLimits::from_config(&conf)?;
                    let auth = std::sync::Arc::new(gearpump_services::RestAuth::from_config(&conf)?);
                    println!("Dashboard: {}://{}/", scheme(&auth), listener.local_addr()?);
                    tokio::spawn(gearpump_services::serve(listener, backend, limits, auth, std::future::pending()));
                }
                for i in 0..workernum {
                    let mut settings = settings.clone();
                    settings.work_dir = settings.work_dir.join(format!("local-worker-{i}"));
                    tokio::spawn(async move {
                        if let Err(e) = run_worker(settings, std::future::pending()).await {
                            tracing::error!(error = %e, "A local worker stopped.");
                        }
                    });
                }
                let ended = master.await.context("the master task")?;
                let _ = std::fs::remove_dir_all(&data_dir);
                Ok(ended?)
            })
        }
        Command::App { jar, name_prefix, executors, priority, wait, args } => {
            let name_prefix = if name_prefix.is_empty() { settings.app_name_prefix.clone() } else { name_prefix };
            let cluster = Cluster { masters: &masters, secret: &secret, conf: &conf };
            let options = SubmitOptions { name_prefix, executors: executors.unwrap_or(0), priority, user: None };
            submit(&jar, &options, &args, &cluster, wait)
        }
        Command::Info => {
            let apps = match ask(&masters, &secret, &MasterRequest::ListApps)? {
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
        Command::Kill { appid } => match ask(&masters, &secret, &MasterRequest::KillApp { app_id: AppId(appid) })? {
            MasterReply::Ok => {
                println!("Killed application {appid}.");
                Ok(())
            }
            MasterReply::Error(e) => bail!("{e}"),
            MasterReply::Refused(e) => bail!("{e}"),
            other => bail!("unexpected answer from the master: {other:?}"),
        },
        Command::Passwd => passwd(),
        Command::DynamicDag { appid, replace, task_class, rescale, parallelism, inherit_conf, remove, change } => {
            use gearpump_core::{DagChange, DagProcessor, ProcessorId};
            let change = match (replace, rescale, remove.is_empty(), change) {
                (Some(old), None, true, None) => DagChange::Replace {
                    processor_id: ProcessorId(old),
                    new_processor: DagProcessor {
                        task_class: task_class.unwrap_or_default(),
                        parallelism: parallelism.unwrap_or(1),
                        description: String::new(),
                        task_conf: Default::default(),
                    },
                    inherit_conf,
                },
                (None, Some(p), true, None) => {
                    DagChange::Rescale { processor_id: ProcessorId(p), parallelism: parallelism.unwrap_or(1) }
                }
                (None, None, false, None) => {
                    DagChange::Remove { processor_ids: remove.into_iter().map(ProcessorId).collect() }
                }
                (None, None, true, Some(json)) => serde_json::from_str(&json).with_context(|| {
                    format!(
                        "-change takes a DAG change as JSON ({{\"attach\": …}}, {{\"replace\": …}}, …), not {json:?}"
                    )
                })?,
                _ => bail!(
                    "say what to change: -replace ID -taskClass T, -rescale ID -parallelism N, -remove IDS or -change JSON"
                ),
            };
            match ask(&masters, &secret, &MasterRequest::ChangeDag { app_id: AppId(appid), change: change.clone() })? {
                MasterReply::DagChanged { version } => {
                    println!("Application {appid}: {change}; the DAG is at version {version}.");
                    Ok(())
                }
                MasterReply::Error(e) => bail!("{e}"),
                MasterReply::Refused(e) => bail!("{e}"),
                other => bail!("unexpected answer from the master: {other:?}"),
            }
        }
        Command::Replay { appid } => {
            match ask(&masters, &secret, &MasterRequest::ReplayApp { app_id: AppId(appid) })? {
                MasterReply::Ok => {
                    println!("Application {appid} replays from its start clock.");
                    Ok(())
                }
                MasterReply::Error(e) => bail!("{e}"),
                MasterReply::Refused(e) => bail!("{e}"),
                other => bail!("unexpected answer from the master: {other:?}"),
            }
        }
    }
}

/// `gear app`: runs the binary in the client role, which uploads itself and submits; then
/// waits until the application is active (an application that already succeeded is fine), or
/// with `wait` until it ends, failing unless it succeeded.
fn submit(
    jar: &Path,
    options: &SubmitOptions,
    args: &[String],
    cluster: &Cluster<'_>,
    wait: bool,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let shown: Vec<String> = cluster.masters.iter().map(ToString::to_string).collect();
    eprintln!("Submitting {} to {}...", jar.display(), shown.join(","));
    let app_id = submit_binary(jar, args, options, cluster.masters, &cluster.conf.to_hocon())?.0;
    let (masters, secret) = (cluster.masters, cluster.secret);
    eprintln!("Application {app_id} submitted; waiting for it to become active...");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut active_seen = false;
    loop {
        let apps = match ask(masters, secret, &MasterRequest::ListApps)? {
            MasterReply::Apps(apps) => apps,
            other => bail!("unexpected answer from the master: {other:?}"),
        };
        // Not listed yet counts as pending.
        let (status, error) =
            apps.into_iter().find(|a| a.id.0 == app_id).map_or((AppStatus::Pending, None), |a| (a.status, a.error));
        let after = started.elapsed().as_secs_f64();
        match status {
            AppStatus::Succeeded => {
                println!("Application {app_id} succeeded ({after:.1} s after gear app).");
                return Ok(());
            }
            AppStatus::Active if !wait => {
                println!("Application {app_id} is active ({after:.1} s after gear app).");
                return Ok(());
            }
            AppStatus::Active => {
                if !active_seen {
                    active_seen = true;
                    eprintln!("Application {app_id} is active ({after:.1} s after gear app); waiting for it to end...");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            AppStatus::Pending if std::time::Instant::now() > deadline => {
                bail!("application {app_id} is still pending after 120 s")
            }
            AppStatus::Pending => std::thread::sleep(Duration::from_millis(50)),
            other => {
                bail!("application {app_id} is {other}{}", error.map(|e| format!(": {e}")).unwrap_or_default())
            }
        }
    }
}

/// `gearpump.services.host` and the HTTP port.
fn services_addr(conf: &GearConfig) -> anyhow::Result<(String, u16)> {
    let host = conf.get_str("gearpump.services.host").unwrap_or("127.0.0.1").to_string();
    Ok((host, conf.services_port()?))
}

/// A master's options from the configuration.
fn master_options(
    conf: &GearConfig,
    me: &HostPort,
    store: ArtifactStore,
    same_process: bool,
    members: &[HostPort],
    data_dir: PathBuf,
) -> anyhow::Result<MasterOptions> {
    let settings = conf.settings()?;
    let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
    let summary = MasterSummary {
        address: me.to_string(),
        members: members.iter().map(ToString::to_string).collect(),
        started: 0,
        jar_store: store.describe(),
        log_dir: settings.daemon_log_dir.display().to_string(),
        home: std::env::var("GEARPUMP_HOME").unwrap_or(cwd),
        config: conf.to_hocon(),
        leader: None,
        synced: false,
    };
    Ok(MasterOptions {
        timing: ControlTiming::from_settings(&settings),
        store,
        same_process,
        summary,
        retention: gearpump_cluster::master::retention(&settings),
        reporter: Reporter::from_config(conf)?,
        total_retries: settings.total_retries,
        stop_timeout: settings.stop_timeout,
        scheduler: gearpump_cluster::scheduler::named(&settings.scheduler)
            .map_err(|e| anyhow::anyhow!("gearpump.scheduling.scheduler-class: {e}"))?,
        me: me.clone(),
        members: members.to_vec(),
        data_dir,
        limits: gearpump_cluster::daemon::port_limits(conf)?,
        secret: conf.cluster_secret()?,
    })
}

/// Daemons are crash-only: a panic anywhere ends the process. A master whose actor task
/// panicked would otherwise keep its connections, its Raft membership and its claim to lead
/// while answering nothing; dead, it is replaced by the next leader (and restarted by whatever
/// supervises it).
fn crash_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        tracing::error!(panic = %info, "The daemon panicked; exiting (crash-only).");
        std::process::abort();
    }));
}

/// `gear passwd`: the argon2 hash of the password on standard input's first line.
fn passwd() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        bail!("no password on standard input (e.g. `read -rs pw; echo \"$pw\" | gear passwd`)");
    }
    println!("{}", gearpump_services::auth::hash_password(password));
    Ok(())
}

/// The cluster a command talks to.
struct Cluster<'a> {
    masters: &'a [HostPort],
    secret: &'a ClusterSecret,
    conf: &'a GearConfig,
}

/// `https` when the services serve HTTPS, else `http`.
fn scheme(auth: &gearpump_services::RestAuth) -> &'static str {
    if auth.https().is_some() { "https" } else { "http" }
}

/// Warns when a daemon listens beyond this host with no cluster secret: then anyone who can
/// reach its ports can run code on the cluster.
fn warn_without_secret(secret: &ClusterSecret, host: &str) {
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !secret.is_set() && !loopback {
        tracing::warn!(
            %host,
            "No cluster secret (gearpump.cluster.secret or gearpump.cluster.secret-file): anyone who can reach this \
             host's Gearpump ports can join the cluster and run programs on it."
        );
    }
    if secret.tls().is_none() && !loopback {
        tracing::info!(
            %host,
            "Control connections are not encrypted (gearpump.tls.enabled is false); the cluster secret still \
             authenticates them."
        );
    }
}

/// One request to the first master that answers.
fn ask(masters: &[HostPort], secret: &ClusterSecret, req: &MasterRequest) -> anyhow::Result<MasterReply> {
    let list: Vec<String> = masters.iter().map(ToString::to_string).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        gearpump_cluster::daemon::ask_leader(masters, secret, req, Duration::from_secs(30))
            .await
            .with_context(|| format!("no leading master answers at {}", list.join(", ")))
    })
}
