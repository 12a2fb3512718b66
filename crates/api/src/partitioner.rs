//! Partitioners: which downstream task(s) get a message.
//!
//! An edge carries a [`PartitionerSpec`] (a name and a factory); every upstream task builds its
//! own [`PartitionerInstance`] from it, so stateful partitioners (shuffle's round robin) need no
//! locks.

use gearpump_core::{Message, TaskIndex};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Picks one downstream task for a message.
pub trait Partitioner: Send + 'static {
    /// The index in `0..partitions` of the task to send `msg` to, or `None` to drop it (the
    /// original's partition `-1`). `current` is the sending task's own index.
    fn get_partition(&mut self, msg: &Message, partitions: u32, current: TaskIndex) -> Option<u32>;
}

/// Picks any number of downstream tasks for a message.
pub trait MulticastPartitioner: Send + 'static {
    /// Pushes the indices in `0..partitions` of the tasks to send `msg` to onto `out`.
    fn get_partitions(&mut self, msg: &Message, partitions: u32, current: TaskIndex, out: &mut Vec<u32>);
}

/// One upstream task's partitioner for one edge.
pub enum PartitionerInstance {
    /// One target per message.
    Unicast(Box<dyn Partitioner>),
    /// Any number of targets per message.
    Multicast(Box<dyn MulticastPartitioner>),
    /// Every downstream task.
    Broadcast,
}

type Factory = Arc<dyn Fn() -> PartitionerInstance + Send + Sync>;

/// A partitioner on an edge of the DAG: a name (shown by REST, used to rebuild the DAG in other
/// processes) and a factory making one instance per upstream task.
#[derive(Clone)]
pub struct PartitionerSpec {
    name: String,
    factory: Factory,
    colocated: bool,
    by_arrival: bool,
}

impl PartitionerSpec {
    /// The name of the hash partitioner.
    pub const HASH: &'static str = "hash";
    /// The name of the shuffle partitioner.
    pub const SHUFFLE: &'static str = "shuffle";
    /// The name of the shuffle-grouping partitioner.
    pub const SHUFFLE_GROUPING: &'static str = "shuffle_grouping";
    /// The name of the broadcast partitioner.
    pub const BROADCAST: &'static str = "broadcast";
    /// The name of the co-location partitioner.
    pub const CO_LOCATION: &'static str = "co_location";

    /// The names of the built-in partitioners (REST `master/partitioners`).
    pub const BUILT_IN: [&'static str; 5] =
        [Self::HASH, Self::SHUFFLE, Self::SHUFFLE_GROUPING, Self::BROADCAST, Self::CO_LOCATION];

    /// Hash of the message value modulo the downstream parallelism; the default on an edge.
    pub fn hash() -> Self {
        Self::unicast(Self::HASH, || HashPartitioner)
    }

    /// Round robin, from a random start per upstream task.
    pub fn shuffle() -> Self {
        Self::unicast(Self::SHUFFLE, ShufflePartitioner::new).dealt_by_arrival()
    }

    /// A fresh random permutation of the downstream tasks each round: equal counts per task,
    /// random order.
    pub fn shuffle_grouping() -> Self {
        Self::unicast(Self::SHUFFLE_GROUPING, ShuffleGroupingPartitioner::default).dealt_by_arrival()
    }

    /// Marks a partitioner that picks targets by arrival order (round robin, random), so a
    /// replay may send a message to another task than before. Such a partitioner may not feed
    /// an exactly-once processor of several tasks (see
    /// [`crate::AppError::ReplayDependentPartitioner`]); mark user-defined ones of this kind too.
    #[must_use]
    pub fn dealt_by_arrival(mut self) -> Self {
        self.by_arrival = true;
        self
    }

    /// Whether it picks targets by arrival order ([`PartitionerSpec::dealt_by_arrival`]).
    pub fn is_dealt_by_arrival(&self) -> bool {
        self.by_arrival
    }

    /// Every message to every downstream task.
    pub fn broadcast() -> Self {
        PartitionerSpec {
            name: Self::BROADCAST.into(),
            factory: Arc::new(|| PartitionerInstance::Broadcast),
            colocated: false,
            by_arrival: false,
        }
    }

    /// Upstream task `i` sends to downstream task `i`; the two processors must have the same
    /// parallelism (checked when the application is built).
    pub fn co_location() -> Self {
        let mut spec = Self::unicast(Self::CO_LOCATION, || CoLocationPartitioner);
        spec.colocated = true;
        spec
    }

    /// Hash of `key(msg)`: messages with equal keys go to the same task.
    pub fn group_by<K, F>(name: impl Into<String>, key: F) -> Self
    where
        K: Hash,
        F: Fn(&Message) -> K + Send + Sync + Clone + 'static,
    {
        Self::unicast(name, move || GroupByPartitioner { key: key.clone() })
    }

    /// A user-defined unicast partitioner; `make` builds one per upstream task.
    pub fn unicast<P, F>(name: impl Into<String>, make: F) -> Self
    where
        P: Partitioner,
        F: Fn() -> P + Send + Sync + 'static,
    {
        PartitionerSpec {
            name: name.into(),
            factory: Arc::new(move || PartitionerInstance::Unicast(Box::new(make()))),
            colocated: false,
            by_arrival: false,
        }
    }

    /// A user-defined multicast partitioner; `make` builds one per upstream task.
    pub fn multicast<P, F>(name: impl Into<String>, make: F) -> Self
    where
        P: MulticastPartitioner,
        F: Fn() -> P + Send + Sync + 'static,
    {
        PartitionerSpec {
            name: name.into(),
            factory: Arc::new(move || PartitionerInstance::Multicast(Box::new(make()))),
            colocated: false,
            by_arrival: false,
        }
    }

    /// A built-in partitioner by its name (see [`PartitionerSpec::BUILT_IN`]).
    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            Self::HASH => Some(Self::hash()),
            Self::SHUFFLE => Some(Self::shuffle()),
            Self::SHUFFLE_GROUPING => Some(Self::shuffle_grouping()),
            Self::BROADCAST => Some(Self::broadcast()),
            Self::CO_LOCATION => Some(Self::co_location()),
            _ => None,
        }
    }

    /// The partitioner's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it requires equal parallelism on both sides.
    pub fn requires_equal_parallelism(&self) -> bool {
        self.colocated
    }

    /// A new instance for one upstream task.
    pub fn instantiate(&self) -> PartitionerInstance {
        (self.factory)()
    }
}

impl Default for PartitionerSpec {
    fn default() -> Self {
        Self::hash()
    }
}

impl fmt::Debug for PartitionerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartitionerSpec({})", self.name)
    }
}

/// `hash(value) mod n`. The hash is of the value's serde encoding, the same in every process.
#[derive(Debug, Default)]
pub struct HashPartitioner;

impl Partitioner for HashPartitioner {
    #[inline]
    fn get_partition(&mut self, msg: &Message, partitions: u32, _current: TaskIndex) -> Option<u32> {
        Some(gearpump_core::partition_of(msg.hash_code(), partitions))
    }
}

/// Round robin from a random start.
#[derive(Debug)]
pub struct ShufflePartitioner {
    next: u32,
}

impl ShufflePartitioner {
    /// A round robin starting at a random index.
    pub fn new() -> Self {
        ShufflePartitioner { next: fastrand::u32(..) }
    }
}

impl Default for ShufflePartitioner {
    fn default() -> Self {
        Self::new()
    }
}

impl Partitioner for ShufflePartitioner {
    #[inline]
    fn get_partition(&mut self, _msg: &Message, partitions: u32, _current: TaskIndex) -> Option<u32> {
        self.next = self.next.wrapping_add(1);
        Some(self.next % partitions)
    }
}

/// A random permutation per round of `n` messages.
#[derive(Debug, Default)]
pub struct ShuffleGroupingPartitioner {
    round: Vec<u32>,
    rng: Option<fastrand::Rng>,
}

impl Partitioner for ShuffleGroupingPartitioner {
    fn get_partition(&mut self, _msg: &Message, partitions: u32, _current: TaskIndex) -> Option<u32> {
        if self.round.is_empty() {
            let rng = self.rng.get_or_insert_with(fastrand::Rng::new);
            self.round.extend(0..partitions);
            rng.shuffle(&mut self.round);
        }
        self.round.pop()
    }
}

/// Upstream task `i` → downstream task `i`.
#[derive(Debug, Default)]
pub struct CoLocationPartitioner;

impl Partitioner for CoLocationPartitioner {
    #[inline]
    fn get_partition(&mut self, _msg: &Message, partitions: u32, current: TaskIndex) -> Option<u32> {
        Some(current % partitions)
    }
}

/// Hash of a key taken from the message.
pub struct GroupByPartitioner<F> {
    key: F,
}

impl<K: Hash, F: Fn(&Message) -> K + Send + 'static> Partitioner for GroupByPartitioner<F> {
    #[inline]
    fn get_partition(&mut self, msg: &Message, partitions: u32, _current: TaskIndex) -> Option<u32> {
        // FxHasher has no random seed: the same key maps to the same task in every process.
        let mut hasher = rustc_hash::FxHasher::default();
        (self.key)(msg).hash(&mut hasher);
        Some((hasher.finish() % u64::from(partitions)) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gearpump_core::Timestamp;

    fn msg(s: &str) -> Message {
        Message::new(s.to_string(), Timestamp(0))
    }

    fn targets(spec: &PartitionerSpec, m: &Message, n: u32, current: u32) -> Vec<u32> {
        match spec.instantiate() {
            PartitionerInstance::Unicast(mut p) => p.get_partition(m, n, current).into_iter().collect(),
            PartitionerInstance::Multicast(mut p) => {
                let mut out = Vec::new();
                p.get_partitions(m, n, current, &mut out);
                out
            }
            PartitionerInstance::Broadcast => (0..n).collect(),
        }
    }

    fn counts(spec: &PartitionerSpec, n: u32, messages: usize) -> Vec<usize> {
        let PartitionerInstance::Unicast(mut p) = spec.instantiate() else { panic!("unicast expected") };
        let mut counts = vec![0; n as usize];
        for i in 0..messages {
            counts[p.get_partition(&msg(&i.to_string()), n, 0).unwrap() as usize] += 1;
        }
        counts
    }

    #[test]
    fn hash_is_stable_per_key_and_in_range() {
        let spec = PartitionerSpec::hash();
        for n in 1..=8 {
            for word in ["a", "b", "gearpump", "", "longer words here"] {
                let first = targets(&spec, &msg(word), n, 0);
                assert_eq!(first.len(), 1);
                assert!(first[0] < n);
                // Another instance (another upstream task) agrees.
                assert_eq!(targets(&spec, &msg(word), n, 3), first, "word {word:?} n {n}");
            }
        }
    }

    #[test]
    fn shuffle_and_shuffle_grouping_spread_evenly() {
        for spec in [PartitionerSpec::shuffle(), PartitionerSpec::shuffle_grouping()] {
            for n in [1u32, 2, 3, 7] {
                let c = counts(&spec, n, 700 * n as usize);
                assert!(c.iter().all(|&x| x == 700), "{} n={n}: {c:?}", spec.name());
            }
        }
    }

    #[test]
    fn shuffle_grouping_permutes_each_round() {
        let PartitionerInstance::Unicast(mut p) = PartitionerSpec::shuffle_grouping().instantiate() else { panic!() };
        for _ in 0..10 {
            let mut round: Vec<u32> = (0..5).map(|_| p.get_partition(&msg("x"), 5, 0).unwrap()).collect();
            round.sort_unstable();
            assert_eq!(round, vec![0, 1, 2, 3, 4]);
        }
    }

    #[test]
    fn broadcast_reaches_all() {
        assert_eq!(targets(&PartitionerSpec::broadcast(), &msg("x"), 4, 1), vec![0, 1, 2, 3]);
    }

    #[test]
    fn co_location_keeps_the_index() {
        let spec = PartitionerSpec::co_location();
        assert!(spec.requires_equal_parallelism());
        for i in 0..4 {
            assert_eq!(targets(&spec, &msg("x"), 4, i), vec![i]);
        }
    }

    #[test]
    fn group_by_sends_equal_keys_together() {
        let spec =
            PartitionerSpec::group_by("first_char", |m: &Message| m.get::<String>().and_then(|s| s.chars().next()));
        let a = targets(&spec, &msg("apple"), 5, 0);
        assert_eq!(targets(&spec, &msg("avocado"), 5, 2), a);
        assert_eq!(spec.name(), "first_char");
    }

    #[test]
    fn user_partitioner_can_drop() {
        struct Evens;
        impl Partitioner for Evens {
            fn get_partition(&mut self, m: &Message, n: u32, _: u32) -> Option<u32> {
                let v = *m.get::<u32>()?;
                (v % 2 == 0).then_some(v % n)
            }
        }
        let spec = PartitionerSpec::unicast("evens", || Evens);
        assert_eq!(targets(&spec, &Message::new(4u32, Timestamp(0)), 3, 0), vec![1]);
        assert!(targets(&spec, &Message::new(5u32, Timestamp(0)), 3, 0).is_empty());
    }
}
