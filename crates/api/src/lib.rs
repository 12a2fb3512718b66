//! # gearpump-api
//!
//! What an application author writes against. No threads, no I/O: the runtime
//! (`gearpump-streaming`) drives these traits.
//!
//! - A [`Task`] handles messages (`on_start`, `on_next`, `on_timer`, `on_watermark_progress`,
//!   `on_stop`) through a [`TaskContext`] that can `output`, message itself, schedule cancellable
//!   timers and read the upstream min clock.
//! - A [`Processor`] is a task type (by stable name), a parallelism, a description, a task config
//!   and a life (birth, death). Each of its `parallelism` tasks is one instance of the task type.
//! - A [`Partitioner`] decides which downstream task gets a message: hash (the default),
//!   shuffle, shuffle-grouping, broadcast, co-location, group-by and user-defined ones
//!   ([`PartitionerSpec`]).
//! - A [`StreamApplication`] is a named DAG of processors joined by partitioners, built with
//!   [`StreamApplication::builder`] and validated when built: a cycle, a duplicate edge, a
//!   parallelism of 0, an unknown task type or a bad name is an [`AppError`].
//! - A running application's DAG changes with [`StreamApplication::apply`]: a [`DagChange`]
//!   replaces, rescales, attaches or removes processors by task type name, checked in full
//!   before it counts (dynamic DAG).
//! - [`DataSource`] and [`DataSink`] wrap external systems as source and sink processors.
//!
//! ```
//! use gearpump_api::prelude::*;
//!
//! struct Split;
//! impl Task for Split {
//!     fn on_next(&mut self, ctx: &mut TaskContext<'_>, msg: Message) -> TaskResult {
//!         let line: &String = msg.get().ok_or("expected a line")?;
//!         for word in line.split_whitespace() {
//!             ctx.output(Message::new(word.to_string(), msg.timestamp()));
//!         }
//!         Ok(())
//!     }
//! }
//! struct Sum(u64);
//! impl Task for Sum {
//!     fn on_next(&mut self, _ctx: &mut TaskContext<'_>, _msg: Message) -> TaskResult {
//!         self.0 += 1;
//!         Ok(())
//!     }
//! }
//!
//! let split = Processor::from_fn("Split", 2, |_| Ok(Split));
//! let sum = Processor::from_fn("Sum", 2, |_| Ok(Sum(0)));
//! let app = StreamApplication::builder("wordCount")
//!     .edge(&split, PartitionerSpec::hash(), &sum)
//!     .build()
//!     .unwrap();
//! assert_eq!(app.dag().processors().len(), 2);
//! ```

pub mod application;
mod dynamic;
pub mod partitioner;
pub mod processor;
pub mod source;
pub mod state;
pub mod task;

pub use application::{
    AppError, Dag, DagEdge, MAX_TASKS, StreamApplication, StreamApplicationBuilder, TaskRegistry, validate_app_name,
};
pub use partitioner::{MulticastPartitioner, Partitioner, PartitionerInstance, PartitionerSpec};
pub use processor::{LifeTime, Predecessor, Processor, ProcessorDescription};
pub use source::{DataSink, DataSource, NumberSource, SinkTask, SourceTask, TimeStampFilter};
pub use state::{Monoid, Persistent, PersistentState, PersistentTask, StateStore};
pub use task::{
    CreateTask, StartTime, Task, TaskContext, TaskError, TaskFactory, TaskInfo, TaskIo, TaskResult, TimerId,
};

pub use gearpump_core::{
    AppId, AppliedChange, DagChange, DagProcessor, Message, ProcessorId, TaskId, TaskIndex, Timestamp, UserConfig,
    Value,
};

/// Everything an application author usually needs, in one import.
pub mod prelude {
    pub use crate::{
        CreateTask, DataSink, DataSource, Message, PartitionerSpec, Processor, StartTime, StreamApplication, Task,
        TaskContext, TaskInfo, TaskResult, TimerId, Timestamp, UserConfig,
    };
}
