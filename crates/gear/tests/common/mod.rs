//! Helpers shared by the process-level tests.

#[allow(dead_code)] // Only the recovery tests kill processes.
pub mod chaos;
#[allow(dead_code)] // Not every test file starts a cluster.
pub mod cluster;
#[allow(dead_code)] // Only the master HA tests start several masters.
pub mod ha;

use gearpump_protocol::ClusterSecret;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The cluster secret every test cluster runs with: the whole process-level suite runs with
/// authentication on.
pub const SECRET: &str = "the test clusters' shared secret";

/// [`SECRET`] as the clients of the test clusters prove it.
#[allow(dead_code)] // Not every test file talks to a master itself.
pub fn secret() -> ClusterSecret {
    ClusterSecret::new(SECRET).unwrap()
}

/// A child process, killed (by its PID) and reaped when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `ok` until it holds. The deadline only bounds a hang on this shared, noisy machine;
/// it measures nothing.
pub fn wait_until(what: &str, ok: impl FnMut() -> bool) {
    wait_until_explained(what, ok, String::new);
}

/// [`wait_until`], and on a timeout the panic message carries `explain()` (the logs of the
/// processes involved, say), so that a failure on a CI machine, whose directories are gone,
/// still says why.
pub fn wait_until_explained(what: &str, mut ok: impl FnMut() -> bool, explain: impl FnOnce() -> String) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ok() {
        if Instant::now() >= deadline {
            panic!("timed out waiting until {what}\n{}", explain());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last `lines` lines of the file at `path`, headed by its path (or why it cannot be read).
#[allow(dead_code)] // Not every test file explains a timeout with logs.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let from = all.len().saturating_sub(lines);
            format!("--- {} (last {} lines)\n{}\n", path.display(), all.len() - from, all[from..].join("\n"))
        }
        Err(e) => format!("--- {}: {e}\n", path.display()),
    }
}

/// A test's directory, removed when dropped unless the test is failing (then it stays for its
/// logs). Each cluster's directory holds copies of application binaries, so leaving passing
/// tests' directories behind fills the disk of a CI machine.
pub struct TestDir(pub PathBuf);

impl std::ops::Deref for TestDir {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A fresh directory for a test cluster and a `gear.conf` in it naming a free local master port
/// and holding `conf_lines`; returns (directory, conf file, master port).
pub fn cluster_dir(name: &str, conf_lines: &str) -> (TestDir, PathBuf, u16) {
    let dir = std::env::temp_dir().join(format!("gear-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let conf = dir.join("test.conf");
    std::fs::write(
        &conf,
        format!(
            "gearpump.cluster.masters = [\"127.0.0.1:{port}\"]\ngearpump.cluster.secret = \"{SECRET}\"\n{conf_lines}"
        ),
    )
    .unwrap();
    (TestDir(dir), conf, port)
}

/// An example binary beside `gear`, built if this test runs without the rest of the
/// workspace.
#[allow(dead_code)] // Not every test file submits an example.
pub fn example(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_gear")).with_file_name(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo).args(["build", "-p", "gearpump-examples", "--bin", name]).status().unwrap();
        assert!(status.success(), "building the {name} example");
    }
    path
}

/// The wordcount example binary beside `gear`.
#[allow(dead_code)]
pub fn wordcount() -> PathBuf {
    example("wordcount")
}

/// `gear -conf <conf> local <args>` in `dir`, its output into `dir/local.out`.
#[allow(dead_code)]
pub fn gear_local(dir: &Path, conf: &Path, args: &[&str]) -> Proc {
    let log = std::fs::File::create(dir.join("local.out")).unwrap();
    Proc(
        Command::new(env!("CARGO_BIN_EXE_gear"))
            .arg("-conf")
            .arg(conf)
            .arg("local")
            .args(args)
            .current_dir(dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// `gear app` submitting `wordcount -split 1 -sum 1` to the cluster of `conf`.
#[allow(dead_code)]
pub fn submit_wordcount(dir: &Path, conf: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gear"))
        .arg("-conf")
        .arg(conf)
        .args(["app", "-jar"])
        .arg(wordcount())
        .args(["-split", "1", "-sum", "1"])
        .current_dir(dir)
        .output()
        .unwrap()
}

/// A free port on 127.0.0.1 (free when asked; good enough for tests on one machine), never
/// one handed out before in this test process: tests run in parallel threads, and two clusters
/// given the same port would both start and talk to each other's masters (they share a secret).
#[allow(dead_code)]
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}
