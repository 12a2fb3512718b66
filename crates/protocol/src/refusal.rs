//! Why a master refuses a request: one typed error for both masters, carried on the wire in
//! [`crate::MasterReply::Refused`] and mapped to HTTP codes by variant.

use gearpump_core::{AppId, AppStatus, WorkerId};
use serde::{Deserialize, Serialize};

/// Why the master refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MasterError {
    /// The application is invalid (a bad name, say): why.
    #[error("{0}")]
    Invalid(String),
    /// No such application.
    #[error("application {0} does not exist")]
    UnknownApp(AppId),
    /// It has ended already.
    #[error("application {id} is not running; it is {status}")]
    NotRunning {
        /// The application.
        id: AppId,
        /// Its final status.
        status: AppStatus,
    },
    /// An application of that name is still running.
    #[error("an application named {name:?} is already running as application {id}")]
    DuplicateName {
        /// The name.
        name: String,
        /// The running application.
        id: AppId,
    },
    /// More tasks than any application may have.
    #[error("the application asks for {tasks} tasks; at most {max} are allowed")]
    TooManyTasks {
        /// Tasks asked for.
        tasks: u32,
        /// The limit.
        max: u32,
    },
    /// The cluster has too few free slots for a submission.
    #[error("not enough free slots: the application needs {needed}, the cluster has {free}")]
    NotEnoughSlots {
        /// Slots needed (tasks + 1 for the AppMaster).
        needed: u64,
        /// Slots free.
        free: u64,
    },
    /// The cluster has too few free slots for a running application's request.
    #[error("not enough free slots for {wanted} tasks")]
    NoSlotsFor {
        /// Slots asked for.
        wanted: u32,
    },
    /// A worker asked for has too few free slots.
    #[error("worker {worker} has not {wanted} free slots")]
    NoSlotsOn {
        /// The worker.
        worker: WorkerId,
        /// Slots asked for.
        wanted: u32,
    },
    /// The application has no AppMaster registered right now (one is being launched).
    #[error("application {0} has no AppMaster right now; try again")]
    NoAppMaster(AppId),
    /// The request came from an AppMaster that no longer speaks for the application.
    #[error("application {0} has another AppMaster now")]
    ReplacedAppMaster(AppId),
    /// An AppMaster older than the application's newest tried to register.
    #[error("application {id} has a newer AppMaster (launch {newest}) than this one ({this})")]
    NewerAppMaster {
        /// The application.
        id: AppId,
        /// Its newest launch (1: the first).
        newest: u32,
        /// The launch that tried to register.
        this: u32,
    },
    /// The worker is not alive (or not known).
    #[error("worker {0} is not alive")]
    WorkerNotAlive(WorkerId),
    /// This master began leading moments ago and its workers are still registering with it,
    /// so its free slots are not known yet: ask again shortly.
    #[error("the master took over moments ago and its workers are still registering; try again")]
    WorkersRejoining,
    /// The master is gone.
    #[error("the cluster has shut down")]
    ClusterStopped,
    /// A DAG change is asked for while another is under way (the guide's words).
    #[error("application {0} is in the process of handling previous dynamic dag change")]
    DagChangePending(AppId),
    /// The AppMaster refused a DAG change, or was lost before it answered: why. The DAG runs
    /// on as it was.
    #[error("the DAG change was not made: {0}")]
    DagChangeRefused(String),
}

impl MasterError {
    /// Whether the error names something that does not exist (REST answers 404).
    pub fn is_not_found(&self) -> bool {
        matches!(self, MasterError::UnknownApp(_))
    }

    /// Whether the same request may well succeed a moment later (REST answers 503).
    pub fn is_transient(&self) -> bool {
        matches!(self, MasterError::WorkersRejoining | MasterError::NoAppMaster(_))
    }
}
