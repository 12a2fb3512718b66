//! Failure injection on a test cluster: SIGKILL an application's executors, its AppMaster or
//! a worker at random moments (or ask for a replay), each time waiting until the application
//! runs again on new processes.

use super::cluster::Cluster;
use super::wait_until;
use std::path::Path;
use std::time::{Duration, Instant};

/// The pids of application 1's active executors, as the master last heard from its AppMaster.
pub fn executor_pids(c: &Cluster) -> Vec<u32> {
    let Some(s) = c.snapshot() else { return Vec::new() };
    let Some(app) = s.apps.iter().find(|a| a.info.id.0 == 1) else { return Vec::new() };
    app.runtime
        .iter()
        .flat_map(|r| &r.executors)
        .filter(|e| e.status.as_str() == "active" && e.pid > 0)
        .map(|e| e.pid)
        .collect()
}

/// Whether process `pid` runs (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

/// SIGKILLs `pid`; whether it was there to kill.
pub fn sigkill(pid: u32) -> bool {
    std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success()
}

/// What a chaos round kills.
#[derive(Clone, Copy, Debug)]
pub enum Victim {
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
pub fn processes(c: &Cluster) -> (u32, Vec<u32>) {
    let runtime = c.snapshot().and_then(|s| s.apps.into_iter().find(|a| a.info.id.0 == 1)).and_then(|a| a.runtime);
    (runtime.as_ref().map_or(0, |r| r.appmaster_pid), executor_pids(c))
}

/// Kills `victims` of application 1 one after another, each a random 0.3–1.2 s after the
/// application runs on live processes (the first only once its start clock has moved past a
/// checkpoint), and waits until new processes replace the lost ones. Returns the start clock
/// after each recovery: one per victim, unless the application finished first (then fewer).
/// Prints the random seed.
pub fn chaos(c: &mut Cluster, victims: &[Victim]) -> Vec<i64> {
    let seed = fastrand::u64(..);
    eprintln!("chaos seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut recoveries = Vec::new();
    let mut start_clocks = Vec::new();
    for (round, victim) in victims.iter().enumerate() {
        let (mut am, mut pids) = (0, Vec::new());
        wait_until("a live AppMaster and two live executors", || {
            (am, pids) = processes(c);
            am > 0 && alive(am) && pids.len() == 2 && pids.iter().all(|p| alive(*p))
        });
        if round == 0 {
            // So that the first recovery has checkpointed state to restore.
            wait_until("the start clock moves past a checkpoint", || {
                c.snapshot()
                    .and_then(|s| s.apps.into_iter().next())
                    .and_then(|a| a.runtime)
                    .is_some_and(|r| r.start_clock.0 > 0)
            });
        }
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
            finished = c.app(1).is_some_and(|a| a.status.as_str() == "succeeded");
            let (now_am, now) = processes(c);
            let am_ok = now_am > 0 && alive(now_am) && (now_am != am || !matches!(victim, Victim::AppMaster));
            finished || (am_ok && now.len() == 2 && now.iter().all(|p| !pids.contains(p) && alive(*p)))
        });
        if finished {
            eprintln!("round {round}: the application succeeded during its recovery");
            break;
        }
        recoveries.push(killed.elapsed());
        wait_until("the application is active again", || c.app(1).is_some_and(|a| a.status.as_str() == "active"));
        let runtime = c.snapshot().unwrap().apps[0].runtime.clone().unwrap();
        start_clocks.push(runtime.start_clock.0);
    }
    eprintln!("start clocks after each recovery: {start_clocks:?}");
    eprintln!("recoveries as the master saw them (its view updates once a second): {recoveries:?}");
    start_clocks
}
