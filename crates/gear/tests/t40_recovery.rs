//! Recovery on a real cluster: executors, the AppMaster or a worker SIGKILLed at random moments
//! while an application runs; it comes back on new processes each time. MessageCount's
//! checkpointed count ends exact (exactly-once); numbers_to_files has every number in its files
//! (at-least-once).

mod common;

use common::cluster::Cluster;
use common::{example, wait_until};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

/// SIGKILLs `pid`; whether it was there to kill.
fn sigkill(pid: u32) -> bool {
    std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success()
}

/// What a chaos round kills.
#[derive(Clone, Copy, Debug)]
enum Victim {
    /// One of the application's executor processes.
    Executor,
    /// Its AppMaster process.
    AppMaster,
    /// A worker process (and with it whatever of the application it ran).
    Worker,
    /// Nothing: `gear replay` restarts the tasks from the start clock.
    Replay,
}

/// The application's processes as the master last heard: AppMaster pid and executor pids.
fn processes(c: &Cluster) -> (u32, Vec<u32>) {
    let runtime = c.snapshot().and_then(|s| s.apps.into_iter().find(|a| a.info.id.0 == 1)).and_then(|a| a.runtime);
    (runtime.as_ref().map_or(0, |r| r.appmaster_pid), executor_pids(c))
}

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
    let mut command = vec!["app", "-executors", "2", "-jar", bin.to_str().unwrap(), "-messages", &n, "-pace", "200000"];
    command.extend_from_slice(args);
    command.extend_from_slice(&["-output", out.to_str().unwrap()]);
    let submitted = c.run(&command);
    assert!(submitted.status.success(), "gear app: {}", String::from_utf8_lossy(&submitted.stderr));
    c.wait_status(1, "active");
    let mut rng = fastrand::Rng::new();
    let mut recoveries = Vec::new();
    let mut start_clocks = Vec::new();
    for (round, victim) in victims.iter().enumerate() {
        let (mut am, mut pids) = (0, Vec::new());
        wait_until("a live AppMaster and two live executors", || {
            (am, pids) = processes(&c);
            am > 0 && alive(am) && pids.len() == 2 && pids.iter().all(|p| alive(*p))
        });
        if round == 0 {
            // So that the first recovery has checkpointed state to restore.
            wait_until("the start clock moves past a checkpoint", || {
                c.snapshot()
                    .and_then(|s| s.apps.into_iter().next())
                    .and_then(|a| a.runtime)
                    .is_some_and(|r| r.start_clock > 0)
            });
        }
        // 2000 numbers a ms of application time per second: checkpoints every half second.
        std::thread::sleep(Duration::from_millis(rng.u64(300..1200)));
        let killed = Instant::now();
        let hit = match victim {
            Victim::Executor => {
                let pid = pids[rng.usize(..pids.len())];
                eprintln!("round {round}: SIGKILL executor process {pid} of {pids:?}");
                sigkill(pid)
            }
            Victim::AppMaster => {
                eprintln!("round {round}: SIGKILL the AppMaster, process {am}");
                sigkill(am)
            }
            Victim::Worker => {
                // procs: the master, then the workers.
                let i = 1 + rng.usize(..c.procs.len() - 1);
                let worker = c.procs.remove(i);
                eprintln!("round {round}: SIGKILL worker process {}", worker.0.id());
                drop(worker);
                true
            }
            Victim::Replay => {
                let out = c.run(&["replay", "-appid", "1"]);
                let said = String::from_utf8_lossy(&out.stdout).into_owned();
                assert!(out.status.success() && said.contains("replays"), "gear replay: {said}");
                true
            }
        };
        if !hit {
            // The process was gone: only because the application has just finished.
            c.wait_status(1, "succeeded");
            eprintln!("round {round}: the application had finished");
            break;
        }
        // Back: new executors (and a new AppMaster if it was lost), none of the old ones.
        let mut finished = false;
        wait_until("new processes replace the lost ones", || {
            // A kill near the end may leave little to do: the application may be done already.
            finished = c.app(1).is_some_and(|a| a.status == "succeeded");
            let (now_am, now) = processes(&c);
            let am_ok = now_am > 0 && alive(now_am) && (now_am != am || !matches!(victim, Victim::AppMaster));
            finished || (am_ok && now.len() == 2 && now.iter().all(|p| !pids.contains(p) && alive(*p)))
        });
        if finished {
            eprintln!("round {round}: the application succeeded during its recovery");
            break;
        }
        recoveries.push(killed.elapsed());
        wait_until("the application is active again", || c.app(1).is_some_and(|a| a.status == "active"));
        let runtime = c.snapshot().unwrap().apps[0].runtime.clone().unwrap();
        start_clocks.push(runtime.start_clock);
    }
    eprintln!("start clocks after each recovery: {start_clocks:?}");
    eprintln!("recoveries as the master saw them (its view updates once a second): {recoveries:?}");
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
    message_count_survives("recovery-executor", &[Victim::Executor; 3]);
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
