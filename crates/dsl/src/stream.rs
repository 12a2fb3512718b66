//! [`Stream`], [`KeyedStream`] and [`Terminal`]: the typed operators.

use crate::chain::Operator;
use crate::keyed::KeyedFold;
use crate::ops::{Filter, FlatMap, ForEach, Identity, Inspect, Map, Sink};
use crate::pipeline::{Graph, Kind, Node, OutType, Route, op_kind};
use crate::{Data, Key};
use gearpump_api::{DataSink, Partitioner, PartitionerSpec, Task, TaskError, TaskFactory, TaskInfo};
use gearpump_core::{Message, TaskIndex, Timestamp};
use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

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
        let node = Node {
            name: name.to_string(),
            parallelism: None,
            inputs: vec![(self.node, route)],
            consumers: Vec::new(),
            kind,
            stateful,
            transactional,
            out: OutType::of::<U>(),
        };
        let id = self.graph.borrow_mut().add(node);
        Stream::new(self.graph.clone(), id)
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
    #[must_use]
    pub fn name(self, name: impl Into<String>) -> Self {
        self.graph.borrow_mut().nodes[self.node].name = name.into();
        self
    }

    /// Runs the operator that made this stream as `parallelism` tasks (default: as many as its
    /// input has; sources say theirs). 0 is refused when the pipeline is built, naming the
    /// operator.
    #[must_use]
    pub fn parallelism(self, parallelism: u32) -> Self {
        self.graph.borrow_mut().nodes[self.node].parallelism = Some(parallelism);
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
        let node = Node {
            name: "union".to_string(),
            parallelism: None,
            inputs: vec![(self.node, Route::Forward), (other.node, Route::Forward)],
            consumers: Vec::new(),
            kind: op_kind::<T, Identity>(|_| Ok(Identity)),
            stateful: false,
            transactional: false,
            out: OutType::of::<T>(),
        };
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
    #[must_use]
    pub fn name(self, name: impl Into<String>) -> Self {
        Terminal(self.0.name(name))
    }

    /// Runs the sink as `parallelism` tasks (default: as many as its input has).
    #[must_use]
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
            None => msg.value().hash_code(),
        };
        Some((hash % u64::from(partitions.max(1))) as u32)
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
