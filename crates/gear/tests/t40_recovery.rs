//! Recovery on a real cluster: executor processes SIGKILLed at random moments while
//! MessageCount runs; the application comes back on new executors each time, and its
//! checkpointed count ends exact.

mod common;

use common::cluster::Cluster;
use common::wait_until;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The message_count example beside `gear`.
fn message_count() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_gear")).with_file_name("message_count");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "gearpump-examples", "--bin", "message_count"])
            .status()
            .unwrap();
        assert!(status.success(), "building the message_count example");
    }
    path
}

/// The pids of application 1's active executors, as the master last heard from its AppMaster.
fn executor_pids(c: &Cluster) -> Vec<u32> {
    let Some(s) = c.snapshot() else { return Vec::new() };
    let Some(app) = s.apps.iter().find(|a| a.info.id.0 == 1) else { return Vec::new() };
    app.runtime.iter().flat_map(|r| &r.executors).filter(|e| e.status == "active" && e.pid > 0).map(|e| e.pid).collect()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

fn sigkill(pid: u32) {
    let status = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill -9 {pid}");
}

#[test]
fn message_count_is_exact_after_three_executor_kills() {
    const N: u64 = 1_000_000;
    let c = Cluster::start_with("recovery-executor", "gearpump.worker.slots = 8\n");
    let out = c.dir.join("counts");
    std::fs::create_dir_all(&out).unwrap();
    let bin = message_count();
    let submitted = c.run(&[
        "app",
        "-executors",
        "2",
        "-jar",
        bin.to_str().unwrap(),
        "-messages",
        &N.to_string(),
        "-countTask",
        "2",
        "-pace",
        "200000",
        "-output",
        out.to_str().unwrap(),
    ]);
    assert!(submitted.status.success(), "gear app: {}", String::from_utf8_lossy(&submitted.stderr));
    c.wait_status(1, "active");
    let mut rng = fastrand::Rng::new();
    let mut recoveries = Vec::new();
    let mut start_clocks = Vec::new();
    for round in 0..3 {
        let mut pids = Vec::new();
        wait_until("two live executors", || {
            pids = executor_pids(&c);
            pids.len() == 2 && pids.iter().all(|p| alive(*p))
        });
        // 2000 numbers a ms of application time per second: checkpoints every half second.
        std::thread::sleep(Duration::from_millis(rng.u64(700..1500)));
        let victim = pids[rng.usize(..pids.len())];
        eprintln!("round {round}: SIGKILL executor process {victim} of {pids:?}");
        sigkill(victim);
        let killed = Instant::now();
        // Back: two new executors, none of the old ones.
        wait_until("new executors replace the old ones", || {
            let now = executor_pids(&c);
            now.len() == 2 && now.iter().all(|p| !pids.contains(p) && alive(*p))
        });
        recoveries.push(killed.elapsed());
        assert_eq!(c.app(1).unwrap().status, "active", "the application stays active through a recovery");
        let runtime = c.snapshot().unwrap().apps[0].runtime.clone().unwrap();
        assert_eq!(runtime.restarts, round + 1);
        start_clocks.push(runtime.start_clock);
    }
    eprintln!("start clocks after each recovery: {start_clocks:?}");
    assert!(start_clocks.iter().any(|t| *t > 0), "some recovery restored checkpointed state: {start_clocks:?}");
    eprintln!("recoveries as the master saw them (its view updates once a second): {recoveries:?}");
    let info = c.wait_status(1, "succeeded");
    assert!(info.error.is_none(), "{info:?}");
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
