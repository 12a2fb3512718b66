//! Three masters replicating with Raft, two workers, and a client of the leader.

use super::{Proc, free_port, log_tail, wait_until_explained, wordcount};
use gearpump_cluster::daemon::MasterClient;
use gearpump_config::HostPort;
use gearpump_protocol::{ClusterSnapshot, MasterReply, MasterRequest};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GEAR: &str = env!("CARGO_BIN_EXE_gear");

/// Three masters, each in a directory of its own (its own artifact store and Raft log, as on
/// its own machine), and two workers.
pub struct Ha {
    pub dir: PathBuf,
    pub conf: PathBuf,
    pub masters: Vec<HostPort>,
    /// Master processes by position; `None` while one is down.
    pub procs: Vec<Option<Proc>>,
    pub workers: Vec<Proc>,
    /// The network namespace each master runs in, if any.
    pub netns: Option<Vec<String>>,
}

impl Drop for Ha {
    fn drop(&mut self) {
        self.workers.clear();
        self.procs.clear();
        if std::thread::panicking() {
            return;
        }
        // A master that panicked (an assertion of openraft's, say) fails the test even when the
        // others carried on; its directory is kept.
        let panics: Vec<String> = (0..self.masters.len())
            .filter_map(|i| {
                let log = std::fs::read_to_string(self.master_dir(i).join("master.out")).ok()?;
                let at = log.find("panicked at")?;
                Some(format!("master {i}: {}", &log[at..log.len().min(at + 600)]))
            })
            .collect();
        assert!(panics.is_empty(), "a master panicked ({}):\n{}", self.dir.display(), panics.join("\n"));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Ha {
    /// Three masters on free ports of 127.0.0.1.
    pub fn start(name: &str) -> Ha {
        let masters = (0..3).map(|_| HostPort { host: "127.0.0.1".into(), port: free_port() }).collect();
        Self::start_at(name, masters, None)
    }

    /// Three masters at `masters`, each run in its namespace of `netns` if given.
    pub fn start_at(name: &str, masters: Vec<HostPort>, netns: Option<Vec<String>>) -> Ha {
        let dir = std::env::temp_dir().join(format!("gear-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let list: Vec<String> = masters.iter().map(|m| format!("\"{m}\"")).collect();
        let conf = dir.join("test.conf");
        // The secret from a file, as an operator would keep it.
        let secret_file = dir.join("cluster.secret");
        std::fs::write(&secret_file, format!("{}\n", super::SECRET)).unwrap();
        std::fs::write(
            &conf,
            format!(
                "gearpump.cluster.masters = [{}]\ngearpump.cluster.heartbeat-interval-ms = 200\ngearpump.worker.slots = 6\n\
                 gearpump.cluster.secret-file = \"{}\"\n",
                list.join(", "),
                secret_file.display()
            ),
        )
        .unwrap();
        let mut ha = Ha { dir, conf, masters, procs: Vec::new(), workers: Vec::new(), netns };
        for i in 0..3 {
            let p = ha.start_master(i);
            ha.procs.push(Some(p));
        }
        for i in 0..2 {
            let p = ha.start_worker(i);
            ha.workers.push(p);
        }
        let last = std::cell::RefCell::new(None);
        wait_until_explained(
            "two workers registered with the leader",
            || {
                let answer = ha.ask(&MasterRequest::ListWorkers);
                let ok = matches!(&answer, Some(MasterReply::Workers(w)) if w.iter().filter(|w| w.alive).count() == 2);
                *last.borrow_mut() = answer;
                ok
            },
            || ha.explain(&format!("the leader's last answer: {:?}", last.borrow())),
        );
        ha
    }

    /// `first`, then the tails of every master's and worker's log: what a timed-out wait on a
    /// CI machine, whose directories are gone, has to go on.
    pub fn explain(&self, first: &str) -> String {
        let mut text =
            format!("{first}\nmasters: {:?}\n", self.masters.iter().map(ToString::to_string).collect::<Vec<_>>());
        for i in 0..self.masters.len() {
            text.push_str(&log_tail(&self.master_dir(i).join("master.out"), 40));
        }
        for i in 0..self.workers.len() {
            text.push_str(&log_tail(&self.dir.join(format!("worker{i}")).join("worker.out"), 20));
        }
        text
    }

    /// A worker in `dir/worker<i>`.
    pub fn start_worker(&self, i: usize) -> Proc {
        let wdir = self.dir.join(format!("worker{i}"));
        std::fs::create_dir_all(&wdir).unwrap();
        let log = std::fs::File::create(wdir.join("worker.out")).unwrap();
        Proc(
            Command::new(GEAR)
                .arg("-conf")
                .arg(&self.conf)
                .arg("worker")
                .current_dir(&wdir)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    }

    pub fn master_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("master{i}"))
    }

    pub fn start_master(&self, i: usize) -> Proc {
        let dir = self.master_dir(i);
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("master.out")).unwrap();
        let m = &self.masters[i];
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns[i], GEAR]);
                c
            }
            None => Command::new(GEAR),
        };
        Proc(
            cmd.arg("-conf")
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
    pub fn leader_seen_by(&self, i: usize) -> Option<String> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut c = MasterClient::connect_direct(&self.masters[i], &super::secret()).await.ok()?;
            match c.ask(&MasterRequest::WhoLeads, Duration::from_secs(5)).await.ok()? {
                MasterReply::Leader { leader, .. } => leader,
                _ => None,
            }
        })
    }

    /// The position of the leader every live master agrees on.
    pub fn leader(&self) -> Option<usize> {
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
    pub fn ask(&self, req: &MasterRequest) -> Option<MasterReply> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut c = MasterClient::connect(&self.masters, &super::secret()).await.ok()?;
            c.ask(req, Duration::from_secs(10)).await.ok()
        })
    }

    pub fn snapshot(&self) -> Option<ClusterSnapshot> {
        match self.ask(&MasterRequest::Snapshot)? {
            MasterReply::Snapshot(s) => Some(*s),
            _ => None,
        }
    }

    /// The min clock application `id` last reported, if it is active.
    pub fn clock(&self, id: u32) -> Option<i64> {
        let s = self.snapshot()?;
        let app = s.apps.into_iter().find(|a| a.info.id.0 == id && a.info.status.as_str() == "active")?;
        Some(app.runtime?.clock.0)
    }

    pub fn gear(&self, args: &[&str]) -> std::process::Output {
        Command::new(GEAR).arg("-conf").arg(&self.conf).args(args).current_dir(&self.dir).output().unwrap()
    }

    pub fn submit_wordcount(&self, prefix: &str) -> std::process::Output {
        self.submit_wordcount_timed(prefix).0
    }

    /// `gear app` with wordcount; also returns when the master accepted the submission (the
    /// line `Application <id> submitted`), before the application becomes active.
    pub fn submit_wordcount_timed(&self, prefix: &str) -> (std::process::Output, Option<Instant>) {
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

pub fn submitted_id(out: &std::process::Output) -> u32 {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "gear app failed: {text}");
    let at = text.find("Application ").unwrap_or_else(|| panic!("no application id in {text:?}"));
    text[at + "Application ".len()..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap()
}

pub fn artifacts_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("jarstore"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}
