//! The typed DSL on a real cluster: a windowed count and sum (`window_count`, event-time
//! tumbling windows over checkpointed window state, into the exactly-once file sink) while
//! executors are SIGKILLed three times. Every window's line is in the committed files once,
//! with its exact count and sum.

mod common;

use common::chaos::{Victim, chaos};
use common::cluster::Cluster;
use common::example;
use std::collections::BTreeMap;

#[test]
fn windowed_counts_are_exact_and_emitted_once_across_three_executor_kills() {
    let (n, per_ms, keys, window) = (1_000_000u64, 100u64, 10u64, 1000i64);
    let mut c = Cluster::start_with("dsl-windows", "gearpump.worker.slots = 8\n");
    let out = c.dir.join("out");
    let checkpoints = c.dir.join("checkpoints");
    let bin = example("window_count");
    let args = [
        "app",
        "-executors",
        "2",
        "-jar",
        bin.to_str().unwrap(),
        "-messages",
        &n.to_string(),
        "-perMs",
        &per_ms.to_string(),
        "-pace",
        "80000",
        "-keys",
        &keys.to_string(),
        "-windowMs",
        &window.to_string(),
        "-parallelism",
        "2",
        "-output",
        out.to_str().unwrap(),
        "-checkpointDir",
        checkpoints.to_str().unwrap(),
    ];
    let submitted = c.run(&args);
    assert!(submitted.status.success(), "gear app: {}", String::from_utf8_lossy(&submitted.stderr));
    c.wait_status(1, "active");
    let start_clocks = chaos(&mut c, &[Victim::Executor; 3]);
    assert_eq!(start_clocks.len(), 3, "every kill happened while the application ran");
    assert!(start_clocks.iter().all(|t| *t > 0), "the recoveries restored checkpointed windows: {start_clocks:?}");
    let info = c.wait_status(1, "succeeded");
    assert!(info.error.is_none(), "{info:?}");
    // Every committed line, once per (key, window).
    let mut got: BTreeMap<(u64, i64), (i64, u64, u64)> = BTreeMap::new();
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("part-") {
            assert!(name.starts_with("_committed-"), "only committed parts and markers are visible: {name}");
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f.len(), 5, "{name}: {line:?}");
            let key = (f[0].parse().unwrap(), f[1].parse().unwrap());
            let value = (f[2].parse().unwrap(), f[3].parse().unwrap(), f[4].parse().unwrap());
            if let Some(before) = got.insert(key, value) {
                panic!("window {key:?} is in the output twice: {before:?} and {value:?} (in {name})");
            }
        }
    }
    // The same windows computed here: number i (1..=n) is stamped i / per_ms ms.
    let mut expected: BTreeMap<(u64, i64), (i64, u64, u64)> = BTreeMap::new();
    for i in 1..=n {
        let t = (i / per_ms) as i64;
        let start = t - t % window;
        let e = expected.entry((i % keys, start)).or_insert((start + window, 0, 0));
        e.1 += 1;
        e.2 += i;
    }
    assert_eq!(got.len(), expected.len(), "every window once");
    let wrong: Vec<_> = expected.iter().filter(|(k, v)| got.get(k) != Some(v)).take(5).collect();
    assert!(wrong.is_empty(), "windows with a wrong result (expected, the first five): {wrong:?}");
}
