//! Test helpers: one real HDFS per test binary (Hadoop's MiniDFSCluster, started with
//! `tools/hadoop/hadoop.sh`, stopped when the test binary ends), and Hadoop's own SequenceFile
//! reader and writer. Included by the test crates with `#[path]`.

#![allow(dead_code)] // Each test binary uses some of these.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// An HDFS started for this test binary.
pub struct Hdfs {
    /// `hdfs://127.0.0.1:<port>`.
    pub namenode: String,
    /// `127.0.0.1:<port>` of WebHDFS.
    pub webhdfs: String,
    /// The JVM's PID.
    pub pid: u32,
    /// Its directory.
    pub dir: PathBuf,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("tools/hadoop/hadoop.sh").exists())
        .unwrap()
        .join("tools/hadoop/hadoop.sh")
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new("bash").arg(script()).args(args).output().expect("running tools/hadoop/hadoop.sh")
}

/// Starts HDFS in `dir` that stops when this process ends.
pub fn start(dir: &std::path::Path) -> Hdfs {
    let out = run(&["hdfs", dir.to_str().unwrap(), "0", &std::process::id().to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "starting HDFS failed: {text} {}", String::from_utf8_lossy(&out.stderr));
    let line = text.lines().find(|l| l.starts_with("namenode=")).expect("the script names the NameNode");
    let (mut namenode, mut webhdfs, mut pid) = (String::new(), String::new(), 0);
    for part in line.split_whitespace() {
        if let Some(v) = part.strip_prefix("namenode=") {
            namenode = v.to_string();
        } else if let Some(v) = part.strip_prefix("webhdfs=") {
            webhdfs = v.to_string();
        } else if let Some(v) = part.strip_prefix("pid=") {
            pid = v.parse().unwrap();
        }
    }
    Hdfs { namenode, webhdfs, pid, dir: dir.to_path_buf() }
}

/// The HDFS shared by the tests of this binary.
pub fn shared() -> &'static Hdfs {
    static HDFS: OnceLock<Hdfs> = OnceLock::new();
    HDFS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("gearpump-hdfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        start(&dir)
    })
}

impl Hdfs {
    /// `hdfs://…/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.namenode, path.trim_start_matches('/'))
    }

    /// `webhdfs://…/<path>`.
    pub fn web_url(&self, path: &str) -> String {
        format!("webhdfs://{}/{}", self.webhdfs, path.trim_start_matches('/'))
    }

    /// Restarts the NameNode (the DataNode and the data stay); returns when it is back.
    pub fn restart_namenode(&self) {
        let out = run(&["restart-namenode", self.dir.to_str().unwrap()]);
        assert!(out.status.success(), "restarting the NameNode: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Every record of the SequenceFiles at `uri` (a file, or a directory's visible files), as
/// Hadoop's own `SequenceFile.Reader` reads them: `key<TAB>value` lines.
pub fn hadoop_text(uri: &str) -> String {
    let out = run(&["text", uri]);
    assert!(out.status.success(), "Hadoop could not read {uri}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Writes `n` records `(LongWritable i, Text "record i")` to `uri` with Hadoop's own writer;
/// `compression`: `NONE`, `RECORD`, `BLOCK` or `RECORD:<codec class>`.
pub fn hadoop_write(uri: &str, n: u64, compression: &str) {
    hadoop_write_from(uri, 0, n, compression);
}

/// Writes records `(i, "record i")` for `i` in `start..start + n` to `uri` with Hadoop's own
/// writer.
pub fn hadoop_write_from(uri: &str, start: u64, n: u64, compression: &str) {
    let out = run(&["write", uri, &n.to_string(), compression, &start.to_string()]);
    assert!(out.status.success(), "Hadoop could not write {uri}: {}", String::from_utf8_lossy(&out.stderr));
}
