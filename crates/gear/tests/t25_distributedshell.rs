//! Non-streaming applications on a real cluster (a master and worker processes): the guide's
//! DistributedShell and DistributeService, with their own AppMasters and executors started
//! from the application binary, and clients that resolve an application id to its AppMaster.

mod common;

use common::cluster::Cluster;
use common::ha::submitted_id;
use common::{example, wait_until};
use std::process::Output;

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn shell(c: &Cluster, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(example("distributedshell_client"));
    cmd.arg("-conf").arg(&c.conf).args(args).current_dir(&c.dir);
    cmd.output().unwrap()
}

/// The workers named in a client's output headers (`== worker N (...`).
fn workers_in(out: &Output) -> Vec<u32> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("== worker "))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect()
}

fn alive_workers(c: &Cluster) -> Vec<u32> {
    c.workers().unwrap_or_default().iter().filter(|w| w.alive).map(|w| w.id.0).collect()
}

#[test]
fn distributedshell_runs_a_command_on_every_live_worker_and_names_bad_requests() {
    let mut c = Cluster::start("dshell");
    let out = c.run(&["app", "-jar", example("distributedshell").to_str().unwrap()]);
    let id = submitted_id(&out).to_string();
    assert_eq!(c.app(id.parse().unwrap()).unwrap().kind, "DistributedShell");

    // One section per worker, each naming it.
    let out = shell(&c, &["-appid", &id, "-command", "echo", "-args", "hello"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(workers_in(&out), vec![1, 2], "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("hello").count(), 2, "{stdout}");

    // The AppMaster's port takes only connections that prove the cluster secret: random bytes
    // and a hello without it are dropped, and it serves on.
    let address = match c
        .ask(&gearpump_protocol::MasterRequest::ResolveAppMaster { app_id: gearpump_core::AppId(id.parse().unwrap()) })
    {
        Some(gearpump_protocol::MasterReply::AppMaster { kind, address: Some(a) }) if kind == "DistributedShell" => a,
        other => panic!("{other:?}"),
    };
    for junk in [&b"GET / HTTP/1.1\r\n\r\n"[..], &[0xff; 4096][..], b"GEAR"] {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(address).unwrap();
        let _ = s.write_all(junk);
    }

    // Bad requests: named, non-zero, and the application keeps running.
    let out = shell(&c, &["-appid", "99", "-command", "echo"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("application 99 does not exist"), "{}", text(&out));
    let out = shell(&c, &["-appid", &id, "-command", "no-such-command-here"]);
    assert!(!out.status.success());
    assert_eq!(workers_in(&out), vec![1, 2], "{}", text(&out));
    assert!(text(&out).contains("cannot run \"no-such-command-here\""), "{}", text(&out));
    assert!(text(&out).contains("failed on 2 of 2 workers"), "{}", text(&out));
    let out = shell(&c, &["-appid", &id]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--command"), "{}", text(&out));
    let wordcount = submitted_id(&c.run(&["app", "-jar", common::wordcount().to_str().unwrap()]));
    let out = shell(&c, &["-appid", &wordcount.to_string(), "-command", "echo"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!("application {wordcount} is a streaming application, not a DistributedShell one")),
        "{}",
        text(&out)
    );
    c.run(&["kill", "-appid", &wordcount.to_string()]);

    // A worker dies (SIGKILL, its executor with it) and a new one joins: the client reaches
    // exactly the live workers once the application has an executor on the new one.
    // The victim is the worker running the AppMaster: it is relaunched elsewhere too.
    let snapshot = c.snapshot().unwrap();
    let app = snapshot.apps.iter().find(|a| a.info.id.0.to_string() == id).unwrap();
    let victim_id = app.info.worker.unwrap().0;
    let victim_pid = snapshot.workers.iter().find(|w| w.info.id.0 == victim_id).unwrap().pid;
    let i = c.procs.iter().position(|p| p.0.id() == victim_pid).unwrap();
    drop(c.procs.remove(i));
    c.add_worker(2);
    let mut last = None;
    wait_until("the shell runs on exactly the live workers", || {
        let alive = alive_workers(&c);
        let out = shell(&c, &["-appid", &id, "-command", "echo", "-args", "again"]);
        let ok = out.status.success() && alive.len() == 2 && workers_in(&out) == alive;
        last = Some((alive, text(&out)));
        ok
    });
    let (alive, _) = last.unwrap();
    assert!(!alive.contains(&victim_id) && alive.contains(&3), "{alive:?}");
    c.wait_status(id.parse().unwrap(), "active");

    // Killed, it ends as terminated and its processes exit.
    let out = c.run(&["kill", "-appid", &id]);
    assert!(out.status.success(), "{}", text(&out));
    c.wait_status(id.parse().unwrap(), "terminated");
    let out = shell(&c, &["-appid", &id, "-command", "echo"]);
    assert!(text(&out).contains("is not running; it is terminated"), "{}", text(&out));
}

#[test]
fn distributeservice_installs_a_file_and_a_script_on_every_worker() {
    let c = Cluster::start("dservice");
    let id = submitted_id(&c.run(&["app", "-jar", example("distributeservice").to_str().unwrap()])).to_string();
    let pkg = c.dir.join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("VERSION"), "v7\n").unwrap();
    let archive = c.dir.join("app.tgz");
    let tar = std::process::Command::new("tar").arg("-czf").arg(&archive).arg("-C").arg(&pkg).arg("VERSION").status();
    assert!(tar.unwrap().success());
    let script = c.dir.join("start.sh");
    std::fs::write(&script, "echo \"$(basename $0) started with $(cat VERSION)\"\n").unwrap();
    let install = |service_name: &str| {
        std::process::Command::new(example("distributeservice_client"))
            .arg("-conf")
            .arg(&c.conf)
            .args(["-appid", &id, "-file", archive.to_str().unwrap(), "-script", script.to_str().unwrap()])
            .args(["-serviceName", service_name, "-target", "installed"])
            .output()
            .unwrap()
    };
    // Relative to each executor's working directory: every worker installs its own copy.
    let out = install("mysvc");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(workers_in(&out), vec![1, 2], "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches("mysvc started with v7").count(), 2, "{}", text(&out));
    for worker in ["worker0", "worker1"] {
        let installed: Vec<_> =
            walk(&c.dir.join(worker)).into_iter().filter(|p| p.ends_with("installed/mysvc")).collect();
        assert_eq!(installed.len(), 1, "{worker}: {installed:?}");
    }
    // A service name that is a path is refused by the client before anything is sent.
    let out = install("../evil");
    assert!(!out.status.success());
    assert!(text(&out).contains("must be a plain file name"), "{}", text(&out));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}
