//! A finite WordCount gives exact counts for every parallelism and partitioner.

use gearpump::{AppStatus, ClusterConfig, EmbeddedCluster, Message, PartitionerSpec};
use gearpump_examples::wordcount::{self, CountSink, TEXT_TO_SPLIT, expected_counts};
use std::time::Duration;

const ROUNDS: u64 = 300;

fn run_wordcount(cluster: &EmbeddedCluster, split: u32, sum: u32, partitioner: PartitionerSpec) {
    let counts = CountSink::default();
    let label = format!("split {split}, sum {sum}, {}", partitioner.name());
    let app = wordcount::application(split, sum, partitioner, Some(ROUNDS), Some(counts.clone())).unwrap();
    let client = cluster.client();
    let id = client.submit(app).unwrap();
    let summary = client.wait(id, Duration::from_secs(120)).unwrap();
    assert_eq!(summary.status, AppStatus::Succeeded, "{label}: {summary:?}");
    let got = counts.lock().clone();
    assert_eq!(got, expected_counts(TEXT_TO_SPLIT, ROUNDS), "{label}");
    let stats = client.stats(id).unwrap();
    let words = TEXT_TO_SPLIT.split_whitespace().count() as u64 * ROUNDS;
    assert_eq!(stats.processors[0].sent, words, "{label}: Split sent");
    assert_eq!(stats.processors[1].received, words, "{label}: Sum received");
    assert_eq!(stats.min_clock, Some(gearpump::Timestamp::MAX), "{label}: min clock at the end");
}

#[test]
fn exact_counts_with_hash_partitioning_for_every_parallelism() {
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    for split in 1..=4 {
        for sum in 1..=4 {
            run_wordcount(&cluster, split, sum, PartitionerSpec::hash());
        }
    }
    cluster.shutdown();
}

#[test]
fn exact_counts_with_group_by_partitioning_for_every_parallelism() {
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    let by_first_letter =
        PartitionerSpec::group_by("first_letter", |m: &Message| m.get::<String>().and_then(|w| w.chars().next()));
    for split in 1..=4 {
        for sum in 1..=4 {
            run_wordcount(&cluster, split, sum, by_first_letter.clone());
        }
    }
    cluster.shutdown();
}

#[test]
fn tasks_spread_over_both_workers_and_slots_are_freed() {
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    let client = cluster.client();
    let app = wordcount::application(2, 2, PartitionerSpec::hash(), None, None).unwrap();
    let id = client.submit(app).unwrap();
    assert_eq!(client.wait_active(id, Duration::from_secs(30)).unwrap().status, AppStatus::Active);
    // 4 tasks + 1 AppMaster slot over two workers.
    let used: Vec<u32> = client.workers().iter().map(|w| w.used).collect();
    assert_eq!(used.iter().sum::<u32>(), 5, "{used:?}");
    assert!(used.iter().all(|&u| u >= 2), "both workers host tasks: {used:?}");
    let stats = client.stats(id).unwrap();
    assert_eq!(stats.executors.len(), 2);
    client.kill(id).unwrap();
    assert_eq!(client.wait(id, Duration::from_secs(30)).unwrap().status, AppStatus::Terminated);
    assert!(client.workers().iter().all(|w| w.used == 0), "{:?}", client.workers());
    cluster.shutdown();
}

/// The same exact counts when every edge between executors is a loopback TCP connection:
/// values are encoded, framed, batched, decoded and acknowledged over sockets.
#[test]
fn exact_counts_over_the_tcp_data_plane() {
    let data_plane = gearpump::DataPlane::tcp([127, 0, 0, 1].into());
    let cluster = EmbeddedCluster::start(ClusterConfig { data_plane, ..ClusterConfig::default() });
    for (split, sum) in [(1, 1), (2, 2), (3, 4), (4, 1)] {
        run_wordcount(&cluster, split, sum, PartitionerSpec::hash());
    }
    cluster.shutdown();
}

/// The DSL's WordCount gives the same exact counts.
#[test]
fn the_dsl_wordcount_gives_exact_counts() {
    let checkpoints = std::env::temp_dir().join(format!("gearpump-t10-dsl-{}", std::process::id()));
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    for parallelism in [1, 2, 3] {
        let counts = CountSink::default();
        let config = gearpump::UserConfig::empty().with("state.checkpoint.store.rootpath", checkpoints.display());
        let app =
            gearpump_examples::wordcount_dsl::application(Some(ROUNDS), parallelism, Some(counts.clone()), config)
                .unwrap();
        let client = cluster.client();
        let id = client.submit(app).unwrap();
        let summary = client.wait(id, Duration::from_secs(120)).unwrap();
        assert_eq!(summary.status, AppStatus::Succeeded, "parallelism {parallelism}: {summary:?}");
        assert_eq!(*counts.lock(), expected_counts(TEXT_TO_SPLIT, ROUNDS), "parallelism {parallelism}");
        // Two processors: lines → split chained, count → for_each chained.
        assert_eq!(client.stats(id).unwrap().processors.len(), 2);
    }
    cluster.shutdown();
    let _ = std::fs::remove_dir_all(&checkpoints);
}
