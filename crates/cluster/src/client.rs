//! The embedded cluster and the blocking client.

use crate::application::{AppClient, AppMaster, Application, ClientError};
use crate::master::{AppSummary, Board, ClusterConfig, KillError, Master, MasterCommand, SubmitError, WorkerSummary};
use gearpump_api::StreamApplication;
use gearpump_core::AppId;
use gearpump_metrics::{MetricPoint, ReadOption};
use gearpump_protocol::{ClusterSnapshot, MasterError, MasterReply, MasterRequest};
use gearpump_streaming::{AppStats, Runtime, TaskPool};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Waiting for an application failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// No such application.
    #[error("application {0} does not exist")]
    UnknownApp(AppId),
    /// It did not end in time; here is where it stands.
    #[error("application {} is still {} after waiting", .0.id, .0.status)]
    Timeout(Box<AppSummary>),
}

/// A blocking client of a cluster. Cheap to clone. Call it from ordinary threads, not from
/// inside an async task.
#[derive(Clone)]
pub struct ClusterClient {
    master: mpsc::UnboundedSender<MasterCommand>,
    board: Arc<Board>,
}

impl ClusterClient {
    /// Submits an application; returns its id.
    pub fn submit(&self, app: StreamApplication) -> Result<AppId, SubmitError> {
        self.submit_as(app, None)
    }

    /// Submits an application as `user` (its recorded submitter; `None`: the cluster's user).
    pub fn submit_as(&self, app: StreamApplication, user: Option<String>) -> Result<AppId, SubmitError> {
        let (reply, answer) = oneshot::channel();
        self.master
            .send(MasterCommand::Submit { app: Box::new(app), user, reply })
            .map_err(|_| SubmitError::ClusterStopped)?;
        answer.blocking_recv().map_err(|_| SubmitError::ClusterStopped)?
    }

    /// Submits a non-streaming application ([`crate::application`]): its AppMaster and
    /// executors run as tasks of this cluster (one executor per slot its placements get, on
    /// the embedded workers). Returns its id.
    pub fn submit_application<M: AppMaster>(&self, app: Application<M>) -> Result<AppId, SubmitError> {
        let (reply, answer) = oneshot::channel();
        let name = app.name().to_string();
        let launch = crate::application::embedded_launcher(app);
        self.master
            .send(MasterCommand::SubmitOther { name, kind: M::KIND, launch, user: None, reply })
            .map_err(|_| SubmitError::ClusterStopped)?;
        answer.blocking_recv().map_err(|_| SubmitError::ClusterStopped)?
    }

    /// A client of running non-streaming application `id`, of `M`'s kind.
    pub fn app_client<M: AppMaster>(&self, id: AppId) -> Result<AppClient<M>, ClientError> {
        let (kind, address) = match self.ask(MasterRequest::ResolveAppMaster { app_id: id })? {
            MasterReply::AppMaster { kind, address } => (kind, address),
            other => return Err(ClientError::Other(format!("unexpected answer from the master: {other:?}"))),
        };
        if kind != M::KIND {
            return Err(ClientError::WrongKind { app_id: id, kind, wanted: M::KIND });
        }
        let address = address.ok_or(ClientError::NotServing(id))?;
        AppClient::connect_at(address, &self.board.secret)
    }

    /// Kills a running application.
    pub fn kill(&self, id: AppId) -> Result<(), KillError> {
        self.ask(MasterRequest::KillApp { app_id: id }).map(drop)
    }

    /// Restarts a running application's tasks from its start clock (a replay; the restart
    /// budget is not spent).
    pub fn replay(&self, id: AppId) -> Result<(), KillError> {
        self.ask(MasterRequest::ReplayApp { app_id: id }).map(drop)
    }

    /// Changes running application `id`'s DAG (dynamic DAG); returns the DAG version the
    /// change made. Answered once the application's AppMaster has checked the change (a task
    /// type the binary does not know, a parallelism of 0, a processor left without input:
    /// refused with why, and the DAG runs on as it was); its tasks then restart as the new DAG
    /// from the start clock, persistent state split anew over rescaled processors.
    ///
    /// ```no_run
    /// # use gearpump_cluster::{ClusterConfig, EmbeddedCluster};
    /// # use gearpump_core::{AppId, DagChange, ProcessorId};
    /// # let cluster = EmbeddedCluster::start(ClusterConfig::default());
    /// let version = cluster.client().change_dag(AppId(1), DagChange::Rescale { processor_id: ProcessorId(1), parallelism: 4 })?;
    /// # Ok::<(), gearpump_protocol::MasterError>(())
    /// ```
    pub fn change_dag(&self, id: AppId, change: gearpump_core::DagChange) -> Result<u32, MasterError> {
        match self.ask(MasterRequest::ChangeDag { app_id: id, change })? {
            MasterReply::DagChanged { version } => Ok(version),
            other => Err(MasterError::Invalid(format!("unexpected answer from the master: {other:?}"))),
        }
    }

    /// Kills the application if it runs and submits it again; returns the new id.
    pub fn restart(&self, id: AppId) -> Result<AppId, SubmitError> {
        match self.ask(MasterRequest::RestartApp { app_id: id })? {
            MasterReply::Submitted { app_id } => Ok(app_id),
            other => Err(MasterError::Invalid(format!("unexpected answer from the master: {other:?}"))),
        }
    }

    /// Asks this cluster's master what a daemon master is asked (the REST API does); a
    /// refusal is the error.
    pub fn ask(&self, req: MasterRequest) -> Result<MasterReply, MasterError> {
        let (reply, answer) = oneshot::channel();
        self.master.send(MasterCommand::Ask { req, reply }).map_err(|_| MasterError::ClusterStopped)?;
        match answer.blocking_recv().map_err(|_| MasterError::ClusterStopped)? {
            MasterReply::Refused(e) => Err(e),
            reply => Ok(reply),
        }
    }

    /// Metric points under `path` (see [`gearpump_metrics::path_matches`]).
    pub fn metrics(&self, path: &str, option: ReadOption) -> Vec<MetricPoint> {
        self.board.metrics.lock().query(path, option)
    }

    /// The cluster as the REST API shows it.
    pub fn snapshot(&self) -> Result<ClusterSnapshot, MasterError> {
        match self.ask(MasterRequest::Snapshot)? {
            MasterReply::Snapshot(s) => Ok(*s),
            other => Err(MasterError::Invalid(format!("unexpected answer from the master: {other:?}"))),
        }
    }

    /// Every application, by id.
    pub fn list(&self) -> Vec<AppSummary> {
        self.board.apps.lock().values().map(|(s, _)| s.clone()).collect()
    }

    /// One application.
    pub fn status(&self, id: AppId) -> Option<AppSummary> {
        self.board.apps.lock().get(&id).map(|(s, _)| s.clone())
    }

    /// The workers.
    pub fn workers(&self) -> Vec<WorkerSummary> {
        self.board.workers.lock().clone()
    }

    /// A running or finished application's counters and clock.
    pub fn stats(&self, id: AppId) -> Option<AppStats> {
        self.board.apps.lock().get(&id).map(|(_, stats)| stats.lock().clone())
    }

    /// Waits until the application ends (succeeded, failed or terminated), at most `timeout`.
    pub fn wait(&self, id: AppId, timeout: Duration) -> Result<AppSummary, WaitError> {
        self.wait_for(id, timeout, |s| s.status.is_terminal())
    }

    /// Waits until the application is active (or has ended), at most `timeout`.
    pub fn wait_active(&self, id: AppId, timeout: Duration) -> Result<AppSummary, WaitError> {
        self.wait_for(id, timeout, |s| s.status != gearpump_streaming::AppStatus::Pending)
    }

    fn wait_for(
        &self,
        id: AppId,
        timeout: Duration,
        done: impl Fn(&AppSummary) -> bool,
    ) -> Result<AppSummary, WaitError> {
        // A timeout too large for the clock waits forever.
        let deadline = Instant::now().checked_add(timeout);
        let mut apps = self.board.apps.lock();
        loop {
            let summary = apps.get(&id).map(|(s, _)| s.clone()).ok_or(WaitError::UnknownApp(id))?;
            if done(&summary) {
                return Ok(summary);
            }
            match deadline {
                Some(deadline) => {
                    if self.board.changed.wait_until(&mut apps, deadline).timed_out() {
                        let summary = apps.get(&id).map(|(s, _)| s.clone()).ok_or(WaitError::UnknownApp(id))?;
                        return if done(&summary) { Ok(summary) } else { Err(WaitError::Timeout(Box::new(summary))) };
                    }
                }
                None => self.board.changed.wait(&mut apps),
            }
        }
    }
}

/// Master, workers, AppMasters and executors in this process.
pub struct EmbeddedCluster {
    rt: Option<tokio::runtime::Runtime>,
    runtime: Runtime,
    client: ClusterClient,
}

impl EmbeddedCluster {
    /// Starts an embedded cluster.
    pub fn start(config: ClusterConfig) -> EmbeddedCluster {
        // The control plane is light: one thread. The cores go to the task pool.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("gearpump-control")
            .enable_all()
            .build()
            .expect("starting the control-plane runtime");
        let runtime = Runtime::new(TaskPool::new(config.task_threads));
        let board = Arc::new(Board::new(config.retention));
        tracing::info!(
            workers = config.workers,
            slots = config.slots_per_worker,
            threads = config.task_threads,
            "Starting an embedded cluster."
        );
        let master = {
            let _guard = rt.enter();
            Master::spawn(config, runtime.clone(), board.clone())
        };
        EmbeddedCluster { rt: Some(rt), runtime, client: ClusterClient { master, board } }
    }

    /// A client of this cluster.
    pub fn client(&self) -> ClusterClient {
        self.client.clone()
    }

    /// Kills what still runs, waits briefly for it to stop, and shuts everything down.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(rt) = self.rt.take() else { return };
        for app in self.client.list() {
            if !app.status.is_terminal() && self.client.kill(app.id).is_ok() {
                let _ = self.client.wait(app.id, Duration::from_secs(10));
            }
        }
        rt.shutdown_timeout(Duration::from_secs(2));
        self.runtime.shutdown();
    }
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_asks_what_a_daemon_master_is_asked_but_not_what_only_an_appmaster_says() {
        let cluster = EmbeddedCluster::start(ClusterConfig { workers: 2, slots_per_worker: 3, ..Default::default() });
        let c = cluster.client();
        let Ok(MasterReply::Workers(workers)) = c.ask(MasterRequest::ListWorkers) else { panic!() };
        assert_eq!(workers.iter().map(|w| (w.slots, w.alive)).collect::<Vec<_>>(), [(3, true), (3, true)]);
        assert_eq!(c.kill(AppId(7)), Err(MasterError::UnknownApp(AppId(7))));
        let snapshot = c.snapshot().unwrap();
        assert_eq!((snapshot.workers.len(), snapshot.apps.len()), (2, 0));
        // Registering as an AppMaster, or reporting a status, is an AppMaster's to do.
        let register = MasterRequest::RegisterAppMaster { app_id: AppId(1), attempt: 0, address: None };
        assert!(
            matches!(c.ask(register), Err(MasterError::Invalid(why)) if why.contains("only an application's AppMaster or a worker"))
        );
        let status =
            MasterRequest::AppStatus { app_id: AppId(1), status: gearpump_streaming::AppStatus::Failed, error: None };
        assert!(matches!(c.ask(status), Err(MasterError::Invalid(_))));
        let exited = MasterRequest::ProcessExited { app_id: AppId(1), executor: -1, code: None };
        assert!(matches!(c.ask(exited), Err(MasterError::Invalid(_))));
        cluster.shutdown();
    }
}
