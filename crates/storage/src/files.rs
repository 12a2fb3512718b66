//! Files on any store, for the file connectors: list a directory, read a range, write a file in
//! pieces, rename, delete. A [`Files`] is rooted at a URL; every path it takes is relative to
//! that root.
//!
//! | root | store |
//! |---|---|
//! | `/data/in`, `file:///data/in` | the local file system |
//! | `hdfs://namenode:8020/data/in` | HDFS, through its native RPC protocol (OpenDAL's `hdfs-native`: no JVM, no libhdfs) |
//! | `webhdfs://namenode:9870/data/in` | HDFS through its WebHDFS gateway |
//! | `s3://bucket/prefix?region=…&endpoint=…` | S3 and S3-compatible object stores |
//! | `memory:///` | memory (tests) |
//!
//! Errors name the URL of the file concerned, never the credentials in the root's query or
//! user info.

use crate::StorageError;
use crate::remote::{Driver, shown};
use opendal::{EntryMode, ErrorKind};
use std::path::PathBuf;
use std::sync::Arc;

/// A file found by [`Files::list`] or [`Files::stat`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// Its path under the root.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Whether it is a directory.
    pub dir: bool,
}

/// Files under a root URL (see the [module docs](self)). Cheap to clone: clones share one
/// connection and runtime.
#[derive(Clone)]
pub struct Files {
    driver: Arc<Driver>,
    rename: bool,
    /// Whether a file's directory must be made before the file (WebHDFS renames a finished
    /// file into place, which fails, silently, into a missing directory).
    make_dirs: bool,
    /// The smallest piece handed to the store (WebHDFS writes each piece as a file of its own,
    /// concatenated on close: a few large ones, not many small ones).
    piece: usize,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files").field("root", &self.driver.shown).finish()
    }
}

/// The scheme and the URL OpenDAL opens for `root`: local paths go to its `fs` service.
fn resolve(root: &str) -> Result<(String, String), StorageError> {
    match root.split_once("://") {
        None | Some(("file", _)) => {
            let path = root.strip_prefix("file://").unwrap_or(root);
            let abs =
                std::path::absolute(path).map_err(|source| StorageError::Io { path: PathBuf::from(path), source })?;
            std::fs::create_dir_all(&abs).map_err(|source| StorageError::Io { path: abs.clone(), source })?;
            Ok(("fs".into(), format!("fs://{}", abs.display())))
        }
        Some(("webhdfs", rest)) if !root.contains("atomic_write_dir=") => {
            // WebHDFS writes a file in pieces only through a directory of its own (appends to
            // a temporary file, renamed into place on close); keep it beside the root.
            let _ = rest;
            let sep = if root.contains('?') { '&' } else { '?' };
            Ok(("webhdfs".into(), format!("{root}{sep}atomic_write_dir=.gearpump-writes/")))
        }
        Some((scheme, _)) => Ok((scheme.to_string(), root.to_string())),
    }
}

impl Files {
    /// The files under `root` (see the [module docs](self) for the URLs served). A local root
    /// directory is created if missing.
    pub fn open(root: &str) -> Result<Self, StorageError> {
        let (scheme, url) = resolve(root)?;
        let mut driver = Driver::open(&url, &scheme)?;
        driver.shown = shown(root);
        let capability = driver.op.info().capability();
        let make_dirs = scheme == "webhdfs";
        let piece = if make_dirs { 32 << 20 } else { 0 };
        Ok(Files { driver: Arc::new(driver), rename: capability.rename, make_dirs, piece })
    }

    /// The root, without credentials.
    pub fn describe(&self) -> String {
        self.driver.shown.clone()
    }

    /// The URL of `path` under the root, without credentials, for messages.
    pub fn url_of(&self, path: &str) -> String {
        format!("{}/{}", self.driver.shown.trim_end_matches('/'), path.trim_start_matches('/'))
    }

    /// Whether the store renames files: HDFS through `hdfs://` and local disks do; object stores
    /// and WebHDFS (through OpenDAL) do not, and show a file only once it is closed.
    pub fn can_rename(&self) -> bool {
        self.rename
    }

    fn io(&self, path: &str, e: StorageError) -> StorageError {
        match e {
            StorageError::NotFound(_) => StorageError::NotFound(self.url_of(path)),
            other => other,
        }
    }

    /// What is at `path` (`""`: the root), or `None` if nothing is.
    pub fn stat(&self, path: &str) -> Result<Option<FileInfo>, StorageError> {
        let p = path.to_string();
        let found = self.driver.call(path, move |op| {
            let p = p.clone();
            async move {
                match op.stat(&p).await {
                    Ok(meta) => Ok(Some((meta.content_length(), meta.mode() == EntryMode::DIR))),
                    Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e),
                }
            }
        })?;
        Ok(found.map(|(size, dir)| FileInfo { path: path.to_string(), size, dir }))
    }

    /// The files directly in directory `dir` (`""`: the root), sorted by name; an absent
    /// directory has none.
    pub fn list(&self, dir: &str) -> Result<Vec<FileInfo>, StorageError> {
        let prefix = if dir.is_empty() || dir.ends_with('/') { dir.to_string() } else { format!("{dir}/") };
        let p = prefix.clone();
        let entries = self.driver.call(dir, move |op| {
            let p = p.clone();
            async move {
                match op.list(&p).await {
                    Ok(entries) => Ok(entries),
                    Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
                    Err(e) => Err(e),
                }
            }
        })?;
        let mut files: Vec<FileInfo> = entries
            .into_iter()
            .map(|e| FileInfo {
                path: e.path().trim_matches('/').to_string(),
                size: e.metadata().content_length(),
                dir: e.metadata().is_dir(),
            })
            .filter(|f| !f.path.is_empty() && f.path != prefix.trim_matches('/'))
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files.dedup_by(|a, b| a.path == b.path);
        Ok(files)
    }

    /// Bytes `start..end` of `path`; the range must lie within the file (see [`Files::stat`]).
    pub fn read(&self, path: &str, start: u64, end: u64) -> Result<Vec<u8>, StorageError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let p = path.to_string();
        self.driver
            .call(path, move |op| {
                let p = p.clone();
                async move { Ok(op.read_with(&p).range(start..end).await?.to_vec()) }
            })
            .map_err(|e| self.io(path, e))
    }

    /// The whole of `path`.
    pub fn read_all(&self, path: &str) -> Result<Vec<u8>, StorageError> {
        let p = path.to_string();
        self.driver
            .call(path, move |op| {
                let p = p.clone();
                async move { Ok(op.read(&p).await?.to_vec()) }
            })
            .map_err(|e| self.io(path, e))
    }

    /// Writes `bytes` as the whole of `path`, replacing it.
    pub fn write_all(&self, path: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        let (p, bytes) = (path.to_string(), opendal::Buffer::from(bytes));
        self.driver.call(path, move |op| {
            let (p, bytes) = (p.clone(), bytes.clone());
            async move { op.write(&p, bytes).await.map(|_| ()) }
        })
    }

    /// A new file `path` (replacing one of that name), written in pieces with
    /// [`FileWriter::write`]. On an object store nothing is visible until
    /// [`FileWriter::close`]; on HDFS and local disks the file is there, growing, as it is
    /// written.
    pub fn create(&self, path: &str) -> Result<FileWriter, StorageError> {
        let p = path.to_string();
        let parent = path.rsplit_once('/').map(|(dir, _)| format!("{dir}/")).filter(|_| self.make_dirs);
        let writer = self.driver.call(path, move |op| {
            let (p, parent) = (p.clone(), parent.clone());
            async move {
                if let Some(dir) = parent {
                    op.create_dir(&dir).await?;
                }
                op.writer(&p).await
            }
        })?;
        Ok(FileWriter {
            files: self.clone(),
            path: path.to_string(),
            writer: Some(writer),
            written: 0,
            pending: Vec::new(),
        })
    }

    /// Renames `from` to `to`, replacing `to` (see [`Files::can_rename`]).
    pub fn rename(&self, from: &str, to: &str) -> Result<(), StorageError> {
        let (f, t) = (from.to_string(), to.to_string());
        self.driver
            .call(from, move |op| {
                let (f, t) = (f.clone(), t.clone());
                async move {
                    if op.exists(&t).await? {
                        // A rename cut short by a turned-away call may have happened already.
                        if !op.exists(&f).await? {
                            return Ok(());
                        }
                        op.delete(&t).await?;
                    }
                    op.rename(&f, &t).await
                }
            })
            .map_err(|e| self.io(from, e))
    }

    /// Deletes file `path`; deleting a missing file is not an error.
    pub fn delete(&self, path: &str) -> Result<(), StorageError> {
        let p = path.to_string();
        let deleted = self.driver.call(path, move |op| {
            let p = p.clone();
            async move { op.delete(&p).await }
        });
        match deleted {
            Err(StorageError::NotFound(_)) => Ok(()),
            other => other,
        }
    }
}

/// A file being written (see [`Files::create`]).
pub struct FileWriter {
    files: Files,
    path: String,
    writer: Option<opendal::Writer>,
    written: u64,
    /// Bytes not yet handed to the store (see `Files::piece`).
    pending: Vec<u8>,
}

impl std::fmt::Debug for FileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWriter")
            .field("url", &self.files.url_of(&self.path))
            .field("written", &self.written)
            .finish()
    }
}

impl FileWriter {
    /// Appends `bytes`.
    pub fn write(&mut self, bytes: Vec<u8>) -> Result<(), StorageError> {
        let len = bytes.len() as u64;
        if self.files.piece == 0 {
            self.send(bytes)?;
        } else {
            self.pending.extend_from_slice(&bytes);
            if self.pending.len() >= self.files.piece {
                let piece = std::mem::take(&mut self.pending);
                self.send(piece)?;
            }
        }
        self.written += len;
        Ok(())
    }

    fn send(&mut self, bytes: Vec<u8>) -> Result<(), StorageError> {
        let mut writer = self.writer.take().ok_or_else(|| self.closed())?;
        let writer = self.files.driver.run(&self.path, async move {
            writer.write(bytes).await?;
            Ok(writer)
        })?;
        self.writer = Some(writer);
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Its path under the root.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn closed(&self) -> StorageError {
        StorageError::Io {
            path: PathBuf::from(self.files.url_of(&self.path)),
            source: std::io::Error::other("the file was closed"),
        }
    }

    /// Finishes the file: everything written is durable (and, on an object store, visible).
    pub fn close(mut self) -> Result<u64, StorageError> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.send(rest)?;
        }
        let mut writer = self.writer.take().ok_or_else(|| self.closed())?;
        self.files.driver.run(&self.path, async move { writer.close().await.map(|_| ()) })?;
        Ok(self.written)
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        // A writer dropped unclosed is abandoned: an object store's upload is aborted; an HDFS
        // or local file stays as far as it got (the sink deletes such files on recovery).
        if let Some(mut writer) = self.writer.take() {
            let _ = self.files.driver.run(&self.path, async move { writer.abort().await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(files: &Files) {
        let mut w = files.create("dir/a.txt").unwrap();
        w.write(b"hello ".to_vec()).unwrap();
        w.write(b"world".to_vec()).unwrap();
        assert_eq!(w.close().unwrap(), 11);
        files.write_all("dir/b.txt", b"bee".to_vec()).unwrap();
        assert_eq!(files.read("dir/a.txt", 6, 11).unwrap(), b"world");
        assert_eq!(files.read_all("dir/b.txt").unwrap(), b"bee");
        let names: Vec<_> = files.list("dir").unwrap().into_iter().map(|f| (f.path, f.size)).collect();
        assert_eq!(names, [("dir/a.txt".to_string(), 11), ("dir/b.txt".to_string(), 3)]);
        assert_eq!(files.stat("dir/a.txt").unwrap().map(|f| f.size), Some(11));
        assert_eq!(files.stat("dir/missing").unwrap(), None);
        assert!(files.list("nothing-here").unwrap().is_empty());
        if files.can_rename() {
            files.rename("dir/b.txt", "dir/a.txt").unwrap();
            assert_eq!(files.read_all("dir/a.txt").unwrap(), b"bee");
            assert_eq!(files.stat("dir/b.txt").unwrap(), None);
        }
        files.delete("dir/a.txt").unwrap();
        files.delete("dir/a.txt").unwrap();
        let err = files.read_all("dir/a.txt").unwrap_err().to_string();
        assert!(err.contains("dir/a.txt"), "{err}");
    }

    #[test]
    fn local_and_memory_files() {
        let dir = std::env::temp_dir().join(format!("gearpump-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let local = Files::open(dir.to_str().unwrap()).unwrap();
        assert!(local.can_rename());
        exercise(&local);
        exercise(&Files::open(&format!("file://{}/sub", dir.display())).unwrap());
        exercise(&Files::open("memory:///m").unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn credentials_stay_out_of_descriptions() {
        let files = Files::open("s3://user:secret@bucket/p?region=x&secret_access_key=hush").unwrap();
        assert!(!files.describe().contains("secret"), "{}", files.describe());
        assert!(!files.url_of("a").contains("hush"));
    }
}
