//! # gearpump
//!
//! Gearpump in Rust: a real-time streaming engine. An application is a DAG of processors, each
//! run as parallel tasks joined by partitioners, with flow control, a global min clock and an
//! embedded cluster for running it all in one process.
//!
//! This crate is what an application depends on. It re-exports the application API
//! ([`prelude`]) and provides [`run`], the entry point an application binary's `main` calls:
//! with no cluster configured it starts an embedded cluster (master, workers, AppMaster and
//! executors in this process), submits the application, reports what happens, and returns a
//! [`RunReport`].
//!
//! ```no_run
//! use gearpump::prelude::*;
//!
//! struct Numbers(u64);
//! impl Task for Numbers {
//!     fn on_start(&mut self, ctx: &mut TaskContext<'_>, _: StartTime) -> TaskResult {
//!         ctx.send_self(Message::new((), Timestamp(0)));
//!         Ok(())
//!     }
//!     fn on_next(&mut self, ctx: &mut TaskContext<'_>, _: Message) -> TaskResult {
//!         if self.0 < 1000 {
//!             self.0 += 1;
//!             ctx.output(Message::new(self.0, Timestamp(self.0 as i64)));
//!             ctx.send_self(Message::new((), Timestamp(0)));
//!         }
//!         Ok(())
//!     }
//!     fn watermark(&self) -> Option<Timestamp> {
//!         (self.0 >= 1000).then_some(Timestamp::MAX)
//!     }
//! }
//! struct Print;
//! impl Task for Print {
//!     fn on_next(&mut self, _: &mut TaskContext<'_>, msg: Message) -> TaskResult {
//!         println!("{:?}", msg.get::<u64>());
//!         Ok(())
//!     }
//! }
//!
//! fn main() {
//!     let numbers = Processor::from_fn("Numbers", 1, |_| Ok(Numbers(0)));
//!     let print = Processor::from_fn("Print", 1, |_| Ok(Print));
//!     let app = StreamApplication::builder("numbers").path([&numbers, &print]).build().unwrap();
//!     let report = gearpump::run(app, gearpump::RunOptions::default()).unwrap();
//!     println!("{}", report.summary_line());
//! }
//! ```

pub mod cli;
mod run;

pub use run::{Role, RunError, RunOptions, RunReport, init_logging, run, run_application};

pub use gearpump_api as api;
pub use gearpump_api::{
    AppError, CreateTask, DataSink, DataSource, LifeTime, Message, Monoid, MulticastPartitioner, NumberSource,
    Partitioner, PartitionerSpec, Persistent, PersistentState, PersistentTask, Processor, SinkTask, SourceTask,
    StartTime, StreamApplication, Task, TaskContext, TaskError, TaskInfo, TaskResult, TimeStampFilter, TimerId,
    Timestamp, UserConfig, Value,
};
pub use gearpump_cluster::{
    AppStats, AppStatus, AppSummary, ClusterClient, ClusterConfig, DataPlane, EmbeddedCluster, KillError, SubmitError,
    WaitError,
};
pub use gearpump_core::{AppId, AppliedChange, CodecError, DagChange, DagProcessor, ProcessorId, TaskId, redact};
/// The typed stream DSL: [`Pipeline`], [`Stream`], [`KeyedStream`].
pub use gearpump_dsl as dsl;
pub use gearpump_dsl::{Data, DslError, Key, KeyedStream, Pipeline, Stream};
pub use gearpump_streaming::MetricsConfig;
pub use gearpump_transport::FlowConfig;
pub use gearpump_transport::tcp::{ClusterSecret, RetryPolicy};

/// Applications that are not streams (the guide's non-streaming applications, such as
/// DistributedShell): their own AppMaster and executors, run with [`run_application`], and a
/// client that talks to a running one ([`application::AppClient`]).
pub use gearpump_cluster::application;

/// Everything an application author usually needs, in one import.
pub mod prelude {
    pub use gearpump_api::prelude::*;
    pub use gearpump_api::{PartitionerSpec, PersistentState, PersistentTask, Processor, StreamApplication, TaskError};
    pub use gearpump_dsl::{
        Aggregator, KeyedStream, Pipeline, Stream, TimeWindow, Watermarks, Window, Windowed, WindowedStream,
    };
}

/// The README's code compiles: its snippets run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
