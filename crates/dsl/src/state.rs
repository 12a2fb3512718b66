//! State per key, checkpointed exactly once: what keyed aggregations and windows keep.
//!
//! A checkpoint at time Tc must hold the effect of the values stamped before Tc only, while
//! values stamped later may already have arrived. [`KeyedState`] keeps one map and, for the few
//! keys that a value stamped at or after Tc changed since the last checkpoint, a copy of their
//! state as it was for the values before Tc (copy on write). A checkpoint is the map with those
//! copies in place; afterwards the copies are dropped. In the common case (values in time order,
//! the checkpoint time ahead of them) a value costs one map update and nothing more.

use crate::chain::Restore;
use gearpump_api::{TaskError, TaskResult};
use gearpump_core::Timestamp;
use rustc_hash::FxHashMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::hash::Hash;

/// A map from key to state, with copies of state as of the checkpoint time.
pub(crate) struct KeyedState<K, V> {
    /// The current state of every key.
    pub(crate) map: FxHashMap<K, V>,
    /// States as of the checkpoint time, for the keys a later value changed since (`None`: the
    /// key had none).
    before: FxHashMap<K, Option<V>>,
}

impl<K, V> Default for KeyedState<K, V> {
    fn default() -> Self {
        KeyedState { map: FxHashMap::default(), before: FxHashMap::default() }
    }
}

impl<K, V> KeyedState<K, V>
where
    K: Hash + Eq + Clone + Serialize + DeserializeOwned,
    V: Clone + Serialize + DeserializeOwned,
{
    /// Call before a value stamped `time` changes `key`'s state, with the task's checkpoint
    /// time. A value at or after the checkpoint time keeps a copy of the key's state for the
    /// checkpoint first (once per checkpoint). A value before it returns the kept copy, if there
    /// is one, for the caller to apply the value to as well.
    #[inline]
    pub(crate) fn before_change(&mut self, key: &K, time: Timestamp, checkpoint: Timestamp) -> Option<&mut Option<V>> {
        if time >= checkpoint {
            if !self.before.contains_key(key) {
                self.before.insert(key.clone(), self.map.get(key).cloned());
            }
            None
        } else if self.before.is_empty() {
            None
        } else {
            self.before.get_mut(key)
        }
    }

    /// The state as of the checkpoint time, encoded.
    pub(crate) fn snapshot(&self) -> Result<Vec<u8>, TaskError> {
        let mut entries: Vec<(&K, &V)> = Vec::with_capacity(self.map.len());
        for (k, v) in &self.map {
            match self.before.get(k) {
                Some(Some(kept)) => entries.push((k, kept)),
                Some(None) => {}
                None => entries.push((k, v)),
            }
        }
        // Keys whose state was dropped (an evicted window) after a later value changed it.
        for (k, kept) in &self.before {
            if let Some(kept) = kept
                && !self.map.contains_key(k)
            {
                entries.push((k, kept));
            }
        }
        postcard::to_allocvec(&entries).map_err(|e| TaskError::msg(format!("encoding a keyed state: {e}")))
    }

    /// The checkpoint was saved: the copies are dropped.
    pub(crate) fn advance(&mut self) {
        self.before.clear();
    }

    /// Takes this operator's part of the restored state: all of it, or, after a rescale, the
    /// keys the key partitioner deals to this task.
    pub(crate) fn restore(&mut self, restore: &mut Restore) -> TaskResult {
        let split = restore.split;
        for part in restore.take() {
            let entries: Vec<(K, V)> = postcard::from_bytes(part)
                .map_err(|e| TaskError::msg(format!("a keyed state in the checkpoint does not decode: {e}")))?;
            for (k, v) in entries {
                let mine = split.is_none_or(|(index, parts)| {
                    gearpump_core::serde_hash(&k) % u64::from(parts.max(1)) == u64::from(index)
                });
                if mine {
                    self.map.insert(k, v);
                }
            }
        }
        Ok(())
    }
}
