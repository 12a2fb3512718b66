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
//! - [`KeyedStream::window`] gives a [`WindowedStream`]: tumbling, sliding or session
//!   [`Window`]s in event time (the values' timestamps; the watermark is the application's min
//!   clock, set per source with [`Watermarks`]) or processing time, folded by an
//!   [`Aggregator`] (or `count`, `sum`, `reduce`, `apply`) into one [`Windowed`] result per key
//!   and window, with allowed lateness and a side output for late records. [`Stream::join`]
//!   pairs two streams' values by key and window.
//! - [`Pipeline::build`] compiles the graph. Operators that need no repartitioning (same
//!   parallelism, one consumer, no key) are *chained*: they run in one task and call each other
//!   directly, passing typed values, with no queue, no `Message` and no type erasure between
//!   them. Values become messages, and are serialised, only where they cross to another task
//!   (an edge; between processes, on the wire).
//! - Errors are found early: types at compile time; a parallelism of 0, an invalid window or a
//!   misplaced watermark strategy when the pipeline is built ([`DslError`], naming the
//!   operator).
//!
//! ```
//! use gearpump_dsl::{Pipeline, Watermarks, Window};
//! use gearpump_core::Timestamp;
//! use std::time::Duration;
//!
//! // Temperatures per sensor, up to 2 s out of order: the average of each minute.
//! let p = Pipeline::new("temperatures");
//! let readings = vec![("s1".to_string(), 1_000i64, 20.5f64), ("s2".to_string(), 3_000, 18.0), ("s1".to_string(), 2_000, 21.5)];
//! p.collection("readings", readings)
//!     .assign_timestamps(|(_, t, _)| Timestamp(*t))
//!     .watermarks(Watermarks::bounded(Duration::from_secs(2)))
//!     .key_by(|(sensor, _, _): &(String, i64, f64)| sensor.clone())
//!     .window(Window::tumbling(Duration::from_secs(60)))
//!     .apply(|_sensor, _window, readings| readings.iter().map(|r| r.2).sum::<f64>() / readings.len() as f64)
//!     .for_each(|w, _| println!("{} {}..{}: {:.1}", w.key, w.window.start, w.window.end, w.value));
//! let app = p.build().unwrap();
//! ```
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
