//! The offset↔timestamp store of a replayable source: which position of its input holds which
//! time, so that a replay from a time seeks close to it instead of reading from the beginning.

use crate::StorageError;
use gearpump_core::Timestamp;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Time (8 bytes), offset (8), line or record number (8), CRC-32 of those (4).
const RECORD: usize = 28;

/// Where in its input a source was at a time: byte `offset`, record `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// The byte offset.
    pub offset: u64,
    /// The record (line) number at that offset.
    pub index: u64,
}

/// A sparse, append-only map from timestamps to positions, in one local file of fixed-size
/// checksummed records. A torn last record (a crash while appending) is dropped on open; a
/// damaged record elsewhere is an error naming the file.
///
/// ```
/// use gearpump_core::Timestamp;
/// use gearpump_storage::{OffsetStore, Position};
/// let path = std::env::temp_dir().join(format!("gearpump-offsets-doc-{}", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// let mut store = OffsetStore::open(&path).unwrap();
/// store.record(Timestamp(1000), Position { offset: 5_000, index: 100 }).unwrap();
/// store.record(Timestamp(2000), Position { offset: 9_000, index: 200 }).unwrap();
/// let again = OffsetStore::open(&path).unwrap();
/// assert_eq!(again.seek(Timestamp(1999)), Some((Timestamp(1000), Position { offset: 5_000, index: 100 })));
/// assert_eq!(again.seek(Timestamp(999)), None);
/// # std::fs::remove_file(&path).unwrap();
/// ```
#[derive(Debug)]
pub struct OffsetStore {
    path: PathBuf,
    entries: BTreeMap<Timestamp, Position>,
}

impl OffsetStore {
    /// Opens (or creates) the store in `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| StorageError::Io { path: path.clone(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        let whole = bytes.len() / RECORD * RECORD;
        let mut entries = BTreeMap::new();
        for (i, r) in bytes[..whole].chunks(RECORD).enumerate() {
            let word = |k: usize| u64::from_le_bytes(r[k * 8..k * 8 + 8].try_into().expect("8 bytes"));
            let crc = u32::from_le_bytes(r[24..28].try_into().expect("4 bytes"));
            if crc32fast::hash(&r[..24]) != crc {
                return Err(StorageError::CorruptOffsets { path, why: format!("record {i} fails its checksum") });
            }
            entries.insert(Timestamp(word(0) as i64), Position { offset: word(1), index: word(2) });
        }
        if whole < bytes.len() {
            // A torn append: cut it off so the next one lands on a record boundary.
            let f = std::fs::OpenOptions::new().write(true).open(&path).map_err(io)?;
            f.set_len(whole as u64).map_err(io)?;
        }
        Ok(OffsetStore { path, entries })
    }

    /// Records that the input is at `position` at time `time`. Times must grow; an older or
    /// equal one is ignored.
    pub fn record(&mut self, time: Timestamp, position: Position) -> Result<(), StorageError> {
        if self.entries.last_key_value().is_some_and(|(t, _)| *t >= time) {
            return Ok(());
        }
        let mut r = Vec::with_capacity(RECORD);
        r.extend_from_slice(&(time.0 as u64).to_le_bytes());
        r.extend_from_slice(&position.offset.to_le_bytes());
        r.extend_from_slice(&position.index.to_le_bytes());
        r.extend_from_slice(&crc32fast::hash(&r).to_le_bytes());
        let io = |source| StorageError::Io { path: self.path.clone(), source };
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path).map_err(io)?;
        f.write_all(&r).map_err(io)?;
        self.entries.insert(time, position);
        Ok(())
    }

    /// The latest recorded time at or before `time`, and the position there.
    pub fn seek(&self, time: Timestamp) -> Option<(Timestamp, Position)> {
        self.entries.range(..=time).next_back().map(|(t, p)| (*t, *p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_tail_is_dropped_and_a_damaged_record_is_named() {
        let path = std::env::temp_dir().join(format!("gearpump-offsets-torn-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut s = OffsetStore::open(&path).unwrap();
        for i in 1..=3 {
            s.record(Timestamp(i * 10), Position { offset: i as u64 * 100, index: i as u64 }).unwrap();
        }
        s.record(Timestamp(20), Position { offset: 1, index: 1 }).unwrap(); // older: ignored
        // A crash half way through a fourth append.
        let mut bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 3 * RECORD);
        std::fs::write(&path, [&bytes[..], &bytes[..10]].concat()).unwrap();
        let mut s = OffsetStore::open(&path).unwrap();
        assert_eq!(s.seek(Timestamp(25)), Some((Timestamp(20), Position { offset: 200, index: 2 })));
        s.record(Timestamp(40), Position { offset: 400, index: 4 }).unwrap();
        assert_eq!(OffsetStore::open(&path).unwrap().seek(Timestamp(99)).unwrap().0, Timestamp(40));
        // A flipped bit in the middle is not silently skipped.
        bytes = std::fs::read(&path).unwrap();
        bytes[RECORD + 9] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = OffsetStore::open(&path).unwrap_err().to_string();
        assert!(err.contains("record 1") && err.contains("gearpump-offsets-torn"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }
}
