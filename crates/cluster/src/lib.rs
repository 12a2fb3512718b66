//! # gearpump-cluster
//!
//! The cluster: a master that owns workers' slots and applications, workers that host
//! executors, and the client that submits, lists, kills and waits for applications.
//!
//! - [`scheduler`]: slot allocation as a pure function (the priority scheduler: each slot to
//!   the worker with the most free slots, so an application spreads over the cluster).
//! - [`core`]: the master's decisions as a pure state machine (application table, slot
//!   accounting, submission checks, kill, replay, restart, AppMaster relaunch, worker loss),
//!   which both masters drive.
//! - [`master`]: the master actor. It assigns application ids from 1, refuses a duplicate
//!   running name, starts each application's AppMaster on a worker, answers its request for
//!   slots, records status changes and frees slots when an application ends.
//! - [`EmbeddedCluster`]: master, workers, AppMasters and executors in one process, the default
//!   a newcomer meets first and what most tests use.
//! - [`daemon`]: the networked master and worker daemons and the master's client.
//! - [`env`](mod@env): the environment contract between the cluster and the processes of an
//!   application binary, typed and parsed once.
//! - [`remote`]: the roles an application binary plays in a cluster: client, AppMaster,
//!   executor.
//! - [`ClusterClient`]: a blocking client: `submit`, `list`, `status`, `kill`, `wait`, `stats`.
//!
//! ```no_run
//! use gearpump_cluster::{ClusterConfig, EmbeddedCluster};
//! # fn app() -> gearpump_api::StreamApplication { unimplemented!() }
//! let cluster = EmbeddedCluster::start(ClusterConfig::default());
//! let client = cluster.client();
//! let id = client.submit(app()).unwrap();
//! let summary = client.wait(id, std::time::Duration::from_secs(60)).unwrap();
//! println!("application {id} ended {}", summary.status);
//! cluster.shutdown();
//! ```

pub mod application;
mod client;
pub mod core;
pub mod daemon;
pub mod env;
pub mod master;
pub mod remote;
pub mod scheduler;

pub use client::{ClusterClient, EmbeddedCluster, WaitError};
pub use gearpump_streaming::{AppStats, AppStatus, DataPlane};
pub use master::{AppSummary, ClusterConfig, KillError, SubmitError, WorkerSummary};

/// The name of the user running this process, recorded as an application's submitter:
/// `$USER`, else `$LOGNAME`, else the name `/etc/passwd` gives this process's uid (services and
/// CI jobs often run without a login environment), else the uid itself.
pub fn current_user() -> String {
    use std::os::unix::fs::MetadataExt;
    for var in ["USER", "LOGNAME"] {
        if let Ok(name) = std::env::var(var)
            && !name.is_empty()
        {
            return name;
        }
    }
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else { return "unknown".into() };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == uid.to_string())
        .map_or_else(|| format!("uid{uid}"), |f| f[0].to_string())
}
