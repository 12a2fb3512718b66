//! # gearpump-dsl
//!
//! A typed stream API over the Task API: write `source → flat_map → key_by → count → sink` with
//! closures on your own types, and get the same [`StreamApplication`] of processors the Task
//! API builds.
//!
//! ```
//! use gearpump_dsl::Pipeline;
//!
//! let p = Pipeline::new("wordCount");
//! p.collection("lines", vec!["to be or not to be".to_string()])
//!     .flat_map(|line: String| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
//!     .key_by_value()
//!     .count()
//!     .filter(|(_, n)| *n > 1)
//!     .for_each(|(word, n), _time| println!("{word} {n}"));
//! let app = p.build().unwrap();
//! ```
//!
//! How the parts fit:
//!
//! - A [`Pipeline`] holds the logical graph. Its sources ([`Pipeline::source`] for any
//!   [`gearpump_api::DataSource`], [`Pipeline::generate`], [`Pipeline::collection`]) return
//!   [`Stream`]s; every operator on a stream adds a node and returns the next stream, so a type
//!   mismatch between operators does not compile.
//! - [`Stream::key_by`] gives a [`KeyedStream`], whose operators (`count`, `sum`, `min`, `max`,
//!   `reduce`, `fold`) keep state per key. That state is checkpointed with the application's
//!   checkpoints (exactly once with a replayable source).
//! - [`Pipeline::build`] compiles the graph. Operators that need no repartitioning (same
//!   parallelism, one consumer, no key) are *chained*: they run in one task and call each other
//!   directly, passing typed values, with no queue, no `Message` and no type erasure between
//!   them. Values become messages, and are serialised, only where they cross to another task
//!   (an edge; between processes, on the wire).
//! - Errors are found early: types at compile time; a parallelism of 0 when the pipeline is
//!   built ([`DslError`], naming the operator).
//!
//! The runtime sees ordinary processors: one per chain, described by its operators' names
//! (`lines → flat_map`), so REST, the dashboard and dynamic DAG changes work as for any
//! application.

mod chain;
mod keyed;
mod ops;
mod pipeline;
mod state;
mod stream;
#[cfg(test)]
mod testing;
mod watermarks;
mod window;

pub use chain::READ_BATCH_KEY;
pub use pipeline::Pipeline;
pub use stream::{Either, KeyedStream, Stream, Terminal, WindowedStream};
pub use watermarks::Watermarks;
pub use window::{Aggregator, TimeWindow, Window, WindowOut, Windowed};

use gearpump_api::AppError;
#[allow(unused_imports)]
use gearpump_api::StreamApplication;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What a stream may carry: owned values that can be cloned, sent between threads and, where
/// they cross processes, serialised with serde. Implemented for every such type.
pub trait Data: Clone + Send + Sync + std::fmt::Debug + Serialize + DeserializeOwned + 'static {}

impl<T: Clone + Send + Sync + std::fmt::Debug + Serialize + DeserializeOwned + 'static> Data for T {}

/// What a stream may be keyed by: [`Data`] that can be hashed and compared. Keys are sent to
/// tasks by the hash of their serde encoding, the same in every process.
pub trait Key: Data + std::hash::Hash + Eq {}

impl<T: Data + std::hash::Hash + Eq> Key for T {}

/// Why a pipeline could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DslError {
    /// An operator was given parallelism 0.
    #[error("operator {operator:?} has parallelism 0; it needs at least one task")]
    ZeroParallelism {
        /// The operator's name.
        operator: String,
    },
    /// An operator is not valid as configured (a window of size 0, a slide longer than the
    /// window, watermarks set on an operator that is not a source).
    #[error("operator {operator:?} is invalid: {reason}")]
    Invalid {
        /// The operator's name.
        operator: String,
        /// What is wrong.
        reason: String,
    },
    /// The compiled application was refused (for example an invalid application name).
    #[error(transparent)]
    App(#[from] AppError),
}
