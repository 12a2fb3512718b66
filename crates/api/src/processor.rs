//! [`Processor`]: a task type run as `parallelism` tasks.

use crate::task::{CreateTask, Task, TaskError, TaskFactory, TaskInfo};
use gearpump_core::{ProcessorId, Timestamp, UserConfig};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The span of application time a processor lives in. Messages outside it are not sent to the
/// processor (dynamic DAG changes end one processor's life where its replacement's begins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifeTime {
    /// The first timestamp the processor handles.
    pub birth: Timestamp,
    /// The timestamp from which it no longer does.
    pub death: Timestamp,
}

impl LifeTime {
    /// Alive for all time.
    pub const IMMORTAL: LifeTime = LifeTime { birth: Timestamp::MIN, death: Timestamp::MAX };

    /// Whether `t` falls within the life.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.birth <= t && t < self.death
    }
}

/// The processor a persistent processor took over from in a dynamic DAG change (replaced or
/// rescaled): started at the change's transit time, its tasks take the predecessor's state
/// there, split anew over them ([`crate::Monoid::split`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Predecessor {
    /// The processor whose checkpoints hold the state.
    pub processor: ProcessorId,
    /// Its number of tasks.
    pub parallelism: u32,
    /// The transit time: where the checkpoints are.
    pub transit: Timestamp,
}

impl Default for LifeTime {
    fn default() -> Self {
        LifeTime::IMMORTAL
    }
}

static NEXT_PROCESSOR_KEY: AtomicU64 = AtomicU64::new(1);

/// A processor under construction: a task type and how to run it. Clones are the same node of a
/// graph (they share an identity), so a processor can be named in several edges.
#[derive(Clone)]
pub struct Processor {
    key: u64,
    task_type: String,
    parallelism: u32,
    description: String,
    config: UserConfig,
    life: LifeTime,
    factory: Option<TaskFactory>,
    stateful: bool,
    transactional: bool,
}

impl Processor {
    /// A processor of task type `T`, named by `T`'s type path (the guide's `Processor[Split](n)`).
    pub fn new<T: CreateTask>(parallelism: u32) -> Self {
        let factory: TaskFactory = Arc::new(|info: &TaskInfo| Ok(Box::new(T::create(info)?) as Box<dyn Task>));
        Self::with_factory(std::any::type_name::<T>(), parallelism, Some(factory))
    }

    /// A processor whose tasks `make` builds; `task_type` is the stable name it goes by.
    pub fn from_fn<T, F>(task_type: impl Into<String>, parallelism: u32, make: F) -> Self
    where
        T: Task,
        F: Fn(&TaskInfo) -> Result<T, TaskError> + Send + Sync + 'static,
    {
        let factory: TaskFactory = Arc::new(move |info: &TaskInfo| Ok(Box::new(make(info)?) as Box<dyn Task>));
        Self::with_factory(task_type, parallelism, Some(factory))
    }

    /// A processor that names a task type only; the application's [`crate::TaskRegistry`] must
    /// know it when the application is built, or building fails with
    /// [`crate::AppError::UnknownTaskType`].
    pub fn named(task_type: impl Into<String>, parallelism: u32) -> Self {
        Self::with_factory(task_type, parallelism, None)
    }

    fn with_factory(task_type: impl Into<String>, parallelism: u32, factory: Option<TaskFactory>) -> Self {
        let task_type = task_type.into();
        Processor {
            key: NEXT_PROCESSOR_KEY.fetch_add(1, Ordering::Relaxed),
            description: task_type.clone(),
            task_type,
            parallelism,
            config: UserConfig::empty(),
            life: LifeTime::IMMORTAL,
            factory,
            stateful: false,
            transactional: false,
        }
    }

    /// Sets the description shown by the dashboard and REST API.
    #[must_use]
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Sets the task config (layered over the application config).
    #[must_use]
    pub fn config(mut self, config: UserConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the processor's life.
    #[must_use]
    pub fn life(mut self, life: LifeTime) -> Self {
        self.life = life;
        self
    }

    /// The stable name of the task type.
    pub fn task_type(&self) -> &str {
        &self.task_type
    }

    /// The number of tasks.
    pub fn parallelism(&self) -> u32 {
        self.parallelism
    }

    pub(crate) fn key(&self) -> u64 {
        self.key
    }

    pub(crate) fn factory(&self) -> Option<&TaskFactory> {
        self.factory.as_ref()
    }

    /// Marks the processor's tasks as keeping checkpointed state (see [`crate::state`]): the
    /// application restarts only from times at which all of them have checkpoints.
    /// [`Processor::persistent`] sets it.
    #[must_use]
    pub fn stateful(mut self) -> Self {
        self.stateful = true;
        self
    }

    /// Marks the processor's tasks as committing their output when a checkpoint completes (an
    /// exactly-once sink; [`crate::Processor::sink`] sets it for a [`crate::DataSink`] whose
    /// `TRANSACTIONAL` is true). They are stateful: each reports its checkpoint at a time only
    /// once it has committed there ([`crate::Task::on_checkpoint_complete`]), so the
    /// application never restarts from a time whose output is not committed.
    #[must_use]
    pub fn transactional(mut self) -> Self {
        self.stateful = true;
        self.transactional = true;
        self
    }

    /// Whether its tasks commit on checkpoints ([`Processor::transactional`]).
    pub fn is_transactional(&self) -> bool {
        self.transactional
    }

    pub(crate) fn describe(&self, id: ProcessorId) -> ProcessorDescription {
        ProcessorDescription {
            id,
            task_type: self.task_type.clone(),
            parallelism: self.parallelism,
            description: self.description.clone(),
            config: self.config.clone(),
            life: self.life,
            stateful: self.stateful,
            transactional: self.transactional,
            retired: false,
            predecessor: None,
        }
    }
}

impl fmt::Debug for Processor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Processor")
            .field("task_type", &self.task_type)
            .field("parallelism", &self.parallelism)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

/// A processor as placed in a validated DAG: what travels to the AppMaster and the REST API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessorDescription {
    /// Its id: its position in the DAG's topological order.
    pub id: ProcessorId,
    /// The stable name of its task type.
    pub task_type: String,
    /// The number of tasks.
    pub parallelism: u32,
    /// A human description.
    pub description: String,
    /// The task config.
    pub config: UserConfig,
    /// Its life.
    pub life: LifeTime,
    /// Whether its tasks checkpoint state ([`Processor::stateful`]).
    #[serde(default)]
    pub stateful: bool,
    /// Whether its tasks commit on checkpoints ([`Processor::transactional`]).
    #[serde(default)]
    pub transactional: bool,
    /// Whether a dynamic DAG change retired it (replaced or removed it): it runs no tasks and
    /// has no edges; it stays in the DAG, its life ended at the change's transit time.
    #[serde(default)]
    pub retired: bool,
    /// Whose state its tasks take when they start at its birth (a dynamic DAG change).
    #[serde(default)]
    pub predecessor: Option<Predecessor>,
}
