//! The stores against a real HDFS (Hadoop's MiniDFSCluster, started by the test): blobs (the
//! jar store), checkpoints and files, through `hdfs://` (native RPC) and `webhdfs://`, and a
//! NameNode restart in between.

#[path = "../../../tools/hadoop/hdfs.rs"]
mod hdfs;

use gearpump_core::{TaskId, Timestamp};
use gearpump_storage::{CheckpointStore, Files, StorageError};

fn blobs_and_checkpoints(root: &str) {
    let blobs = gearpump_storage::open(root).unwrap();
    assert_eq!(blobs.put("app-1.bin", &mut &b"0123456789"[..]).unwrap(), 10);
    assert_eq!(blobs.read_at("app-1.bin", 2, 3).unwrap(), (b"234".to_vec(), false));
    assert_eq!(blobs.read_at("app-1.bin", 8, 30).unwrap(), (b"89".to_vec(), true));
    blobs.put("app-1.bin", &mut &b"replaced"[..]).unwrap();
    assert_eq!(blobs.read_at("app-1.bin", 0, 100).unwrap().0, b"replaced");
    assert!(matches!(blobs.read_at("missing", 0, 1), Err(StorageError::NotFound(_))));
    assert_eq!(blobs.list().unwrap(), ["app-1.bin"]);
    let store = CheckpointStore::new(gearpump_storage::open(&gearpump_storage::join(root, "app1")).unwrap());
    let task = TaskId::new(1, 0);
    store.put(task, Timestamp(1000), b"state at 1000").unwrap();
    store.put(task, Timestamp(2000), b"state at 2000").unwrap();
    assert_eq!(store.times(task).unwrap(), [Timestamp(1000), Timestamp(2000)]);
    assert_eq!(store.get(task, Timestamp(2000)).unwrap(), b"state at 2000");
    store.prune(task, Timestamp(2000)).unwrap();
    assert_eq!(store.times(task).unwrap(), [Timestamp(2000)]);
    blobs.delete("app-1.bin").unwrap();
    assert!(!blobs.exists("app-1.bin"));
}

fn files(root: &str, rename: bool) {
    let files = Files::open(root).unwrap();
    assert_eq!(files.can_rename(), rename);
    let name = if rename { "out/.part-0.inprogress" } else { "out/part-0" };
    let mut w = files.create(name).unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..3 {
        w.write(chunk.clone()).unwrap();
    }
    assert_eq!(w.close().unwrap(), 3 << 20);
    if rename {
        files.rename(name, "out/part-0").unwrap();
    }
    let listed = files.list("out").unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((listed[0].path.as_str(), listed[0].size), ("out/part-0", 3 << 20));
    assert_eq!(files.read("out/part-0", (3 << 20) - 2, 3 << 20).unwrap(), b"xx");
    files.delete("out/part-0").unwrap();
    assert!(files.list("out").unwrap().is_empty());
}

#[test]
fn hdfs_and_webhdfs_serve_blobs_checkpoints_and_files_across_a_namenode_restart() {
    let h = hdfs::shared();
    blobs_and_checkpoints(&h.url("gearpump/native"));
    blobs_and_checkpoints(&h.web_url("gearpump/web"));
    files(&h.url("data/native"), true);
    files(&h.web_url("data/web"), false);
    // A client made before a NameNode restart goes on working after it.
    let store = gearpump_storage::open(&h.url("gearpump/restart")).unwrap();
    store.put("before", &mut &b"1"[..]).unwrap();
    h.restart_namenode();
    store.put("after", &mut &b"2"[..]).unwrap();
    assert_eq!(store.list().unwrap(), ["after", "before"]);
}

#[test]
fn a_store_that_is_down_is_named_without_credentials() {
    // Nothing listens on port 1. (The client retries like Hadoop's, for a minute by default.)
    let store = gearpump_storage::open("hdfs://127.0.0.1:1/jars?dfs.client.failover.max.attempts=1").unwrap();
    let err = store.put("a", &mut &b"x"[..]).unwrap_err().to_string();
    assert!(err.contains("hdfs://127.0.0.1:1/jars"), "{err}");
    let store = gearpump_storage::open("webhdfs://gear:hunter2@127.0.0.1:1/jars").unwrap();
    let err = store.put("a", &mut &b"x"[..]).unwrap_err().to_string();
    assert!(err.contains("127.0.0.1:1/jars") && !err.contains("hunter2"), "{err}");
}
