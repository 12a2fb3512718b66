//! The artifact store: uploaded application binaries, kept in the storage abstraction
//! ([`gearpump_storage`]) at `gearpump.jarstore.rootpath`.
//!
//! An artifact's id is its SHA-256 and size ([`content_id`]), so uploading the same binary
//! twice stores it once, a client can ask whether the masters hold a binary before sending it,
//! and a worker can check what it fetched. An upload is staged in
//! a local file and then written to the store in one atomic put; a reader never sees half a
//! binary. Ids from the network are checked by the store before they touch a path.

use gearpump_storage::{BlobStore, StorageError};
use sha2::Digest;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The size of the chunks artifacts travel in.
pub const CHUNK: usize = 4 << 20;

/// The id of content: its SHA-256 and its length, as `<64 hex digits>-<length>`.
pub fn content_id(mut content: impl Read) -> std::io::Result<String> {
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = content.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    let hex: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{hex}-{len}"))
}

/// Uploaded application binaries.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    blobs: Arc<dyn BlobStore>,
    staging: PathBuf,
}

impl ArtifactStore {
    /// The store at `root` (a local directory by default; see [`gearpump_storage::open`]).
    pub fn open(root: &str) -> Result<Self, StorageError> {
        let blobs = gearpump_storage::open(root)?;
        let staging = std::env::temp_dir().join(format!("gearpump-uploads-{}", std::process::id()));
        std::fs::create_dir_all(&staging).map_err(|source| StorageError::Io { path: staging.clone(), source })?;
        Ok(ArtifactStore { blobs, staging })
    }

    /// Where the store is.
    pub fn describe(&self) -> String {
        self.blobs.describe()
    }

    fn upload_path(&self, upload: u64) -> PathBuf {
        self.staging.join(format!("upload-{upload}"))
    }

    /// Appends a chunk to upload `upload`.
    pub fn append(&self, upload: u64, bytes: &[u8]) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(self.upload_path(upload))?;
        f.write_all(bytes)
    }

    /// Finishes upload `upload`: stores it under its content id, which it returns.
    pub fn finish(&self, upload: u64) -> Result<String, StorageError> {
        let tmp = self.upload_path(upload);
        let io = |source| StorageError::Io { path: tmp.clone(), source };
        let id = content_id(std::fs::File::open(&tmp).map_err(io)?).map_err(io)?;
        if !self.blobs.exists(&id) {
            self.blobs.put(&id, &mut std::fs::File::open(&tmp).map_err(io)?)?;
        }
        let _ = std::fs::remove_file(&tmp);
        Ok(id)
    }

    /// Drops an unfinished upload.
    pub fn abandon(&self, upload: u64) {
        let _ = std::fs::remove_file(self.upload_path(upload));
    }

    /// Whether artifact `id` is stored.
    pub fn contains(&self, id: &str) -> bool {
        self.blobs.exists(id)
    }

    /// Up to [`CHUNK`] bytes of artifact `id` from `offset`, and whether they reach its end.
    pub fn read(&self, id: &str, offset: u64) -> Result<(Vec<u8>, bool), StorageError> {
        self.blobs.read_at(id, offset, CHUNK)
    }
}

/// Whether the file at `path` is the artifact `id` (its content matches the id).
pub fn verify(path: &Path, id: &str) -> std::io::Result<bool> {
    Ok(content_id(std::fs::File::open(path)?)? == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_store_and_read_back_in_chunks() {
        let dir = std::env::temp_dir().join(format!("gear-artifacts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = ArtifactStore::open(dir.to_str().unwrap()).unwrap();
        let data: Vec<u8> = (0..(CHUNK + 123)).map(|i| (i % 251) as u8).collect();
        store.append(1, &data[..1000]).unwrap();
        store.append(1, &data[1000..]).unwrap();
        let id = store.finish(1).unwrap();
        assert!(store.contains(&id));
        assert_eq!(id, content_id(&data[..]).unwrap());
        // The same content gets the same id.
        store.append(2, &data).unwrap();
        assert_eq!(store.finish(2).unwrap(), id);
        let (first, last) = store.read(&id, 0).unwrap();
        assert_eq!((first.len(), last), (CHUNK, false));
        let (rest, last) = store.read(&id, CHUNK as u64).unwrap();
        assert_eq!((rest.len(), last), (123, true));
        assert_eq!([first, rest].concat(), data);
        // Ids from the network never escape the store.
        assert!(store.read("../../etc/passwd", 0).is_err());
        assert!(!store.contains("/etc/passwd"));
        // A fetched copy is checked against its id.
        let copy = dir.join("copy");
        std::fs::write(&copy, &data).unwrap();
        assert!(verify(&copy, &id).unwrap());
        std::fs::write(&copy, &data[1..]).unwrap();
        assert!(!verify(&copy, &id).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
