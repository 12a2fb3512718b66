//! Kafka end to end on a real cluster (a master, two workers, the application's AppMaster and
//! executors as processes) against a real Apache Kafka broker: MessageCount reads 1,000,000
//! numbered records from a 4-partition topic while they are being written, counts them in a
//! persistent count with 1 s checkpoints and writes every result to an output topic, while its
//! AppMaster and executors are SIGKILLed at random moments. A `read_committed` consumer then
//! finds each result exactly once (exactly-once sink) or at least once (at-least-once sink), and
//! the recoveries resumed from the offsets stored with the checkpoints.

#[path = "../../../tools/kafka/broker.rs"]
mod broker;
mod common;

use common::chaos::{Victim, chaos};
use common::cluster::Cluster;
use common::{example, wait_until};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

const N: u64 = 1_000_000;

/// Runs MessageCount from `input` to `output` (`sink_mode`) on a new cluster while the numbers
/// are written at 40,000 a second, kills `victims`, and returns the cluster and what a
/// `read_committed` consumer finds in `output` once every number is there.
fn run(name: &str, input: &str, output: &str, sink_mode: &str, victims: &[Victim]) -> (Cluster, Vec<String>) {
    let b = broker::shared();
    b.topic(input, 4);
    b.topic(output, 2);
    let mut c = Cluster::start_with(name, "gearpump.worker.slots = 8\n");
    let bin = example("message_count");
    let submitted = c.run(&[
        "app",
        "-executors",
        "2",
        "-jar",
        bin.to_str().unwrap(),
        "-brokerList",
        &b.bootstrap,
        "-sourceTopic",
        input,
        "-sinkTopic",
        output,
        "-sourceTask",
        "2",
        "-countTask",
        "2",
        "-sinkTask",
        "2",
        "-sinkMode",
        sink_mode,
        "-checkpointInterval",
        "1000",
    ]);
    assert!(submitted.status.success(), "gear app: {}", String::from_utf8_lossy(&submitted.stderr));
    c.wait_status(1, "active");
    let bootstrap = b.bootstrap.clone();
    let topic = input.to_string();
    let producer = std::thread::spawn(move || {
        broker::produce_numbers(&bootstrap, &topic, 1, N, broker::Stamp::Now { per_second: 40_000 })
    });
    let start_clocks = chaos(&mut c, victims);
    assert_eq!(start_clocks.len(), victims.len(), "every kill happened while the application ran");
    assert!(start_clocks.iter().all(|t| *t > 0), "every recovery restored checkpointed state: {start_clocks:?}");
    producer.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let got = loop {
        let got = broker::read_all(&b.bootstrap, output, "read_committed");
        // Distinct numbers: the at-least-once sink may repeat some.
        let numbers: BTreeSet<&str> = got.iter().filter_map(|l| l.split_whitespace().next()).collect();
        if numbers.len() as u64 >= N || Instant::now() > deadline {
            break got;
        }
        let app = c.app(1);
        assert!(app.as_ref().is_some_and(|a| a.status.as_str() == "active"), "the application stopped: {app:?}");
        eprintln!("{output}: {} of {N} results committed", got.len());
        std::thread::sleep(Duration::from_secs(2));
    };
    (c, got)
}

/// Checks that `got` (`<number> <count task> <count>`) holds every number; with `exactly_once`,
/// each once, and each count task's last count is the number of numbers it counted. Returns
/// how many records repeat a number.
fn check(got: &[String], exactly_once: bool) -> u64 {
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    let mut last: BTreeMap<u64, u64> = BTreeMap::new();
    let mut per_task: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for line in got {
        let v: Vec<u64> = line.split_whitespace().map(|p| p.parse().unwrap()).collect();
        let [number, task, count] = v[..] else { panic!("a result that is not `number task count`: {line}") };
        *seen.entry(number).or_default() += 1;
        let l = last.entry(task).or_default();
        *l = (*l).max(count);
        per_task.entry(task).or_default().insert(number);
    }
    let missing: Vec<u64> = (1..=N).filter(|n| !seen.contains_key(n)).take(10).collect();
    assert!(missing.is_empty(), "numbers without a result (the first ten): {missing:?}");
    assert_eq!(seen.len() as u64, N, "results for numbers never written");
    let repeats = got.len() as u64 - N;
    eprintln!("{} results for {N} numbers: {repeats} repeats", got.len());
    if exactly_once {
        let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).take(10).collect();
        assert!(twice.is_empty(), "numbers with more than one result (the first ten): {twice:?}");
        for (task, numbers) in &per_task {
            assert_eq!(last[task], numbers.len() as u64, "count task {task}'s final count is exact");
        }
        assert_eq!(per_task.values().map(BTreeSet::len).sum::<usize>() as u64, N);
    }
    repeats
}

/// The offsets Kafka sources resumed from after a restart, as their executors logged them:
/// (offset, where from).
fn resumed_offsets(dir: &Path) -> Vec<(i64, String)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            for line in text.lines().filter(|l| l.contains("Kafka source resumes from")) {
                let offset = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("offset="))
                    .and_then(|o| o.parse().ok())
                    .unwrap_or(-1);
                let from = line.split("resumes from ").nth(1).unwrap_or("").split('.').next().unwrap_or("").to_string();
                found.push((offset, from));
            }
        }
    }
    found
}

#[test]
fn kafka_message_count_is_exactly_once_across_appmaster_and_executor_kills() {
    let victims = [Victim::AppMaster, Victim::Executor, Victim::Executor, Victim::Executor];
    let (c, got) = run("kafka-eo", "eo-numbers", "eo-results", "exactlyOnce", &victims);
    check(&got, true);
    let resumed = resumed_offsets(&c.dir);
    let stored: Vec<_> = resumed.iter().filter(|(o, from)| from.starts_with("stored") && *o > 0).collect();
    assert!(
        stored.len() >= 2 * victims.len(),
        "after each recovery both source tasks resumed from offsets stored with the checkpoint: {resumed:?}"
    );
    assert!(
        resumed.iter().filter(|(_, from)| from.starts_with("the beginning")).count() <= 4,
        "only the first start reads its partitions from the beginning: {resumed:?}"
    );
}

#[test]
fn kafka_message_count_delivers_every_result_at_least_once_across_executor_kills() {
    let (_c, got) = run("kafka-alo", "alo-numbers", "alo-results", "atLeastOnce", &[Victim::Executor; 3]);
    check(&got, false);
}

#[test]
fn gear_replay_of_a_kafka_application_rereads_from_the_start_clock_and_stays_exact() {
    let (c, got) = run("kafka-replay", "replay-numbers", "replay-results", "exactlyOnce", &[Victim::Replay]);
    check(&got, true);
    let resumed = resumed_offsets(&c.dir);
    assert!(
        resumed.iter().any(|(o, from)| from.starts_with("stored") && *o > 0),
        "the replay resumed from stored offsets: {resumed:?}"
    );
}

#[test]
fn a_kafka_example_with_bad_options_says_what_is_wrong() {
    let c = Cluster::start("kafka-bad");
    let bin = example("message_count");
    let out = c.run(&["app", "-jar", bin.to_str().unwrap(), "-brokerList", "127.0.0.1:1"]);
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success() && text.contains("-sourceTopic"), "{text}");
    wait_until("nothing was submitted", || c.app(1).is_none());
}
