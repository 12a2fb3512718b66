//! # gearpump-streaming
//!
//! The streaming runtime: how the tasks of an application run.
//!
//! ```text
//!   AppMaster (tokio task)                      TaskPool (fixed threads)
//!   ├─ asks the master for slots                ┌──────────────────────────────┐
//!   ├─ Deployment::launch ── creates ──────────▶│ TaskCell: inbox (data|control)│
//!   │    one TaskCell per task, wired to        │   TaskRunner: user Task,     │
//!   │    its downstream cells                   │   out edges (partitioner,    │
//!   ├─ every 100 ms: Tick to every task ───────▶│   per-target OutboundFlow),  │
//!   │◀── TaskEvent::Clock(task, min clock) ─────│   InboundFlow                │
//!   ├─ ClockService::report → upstream clock ──▶│                              │
//!   └─ min clock = MAX → Stop all → succeeded   └──────────────────────────────┘
//! ```
//!
//! - [`pool::TaskPool`]: a fixed set of threads running task activations from one run queue.
//! - [`task::TaskCell`]: a task's mailbox. Data and control are separate queues; data is taken
//!   only while the task is started and not back-pressured.
//! - The task runner (private) calls the user's [`gearpump_api::Task`], partitions its output into per-target
//!   batches of up to `ack_once_every` messages, each followed by an AckRequest, and stops
//!   taking input while any downstream task has `max_pending` un-acked messages.
//! - [`executor::Deployment`]: every task of an application, placed on executors.
//! - [`appmaster`]: the AppMaster: resources, placement, clock service, outcome.
//!   [`appmaster::supervise`] is its one loop, over an [`appmaster::Executors`]
//!   implementation: tasks in this process, or (in `gearpump-cluster`) executor processes.
//! - [`history::CheckpointHistory`]: the latest complete checkpoints, for the report.

pub mod appmaster;
pub mod executor;
mod handoff;
pub mod history;
pub mod metrics;
pub mod pool;
pub mod state;
pub mod supervisor;
pub mod task;
mod timer;
mod window;

pub use appmaster::{
    AppMasterSpec, AppStats, AppStatus, Event, ExecutorSummary, Executors, Latency, MasterAsk, ProcessorStats,
    Progress, Supervision, TaskStats, supervise,
};
pub use executor::{DataPlane, Deployment, Executor, ExecutorSink, LaunchSpec, Runtime};
pub use metrics::{MetricsCollector, MetricsConfig};
pub use pool::TaskPool;
pub use state::{CHECKPOINT_ROOT_KEY, TaskStates, checkpoint_dir, checkpoint_store, open_checkpoints};
pub use task::TaskEvent;
