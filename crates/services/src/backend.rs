//! Where the REST API gets its answers: a cluster's master over the control protocol, or an
//! embedded cluster in this process.

use gearpump_api::{Processor, StreamApplication};
use gearpump_cluster::ClusterClient;
use gearpump_cluster::daemon::{MasterClient, submit_binary};
use gearpump_config::HostPort;
use gearpump_core::{AppId, UserConfig};
use gearpump_metrics::{MetricPoint, ReadOption};
use gearpump_protocol::{ClusterSecret, ClusterSnapshot, MasterError, MasterReply, MasterRequest};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed future, so that backends can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a request could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// Something named does not exist (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The request is wrong (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// The cluster cannot be reached (HTTP 503).
    #[error("{0}")]
    Unavailable(String),
    /// The request conflicts with one under way (HTTP 409).
    #[error("{0}")]
    Conflict(String),
}

/// An uploaded file, written to a temporary directory as it arrived (never held in memory);
/// the file is deleted when this is dropped.
#[derive(Debug)]
pub struct Upload {
    path: std::path::PathBuf,
    len: u64,
    name: String,
}

impl Upload {
    /// A new, empty upload file named after `name` (the client's file name, shown back).
    pub async fn create(name: &str) -> std::io::Result<(Upload, tokio::fs::File)> {
        let dir = std::env::temp_dir().join(format!("gear-services-{}", std::process::id()));
        tokio::fs::create_dir_all(&dir).await?;
        let path = dir.join(format!("upload-{}", fastrand_name()));
        let file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&path).await?;
        Ok((Upload { path, len: 0, name: name.to_string() }, file))
    }

    /// Where the bytes are.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// How many bytes it has.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The client's name for it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counts `n` more bytes written.
    pub fn grew(&mut self, n: u64) {
        self.len += n;
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

pub use gearpump_protocol::{DagProcessor, DagRequest};

/// What the REST API asks of a cluster. Both kinds of cluster answer the master's requests
/// ([`Backend::ask`]); the rest is built on that.
pub trait Backend: Send + Sync + 'static {
    /// Asks the (leading) master; its refusal is the error, by its kind ([`MasterError`]).
    fn ask(&self, req: MasterRequest) -> BoxFuture<'_, Result<MasterReply, BackendError>>;
    /// The cluster's state.
    fn snapshot(&self) -> BoxFuture<'_, Result<ClusterSnapshot, BackendError>> {
        Box::pin(async move {
            match self.ask(MasterRequest::Snapshot).await? {
                MasterReply::Snapshot(s) => Ok(*s),
                other => Err(unexpected(&other)),
            }
        })
    }
    /// Metric points under a path.
    fn metrics(&self, path: String, option: ReadOption) -> BoxFuture<'_, Result<Vec<MetricPoint>, BackendError>> {
        Box::pin(async move {
            match self.ask(MasterRequest::QueryMetrics { path, option }).await? {
                MasterReply::Metrics(points) => Ok(points),
                other => Err(unexpected(&other)),
            }
        })
    }
    /// Kills an application.
    fn kill(&self, app_id: AppId) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            match self.ask(MasterRequest::KillApp { app_id }).await? {
                MasterReply::Ok => Ok(()),
                other => Err(unexpected(&other)),
            }
        })
    }
    /// Restarts a running application's tasks from its start clock.
    fn replay(&self, app_id: AppId) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            match self.ask(MasterRequest::ReplayApp { app_id }).await? {
                MasterReply::Ok => Ok(()),
                other => Err(unexpected(&other)),
            }
        })
    }
    /// The end of a process's log (`executor` -1: the AppMaster's): its path and text.
    fn log(&self, app_id: AppId, executor: i32, bytes: u32) -> BoxFuture<'_, Result<(String, String), BackendError>> {
        Box::pin(async move {
            match self.ask(MasterRequest::ReadLog { app_id, executor, bytes }).await? {
                MasterReply::Log { path, text } => Ok((path, text)),
                other => Err(unexpected(&other)),
            }
        })
    }
    /// Changes a running application's DAG; the version the change made.
    fn change_dag(&self, app_id: AppId, change: gearpump_core::DagChange) -> BoxFuture<'_, Result<u32, BackendError>> {
        Box::pin(async move {
            match self.ask(MasterRequest::ChangeDag { app_id, change }).await? {
                MasterReply::DagChanged { version } => Ok(version),
                other => Err(unexpected(&other)),
            }
        })
    }
    /// Kills (if running) and resubmits an application; the new id.
    fn restart(&self, app_id: AppId) -> BoxFuture<'_, Result<AppId, BackendError>> {
        Box::pin(async move {
            match self.ask(MasterRequest::RestartApp { app_id }).await? {
                MasterReply::Submitted { app_id } => Ok(app_id),
                other => Err(unexpected(&other)),
            }
        })
    }
    /// Whether [`Backend::upload`] and [`Backend::submit_binary`] can succeed at all: when
    /// not, an upload is refused before its body is read.
    fn takes_binaries(&self) -> bool {
        true
    }
    /// Stores an application binary (streamed to a temporary file); its artifact id.
    fn upload(&self, file: Upload) -> BoxFuture<'_, Result<String, BackendError>>;
    /// Submits an application binary (streamed to a temporary file) with arguments on
    /// `executors` executors (0: one per worker), as `user` (the logged-in REST user; `None`:
    /// the user the services run as).
    fn submit_binary(
        &self,
        file: Upload,
        args: Vec<String>,
        executors: u32,
        user: Option<String>,
    ) -> BoxFuture<'_, Result<AppId, BackendError>>;
    /// Submits a DAG of registered task types as `user` (as for [`Backend::submit_binary`]).
    fn submit_dag(&self, dag: DagRequest, user: Option<String>) -> BoxFuture<'_, Result<AppId, BackendError>>;
}

/// What a master's refusal is to a REST client, by its kind: an unknown application is not
/// found (404); anything else is a request the master will not carry out (400).
fn refused(e: &MasterError) -> BackendError {
    if e.is_not_found() {
        BackendError::NotFound(e.to_string())
    } else if matches!(e, MasterError::DagChangePending(_)) {
        BackendError::Conflict(e.to_string())
    } else if e.is_transient() {
        BackendError::Unavailable(e.to_string())
    } else {
        BackendError::BadRequest(e.to_string())
    }
}

/// Builds an application from a JSON DAG, its task types looked up among those of `base` (the
/// processors of the application this process was built with, and what it registered).
pub fn app_from_dag(base: &StreamApplication, dag: &DagRequest) -> Result<StreamApplication, BackendError> {
    let bad = |e: String| BackendError::BadRequest(e);
    let mut builder = StreamApplication::builder(dag.app_name.clone());
    let known = base.dag();
    for p in known.processors() {
        builder = builder.register(p.task_type.clone(), known.factory(p.id).clone());
    }
    let mut processors = std::collections::BTreeMap::new();
    for (id, p) in &dag.processors {
        let mut conf = UserConfig::empty();
        for (k, v) in &p.task_conf {
            conf = conf.with(k.as_str(), v.as_str());
        }
        let processor =
            Processor::named(p.task_class.clone(), p.parallelism).description(p.description.clone()).config(conf);
        builder = builder.processor(&processor);
        processors.insert(id.clone(), processor);
    }
    for (from, partitioner, to) in &dag.edges {
        let get = |id: &String| processors.get(id).ok_or_else(|| bad(format!("edge names unknown processor {id:?}")));
        let spec = gearpump_api::PartitionerSpec::by_name(partitioner).ok_or_else(|| {
            bad(format!(
                "unknown partitioner {partitioner:?}; built-in ones are {}",
                gearpump_api::PartitionerSpec::BUILT_IN.join(", ")
            ))
        })?;
        builder = builder.edge(get(from)?, spec, get(to)?);
    }
    let mut app = builder.build().map_err(|e| bad(e.to_string()))?;
    app = app.with_codecs_of(base);
    Ok(app)
}

/// An embedded cluster in this process (an application binary run by itself).
pub struct EmbeddedBackend {
    client: ClusterClient,
    /// The application this binary was built with: the task types `submitdag` may use.
    base: Option<StreamApplication>,
}

impl EmbeddedBackend {
    /// A backend over `client`; `base` gives the task types a submitted DAG may use.
    pub fn new(client: ClusterClient, base: Option<StreamApplication>) -> Self {
        EmbeddedBackend { client, base }
    }

    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(ClusterClient) -> Result<T, BackendError> + Send + 'static,
    ) -> BoxFuture<'_, Result<T, BackendError>> {
        let client = self.client.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(client))
                .await
                .unwrap_or_else(|e| Err(BackendError::Unavailable(e.to_string())))
        })
    }
}

pub(crate) const EMBEDDED_ONLY: &str = "this embedded cluster runs only the application of its own binary; submit binaries to a \
     cluster started with `gear local` or `gear master` and `gear services`";

impl Backend for EmbeddedBackend {
    fn ask(&self, req: MasterRequest) -> BoxFuture<'_, Result<MasterReply, BackendError>> {
        self.blocking(move |c| c.ask(req).map_err(|e| refused(&e)))
    }

    fn takes_binaries(&self) -> bool {
        false
    }

    fn upload(&self, _file: Upload) -> BoxFuture<'_, Result<String, BackendError>> {
        Box::pin(async { Err(BackendError::BadRequest(EMBEDDED_ONLY.into())) })
    }

    fn submit_binary(
        &self,
        _: Upload,
        _: Vec<String>,
        _: u32,
        _: Option<String>,
    ) -> BoxFuture<'_, Result<AppId, BackendError>> {
        Box::pin(async { Err(BackendError::BadRequest(EMBEDDED_ONLY.into())) })
    }

    fn submit_dag(&self, dag: DagRequest, user: Option<String>) -> BoxFuture<'_, Result<AppId, BackendError>> {
        let Some(base) = self.base.clone() else {
            return Box::pin(async { Err(BackendError::BadRequest("no task types are registered here".into())) });
        };
        self.blocking(move |c| {
            let app = app_from_dag(&base, &dag)?;
            c.submit_as(app, user).map_err(|e| BackendError::BadRequest(e.to_string()))
        })
    }
}

/// A cluster's masters, over the control protocol (`gear services`, `gear local -services`).
pub struct RemoteBackend {
    masters: Vec<HostPort>,
    secret: ClusterSecret,
    system_config: String,
}

impl RemoteBackend {
    /// A backend asking the first of `masters` that answers, proving it holds the cluster
    /// `secret`; binaries it submits get `system_config` (HOCON) as theirs.
    pub fn new(masters: Vec<HostPort>, secret: ClusterSecret, system_config: String) -> Self {
        RemoteBackend { masters, secret, system_config }
    }
}

fn unexpected(reply: &MasterReply) -> BackendError {
    BackendError::Unavailable(format!("unexpected answer from the master: {reply:?}"))
}

impl Backend for RemoteBackend {
    fn ask(&self, req: MasterRequest) -> BoxFuture<'_, Result<MasterReply, BackendError>> {
        Box::pin(async move {
            let list: Vec<String> = self.masters.iter().map(ToString::to_string).collect();
            let asked =
                gearpump_cluster::daemon::ask_leader(&self.masters, &self.secret, &req, Duration::from_secs(60));
            match asked.await {
                Ok(MasterReply::Error(e)) => Err(BackendError::BadRequest(e)),
                Ok(MasterReply::Refused(e)) => Err(refused(&e)),
                Ok(reply) => Ok(reply),
                Err(e) => {
                    Err(BackendError::Unavailable(format!("no leading master answers at {}: {e}", list.join(", "))))
                }
            }
        })
    }

    fn upload(&self, file: Upload) -> BoxFuture<'_, Result<String, BackendError>> {
        Box::pin(async move {
            use gearpump_cluster::daemon::artifacts::CHUNK;
            use std::io::{Read, Seek, SeekFrom};
            let list: Vec<String> = self.masters.iter().map(ToString::to_string).collect();
            let mut client = MasterClient::connect(&self.masters, &self.secret)
                .await
                .map_err(|e| BackendError::Unavailable(format!("no master answers at {}: {e}", list.join(", "))))?;
            let mut source = std::fs::File::open(file.path())
                .map_err(|e| BackendError::Unavailable(format!("reading the upload back: {e}")))?;
            let len = file.len();
            // One chunk at a time from the file: the binary is never whole in memory.
            let chunk = |offset: u64| {
                let n = CHUNK.min((len - offset.min(len)) as usize);
                let mut buf = vec![0; n];
                source.seek(SeekFrom::Start(offset)).and_then(|_| source.read_exact(&mut buf))?;
                Ok((buf, offset + n as u64 >= len))
            };
            match client.upload_artifact(chunk).await {
                Ok(Ok(id)) => Ok(id),
                Ok(Err(MasterReply::Error(e))) => Err(BackendError::BadRequest(e)),
                Ok(Err(MasterReply::Refused(e))) => Err(refused(&e)),
                Ok(Err(other)) => Err(unexpected(&other)),
                Err(e) => Err(BackendError::Unavailable(e.to_string())),
            }
        })
    }

    fn submit_binary(
        &self,
        file: Upload,
        args: Vec<String>,
        executors: u32,
        user: Option<String>,
    ) -> BoxFuture<'_, Result<AppId, BackendError>> {
        let masters = self.masters.clone();
        let system_config = self.system_config.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| BackendError::Unavailable(format!("making the upload executable: {e}")))?;
                let options = gearpump_cluster::daemon::SubmitOptions { executors, user, ..Default::default() };
                let result = submit_binary(file.path(), &args, &options, &masters, &system_config);
                drop(file);
                result.map_err(|e| match e {
                    gearpump_cluster::daemon::SubmitBinaryError::Io { .. } => BackendError::BadRequest(format!(
                        "the uploaded file cannot run here (is it an application binary for this platform?): {e}"
                    )),
                    e => BackendError::BadRequest(e.to_string()),
                })
            })
            .await
            .unwrap_or_else(|e| Err(BackendError::Unavailable(e.to_string())))
        })
    }

    fn submit_dag(&self, _dag: DagRequest, _user: Option<String>) -> BoxFuture<'_, Result<AppId, BackendError>> {
        Box::pin(async {
            Err(BackendError::BadRequest(
                "submitdag needs the task types' binary: on a cluster, submit that binary with master/submitapp; \
                 an application binary run by itself (its embedded cluster) accepts submitdag"
                    .into(),
            ))
        })
    }
}

fn fastrand_name() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{nanos:x}")
}
