//! Running aggregations per key (`count`, `sum`, `min`, `max`, `reduce`, `fold`), with state
//! that is checkpointed exactly once.
//!
//! The state is a map from key to accumulator. A checkpoint at time Tc must hold the effect of
//! the values stamped before Tc only, while values stamped later may already have arrived. The
//! operator keeps one map, and, for the few keys that a value stamped at or after Tc touched
//! since the last checkpoint, a copy of their accumulator as it was for the values before Tc
//! (copy on write). A checkpoint is the map with those copies in place; afterwards the copies
//! are dropped. In the common case (values in time order, checkpoint time ahead of them) a
//! value costs one map update and nothing more.

use crate::chain::{Collector, Control, Cx, Operator, Restore};
use gearpump_api::{TaskError, TaskResult};
use gearpump_core::Timestamp;
use rustc_hash::FxHashMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

/// A running aggregation per key.
///
/// `split` takes a value apart into its key and what the aggregation adds (`()` for a count);
/// `add` adds that into the key's accumulator (`init` when the key is new); `out` makes the
/// value emitted after each update.
pub(crate) struct KeyedFold<T, K, V, A, O, SF, IF, AF, OF> {
    pub(crate) split: Arc<SF>,
    pub(crate) init: Arc<IF>,
    pub(crate) add: Arc<AF>,
    pub(crate) out: Arc<OF>,
    pub(crate) state: FxHashMap<K, A>,
    /// Accumulators as of the checkpoint time, for the keys a later value has changed since
    /// (`None`: the key was not there).
    pub(crate) before: FxHashMap<K, Option<A>>,
    /// Whether anything consumes the output (known at the first value).
    pub(crate) emit: Option<bool>,
    pub(crate) _types: PhantomData<fn(T, V) -> O>,
}

impl<T, K, V, A, O, SF, IF, AF, OF> KeyedFold<T, K, V, A, O, SF, IF, AF, OF> {
    pub(crate) fn new(split: Arc<SF>, init: Arc<IF>, add: Arc<AF>, out: Arc<OF>) -> Self {
        KeyedFold {
            split,
            init,
            add,
            out,
            state: FxHashMap::default(),
            before: FxHashMap::default(),
            emit: None,
            _types: PhantomData,
        }
    }
}

impl<T, K, V, A, O, SF, IF, AF, OF> Operator<T> for KeyedFold<T, K, V, A, O, SF, IF, AF, OF>
where
    T: 'static,
    K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + 'static,
    V: Clone + 'static,
    A: Clone + Serialize + DeserializeOwned + Send + 'static,
    O: 'static,
    SF: Fn(T) -> (K, V) + Send + Sync + 'static,
    IF: Fn() -> A + Send + Sync + 'static,
    AF: Fn(&mut A, V) + Send + Sync + 'static,
    OF: Fn(&K, &A) -> O + Send + Sync + 'static,
{
    type Out = O;

    #[inline]
    fn process(&mut self, cx: &mut Cx<'_, '_>, value: T, time: Timestamp, out: &mut dyn Collector<O>) -> TaskResult {
        let (key, v) = (self.split)(value);
        if time >= cx.checkpoint {
            // A value after the checkpoint time: keep the key's accumulator as it was for the
            // checkpoint, unless that is kept already.
            if !self.before.contains_key(&key) {
                self.before.insert(key.clone(), self.state.get(&key).cloned());
            }
        } else if !self.before.is_empty()
            && let Some(kept) = self.before.get_mut(&key)
        {
            // A value before the checkpoint time, for a key already changed by a later one: it
            // counts in the kept accumulator too.
            (self.add)(kept.get_or_insert_with(|| (self.init)()), v.clone());
        }
        let emit = *self.emit.get_or_insert_with(|| !out.discards());
        if emit {
            let acc = self.state.entry(key.clone()).or_insert_with(|| (self.init)());
            (self.add)(acc, v);
            let o = (self.out)(&key, acc);
            out.collect(cx, o, time)
        } else {
            let acc = self.state.entry(key).or_insert_with(|| (self.init)());
            (self.add)(acc, v);
            Ok(())
        }
    }

    fn control(&mut self, _cx: &mut Cx<'_, '_>, event: &mut Control<'_>, _out: &mut dyn Collector<O>) -> TaskResult {
        match event {
            Control::Restore(restore) => self.restore(restore)?,
            Control::Snapshot(parts) => parts.push(self.snapshot()?),
            Control::Advance => self.before.clear(),
            _ => {}
        }
        Ok(())
    }
}

impl<T, K, V, A, O, SF, IF, AF, OF> KeyedFold<T, K, V, A, O, SF, IF, AF, OF>
where
    K: Hash + Eq + Clone + Serialize + DeserializeOwned,
    A: Clone + Serialize + DeserializeOwned,
{
    /// The state as of the checkpoint time.
    fn snapshot(&self) -> Result<Vec<u8>, TaskError> {
        let mut entries: Vec<(&K, &A)> = Vec::with_capacity(self.state.len());
        for (k, a) in &self.state {
            match self.before.get(k) {
                Some(Some(kept)) => entries.push((k, kept)),
                Some(None) => {}
                None => entries.push((k, a)),
            }
        }
        postcard::to_allocvec(&entries).map_err(|e| TaskError::msg(format!("encoding a keyed state: {e}")))
    }

    fn restore(&mut self, restore: &mut Restore) -> TaskResult {
        let split = restore.split;
        for part in restore.take() {
            let entries: Vec<(K, A)> = postcard::from_bytes(part)
                .map_err(|e| TaskError::msg(format!("a keyed state in the checkpoint does not decode: {e}")))?;
            for (k, a) in entries {
                let mine = split.is_none_or(|(index, parts)| {
                    gearpump_core::serde_hash(&k) % u64::from(parts.max(1)) == u64::from(index)
                });
                if mine {
                    self.state.insert(k, a);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Link;
    use crate::testing::{Record, with_cx};
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    proptest! {
        /// The checkpoint at `tc` holds exactly the values stamped before `tc`, whatever order
        /// they arrived in.
        #[test]
        fn a_checkpoint_holds_the_values_before_its_time(
            values in prop::collection::vec((0u8..5, 0i64..100, 1u64..1000), 0..200),
            tc in 0i64..100,
        ) {
            let seen: Arc<Mutex<Vec<((u8, u64), Timestamp)>>> = Arc::default();
            let op = KeyedFold::new(
                Arc::new(|v: (u8, u64)| (v.0, v.1)),
                Arc::new(|| 0u64),
                Arc::new(|s: &mut u64, v: u64| *s += v),
                Arc::new(|k: &u8, s: &u64| (*k, *s)),
            );
            let mut link: Link<(u8, u64), _> = Link::new(op, Box::new(Record(seen)));
            let mut parts = Vec::new();
            with_cx(Timestamp(tc), |cx| {
                for &(k, t, v) in &values {
                    link.collect(cx, (k, v), Timestamp(t)).unwrap();
                }
                link.control(cx, &mut Control::Snapshot(&mut parts)).unwrap();
            });
            let saved: BTreeMap<u8, u64> = postcard::from_bytes::<Vec<(u8, u64)>>(&parts[0]).unwrap().into_iter().collect();
            let mut expected = BTreeMap::new();
            for &(k, t, v) in &values {
                if t < tc {
                    *expected.entry(k).or_insert(0) += v;
                }
            }
            prop_assert_eq!(saved, expected);
        }
    }
}
