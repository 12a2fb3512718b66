//! [`run`]: the entry point of an application binary.

use gearpump_api::StreamApplication;
use gearpump_cluster::env::ProcessRole;
use gearpump_cluster::{AppSummary, ClusterConfig, EmbeddedCluster, SubmitError, WaitError};
use gearpump_core::AppId;
use gearpump_streaming::{AppStats, AppStatus};
use std::time::{Duration, Instant};

/// How [`run`] runs an application.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Kill the application after this long (the examples' `-runseconds`); `None` runs until it
    /// ends by itself.
    pub run_for: Option<Duration>,
    /// The embedded cluster's settings.
    pub cluster: ClusterConfig,
    /// Serve the REST API and dashboard at this host and port while the application runs (a
    /// free port if that one is taken); the URL is printed.
    pub services: Option<(String, u16)>,
}

/// Running the application failed before it could end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The cluster refused it.
    #[error("the application was refused: {0}")]
    Submit(#[from] SubmitError),
    /// It could not be waited for.
    #[error(transparent)]
    Wait(#[from] WaitError),
    /// A non-streaming application was run directly, with no cluster.
    #[error(
        "{0} is a non-streaming application and runs on a cluster: start one (`gear local`) and submit this binary with `gear app -jar {1}`"
    )]
    NeedsCluster(String, String),
}

/// What happened to an application run by [`run`].
#[derive(Clone, Debug)]
pub struct RunReport {
    /// Its id.
    pub app_id: AppId,
    /// How it ended.
    pub summary: AppSummary,
    /// Time from active to its end.
    pub elapsed: Duration,
    /// Its final counters.
    pub stats: AppStats,
    /// Ids of processors with no downstream processor.
    pub sinks: Vec<gearpump_core::ProcessorId>,
}

impl RunReport {
    /// Messages received by the sink processors (those with no downstream).
    pub fn messages_processed(&self) -> u64 {
        self.stats.processors.iter().filter(|p| self.sinks.contains(&p.id)).map(|p| p.received).sum()
    }

    /// [`RunReport::messages_processed`] per second of the run.
    pub fn messages_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { self.messages_processed() as f64 / secs } else { 0.0 }
    }

    /// Receive latency at the sink processors: the worst task's median and 99th percentile,
    /// in microseconds.
    pub fn sink_latency(&self) -> Option<(u64, u64)> {
        let tasks = self.stats.processors.iter().filter(|p| self.sinks.contains(&p.id)).flat_map(|p| &p.tasks);
        let latencies: Vec<_> = tasks.filter_map(|t| t.latency).collect();
        let p50 = latencies.iter().map(|l| l.p50_us).max()?;
        let p99 = latencies.iter().map(|l| l.p99_us).max()?;
        Some((p50, p99))
    }

    /// One line: how the application ended, messages processed, messages/s, latency.
    pub fn summary_line(&self) -> String {
        let mut line = format!(
            "Summary: application {} (app {}) {} after {:.1} s: {} messages processed, {:.0} messages/s",
            self.summary.name,
            self.app_id,
            self.summary.status,
            self.elapsed.as_secs_f64(),
            self.messages_processed(),
            self.messages_per_second()
        );
        if let Some((p50, p99)) = self.sink_latency() {
            line.push_str(&format!(", receive latency p50 {:.3} ms, p99 {:.3} ms", p50 as f64 / 1e3, p99 as f64 / 1e3));
        }
        if let Some(e) = &self.summary.error {
            line.push_str(&format!(" (error: {})", gearpump_core::redact(e)));
        }
        line
    }
}

/// The part a run of an application binary plays. [`run`] runs the same `main` in every one
/// of them: by itself (`Standalone`: an embedded cluster in this process), and on a cluster as
/// the client that `gear app` starts to submit it, as its AppMaster and as each executor (each
/// a process the workers start, in a working directory of its own). Set-up with side effects
/// that should happen once (making input files, clearing an output directory) belongs where
/// [`Role::sets_up`] holds:
///
/// ```no_run
/// if gearpump::Role::current().sets_up() {
///     std::fs::create_dir_all("counts").expect("an output directory");
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Run directly: the application runs on an embedded cluster in this process.
    Standalone,
    /// Started by `gear app` to submit the application to a cluster.
    Client,
    /// The application's AppMaster, on a worker.
    AppMaster,
    /// One of the application's executors, on a worker.
    Executor,
}

impl Role {
    /// This process's role, from `GEARPUMP_ROLE` (set by `gear app` and the workers; unset:
    /// [`Role::Standalone`]). A value it does not know counts as [`Role::Executor`]; [`run`]
    /// refuses it, naming it.
    pub fn current() -> Role {
        Role::from_env().unwrap_or(Role::Executor)
    }

    fn from_env() -> Result<Role, String> {
        match gearpump_cluster::env::ProcessRole::from_env() {
            Ok(None) => Ok(Role::Standalone),
            Ok(Some(ProcessRole::Client)) => Ok(Role::Client),
            Ok(Some(ProcessRole::AppMaster)) => Ok(Role::AppMaster),
            Ok(Some(ProcessRole::Executor)) => Ok(Role::Executor),
            Err(unknown) => Err(unknown),
        }
    }

    /// Whether this process is the one that starts a run: standalone, or the client that
    /// submits to a cluster (never an AppMaster or executor).
    pub fn sets_up(self) -> bool {
        matches!(self, Role::Standalone | Role::Client)
    }

    fn as_str(self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
            Role::Client => "client",
            Role::AppMaster => "appmaster",
            Role::Executor => "executor",
        }
    }
}

/// How a binary plays each cluster role.
struct Roles<C, A, E> {
    client: C,
    appmaster: A,
    executor: E,
}

/// Plays a cluster role and exits the process with its outcome.
fn play_role<C, A, E>(role: Result<Role, String>, name: &str, roles: Roles<C, A, E>) -> !
where
    C: FnOnce() -> Result<AppId, gearpump_cluster::remote::RoleError>,
    A: FnOnce() -> Result<(), gearpump_cluster::remote::RoleError>,
    E: FnOnce() -> Result<(), gearpump_cluster::remote::RoleError>,
{
    use gearpump_cluster::remote;
    let user = gearpump_cluster::env::ProcessEnv::current().ok().and_then(|e| e.user.clone()).unwrap_or_default();
    if role != Ok(Role::Client) {
        remote::exit_with_parent();
    }
    let role_name = role.as_ref().map_or("unknown", |r| r.as_str());
    tracing::info!(role = role_name, app = name, %user, pid = std::process::id(), "Starting in a cluster role.");
    let result = match role {
        Ok(Role::Client) => (roles.client)().map(|app_id| {
            println!("Submitted application {name} as application {app_id}.");
            report(&format!("app_id {app_id}"));
        }),
        Ok(Role::AppMaster) => (roles.appmaster)(),
        Ok(Role::Executor) => (roles.executor)(),
        Ok(Role::Standalone) => unreachable!("a standalone run plays no cluster role"),
        Err(other) => Err(remote::RoleError::Env { name: "GEARPUMP_ROLE", reason: format!("unknown role {other:?}") }),
    };
    let role = role_name;
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            // Errors may quote store URLs with credentials in them.
            let e = gearpump_core::redact(&e.to_string()).into_owned();
            tracing::error!(role, error = %e, "The role failed.");
            if role == "client" {
                report(&format!("error {e}"));
            }
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

/// Tells `gear app` how the submission went, through the file it named.
fn report(line: &str) {
    if let Some(path) = gearpump_cluster::env::ProcessEnv::current().ok().and_then(|e| e.report.as_ref()) {
        let _ = std::fs::write(path, line);
    }
}

/// Sets up logging to stderr once per process: `RUST_LOG` if set, else `info` (openraft's
/// routine election and membership lines only from `warn`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs `app`.
///
/// With no cluster role in the environment, runs it to its end (or for `options.run_for`) on an
/// embedded cluster in this process and reports what happened. When a worker or `gear app`
/// started this binary in a cluster role (`GEARPUMP_ROLE` = `client`, `appmaster` or
/// `executor`), plays that role instead and exits the process; it does not return.
pub fn run(app: StreamApplication, options: RunOptions) -> Result<RunReport, RunError> {
    init_logging();
    match Role::from_env() {
        Ok(Role::Standalone) => {}
        role => {
            use gearpump_cluster::remote;
            let roles = Roles {
                client: || remote::run_client(&app),
                appmaster: || remote::run_appmaster(&app),
                executor: || remote::run_executor(&app),
            };
            play_role(role, app.name(), roles)
        }
    }
    let mut sinks: Vec<_> =
        app.dag().processors().iter().filter(|p| app.dag().outgoing(p.id).next().is_none()).map(|p| p.id).collect();
    tracing::info!("No cluster configured: running {} on an embedded cluster.", app.name());
    let cluster = EmbeddedCluster::start(options.cluster);
    let client = cluster.client();
    let services = options.services.as_ref().and_then(|(host, port)| {
        let backend = gearpump_services::EmbeddedBackend::new(client.clone(), Some(app.clone()));
        match gearpump_services::start(std::sync::Arc::new(backend), host, *port, true) {
            Ok(handle) => {
                println!("Dashboard: {}", handle.url());
                Some(handle)
            }
            Err(e) => {
                tracing::warn!(error = %e, "Cannot serve the dashboard.");
                None
            }
        }
    });
    let app_id = client.submit(app)?;
    let active = client.wait_active(app_id, Duration::from_secs(60))?;
    let started = Instant::now();
    if active.status == AppStatus::Active {
        match options.run_for {
            Some(d) => tracing::info!(%app_id, "Application is active; running for {:.0} s.", d.as_secs_f64()),
            None => tracing::info!(%app_id, "Application is active; running until it ends (Ctrl-C to stop)."),
        }
    }
    let summary = match options.run_for {
        None => client.wait(app_id, Duration::MAX)?,
        Some(d) => match client.wait(app_id, d) {
            Ok(s) => s,
            Err(WaitError::Timeout(_)) => {
                let _ = client.kill(app_id);
                client.wait(app_id, Duration::from_secs(30))?
            }
            Err(e) => return Err(e.into()),
        },
    };
    let elapsed = started.elapsed();
    let stats = client.stats(app_id).unwrap_or_default();
    // The sinks of the DAG that ran last (dynamic DAG changes may have replaced them).
    let runtime = client.snapshot().ok().and_then(|s| s.apps.into_iter().find(|a| a.info.id == app_id)?.runtime);
    if let Some(r) = runtime.filter(|r| r.version > 0) {
        let live = r.processors.iter().filter(|p| !p.retired);
        sinks = live
            .filter(|p| !r.edges.iter().any(|e| e.from == p.id))
            .map(|p| gearpump_core::ProcessorId(p.id))
            .collect();
    }
    drop(services);
    cluster.shutdown();
    Ok(RunReport { app_id, summary, elapsed, stats, sinks })
}

/// Runs a non-streaming application ([`gearpump_cluster::application`]) in the cluster role
/// this process was started in (client, AppMaster or executor) and exits the process; it does
/// not return then. Run directly (no cluster role), it returns [`RunError::NeedsCluster`]: such
/// an application is submitted to a cluster with `gear app`.
#[expect(clippy::needless_pass_by_value, reason = "taken whole, as `run` takes a streaming application")]
pub fn run_application<M: gearpump_cluster::application::AppMaster>(
    app: gearpump_cluster::application::Application<M>,
) -> Result<(), RunError> {
    use gearpump_cluster::application;
    init_logging();
    match Role::from_env() {
        Ok(Role::Standalone) => {
            let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "<binary>".into());
            Err(RunError::NeedsCluster(app.name().to_string(), exe))
        }
        role => {
            let roles = Roles {
                client: || application::submit(&app),
                appmaster: || application::run_appmaster(&app),
                executor: || application::run_executor(&app),
            };
            play_role(role, app.name(), roles)
        }
    }
}
