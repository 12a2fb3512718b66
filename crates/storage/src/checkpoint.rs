//! Task checkpoints on a [`BlobStore`]: one blob per task and time, with a checksum.

use crate::{BlobStore, StorageError};
use gearpump_core::{TaskId, Timestamp};
use std::sync::Arc;

/// What every checkpoint blob starts with.
const MAGIC: &[u8; 4] = b"GPCK";
/// The format version after the magic.
const VERSION: u8 = 1;
/// Magic, version, CRC-32 of the state, state length.
const HEADER: usize = 4 + 1 + 4 + 8;

/// The checkpoints of one application's stateful tasks: the state of task `t` at time `T` is
/// the blob `task<p>_<i>-<T>`, written atomically, framed as
/// `GPCK | version | crc32(state) | len(state) | state`.
///
/// ```
/// use gearpump_core::{TaskId, Timestamp};
/// let dir = std::env::temp_dir().join(format!("gearpump-ckpt-doc-{}", std::process::id()));
/// let store = gearpump_storage::CheckpointStore::new(gearpump_storage::open(dir.to_str().unwrap()).unwrap());
/// let task = TaskId::new(1, 0);
/// store.put(task, Timestamp(1000), b"count=7").unwrap();
/// assert_eq!(store.get(task, Timestamp(1000)).unwrap(), b"count=7");
/// assert_eq!(store.times(task).unwrap(), vec![Timestamp(1000)]);
/// # std::fs::remove_dir_all(dir).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct CheckpointStore {
    blobs: Arc<dyn BlobStore>,
}

fn prefix(task: TaskId) -> String {
    format!("task{}_{}-", task.processor.0, task.index)
}

fn name(task: TaskId, time: Timestamp) -> String {
    // Times are written so that names sort by time (negative times never checkpoint).
    format!("{}{:020}", prefix(task), time.0.max(0))
}

impl CheckpointStore {
    /// Checkpoints kept in `blobs`.
    pub fn new(blobs: Arc<dyn BlobStore>) -> Self {
        CheckpointStore { blobs }
    }

    /// Where the checkpoints are, for messages.
    pub fn describe(&self) -> String {
        self.blobs.describe()
    }

    /// Persists `state` as the state of `task` at `time`, replacing any checkpoint there.
    pub fn put(&self, task: TaskId, time: Timestamp, state: &[u8]) -> Result<(), StorageError> {
        let mut framed = Vec::with_capacity(HEADER + state.len());
        framed.extend_from_slice(MAGIC);
        framed.push(VERSION);
        framed.extend_from_slice(&crc32fast::hash(state).to_le_bytes());
        framed.extend_from_slice(&(state.len() as u64).to_le_bytes());
        framed.extend_from_slice(state);
        self.blobs.put(&name(task, time), &mut framed.as_slice()).map(|_| ())
    }

    /// The state of `task` at `time`, its checksum verified.
    pub fn get(&self, task: TaskId, time: Timestamp) -> Result<Vec<u8>, StorageError> {
        let blob = name(task, time);
        let mut bytes = Vec::new();
        let mut offset = 0;
        loop {
            let (chunk, last) = self.blobs.read_at(&blob, offset, 4 << 20).map_err(|e| match e {
                StorageError::NotFound(_) => {
                    StorageError::MissingCheckpoint { task, time: time.0, store: self.describe() }
                }
                e => e,
            })?;
            offset += chunk.len() as u64;
            bytes.extend_from_slice(&chunk);
            if last {
                break;
            }
        }
        let corrupt = |why: String| StorageError::CorruptCheckpoint { name: blob.clone(), store: self.describe(), why };
        if bytes.len() < HEADER || &bytes[..4] != MAGIC {
            return Err(corrupt(format!("{} bytes, not a checkpoint (no GPCK header)", bytes.len())));
        }
        if bytes[4] != VERSION {
            return Err(corrupt(format!("format version {} (this build reads {VERSION})", bytes[4])));
        }
        let crc = u32::from_le_bytes(bytes[5..9].try_into().expect("4 bytes"));
        let len = u64::from_le_bytes(bytes[9..17].try_into().expect("8 bytes"));
        let state = &bytes[HEADER..];
        if state.len() as u64 != len {
            return Err(corrupt(format!("{} bytes of state where the header says {len} (torn?)", state.len())));
        }
        let actual = crc32fast::hash(state);
        if actual != crc {
            return Err(corrupt(format!("checksum {actual:08x} where {crc:08x} was written")));
        }
        Ok(state.to_vec())
    }

    /// The times `task` has checkpoints at, ascending.
    pub fn times(&self, task: TaskId) -> Result<Vec<Timestamp>, StorageError> {
        let prefix = prefix(task);
        let mut times: Vec<Timestamp> =
            self.blobs.list()?.iter().filter_map(|n| n.strip_prefix(&prefix)?.parse().ok().map(Timestamp)).collect();
        times.sort();
        Ok(times)
    }

    /// Deletes the checkpoints of `task` older than `time` (they can no longer be a start
    /// clock).
    pub fn prune(&self, task: TaskId, time: Timestamp) -> Result<(), StorageError> {
        for t in self.times(task)?.into_iter().filter(|t| *t < time) {
            self.blobs.delete(&name(task, t))?;
        }
        Ok(())
    }

    /// Deletes every checkpoint (a new application with a reused id starts clean).
    pub fn clear(&self) -> Result<(), StorageError> {
        for n in self.blobs.list()?.iter().filter(|n| n.starts_with("task")) {
            self.blobs.delete(n)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn store(name: &str) -> (CheckpointStore, PathBuf) {
        let dir = std::env::temp_dir().join(format!("gearpump-ckpt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (CheckpointStore::new(crate::open(dir.to_str().unwrap()).unwrap()), dir)
    }

    const T: TaskId = TaskId::new(2, 1);

    #[test]
    fn checkpoints_round_trip_list_by_time_and_prune() {
        let (s, dir) = store("roundtrip");
        for t in [3000, 1000, 20_000] {
            s.put(T, Timestamp(t), format!("state at {t}").as_bytes()).unwrap();
        }
        s.put(TaskId::new(2, 10), Timestamp(5), b"other task").unwrap();
        assert_eq!(s.times(T).unwrap(), vec![Timestamp(1000), Timestamp(3000), Timestamp(20_000)]);
        assert_eq!(s.get(T, Timestamp(3000)).unwrap(), b"state at 3000");
        s.put(T, Timestamp(3000), b"").unwrap();
        assert_eq!(s.get(T, Timestamp(3000)).unwrap(), b"", "an empty state is a state");
        s.prune(T, Timestamp(3000)).unwrap();
        assert_eq!(s.times(T).unwrap(), vec![Timestamp(3000), Timestamp(20_000)]);
        assert_eq!(s.times(TaskId::new(2, 10)).unwrap(), vec![Timestamp(5)]);
        s.clear().unwrap();
        assert!(s.times(T).unwrap().is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_missing_or_damaged_checkpoint_is_an_error_naming_it() {
        let (s, dir) = store("corrupt");
        let err = s.get(T, Timestamp(1000)).unwrap_err();
        assert!(matches!(err, StorageError::MissingCheckpoint { time: 1000, .. }), "{err}");
        assert!(err.to_string().contains("processorId=2, index=1"), "{err}");
        s.put(T, Timestamp(1000), b"0123456789").unwrap();
        let file = dir.join(name(T, Timestamp(1000)));
        let good = std::fs::read(&file).unwrap();
        // (how the file is damaged, what the error says)
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let mut version = good.clone();
        version[4] = 9;
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("torn", good[..good.len() - 3].to_vec(), "torn"),
            ("flipped bit", flipped, "checksum"),
            ("empty", Vec::new(), "no GPCK header"),
            ("foreign", b"{\"count\": 5}                 ".to_vec(), "no GPCK header"),
            ("version", version, "format version 9"),
        ];
        for (what, bytes, says) in cases {
            std::fs::write(&file, bytes).unwrap();
            let err = s.get(T, Timestamp(1000)).unwrap_err();
            assert!(matches!(err, StorageError::CorruptCheckpoint { .. }), "{what}: {err}");
            assert!(err.to_string().contains(says) && err.to_string().contains("task2_1-"), "{what}: {err}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
