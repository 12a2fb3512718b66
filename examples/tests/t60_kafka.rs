//! Kafka on the embedded cluster, against a real Apache Kafka broker (KRaft, started once for
//! this test binary by `tools/kafka/kafka.sh`): the source spreads partitions over its tasks
//! and replays from stored offsets; the exactly-once sink's output, read with
//! `read_committed`, holds every result once across injected failures; bad brokers and topics
//! are errors that name them; an empty topic does not hold the clock.

#[path = "../../tools/kafka/broker.rs"]
mod broker;

use gearpump::prelude::*;
use gearpump::{AppStatus, ClusterConfig, EmbeddedCluster};
use gearpump_connectors::kafka::{self, KafkaSink, KafkaSource};
use gearpump_examples::message_count;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(300);
/// Record timestamps start here (ms since the epoch): a realistic time, well before now.
const BASE: i64 = 1_700_000_000_000;

fn config() -> UserConfig {
    UserConfig::empty().with(kafka::IDLE_TIMEOUT_KEY, 1000).with(kafka::TIMEOUT_KEY, 5000)
}

/// Polls `read` until it returns at least `n` records (or the wait runs out), then returns
/// them.
fn wait_for_records(
    what: &str,
    n: usize,
    (client, id): (&gearpump::ClusterClient, gearpump::AppId),
    mut read: impl FnMut() -> Vec<String>,
) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = read();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        let status = client.status(id);
        assert!(
            status.as_ref().is_some_and(|s| s.status == AppStatus::Active),
            "{what}: the application is not active: {status:?}"
        );
        eprintln!("{what}: {} of {n} records so far", got.len());
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn records_of_every_partition_are_read_once_by_more_or_fewer_tasks_than_partitions() {
    let b = broker::shared();
    b.topic("copy-in", 4);
    broker::produce_numbers(&b.bootstrap, "copy-in", 1, 20_000, broker::Stamp::Numbered { base: BASE, per_ms: 10 });
    for (tasks, out) in [(3u32, "copy-out-3"), (6, "copy-out-6")] {
        b.topic(out, 2);
        let brokers = b.bootstrap.clone();
        let source = Processor::source("Read", tasks, move |_| Ok(KafkaSource::new(brokers.clone(), "copy-in").utf8()));
        let brokers = b.bootstrap.clone();
        let sink = Processor::sink("Write", 2, move |_| Ok(KafkaSink::new(brokers.clone(), out)));
        let app = StreamApplication::builder("copy")
            .edge(&source, PartitionerSpec::shuffle(), &sink)
            .config(config())
            .build()
            .unwrap();
        let cluster = EmbeddedCluster::start(ClusterConfig::default());
        let id = cluster.client().submit(app).unwrap();
        let client = cluster.client();
        let got =
            wait_for_records(out, 20_000, (&client, id), || broker::read_all(&b.bootstrap, out, "read_committed"));
        let mut numbers: Vec<u64> = got.iter().map(|s| s.parse().unwrap()).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), 20_000, "{tasks} tasks: every number, got {} records", got.len());
        assert_eq!(got.len(), 20_000, "{tasks} tasks: no number twice without a failure");
        cluster.client().kill(id).unwrap();
        cluster.shutdown();
    }
}

/// MessageCount from Kafka through a persistent count into the exactly-once sink, with count
/// tasks failing at random numbers: the committed output holds every number once and each
/// count task's final count is exact.
#[test]
fn the_exactly_once_sink_commits_every_result_once_across_failures() {
    let b = broker::shared();
    let n = 200_000u64;
    b.topic("eo-in", 4);
    b.topic("eo-out", 2);
    // 10 numbers per ms: 20 s of application time, 20 checkpoints.
    broker::produce_numbers(&b.bootstrap, "eo-in", 1, n, broker::Stamp::Numbered { base: BASE, per_ms: 10 });
    let options = message_count::Options {
        messages: n,
        per_ms: 10,
        pace: 0,
        count_tasks: 2,
        checkpoint_interval_ms: 1000,
        output: None,
        checkpoint_dir: Some(tmp("eo-checkpoints")),
        config: UserConfig::empty(),
        kafka: Some(message_count::KafkaOptions {
            brokers: b.bootstrap.clone(),
            source_topic: "eo-in".into(),
            sink_topic: Some("eo-out".into()),
            source_tasks: 2,
            sink_tasks: 2,
            exactly_once: true,
        }),
    };
    let options = message_count::Options { config: config().merge(&failures(3)), ..options };
    let app = message_count::application(&options).unwrap();
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    let id = cluster.client().submit(app).unwrap();
    let client = cluster.client();
    let got = wait_for_records("eo-out", n as usize, (&client, id), || {
        broker::read_all(&b.bootstrap, "eo-out", "read_committed")
    });
    check_counts(&got, n, true);
    let status = cluster.client().status(id).unwrap();
    assert_eq!(status.status, AppStatus::Active, "{status:?}");
    let failed = message_count::failed_at();
    assert_eq!(failed.len(), 3, "every injected failure happened: {failed:?}");
    cluster.client().kill(id).unwrap();
    cluster.shutdown();
}

/// Config making the examples' Count fail at `k` random numbers, once each.
fn failures(k: usize) -> UserConfig {
    let mut rng = fastrand::Rng::new();
    let seed = rng.u64(..);
    eprintln!("failure seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut at = std::collections::BTreeSet::new();
    while at.len() < k {
        at.insert(rng.u64(1..=150_000));
    }
    let at: Vec<String> = at.iter().map(u64::to_string).collect();
    eprintln!("count tasks fail once at {at:?}");
    UserConfig::empty().with(message_count::Count::FAIL_AT, at.join(","))
}

/// `got` holds `<number> <task> <count>` for each of 1..=n exactly once (or at least once),
/// and each count task's largest count is the number of distinct numbers it counted.
fn check_counts(got: &[String], n: u64, exactly_once: bool) {
    let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    let mut per_task: BTreeMap<u32, std::collections::BTreeSet<u64>> = BTreeMap::new();
    for line in got {
        let mut parts = line.split_whitespace().map(|p| p.parse::<u64>().unwrap());
        let (number, task, count) = (parts.next().unwrap(), parts.next().unwrap() as u32, parts.next().unwrap());
        *seen.entry(number).or_default() += 1;
        let l = last.entry(task).or_default();
        *l = (*l).max(count);
        per_task.entry(task).or_default().insert(number);
    }
    assert_eq!(seen.len() as u64, n, "every number arrived");
    assert_eq!(seen.keys().next(), Some(&1));
    assert_eq!(seen.keys().last(), Some(&n));
    let repeats: u32 = seen.values().map(|c| c - 1).sum();
    eprintln!("{} records for {n} numbers: {repeats} repeats", got.len());
    if exactly_once {
        assert_eq!(repeats, 0, "no number twice");
        for (task, numbers) in &per_task {
            assert_eq!(last[task], numbers.len() as u64, "count task {task}'s final count is exact");
        }
    }
}

fn tmp(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("gearpump-t60-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.to_string_lossy().into_owned()
}

/// An application with a Kafka source on `topic` of `brokers`, run until it ends; returns its
/// summary.
fn run_source(brokers: &str, topic: &str) -> gearpump::AppSummary {
    struct Drop_;
    impl Task for Drop_ {
        fn on_next(&mut self, _: &mut TaskContext<'_>, _: Message) -> TaskResult {
            Ok(())
        }
    }
    let (brokers, topic) = (brokers.to_string(), topic.to_string());
    let source = Processor::source("Read", 1, move |_| Ok(KafkaSource::new(brokers.clone(), topic.clone())));
    let sink = Processor::from_fn("Drop", 1, |_| Ok(Drop_));
    let config = config().with("gearpump.application.total-retries", 0);
    let app = StreamApplication::builder("bad")
        .edge(&source, PartitionerSpec::shuffle(), &sink)
        .config(config)
        .build()
        .unwrap();
    let cluster = EmbeddedCluster::start(ClusterConfig { total_retries: 0, ..ClusterConfig::default() });
    let id = cluster.client().submit(app).unwrap();
    let summary = cluster.client().wait(id, WAIT).unwrap();
    cluster.shutdown();
    summary
}

#[test]
fn unreachable_brokers_and_missing_topics_are_errors_that_name_them() {
    let dead =
        format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
    let summary = run_source(&dead, "numbers");
    assert_eq!(summary.status, AppStatus::Failed);
    let error = summary.error.unwrap_or_default();
    assert!(error.contains(&dead), "the error names the brokers: {error}");

    let b = broker::shared();
    let summary = run_source(&b.bootstrap, "no-such-topic");
    assert_eq!(summary.status, AppStatus::Failed);
    let error = summary.error.unwrap_or_default();
    assert!(error.contains("no-such-topic"), "the error names the topic: {error}");
}

#[test]
fn an_empty_topic_does_not_hold_the_clock() {
    let b = broker::shared();
    b.topic("empty", 2);
    let brokers = b.bootstrap.clone();
    let source = Processor::source("Read", 2, move |_| Ok(KafkaSource::new(brokers.clone(), "empty")));
    let count = Processor::persistent("Count", 1, |_| Ok(message_count::Count::default()));
    let app = StreamApplication::builder("idle")
        .edge(&source, PartitionerSpec::hash(), &count)
        .config(config().with("state.checkpoint.store.rootpath", tmp("idle")))
        .build()
        .unwrap();
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    let id = cluster.client().submit(app).unwrap();
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let deadline = Instant::now() + WAIT;
    loop {
        let clock = cluster.client().stats(id).and_then(|s| s.min_clock).map_or(i64::MIN, |c| c.0);
        // The idle sources follow the wall clock (less the idle timeout).
        if clock >= started - 5000 {
            break;
        }
        assert!(Instant::now() < deadline, "the clock stays at {clock}");
        std::thread::sleep(Duration::from_millis(200));
    }
    cluster.client().kill(id).unwrap();
    cluster.shutdown();
}

#[test]
fn kafka_wordcount_counts_the_words_of_a_topic() {
    let b = broker::shared();
    b.topic("wc-lines", 2);
    b.topic("wc-counts", 2);
    produce_lines(&b.bootstrap, "wc-lines", &["the cat", "the dog the end", "cat"]);
    let topics = gearpump_examples::kafka::Topics {
        brokers: b.bootstrap.clone(),
        source: "wc-lines".into(),
        sink: "wc-counts".into(),
    };
    let p = gearpump_examples::kafka::WordCountParallelism { source: 2, split: 2, sum: 2, sink: 1 };
    let app = gearpump_examples::kafka::wordcount(&topics, p, config()).unwrap();
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    let client = cluster.client();
    let id = client.submit(app).unwrap();
    let got = wait_for_records("wc-counts", 7, (&client, id), || {
        broker::read_all(&b.bootstrap, "wc-counts", "read_committed")
    });
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for line in &got {
        let (word, count) = line.split_once(' ').unwrap();
        let l = last.entry(word.to_string()).or_default();
        *l = (*l).max(count.parse().unwrap());
    }
    let expected: BTreeMap<String, u64> =
        [("cat", 2), ("dog", 1), ("end", 1), ("the", 3)].into_iter().map(|(w, c)| (w.to_string(), c)).collect();
    assert_eq!(last, expected, "{got:?}");
    client.kill(id).unwrap();
    cluster.shutdown();
}

fn produce_lines(bootstrap: &str, topic: &str, lines: &[&str]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let p: BaseProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    for line in lines {
        p.send(BaseRecord::<(), str>::to(topic).payload(*line)).unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// A broker that goes away: the application recovers once it is back (within its restart
/// budget), and fails with an error naming the brokers once the budget is spent.
#[test]
fn an_application_recovers_when_its_broker_comes_back_and_fails_when_it_does_not() {
    let dir = std::env::temp_dir().join(format!("gearpump-kafka-own-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let b = broker::start(&dir, port);
    b.topic("rw-in", 2);
    b.topic("rw-out", 2);
    broker::produce_numbers(&b.bootstrap, "rw-in", 1, 1000, broker::Stamp::Now { per_second: 1_000_000 });
    let topics = gearpump_examples::kafka::Topics {
        brokers: b.bootstrap.clone(),
        source: "rw-in".into(),
        sink: "rw-out".into(),
    };
    let config = config().with("gearpump.application.total-retries", 5);
    let app = gearpump_examples::kafka::read_write(&topics, 2, 1, config).unwrap();
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    let client = cluster.client();
    let id = client.submit(app).unwrap();
    wait_for_records("rw-out", 1000, (&client, id), || broker::read_all(&b.bootstrap, "rw-out", "read_committed"));

    // The broker goes away for a few seconds: the tasks fail and restart until it is back.
    b.kill();
    std::thread::sleep(Duration::from_secs(8));
    let b = broker::start(&dir, port);
    broker::produce_numbers(&b.bootstrap, "rw-in", 1001, 2000, broker::Stamp::Now { per_second: 1_000_000 });
    let got =
        wait_for_records("rw-out", 2000, (&client, id), || broker::read_all(&b.bootstrap, "rw-out", "read_committed"));
    let numbers: std::collections::BTreeSet<&str> = got.iter().map(String::as_str).collect();
    let missing: Vec<u64> = (1..=2000).filter(|n| !numbers.contains(n.to_string().as_str())).collect();
    assert_eq!(
        numbers.len(),
        2000,
        "every number, before and after the broker came back; {} missing, from {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    let status = client.status(id).unwrap();
    assert_eq!(status.status, AppStatus::Active, "{status:?}");

    // Gone for good: the budget runs out and the application fails naming the brokers.
    b.kill();
    let summary = client.wait(id, WAIT).unwrap();
    assert_eq!(summary.status, AppStatus::Failed, "{summary:?}");
    let error = summary.error.unwrap_or_default();
    assert!(error.contains(&b.bootstrap), "the error names the brokers: {error}");
    cluster.shutdown();
}

#[test]
fn a_windowed_count_from_kafka_to_kafka_emits_each_window_once() {
    let b = broker::shared();
    b.topic("wwc-lines", 2);
    b.topic("wwc-counts", 1);
    let text = ["the cat", "the dog the end", "cat", "a b c", "the"];
    produce_lines(&b.bootstrap, "wwc-lines", &text);
    let topics = gearpump_examples::kafka::Topics {
        brokers: b.bootstrap.clone(),
        source: "wwc-lines".into(),
        sink: "wwc-counts".into(),
    };
    let checkpoints = std::env::temp_dir().join(format!("gearpump-t60-wwc-{}", std::process::id()));
    let config = config().with("state.checkpoint.store.rootpath", checkpoints.display());
    let app = gearpump_examples::kafka::window_count(&topics, Duration::from_secs(2), 2, config).unwrap();
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    let client = cluster.client();
    let id = client.submit(app).unwrap();
    // Every word's count, in one window or split over two.
    let words: std::collections::BTreeSet<&str> = text.iter().flat_map(|l| l.split(' ')).collect();
    wait_for_records("wwc-counts", words.len(), (&client, id), || {
        broker::read_all(&b.bootstrap, "wwc-counts", "read_committed")
    });
    // Give a window split over two the time to close as well.
    std::thread::sleep(Duration::from_secs(4));
    let got = broker::read_all(&b.bootstrap, "wwc-counts", "read_committed");
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    let mut windows = std::collections::BTreeSet::new();
    for line in &got {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 4, "{line:?}");
        let (start, end): (i64, i64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        assert_eq!(end - start, 2000, "{line:?}");
        assert!(windows.insert((f[0].to_string(), start)), "window {line:?} came out twice: {got:?}");
        *totals.entry(f[0].to_string()).or_default() += f[3].parse::<u64>().unwrap();
    }
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for w in text.iter().flat_map(|l| l.split(' ')) {
        *expected.entry(w.to_string()).or_default() += 1;
    }
    assert_eq!(totals, expected, "{got:?}");
    client.kill(id).unwrap();
    cluster.shutdown();
    let _ = std::fs::remove_dir_all(&checkpoints);
}
