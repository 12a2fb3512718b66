//! [`Pipeline`]: the logical graph of operators, and its compilation into processors.

use crate::chain::{
    Chain, Collector, CollectorFactory, Discard, EdgeTask, Emit, Head, IterHead, Link, Operator, SourceHead, SourceTask,
};
use crate::stream::Stream;
use crate::{Data, DslError, Watermarks};
use gearpump_api::{
    DataSource, PartitionerSpec, Processor, StreamApplication, StreamApplicationBuilder, Task, TaskError, TaskFactory,
    TaskInfo, UserConfig,
};
use gearpump_core::Timestamp;
use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

/// A typed factory, type-erased while the graph is built ([`CollectorFactory`] of some `T`).
/// Only the builder downcasts it, once per chain; values never go through `Any`.
pub(crate) type AnyFactory = Box<dyn Any>;

/// How values reach an operator from its input.
#[derive(Clone)]
pub(crate) enum Route {
    /// As they are: task `i` to task `i` (chained when possible).
    Forward,
    /// By the hash of the value.
    Hash,
    /// By a key (a key partitioner).
    Key(PartitionerSpec),
}

/// What a node is, with the typed glue made when it was added.
pub(crate) enum Kind {
    /// A source: makes the task of a chain given the factory of the chain after it, whether
    /// the chain is stateful, the source's watermark strategy and its timestamp assigner (an
    /// [`Assigner`] of its type).
    Source(Box<dyn Fn(AnyFactory, bool, Watermarks, Option<&dyn Any>) -> TaskFactory>),
    /// An operator: `link` puts it before the chain after it; `head` makes the task of a chain
    /// that starts with it (fed by edges).
    Op { link: Box<dyn Fn(AnyFactory) -> AnyFactory>, head: Box<dyn Fn(AnyFactory, bool) -> TaskFactory> },
    /// A user task (`process`): a processor of its own.
    Task(TaskFactory),
}

/// The glue for a node's output type.
pub(crate) struct OutType {
    emit: fn() -> AnyFactory,
    discard: fn() -> AnyFactory,
    register: fn(StreamApplicationBuilder) -> StreamApplicationBuilder,
}

impl OutType {
    pub(crate) fn of<T: Data>() -> Self {
        OutType {
            emit: || {
                let f: CollectorFactory<T> = Arc::new(|_| Ok(Box::new(Emit::<T>::new()) as Box<dyn Collector<T>>));
                Box::new(f)
            },
            discard: || {
                let f: CollectorFactory<T> = Arc::new(|_| Ok(Box::new(Discard) as Box<dyn Collector<T>>));
                Box::new(f)
            },
            register: |b| b.message_type::<T>(),
        }
    }
}

/// One operator of the logical graph.
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) parallelism: Option<u32>,
    pub(crate) inputs: Vec<(usize, Route)>,
    pub(crate) consumers: Vec<usize>,
    pub(crate) kind: Kind,
    pub(crate) stateful: bool,
    pub(crate) transactional: bool,
    pub(crate) out: OutType,
    /// Why the node cannot be built, found when it was added (an invalid window).
    pub(crate) invalid: Option<String>,
    /// The node whose name and parallelism this one's `name` and `parallelism` set (a
    /// window's result extraction stands for the window).
    pub(crate) alias: Option<usize>,
    /// A source's watermark strategy.
    pub(crate) watermarks: Option<Watermarks>,
    /// A source's timestamp assigner (an [`Assigner`] of its type).
    pub(crate) assigner: Option<Box<dyn Any>>,
    /// Whether the source replays by timestamps of its own (a [`DataSource`]): a timestamp
    /// assigner is then refused.
    pub(crate) own_timestamps: bool,
}

impl Node {
    pub(crate) fn new(name: &str, inputs: Vec<(usize, Route)>, kind: Kind, out: OutType) -> Self {
        Node {
            name: name.to_string(),
            parallelism: None,
            inputs,
            consumers: Vec::new(),
            kind,
            stateful: false,
            transactional: false,
            out,
            invalid: None,
            alias: None,
            watermarks: None,
            assigner: None,
            own_timestamps: false,
        }
    }
}

/// The graph a [`Pipeline`] and its streams add to.
pub(crate) struct Graph {
    pub(crate) name: String,
    pub(crate) config: UserConfig,
    pub(crate) nodes: Vec<Node>,
    pub(crate) customize: Vec<Box<dyn FnOnce(StreamApplicationBuilder) -> StreamApplicationBuilder>>,
}

impl Graph {
    pub(crate) fn add(&mut self, node: Node) -> usize {
        let id = self.nodes.len();
        for (input, _) in &node.inputs {
            self.nodes[*input].consumers.push(id);
        }
        self.nodes.push(node);
        id
    }
}

/// The glue that puts operator `O` (built per task by `make`) before a chain.
pub(crate) fn op_kind<In: Data, O: Operator<In>>(
    make: impl Fn(&TaskInfo) -> Result<O, TaskError> + Send + Sync + 'static,
) -> Kind {
    let make = Arc::new(make);
    let link = move |next: AnyFactory| -> AnyFactory {
        let next = downcast::<O::Out>(next);
        let make = make.clone();
        let f: CollectorFactory<In> = Arc::new(move |info: &TaskInfo| {
            let next = next(info)?;
            Ok(Box::new(Link::new(make(info)?, next)) as Box<dyn Collector<In>>)
        });
        Box::new(f)
    };
    let head = |first: AnyFactory, stateful: bool| -> TaskFactory {
        let first = downcast::<In>(first);
        Arc::new(
            move |info: &TaskInfo| Ok(Box::new(EdgeTask::new(Chain::new(first(info)?, stateful))) as Box<dyn Task>),
        )
    };
    Kind::Op { link: Box::new(link), head: Box::new(head) }
}

/// The glue for a source chain whose head `make` builds per task.
pub(crate) fn source_kind<T: Data, H: Head<T>>(
    make: impl Fn(&TaskInfo, Option<Assigner<T>>) -> Result<H, TaskError> + Send + Sync + 'static,
) -> Kind {
    let make = Arc::new(make);
    Kind::Source(Box::new(
        move |first: AnyFactory, stateful: bool, watermarks: Watermarks, assigner: Option<&dyn Any>| -> TaskFactory {
            let first = downcast::<T>(first);
            let make = make.clone();
            let assigner = assigner.and_then(|a| a.downcast_ref::<Assigner<T>>()).cloned();
            Arc::new(move |info: &TaskInfo| {
                let chain = Chain::new(first(info)?, stateful);
                Ok(Box::new(SourceTask::new(make(info, assigner.clone())?, chain, watermarks)) as Box<dyn Task>)
            })
        },
    ))
}

/// A timestamp assigner: the event time of a value.
pub(crate) type Assigner<T> = Arc<dyn Fn(&T) -> Timestamp + Send + Sync>;

fn downcast<T: 'static>(f: AnyFactory) -> CollectorFactory<T> {
    // The builder joins nodes only along the graph's typed edges: a mismatch is a bug here.
    *f.downcast::<CollectorFactory<T>>()
        .unwrap_or_else(|_| panic!("the DSL joined a chain that does not take {}", std::any::type_name::<T>()))
}

/// A typed stream application under construction: its sources, and through the [`Stream`]s
/// they return, every operator after them. [`Pipeline::build`] compiles it into the same
/// [`StreamApplication`] the Task API builds, so the cluster, REST, the dashboard and dynamic
/// DAG changes see ordinary processors.
///
/// ```
/// use gearpump_dsl::Pipeline;
///
/// let p = Pipeline::new("wordCount");
/// p.collection("lines", vec!["a b".to_string(), "b c".to_string()])
///     .flat_map(|line: String| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
///     .key_by_value()
///     .count()
///     .for_each(|(word, count), _time| println!("{word}: {count}"));
/// let app = p.build().unwrap();
/// // Two processors: the source chained with the split, and the count chained with the print.
/// assert_eq!(app.dag().processors().len(), 2);
/// ```
pub struct Pipeline {
    graph: Rc<RefCell<Graph>>,
}

impl Pipeline {
    /// A pipeline for an application called `name` (letters, digits and underscore).
    pub fn new(name: impl Into<String>) -> Self {
        Pipeline {
            graph: Rc::new(RefCell::new(Graph {
                name: name.into(),
                config: UserConfig::empty(),
                nodes: Vec::new(),
                customize: Vec::new(),
            })),
        }
    }

    /// Sets the application config (every task sees it; `state.checkpoint.interval.ms` sets
    /// how often keyed state is checkpointed, in application time).
    pub fn config(&self, config: UserConfig) -> &Self {
        self.graph.borrow_mut().config = config;
        self
    }

    /// Adjusts the underlying [`StreamApplicationBuilder`] when the pipeline is built: custom
    /// codecs (`named_codec`, `message_codec`) and the like.
    pub fn customize(&self, f: impl FnOnce(StreamApplicationBuilder) -> StreamApplicationBuilder + 'static) -> &Self {
        self.graph.borrow_mut().customize.push(Box::new(f));
        self
    }

    fn add_source<T: Data>(&self, name: &str, parallelism: Option<u32>, kind: Kind) -> Stream<T> {
        let mut node = Node::new(name, Vec::new(), kind, OutType::of::<T>());
        node.parallelism = parallelism;
        let id = self.graph.borrow_mut().add(node);
        Stream::new(self.graph.clone(), id)
    }

    /// A stream read from a [`DataSource`] (Kafka, files, or your own), with `parallelism`
    /// tasks each running one source built by `make`. Its messages' values must be `T`; a
    /// value of another type fails the task with an error naming both types.
    ///
    /// Replay after a failure is the source's: a replayable source makes the stream's results
    /// exactly once.
    ///
    /// `T` comes from how the stream is used (annotate the next closure's argument), or name
    /// it: `source::<u64, _>(…)`.
    ///
    /// ```
    /// use gearpump_api::NumberSource;
    /// use gearpump_dsl::Pipeline;
    ///
    /// let p = Pipeline::new("numbers");
    /// p.source::<u64, _>("numbers", 1, |_| Ok(NumberSource::new(1000, 1)))
    ///     .filter(|n| n % 2 == 0)
    ///     .for_each(|n, time| println!("{n} at {time}"));
    /// p.build().unwrap();
    /// ```
    pub fn source<T, S>(
        &self,
        name: &str,
        parallelism: u32,
        make: impl Fn(&TaskInfo) -> Result<S, TaskError> + Send + Sync + 'static,
    ) -> Stream<T>
    where
        T: Data,
        S: DataSource,
    {
        let kind = source_kind::<T, _>(move |info, _| {
            Ok(SourceHead { source: make(info)?, max_read: Timestamp::MIN, _t: PhantomData::<fn() -> T> })
        });
        let s = self.add_source(name, Some(parallelism), kind);
        s.graph().borrow_mut().nodes[s.node()].own_timestamps = true;
        s
    }

    /// A stream of the values `make` generates for each of `parallelism` tasks, as
    /// `(time, value)` pairs in time order. `make` is called again after a failure, and the
    /// values stamped before the restart time are skipped, so a deterministic generator is a
    /// replayable source. The stream ends when every task's values are exhausted.
    pub fn generate<T, I>(
        &self,
        name: &str,
        parallelism: u32,
        make: impl Fn(&TaskInfo) -> I + Send + Sync + 'static,
    ) -> Stream<T>
    where
        T: Data,
        I: IntoIterator<Item = (Timestamp, T)>,
        I::IntoIter: Send + 'static,
    {
        let kind = source_kind::<T, _>(move |info, assign| {
            Ok(IterHead {
                iter: Some(make(info).into_iter()),
                assign,
                start: Timestamp::MIN,
                max_read: Timestamp::MIN,
                ended: false,
            })
        });
        self.add_source(name, Some(parallelism), kind)
    }

    /// A stream of `items`, read by one task; item `i` is stamped `i` (milliseconds).
    pub fn collection<T: Data>(&self, name: &str, items: impl IntoIterator<Item = T>) -> Stream<T> {
        let items: Arc<Vec<T>> = Arc::new(items.into_iter().collect());
        self.generate(name, 1, move |_| {
            let items = items.clone();
            (0..items.len()).map(move |i| (Timestamp(i as i64), items[i].clone()))
        })
    }

    /// Compiles the pipeline into a [`StreamApplication`].
    ///
    /// Operators are chained into one task where nothing needs repartitioning: an operator
    /// whose input has no other consumer, the same parallelism and no key or hash routing runs
    /// in its input's task, called directly. Everything else becomes an edge. A source, keyed
    /// state and an exactly-once sink each keep their own record in the checkpoint store, so at
    /// most one of them is in a chain.
    pub fn build(self) -> Result<StreamApplication, DslError> {
        let graph = Rc::try_unwrap(self.graph).map(RefCell::into_inner).unwrap_or_else(|shared| {
            // Streams still alive share the graph; take its nodes out of the shared cell.
            let mut g = shared.borrow_mut();
            Graph {
                name: g.name.clone(),
                config: g.config.clone(),
                nodes: std::mem::take(&mut g.nodes),
                customize: std::mem::take(&mut g.customize),
            }
        });
        compile(graph)
    }
}

/// What a chain keeps in the checkpoint store.
#[derive(Clone, Copy, Default)]
struct Stores {
    source: bool,
    state: bool,
    commits: bool,
}

fn compile(graph: Graph) -> Result<StreamApplication, DslError> {
    let Graph { name, config, nodes, customize } = graph;
    if nodes.is_empty() {
        return Err(DslError::App(gearpump_api::AppError::EmptyDag));
    }
    // Parallelism: set, or the first input's.
    let mut parallelism = vec![1u32; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        let p = n.parallelism.unwrap_or_else(|| n.inputs.first().map_or(1, |(input, _)| parallelism[*input]));
        if p == 0 {
            return Err(DslError::ZeroParallelism { operator: n.name.clone() });
        }
        if let Some(reason) = &n.invalid {
            return Err(DslError::Invalid { operator: n.name.clone(), reason: reason.clone() });
        }
        parallelism[i] = p;
    }
    // Chaining: which nodes run in their input's task, and each chain's head.
    let mut head = (0..nodes.len()).collect::<Vec<_>>();
    let mut stores = vec![Stores::default(); nodes.len()];
    let mut chained_next: Vec<Option<usize>> = vec![None; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        let mine = Stores {
            source: matches!(n.kind, Kind::Source(_)),
            state: n.stateful && !n.transactional,
            commits: n.transactional,
        };
        let chain_to = match (&n.kind, n.inputs.as_slice()) {
            (Kind::Op { .. }, [(input, Route::Forward)]) => {
                let up = &nodes[*input];
                let s = stores[head[*input]];
                let conflict = (u8::from(s.source || mine.source)
                    + u8::from(s.state || mine.state)
                    + u8::from(s.commits || mine.commits))
                    > 1;
                (up.consumers.len() == 1
                    && !matches!(up.kind, Kind::Task(_))
                    && parallelism[*input] == parallelism[i]
                    && !conflict)
                    .then_some(*input)
            }
            _ => None,
        };
        match chain_to {
            Some(input) => {
                head[i] = head[input];
                chained_next[input] = Some(i);
                let s = &mut stores[head[i]];
                s.source |= mine.source;
                s.state |= mine.state;
                s.commits |= mine.commits;
            }
            None => stores[i] = mine,
        }
    }
    // One processor per chain.
    let mut builder = StreamApplication::builder(name).config(config);
    let mut processor_of: Vec<Option<Processor>> = vec![None; nodes.len()];
    let mut registered = std::collections::HashSet::new();
    for h in (0..nodes.len()).filter(|&i| head[i] == i) {
        let mut members = vec![h];
        while let Some(next) = chained_next[*members.last().expect("a chain has a head")] {
            members.push(next);
        }
        let tail = *members.last().expect("a chain has a head");
        let emits = !nodes[tail].consumers.is_empty();
        if emits && registered.insert(tail) {
            builder = (nodes[tail].out.register)(builder);
        }
        let mut factory = if emits { (nodes[tail].out.emit)() } else { (nodes[tail].out.discard)() };
        for &m in members[1..].iter().rev() {
            let Kind::Op { link, .. } = &nodes[m].kind else { unreachable!("only operators are chained") };
            factory = link(factory);
        }
        let stateful = members.iter().any(|&m| nodes[m].stateful && !nodes[m].transactional);
        let task: TaskFactory = match &nodes[h].kind {
            Kind::Source(make) => {
                make(factory, stateful, nodes[h].watermarks.unwrap_or_default(), nodes[h].assigner.as_deref())
            }
            Kind::Op { link, head } => head(link(factory), stateful),
            Kind::Task(f) => f.clone(),
        };
        let names: Vec<&str> = members.iter().map(|&m| nodes[m].name.as_str()).collect();
        let task_type = format!("{}#{h}", names.join("+"));
        let mut p = Processor::named(task_type.clone(), parallelism[h]).description(names.join(" → "));
        if members.iter().any(|&m| nodes[m].transactional) {
            p = p.transactional();
        } else if stateful {
            p = p.stateful();
        }
        builder = builder.register(task_type, task).processor(&p);
        for &m in &members {
            processor_of[m] = Some(p.clone());
        }
    }
    // Edges into every chain's head.
    for (i, n) in nodes.iter().enumerate().filter(|(i, _)| head[*i] == *i) {
        let to = processor_of[i].as_ref().expect("every node has a processor");
        for (input, route) in &n.inputs {
            let from = processor_of[*input].as_ref().expect("every node has a processor");
            let spec = match route {
                Route::Forward if parallelism[*input] == parallelism[i] => PartitionerSpec::co_location(),
                Route::Forward | Route::Hash => PartitionerSpec::hash(),
                Route::Key(spec) => spec.clone(),
            };
            builder = builder.edge(from, spec, to);
        }
    }
    for f in customize {
        builder = f(builder);
    }
    Ok(builder.build()?)
}
