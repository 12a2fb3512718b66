//! [`DagChange`]: a change to the DAG of a running streaming application (dynamic DAG), as it
//! travels from a client (REST `POST appmaster/<id>/dynamicdag`, `gear dynamicdag`) through the
//! master to the application's AppMaster, and as the masters keep it.
//!
//! A change names task types, not code: the application binary looks them up among those it
//! knows (its processors' and those it registered), so every process of the application (the
//! AppMaster, each executor) derives the same DAG from the same list of changes.
//!
//! ```
//! use gearpump_core::DagChange;
//!
//! let change: DagChange = serde_json::from_str(r#"{"rescale": {"processorId": 1, "parallelism": 4}}"#).unwrap();
//! assert_eq!(change.to_string(), "rescale processor 1 to 4 tasks");
//! ```

use crate::{ProcessorId, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A processor described by name: its task type, its parallelism, a description and its task
/// config (`POST master/submitdag`, and the processors a [`DagChange`] adds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DagProcessor {
    /// Its task type, registered in the application binary.
    pub task_class: String,
    /// Its tasks.
    pub parallelism: u32,
    /// A description (the task type when empty).
    #[serde(default)]
    pub description: String,
    /// Its task config.
    #[serde(default)]
    pub task_conf: BTreeMap<String, String>,
}

/// A change to the DAG of a running application. Each one makes a new DAG version; the
/// processors it adds get new ids (one more than the highest so far), live from the change's
/// *transit time* on, and the processors it retires live until then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum DagChange {
    /// Puts a new processor in the place of a live one: the new one takes the old one's edges
    /// (the original's `ReplaceProcessor`).
    #[serde(rename_all = "camelCase")]
    Replace {
        /// The processor replaced.
        processor_id: ProcessorId,
        /// What replaces it.
        new_processor: DagProcessor,
        /// Whether the new processor's task config starts from the old one's (its own keys
        /// on top).
        #[serde(default)]
        inherit_conf: bool,
    },
    /// Runs a live processor with another number of tasks: a replacement by the same task
    /// type, description and config. A persistent processor's state is split anew over the
    /// new tasks.
    #[serde(rename_all = "camelCase")]
    Rescale {
        /// The processor.
        processor_id: ProcessorId,
        /// Its new number of tasks.
        parallelism: u32,
    },
    /// Adds processors and edges: new processors by name (the keys), edges
    /// `[from, partitioner, to]` whose ends are those names or ids of live processors.
    #[serde(rename_all = "camelCase")]
    Attach {
        /// The new processors, by the names the edges use.
        processors: BTreeMap<String, DagProcessor>,
        /// The new edges.
        #[serde(default)]
        edges: Vec<(String, String, String)>,
    },
    /// Retires live processors and drops their edges. Every processor left that had input
    /// must keep some.
    #[serde(rename_all = "camelCase")]
    Remove {
        /// The processors removed.
        processor_ids: Vec<ProcessorId>,
    },
}

impl fmt::Display for DagChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DagChange::Replace { processor_id, new_processor, .. } => {
                write!(
                    f,
                    "replace processor {processor_id} by {} ({} tasks)",
                    new_processor.task_class, new_processor.parallelism
                )
            }
            DagChange::Rescale { processor_id, parallelism } => {
                write!(f, "rescale processor {processor_id} to {parallelism} tasks")
            }
            DagChange::Attach { processors, edges } => {
                write!(f, "attach {} processors and {} edges", processors.len(), edges.len())
            }
            DagChange::Remove { processor_ids } => {
                let ids: Vec<String> = processor_ids.iter().map(ToString::to_string).collect();
                write!(f, "remove processors {}", ids.join(", "))
            }
        }
    }
}

/// A change as applied: with its transit time, the application time from which the processors
/// it adds live and those it retires no longer do. The list of applied changes is what the
/// masters keep of an application's DAG: the version is its length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedChange {
    /// The change.
    pub change: DagChange,
    /// Its transit time.
    pub transit: Timestamp,
}
