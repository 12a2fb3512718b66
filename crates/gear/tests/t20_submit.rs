//! Application binaries submitted with `gear app` and run as AppMaster and executor
//! processes on real worker processes, with the TCP data plane between them.

mod common;

use common::cluster::Cluster;
use common::{wait_until, wordcount};
use std::collections::HashMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

/// Drops terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn a_finite_wordcount_across_processes_gives_exact_counts() {
    let c = Cluster::start("exact");
    run_finite_wordcount(&c);
    // An AppMaster and two executors ran, with their logs under the application's directory,
    // and the tasks were spread over both workers.
    for w in 0..2 {
        let logs = c.dir.join(format!("worker{w}/logs/app1"));
        assert!(logs.is_dir(), "worker {w} ran no process of the application");
    }
    // The slots are free again.
    wait_until("slots freed", || c.workers().unwrap().iter().all(|w| w.used == 0));
}

/// The system-level serializer of gear.conf is used between the executors: counts still exact.
#[test]
fn a_system_level_serializer_from_gear_conf_carries_the_words() {
    let c = Cluster::start_with("serializer", "gearpump.serializers { \"alloc::string::String\" = \"raw_utf8\" }\n");
    run_finite_wordcount(&c);
    let bad = Cluster::start_with(
        "badserializer",
        "gearpump.serializers { \"alloc::string::String\" = \"no_such_codec\" }\n",
    );
    let bin = wordcount();
    let out = bad.run(&["app", "-jar", bin.to_str().unwrap(), "-rounds", "10"]);
    assert!(!out.status.success(), "{}", text(&out));
    let info = bad.wait_status(1, "failed");
    let error = info.error.unwrap_or_default();
    assert!(error.contains("gearpump.serializers") && error.contains("no_such_codec"), "{error}");
}

/// `gear local -sameprocess`: the application runs in its AppMaster's process; no executor
/// process is started, and the counts are exact.
#[test]
fn local_same_process_runs_the_executors_inside_the_appmaster() {
    let c = Cluster::start_local_same_process("sameprocess");
    run_finite_wordcount(&c);
    let logs: Vec<String> = std::fs::read_dir(c.dir.join("logs/app1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(logs, vec!["appmaster.log".to_string()], "no executor processes");
}

/// Runs wordcount -split 2 -sum 2 for 400 rounds as application 1 and checks its counts.
fn run_finite_wordcount(c: &Cluster) {
    let out_dir = c.dir.join("counts");
    std::fs::create_dir_all(&out_dir).unwrap();
    let bin = wordcount();
    let out = c.run(&[
        "app",
        "-jar",
        bin.to_str().unwrap(),
        "-split",
        "2",
        "-sum",
        "2",
        "-rounds",
        "400",
        "-output",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Submitted application wordCount as application 1"), "{}", text(&out));
    let info = c.wait_status(1, "succeeded");
    assert_eq!(info.error, None);

    let mut counts: HashMap<String, u64> = HashMap::new();
    for i in 0..2 {
        let file = std::fs::read_to_string(out_dir.join(format!("sum-{i}.txt"))).unwrap();
        for line in file.lines() {
            let (w, n) = line.rsplit_once(' ').unwrap();
            *counts.entry(w.to_string()).or_default() += n.parse::<u64>().unwrap();
        }
    }
    assert_eq!(counts, gearpump_examples::wordcount::expected_counts(gearpump_examples::wordcount::TEXT_TO_SPLIT, 400));
}

#[test]
fn submit_kill_duplicates_and_bad_binaries() {
    let c = Cluster::start("kill");
    let bin = wordcount();
    let bin = bin.to_str().unwrap();
    let out = c.run(&["app", "-jar", bin, "-split", "2", "-sum", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("is active"), "{}", text(&out));
    assert_eq!(c.app(1).unwrap().status.as_str(), "active");
    // 4 tasks + 1 AppMaster on 2 workers.
    let used: Vec<u32> = c.workers().unwrap().iter().map(|w| w.used).collect();
    assert_eq!(used.iter().sum::<u32>(), 5, "{used:?}");
    assert!(used.iter().all(|&u| u >= 2), "tasks on both workers: {used:?}");

    let info = c.run(&["info"]);
    assert!(text(&info).contains("application: 1, name: wordCount, status: active, worker: "), "{}", text(&info));

    // Random bytes on the executors' data ports close those connections only.
    let data_ports: Vec<String> = (0..2)
        .filter_map(|w| std::fs::read_to_string(c.dir.join(format!("worker{w}/logs/app1/appmaster.log"))).ok())
        .map(|log| strip_ansi(&log))
        .flat_map(|log| {
            log.lines()
                .filter(|l| l.contains("Executor registered"))
                .filter_map(|l| {
                    l.split("data_addr=").nth(1).map(|a| a.split_whitespace().next().unwrap_or("").to_string())
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(data_ports.len(), 2, "two executors announced data ports");
    for addr in &data_ports {
        for garbage in [&b"GET / HTTP/1.1\r\n\r\n"[..], &[0xff; 3000][..]] {
            let mut s = std::net::TcpStream::connect(addr.as_str()).unwrap();
            let _ = std::io::Write::write_all(&mut s, garbage);
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(c.app(1).unwrap().status.as_str(), "active", "the application survives garbage on its data ports");

    // A second one of the same name is refused while the first runs.
    let dup = c.run(&["app", "-jar", bin, "-split", "1", "-sum", "1"]);
    assert!(!dup.status.success());
    assert!(text(&dup).contains("already running as application 1"), "{}", text(&dup));
    // With a prefix, it is another name.
    let kill = c.run(&["kill", "-appid", "1"]);
    assert!(kill.status.success(), "{}", text(&kill));
    c.wait_status(1, "terminated");
    let again = c.run(&["kill", "-appid", "1"]);
    assert!(!again.status.success());
    assert!(text(&again).contains("is not running; it is terminated"), "{}", text(&again));
    // -namePrefix prepends with `_`; -executors 3 runs it on three executor processes.
    // Submitted as a named user: the master records that name.
    let prefixed = c
        .gear(&["app", "-namePrefix", "second", "-executors", "3", "-jar", bin, "-split", "2", "-sum", "1"])
        .env("USER", "alice_probe")
        .output()
        .unwrap();
    assert!(prefixed.status.success(), "{}", text(&prefixed));
    assert_eq!(c.app(2).unwrap().name, "second_wordCount");
    assert_eq!(c.app(2).unwrap().user, "alice_probe", "the submitter's name is recorded");
    let executor_logs: usize = (0..2)
        .map(|w| {
            std::fs::read_dir(c.dir.join(format!("worker{w}/logs/app2")))
                .map(|d| {
                    d.filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("executor")).count()
                })
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(executor_logs, 3, "three executor processes");

    assert!(c.run(&["kill", "-appid", "2"]).status.success());
    c.wait_status(2, "terminated");
    wait_until("slots freed", || c.workers().unwrap().iter().all(|w| w.used == 0));

    let missing = c.run(&["app", "-jar", "/no/such/binary"]);
    assert!(!missing.status.success());
    assert!(text(&missing).contains("no application binary at /no/such/binary"), "{}", text(&missing));
    let not_app = c.run(&["app", "-jar", "/bin/true"]);
    assert!(!not_app.status.success());
    assert!(text(&not_app).contains("is not a Gearpump application binary"), "{}", text(&not_app));
    // A relative path without `./` names a file in the working directory, not a program on
    // the PATH ("No such file" before).
    std::fs::copy("/bin/true", c.dir.join("true_copy")).unwrap();
    let relative = c.run(&["app", "-jar", "true_copy"]);
    assert!(text(&relative).contains("true_copy is not a Gearpump application binary"), "{}", text(&relative));
    let not_exec = c.dir.join("test.conf");
    let out = c.run(&["app", "-jar", not_exec.to_str().unwrap()]);
    assert!(text(&out).contains("is not an executable file"), "{}", text(&out));
}

/// PIDs of running processes whose executable lies under `dir`.
fn processes_under(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| {
            let e = e.ok()?;
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let exe = std::fs::read_link(e.path().join("exe")).ok()?;
            exe.starts_with(dir).then_some(pid)
        })
        .collect()
}

#[test]
fn a_binary_handed_configuration_keys_it_does_not_know_still_submits() {
    // As when the cluster was upgraded after the binary was built: the client role gets the
    // cluster's configuration with a key this binary's version lacks.
    let c = Cluster::start("newer-conf");
    let conf = format!("gearpump.cluster.secret = \"{}\"\ngearpump.some-later-version.key = 1\n", common::SECRET);
    let out = std::process::Command::new(common::wordcount())
        .args(["-split", "1", "-sum", "1"])
        .env("GEARPUMP_ROLE", "client")
        .env("GEARPUMP_MASTERS", c.master.to_string())
        .env("GEARPUMP_CONF", conf)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("gearpump.some-later-version.key"), "the left-out key is named: {text}");
    c.wait_status(1, "active");
}

/// A SIGKILLed worker takes the application processes it started with it; the master marks
/// the application failed, naming the worker.
#[test]
fn killing_the_workers_takes_their_processes_with_them() {
    let mut c = Cluster::start("orphans");
    let bin = wordcount();
    let out = c.run(&["app", "-jar", bin.to_str().unwrap(), "-split", "2", "-sum", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    let app_processes = processes_under(&c.dir);
    assert_eq!(app_processes.len(), 3, "an AppMaster and two executors: {app_processes:?}");
    // Kill the workers (the last two processes started), not the master.
    for mut p in c.procs.drain(1..) {
        p.0.kill().unwrap();
        p.0.wait().unwrap();
    }
    wait_until("the orphaned application processes exit", || processes_under(&c.dir).is_empty());
    let info = c.wait_status(1, "failed");
    assert!(info.error.unwrap_or_default().contains("died"));
}

/// A cluster with TLS on its control plane and HTTPS on its services: applications run as
/// usual (workers, AppMaster and executors all on TLS), the REST API answers over HTTPS with a
/// `Secure` login cookie, and a node or client without TLS is refused, the master naming it.
#[test]
fn a_cluster_on_tls_runs_applications_serves_https_and_refuses_nodes_without_tls() {
    let certs = common::TestDir(std::env::temp_dir().join(format!("gear-test-tls-certs-{}", std::process::id())));
    std::fs::create_dir_all(&certs.0).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let (crt, key) = (certs.join("cluster.crt"), certs.join("cluster.key"));
    std::fs::write(&crt, cert.cert.pem()).unwrap();
    std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
    let http_port = common::free_port();
    let boss = gearpump_services::auth::hash_password("boss-password");
    let c = Cluster::start_with(
        "tls",
        &format!(
            "gearpump.tls.enabled = true\ngearpump.tls.cert-file = \"{}\"\ngearpump.tls.key-file = \"{}\"\n\
             gearpump.services.tls.enabled = true\ngearpump.services.http = {http_port}\n\
             gearpump.ui-security.authentication-enabled = true\ngearpump.ui-security.admins {{ boss = \"{boss}\" }}\n",
            crt.display(),
            key.display()
        ),
    );
    assert!(c.client.tls().is_some(), "the tests' client speaks TLS too");
    run_finite_wordcount(&c);

    // HTTPS, checked against the cluster's certificate.
    let _services = c.spawn(&["services"], "services");
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&[ureq::tls::Certificate::from_pem(
            cert.cert.pem().as_bytes(),
        )
        .unwrap()]))
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder().tls_config(tls).http_status_as_error(false).build().into();
    let url = format!("https://127.0.0.1:{http_port}");
    wait_until("the services answer over HTTPS", || agent.get(format!("{url}/api/v1.0/whoami")).call().is_ok());
    let login = agent
        .post(format!("{url}/login"))
        .header("content-type", "application/json")
        .send(r#"{"user": "boss", "password": "boss-password"}"#)
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers().get("set-cookie").unwrap().to_str().unwrap().to_string();
    assert!(cookie.contains("Secure") && cookie.contains("HttpOnly"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_string();
    let mut apps = agent.get(format!("{url}/api/v1.0/master/applist")).header("cookie", &session).call().unwrap();
    let apps: serde_json::Value = apps.body_mut().read_json().unwrap();
    assert_eq!(apps["appMasters"][0]["status"], "succeeded", "{apps}");
    // Plain HTTP on the HTTPS port gets no answer.
    let plain = ureq::get(format!("http://127.0.0.1:{http_port}/api/v1.0/whoami")).call();
    assert!(plain.is_err(), "{plain:?}");

    // A worker and a client without TLS are refused at once, saying why; the master names them.
    let plain_conf = c.dir.join("plain.conf");
    std::fs::write(
        &plain_conf,
        format!("gearpump.cluster.masters = [\"{}\"]\ngearpump.cluster.secret = \"{}\"\n", c.master, common::SECRET),
    )
    .unwrap();
    for args in [&["info"][..], &["worker"][..]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gear"))
            .arg("-conf")
            .arg(&plain_conf)
            .args(args)
            .current_dir(&c.dir)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(text(&out).contains("gearpump.tls.enabled"), "{args:?}: {}", text(&out));
    }
    let log =
        std::fs::read_to_string(c.dir.join("logs").join(format!("master-127.0.0.1-{}.log", c.master.port))).unwrap();
    let refusals: Vec<&str> = log.lines().filter(|l| l.contains("Refused a control connection")).collect();
    assert!(refusals.len() >= 2, "{log}");
    assert!(refusals.iter().all(|l| l.contains("peer=127.0.0.1:") && l.contains("TLS")), "{refusals:?}");
    assert_eq!(c.workers().unwrap().iter().filter(|w| w.alive).count(), 2, "nothing joined");
}

/// `gear app -wait` returns when the application ends, its exit status following the
/// application's: 0 when it succeeded, 1 (naming the status) when it was killed.
#[test]
fn gear_app_wait_returns_when_the_application_ends_with_its_status() {
    let c = Cluster::start("wait");
    let bin = wordcount();
    let bin = bin.to_str().unwrap();
    let out = c.run(&["app", "-wait", "-jar", bin, "-split", "1", "-sum", "1", "-rounds", "50"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Application 1 succeeded"), "{}", text(&out));
    assert_eq!(c.app(1).unwrap().status.as_str(), "succeeded", "it returned only once the application had ended");

    // Without -rounds wordcount runs until killed.
    let waiting = c
        .gear(&["app", "-wait", "-jar", bin, "-split", "1", "-sum", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.wait_status(2, "active");
    assert!(c.run(&["kill", "-appid", "2"]).status.success());
    let out = waiting.wait_with_output().unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("application 2 is terminated"), "{}", text(&out));
}

/// The lines of every worker's daemon log (`worker<i>/logs/worker*.log`).
fn worker_log_lines(c: &Cluster) -> Vec<String> {
    let mut lines = Vec::new();
    for w in 0..2 {
        let Ok(dir) = std::fs::read_dir(c.dir.join(format!("worker{w}/logs"))) else { continue };
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("worker") && name.ends_with(".log") {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                lines.extend(text.lines().map(strip_ansi));
            }
        }
    }
    lines
}

/// MessageCount's count tasks take 3 s to stop here (they write their files at the end of
/// `on_stop`, as a sink flushing to slow storage would): the application is reported
/// succeeded only once they have, with every count written, and each of its processes exits
/// by itself instead of being killed. Tasks that take longer than
/// `gearpump.application.stop-timeout-ms` are given up: the application fails, naming them.
#[test]
fn an_application_ends_once_its_tasks_stopped_and_its_processes_exit_by_themselves() {
    let c = Cluster::start_with(
        "graceful",
        "gearpump.worker.slots = 8\ngearpump.application.stop-timeout-ms = 6000\ngearpump.application.total-retries = 0\n",
    );
    let bin = common::example("message_count");
    let bin = bin.to_str().unwrap();
    let out = c.dir.join("counts");
    let args = ["app", "-executors", "2", "-jar", bin, "-countTask", "2", "-output", out.to_str().unwrap()];
    let mut slow = args.to_vec();
    slow.extend_from_slice(&["-messages", "20000", "-stopDelayMs", "3000"]);
    let submitted = c.run(&slow);
    assert!(submitted.status.success(), "{}", text(&submitted));
    let info = c.wait_status(1, "succeeded");
    assert_eq!(info.error, None);
    // Read at once: the counts were written before the end was reported.
    let mut count = 0;
    for i in 0..2 {
        let file = out.join(format!("count-{i}.txt"));
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        count += text.split(' ').next().unwrap().parse::<u64>().unwrap();
    }
    assert_eq!(count, 20000);
    // The AppMaster and the two executors exited, none of them by a kill.
    let exits = |app: &str| -> Vec<String> {
        worker_log_lines(&c).into_iter().filter(|l| l.contains("Process exited") && l.contains(app)).collect()
    };
    wait_until("the three processes of application 1 exited", || exits("app_id=1 ").len() == 3);
    let exited = exits("app_id=1 ");
    assert!(exited.iter().all(|l| l.contains("exit status: 0")), "{exited:#?}");

    // A count task that would take a minute to stop: past the 6 s stop timeout the
    // application fails (its budget is spent: no restart), naming what did not stop.
    let mut stuck = args.to_vec();
    stuck.extend_from_slice(&["-messages", "2000", "-stopDelayMs", "60000"]);
    let submitted = c.run(&stuck);
    assert!(submitted.status.success(), "{}", text(&submitted));
    let info = c.wait_status(2, "failed");
    let error = info.error.unwrap_or_default();
    assert!(error.contains("did not stop within 6s"), "{error}");
    // Its processes exited by themselves too: the executor with the stuck task leaves it
    // behind and exits (within a few seconds), which the AppMaster waits for.
    wait_until("the three processes of application 2 exited", || exits("app_id=2 ").len() == 3);
    // (The AppMaster of a failed application exits with 1.)
    let exited = exits("app_id=2 ");
    assert!(exited.iter().all(|l| l.contains("exit status: ") && !l.contains("signal")), "{exited:#?}");
    assert!(c.workers().unwrap().iter().all(|w| w.used == 0));
}
