//! The artifact store: uploaded application binaries under `gearpump.jarstore.rootpath`.
//!
//! An artifact's id is its content hash and size, so uploading the same binary twice stores it
//! once. Every write goes to a temporary file that is fsynced and renamed into place; a reader
//! never sees half a binary. Ids from the network are checked before they touch a path.

use std::hash::Hasher;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The size of the chunks artifacts travel in.
pub const CHUNK: usize = 4 << 20;

/// Uploaded application binaries in a local directory.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
}

impl ArtifactStore {
    /// A store under `root`, created if missing.
    pub fn open(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(ArtifactStore { root })
    }

    /// Where the store is.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn upload_path(&self, upload: u64) -> PathBuf {
        self.root.join(format!(".upload-{}-{upload}", std::process::id()))
    }

    /// Appends a chunk to upload `upload`.
    pub fn append(&self, upload: u64, bytes: &[u8]) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(self.upload_path(upload))?;
        f.write_all(bytes)
    }

    /// Finishes upload `upload`; returns the artifact's id.
    pub fn finish(&self, upload: u64) -> std::io::Result<String> {
        let tmp = self.upload_path(upload);
        let mut f = std::fs::File::open(&tmp)?;
        let mut hasher = rustc_hash::FxHasher::default();
        let mut buf = vec![0; 1 << 20];
        let mut len = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.write(&buf[..n]);
            len += n as u64;
        }
        f.sync_all()?;
        let id = format!("{:016x}-{len}", hasher.finish());
        std::fs::rename(&tmp, self.root.join(&id))?;
        Ok(id)
    }

    /// Drops an unfinished upload.
    pub fn abandon(&self, upload: u64) {
        let _ = std::fs::remove_file(self.upload_path(upload));
    }

    fn path_of(&self, id: &str) -> std::io::Result<PathBuf> {
        let valid = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        if !valid {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad artifact id {id:?}")));
        }
        Ok(self.root.join(id))
    }

    /// Whether artifact `id` is stored.
    pub fn contains(&self, id: &str) -> bool {
        self.path_of(id).map(|p| p.is_file()).unwrap_or(false)
    }

    /// Up to [`CHUNK`] bytes of artifact `id` from `offset`, and whether they reach its end.
    pub fn read(&self, id: &str, offset: u64) -> std::io::Result<(Vec<u8>, bool)> {
        let mut f = std::fs::File::open(self.path_of(id)?)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(offset.min(len)))?;
        let mut bytes = Vec::with_capacity(CHUNK.min((len - offset.min(len)) as usize));
        f.take(CHUNK as u64).read_to_end(&mut bytes)?;
        let last = offset + bytes.len() as u64 >= len;
        Ok((bytes, last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_store_and_read_back_in_chunks() {
        let dir = std::env::temp_dir().join(format!("gear-artifacts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = ArtifactStore::open(&dir).unwrap();
        let data: Vec<u8> = (0..(CHUNK + 123)).map(|i| (i % 251) as u8).collect();
        store.append(1, &data[..1000]).unwrap();
        store.append(1, &data[1000..]).unwrap();
        let id = store.finish(1).unwrap();
        assert!(store.contains(&id));
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
        let _ = std::fs::remove_dir_all(&dir);
    }
}
