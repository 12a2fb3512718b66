//! HDFS on a real cluster (Hadoop's MiniDFSCluster, started by the test): the jar store and
//! the checkpoint store on HDFS, and the exactly-once file sink into HDFS while executors are
//! SIGKILLed; Hadoop's own SequenceFile reader then finds every record exactly once.

mod common;

#[path = "../../../tools/hadoop/hdfs.rs"]
mod hdfs;

use common::chaos::{Victim, chaos};
use common::cluster::Cluster;
use common::example;
use gearpump_storage::Files;

const N: u64 = 1_000_000;

/// A master and two workers whose jar store is on HDFS.
fn cluster(name: &str, h: &hdfs::Hdfs) -> Cluster {
    let conf =
        format!("gearpump.worker.slots = 8\ngearpump.jarstore.rootpath = \"{}\"\n", h.url(&format!("{name}/jars")));
    Cluster::start_with(name, &conf)
}

/// Hadoop's reading of fsio's output (`key<TAB>value` lines) holds each record `(k, "record
/// k")`, `k` in `0..n`, exactly once.
fn assert_each_record_once(text: &str, n: u64) {
    let mut seen = vec![0u8; n as usize];
    for line in text.lines() {
        let (key, value) = line.split_once('\t').unwrap_or_else(|| panic!("a bad line {line:?}"));
        let k: usize = key.parse().unwrap();
        assert_eq!(value, format!("record {k}"));
        seen[k] += 1;
    }
    let wrong: Vec<(usize, u8)> =
        seen.iter().enumerate().filter(|(_, c)| **c != 1).map(|(k, c)| (k, *c)).take(10).collect();
    assert!(wrong.is_empty(), "records not seen exactly once (the first ten, with their counts): {wrong:?}");
}

#[test]
fn fsio_writes_each_record_exactly_once_into_hdfs_across_three_executor_kills() {
    let h = hdfs::shared();
    // 1,000,000 numbered records in two SequenceFiles, written by Hadoop (block-compressed).
    let input = h.url("fsio/in");
    hdfs::hadoop_write_from(&format!("{input}/a.seq"), 0, N / 2, "BLOCK");
    hdfs::hadoop_write_from(&format!("{input}/b.seq"), N / 2, N / 2, "RECORD");
    let output = h.url("fsio/out");
    let mut c = cluster("hdfs-fsio", h);
    let bin = example("fsio");
    let args = [
        "app",
        "-executors",
        "2",
        "-jar",
        bin.to_str().unwrap(),
        "-input",
        &input,
        "-output",
        &output,
        "-source",
        "2",
        "-sink",
        "2",
        "-pace",
        "40000",
        "-rollTime",
        "50000",
        "-compression",
        "record",
        "-checkpointDir",
        &h.url("fsio/checkpoints"),
    ];
    let submitted = c.run(&args);
    assert!(submitted.status.success(), "gear app: {}", String::from_utf8_lossy(&submitted.stderr));
    c.wait_status(1, "active");
    let start_clocks = chaos(&mut c, &[Victim::Executor; 3]);
    assert_eq!(start_clocks.len(), 3, "every kill happened while the application ran");
    let info = c.wait_status(1, "succeeded");
    assert!(info.error.is_none(), "{info:?}");
    // Hadoop's reader over the visible files: each record exactly once.
    let text = hdfs::hadoop_text(&output);
    assert_each_record_once(&text, N);
    assert_eq!(text.lines().count() as u64, N);
    // Committed files are all part files; nothing is left in progress.
    let files = Files::open(&output).unwrap();
    let names: Vec<String> = files.list("").unwrap().into_iter().map(|f| f.path).collect();
    assert!(names.iter().all(|n| n.starts_with("part-1-") || n.starts_with("_committed-1-")), "{names:?}");
}

#[test]
fn a_checkpointed_count_with_its_checkpoints_and_jars_on_hdfs_is_exact_after_an_executor_kill() {
    let h = hdfs::shared();
    let mut c = cluster("hdfs-count", h);
    let out = c.dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let bin = example("message_count");
    let n = N.to_string();
    let checkpoints = h.url("count/checkpoints");
    let args = [
        "app",
        "-executors",
        "2",
        "-jar",
        bin.to_str().unwrap(),
        "-messages",
        &n,
        "-pace",
        "80000",
        "-countTask",
        "2",
        "-checkpointDir",
        &checkpoints,
        "-output",
        out.to_str().unwrap(),
    ];
    let submitted = c.run(&args);
    assert!(submitted.status.success(), "gear app: {}", String::from_utf8_lossy(&submitted.stderr));
    c.wait_status(1, "active");
    let start_clocks = chaos(&mut c, &[Victim::Executor]);
    assert!(start_clocks.iter().all(|t| *t > 0), "the recovery restored state checkpointed on HDFS: {start_clocks:?}");
    let info = c.wait_status(1, "succeeded");
    assert!(info.error.is_none(), "{info:?}");
    let (mut count, mut sum) = (0u64, 0u64);
    for i in 0..2 {
        let text = std::fs::read_to_string(out.join(format!("count-{i}.txt"))).unwrap();
        let (c, s) = text.trim().split_once(' ').unwrap();
        count += c.parse::<u64>().unwrap();
        sum += s.parse::<u64>().unwrap();
    }
    assert_eq!((count, sum), (N, N * (N + 1) / 2), "each message counted exactly once");
    // The application's binary and its checkpoints are on HDFS.
    let jars = Files::open(&h.url("hdfs-count/jars")).unwrap().list("").unwrap();
    assert!(!jars.is_empty(), "the jar store on HDFS holds the application binary");
    let ckpt = Files::open(&checkpoints).unwrap().list("").unwrap();
    assert!(ckpt.iter().any(|f| f.path.starts_with("app1")), "{ckpt:?}");
}

#[test]
fn fsio_survives_a_namenode_restart_mid_run_with_each_record_once() {
    // An HDFS of its own: the restart must not disturb the other tests' HDFS.
    let dir = std::env::temp_dir().join(format!("gearpump-hdfs-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let h = hdfs::start(&dir);
    let n = 400_000u64;
    let input = h.url("in");
    hdfs::hadoop_write_from(&format!("{input}/a.seq"), 0, n, "NONE");
    let output = h.url("out");
    let c = Cluster::start_with("hdfs-restart", "gearpump.worker.slots = 8\n");
    let bin = example("fsio");
    let args = [
        "app",
        "-executors",
        "2",
        "-jar",
        bin.to_str().unwrap(),
        "-input",
        &input,
        "-output",
        &output,
        "-sink",
        "2",
        "-pace",
        "40000",
        "-rollTime",
        "20000",
        "-checkpointDir",
        &h.url("checkpoints"),
    ];
    let submitted = c.run(&args);
    assert!(submitted.status.success(), "gear app: {}", String::from_utf8_lossy(&submitted.stderr));
    c.wait_status(1, "active");
    // Some parts are committed, then the NameNode goes away and comes back.
    common::wait_until("a first part file is committed", || {
        Files::open(&output).and_then(|f| f.list("")).is_ok_and(|l| l.iter().any(|f| f.path.starts_with("part-")))
    });
    h.restart_namenode();
    let info = c.wait_status(1, "succeeded");
    assert!(info.error.is_none(), "{info:?}");
    assert_each_record_once(&hdfs::hadoop_text(&output), n);
    let _ = std::process::Command::new("kill").arg(h.pid.to_string()).status();
}
