//! # gearpump-core
//!
//! The vocabulary every other Gearpump crate speaks, with no async runtime and no I/O:
//!
//! - [`ids`]: newtype ids for applications, processors, tasks, executors and workers. A
//!   [`TaskId`] packs into eight bytes (`processor << 32 | index`), which is all the data plane
//!   puts on the wire to address a task.
//! - [`time`]: [`Timestamp`], application time in milliseconds, with [`Timestamp::MIN`] and
//!   [`Timestamp::MAX`] (a source whose watermark reaches `MAX` has ended).
//! - [`message`]: [`Message`] = value + timestamp. The value is a shared, immutable, type-erased
//!   [`Value`]: inside one process it moves by reference (never serialised); across processes it
//!   is encoded with serde.
//! - [`codec`]: [`Codecs`], the registry of value types that may cross a process boundary and
//!   their codecs (serde by default, custom per type).
//! - [`config`]: [`UserConfig`], the typed key/value configuration handed to applications and
//!   tasks.
//! - [`change`]: [`DagChange`], a change to a running application's DAG (dynamic DAG), as it
//!   travels and as the masters keep it.
//! - [`graph`]: [`Graph`], a small directed graph with a stable topological order, used for the
//!   processor DAG.
//! - [`auth`]: the cluster secret and the challenge–response proofs with which every
//!   connection inside a cluster shows it belongs (the wire protocols carry them).
//! - [`tls`]: TLS settings read from PEM files (control plane and REST, when enabled); they
//!   travel with the [`auth::ClusterSecret`].
//! - [`mod@redact`]: masks secrets in text that is shown (errors, logs, REST answers).
//!
//! ```
//! use gearpump_core::{Message, Timestamp};
//!
//! let msg = Message::new(String::from("hello"), Timestamp(42));
//! assert_eq!(msg.get::<String>().map(String::as_str), Some("hello"));
//! assert_eq!(msg.timestamp(), Timestamp(42));
//! ```

pub mod auth;
pub mod change;
pub mod codec;
pub mod config;
pub mod graph;
pub mod ids;
pub mod message;
pub mod redact;
pub mod status;
pub mod time;
pub mod tls;

pub use change::{AppliedChange, DagChange, DagProcessor};
pub use codec::{Codec, Codecs, type_hash};
pub use config::{ConfigError, UserConfig};
pub use graph::{CycleError, Graph, NodeIndex};
pub use ids::{AppId, ExecutorId, ProcessorId, TaskId, TaskIndex, WorkerId};
pub use message::{CodecError, Message, Value, partition_of, serde_hash};
pub use redact::{is_secret_key, redact};
pub use status::AppStatus;
pub use time::Timestamp;
