//! Recovery and exactly-once state on the embedded cluster: numbered messages through a
//! checkpointed count whose tasks fail at random moments; after the restarts the count is
//! exact. And the restart budget: a task that always fails ends the application `failed`.

use gearpump::prelude::*;
use gearpump::{AppStatus, ClusterConfig, EmbeddedCluster, NumberSource, TaskId};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(300);

/// Counts numbers and sums them, exactly once; fails (once each) when it meets a number in
/// `fail_at`. Records its state when it stops.
struct CountAndSum {
    fail_at: Arc<Mutex<BTreeSet<u64>>>,
    results: Arc<Mutex<BTreeMap<TaskId, (u64, u64)>>>,
    last: (u64, u64),
}

impl PersistentTask for CountAndSum {
    type State = (u64, u64);

    fn process(
        &mut self,
        _ctx: &mut TaskContext<'_>,
        msg: Message,
        state: &mut PersistentState<(u64, u64)>,
    ) -> TaskResult {
        let n = *msg.get::<u64>().ok_or("expected a number")?;
        if self.fail_at.lock().remove(&n) {
            return Err(format!("injected failure at {n}").into());
        }
        state.update(msg.timestamp(), (1, n));
        self.last = state.get();
        Ok(())
    }

    fn on_stop(&mut self, ctx: &mut TaskContext<'_>) {
        self.results.lock().insert(ctx.task_id(), self.last);
    }
}

fn checkpoint_root(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("gearpump-t50-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.to_string_lossy().into_owned()
}

#[test]
fn a_checkpointed_count_is_exact_after_three_failures() {
    const N: u64 = 1_000_000;
    // 100 numbers per millisecond: 10 s of application time, a checkpoint every 1 s of it. At
    // most 250,000 numbers per second, so the run lasts about 4 s and the failures fall
    // between checkpoints, not all before the first.
    let per_ms = 100;
    let mut rng = fastrand::Rng::new();
    let fail_at: BTreeSet<u64> = (0..3).map(|_| rng.u64(1..=N)).collect();
    eprintln!("failing at {fail_at:?}");
    let fail_at = Arc::new(Mutex::new(fail_at));
    let results = Arc::new(Mutex::new(BTreeMap::new()));
    let source = Processor::source("Numbers", 1, move |_| Ok(NumberSource::new(N, per_ms).paced(250_000)));
    let (f, r) = (fail_at.clone(), results.clone());
    let count = Processor::persistent("CountAndSum", 2, move |_| {
        Ok(CountAndSum { fail_at: f.clone(), results: r.clone(), last: (0, 0) })
    });
    let config = UserConfig::empty()
        .with(gearpump::api::state::CHECKPOINT_INTERVAL_KEY, 1000)
        .with("state.checkpoint.store.rootpath", checkpoint_root("count"));
    let app = StreamApplication::builder("exactlyOnce")
        .edge(&source, PartitionerSpec::hash(), &count)
        .config(config)
        .build()
        .unwrap();
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    let client = cluster.client();
    let id = client.submit(app).unwrap();
    let summary = client.wait(id, WAIT).unwrap();
    assert_eq!(summary.status, AppStatus::Succeeded, "{summary:?}");
    assert!(fail_at.lock().is_empty(), "every injected failure happened: {:?}", fail_at.lock());
    let results = results.lock();
    let (count, sum) = results.values().fold((0, 0), |(c, s), (c2, s2)| (c + c2, s + s2));
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(count, N, "each number counted once: {results:?}");
    assert_eq!(sum, N * (N + 1) / 2, "{results:?}");
    cluster.shutdown();
}

/// Fails on its first message, every time.
struct AlwaysFails;
impl Task for AlwaysFails {
    fn on_next(&mut self, _: &mut TaskContext<'_>, _: Message) -> TaskResult {
        Err("always fails".into())
    }
}

#[test]
fn a_task_that_always_fails_spends_the_restart_budget_and_fails_the_application() {
    let source = Processor::source("Numbers", 1, |_| Ok(NumberSource::new(1000, 1)));
    let sink = Processor::from_fn("AlwaysFails", 1, |_| Ok(AlwaysFails));
    let app = StreamApplication::builder("doomed").path([&source, &sink]).build().unwrap();
    let cluster = EmbeddedCluster::start(ClusterConfig { total_retries: 3, ..ClusterConfig::default() });
    let client = cluster.client();
    let id = client.submit(app).unwrap();
    let summary = client.wait(id, WAIT).unwrap();
    assert_eq!(summary.status, AppStatus::Failed);
    let error = summary.error.unwrap_or_default();
    assert!(error.contains("always fails") && error.contains("after 3 restarts"), "{error}");
    cluster.shutdown();
}

#[test]
fn window_averages_come_out_once_each_and_exact() {
    let dir = std::env::temp_dir().join(format!("gearpump-t50-windows-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (n, size, step) = (20_000u64, 5000i64, 2500i64);
    let checkpoints = checkpoint_root("windows");
    let app = gearpump_examples::window_average::application(n, size, step, dir.to_str(), Some(&checkpoints)).unwrap();
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    let id = cluster.client().submit(app).unwrap();
    let summary = cluster.client().wait(id, WAIT).unwrap();
    assert_eq!(summary.status, AppStatus::Succeeded, "{summary:?}");
    cluster.shutdown();
    let text = std::fs::read_to_string(dir.join("window-0.txt")).unwrap();
    let got: Vec<(i64, i64, f64)> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect();
    // Every window [w, w + size) with w a multiple of step that holds a number 1..=n (number k
    // is at time k ms), in order, each once.
    let mut expected = Vec::new();
    let mut w = -size + step;
    while w <= n as i64 {
        let (lo, hi) = (w.max(1), (w + size - 1).min(n as i64));
        expected.push((w, w + size, (lo + hi) as f64 / 2.0));
        w += step;
    }
    assert_eq!(got, expected);
}

#[test]
fn a_count_over_a_line_file_is_exact_after_failures_replayed_by_offset() {
    use gearpump_connectors::files::LineSource;
    const LINES: u64 = 200_000;
    let dir = std::env::temp_dir().join(format!("gearpump-t50-line-input-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("input.txt");
    std::fs::write(&input, (1..=LINES).map(|i| format!("{i}\n")).collect::<String>()).unwrap();
    let fail_at: BTreeSet<u64> = [50_000, 120_000, 180_000].into();
    let fail_at = Arc::new(Mutex::new(fail_at));
    let results = Arc::new(Mutex::new(BTreeMap::new()));
    let offsets = dir.join("offsets");
    // Line n is stamped n / 100 ms: 2 s of application time, checkpoints every 200 ms of it.
    let source = Processor::source("Lines", 1, move |_| {
        Ok(LineSource::new(&input, &offsets).stamped(|n, _| gearpump::Timestamp((n / 100) as i64)).record_every(500))
    });
    let parse = Processor::from_fn("Parse", 1, |_| Ok(ParseNumber));
    let (f, r) = (fail_at.clone(), results.clone());
    let count = Processor::persistent("CountAndSum", 2, move |_| {
        Ok(CountAndSum { fail_at: f.clone(), results: r.clone(), last: (0, 0) })
    });
    let config = UserConfig::empty()
        .with(gearpump::api::state::CHECKPOINT_INTERVAL_KEY, 200)
        .with("state.checkpoint.store.rootpath", checkpoint_root("lines"));
    let app = StreamApplication::builder("lineCount")
        .edge(&source, PartitionerSpec::shuffle(), &parse)
        .edge(&parse, PartitionerSpec::hash(), &count)
        .config(config)
        .build()
        .unwrap();
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    let id = cluster.client().submit(app).unwrap();
    let summary = cluster.client().wait(id, WAIT).unwrap();
    assert_eq!(summary.status, AppStatus::Succeeded, "{summary:?}");
    cluster.shutdown();
    assert!(fail_at.lock().is_empty());
    let (count, sum) = results.lock().values().fold((0, 0), |(c, s), (c2, s2)| (c + c2, s + s2));
    assert_eq!((count, sum), (LINES, LINES * (LINES + 1) / 2));
}

/// Parses a line into a number; slowly enough (2 ms every 500 lines) that the run spans many
/// clock reports and checkpoints, so that recoveries restore checkpointed state.
struct ParseNumber;
impl Task for ParseNumber {
    fn on_next(&mut self, ctx: &mut TaskContext<'_>, msg: Message) -> TaskResult {
        let n: u64 = msg.get::<String>().ok_or("expected a line")?.parse()?;
        if n.is_multiple_of(500) {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        ctx.output(Message::new(n, msg.timestamp()));
        Ok(())
    }
}
