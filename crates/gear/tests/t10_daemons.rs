//! The `gear` daemons as real processes on 127.0.0.1.

mod common;

use common::{Proc, wait_until};
use gearpump_cluster::daemon::MasterClient;
use gearpump_config::HostPort;
use gearpump_protocol::{MasterReply, MasterRequest, WorkerInfo};
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const GEAR: &str = env!("CARGO_BIN_EXE_gear");

struct Cluster {
    dir: common::TestDir,
    conf: PathBuf,
    master: HostPort,
}

impl Cluster {
    fn new(name: &str) -> Cluster {
        let (dir, conf, port) = common::cluster_dir(
            name,
            "gearpump.cluster.heartbeat-interval-ms = 100\n\
             gearpump.cluster.worker-timeout-ms = 1000\n\
             gearpump.worker.slots = 3\n",
        );
        Cluster { dir, conf, master: HostPort { host: "127.0.0.1".into(), port } }
    }

    fn gear(&self, args: &[&str]) -> Command {
        let mut c = Command::new(GEAR);
        c.args(args).arg("-conf").arg(&self.conf).current_dir(&self.dir).env("RUST_LOG", "info");
        c
    }

    fn spawn(&self, args: &[&str]) -> Proc {
        Proc(self.gear(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap())
    }

    fn run(&self, args: &[&str]) -> Output {
        self.gear(args).output().unwrap()
    }

    fn start_master(&self) -> Proc {
        let port = self.master.port.to_string();
        let p = self.spawn(&["master", "-ip", "127.0.0.1", "-port", &port]);
        wait_until("the master answers", || self.workers().is_some());
        p
    }

    fn workers(&self) -> Option<Vec<WorkerInfo>> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut c = MasterClient::connect(std::slice::from_ref(&self.master), &common::secret()).await.ok()?;
            match c.ask(&MasterRequest::ListWorkers, Duration::from_secs(5)).await.ok()? {
                MasterReply::Workers(w) => Some(w),
                _ => None,
            }
        })
    }

    fn alive_workers(&self) -> usize {
        self.workers().unwrap_or_default().iter().filter(|w| w.alive).count()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_master_and_two_workers_and_a_worker_killed() {
    let c = Cluster::new("workers");
    let _master = c.start_master();
    let mut w1 = c.spawn(&["worker"]);
    let _w2 = c.spawn(&["worker"]);
    wait_until("two workers registered", || c.alive_workers() == 2);
    let slots: Vec<u32> = c.workers().unwrap().iter().map(|w| w.slots).collect();
    assert_eq!(slots, vec![3, 3], "slots come from gear.conf");

    // SIGKILL a worker: its connection closes and the master notices.
    w1.0.kill().unwrap();
    w1.0.wait().unwrap();
    wait_until("the killed worker is noticed", || c.alive_workers() == 1);

    // Daemon logs are written under gearpump.log.daemon.dir.
    let logs: Vec<_> = std::fs::read_dir(c.dir.join("logs")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(logs.iter().any(|n| n.to_string_lossy().starts_with("master-127.0.0.1-")), "{logs:?}");
    assert!(logs.iter().filter(|n| n.to_string_lossy().starts_with("worker-")).count() >= 2, "{logs:?}");
    let master_log =
        std::fs::read_to_string(c.dir.join("logs").join(format!("master-127.0.0.1-{}.log", c.master.port))).unwrap();
    assert!(master_log.contains("Worker is dead"), "{master_log}");
}

#[test]
fn random_bytes_on_the_master_port_leave_it_running() {
    let c = Cluster::new("garbage");
    let _master = c.start_master();
    let _w = c.spawn(&["worker"]);
    wait_until("the worker registered", || c.alive_workers() == 1);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..20 {
        let mut s = TcpStream::connect((c.master.host.as_str(), c.master.port)).unwrap();
        let bytes: Vec<u8> = match round {
            0 => b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            // A valid hello, then a huge length, then a frame that does not decode.
            // A hello of the old version; a hello with a nonce and then a made-up proof.
            1 => [&b"GPCP\x01\x00"[..], &u32::MAX.to_le_bytes()].concat(),
            2 => [&b"GPCP\x02\x00"[..], &[7; 32][..], &[4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff][..], &[0; 32][..]].concat(),
            _ => (0..4096)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng as u8
                })
                .collect(),
        };
        let _ = s.write_all(&bytes);
    }
    // Still serving, and the worker it had is still registered.
    wait_until("the master still answers", || c.alive_workers() == 1);
    let info = c.run(&["info"]);
    assert!(info.status.success(), "{}", stderr(&info));
}

#[test]
fn nodes_without_the_cluster_secret_are_refused_and_the_master_names_them() {
    let c = Cluster::new("auth");
    let _master = c.start_master();
    let port = c.master.port;
    // The same cluster without the secret, and with another one.
    let none = c.dir.join("none.conf");
    std::fs::write(&none, format!("gearpump.cluster.masters = [\"127.0.0.1:{port}\"]\n")).unwrap();
    let other = c.dir.join("other.conf");
    std::fs::write(
        &other,
        format!("gearpump.cluster.masters = [\"127.0.0.1:{port}\"]\ngearpump.cluster.secret = \"not the cluster's secret\"\n"),
    )
    .unwrap();
    for conf in [&none, &other] {
        let run =
            |args: &[&str]| Command::new(GEAR).arg("-conf").arg(conf).args(args).current_dir(&c.dir).output().unwrap();
        // A worker exits at once, saying why (rather than retrying for master-timeout).
        let worker = run(&["worker"]);
        assert!(!worker.status.success());
        assert!(stderr(&worker).contains("cluster secret"), "{}", stderr(&worker));
        let info = run(&["info"]);
        assert!(!info.status.success());
        assert!(stderr(&info).contains("cluster secret"), "{}", stderr(&info));
        let kill = run(&["kill", "-appid", "1"]);
        assert!(!kill.status.success() && stderr(&kill).contains("cluster secret"), "{}", stderr(&kill));
    }
    // Nothing of them registered, and the master said whom it refused.
    assert_eq!(c.workers().map(|w| w.len()), Some(0));
    let log = std::fs::read_to_string(c.dir.join("logs").join(format!("master-127.0.0.1-{port}.log"))).unwrap();
    let refusals: Vec<&str> = log.lines().filter(|l| l.contains("Refused a control connection")).collect();
    assert!(refusals.len() >= 3, "{log}");
    assert!(refusals.iter().all(|l| l.contains("peer=127.0.0.1:") && l.contains("cluster secret")), "{refusals:?}");
    // The secret never shows in what the master logs.
    assert!(!log.contains(common::SECRET) && !log.contains("not the cluster's secret"), "{log}");
    // Those with the secret are served.
    let _w = c.spawn(&["worker"]);
    wait_until("the worker with the secret registered", || c.alive_workers() == 1);
    assert!(c.run(&["info"]).status.success());
}

#[test]
fn info_and_kill_speak_the_guide_format_and_fail_clearly() {
    let c = Cluster::new("cli");
    let _master = c.start_master();
    let info = c.run(&["info"]);
    assert!(info.status.success());
    assert_eq!(String::from_utf8_lossy(&info.stdout).lines().next(), Some("== Application Information =="));

    let kill = c.run(&["kill", "-appid", "7"]);
    assert!(!kill.status.success());
    assert!(stderr(&kill).contains("application 7 does not exist"), "{}", stderr(&kill));
    // GNU options work too.
    let kill = c.run(&["kill", "--appid", "8"]);
    assert!(stderr(&kill).contains("application 8 does not exist"), "{}", stderr(&kill));
}

#[test]
fn bad_configuration_and_arguments_are_named() {
    let c = Cluster::new("badconf");
    let bad = c.dir.join("bad.conf");
    std::fs::write(&bad, "gearpump.worker.slot = 3\n").unwrap();
    let out = Command::new(GEAR).args(["worker", "-conf"]).arg(&bad).current_dir(&c.dir).output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("gearpump.worker.slot") && err.contains("bad.conf") && err.contains("gearpump.worker.slots"),
        "{err}"
    );

    let out = c.run(&["master", "-ip", "127.0.0.1", "-port", "1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is not in gearpump.cluster.masters"), "{}", stderr(&out));

    let out = c.run(&["master", "-ip", "127.0.0.1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--port"), "{}", stderr(&out));

    // No master: a clear error, not a hang.
    let out = c.run(&["info"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no master answers"), "{}", stderr(&out));
    let missing = Path::new("/no/such.conf");
    let out = Command::new(GEAR).args(["info", "-conf"]).arg(missing).output().unwrap();
    assert!(stderr(&out).contains("/no/such.conf: cannot read"), "{}", stderr(&out));
}

#[test]
fn local_runs_a_master_and_its_workers_in_one_process() {
    let c = Cluster::new("local");
    let _local = c.spawn(&["local", "-workernum", "3"]);
    wait_until("three local workers registered", || c.alive_workers() == 3);
}
