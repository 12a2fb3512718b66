//! [`StreamApplication`]: a named, validated DAG of processors.

use crate::partitioner::PartitionerSpec;
use crate::processor::{Processor, ProcessorDescription};
use crate::task::TaskFactory;
use gearpump_core::{Codecs, Graph, ProcessorId, TaskId, UserConfig, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// The most tasks an application may have, all processors together (2^20): far more than
/// a cluster has slots for, and small enough that every count of tasks fits in a `u32`.
pub const MAX_TASKS: u32 = 1 << 20;

/// Why an application was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// The name is empty or has characters other than letters, digits and underscore.
    #[error("invalid application name {name:?}: {reason}")]
    InvalidAppName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The DAG has no processor.
    #[error("the application has no processors")]
    EmptyDag,
    /// A processor has parallelism 0.
    #[error("processor {task_type:?} has parallelism 0; it needs at least one task")]
    ZeroParallelism {
        /// The processor's task type.
        task_type: String,
    },
    /// The processors' parallelisms add up to more tasks than an application may have.
    #[error("the application asks for {total} tasks in all; at most {MAX_TASKS} are allowed")]
    TooManyTasks {
        /// The sum of the processors' parallelisms.
        total: u64,
    },
    /// The DAG has a cycle.
    #[error("the DAG has a cycle through processors {processors:?}")]
    Cycle {
        /// The task types of the processors on (or after) the cycle.
        processors: Vec<String>,
    },
    /// Two edges join the same pair of processors.
    #[error("duplicate edge from {from:?} to {to:?}; at most one edge may join two processors")]
    DuplicateEdge {
        /// The upstream processor's task type.
        from: String,
        /// The downstream processor's task type.
        to: String,
    },
    /// A processor names a task type the application binary does not contain.
    #[error("unknown task type {task_type:?}: this application binary has no such task")]
    UnknownTaskType {
        /// The name that was not found.
        task_type: String,
    },
    /// A co-location edge joins processors of different parallelism.
    #[error(
        "partitioner {partitioner:?} from {from:?} ({from_parallelism} tasks) to {to:?} ({to_parallelism} tasks) needs equal parallelism"
    )]
    ParallelismMismatch {
        /// The partitioner's name.
        partitioner: String,
        /// The upstream processor's task type.
        from: String,
        /// Its parallelism.
        from_parallelism: u32,
        /// The downstream processor's task type.
        to: String,
        /// Its parallelism.
        to_parallelism: u32,
    },
    /// A round-robin partitioner feeds several tasks of an exactly-once (transactional)
    /// processor. Each of its tasks decides on its own what a replay must not write again, so
    /// every task must get the same messages in every replay; round robin deals them out in
    /// arrival order, which a replay does not repeat.
    #[error(
        "partitioner {partitioner:?} from {from:?} to the exactly-once processor {to:?} ({to_parallelism} tasks) \
         sends a message to a different task after a replay, so a recovery could lose or repeat \
         output; partition by a key the replay reproduces (PartitionerSpec::group_by or hash), \
         or give {to:?} one task"
    )]
    ReplayDependentPartitioner {
        /// The partitioner's name.
        partitioner: String,
        /// The upstream processor's task type.
        from: String,
        /// The transactional processor's task type.
        to: String,
        /// Its parallelism.
        to_parallelism: u32,
    },
    /// A dynamic DAG change names a processor the DAG has not, or one retired already.
    #[error("the DAG has no live processor {id}")]
    UnknownProcessor {
        /// The id given.
        id: ProcessorId,
    },
    /// An edge names a partitioner that is neither built in nor on an edge of the application.
    #[error("unknown partitioner {name:?}; known ones are {known}")]
    UnknownPartitioner {
        /// The name given.
        name: String,
        /// The names known, comma separated.
        known: String,
    },
    /// An edge of an attached sub-graph names neither a new processor nor a live one.
    #[error("edge end {name:?} is neither a new processor of the change nor the id of a live processor")]
    UnknownEdgeEnd {
        /// The name given.
        name: String,
    },
    /// Removing processors would leave one that had input without any.
    #[error(
        "removing them leaves processor {id} ({task_type:?}) without input; remove it too, or attach an input first"
    )]
    LeftWithoutInput {
        /// The processor left without input.
        id: ProcessorId,
        /// Its task type.
        task_type: String,
    },
    /// A dynamic DAG change that is malformed in itself.
    #[error("invalid DAG change: {0}")]
    InvalidChange(String),
}

/// Task types by stable name: how an application binary finds the code for a processor that is
/// named rather than given (REST `submitdag`, dynamic DAG changes).
#[derive(Clone, Default)]
pub struct TaskRegistry {
    pub(crate) factories: BTreeMap<String, TaskFactory>,
}

impl TaskRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `factory` under `task_type`, replacing any earlier one.
    pub fn register(&mut self, task_type: impl Into<String>, factory: TaskFactory) {
        self.factories.insert(task_type.into(), factory);
    }

    /// The factory for `task_type`.
    pub fn get(&self, task_type: &str) -> Option<&TaskFactory> {
        self.factories.get(task_type)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }
}

impl fmt::Debug for TaskRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.factories.keys()).finish()
    }
}

/// An edge of a validated DAG.
#[derive(Clone, Debug)]
pub struct DagEdge {
    /// The upstream processor.
    pub from: ProcessorId,
    /// The downstream processor.
    pub to: ProcessorId,
    /// How messages are spread over the downstream tasks.
    pub partitioner: PartitionerSpec,
}

/// A validated DAG: processors numbered in topological order, each with the factory for its
/// tasks.
#[derive(Clone)]
pub struct Dag {
    pub(crate) processors: Vec<ProcessorDescription>,
    pub(crate) factories: Vec<TaskFactory>,
    pub(crate) edges: Vec<DagEdge>,
}

impl Dag {
    /// The processors, indexed by `ProcessorId`.
    pub fn processors(&self) -> &[ProcessorDescription] {
        &self.processors
    }

    /// One processor.
    pub fn processor(&self, id: ProcessorId) -> &ProcessorDescription {
        &self.processors[id.0 as usize]
    }

    /// The factory for a processor's tasks.
    pub fn factory(&self, id: ProcessorId) -> &TaskFactory {
        &self.factories[id.0 as usize]
    }

    /// All edges.
    pub fn edges(&self) -> &[DagEdge] {
        &self.edges
    }

    /// The edges leaving `id`.
    pub fn outgoing(&self, id: ProcessorId) -> impl Iterator<Item = &DagEdge> {
        self.edges.iter().filter(move |e| e.from == id)
    }

    /// The processors directly upstream of `id`.
    pub fn upstream(&self, id: ProcessorId) -> Vec<ProcessorId> {
        self.edges.iter().filter(|e| e.to == id).map(|e| e.from).collect()
    }

    /// The processors that run tasks: all but those a dynamic DAG change retired.
    pub fn live(&self) -> impl Iterator<Item = &ProcessorDescription> {
        self.processors.iter().filter(|p| !p.retired)
    }

    /// How many tasks `id` runs: its parallelism, or 0 once retired.
    pub fn tasks_of(&self, id: ProcessorId) -> u32 {
        self.processors.get(id.0 as usize).filter(|p| !p.retired).map_or(0, |p| p.parallelism)
    }

    /// Every task the live processors run.
    pub fn tasks(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.live().flat_map(|p| (0..p.parallelism).map(move |i| TaskId::new(p.id.0, i)))
    }

    /// The total number of tasks (of live processors).
    pub fn task_count(&self) -> u32 {
        self.live().map(|p| p.parallelism).sum()
    }

    /// The tasks of the transactional processors ([`crate::Processor::transactional`]).
    pub fn transactional_tasks(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.tasks().filter(|t| self.processors[t.processor.0 as usize].transactional)
    }

    /// The tasks of the stateful processors ([`crate::Processor::stateful`]).
    pub fn stateful_tasks(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.tasks().filter(|t| self.processors[t.processor.0 as usize].stateful)
    }
}

impl fmt::Debug for Dag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dag").field("processors", &self.processors).field("edges", &self.edges).finish()
    }
}

/// What an application binary can run by name: a task type's factory and whether its tasks
/// keep state or commit on checkpoints.
#[derive(Clone)]
pub(crate) struct TaskKind {
    pub(crate) factory: TaskFactory,
    pub(crate) stateful: bool,
    pub(crate) transactional: bool,
}

/// A streaming application: a name, a config and a validated [`Dag`], with the task types and
/// partitioners its binary knows by name and the dynamic DAG changes applied to it.
#[derive(Clone)]
pub struct StreamApplication {
    name: String,
    config: UserConfig,
    pub(crate) dag: Dag,
    codecs: Codecs,
    pub(crate) kinds: BTreeMap<String, TaskKind>,
    pub(crate) partitioners: BTreeMap<String, PartitionerSpec>,
    pub(crate) changes: Vec<gearpump_core::AppliedChange>,
}

impl fmt::Debug for StreamApplication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamApplication")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("dag", &self.dag)
            .field("task_types", &self.kinds.keys().collect::<Vec<_>>())
            .field("version", &self.changes.len())
            .finish_non_exhaustive()
    }
}

impl StreamApplication {
    /// Starts building an application called `name` (letters, digits and underscore).
    pub fn builder(name: impl Into<String>) -> StreamApplicationBuilder {
        StreamApplicationBuilder {
            name: name.into(),
            config: UserConfig::empty(),
            graph: Graph::new(),
            nodes: HashMap::new(),
            registry: TaskRegistry::new(),
            codecs: Codecs::default(),
        }
    }

    /// The application's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The application config.
    pub fn config(&self) -> &UserConfig {
        &self.config
    }

    /// The DAG.
    pub fn dag(&self) -> &Dag {
        &self.dag
    }

    /// The value types its messages may carry between processes, with their codecs.
    pub fn codecs(&self) -> &Codecs {
        &self.codecs
    }

    /// The task types this binary can run by name (its processors' and those it registered),
    /// sorted: what a dynamic DAG change or a submitted DAG may name.
    pub fn task_types(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    /// The DAG version: how many dynamic DAG changes were applied (0: as built).
    pub fn version(&self) -> u32 {
        self.changes.len() as u32
    }

    /// The dynamic DAG changes applied, in order.
    pub fn changes(&self) -> &[gearpump_core::AppliedChange] {
        &self.changes
    }

    /// The same application with `other`'s codecs (an application built from a submitted DAG
    /// carries the values of the binary's own).
    pub fn with_codecs_of(mut self, other: &StreamApplication) -> Self {
        self.codecs = other.codecs.clone();
        self
    }

    /// The same application under another name (the CLI's `-namePrefix`).
    pub fn renamed(mut self, name: impl Into<String>) -> Result<Self, AppError> {
        let name = name.into();
        validate_app_name(&name)?;
        self.name = name;
        Ok(self)
    }
}

/// Builds a [`StreamApplication`]; see [`StreamApplication::builder`].
///
/// Edges read like the guide's `split ~ partitioner ~> sum`:
/// `.edge(&split, PartitionerSpec::hash(), &sum)`, or `.path([&a, &b, &c])` for a chain of
/// hash edges.
pub struct StreamApplicationBuilder {
    name: String,
    config: UserConfig,
    graph: Graph<Processor, PartitionerSpec>,
    nodes: HashMap<u64, usize>,
    registry: TaskRegistry,
    codecs: Codecs,
}

impl StreamApplicationBuilder {
    /// Sets the application config.
    #[must_use]
    pub fn config(mut self, config: UserConfig) -> Self {
        self.config = config;
        self
    }

    /// Adds a processor (needed only for one with no edges).
    #[must_use]
    pub fn processor(mut self, p: &Processor) -> Self {
        self.node(p);
        self
    }

    /// Adds the edge `from ~ partitioner ~> to`.
    #[must_use]
    pub fn edge(mut self, from: &Processor, partitioner: PartitionerSpec, to: &Processor) -> Self {
        let a = self.node(from);
        let b = self.node(to);
        self.graph.add_edge(a, partitioner, b);
        self
    }

    /// Adds hash edges along a chain of processors: `a ~> b ~> c`.
    #[must_use]
    pub fn path<'p>(mut self, chain: impl IntoIterator<Item = &'p Processor>) -> Self {
        let mut previous: Option<&Processor> = None;
        for p in chain {
            match previous {
                Some(prev) => self = self.edge(prev, PartitionerSpec::hash(), p),
                None => self = self.processor(p),
            }
            previous = Some(p);
        }
        self
    }

    /// Registers a task type by name for processors made with [`Processor::named`].
    #[must_use]
    pub fn register(mut self, task_type: impl Into<String>, factory: TaskFactory) -> Self {
        self.registry.register(task_type, factory);
        self
    }

    /// Lets messages carrying `T` cross processes, encoded with serde. Common types (strings,
    /// numbers, bytes, pairs) are registered already.
    #[must_use]
    pub fn message_type<T: Value + serde::de::DeserializeOwned>(mut self) -> Self {
        self.codecs.register::<T>();
        self
    }

    /// Gives `T` a custom codec between processes (the guide's application-level serializer).
    #[must_use]
    pub fn message_codec<T, E, D>(mut self, encode: E, decode: D) -> Self
    where
        T: Value,
        E: Fn(&T, &mut Vec<u8>) -> Result<(), gearpump_core::CodecError> + Send + Sync + 'static,
        D: Fn(&[u8]) -> Result<T, gearpump_core::CodecError> + Send + Sync + 'static,
    {
        self.codecs.register_custom(encode, decode);
        self
    }

    /// Offers a custom codec for `T` under `name`, for the cluster to switch on with
    /// `gearpump.serializers { "<type name>" = "<name>" }` (the guide's system-level
    /// serializer). Until then `T` uses its serde codec.
    #[must_use]
    pub fn named_codec<T, E, D>(mut self, name: impl Into<String>, encode: E, decode: D) -> Self
    where
        T: Value,
        E: Fn(&T, &mut Vec<u8>) -> Result<(), gearpump_core::CodecError> + Send + Sync + 'static,
        D: Fn(&[u8]) -> Result<T, gearpump_core::CodecError> + Send + Sync + 'static,
    {
        self.codecs.register_named(name, encode, decode);
        self
    }

    fn node(&mut self, p: &Processor) -> usize {
        match self.nodes.get(&p.key()) {
            Some(&i) => i,
            None => {
                let i = self.graph.add_node(p.clone());
                self.nodes.insert(p.key(), i);
                i
            }
        }
    }

    /// Validates and builds the application.
    pub fn build(self) -> Result<StreamApplication, AppError> {
        validate_app_name(&self.name)?;
        let nodes = self.graph.nodes();
        if nodes.is_empty() {
            return Err(AppError::EmptyDag);
        }
        if let Some(p) = nodes.iter().find(|p| p.parallelism() == 0) {
            return Err(AppError::ZeroParallelism { task_type: p.task_type().to_string() });
        }
        // Summed as u64: two processors of 2^31 tasks must not wrap to 0.
        let total: u64 = nodes.iter().map(|p| u64::from(p.parallelism())).sum();
        if total > u64::from(MAX_TASKS) {
            return Err(AppError::TooManyTasks { total });
        }
        let mut seen = HashSet::new();
        for (from, spec, to) in self.graph.edges() {
            if !seen.insert((*from, *to)) {
                return Err(AppError::DuplicateEdge {
                    from: nodes[*from].task_type().to_string(),
                    to: nodes[*to].task_type().to_string(),
                });
            }
            check_edge(&nodes[*from].describe(ProcessorId(0)), spec, &nodes[*to].describe(ProcessorId(0)))?;
        }
        let order = self.graph.topological_order().map_err(|e| AppError::Cycle {
            processors: e.nodes.iter().map(|&i| nodes[i].task_type().to_string()).collect(),
        })?;
        // Node index → processor id (its position in the topological order).
        let mut id_of = vec![ProcessorId(0); nodes.len()];
        for (position, &node) in order.iter().enumerate() {
            id_of[node] = ProcessorId(position as u32);
        }
        let mut processors = Vec::with_capacity(nodes.len());
        let mut factories = Vec::with_capacity(nodes.len());
        let mut kinds: BTreeMap<String, TaskKind> = (self.registry.factories.into_iter())
            .map(|(name, factory)| (name, TaskKind { factory, stateful: false, transactional: false }))
            .collect();
        for &node in &order {
            let p = &nodes[node];
            let factory = p
                .factory()
                .or_else(|| kinds.get(p.task_type()).map(|k| &k.factory))
                .cloned()
                .ok_or_else(|| AppError::UnknownTaskType { task_type: p.task_type().to_string() })?;
            let d = p.describe(id_of[node]);
            let kind = TaskKind { factory: factory.clone(), stateful: d.stateful, transactional: d.transactional };
            kinds.entry(d.task_type.clone()).or_insert(kind);
            processors.push(d);
            factories.push(factory);
        }
        let mut edges: Vec<DagEdge> = self
            .graph
            .edges()
            .iter()
            .map(|(f, spec, t)| DagEdge { from: id_of[*f], to: id_of[*t], partitioner: spec.clone() })
            .collect();
        edges.sort_by_key(|e| (e.from, e.to));
        let partitioners = (PartitionerSpec::BUILT_IN.iter().filter_map(|n| PartitionerSpec::by_name(n)))
            .chain(edges.iter().map(|e| e.partitioner.clone()))
            .map(|p| (p.name().to_string(), p))
            .collect();
        Ok(StreamApplication {
            name: self.name,
            config: self.config,
            dag: Dag { processors, factories, edges },
            codecs: self.codecs,
            kinds,
            partitioners,
            changes: Vec::new(),
        })
    }
}

/// Checks what an edge `from ~ spec ~> to` requires of the processors it joins.
pub(crate) fn check_edge(
    a: &ProcessorDescription,
    spec: &PartitionerSpec,
    b: &ProcessorDescription,
) -> Result<(), AppError> {
    if spec.requires_equal_parallelism() && a.parallelism != b.parallelism {
        return Err(AppError::ParallelismMismatch {
            partitioner: spec.name().to_string(),
            from: a.task_type.clone(),
            from_parallelism: a.parallelism,
            to: b.task_type.clone(),
            to_parallelism: b.parallelism,
        });
    }
    if spec.is_dealt_by_arrival() && b.transactional && b.parallelism > 1 {
        return Err(AppError::ReplayDependentPartitioner {
            partitioner: spec.name().to_string(),
            from: a.task_type.clone(),
            to: b.task_type.clone(),
            to_parallelism: b.parallelism,
        });
    }
    Ok(())
}

/// Checks an application name: letters, digits and underscore, not empty (the one rule every
/// master applies to what it is submitted).
pub fn validate_app_name(name: &str) -> Result<(), AppError> {
    if name.is_empty() {
        return Err(AppError::InvalidAppName { name: name.to_string(), reason: "it is empty" });
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(AppError::InvalidAppName {
            name: name.to_string(),
            reason: "only letters, digits and underscore are allowed",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Task, TaskContext, TaskResult};
    use gearpump_core::Message;

    struct Nop;
    impl Task for Nop {
        fn on_next(&mut self, _: &mut TaskContext<'_>, _: Message) -> TaskResult {
            Ok(())
        }
    }

    fn p(name: &str, parallelism: u32) -> Processor {
        Processor::from_fn(name, parallelism, |_| Ok(Nop))
    }

    #[test]
    fn guide_wordcount_graph_has_two_nodes_and_one_hash_edge() {
        let split = p("Split", 4);
        let sum = p("Sum", 3);
        let app = StreamApplication::builder("wordCount").edge(&split, PartitionerSpec::hash(), &sum).build().unwrap();
        let dag = app.dag();
        let names: Vec<_> = dag.processors().iter().map(|p| (p.task_type.as_str(), p.parallelism)).collect();
        assert_eq!(names, vec![("Split", 4), ("Sum", 3)]);
        assert_eq!(dag.edges().len(), 1);
        let e = &dag.edges()[0];
        assert_eq!((e.from, e.to, e.partitioner.name()), (ProcessorId(0), ProcessorId(1), "hash"));
        assert_eq!(dag.task_count(), 7);
    }

    #[test]
    fn processor_ids_follow_topological_order_stably() {
        let (a, b, c, d) = (p("A", 1), p("B", 1), p("C", 1), p("D", 1));
        // Declared sink-first; ids must still run upstream to downstream.
        let build = || {
            StreamApplication::builder("x")
                .edge(&c, PartitionerSpec::hash(), &d)
                .edge(&a, PartitionerSpec::hash(), &b)
                .edge(&b, PartitionerSpec::shuffle(), &c)
                .build()
                .unwrap()
        };
        let first: Vec<_> = build().dag().processors().iter().map(|p| p.task_type.clone()).collect();
        assert_eq!(first, vec!["A", "B", "C", "D"]);
        for _ in 0..5 {
            let again: Vec<_> = build().dag().processors().iter().map(|p| p.task_type.clone()).collect();
            assert_eq!(again, first);
        }
    }

    #[test]
    fn invalid_applications_are_rejected_with_typed_errors() {
        let (a, b, c) = (p("A", 1), p("B", 2), p("C", 1));
        let cases: Vec<(StreamApplicationBuilder, AppError)> = vec![
            (
                StreamApplication::builder("x").path([&a, &b, &c]).edge(&c, PartitionerSpec::hash(), &a),
                AppError::Cycle { processors: vec!["A".into(), "B".into(), "C".into()] },
            ),
            (
                StreamApplication::builder("x").edge(&a, PartitionerSpec::hash(), &b).edge(
                    &a,
                    PartitionerSpec::shuffle(),
                    &b,
                ),
                AppError::DuplicateEdge { from: "A".into(), to: "B".into() },
            ),
            (
                StreamApplication::builder("x").path([&a, &p("Zero", 0)]),
                AppError::ZeroParallelism { task_type: "Zero".into() },
            ),
            (
                // 2^31 + 2^31 wrapped to 0 tasks in a u32 sum.
                StreamApplication::builder("x").path([&p("Half", 1 << 31), &p("Other", 1 << 31)]),
                AppError::TooManyTasks { total: 1 << 32 },
            ),
            (
                StreamApplication::builder("x").processor(&p("Huge", u32::MAX)),
                AppError::TooManyTasks { total: u64::from(u32::MAX) },
            ),
            (
                StreamApplication::builder("x").path([&a, &Processor::named("no.such.Task", 1)]),
                AppError::UnknownTaskType { task_type: "no.such.Task".into() },
            ),
            (
                StreamApplication::builder("bad name!").processor(&a),
                AppError::InvalidAppName {
                    name: "bad name!".into(),
                    reason: "only letters, digits and underscore are allowed",
                },
            ),
            (
                StreamApplication::builder("").processor(&a),
                AppError::InvalidAppName { name: "".into(), reason: "it is empty" },
            ),
            (StreamApplication::builder("x"), AppError::EmptyDag),
            (
                StreamApplication::builder("x").edge(&a, PartitionerSpec::co_location(), &b),
                AppError::ParallelismMismatch {
                    partitioner: "co_location".into(),
                    from: "A".into(),
                    from_parallelism: 1,
                    to: "B".into(),
                    to_parallelism: 2,
                },
            ),
            (
                StreamApplication::builder("x").edge(&a, PartitionerSpec::shuffle(), &p("Commit", 2).transactional()),
                AppError::ReplayDependentPartitioner {
                    partitioner: "shuffle".into(),
                    from: "A".into(),
                    to: "Commit".into(),
                    to_parallelism: 2,
                },
            ),
            (
                StreamApplication::builder("x").edge(
                    &a,
                    PartitionerSpec::shuffle_grouping(),
                    &p("Commit", 3).transactional(),
                ),
                AppError::ReplayDependentPartitioner {
                    partitioner: "shuffle_grouping".into(),
                    from: "A".into(),
                    to: "Commit".into(),
                    to_parallelism: 3,
                },
            ),
        ];
        for (builder, expected) in cases {
            let err = builder.build().unwrap_err();
            assert_eq!(err, expected);
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn exactly_once_processors_take_any_partitioner_that_a_replay_repeats() {
        // Keyed or one task: each task gets the same messages in every replay.
        let a = p("A", 2);
        for (spec, tasks) in [
            (PartitionerSpec::hash(), 2),
            (PartitionerSpec::group_by("first", |m: &Message| m.get::<String>().cloned()), 2),
            (PartitionerSpec::co_location(), 2),
            (PartitionerSpec::broadcast(), 2),
            (PartitionerSpec::shuffle(), 1),
        ] {
            let name = spec.name().to_string();
            let built = StreamApplication::builder("x").edge(&a, spec, &p("Commit", tasks).transactional()).build();
            assert!(built.is_ok(), "{name} into {tasks} transactional tasks: {built:?}");
        }
        // A user-defined partitioner that deals by arrival says so and is refused too.
        let mine =
            PartitionerSpec::unicast("my_round_robin", crate::partitioner::ShufflePartitioner::new).dealt_by_arrival();
        let refused = StreamApplication::builder("x").edge(&a, mine, &p("Commit", 2).transactional()).build();
        assert!(
            matches!(refused, Err(AppError::ReplayDependentPartitioner { ref partitioner, .. }) if partitioner == "my_round_robin"),
            "{refused:?}"
        );
        // Round robin into a processor that does not commit is fine.
        assert!(StreamApplication::builder("x").edge(&a, PartitionerSpec::shuffle(), &p("B", 2)).build().is_ok());
    }

    #[test]
    fn named_task_types_resolve_through_the_registry() {
        let factory: TaskFactory = std::sync::Arc::new(|_: &crate::TaskInfo| Ok(Box::new(Nop) as Box<dyn Task>));
        let app = StreamApplication::builder("x")
            .path([&p("A", 1), &Processor::named("my.Task", 1)])
            .register("my.Task", factory)
            .build()
            .unwrap();
        assert_eq!(app.dag().processor(ProcessorId(1)).task_type, "my.Task");
    }

    struct Typed;
    impl Task for Typed {
        fn on_next(&mut self, _: &mut TaskContext<'_>, _: Message) -> TaskResult {
            Ok(())
        }
    }
    impl crate::CreateTask for Typed {
        fn create(_: &crate::TaskInfo) -> Result<Self, crate::TaskError> {
            Ok(Typed)
        }
    }

    #[test]
    fn typed_processors_are_named_by_their_type_path() {
        let typed = Processor::new::<Typed>(2)
            .description("typed")
            .config(UserConfig::empty().with("k", 1))
            .life(crate::LifeTime { birth: gearpump_core::Timestamp(5), death: gearpump_core::Timestamp::MAX });
        let app = StreamApplication::builder("typed").processor(&typed).build().unwrap();
        let p = app.dag().processor(ProcessorId(0));
        assert_eq!(p.task_type, std::any::type_name::<Typed>());
        assert!(p.task_type.ends_with("::Typed"));
        assert_eq!((p.parallelism, p.description.as_str()), (2, "typed"));
        assert_eq!(p.config.get::<u32>("k").unwrap(), Some(1));
        assert!(!p.life.contains(gearpump_core::Timestamp(4)) && p.life.contains(gearpump_core::Timestamp(5)));
    }

    #[test]
    fn self_edge_is_a_cycle() {
        let a = p("A", 1);
        let err = StreamApplication::builder("x").edge(&a, PartitionerSpec::hash(), &a).build().unwrap_err();
        assert!(matches!(err, AppError::Cycle { .. }));
    }
}
