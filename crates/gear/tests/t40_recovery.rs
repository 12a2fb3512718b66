//! Recovery on a real cluster: executors, the AppMaster or a worker SIGKILLed at random moments
//! while an application runs; it comes back on new processes each time. MessageCount's
//! checkpointed count ends exact (exactly-once); numbers_to_files has every number in its files
//! (at-least-once).

mod common;

use common::chaos::{Victim, chaos};
use common::cluster::Cluster;
use common::example;
use std::path::{Path, PathBuf};

const N: u64 = 1_000_000;

/// Runs `example` (with `args`, numbers 1..=N at 100 a ms of application time) on a master and
/// two workers, kills `victims` one after another at random moments, each time waiting until
/// the application is back on new processes, and waits until it succeeds. Returns the cluster
/// and the example's output directory.
fn survives(name: &str, example_name: &str, args: &[&str], victims: &[Victim]) -> (Cluster, PathBuf) {
    let mut c = Cluster::start_with(name, "gearpump.worker.slots = 8\n");
    let out = c.dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let bin = example(example_name);
    let n = N.to_string();
    let mut command = vec!["app", "-executors", "2", "-jar", bin.to_str().unwrap(), "-messages", &n, "-pace", "80000"];
    command.extend_from_slice(args);
    command.extend_from_slice(&["-output", out.to_str().unwrap()]);
    let submitted = c.run(&command);
    assert!(submitted.status.success(), "gear app: {}", String::from_utf8_lossy(&submitted.stderr));
    c.wait_status(1, "active");
    let start_clocks = chaos(&mut c, victims);
    assert_eq!(start_clocks.len(), victims.len(), "every kill happened while the application ran");
    assert!(start_clocks.iter().all(|t| *t > 0), "every recovery restored checkpointed state: {start_clocks:?}");
    let info = c.wait_status(1, "succeeded");
    assert!(info.error.is_none(), "{info:?}");
    (c, out)
}

/// MessageCount's two count files add up to exactly N numbers.
fn assert_counted_exactly_once(out: &Path) {
    let mut count = 0;
    let mut sum = 0;
    for i in 0..2 {
        let text = std::fs::read_to_string(out.join(format!("count-{i}.txt"))).unwrap();
        let (c, s) = text.trim().split_once(' ').unwrap();
        count += c.parse::<u64>().unwrap();
        sum += s.parse::<u64>().unwrap();
    }
    assert_eq!(count, N, "each message counted exactly once");
    assert_eq!(sum, N * (N + 1) / 2);
}

fn message_count_survives(name: &str, victims: &[Victim]) {
    let (_c, out) = survives(name, "message_count", &["-countTask", "2"], victims);
    assert_counted_exactly_once(&out);
}

#[test]
fn message_count_is_exact_after_three_executor_kills() {
    let (c, out) = survives("recovery-executor", "message_count", &["-countTask", "2"], &[Victim::Executor; 3]);
    assert_counted_exactly_once(&out);
    // The AppMaster's summary line counts every incarnation's messages, not only the last's
    // (which started from a checkpoint, so received fewer than N).
    let log = (0..2)
        .map(|w| c.dir.join(format!("worker{w}/logs/app1/appmaster.log")))
        .find(|p| p.is_file())
        .map(|p| std::fs::read_to_string(p).unwrap())
        .expect("an AppMaster log");
    let summary = log.lines().find(|l| l.contains("Summary: application")).expect("a summary line");
    let processed: u64 = summary
        .split(" messages processed")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {summary}"));
    assert!(processed >= N, "{summary}");
}

#[test]
fn message_count_is_exact_after_its_appmaster_is_killed() {
    message_count_survives("recovery-appmaster", &[Victim::AppMaster, Victim::Executor]);
}

#[test]
fn message_count_is_exact_after_a_worker_is_killed() {
    message_count_survives("recovery-worker", &[Victim::Worker, Victim::Executor]);
}

#[test]
fn gear_replay_restarts_from_the_start_clock_and_the_count_stays_exact() {
    let (c, out) = survives("recovery-replay", "message_count", &["-countTask", "2"], &[Victim::Replay]);
    assert_counted_exactly_once(&out);
    for (args, says) in [
        (&["replay", "-appid", "1"][..], "not running"),
        (&["replay", "-appid", "99"][..], "does not exist"),
        (&["replay"][..], "--appid"),
    ] {
        let o = c.run(args);
        let text = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success() && text.contains(says), "gear {args:?}: {text}");
    }
}

#[test]
fn every_number_reaches_the_files_after_three_executor_kills() {
    let (_c, out) = survives("recovery-lines", "numbers_to_files", &["-sinkTask", "2"], &[Victim::Executor; 3]);
    let mut seen = vec![false; N as usize + 1];
    let mut lines = 0u64;
    for entry in std::fs::read_dir(&out).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            let n: usize = line.parse().unwrap_or_else(|_| panic!("a line that is not a number: {line:?}"));
            assert!((1..=N as usize).contains(&n), "{n} was never produced");
            seen[n] = true;
            lines += 1;
        }
    }
    let missing: Vec<usize> = (1..=N as usize).filter(|n| !seen[*n]).take(10).collect();
    assert!(missing.is_empty(), "numbers never written (the first ten): {missing:?}");
    eprintln!("{lines} lines for {N} numbers: {} repeated after recoveries", lines - N);
}

/// An application that loses a worker while the other has no free slot does not fail: its
/// AppMaster's request for replacement slots waits at the master, and once a new worker joins
/// the slots are granted and the application runs on there.
#[test]
fn an_application_short_of_slots_after_a_worker_died_waits_for_a_new_worker() {
    let mut c = Cluster::start("queued-slots");
    // 7 tasks and the AppMaster: every one of the two workers' 4 slots.
    let wordcount = common::wordcount();
    let out = c.run(&["app", "-jar", wordcount.to_str().unwrap(), "-split", "3", "-sum", "4"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.wait_status(1, "active");
    let snapshot = c.snapshot().unwrap();
    let appmaster_worker = snapshot.apps[0].info.worker.unwrap();
    let victim = snapshot.workers.iter().find(|w| w.info.id != appmaster_worker).unwrap();
    let (victim_id, victim_pid) = (victim.info.id, victim.pid);
    let i = c.procs.iter().position(|p| p.0.id() == victim_pid).unwrap();
    drop(c.procs.remove(i));
    let master_log = c.dir.join("master.out");
    common::wait_until("the replacement request waits at the master", || {
        std::fs::read_to_string(&master_log).unwrap_or_default().contains("Too few free slots: the request waits.")
    });
    assert_eq!(c.app(1).unwrap().status.as_str(), "active", "waiting for slots is not a failure");
    c.add_worker(2);
    common::wait_until("the application runs on the new worker", || {
        let Some(s) = c.snapshot() else { return false };
        let Some(runtime) = s.apps.first().and_then(|a| a.runtime.clone()) else { return false };
        let executors = &runtime.executors;
        !executors.is_empty()
            && executors.iter().all(|e| e.status.as_str() == "active" && e.worker != victim_id)
            && executors.iter().any(|e| e.worker.0 > 2)
    });
    // The AppMaster runs in one of the two first workers' directories.
    let appmaster_log = || {
        ["worker0", "worker1"]
            .iter()
            .map(|w| std::fs::read_to_string(c.dir.join(w).join("logs/app1/appmaster.log")).unwrap_or_default())
            .collect::<String>()
    };
    common::wait_until("the clock moves again", || appmaster_log().contains("The clock moves again"));
    assert_eq!(c.app(1).unwrap().status.as_str(), "active");
}
