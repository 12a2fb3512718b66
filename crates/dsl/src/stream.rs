//! [`Stream`], [`KeyedStream`] and [`Terminal`]: the typed operators.

use crate::chain::Operator;
use crate::keyed::KeyedFold;
use crate::ops::{Filter, FlatMap, ForEach, Identity, Inspect, Map, Sink};
use crate::pipeline::{Graph, Kind, Node, OutType, Route, op_kind};
use crate::window::{Aggregator, FnAggregator, TimeWindow, Window, WindowOp, WindowOut, Windowed, late, results};
use crate::{Data, Key, Watermarks};
use gearpump_api::{DataSink, Partitioner, PartitionerSpec, Task, TaskError, TaskFactory, TaskInfo};
use gearpump_core::{Message, TaskIndex, Timestamp};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// A stream of values of type `T`, each with a timestamp (milliseconds of application time).
///
/// Every operator returns a new stream (or, for keyed operators, a [`KeyedStream`] first);
/// nothing runs until the [`crate::Pipeline`] is built and the application is run. A stream
/// may feed several operators (each gets every value). `name` and `parallelism` apply to the
/// operator that made the stream.
pub struct Stream<T> {
    graph: Rc<RefCell<Graph>>,
    node: usize,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Stream<T> {
    fn clone(&self) -> Self {
        Stream { graph: self.graph.clone(), node: self.node, _t: PhantomData }
    }
}

impl<T> std::fmt::Debug for Stream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.graph.borrow();
        f.debug_struct("Stream")
            .field("operator", &g.nodes[self.node].name)
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

impl<T: Data> Stream<T> {
    pub(crate) fn new(graph: Rc<RefCell<Graph>>, node: usize) -> Self {
        Stream { graph, node, _t: PhantomData }
    }

    fn add<U: Data>(&self, name: &str, route: Route, kind: Kind, stateful: bool, transactional: bool) -> Stream<U> {
        let mut node = Node::new(name, vec![(self.node, route)], kind, OutType::of::<U>());
        node.stateful = stateful;
        node.transactional = transactional;
        let id = self.graph.borrow_mut().add(node);
        Stream::new(self.graph.clone(), id)
    }

    /// The node that `name` and `parallelism` set for this stream.
    fn target(&self) -> usize {
        self.graph.borrow().nodes[self.node].alias.unwrap_or(self.node)
    }

    fn then<U: Data, O: Operator<T, Out = U>>(
        &self,
        name: &str,
        make: impl Fn(&TaskInfo) -> Result<O, TaskError> + Send + Sync + 'static,
    ) -> Stream<U> {
        self.add(name, Route::Forward, op_kind::<T, O>(make), false, false)
    }

    /// Names the operator that made this stream (shown in the processor's description and task
    /// type, and in errors).
    pub fn name(self, name: impl Into<String>) -> Self {
        let target = self.target();
        self.graph.borrow_mut().nodes[target].name = name.into();
        self
    }

    /// Runs the operator that made this stream as `parallelism` tasks (default: as many as its
    /// input has; sources say theirs). 0 is refused when the pipeline is built, naming the
    /// operator.
    pub fn parallelism(self, parallelism: u32) -> Self {
        let target = self.target();
        self.graph.borrow_mut().nodes[target].parallelism = Some(parallelism);
        self
    }

    /// Stamps each value of this source with the event time `f` gives (instead of the time
    /// the source gave it). For `generate` and `collection` sources; a `DataSource` replays
    /// after a failure by its own timestamps, so it must stamp its records itself
    /// (`KafkaSource::timestamped`, `FileSource::stamped`): building the pipeline fails, naming
    /// the operator, otherwise.
    pub fn assign_timestamps(self, f: impl Fn(&T) -> Timestamp + Send + Sync + 'static) -> Self {
        {
            let mut g = self.graph.borrow_mut();
            let node = &mut g.nodes[self.node];
            if !matches!(node.kind, Kind::Source(_)) {
                node.invalid =
                    Some("timestamps are assigned on a source's stream, and this operator is not a source".into());
            } else if node.own_timestamps {
                node.invalid = Some(
                    "this source replays by its own timestamps after a failure: stamp its records in the source \
                     (KafkaSource::timestamped, FileSource::stamped) instead of with assign_timestamps"
                        .into(),
                );
            } else {
                let assigner: crate::pipeline::Assigner<T> = Arc::new(f);
                node.assigner = Some(Box::new(assigner));
            }
        }
        self
    }

    pub(crate) fn graph(&self) -> &Rc<RefCell<Graph>> {
        &self.graph
    }

    pub(crate) fn node(&self) -> usize {
        self.node
    }

    /// Sets how this source's watermark follows its timestamps (default: the largest read; see
    /// [`Watermarks`]). Only a source's stream has watermarks: on another operator, building
    /// the pipeline fails naming it.
    pub fn watermarks(self, watermarks: Watermarks) -> Self {
        {
            let mut g = self.graph.borrow_mut();
            let node = &mut g.nodes[self.node];
            if matches!(node.kind, Kind::Source(_)) {
                node.watermarks = Some(watermarks);
            } else {
                node.invalid =
                    Some("watermarks are set on a source's stream, and this operator is not a source".into());
            }
        }
        self
    }

    /// Applies `f` to each value.
    pub fn map<U: Data>(self, f: impl Fn(T) -> U + Send + Sync + 'static) -> Stream<U> {
        let f = Arc::new(f);
        self.then("map", move |_| Ok(Map(f.clone())))
    }

    /// Replaces each value by the values `f` returns for it (a `Vec`, an `Option`, any
    /// iterable), all with its timestamp.
    pub fn flat_map<U: Data, I: IntoIterator<Item = U>>(self, f: impl Fn(T) -> I + Send + Sync + 'static) -> Stream<U> {
        let f = Arc::new(f);
        self.then("flat_map", move |_| Ok(FlatMap(f.clone())))
    }

    /// Keeps the values for which `f` is true.
    pub fn filter(self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Stream<T> {
        let f = Arc::new(f);
        self.then("filter", move |_| Ok(Filter(f.clone())))
    }

    /// Calls `f` on each value as it passes.
    pub fn inspect(self, f: impl Fn(&T) + Send + Sync + 'static) -> Stream<T> {
        let f = Arc::new(f);
        self.then("inspect", move |_| Ok(Inspect(f.clone())))
    }

    /// The values of this stream and of `other`, in one stream.
    // Taken by value, as `Iterator::chain` takes its argument: the stream is used up here.
    #[allow(clippy::needless_pass_by_value)]
    pub fn union(self, other: Stream<T>) -> Stream<T> {
        let node = Node::new(
            "union",
            vec![(self.node, Route::Forward), (other.node, Route::Forward)],
            op_kind::<T, Identity>(|_| Ok(Identity)),
            OutType::of::<T>(),
        );
        let id = self.graph.borrow_mut().add(node);
        Stream::new(self.graph, id)
    }

    /// Another name for [`Stream::union`].
    pub fn merge(self, other: Stream<T>) -> Stream<T> {
        self.union(other)
    }

    /// Groups the stream by the key `f` gives each value: values with equal keys go to the
    /// same task, where the keyed operators keep their state per key.
    pub fn key_by<K: Key>(self, f: impl Fn(&T) -> K + Send + Sync + 'static) -> KeyedStream<K, T> {
        self.keyed(f)
    }

    /// Another name for [`Stream::key_by`] (the later Gearpump DSL's `groupBy`).
    pub fn group_by<K: Key>(self, f: impl Fn(&T) -> K + Send + Sync + 'static) -> KeyedStream<K, T> {
        self.keyed(f)
    }

    fn keyed<K: Key>(self, f: impl Fn(&T) -> K + Send + Sync + 'static) -> KeyedStream<K, T> {
        let f: Arc<dyn Fn(&T) -> K + Send + Sync> = Arc::new(f);
        let name = format!("key_by#{}", self.node);
        let route = Route::Key(PartitionerSpec::unicast(name, {
            let f = f.clone();
            move || KeyPartitioner { key: f.clone() }
        }));
        KeyedStream { stream: self, key: KeyOf::Fn(f), route }
    }

    /// Drops down to the Task API: the values go, as messages, to a processor of `parallelism`
    /// tasks that `make` builds; what they output (values of type `U`) is the new stream.
    pub fn process<U: Data, X: Task>(
        self,
        name: &str,
        parallelism: u32,
        make: impl Fn(&TaskInfo) -> Result<X, TaskError> + Send + Sync + 'static,
    ) -> Stream<U> {
        let factory: TaskFactory = Arc::new(move |info| Ok(Box::new(make(info)?) as Box<dyn Task>));
        self.add::<U>(name, Route::Forward, Kind::Task(factory), false, false).parallelism(parallelism)
    }

    /// Writes the stream to a [`DataSink`] (a file sink, a Kafka sink, your own) built by
    /// `make` for each task. An exactly-once sink (`TRANSACTIONAL`) commits with the
    /// application's checkpoints.
    pub fn sink<S: DataSink>(
        self,
        make: impl Fn(&TaskInfo) -> Result<S, TaskError> + Send + Sync + 'static,
    ) -> Terminal {
        let kind = op_kind::<T, Sink<S, T>>(move |info| Ok(Sink { sink: make(info)?, flush: None, _t: PhantomData }));
        Terminal(self.add::<()>("sink", Route::Forward, kind, S::TRANSACTIONAL, S::TRANSACTIONAL))
    }

    /// Calls `f` with each value and its timestamp: the end of the stream. `f` runs in the
    /// tasks, wherever they are; on an embedded cluster that is this process.
    pub fn for_each(self, f: impl Fn(T, Timestamp) + Send + Sync + 'static) -> Terminal {
        let f = Arc::new(f);
        Terminal(self.then("for_each", move |_| Ok(ForEach(f.clone()))))
    }
}

impl<T: Key> Stream<T> {
    /// Groups the stream by the values themselves (`key_by(|v| v.clone())` without the clone):
    /// a word count is `words.key_by_value().count()`.
    pub fn key_by_value(self) -> KeyedStream<T, T> {
        KeyedStream { stream: self, key: KeyOf::Value(|v| v, T::clone), route: Route::Hash }
    }
}

/// The end of a stream (a sink); it may still be named and given a parallelism.
#[derive(Debug)]
pub struct Terminal(Stream<()>);

impl Terminal {
    /// Names the sink.
    pub fn name(self, name: impl Into<String>) -> Self {
        Terminal(self.0.name(name))
    }

    /// Runs the sink as `parallelism` tasks (default: as many as its input has).
    pub fn parallelism(self, parallelism: u32) -> Self {
        Terminal(self.0.parallelism(parallelism))
    }
}

/// How a keyed stream finds a value's key.
enum KeyOf<K, T> {
    /// A key function.
    Fn(Arc<dyn Fn(&T) -> K + Send + Sync>),
    /// The value is the key (`T` is `K`): taken by move, or cloned when the value is needed too.
    Value(fn(T) -> K, fn(&T) -> K),
}

impl<K, T> Clone for KeyOf<K, T> {
    fn clone(&self) -> Self {
        match self {
            KeyOf::Fn(f) => KeyOf::Fn(f.clone()),
            KeyOf::Value(a, b) => KeyOf::Value(*a, *b),
        }
    }
}

impl<K, T> KeyOf<K, T> {
    /// The key, when the value is not needed after.
    #[inline]
    fn take(&self, value: T) -> K {
        match self {
            KeyOf::Fn(f) => f(&value),
            KeyOf::Value(take, _) => take(value),
        }
    }

    /// The key of a value that is kept.
    #[inline]
    fn of(&self, value: &T) -> K {
        match self {
            KeyOf::Fn(f) => f(value),
            KeyOf::Value(_, of) => of(value),
        }
    }
}

/// Sends a value to the task its key hashes to: the key's serde encoding, hashed as
/// [`gearpump_core::Value::hash_code`] hashes values, so every process agrees, and keyed state
/// split by a rescale lands where the values go.
struct KeyPartitioner<K, T> {
    key: Arc<dyn Fn(&T) -> K + Send + Sync>,
}

impl<K: Key, T: Data> Partitioner for KeyPartitioner<K, T> {
    #[inline]
    fn get_partition(&mut self, msg: &Message, partitions: u32, _current: TaskIndex) -> Option<u32> {
        let hash = match msg.get::<T>() {
            Some(v) => gearpump_core::serde_hash(&(self.key)(v)),
            None => msg.hash_code(),
        };
        Some(gearpump_core::partition_of(hash, partitions))
    }
}

/// A stream grouped by key ([`Stream::key_by`]). Its operators keep state per key, in the
/// application's checkpoints: after a failure each value counts exactly once (with a
/// replayable source). Each emits, for every value, the key's updated result (a running
/// aggregate, as Flink's keyed `reduce` and `sum` do).
pub struct KeyedStream<K, T> {
    stream: Stream<T>,
    key: KeyOf<K, T>,
    route: Route,
}

impl<K: Key, T: Data> KeyedStream<K, T> {
    fn fold_with<V, A, O>(
        self,
        name: &str,
        split: impl Fn(&KeyOf<K, T>, T) -> (K, V) + Send + Sync + 'static,
        init: impl Fn() -> A + Send + Sync + 'static,
        add: impl Fn(&mut A, V) + Send + Sync + 'static,
        out: impl Fn(&K, &A) -> O + Send + Sync + 'static,
    ) -> Stream<O>
    where
        V: Clone + 'static,
        A: Data,
        O: Data,
    {
        let key = self.key.clone();
        let split = Arc::new(move |v: T| split(&key, v));
        let (init, add, out) = (Arc::new(init), Arc::new(add), Arc::new(out));
        let kind = op_kind::<T, _>(move |_| Ok(KeyedFold::new(split.clone(), init.clone(), add.clone(), out.clone())));
        self.stream.add::<O>(name, self.route.clone(), kind, true, false)
    }

    /// The number of values per key so far: `(key, count)` for each value.
    pub fn count(self) -> Stream<(K, u64)> {
        self.fold_with("count", |k, v| (k.take(v), ()), || 0u64, |n, ()| *n += 1, |k, n| (k.clone(), *n))
    }

    /// The sum of `f(value)` per key so far: `(key, sum)` for each value.
    pub fn sum<N>(self, f: impl Fn(&T) -> N + Send + Sync + 'static) -> Stream<(K, N)>
    where
        N: Data + Default + std::ops::AddAssign,
    {
        self.fold_with(
            "sum",
            move |k, v| {
                let n = f(&v);
                (k.take(v), n)
            },
            N::default,
            |s, n| *s += n,
            |k, s| (k.clone(), s.clone()),
        )
    }

    /// The smallest `f(value)` per key so far: `(key, min)` for each value.
    pub fn min<N: Data + Ord>(self, f: impl Fn(&T) -> N + Send + Sync + 'static) -> Stream<(K, N)> {
        self.extreme("min", f, |new, old| new < old)
    }

    /// The largest `f(value)` per key so far: `(key, max)` for each value.
    pub fn max<N: Data + Ord>(self, f: impl Fn(&T) -> N + Send + Sync + 'static) -> Stream<(K, N)> {
        self.extreme("max", f, |new, old| new > old)
    }

    fn extreme<N: Data + Ord>(
        self,
        name: &str,
        f: impl Fn(&T) -> N + Send + Sync + 'static,
        better: fn(&N, &N) -> bool,
    ) -> Stream<(K, N)> {
        self.fold_with(
            name,
            move |k, v| {
                let n = f(&v);
                (k.take(v), n)
            },
            || None::<N>,
            move |best, n| {
                if best.as_ref().is_none_or(|b| better(&n, b)) {
                    *best = Some(n);
                }
            },
            |k, best| (k.clone(), best.clone().expect("a key has a value once it has been seen")),
        )
    }

    /// Combines the values of each key with `f` (associative): emits the combined value so
    /// far for each value.
    pub fn reduce(self, f: impl Fn(T, T) -> T + Send + Sync + 'static) -> Stream<T> {
        self.fold_with(
            "reduce",
            |k, v| (k.of(&v), v),
            || None::<T>,
            move |acc, v| {
                *acc = Some(match acc.take() {
                    Some(a) => f(a, v),
                    None => v,
                });
            },
            |_, acc| acc.clone().expect("a key has a value once it has been seen"),
        )
    }

    /// Folds the values of each key into an accumulator that starts as `init`: emits
    /// `(key, accumulator)` for each value.
    pub fn fold<A: Data>(self, init: A, f: impl Fn(&mut A, T) + Send + Sync + 'static) -> Stream<(K, A)> {
        self.fold_with("fold", |k, v| (k.of(&v), v), move || init.clone(), f, |k, a| (k.clone(), a.clone()))
    }
}

impl<K: Key, T: Data> KeyedStream<K, T> {
    /// Groups each key's values into windows ([`Window`]): the next operator (`count`, `sum`,
    /// `reduce`, `aggregate`, `apply`) emits one result per window and key when the window
    /// closes.
    pub fn window(self, window: Window) -> WindowedStream<K, T> {
        WindowedStream { keyed: self, window, lateness: 0, late: None }
    }
}

/// A keyed stream in windows ([`KeyedStream::window`]).
pub struct WindowedStream<K, T> {
    keyed: KeyedStream<K, T>,
    window: Window,
    lateness: i64,
    late: Option<Box<dyn FnOnce(Stream<T>)>>,
}

impl<K: Key, T: Data> WindowedStream<K, T> {
    /// Keeps each window's state until the watermark is `lateness` past its end (default 0):
    /// a record arriving late for it in the meantime updates it and fires it again at once.
    #[must_use]
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.lateness = i64::try_from(lateness.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// Hands the stream of records that came too late for any of their windows (the side
    /// output) to `f`, which may consume it like any stream. Without it they are dropped.
    #[must_use]
    pub fn late_records(mut self, f: impl FnOnce(Stream<T>) + 'static) -> Self {
        self.late = Some(Box::new(f));
        self
    }

    /// Folds each window with `agg` and emits its result per key.
    pub fn aggregate<G: Aggregator<T>>(self, agg: G) -> Stream<Windowed<K, G::Out>> {
        self.aggregate_named("window", agg)
    }

    fn aggregate_named<G: Aggregator<T>>(self, name: &str, agg: G) -> Stream<Windowed<K, G::Out>> {
        let WindowedStream { keyed, window, lateness, late: on_late } = self;
        let key: Arc<dyn Fn(&T) -> K + Send + Sync> = match keyed.key.clone() {
            KeyOf::Fn(f) => f,
            KeyOf::Value(_, of) => Arc::new(of),
        };
        let agg = Arc::new(agg);
        let kind = op_kind::<T, _>(move |_| Ok(WindowOp::new(window, lateness, key.clone(), agg.clone())));
        let shape = match (window.shape, window.processing_time) {
            (crate::window::Shape::Tumbling { .. }, false) => "tumbling",
            (crate::window::Shape::Sliding { .. }, false) => "sliding",
            (crate::window::Shape::Session { .. }, false) => "session",
            (crate::window::Shape::Tumbling { .. }, true) => "tumbling_processing_time",
            (crate::window::Shape::Sliding { .. }, true) => "sliding_processing_time",
            (crate::window::Shape::Session { .. }, true) => "session_processing_time",
        };
        let windows: Stream<WindowOut<Windowed<K, G::Out>, T>> =
            keyed.stream.add(&format!("{shape}_{name}"), keyed.route.clone(), kind, true, false);
        if let Some(problem) = window.problem() {
            windows.graph.borrow_mut().nodes[windows.node].invalid = Some(problem);
        }
        if let Some(f) = on_late {
            f(windows.clone().flat_map(late).name("late_records"));
        }
        let out = windows.clone().flat_map(results).name("results");
        out.graph.borrow_mut().nodes[out.node].alias = Some(windows.node);
        out
    }

    /// The number of values per window and key.
    pub fn count(self) -> Stream<Windowed<K, u64>> {
        let agg = FnAggregator {
            create: || 0u64,
            add: |n: &mut u64, _: T| *n += 1,
            merge: |n: &mut u64, m: u64| *n += m,
            result: |n: &u64| *n,
        };
        self.aggregate_named("count", agg)
    }

    /// The sum of `f(value)` per window and key.
    pub fn sum<N>(self, f: impl Fn(&T) -> N + Send + Sync + 'static) -> Stream<Windowed<K, N>>
    where
        N: Data + Default + std::ops::AddAssign,
    {
        let agg = FnAggregator {
            create: N::default,
            add: move |s: &mut N, v: T| *s += f(&v),
            merge: |s: &mut N, o: N| *s += o,
            result: |s: &N| s.clone(),
        };
        self.aggregate_named("sum", agg)
    }

    /// Combines the values of each window and key with `f` (associative).
    pub fn reduce(self, f: impl Fn(T, T) -> T + Send + Sync + 'static) -> Stream<Windowed<K, T>> {
        let f = Arc::new(f);
        let g = f.clone();
        let agg = FnAggregator {
            create: || None::<T>,
            add: move |acc: &mut Option<T>, v: T| {
                *acc = Some(match acc.take() {
                    Some(a) => f(a, v),
                    None => v,
                });
            },
            merge: move |acc: &mut Option<T>, other: Option<T>| {
                if let Some(o) = other {
                    *acc = Some(match acc.take() {
                        Some(a) => g(a, o),
                        None => o,
                    });
                }
            },
            result: |acc: &Option<T>| acc.clone().expect("a window has a value once it exists"),
        };
        self.aggregate_named("reduce", agg)
    }

    /// Calls `f` with each window's key, bounds and values (in arrival order) when it fires;
    /// its result is the window's. The values are kept until then: prefer `aggregate` where an
    /// accumulator will do.
    pub fn apply<O: Data>(
        self,
        f: impl Fn(&K, TimeWindow, &[T]) -> O + Send + Sync + 'static,
    ) -> Stream<Windowed<K, O>> {
        let agg = FnAggregator {
            create: Vec::new,
            add: |all: &mut Vec<T>, v: T| all.push(v),
            merge: |all: &mut Vec<T>, mut more: Vec<T>| all.append(&mut more),
            result: |all: &Vec<T>| all.clone(),
        };
        let collected = self.aggregate_named("apply", agg);
        let alias = collected.graph.borrow().nodes[collected.node].alias;
        let out = collected.map(move |w: Windowed<K, Vec<T>>| {
            let value = f(&w.key, w.window, &w.value);
            Windowed { key: w.key, window: w.window, value }
        });
        out.graph.borrow_mut().nodes[out.node].alias = alias;
        out
    }
}

/// One of two values: what a join's two inputs become in one stream.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Either<A, B> {
    /// A value of the first stream.
    Left(A),
    /// A value of the second stream.
    Right(B),
}

impl<A: Data> Stream<A> {
    /// Joins this stream with `other` over windows: every pair of a value of this stream and a
    /// value of `other` with equal keys (`key_a`, `key_b`) in the same window, emitted when
    /// the window fires. (Flink's window join: `a.join(b).where(ka).equalTo(kb).window(w)`.)
    pub fn join<B: Data, K: Key>(
        self,
        other: Stream<B>,
        key_a: impl Fn(&A) -> K + Send + Sync + 'static,
        key_b: impl Fn(&B) -> K + Send + Sync + 'static,
        window: Window,
    ) -> Stream<Windowed<K, (A, B)>> {
        let left = self.map(Either::<A, B>::Left).name("join_left");
        let right = other.map(Either::<A, B>::Right).name("join_right");
        let pairs = left
            .union(right)
            .name("join_inputs")
            .key_by(move |e: &Either<A, B>| match e {
                Either::Left(a) => key_a(a),
                Either::Right(b) => key_b(b),
            })
            .window(window)
            .apply(|_, _, values| {
                let lefts: Vec<&A> =
                    values.iter().filter_map(|e| if let Either::Left(a) = e { Some(a) } else { None }).collect();
                let mut pairs = Vec::new();
                for b in values.iter().filter_map(|e| if let Either::Right(b) = e { Some(b) } else { None }) {
                    for a in &lefts {
                        pairs.push(((*a).clone(), b.clone()));
                    }
                }
                pairs
            })
            .name("join");
        let alias = pairs.graph.borrow().nodes[pairs.node].alias;
        let out = pairs.flat_map(|w: Windowed<K, Vec<(A, B)>>| {
            let (key, window) = (w.key, w.window);
            w.value.into_iter().map(move |value| Windowed { key: key.clone(), window, value })
        });
        out.graph.borrow_mut().nodes[out.node].alias = alias;
        out
    }
}
