//! A test cluster of real `gear` processes and a client of its master.

use super::{Proc, TestDir, wait_until};
use gearpump_cluster::daemon::MasterClient;
use gearpump_config::HostPort;
use gearpump_protocol::{AppInfo, MasterReply, MasterRequest, WorkerInfo};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const GEAR: &str = env!("CARGO_BIN_EXE_gear");

/// A master and workers (or `gear local`) in a directory of their own.
pub struct Cluster {
    /// Its directory, removed after a passing test (each holds copies of the application
    /// binary); a failing one's stays for its logs.
    pub dir: TestDir,
    /// Its gear.conf.
    pub conf: PathBuf,
    /// The master.
    pub master: HostPort,
    /// Its processes, killed when it is dropped.
    pub procs: Vec<Proc>,
    /// What the tests' own client proves: the conf's secret and TLS settings.
    pub client: gearpump_protocol::ClusterSecret,
}

impl Drop for Cluster {
    /// Stops the processes before the directory goes.
    fn drop(&mut self) {
        self.procs.clear();
    }
}

impl Cluster {
    /// A master and two workers, each its own process.
    pub fn start(name: &str) -> Cluster {
        Self::start_with(name, "")
    }

    /// `gear local -sameprocess -workernum 2`: one process for the master and workers; each
    /// application in its AppMaster's process.
    pub fn start_local_same_process(name: &str) -> Cluster {
        let mut c = Self::configure(name, "");
        let p = c.spawn(&["local", "-sameprocess", "-workernum", "2"], "local");
        c.procs.push(p);
        wait_until("two local workers registered", || {
            c.workers().unwrap_or_default().iter().filter(|w| w.alive).count() == 2
        });
        c
    }

    /// The same, with extra `gear.conf` lines.
    pub fn start_with(name: &str, extra_conf: &str) -> Cluster {
        let mut c = Self::configure(name, extra_conf);
        let port = c.master.port;
        let p = c.spawn(&["master", "-ip", "127.0.0.1", "-port", &port.to_string()], "master");
        c.procs.push(p);
        wait_until("the master answers", || c.workers().is_some());
        for i in 0..2 {
            c.add_worker(i);
        }
        wait_until("two workers registered", || {
            c.workers().unwrap_or_default().iter().filter(|w| w.alive).count() == 2
        });
        c
    }

    /// Starts worker process `i` (in directory `worker<i>`, as on a machine of its own); it is
    /// pushed onto [`Cluster::procs`].
    pub fn add_worker(&mut self, i: usize) {
        let wdir = self.dir.join(format!("worker{i}"));
        std::fs::create_dir_all(&wdir).unwrap();
        let p = Proc(
            Command::new(GEAR)
                .args(["worker", "-conf"])
                .arg(&self.conf)
                .current_dir(&wdir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        self.procs.push(p);
    }

    /// A directory and a gear.conf for a test cluster.
    pub fn configure(name: &str, extra_conf: &str) -> Cluster {
        let (dir, conf, port) = super::cluster_dir(
            name,
            &format!("gearpump.cluster.heartbeat-interval-ms = 200\ngearpump.worker.slots = 4\n{extra_conf}"),
        );
        let client = gearpump_config::GearConfig::defaults().with_file(&conf).unwrap().cluster_secret().unwrap();
        Cluster { dir, conf, master: HostPort { host: "127.0.0.1".into(), port }, procs: Vec::new(), client }
    }

    pub fn gear(&self, args: &[&str]) -> Command {
        let mut c = Command::new(GEAR);
        c.arg("-conf").arg(&self.conf).args(args).current_dir(&self.dir);
        c
    }

    pub fn spawn(&self, args: &[&str], name: &str) -> Proc {
        let log = std::fs::File::create(self.dir.join(format!("{name}.out"))).unwrap();
        Proc(self.gear(args).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap())
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.gear(args).output().unwrap()
    }

    pub fn ask(&self, req: &MasterRequest) -> Option<MasterReply> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut c = MasterClient::connect(std::slice::from_ref(&self.master), &self.client).await.ok()?;
            c.ask(req, Duration::from_secs(10)).await.ok()
        })
    }

    pub fn workers(&self) -> Option<Vec<WorkerInfo>> {
        match self.ask(&MasterRequest::ListWorkers)? {
            MasterReply::Workers(w) => Some(w),
            _ => None,
        }
    }

    /// The master's whole view: applications with their runtime (executors, clock).
    pub fn snapshot(&self) -> Option<gearpump_protocol::ClusterSnapshot> {
        match self.ask(&MasterRequest::Snapshot)? {
            MasterReply::Snapshot(s) => Some(*s),
            _ => None,
        }
    }

    pub fn app(&self, id: u32) -> Option<AppInfo> {
        match self.ask(&MasterRequest::ListApps)? {
            MasterReply::Apps(apps) => apps.into_iter().find(|a| a.id.0 == id),
            _ => None,
        }
    }

    pub fn wait_status(&self, id: u32, status: &str) -> AppInfo {
        let mut last = None;
        wait_until(&format!("application {id} is {status}"), || {
            last = self.app(id);
            last.as_ref().is_some_and(|a| a.status.as_str() == status)
        });
        last.unwrap()
    }
}
