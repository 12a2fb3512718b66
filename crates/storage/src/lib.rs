//! # gearpump-storage
//!
//! One storage abstraction for what Gearpump keeps in files: uploaded application binaries and
//! task checkpoints. A [`BlobStore`] holds named blobs; a blob is written whole and atomically
//! (to a temporary name, synced, renamed), so a reader sees either the old blob or the new one,
//! never half of one. A [`CheckpointStore`] keeps each stateful task's state by time on a blob
//! store, every checkpoint with a checksum: a torn or corrupt file is an error naming it, never
//! silently wrong state. An [`OffsetStore`] maps a replayable source's times to positions in
//! its input.
//!
//! The file connectors use [`Files`] instead: files of any size under a root URL on the same
//! stores, listed, read by range, written in pieces, renamed.
//!
//! [`open`] picks the backend from a root path: a plain path (or `file://`) is a local directory,
//! the default; `s3://`, `hdfs://`, `webhdfs://` and `memory://` go through OpenDAL
//! ([`OpenDalStore`]).
//! Any other scheme is refused with an error naming it. [`join`] makes a store's sub-path, so
//! each application keeps its checkpoints under a root of its own whatever the backend.
//!
//! ```
//! let dir = std::env::temp_dir().join(format!("gearpump-storage-doc-{}", std::process::id()));
//! let store = gearpump_storage::open(dir.to_str().unwrap()).unwrap();
//! store.put("greeting", &mut &b"hello"[..]).unwrap();
//! assert_eq!(store.read_at("greeting", 1, 3).unwrap(), (b"ell".to_vec(), false));
//! # std::fs::remove_dir_all(dir).unwrap();
//! ```

mod checkpoint;
pub mod files;
mod offsets;
mod remote;

pub use checkpoint::CheckpointStore;
pub use files::{FileInfo, FileWriter, Files};
pub use offsets::{OffsetStore, Position};
pub use remote::{OpenDalStore, SCHEMES};

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The root path names a backend this build does not have.
    #[error(
        "storage {root:?}: the {scheme}:// backend is not available; use a local directory, file://, s3://, hdfs://, webhdfs:// or memory://"
    )]
    UnsupportedScheme {
        /// The root path.
        root: String,
        /// Its scheme.
        scheme: String,
    },
    /// A root URL its backend cannot use (a missing bucket name, a bad option, …).
    #[error("storage {root:?}: {why}")]
    BadRoot {
        /// The root, without its query.
        root: String,
        /// What is wrong with it.
        why: String,
    },
    /// A blob name that could escape the store or is empty.
    #[error("bad blob name {0:?}")]
    BadName(String),
    /// No such blob.
    #[error("no blob {0:?}")]
    NotFound(String),
    /// A checkpoint that should exist does not.
    #[error("no checkpoint of task {task} at time {time} in {store}")]
    MissingCheckpoint {
        /// The task.
        task: gearpump_core::TaskId,
        /// The checkpoint time.
        time: i64,
        /// Where it was looked for.
        store: String,
    },
    /// A checkpoint whose bytes are not what was written: torn, truncated or altered.
    #[error("checkpoint {name} in {store} is corrupt: {why}")]
    CorruptCheckpoint {
        /// The blob.
        name: String,
        /// Where it is.
        store: String,
        /// What is wrong with it.
        why: String,
    },
    /// An offset store with a damaged record (not a torn last one).
    #[error("offset store {path} is corrupt: {why}")]
    CorruptOffsets {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The file system failed.
    #[error("storage I/O on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// Named blobs, written atomically and read by range.
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Stores everything `from` yields as blob `name`, replacing any blob of that name.
    /// Returns the size written.
    fn put(&self, name: &str, from: &mut dyn Read) -> Result<u64, StorageError>;
    /// Up to `max` bytes of blob `name` from `offset`, and whether they reach its end.
    fn read_at(&self, name: &str, offset: u64, max: usize) -> Result<(Vec<u8>, bool), StorageError>;
    /// Whether blob `name` exists.
    fn exists(&self, name: &str) -> bool;
    /// The names of every blob, sorted.
    fn list(&self) -> Result<Vec<String>, StorageError>;
    /// Deletes blob `name`; deleting a missing blob is not an error.
    fn delete(&self, name: &str) -> Result<(), StorageError>;
    /// Where the store is, for messages.
    fn describe(&self) -> String;
}

/// Opens the store at `root`: a local directory (created if missing) for a plain path or a
/// `file://` URL; an OpenDAL store for the [`SCHEMES`] it serves.
pub fn open(root: &str) -> Result<Arc<dyn BlobStore>, StorageError> {
    match root.split_once("://") {
        None => Ok(Arc::new(LocalDir::open(root)?)),
        Some(("file", path)) => Ok(Arc::new(LocalDir::open(path)?)),
        Some((scheme, _)) => Ok(Arc::new(OpenDalStore::open(root, scheme)?)),
    }
}

/// `url` as messages show it: without its query (where options and credentials go) and
/// without a password in its user info.
pub fn shown_url(url: &str) -> String {
    remote::shown(url)
}

/// The sub-path `child` of store root `root`, keeping a URL's query (its options) at the end:
/// `join("s3://b/ckpt?region=x", "app1")` is `s3://b/ckpt/app1?region=x`.
pub fn join(root: &str, child: &str) -> String {
    let (base, query) = root.split_once('?').map_or((root, None), |(b, q)| (b, Some(q)));
    let joined = format!("{}/{child}", base.trim_end_matches('/'));
    match query {
        Some(q) => format!("{joined}?{q}"),
        None => joined,
    }
}

/// Checks that `name` is a plain blob name: no path separators, no leading dot (temporary
/// files), at most 200 characters.
pub(crate) fn valid_name(name: &str) -> Result<(), StorageError> {
    let valid = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if valid { Ok(()) } else { Err(StorageError::BadName(name.into())) }
}

/// Blobs as files in a local directory.
#[derive(Debug)]
pub struct LocalDir {
    root: PathBuf,
    next_tmp: AtomicU64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io { path: path.to_path_buf(), source }
}

impl LocalDir {
    /// The directory `root`, created if missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(io(&root))?;
        Ok(LocalDir { root, next_tmp: AtomicU64::new(0) })
    }

    fn path(&self, name: &str) -> Result<PathBuf, StorageError> {
        valid_name(name).map(|()| self.root.join(name))
    }
}

impl BlobStore for LocalDir {
    fn put(&self, name: &str, from: &mut dyn Read) -> Result<u64, StorageError> {
        let path = self.path(name)?;
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp = self.root.join(format!(".tmp-{}-{n}-{name}", std::process::id()));
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            let len = std::io::copy(from, &mut f)?;
            f.flush()?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            Ok(len)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(io(&path))
    }

    fn read_at(&self, name: &str, offset: u64, max: usize) -> Result<(Vec<u8>, bool), StorageError> {
        let path = self.path(name)?;
        let mut f = std::fs::File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StorageError::NotFound(name.into()),
            _ => StorageError::Io { path: path.clone(), source: e },
        })?;
        let len = f.metadata().map_err(io(&path))?.len();
        let start = offset.min(len);
        f.seek(SeekFrom::Start(start)).map_err(io(&path))?;
        let mut bytes = Vec::with_capacity(max.min((len - start) as usize));
        f.take(max as u64).read_to_end(&mut bytes).map_err(io(&path))?;
        let last = start + bytes.len() as u64 >= len;
        Ok((bytes, last))
    }

    fn exists(&self, name: &str) -> bool {
        self.path(name).map(|p| p.is_file()).unwrap_or(false)
    }

    fn list(&self) -> Result<Vec<String>, StorageError> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.root).map_err(io(&self.root))? {
            let entry = entry.map_err(io(&self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Temporary files of writes in progress (or torn by a crash) are not blobs.
            if !name.starts_with('.') && entry.file_type().is_ok_and(|t| t.is_file()) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn delete(&self, name: &str) -> Result<(), StorageError> {
        let path = self.path(name)?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StorageError::Io { path, source: e }),
            _ => Ok(()),
        }
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str) -> (Arc<dyn BlobStore>, PathBuf) {
        let dir = std::env::temp_dir().join(format!("gearpump-storage-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (open(dir.to_str().unwrap()).unwrap(), dir)
    }

    #[test]
    fn put_replaces_atomically_and_reads_by_range() {
        let (s, dir) = store("put");
        assert_eq!(s.put("a", &mut &b"0123456789"[..]).unwrap(), 10);
        assert_eq!(s.read_at("a", 0, 4).unwrap(), (b"0123".to_vec(), false));
        assert_eq!(s.read_at("a", 8, 4).unwrap(), (b"89".to_vec(), true));
        assert_eq!(s.read_at("a", 99, 4).unwrap(), (Vec::new(), true));
        s.put("a", &mut &b"new"[..]).unwrap();
        assert_eq!(s.read_at("a", 0, 100).unwrap(), (b"new".to_vec(), true));
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a")]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A reader that fails half way: the old blob must survive.
    struct Broken(usize);
    impl Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("disk gone"));
            }
            self.0 -= 1;
            buf[0] = b'x';
            Ok(1)
        }
    }

    #[test]
    fn a_failed_write_leaves_the_old_blob() {
        let (s, dir) = store("fail");
        s.put("a", &mut &b"old"[..]).unwrap();
        assert!(s.put("a", &mut Broken(3)).is_err());
        assert_eq!(s.read_at("a", 0, 100).unwrap().0, b"old");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_names_and_schemes_are_refused() {
        let (s, dir) = store("names");
        for name in ["", "../x", "a/b", ".hidden", "/etc/passwd"] {
            assert!(matches!(s.read_at(name, 0, 1), Err(StorageError::BadName(_))), "{name:?}");
            assert!(!s.exists(name));
        }
        assert!(matches!(s.read_at("missing", 0, 1), Err(StorageError::NotFound(_))));
        let err = open("ftp://host/jars").unwrap_err();
        assert!(err.to_string().contains("ftp://"), "{err}");
        let err = open("s3:///no-bucket").unwrap_err();
        assert!(matches!(err, StorageError::BadRoot { .. }), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn join_keeps_the_query_last() {
        assert_eq!(join("/var/ckpt/", "app1"), "/var/ckpt/app1");
        assert_eq!(
            join("s3://b/ckpt?region=x&endpoint=http://h:9", "app1"),
            "s3://b/ckpt/app1?region=x&endpoint=http://h:9"
        );
    }

    #[test]
    fn memory_store_behaves_like_a_directory() {
        let s = open("memory:///blobs").unwrap();
        assert_eq!(s.put("a", &mut &b"0123456789"[..]).unwrap(), 10);
        s.put("b", &mut &b""[..]).unwrap();
        assert_eq!(s.read_at("a", 8, 4).unwrap(), (b"89".to_vec(), true));
        assert_eq!(s.read_at("a", 0, 4).unwrap(), (b"0123".to_vec(), false));
        assert_eq!(s.read_at("b", 0, 4).unwrap(), (Vec::new(), true));
        assert!(matches!(s.read_at("missing", 0, 1), Err(StorageError::NotFound(_))));
        assert!(matches!(s.put("../x", &mut &b""[..]), Err(StorageError::BadName(_))));
        assert_eq!(s.list().unwrap(), ["a", "b"]);
        s.delete("a").unwrap();
        s.delete("a").unwrap();
        assert!(!s.exists("a") && s.exists("b"));
    }
}
