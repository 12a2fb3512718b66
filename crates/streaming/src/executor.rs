//! An executor: a group of tasks of one application, placed on one worker.
//!
//! In the embedded cluster every executor of every application lives in one process and shares
//! one [`TaskPool`]; tasks find each other through the application's [`Directory`], and
//! messages between them move without serialisation.

use crate::pool::TaskPool;
use crate::task::{Control, OutEdge, TaskCell, TaskEvent, TaskRunner};
use crate::timer::Timers;
use gearpump_api::{StartTime, StreamApplication, TaskError, TaskInfo};
use gearpump_core::{AppId, ExecutorId, TaskId, WorkerId};
use gearpump_transport::flow::FlowConfig;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// Every task of an application, by id.
#[derive(Default)]
pub struct Directory {
    cells: HashMap<TaskId, Arc<TaskCell>>,
}

impl Directory {
    /// The cell of `task`.
    pub fn get(&self, task: TaskId) -> Option<&Arc<TaskCell>> {
        self.cells.get(&task)
    }
}

/// One executor's tasks.
pub struct Executor {
    /// Its id within the application.
    pub id: ExecutorId,
    /// The worker it runs on.
    pub worker: WorkerId,
    /// Its tasks.
    pub tasks: Vec<TaskId>,
}

/// Shared process-level runtime: the task pool and the timer thread.
#[derive(Clone)]
pub struct Runtime {
    pool: Arc<TaskPool>,
    timers: Arc<Timers>,
}

impl Runtime {
    /// A runtime over `pool`.
    pub fn new(pool: Arc<TaskPool>) -> Self {
        Runtime { pool, timers: Timers::start() }
    }

    /// Stops the timer thread and the pool.
    pub fn shutdown(&self) {
        self.timers.shutdown();
        self.pool.shutdown();
    }
}

/// A running application's tasks across its executors.
pub struct Deployment {
    /// The executors and their tasks.
    pub executors: Vec<Executor>,
    directory: Arc<Directory>,
    all: Vec<Arc<TaskCell>>,
}

impl Deployment {
    /// Creates every task of `app`, placed as `placement` says, wired to its downstream tasks.
    /// Nothing runs until [`Deployment::start`].
    pub fn launch(
        runtime: &Runtime,
        app_id: AppId,
        app: &StreamApplication,
        executors: Vec<Executor>,
        flow: FlowConfig,
        session: u32,
        events: &UnboundedSender<TaskEvent>,
    ) -> Result<Deployment, TaskError> {
        let mut directory = Directory::default();
        let mut all = Vec::new();
        for ex in &executors {
            for &task in &ex.tasks {
                let cell = TaskCell::new(task, runtime.pool.shared().clone(), events.clone());
                directory.cells.insert(task, cell.clone());
                all.push(cell);
            }
        }
        let directory = Arc::new(directory);
        let deployment = Deployment { executors, directory, all };
        if let Err(e) = deployment.wire(runtime, app_id, app, flow, session) {
            // Installed runners hold their downstream cells; drop them or the cells leak.
            deployment.clear();
            return Err(e);
        }
        Ok(deployment)
    }

    /// Builds every task and its outgoing edges, and installs its runner.
    fn wire(
        &self,
        runtime: &Runtime,
        app_id: AppId,
        app: &StreamApplication,
        flow: FlowConfig,
        session: u32,
    ) -> Result<(), TaskError> {
        let dag = app.dag();
        let directory = &self.directory;
        for cell in &self.all {
            let id = cell.id();
            let processor = dag.processor(id.processor);
            let info = TaskInfo {
                task_id: id,
                parallelism: processor.parallelism,
                app_id,
                app_name: app.name().to_string(),
                description: processor.description.clone(),
                config: Arc::new(app.config().clone().merge(&processor.config)),
            };
            let task = (dag.factory(id.processor))(&info)
                .map_err(|e| TaskError::msg(format!("creating task {id} of {:?}: {e}", processor.task_type)))?;
            let edges = dag
                .outgoing(id.processor)
                .map(|edge| {
                    let n = dag.processor(edge.to).parallelism;
                    let targets = (0..n)
                        .map(|i| {
                            let t = TaskId { processor: edge.to, index: i };
                            (t, directory.get(t).expect("every task of the DAG is placed").clone())
                        })
                        .collect();
                    OutEdge::new(edge.partitioner.instantiate(), targets, flow)
                })
                .collect();
            let is_source = dag.upstream(id.processor).is_empty();
            let runner =
                TaskRunner::new(task, info, cell, session, edges, is_source, runtime.timers.clone(), directory.clone());
            cell.install(runner);
        }
        Ok(())
    }

    /// Starts every task from `start`.
    pub fn start(&self, start: StartTime) {
        for cell in &self.all {
            cell.push_control(Control::Start(start));
        }
    }

    /// Asks every task to report its clock.
    pub fn tick(&self) {
        for cell in &self.all {
            cell.push_control(Control::Tick);
        }
    }

    /// Tells `task` its upstream min clock.
    pub fn upstream_clock(&self, task: TaskId, clock: gearpump_core::Timestamp) {
        if let Some(cell) = self.directory.get(task) {
            cell.push_control(Control::UpstreamClock(clock));
        }
    }

    /// Stops every task.
    pub fn stop(&self) {
        for cell in &self.all {
            cell.push_control(Control::Stop);
        }
    }

    /// The tasks.
    pub fn cells(&self) -> &[Arc<TaskCell>] {
        &self.all
    }

    /// Drops every runner, releasing the tasks.
    pub fn clear(&self) {
        for cell in &self.all {
            cell.clear();
        }
    }
}
