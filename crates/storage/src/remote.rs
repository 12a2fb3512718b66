//! Blob stores beyond the local disk, through OpenDAL: S3 and S3-compatible object stores
//! (`s3://bucket/prefix`), HDFS through its native RPC protocol (`hdfs://namenode:port/path`,
//! OpenDAL's `hdfs-native` service: no JVM and no libhdfs) or its WebHDFS gateway
//! (`webhdfs://host:port/path`), and memory (`memory://`, for tests). Options a backend needs go in the URL's query:
//! `s3://ckpt/gearpump?endpoint=http://10.0.0.5:9000&region=us-east-1`; S3 credentials come
//! from the query or from the usual `AWS_*` environment variables.
//!
//! OpenDAL is asynchronous; Gearpump's store is called from task threads and daemons alike, so
//! each store drives its operator on a runtime of its own and waits for the answer on a plain
//! channel: a call from inside another runtime cannot deadlock or panic. Every call has a
//! time limit, so an unreachable store is an error naming it rather than a hang.

use crate::{BlobStore, StorageError, valid_name};
use opendal::{ErrorKind, Operator};
use std::future::Future;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

/// How long one storage call may take before it fails.
const CALL_LIMIT: Duration = Duration::from_secs(60);
/// How long a call the store turns away for now is retried.
const TRANSIENT_LIMIT: Duration = Duration::from_secs(45);
/// How long a storage call may take before the log says so.
const SLOW_CALL: Duration = Duration::from_secs(5);

/// The schemes this build can open through OpenDAL.
pub const SCHEMES: [&str; 4] = ["s3", "hdfs", "webhdfs", "memory"];

/// Blobs in an OpenDAL-backed store.
pub struct OpenDalStore {
    driver: Driver,
}

impl std::fmt::Debug for OpenDalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenDalStore").field("root", &self.driver.shown).finish()
    }
}

/// An OpenDAL operator and the runtime that drives it, called from plain threads: each call
/// runs on the runtime and is waited for on a channel, within [`CALL_LIMIT`].
pub(crate) struct Driver {
    pub(crate) op: Operator,
    /// The root URL with any credentials in the query left out, for messages.
    pub(crate) shown: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // A store may be dropped on an async task; a runtime must not block there.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// `root` without its query and without a password in its user info, which may hold secrets.
pub(crate) fn shown(root: &str) -> String {
    gearpump_core::redact(root.split_once('?').map_or(root, |(base, _)| base)).into_owned()
}

impl Driver {
    /// An operator for URL `root` (scheme `scheme`, one of [`SCHEMES`], or `fs` for a local
    /// directory given as `fs:///abs/path`).
    pub(crate) fn open(root: &str, scheme: &str) -> Result<Self, StorageError> {
        if !SCHEMES.contains(&scheme) && scheme != "fs" {
            return Err(StorageError::UnsupportedScheme { root: shown(root), scheme: scheme.into() });
        }
        opendal::init_default_registry();
        // HTTPS through rustls with ring (smaller to build than the default aws-lc); a
        // provider installed earlier by the process is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The facade installs its HTTP client only with the aws-lc build; install it here.
        opendal_http_transport_reqwest::install_default();
        let bad = |why: String| StorageError::BadRoot { root: shown(root), why };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("gearpump-storage")
            .enable_all()
            .build()
            .map_err(|e| StorageError::Io { path: PathBuf::from(shown(root)), source: e })?;
        // Built inside the store's own runtime: a client that keeps background tasks (HDFS's
        // RPC connections) spawns them there, not on the caller's runtime, whose thread blocks
        // while it waits for a call (which would starve them: a deadlock until the time limit).
        let op = {
            let _inside = runtime.enter();
            match root.strip_prefix("hdfs://") {
                Some(rest) => hdfs(rest).map_err(|e| bad(e.to_string()))?,
                None => Operator::from_uri(root).map_err(|e| bad(e.to_string()))?,
            }
            .layer(opendal::layers::RetryLayer::new().with_max_times(3))
        };
        Ok(Driver { op, shown: shown(root), runtime: Some(runtime) })
    }

    /// Runs `call` on the runtime and waits for it, within [`CALL_LIMIT`]; `what` names the
    /// path concerned in errors.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        what: &str,
        call: impl Future<Output = opendal::Result<T>> + Send + 'static,
    ) -> Result<T, StorageError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let runtime = self.runtime.as_ref().expect("a driver has its runtime until dropped");
        runtime.spawn(async move {
            let _ = tx.send(tokio::time::timeout(CALL_LIMIT, call).await);
        });
        let path = PathBuf::from(format!("{}/{what}", self.shown));
        // A slow store is named in the log while the call still waits, not only when it fails.
        let answer = match rx.recv_timeout(SLOW_CALL) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                tracing::warn!(path = %path.display(), waited_s = SLOW_CALL.as_secs(), "A storage call is slow.");
                rx.recv()
            }
            Ok(answer) => Ok(answer),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(std::sync::mpsc::RecvError),
        };
        match answer {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) if e.kind() == ErrorKind::NotFound => Err(StorageError::NotFound(what.into())),
            Ok(Ok(Err(e))) => Err(StorageError::Io { path, source: std::io::Error::other(e.to_string()) }),
            Ok(Err(_)) => Err(StorageError::Io {
                path,
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {} s", CALL_LIMIT.as_secs()),
                ),
            }),
            Err(_) => Err(StorageError::Io { path, source: std::io::Error::other("the storage runtime stopped") }),
        }
    }
}

/// Whether `e` says the store turned the call away for now, without doing it: HDFS in safe
/// mode (a NameNode that restarted waits for its DataNodes' block reports), a NameNode still
/// starting, or a standby one. Such calls are retried.
fn transient(e: &opendal::Error) -> bool {
    let text = e.to_string();
    ["SafeModeException", "RetriableException", "StandbyException", "NameNode still not started"]
        .iter()
        .any(|t| text.contains(t))
}

impl Driver {
    /// Runs the call `make` builds from the operator, as [`Driver::run`] does; a call the
    /// store turns away for now ([`transient`]) is made again, with a growing pause, for up to
    /// [`TRANSIENT_LIMIT`]. Only for calls that may be made twice (everything but the pieces of
    /// a file being written).
    pub(crate) fn call<T, F, Fut>(&self, what: &str, make: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: Fn(Operator) -> Fut + Send + 'static,
        Fut: Future<Output = opendal::Result<T>> + Send + 'static,
    {
        let op = self.op.clone();
        let shown = format!("{}/{what}", self.shown);
        self.run(what, async move {
            let began = std::time::Instant::now();
            let mut pause = Duration::from_millis(100);
            let mut warned = false;
            loop {
                match make(op.clone()).await {
                    Err(e) if transient(&e) && began.elapsed() + pause < TRANSIENT_LIMIT => {
                        if !warned {
                            tracing::warn!(path = %shown, error = %e.to_string().lines().next().unwrap_or_default(),
                                "The store is not ready (HDFS in safe mode or starting); retrying.");
                            warned = true;
                        }
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(2));
                    }
                    other => return other,
                }
            }
        })
    }
}

/// An operator for `hdfs://<rest>`: OpenDAL's native HDFS client, with the URL's `dfs.*`
/// query options passed to it as Hadoop client settings (`dfs.client.failover.max.attempts`,
/// `dfs.client.socket-timeout`, …).
fn hdfs(rest: &str) -> opendal::Result<Operator> {
    let (base, query) = rest.split_once('?').map_or((rest, ""), |(b, q)| (b, q));
    let (authority, path) = base.split_once('/').map_or((base, ""), |(a, p)| (a, p));
    let options: std::collections::HashMap<String, String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| k.starts_with("dfs.") || k.starts_with("ipc.") || k.starts_with("hadoop."))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let builder = opendal::services::HdfsNative::default()
        .name_node(&format!("hdfs://{authority}"))
        .root(&format!("/{path}"))
        .options(options);
    Operator::new(builder)
}

impl OpenDalStore {
    /// Opens the store at URL `root` with scheme `scheme` (one of [`SCHEMES`]).
    pub fn open(root: &str, scheme: &str) -> Result<Self, StorageError> {
        if !SCHEMES.contains(&scheme) {
            return Err(StorageError::UnsupportedScheme { root: shown(root), scheme: scheme.into() });
        }
        Ok(OpenDalStore { driver: Driver::open(root, scheme)? })
    }
}

impl BlobStore for OpenDalStore {
    fn put(&self, name: &str, from: &mut dyn Read) -> Result<u64, StorageError> {
        valid_name(name)?;
        let mut bytes = Vec::new();
        from.read_to_end(&mut bytes).map_err(|source| StorageError::Io {
            path: PathBuf::from(format!("{}/{name}", self.driver.shown)),
            source,
        })?;
        let len = bytes.len() as u64;
        // One PUT: an object store shows either the old object or the whole new one.
        let (path, bytes) = (name.to_string(), opendal::Buffer::from(bytes));
        self.driver.call(name, move |op| {
            let (path, bytes) = (path.clone(), bytes.clone());
            async move { op.write(&path, bytes).await }
        })?;
        Ok(len)
    }

    fn read_at(&self, name: &str, offset: u64, max: usize) -> Result<(Vec<u8>, bool), StorageError> {
        valid_name(name)?;
        let path = name.to_string();
        self.driver.call(name, move |op| {
            let path = path.clone();
            async move {
                let len = op.stat(&path).await?.content_length();
                let start = offset.min(len);
                let end = start.saturating_add(max as u64).min(len);
                let bytes =
                    if start == end { Vec::new() } else { op.read_with(&path).range(start..end).await?.to_vec() };
                Ok((bytes, end >= len))
            }
        })
    }

    fn exists(&self, name: &str) -> bool {
        if valid_name(name).is_err() {
            return false;
        }
        let path = name.to_string();
        self.driver
            .call(name, move |op| {
                let path = path.clone();
                async move { op.exists(&path).await }
            })
            .unwrap_or(false)
    }

    fn list(&self) -> Result<Vec<String>, StorageError> {
        let entries = self.driver.call("", |op| async move { op.list("").await })?;
        let mut names: Vec<String> = entries
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .map(|e| e.name().to_string())
            .filter(|n| valid_name(n).is_ok())
            .collect();
        names.sort();
        Ok(names)
    }

    fn delete(&self, name: &str) -> Result<(), StorageError> {
        valid_name(name)?;
        let path = name.to_string();
        let deleted = self.driver.call(name, move |op| {
            let path = path.clone();
            async move { op.delete(&path).await }
        });
        match deleted {
            Err(StorageError::NotFound(_)) => Ok(()),
            other => other,
        }
    }

    fn describe(&self) -> String {
        self.driver.shown.clone()
    }
}
