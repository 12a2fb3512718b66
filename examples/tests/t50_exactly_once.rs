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
    // 100 numbers per millisecond: 10 s of application time, a checkpoint every 1 s of it. At
    // most 250,000 numbers per second, so the run lasts about 4 s and the failures fall
    // between checkpoints, not all before the first.
    count_exactly_once(1_000_000, &checkpoint_root("count"));
}

/// Numbers 1..=n, 100 per millisecond of application time, through a count with 1 s
/// checkpoints in `root`, failing at three random numbers: the count and the sum are exact.
/// Returns the application's id.
fn count_exactly_once(n: u64, root: &str) -> gearpump::AppId {
    let per_ms = 100;
    let mut rng = fastrand::Rng::new();
    let fail_at: BTreeSet<u64> = (0..3).map(|_| rng.u64(1..=n)).collect();
    eprintln!("failing at {fail_at:?}");
    let fail_at = Arc::new(Mutex::new(fail_at));
    let results = Arc::new(Mutex::new(BTreeMap::new()));
    let source = Processor::source("Numbers", 1, move |_| Ok(NumberSource::new(n, per_ms).paced(250_000)));
    let (f, r) = (fail_at.clone(), results.clone());
    let count = Processor::persistent("CountAndSum", 2, move |_| {
        Ok(CountAndSum { fail_at: f.clone(), results: r.clone(), last: (0, 0) })
    });
    let config = UserConfig::empty()
        .with(gearpump::api::state::CHECKPOINT_INTERVAL_KEY, 1000)
        .with("state.checkpoint.store.rootpath", root.to_string());
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
    assert_eq!(count, n, "each number counted once: {results:?}");
    assert_eq!(sum, n * (n + 1) / 2, "{results:?}");
    cluster.shutdown();
    id
}

/// An S3-compatible object store for one test: moto's server (`python3 -m moto.server`; `pip
/// install 'moto[server]'`, which `.ci/run` does) on a free port of 127.0.0.1, with one bucket.
/// Stopped on drop.
struct S3Server {
    child: std::process::Child,
    port: u16,
}

impl S3Server {
    fn start(bucket: &str) -> S3Server {
        use std::io::{Read, Write};
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting python3 -m moto.server, the S3 server of these tests: {e}"));
        let mut server = S3Server { child, port };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut conn = loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("python3 -m moto.server exited ({status}); is moto installed? pip install 'moto[server]'");
            }
            match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(c) => break c,
                Err(e) if std::time::Instant::now() > deadline => {
                    panic!("moto's S3 server did not listen on {port}: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        // Creating a bucket is not part of a blob store's job; one plain S3 request does it.
        write!(
            conn,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        conn.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "creating bucket {bucket}: {reply}");
        server
    }

    /// The store root `s3://<bucket>/<prefix>` on this server.
    fn root(&self, bucket: &str, prefix: &str) -> String {
        format!(
            "s3://{bucket}/{prefix}?endpoint=http://127.0.0.1:{}&region=us-east-1&access_key_id=test&secret_access_key=test",
            self.port
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn checkpoints_in_an_s3_store_make_the_count_exact() {
    let s3 = S3Server::start("gearpump");
    let root = s3.root("gearpump", "checkpoints");
    let id = count_exactly_once(200_000, &root);
    // The checkpoints went to the bucket, under the application's own prefix.
    let store = gearpump_storage::open(&gearpump_storage::join(&root, &format!("app{id}"))).unwrap();
    let names = store.list().unwrap();
    assert!(names.iter().any(|n| n.starts_with("task1_")), "checkpoints in {}: {names:?}", store.describe());
}

#[test]
fn an_s3_store_keeps_blobs_atomically_and_names_a_corrupt_checkpoint() {
    use gearpump_storage::{CheckpointStore, StorageError};
    let s3 = S3Server::start("blobs");
    let blobs = gearpump_storage::open(&s3.root("blobs", "store")).unwrap();
    assert_eq!(blobs.put("a", &mut &b"0123456789"[..]).unwrap(), 10);
    assert_eq!(blobs.read_at("a", 0, 4).unwrap(), (b"0123".to_vec(), false));
    assert_eq!(blobs.read_at("a", 8, 4).unwrap(), (b"89".to_vec(), true));
    blobs.put("a", &mut &b"new"[..]).unwrap();
    assert_eq!(blobs.read_at("a", 0, 100).unwrap(), (b"new".to_vec(), true));
    assert!(matches!(blobs.read_at("missing", 0, 1), Err(StorageError::NotFound(_))));
    assert_eq!(blobs.list().unwrap(), ["a"]);
    blobs.delete("a").unwrap();
    assert!(!blobs.exists("a"));

    let checkpoints = CheckpointStore::new(blobs.clone());
    let task = TaskId::new(0, 1);
    checkpoints.put(task, gearpump::Timestamp(1000), b"state at 1000").unwrap();
    assert_eq!(checkpoints.get(task, gearpump::Timestamp(1000)).unwrap(), b"state at 1000");
    let name = blobs.list().unwrap().pop().unwrap();
    let (mut bytes, _) = blobs.read_at(&name, 0, 1 << 20).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    blobs.put(&name, &mut &bytes[..]).unwrap();
    let err = checkpoints.get(task, gearpump::Timestamp(1000)).unwrap_err();
    assert!(matches!(err, StorageError::CorruptCheckpoint { .. }), "{err}");
    assert!(err.to_string().contains(&name) && err.to_string().contains("s3://blobs/store"), "{err}");
    let err = checkpoints.get(task, gearpump::Timestamp(2000)).unwrap_err();
    assert!(matches!(err, StorageError::MissingCheckpoint { .. }), "{err}");

    // A store that does not answer is an error naming it, not a hang or a panic.
    drop(s3);
    let err = blobs.put("b", &mut &b"x"[..]).unwrap_err();
    assert!(err.to_string().contains("s3://blobs/store"), "{err}");
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

/// Counts the words it sees per word, exactly once: a map state, split by word when the
/// processor is rescaled. Records its state when it stops.
struct WordCount {
    results: Arc<Mutex<BTreeMap<TaskId, BTreeMap<String, u64>>>>,
    fail_at: Arc<Mutex<BTreeSet<String>>>,
    last: BTreeMap<String, u64>,
    seen: u64,
}

impl PersistentTask for WordCount {
    type State = BTreeMap<String, u64>;

    fn process(
        &mut self,
        ctx: &mut TaskContext<'_>,
        msg: Message,
        state: &mut PersistentState<Self::State>,
    ) -> TaskResult {
        let word: &String = msg.get().ok_or("expected a word")?;
        self.seen += 1;
        // Fails once at the 20,000th word a task sees, if asked.
        if self.seen == 20_000 && self.fail_at.lock().remove(&ctx.task_id().to_string()) {
            return Err("injected failure".into());
        }
        state.update(msg.timestamp(), BTreeMap::from([(word.clone(), 1)]));
        self.last = state.get();
        Ok(())
    }

    fn on_stop(&mut self, ctx: &mut TaskContext<'_>) {
        self.results.lock().insert(ctx.task_id(), std::mem::take(&mut self.last));
    }
}

/// Turns a number into one of 50 words.
struct ToWord;
impl Task for ToWord {
    fn on_next(&mut self, ctx: &mut TaskContext<'_>, msg: Message) -> TaskResult {
        let n: &u64 = msg.get().ok_or("expected a number")?;
        ctx.output(Message::new(format!("w{}", n % 50), msg.timestamp()));
        Ok(())
    }
}

#[test]
fn a_keyed_count_stays_exact_across_a_rescale_a_replace_and_failures_while_it_runs() {
    const N: u64 = 1_000_000;
    let results = Arc::new(Mutex::new(BTreeMap::new()));
    let r = results.clone();
    let fail_at = Arc::new(Mutex::new(BTreeSet::new()));
    let f = fail_at.clone();
    let source = Processor::source("Numbers", 1, move |_| Ok(NumberSource::new(N, 100).paced(120_000)));
    let words = Processor::from_fn("ToWord", 2, |_| Ok(ToWord));
    let make = move |_: &gearpump::TaskInfo| {
        Ok(WordCount { results: r.clone(), fail_at: f.clone(), last: BTreeMap::new(), seen: 0 })
    };
    let count = Processor::persistent("WordCount", 2, make);
    let root = checkpoint_root("dynamic");
    let config = UserConfig::empty()
        .with(gearpump::api::state::CHECKPOINT_INTERVAL_KEY, 500)
        .with("state.checkpoint.store.rootpath", root);
    let app = StreamApplication::builder("changing").path([&source, &words, &count]).config(config).build().unwrap();
    let cluster = EmbeddedCluster::start(ClusterConfig { slots_per_worker: 8, ..ClusterConfig::default() });
    let client = cluster.client();
    let id = client.submit(app).unwrap();
    let start_clock = || {
        let s = client.snapshot().unwrap();
        s.apps.iter().find(|a| a.info.id == id).and_then(|a| a.runtime.as_ref().map(|r| r.start_clock.0)).unwrap_or(0)
    };
    let wait_checkpoint_after = |t: i64| {
        let deadline = std::time::Instant::now() + WAIT;
        while start_clock() <= t {
            assert!(std::time::Instant::now() < deadline, "no checkpoint after {t}");
            std::thread::sleep(Duration::from_millis(20));
        }
        start_clock()
    };
    // Rescale the count (processor 2) to 4 tasks once it has a checkpoint; then replace that
    // (processor 3) by 3 tasks of the same type; a task of the last fails once.
    let t = wait_checkpoint_after(0);
    let rescale = gearpump::DagChange::Rescale { processor_id: gearpump::ProcessorId(2), parallelism: 4 };
    assert_eq!(client.change_dag(id, rescale), Ok(1));
    fail_at.lock().insert(TaskId::new(4, 1).to_string());
    wait_checkpoint_after(t);
    let replace = gearpump::DagChange::Replace {
        processor_id: gearpump::ProcessorId(3),
        new_processor: gearpump::DagProcessor {
            task_class: "WordCount".into(),
            parallelism: 3,
            description: String::new(),
            task_conf: Default::default(),
        },
        inherit_conf: true,
    };
    assert_eq!(client.change_dag(id, replace), Ok(2));
    let summary = client.wait(id, WAIT).unwrap();
    assert_eq!(summary.status, AppStatus::Succeeded, "{summary:?}");
    assert!(fail_at.lock().is_empty(), "the injected failure happened");
    let results = results.lock();
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    for (task, counts) in results.iter().filter(|(t, _)| t.processor.0 == 4) {
        for (word, n) in counts {
            assert!(!total.contains_key(word), "{word} is counted by two tasks (and {task})");
            total.insert(word.clone(), *n);
        }
    }
    let expected: BTreeMap<String, u64> = (0..50).map(|k| (format!("w{k}"), N / 50)).collect();
    assert_eq!(total, expected, "each word counted exactly once, by one task");
    cluster.shutdown();
}

/// Passes numbers on; fails (once each) when it meets a number in `fail_at`.
struct FailAt(Arc<Mutex<BTreeSet<u64>>>);

impl Task for FailAt {
    fn on_next(&mut self, ctx: &mut TaskContext<'_>, msg: Message) -> TaskResult {
        let n = *msg.get::<u64>().ok_or("expected a number")?;
        if self.0.lock().remove(&n) {
            return Err(format!("injected failure at {n}").into());
        }
        ctx.output(msg);
        Ok(())
    }
}

#[test]
fn numbers_into_parquet_on_s3_are_each_committed_once_across_failures() {
    use gearpump_connectors::files::{FileSink, FileSource};
    use gearpump_examples::numbers_to_parquet::{Number, row};
    let s3 = S3Server::start("parquet");
    let output = s3.root("parquet", "numbers");
    let n = 300_000;
    let fail_at = Arc::new(Mutex::new(BTreeSet::from([40_000, 150_000, 260_000])));
    let source = Processor::source("Numbers", 1, move |_| Ok(NumberSource::new(n, 100).paced(200_000)));
    let f = fail_at.clone();
    let fail = Processor::from_fn("FailAt", 1, move |_| Ok(FailAt(f.clone())));
    let out = output.clone();
    let sink = Processor::sink("Parquet", 2, move |_| Ok(FileSink::parquet(out.clone(), row)));
    let config = UserConfig::empty()
        .with(gearpump::api::state::CHECKPOINT_INTERVAL_KEY, 200)
        .with("state.checkpoint.store.rootpath", checkpoint_root("parquet"));
    let app = StreamApplication::builder("numbersToParquet")
        .edge(&source, PartitionerSpec::hash(), &fail)
        .edge(&fail, PartitionerSpec::hash(), &sink)
        .config(config)
        .build()
        .unwrap();
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    let client = cluster.client();
    let id = client.submit(app).unwrap();
    let summary = client.wait(id, WAIT).unwrap();
    assert_eq!(summary.status, AppStatus::Succeeded, "{summary:?}");
    assert!(fail_at.lock().is_empty(), "every injected failure happened: {:?}", fail_at.lock());
    cluster.shutdown();
    // Read back every committed file from the bucket: each number exactly once.
    let info = gearpump::api::TaskInfo {
        task_id: TaskId::new(0, 0),
        parallelism: 1,
        app_id: gearpump::AppId(1),
        app_name: "read".into(),
        description: String::new(),
        config: Arc::new(UserConfig::empty()),
        predecessor: None,
    };
    struct NoIo;
    impl gearpump::api::TaskIo for NoIo {
        fn output(&mut self, _: Message) {}
        fn send_self(&mut self, _: Message) {}
        fn schedule(&mut self, _: Duration, _: Option<Duration>) -> gearpump::api::TimerId {
            gearpump::api::TimerId(0)
        }
        fn cancel(&mut self, _: gearpump::api::TimerId) {}
        fn upstream_min_clock(&self) -> Timestamp {
            Timestamp::MIN
        }
        fn is_backpressured(&self) -> bool {
            false
        }
    }
    use gearpump::api::DataSource;
    let mut io = NoIo;
    let mut source = FileSource::parquet::<Number>(output);
    source.open(&mut TaskContext::new(&info, &mut io), Timestamp::MIN).unwrap();
    let mut seen = vec![0u8; n as usize + 1];
    while let Some(m) = source.read().unwrap() {
        let r = m.get::<Number>().unwrap();
        assert_eq!(r, &Number::of(r.n));
        seen[r.n as usize] += 1;
    }
    let wrong: Vec<(usize, u8)> = (1..=n as usize).filter(|i| seen[*i] != 1).map(|i| (i, seen[i])).take(10).collect();
    assert!(wrong.is_empty(), "numbers not committed exactly once (the first ten, with counts): {wrong:?}");
}
