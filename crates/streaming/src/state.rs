//! The runtime's [`StateStore`]: persistent tasks' checkpoints in a [`CheckpointStore`], each
//! save reported to the AppMaster as a [`TaskEvent::Checkpointed`].

use crate::task::TaskEvent;
use gearpump_api::{StateStore, StreamApplication, TaskError};
use gearpump_core::{AppId, TaskId, Timestamp};
use gearpump_storage::{CheckpointStore, StorageError};
use tokio::sync::mpsc::UnboundedSender;

/// Config key: where checkpoints are kept (a local directory by default, relative to the
/// AppMaster's working directory); each application's under `app<id>` in it.
pub const CHECKPOINT_ROOT_KEY: &str = "state.checkpoint.store.rootpath";

/// Where application `app_id` keeps checkpoints, if it has stateful processors: `app<id>` under
/// [`CHECKPOINT_ROOT_KEY`] of its config (default `checkpoints`). A relative root is made
/// absolute against `GEARPUMP_HOME` (a cluster's master sets it to its home directory, so that
/// every AppMaster and executor of the machine finds the same store), else this process's
/// working directory. Across machines the root must be a shared file system.
pub fn checkpoint_dir(app_id: AppId, app: &StreamApplication) -> Result<Option<String>, TaskError> {
    if !app.dag().processors().iter().any(|p| p.stateful) {
        return Ok(None);
    }
    let root: String = app.config().get_or(CHECKPOINT_ROOT_KEY, "checkpoints".to_string())?;
    let root = if root.contains("://") || std::path::Path::new(&root).is_absolute() {
        root
    } else {
        let home = match std::env::var_os("GEARPUMP_HOME") {
            Some(home) if !home.is_empty() => std::path::PathBuf::from(home),
            _ => std::env::current_dir().map_err(|e| TaskError::msg(format!("the working directory: {e}")))?,
        };
        home.join(root).to_string_lossy().into_owned()
    };
    Ok(Some(gearpump_storage::join(&root, &format!("app{app_id}"))))
}

/// Opens the checkpoint store in `dir`.
pub fn open_checkpoints(dir: &str) -> Result<CheckpointStore, TaskError> {
    let blobs = gearpump_storage::open(dir)
        .map_err(|e| TaskError::msg(format!("opening the checkpoint store {}: {e}", gearpump_core::redact(dir))))?;
    Ok(CheckpointStore::new(blobs))
}

/// The checkpoint store of application `app_id`, if it has stateful processors (see
/// [`checkpoint_dir`]).
pub fn checkpoint_store(app_id: AppId, app: &StreamApplication) -> Result<Option<CheckpointStore>, TaskError> {
    checkpoint_dir(app_id, app)?.map(|dir| open_checkpoints(&dir)).transpose()
}

/// Deletes the checkpoints of `dag`'s stateful tasks older than the start clock `start` (they
/// can no longer be restored), and every checkpoint of a processor a DAG change retired before
/// `start` (its successor has its own by then); a failure is logged, never fatal.
pub fn prune_checkpoints(store: &CheckpointStore, dag: &gearpump_api::Dag, start: Timestamp) {
    let retired = (dag.processors().iter())
        .filter(|p| p.stateful && p.retired && p.life.death < start)
        .flat_map(|p| (0..p.parallelism).map(move |i| (TaskId::new(p.id.0, i), Timestamp::MAX)));
    for (task, before) in dag.stateful_tasks().map(|t| (t, start)).chain(retired) {
        if let Err(e) = store.prune(task, before) {
            tracing::warn!(%task, error = %e, "Deleting old checkpoints failed.");
        }
    }
}

/// Checkpoints of one deployment's tasks.
pub struct TaskStates {
    store: CheckpointStore,
    events: UnboundedSender<TaskEvent>,
    /// The application's initial start clock: a task may start there with no checkpoint
    /// (fresh state); anywhere later a missing checkpoint is an error.
    initial: Timestamp,
}

impl TaskStates {
    /// Checkpoints in `store`, reported on `events`.
    pub fn new(store: CheckpointStore, events: UnboundedSender<TaskEvent>, initial: Timestamp) -> Self {
        TaskStates { store, events, initial }
    }
}

impl StateStore for TaskStates {
    fn load(&self, task: TaskId, time: Timestamp) -> Result<Option<Vec<u8>>, TaskError> {
        match self.store.get(task, time) {
            Ok(state) => Ok(Some(state)),
            Err(StorageError::MissingCheckpoint { .. }) if time <= self.initial => Ok(None),
            Err(e) => Err(TaskError::msg(e)),
        }
    }

    fn save(&self, task: TaskId, time: Timestamp, state: &[u8]) -> Result<(), TaskError> {
        let began = std::time::Instant::now();
        self.store.put(task, time, state).map_err(TaskError::msg)?;
        let (bytes, took_us) = (state.len() as u64, began.elapsed().as_micros() as u64);
        let _ = self.events.send(TaskEvent::Checkpointed { task, time, bytes, took_us });
        Ok(())
    }

    fn prune(&self, task: TaskId, time: Timestamp) -> Result<(), TaskError> {
        self.store.prune(task, time).map_err(TaskError::msg)
    }
}
