//! Master high availability with real processes: three `gear master` processes replicating
//! their state with Raft, two workers, WordCount running; the leader is SIGKILLed.

mod common;

use common::{Proc, free_port, wait_until, wordcount};
use gearpump_cluster::daemon::MasterClient;
use gearpump_config::HostPort;
use gearpump_protocol::{ClusterSnapshot, MasterReply, MasterRequest};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GEAR: &str = env!("CARGO_BIN_EXE_gear");

/// Three masters, each in a directory of its own (its own artifact store and Raft log, as on
/// its own machine), and two workers.
struct Ha {
    dir: PathBuf,
    conf: PathBuf,
    masters: Vec<HostPort>,
    /// Master processes by position; `None` while one is down.
    procs: Vec<Option<Proc>>,
    workers: Vec<Proc>,
}

impl Drop for Ha {
    fn drop(&mut self) {
        self.workers.clear();
        self.procs.clear();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Ha {
    fn start(name: &str) -> Ha {
        let dir = std::env::temp_dir().join(format!("gear-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let masters: Vec<HostPort> = (0..3).map(|_| HostPort { host: "127.0.0.1".into(), port: free_port() }).collect();
        let list: Vec<String> = masters.iter().map(|m| format!("\"{m}\"")).collect();
        let conf = dir.join("test.conf");
        std::fs::write(
            &conf,
            format!(
                "gearpump.cluster.masters = [{}]\ngearpump.cluster.heartbeat-interval-ms = 200\ngearpump.worker.slots = 6\n",
                list.join(", ")
            ),
        )
        .unwrap();
        let mut ha = Ha { dir, conf, masters, procs: Vec::new(), workers: Vec::new() };
        for i in 0..3 {
            let p = ha.start_master(i);
            ha.procs.push(Some(p));
        }
        for i in 0..2 {
            let wdir = ha.dir.join(format!("worker{i}"));
            std::fs::create_dir_all(&wdir).unwrap();
            let log = std::fs::File::create(wdir.join("worker.out")).unwrap();
            let p = Command::new(GEAR)
                .arg("-conf")
                .arg(&ha.conf)
                .arg("worker")
                .current_dir(&wdir)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            ha.workers.push(Proc(p));
        }
        wait_until("two workers registered with the leader", || {
            ha.ask(&MasterRequest::ListWorkers)
                .is_some_and(|r| matches!(r, MasterReply::Workers(w) if w.iter().filter(|w| w.alive).count() == 2))
        });
        ha
    }

    fn master_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("master{i}"))
    }

    fn start_master(&self, i: usize) -> Proc {
        let dir = self.master_dir(i);
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("master.out")).unwrap();
        let m = &self.masters[i];
        Proc(
            Command::new(GEAR)
                .arg("-conf")
                .arg(&self.conf)
                .args(["master", "-ip", &m.host, "-port", &m.port.to_string()])
                .current_dir(&dir)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    }

    /// The leader as master `i` sees it.
    fn leader_seen_by(&self, i: usize) -> Option<String> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut c = MasterClient::connect_direct(&self.masters[i]).await.ok()?;
            match c.ask(&MasterRequest::WhoLeads, Duration::from_secs(5)).await.ok()? {
                MasterReply::Leader { leader, .. } => leader,
                _ => None,
            }
        })
    }

    /// The position of the leader every live master agrees on.
    fn leader(&self) -> Option<usize> {
        let live: Vec<usize> = (0..3).filter(|i| self.procs[*i].is_some()).collect();
        let seen: Vec<Option<String>> = live.iter().map(|i| self.leader_seen_by(*i)).collect();
        let first = seen.first()?.clone()?;
        if seen.iter().all(|s| s.as_ref() == Some(&first)) {
            self.masters.iter().position(|m| m.to_string() == first)
        } else {
            None
        }
    }

    /// Asks the leading master.
    fn ask(&self, req: &MasterRequest) -> Option<MasterReply> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut c = MasterClient::connect(&self.masters).await.ok()?;
            c.ask(req, Duration::from_secs(10)).await.ok()
        })
    }

    fn snapshot(&self) -> Option<ClusterSnapshot> {
        match self.ask(&MasterRequest::Snapshot)? {
            MasterReply::Snapshot(s) => Some(*s),
            _ => None,
        }
    }

    /// The min clock application `id` last reported, if it is active.
    fn clock(&self, id: u32) -> Option<i64> {
        let s = self.snapshot()?;
        let app = s.apps.into_iter().find(|a| a.info.id.0 == id && a.info.status == "active")?;
        Some(app.runtime?.clock)
    }

    fn gear(&self, args: &[&str]) -> std::process::Output {
        Command::new(GEAR).arg("-conf").arg(&self.conf).args(args).current_dir(&self.dir).output().unwrap()
    }

    fn submit_wordcount(&self, prefix: &str) -> std::process::Output {
        self.submit_wordcount_timed(prefix).0
    }

    /// `gear app` with wordcount; also returns when the master accepted the submission (the
    /// line `Application <id> submitted`), before the application becomes active.
    fn submit_wordcount_timed(&self, prefix: &str) -> (std::process::Output, Option<Instant>) {
        use std::io::BufRead;
        let mut child = Command::new(GEAR)
            .arg("-conf")
            .arg(&self.conf)
            .args(["app", "-namePrefix", prefix, "-jar"])
            .arg(wordcount())
            .args(["-split", "1", "-sum", "1"])
            .current_dir(&self.dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut accepted = None;
        let mut err = String::new();
        for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
            let line = line.unwrap();
            if accepted.is_none() && line.contains(" submitted;") {
                accepted = Some(Instant::now());
            }
            err.push_str(&line);
            err.push('\n');
        }
        let mut out = child.wait_with_output().unwrap();
        out.stderr = err.into_bytes();
        (out, accepted)
    }
}

fn submitted_id(out: &std::process::Output) -> u32 {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "gear app failed: {text}");
    let at = text.find("Application ").unwrap_or_else(|| panic!("no application id in {text:?}"));
    text[at + "Application ".len()..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap()
}

fn artifacts_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("jarstore"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn killing_the_leader_keeps_wordcount_running_and_the_next_submission_gets_the_next_id() {
    let mut ha = Ha::start("ha-failover");
    let first = ha.submit_wordcount("first");
    let id = submitted_id(&first);
    assert_eq!(id, 1);
    wait_until("wordcount's clock moves", || ha.clock(id).is_some_and(|c| c > 0));
    // The binary reached every master before the upload counted (a majority at least; all
    // three are up here).
    let artifact = artifacts_in(&ha.master_dir(0));
    assert_eq!(artifact.len(), 1, "{artifact:?}");
    for i in 1..3 {
        wait_until("every master holds the binary", || artifacts_in(&ha.master_dir(i)) == artifact);
    }

    let mut old = None;
    wait_until("the masters agree on a leader", || {
        old = ha.leader();
        old.is_some()
    });
    let old = old.unwrap();
    let killed_at = Instant::now();
    ha.procs[old] = None; // SIGKILL
    eprintln!("killed the leader, master {}", ha.masters[old]);

    let mut new = None;
    wait_until("a new leader", || {
        new = ha.leader().filter(|l| *l != old);
        new.is_some()
    });
    let elected = killed_at.elapsed();
    // The first submission after the failover: the next id.
    let (second, accepted) = ha.submit_wordcount_timed("second");
    assert_eq!(submitted_id(&second), 2);
    let accepted = accepted.expect("gear app said the application was submitted") - killed_at;
    eprintln!("failover: a new leader after {elected:?}, the first submission accepted after {accepted:?}");

    // The same applications, and the running one still runs: its AppMaster registered with the
    // new leader and reports a clock that moves on.
    let info = ha.gear(&["info"]);
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(info.status.success(), "{text}");
    assert!(text.contains("application: 1, name: first_wordCount, status: active"), "{text}");
    assert!(text.contains("application: 2, name: second_wordCount"), "{text}");
    let mut before = None;
    wait_until("the first application reports to the new leader", || {
        before = ha.clock(1);
        before.is_some()
    });
    wait_until("its clock moves on", || ha.clock(1).is_some_and(|c| c > before.unwrap()));
    wait_until("the second application runs", || ha.clock(2).is_some_and(|c| c > 0));

    // The killed master comes back and catches up: it learns of the second binary from the
    // replicated log and fetches it from the others.
    ha.procs[old] = Some(ha.start_master(old));
    let binaries = artifacts_in(&ha.master_dir(new.unwrap()));
    assert_eq!(binaries.len(), 1, "both applications are the same binary: {binaries:?}");
    wait_until("the restarted master follows the leader", || {
        ha.leader_seen_by(old).is_some_and(|l| l == ha.masters[new.unwrap()].to_string())
    });
    // The restarted master answers as a follower: the leader serves.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let reply = rt.block_on(async {
        let mut c = MasterClient::connect_direct(&ha.masters[old]).await.unwrap();
        c.ask(&MasterRequest::ListApps, Duration::from_secs(5)).await.unwrap()
    });
    assert!(matches!(reply, MasterReply::NotLeader { leader: Some(_) }), "{reply:?}");
    // Kill the new leader too: the restarted master and the third form the majority, and the
    // state they agree on has both applications.
    let newer = new.unwrap();
    ha.procs[newer] = None;
    wait_until("a third leader", || ha.leader().is_some_and(|l| l != newer));
    let info = ha.gear(&["info"]);
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("application: 1, name: first_wordCount, status: active"), "{text}");
    assert!(text.contains("application: 2, name: second_wordCount, status: active"), "{text}");
    let third = ha.submit_wordcount("third");
    assert_eq!(submitted_id(&third), 3);
}
