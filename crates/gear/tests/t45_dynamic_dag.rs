//! Dynamic DAG on a real cluster (master, two workers, executor processes), through
//! `gear dynamicdag`: the guide's scenario on WordCount (replace the sink, then the source;
//! an unknown task type changes nothing; rescale Sum up and back), and MessageCount's
//! persistent count exact across a rescale, a replacement, an executor SIGKILL and an
//! AppMaster SIGKILL after the changes (the new AppMaster runs the changed DAG).

mod common;

use common::chaos::{Victim, chaos};
use common::cluster::Cluster;
use common::{example, wait_until};
use gearpump_protocol::{AppRuntime, MasterReply, MasterRequest, ReadOption};

const SPLIT: &str = "gearpump_examples::wordcount::Split";
const SUM: &str = "gearpump_examples::wordcount::Sum";
const COUNT: &str = "gearpump_examples::message_count::Count";

fn runtime(c: &Cluster) -> Option<AppRuntime> {
    c.snapshot()?.apps.into_iter().find(|a| a.info.id.0 == 1)?.runtime
}

/// `gear dynamicdag -appid 1 ARGS`: what it printed, or panics with what it said.
fn change(c: &Cluster, args: &[&str]) -> String {
    let mut command = vec!["dynamicdag", "-appid", "1"];
    command.extend_from_slice(args);
    let o = c.run(&command);
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "gear {command:?}: {out}{err}");
    out.into_owned()
}

/// How many messages processor `p`'s tasks received (`receive`) or sent, per the metrics.
fn throughput(c: &Cluster, p: u32, receive: bool) -> u64 {
    let name = if receive { "receiveThroughput" } else { "sendThroughput" };
    let req = MasterRequest::QueryMetrics { path: format!("app1.processor{p}.*"), option: ReadOption::Latest };
    let Some(MasterReply::Metrics(points)) = c.ask(&req) else { return 0 };
    let count = |p: &gearpump_metrics::MetricPoint| match p.metric.value {
        gearpump_metrics::MetricValue::Meter { count, .. } if p.metric.name.ends_with(name) => count,
        _ => 0,
    };
    points.iter().map(count).sum()
}

#[test]
fn wordcount_gets_a_new_sink_a_new_source_and_a_rescaled_sum_while_it_runs() {
    let c = Cluster::start_with("dynamic-wordcount", "gearpump.worker.slots = 8\ngearpump.metrics.enabled = true\n");
    let wordcount = common::wordcount();
    let out = c.run(&["app", "-jar", wordcount.to_str().unwrap(), "-split", "1", "-sum", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.wait_status(1, "active");
    wait_until("Sum receives", || throughput(&c, 1, true) > 0);

    // Replace the sink (Sum, 1): the new one is processor 2.
    let said = change(&c, &["-replace", "1", "-taskClass", SUM, "-parallelism", "2"]);
    assert!(said.contains("version 1"), "{said}");
    wait_until("the new sink receives", || throughput(&c, 2, true) > 0);
    // Then the source (Split, 0): processor 3.
    change(&c, &["-replace", "0", "-taskClass", SPLIT, "-parallelism", "1"]);
    wait_until("the new source sends", || throughput(&c, 3, false) > 0);

    // An unknown task type: refused with the reason; the DAG stays at version 2 and runs on.
    let o = c.run(&["dynamicdag", "-appid", "1", "-replace", "2", "-taskClass", "NoSuchTask"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("unknown task type \"NoSuchTask\""), "{err}");
    for (args, says) in [
        (&["dynamicdag", "-appid", "99", "-rescale", "1", "-parallelism", "2"][..], "does not exist"),
        (&["dynamicdag", "-appid", "1", "-rescale", "1", "-parallelism", "2"][..], "no live processor 1"),
        (&["dynamicdag", "-appid", "1", "-change", "{\"rescale\": 3}"][..], "-change takes a DAG change as JSON"),
    ] {
        let o = c.run(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(says), "gear {args:?}: {err}");
    }
    let r = runtime(&c).unwrap();
    assert_eq!(r.version, 2);
    let live: Vec<u32> = r.processors.iter().filter(|p| !p.retired).map(|p| p.id).collect();
    assert_eq!(live, vec![2, 3]);

    // Rescale Sum from 2 to 4 tasks (processor 4) and back to 2 (processor 5) while it runs.
    change(&c, &["-rescale", "2", "-parallelism", "4"]);
    wait_until("four Sum tasks receive", || throughput(&c, 4, true) > 0);
    wait_until("the detail shows four Sum tasks", || {
        runtime(&c)
            .is_some_and(|r| r.executors.iter().flat_map(|e| &e.tasks).filter(|t| t.processor.0 == 4).count() == 4)
    });
    change(&c, &["-rescale", "4", "-parallelism", "2"]);
    wait_until("two Sum tasks receive", || throughput(&c, 5, true) > 0);
    let clock = runtime(&c).unwrap().clock;
    wait_until("the clock moves", || runtime(&c).is_some_and(|r| r.clock > clock));
    assert_eq!(c.app(1).unwrap().status.as_str(), "active");
}

#[test]
fn message_count_is_exact_across_a_rescale_a_replacement_and_killed_processes() {
    const N: u64 = 1_000_000;
    let mut c = Cluster::start_with("dynamic-count", "gearpump.worker.slots = 8\n");
    let out = c.dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let bin = example("message_count");
    let n = N.to_string();
    let submitted = c.run(&[
        "app",
        "-executors",
        "2",
        "-jar",
        bin.to_str().unwrap(),
        "-messages",
        &n,
        "-pace",
        "25000",
        "-countTask",
        "2",
        "-output",
        out.to_str().unwrap(),
    ]);
    assert!(submitted.status.success(), "gear app: {}", String::from_utf8_lossy(&submitted.stderr));
    c.wait_status(1, "active");
    let start_clock = |c: &Cluster| runtime(c).map_or(0, |r| r.start_clock.0);
    wait_until("a first checkpoint", || start_clock(&c) > 0);
    // The count (processor 1) to 4 tasks, then (processor 2) replaced by 3 of the same type.
    change(&c, &["-rescale", "1", "-parallelism", "4"]);
    let t = start_clock(&c);
    wait_until("a checkpoint of the rescaled count", || start_clock(&c) > t);
    change(&c, &["-replace", "2", "-taskClass", COUNT, "-parallelism", "3", "-inheritConf"]);
    // The kills are for the processes of the new DAG, not those it is replacing.
    wait_until("the replacement count runs", || {
        runtime(&c).is_some_and(|r| {
            r.version == 2 && r.executors.iter().flat_map(|e| &e.tasks).filter(|t| t.processor.0 == 3).count() == 3
        })
    });
    let start_clocks = chaos(&mut c, &[Victim::Executor, Victim::AppMaster]);
    assert_eq!(start_clocks.len(), 2, "both kills happened while the application ran");
    // The new AppMaster runs the changed DAG.
    let r = runtime(&c).unwrap();
    assert_eq!(r.version, 2);
    let live: Vec<u32> = r.processors.iter().filter(|p| !p.retired).map(|p| p.id).collect();
    assert_eq!(live, vec![0, 3]);
    let info = c.wait_status(1, "succeeded");
    assert!(info.error.is_none(), "{info:?}");
    let (mut count, mut sum) = (0u64, 0u64);
    for i in 0..3 {
        let text = std::fs::read_to_string(out.join(format!("count-{i}.txt"))).unwrap();
        let (n, s) = text.trim().split_once(' ').unwrap();
        count += n.parse::<u64>().unwrap();
        sum += s.parse::<u64>().unwrap();
    }
    assert!(!out.join("count-3.txt").exists(), "no file of the four-task count is left");
    assert_eq!(count, N, "each message counted exactly once");
    assert_eq!(sum, N * (N + 1) / 2);
}
