//! Master high availability with real processes: three `gear master` processes replicating
//! their state with Raft, two workers, WordCount running; the leader is SIGKILLed.

mod common;

use common::ha::{Ha, artifacts_in, submitted_id};
use common::{Proc, free_port, wait_until};
use gearpump_cluster::daemon::MasterClient;
use gearpump_protocol::{MasterReply, MasterRequest};
use std::time::{Duration, Instant};

/// `GET /api/v1.0/master` on `gear services` at `port`: (leader `host:port`, members, status).
fn rest_master(port: u16) -> Option<(String, usize, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(30))).build().into();
    let text =
        agent.get(&format!("http://127.0.0.1:{port}/api/v1.0/master")).call().ok()?.body_mut().read_to_string().ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let d = &v["masterDescription"];
    let leader = format!("{}:{}", d["leader"][0].as_str()?.trim_start_matches("master@"), d["leader"][1].as_u64()?);
    Some((leader, d["cluster"].as_array()?.len(), d["masterStatus"].as_str()?.to_string()))
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
    // `gear services` serves what the leader knows: the leader, three members, in sync.
    let http = free_port();
    let services_conf = ha.dir.join("services.conf");
    let conf = std::fs::read_to_string(&ha.conf).unwrap();
    std::fs::write(&services_conf, format!("{conf}gearpump.services.http = {http}\n")).unwrap();
    let log = std::fs::File::create(ha.dir.join("services.out")).unwrap();
    let _services = Proc(
        std::process::Command::new(env!("CARGO_BIN_EXE_gear"))
            .arg("-conf")
            .arg(&services_conf)
            .arg("services")
            .current_dir(&ha.dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let leader_addr = ha.masters[old].to_string();
    wait_until("gear services shows the leader", || {
        rest_master(http).is_some_and(|(l, n, status)| l == leader_addr && n == 3 && status == "synced")
    });
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
    // gear services followed the new leader.
    let new_addr = ha.masters[new.unwrap()].to_string();
    wait_until("gear services shows the new leader", || {
        rest_master(http).is_some_and(|(l, n, status)| l == new_addr && n == 3 && status == "synced")
    });

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
        let mut c = MasterClient::connect_direct(&ha.masters[old], &common::secret()).await.unwrap();
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

/// Requests waiting for slots are the leader's alone (not replicated): an AppMaster waiting for
/// slots when the leader dies asks the next leader, and gets them once a worker joins.
#[test]
fn an_appmaster_waiting_for_slots_when_the_leader_dies_asks_the_next_leader() {
    let mut ha = Ha::start("ha-queued");
    // 11 tasks and the AppMaster: every one of the two workers' 6 slots.
    let wordcount = common::wordcount();
    let out = ha.gear(&["app", "-jar", wordcount.to_str().unwrap(), "-split", "5", "-sum", "6"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_until("wordcount's clock moves", || ha.clock(1).is_some_and(|c| c > 0));
    let snapshot = ha.snapshot().unwrap();
    let appmaster_worker = snapshot.apps[0].info.worker.unwrap();
    let victim = snapshot.workers.iter().find(|w| w.info.id != appmaster_worker).unwrap().pid;
    let mut leader = None;
    wait_until("the masters agree on a leader", || {
        leader = ha.leader();
        leader.is_some()
    });
    let leader = leader.unwrap();
    let dirs: Vec<_> = (0..3).map(|i| ha.master_dir(i)).collect();
    let waits = |i: usize| {
        std::fs::read_to_string(dirs[i].join("master.out"))
            .unwrap_or_default()
            .contains("Too few free slots: the request waits.")
    };
    // Its executors there are lost; the replacement slots are not free anywhere.
    ha.workers.retain(|w| w.0.id() != victim);
    wait_until("the replacement request waits at the leader", || waits(leader));
    ha.procs[leader] = None; // SIGKILL
    let mut next = None;
    wait_until("a new leader", || {
        next = ha.leader().filter(|l| *l != leader);
        next.is_some()
    });
    wait_until("the AppMaster's request waits at the new leader", || waits(next.unwrap()));
    ha.workers.push(ha.start_worker(2));
    let dir = ha.dir.clone();
    let appmaster_log = || {
        (0..3)
            .map(|i| {
                std::fs::read_to_string(dir.join(format!("worker{i}/logs/app1/appmaster.log"))).unwrap_or_default()
            })
            .collect::<String>()
    };
    wait_until("the clock moves again on the new worker", || appmaster_log().contains("The clock moves again"));
    // The same AppMaster: it asked the new leader, rather than failing and being relaunched.
    let log = appmaster_log();
    assert!(log.contains("asking the leading master again"), "{log}");
    assert_eq!(log.matches("role=\"appmaster\"").count(), 1, "{log}");
    assert_eq!(ha.snapshot().unwrap().apps[0].info.status.as_str(), "active");
}

/// A leader that dies (or stops leading) in the middle of `gear app`'s upload does not fail the
/// submission: the client asks the new leader, which gets the binary again.
#[test]
fn a_leader_killed_during_an_upload_does_not_fail_the_submission() {
    use std::io::BufRead;
    let mut ha = Ha::start("ha-upload");
    let mut leader = None;
    wait_until("the masters agree on a leader", || {
        leader = ha.leader();
        leader.is_some()
    });
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gear"))
        .arg("-conf")
        .arg(&ha.conf)
        .args(["app", "-jar"])
        .arg(common::wordcount())
        .current_dir(&ha.dir)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut text = String::new();
    for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if ha.procs[leader.unwrap()].is_some() && line.contains("Uploading") {
            ha.procs[leader.unwrap()] = None; // SIGKILL, mid-upload
        }
        text.push_str(&line);
        text.push('\n');
    }
    let out = child.wait_with_output().unwrap();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Lost the leading master during the upload"), "{text}");
    assert_eq!(submitted_id(&out), 1, "{text}");
    wait_until("wordcount's clock moves", || ha.clock(1).is_some_and(|c| c > 0));
}
