//! Running aggregations per key (`count`, `sum`, `min`, `max`, `reduce`, `fold`), with state
//! that is checkpointed exactly once (see [`KeyedState`]).

use crate::chain::{Collector, Control, Cx, Operator};
use crate::state::KeyedState;
use gearpump_api::TaskResult;
use gearpump_core::Timestamp;
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
    pub(crate) state: KeyedState<K, A>,
    /// Whether anything consumes the output (known at the first value).
    pub(crate) emit: Option<bool>,
    pub(crate) _types: PhantomData<fn(T, V) -> O>,
}

impl<T, K, V, A, O, SF, IF, AF, OF> KeyedFold<T, K, V, A, O, SF, IF, AF, OF> {
    pub(crate) fn new(split: Arc<SF>, init: Arc<IF>, add: Arc<AF>, out: Arc<OF>) -> Self {
        KeyedFold { split, init, add, out, state: KeyedState::default(), emit: None, _types: PhantomData }
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
        if let Some(kept) = self.state.before_change(&key, time, cx.checkpoint) {
            // A value before the checkpoint time, for a key a later one changed already: it
            // counts in the kept accumulator too.
            (self.add)(kept.get_or_insert_with(|| (self.init)()), v.clone());
        }
        let emit = *self.emit.get_or_insert_with(|| !out.discards());
        if emit {
            let acc = self.state.map.entry(key.clone()).or_insert_with(|| (self.init)());
            (self.add)(acc, v);
            let o = (self.out)(&key, acc);
            out.collect(cx, o, time)
        } else {
            let acc = self.state.map.entry(key).or_insert_with(|| (self.init)());
            (self.add)(acc, v);
            Ok(())
        }
    }

    fn control(&mut self, _cx: &mut Cx<'_, '_>, event: &mut Control<'_>, _out: &mut dyn Collector<O>) -> TaskResult {
        match event {
            Control::Restore(restore) => self.state.restore(restore)?,
            Control::Snapshot(parts) => parts.push(self.state.snapshot()?),
            Control::Advance => self.state.advance(),
            _ => {}
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
