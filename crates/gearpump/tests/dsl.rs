//! The typed DSL on the embedded cluster: exact results, chaining, keyed operators, union,
//! dropping down to a Task, build-time errors, and exactly-once keyed state across failures.

use gearpump::prelude::*;
use gearpump::{AppStatus, ClusterConfig, DslError, EmbeddedCluster, Pipeline};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(300);

/// Line `i` of task `t`: ten words of a small vocabulary, deterministic.
fn line(t: u32, i: u64) -> String {
    let mut x = (u64::from(t) << 32 | i).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..10)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("w{}", x % 37)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A pipeline whose checkpoints go to a directory of its own under the system's temporary one.
fn pipeline(name: &str) -> Pipeline {
    let root = std::env::temp_dir().join(format!("gearpump-dsl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let p = Pipeline::new(name);
    p.config(UserConfig::empty().with("state.checkpoint.store.rootpath", root.to_string_lossy()));
    p
}

fn run(cluster: &EmbeddedCluster, app: StreamApplication) {
    let client = cluster.client();
    let name = app.name().to_string();
    let id = client.submit(app).unwrap();
    let summary = client.wait(id, WAIT).unwrap();
    assert_eq!(summary.status, AppStatus::Succeeded, "{name}: {summary:?}");
}

type Counts = Arc<Mutex<HashMap<String, u64>>>;

fn wordcount(lines_per_task: u64, sources: u32, split: u32, count: u32, out: Counts) -> StreamApplication {
    let p = pipeline("dslWordCount");
    p.generate("lines", sources, move |info| {
        let t = info.task_id.index;
        (0..lines_per_task).map(move |i| (Timestamp(i as i64), line(t, i)))
    })
    .flat_map(|line: String| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    .name("split")
    .parallelism(split)
    .key_by_value()
    .count()
    .parallelism(count)
    .for_each(move |(word, n), _| {
        let mut out = out.lock().unwrap();
        let e = out.entry(word).or_insert(0);
        *e = (*e).max(n);
    });
    p.build().unwrap()
}

#[test]
fn word_counts_are_exact_for_every_parallelism() {
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    let lines = 500;
    for (sources, split, count) in [(1, 1, 1), (2, 2, 3), (1, 3, 2), (3, 1, 1)] {
        let mut expected: HashMap<String, u64> = HashMap::new();
        for t in 0..sources {
            for i in 0..lines {
                for w in line(t, i).split_whitespace() {
                    *expected.entry(w.to_string()).or_default() += 1;
                }
            }
        }
        let counts = Counts::default();
        run(&cluster, wordcount(lines, sources, split, count, counts.clone()));
        assert_eq!(*counts.lock().unwrap(), expected, "sources {sources}, split {split}, count {count}");
    }
    cluster.shutdown();
}

#[test]
fn operators_without_repartitioning_are_chained_into_one_processor() {
    let app = wordcount(1, 2, 2, 2, Counts::default());
    let described: Vec<(&str, u32)> =
        app.dag().processors().iter().map(|p| (p.description.as_str(), p.parallelism)).collect();
    assert_eq!(described, vec![("lines → split", 2), ("count → for_each", 2)]);
    // Parallelism differs: the split gets a processor of its own, fed by hash.
    let app = wordcount(1, 1, 2, 2, Counts::default());
    let described: Vec<&str> = app.dag().processors().iter().map(|p| p.description.as_str()).collect();
    assert_eq!(described, vec!["lines", "split", "count → for_each"]);
    let edges: Vec<&str> = app.dag().edges().iter().map(|e| e.partitioner.name()).collect();
    assert_eq!(edges[0], "hash");
    // The keyed count is stateful: its processor checkpoints.
    assert!(app.dag().processors()[2].stateful);
    assert!(!app.dag().processors()[0].stateful);
}

#[test]
fn keyed_operators_agree_with_an_in_memory_computation() {
    let n = 20_000u64;
    let numbers = move || (1..=n).map(|i| (Timestamp(i as i64 / 10), i));
    type Last<V> = Arc<Mutex<BTreeMap<u64, V>>>;
    fn last<V: Send + 'static>(into: &Last<V>) -> impl Fn((u64, V), Timestamp) + Send + Sync + 'static {
        let into = into.clone();
        move |(k, v), _| {
            into.lock().unwrap().insert(k, v);
        }
    }
    let (sums, mins, maxs, folds, counts): (Last<u64>, Last<u64>, Last<u64>, Last<Vec<u64>>, Last<u64>) =
        Default::default();
    let reduced: Last<u64> = Last::default();
    let p = pipeline("keyed");
    let s = p.generate("numbers", 2, move |info| {
        let (t, tasks) = (u64::from(info.task_id.index), u64::from(info.parallelism));
        numbers().filter(move |(_, i)| i % tasks == t)
    });
    s.clone().key_by(|i: &u64| i % 7).sum(|i| *i).parallelism(3).for_each(last(&sums));
    s.clone().key_by(|i: &u64| i % 7).min(|i| i * 3 % 1001).for_each(last(&mins));
    s.clone().key_by(|i: &u64| i % 7).max(|i| i * 3 % 1001).for_each(last(&maxs));
    s.clone().key_by(|i: &u64| i % 7).count().for_each(last(&counts));
    s.clone()
        .filter(|i| i % 1000 == 0)
        .key_by(|i: &u64| i % 7)
        .fold(Vec::new(), |v: &mut Vec<u64>, i| v.push(i))
        .map(|(k, mut v)| {
            v.sort_unstable();
            (k, v)
        })
        .for_each(last(&folds));
    s.map(|i| (i % 7, i))
        .key_by(|(k, _): &(u64, u64)| *k)
        .reduce(|(k, a), (_, b)| (k, a + b))
        .parallelism(1)
        .for_each(last(&reduced));
    let app = p.build().unwrap();
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    run(&cluster, app);
    cluster.shutdown();
    for k in 0..7u64 {
        let of_k: Vec<u64> = (1..=n).filter(|i| i % 7 == k).collect();
        assert_eq!(sums.lock().unwrap()[&k], of_k.iter().sum::<u64>(), "sum of {k}");
        assert_eq!(reduced.lock().unwrap()[&k], of_k.iter().sum::<u64>(), "reduce of {k}");
        assert_eq!(counts.lock().unwrap()[&k], of_k.len() as u64, "count of {k}");
        assert_eq!(mins.lock().unwrap()[&k], of_k.iter().map(|i| i * 3 % 1001).min().unwrap(), "min of {k}");
        assert_eq!(maxs.lock().unwrap()[&k], of_k.iter().map(|i| i * 3 % 1001).max().unwrap(), "max of {k}");
        let thousands: Vec<u64> = of_k.iter().copied().filter(|i| i % 1000 == 0).collect();
        if !thousands.is_empty() {
            assert_eq!(folds.lock().unwrap()[&k], thousands, "fold of {k}");
        }
    }
}

#[test]
fn reduce_union_and_a_task_in_the_middle() {
    /// A Task-API task between DSL operators: doubles u64 values.
    struct Double;
    impl Task for Double {
        fn on_next(&mut self, ctx: &mut TaskContext<'_>, msg: Message) -> TaskResult {
            let v = *msg.get::<u64>().ok_or("expected a u64")?;
            ctx.output(Message::new(v * 2, msg.timestamp()));
            Ok(())
        }
    }
    let totals: Arc<Mutex<Vec<u64>>> = Arc::default();
    let p = pipeline("unionAndProcess");
    let odd = p.collection("odd", (1..=99u64).step_by(2));
    let even = p.collection("even", (2..=100u64).step_by(2));
    let t = totals.clone();
    odd.union(even)
        .process::<u64, _>("double", 2, |_| Ok(Double))
        .key_by(|_: &u64| ())
        .reduce(|a, b| a + b)
        .for_each(move |total, _| t.lock().unwrap().push(total));
    let app = p.build().unwrap();
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    run(&cluster, app);
    cluster.shutdown();
    let totals = totals.lock().unwrap();
    assert_eq!(totals.len(), 100, "one running total per value");
    assert_eq!(totals.iter().max(), Some(&(2 * 5050)));
}

#[test]
fn a_zero_parallelism_is_an_error_naming_the_operator() {
    let p = Pipeline::new("bad");
    p.collection("numbers", [1u64, 2, 3]).map(|i| i + 1).name("increment").parallelism(0).for_each(|_, _| {});
    assert_eq!(p.build().unwrap_err(), DslError::ZeroParallelism { operator: "increment".into() });
    let p = Pipeline::new("bad name!");
    p.collection("numbers", [1u64]).for_each(|_, _| {});
    let e = p.build().unwrap_err();
    assert!(e.to_string().contains("bad name!"), "{e}");
}

#[test]
fn keyed_state_is_exact_across_failures() {
    let n = 1_000_000u64;
    let root = std::env::temp_dir().join(format!("gearpump-dsl-exactly-once-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut rng = fastrand::Rng::new();
    let fail_at: BTreeSet<u64> = (0..3).map(|_| rng.u64(1..=n)).collect();
    eprintln!("failing at {fail_at:?}");
    let fail_at = Arc::new(Mutex::new(fail_at));
    let sums: Arc<Mutex<BTreeMap<u64, (u64, u64)>>> = Arc::default();
    let p = Pipeline::new("dslExactlyOnce");
    p.config(
        UserConfig::empty()
            .with(gearpump::api::state::CHECKPOINT_INTERVAL_KEY, 500)
            .with("state.checkpoint.store.rootpath", root.to_string_lossy()),
    );
    let f = fail_at.clone();
    let s = sums.clone();
    // Paced at about 250,000 numbers a second, so that checkpoints complete between failures.
    p.generate("numbers", 1, move |_| {
        (1..=n).map(|i| {
            if i % 1000 == 0 {
                std::thread::sleep(Duration::from_millis(4));
            }
            (Timestamp(i as i64 / 100), i)
        })
    })
    .inspect(move |i| {
        if f.lock().unwrap().remove(i) {
            panic!("injected failure at {i}");
        }
    })
    .key_by(|i: &u64| i % 10)
    .fold((0u64, 0u64), |(count, sum), i| {
        *count += 1;
        *sum += i;
    })
    .parallelism(2)
    .for_each(move |(k, v), _| {
        s.lock().unwrap().insert(k, v);
    });
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    run(&cluster, p.build().unwrap());
    cluster.shutdown();
    assert!(fail_at.lock().unwrap().is_empty(), "every injected failure happened");
    let sums = sums.lock().unwrap();
    for k in 0..10 {
        let count = (1..=n).filter(|i| i % 10 == k).count() as u64;
        let sum: u64 = (1..=n).filter(|i| i % 10 == k).sum();
        assert_eq!(sums[&k], (count, sum), "key {k}: each number once");
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// Number `i` of task `t` (of 2): key `i % 5`, stamped `i / 4` ms plus a jitter of up to 49 ms.
fn jittered(t: u32, n: u64) -> impl Iterator<Item = (Timestamp, u64)> {
    (0..n).filter(move |i| i % 2 == u64::from(t)).map(|i| (Timestamp((i / 4 + i * 7919 % 50) as i64), i))
}

#[test]
fn event_time_windows_fire_once_with_exact_results() {
    use gearpump::dsl::{Watermarks, Window, Windowed};
    let n = 40_000u64;
    type Results = Arc<Mutex<Vec<Windowed<u64, u64>>>>;
    let (counts, sums, sliding): (Results, Results, Results) = Default::default();
    let collect = |into: &Results| {
        let into = into.clone();
        move |w: Windowed<u64, u64>, _| into.lock().unwrap().push(w)
    };
    let p = pipeline("eventTimeWindows");
    let numbers = p
        .generate("numbers", 2, move |info| jittered(info.task_id.index, n))
        .watermarks(Watermarks::bounded(Duration::from_millis(50)));
    let by_key = |s: gearpump::Stream<u64>| s.key_by(|i: &u64| i % 5);
    by_key(numbers.clone()).window(Window::tumbling(Duration::from_millis(100))).count().for_each(collect(&counts));
    by_key(numbers.clone())
        .window(Window::tumbling(Duration::from_millis(100)))
        .sum(|i| *i)
        .parallelism(3)
        .for_each(collect(&sums));
    by_key(numbers)
        .window(Window::sliding(Duration::from_millis(100), Duration::from_millis(50)))
        .reduce(|a, b| a + b)
        .for_each(collect(&sliding));
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    run(&cluster, p.build().unwrap());
    cluster.shutdown();
    // The same windows in memory.
    let all: Vec<(i64, u64)> = (0..2).flat_map(|t| jittered(t, n)).map(|(t, i)| (t.0, i)).collect();
    let mut count: BTreeMap<(u64, i64), u64> = BTreeMap::new();
    let mut sum: BTreeMap<(u64, i64), u64> = BTreeMap::new();
    let mut slide: BTreeMap<(u64, i64), u64> = BTreeMap::new();
    for &(t, i) in &all {
        *count.entry((i % 5, t - t % 100)).or_default() += 1;
        *sum.entry((i % 5, t - t % 100)).or_default() += i;
        for start in [t - t % 50, t - t % 50 - 50] {
            if start >= 0 || t < 50 {
                *slide.entry((i % 5, start)).or_default() += i;
            }
        }
    }
    slide.retain(|(_, start), _| *start > -100);
    let got = |r: &Results, size: i64| -> BTreeMap<(u64, i64), u64> {
        let r = r.lock().unwrap();
        let mut m = BTreeMap::new();
        for w in r.iter() {
            assert_eq!(w.window.end.0 - w.window.start.0, size, "{w:?}");
            let previous = m.insert((w.key, w.window.start.0), w.value);
            assert_eq!(previous, None, "window {w:?} was emitted twice");
        }
        m
    };
    assert_eq!(got(&counts, 100), count, "tumbling counts");
    assert_eq!(got(&sums, 100), sum, "tumbling sums");
    assert_eq!(got(&sliding, 100), slide, "sliding sums");
}

#[test]
fn late_records_are_counted_or_sent_aside_never_lost() {
    use gearpump::dsl::{Watermarks, Window, Windowed};
    // Some timestamps far more out of order than the bound allows: they come late.
    let n = 20_000u64;
    // Paced at about as many milliseconds of application time as of wall time (10 records a
    // millisecond), so that the watermark moves while records still come.
    let stamped = move || {
        (0..n).map(|i| {
            if i % 100 == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
            // In time order but for stragglers: some 600 ms behind (late, but within the
            // allowed lateness once the watermark has passed their window: how many depends on
            // how far the clock lags), some 20 s behind (beyond it).
            // Rare (one in flight holds the clock back until it is acknowledged).
            let behind = if i % 4999 == 2500 {
                600
            } else if i % 5003 == 4000 {
                20_000
            } else {
                0
            };
            (Timestamp(30_000 + (i / 10) as i64 - behind), i)
        })
    };
    let results: Arc<Mutex<Vec<(Windowed<u64, u64>, Timestamp)>>> = Arc::default();
    let late: Arc<Mutex<Vec<u64>>> = Arc::default();
    let p = pipeline("lateRecords");
    let (r, l) = (results.clone(), late.clone());
    p.generate("numbers", 1, move |_| stamped())
        .watermarks(Watermarks::bounded(Duration::from_millis(20)))
        .key_by(|i: &u64| i % 3)
        .window(Window::tumbling(Duration::from_millis(50)))
        .allowed_lateness(Duration::from_millis(1000))
        .late_records(move |records| {
            records.for_each(move |i, _| l.lock().unwrap().push(i));
        })
        .count()
        .for_each(move |w, t| r.lock().unwrap().push((w, t)));
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    run(&cluster, p.build().unwrap());
    cluster.shutdown();
    // The last result of each window (late firings update it) plus the records sent aside
    // account for every record once.
    let mut last: BTreeMap<(u64, i64), u64> = BTreeMap::new();
    for (w, t) in results.lock().unwrap().iter() {
        assert!(t.0 >= w.window.end.0 - 1, "a result is stamped at or after its window's end: {w:?} at {t}");
        let e = last.entry((w.key, w.window.start.0)).or_default();
        assert!(w.value >= *e, "a late firing only adds: {w:?} after {e}");
        *e = w.value;
    }
    let late = late.lock().unwrap();
    eprintln!("{} results for {} windows, {} late records", results.lock().unwrap().len(), last.len(), late.len());
    assert!(!late.is_empty(), "the test makes late records");
    assert_eq!(last.values().sum::<u64>() + late.len() as u64, n);
}

#[test]
fn a_window_join_pairs_equal_keys_of_the_same_window() {
    use gearpump::dsl::Window;
    let pairs: Arc<Mutex<Vec<(u64, i64, (u64, String))>>> = Arc::default();
    let p = pipeline("windowJoin");
    // Orders 0..300 for customers 0..10, one a millisecond; payments for every third order.
    let orders = p.generate("orders", 1, |_| (0..300u64).map(|o| (Timestamp(o as i64), (o % 10, o))));
    let payments = p.generate("payments", 2, |info| {
        let t = u64::from(info.task_id.index);
        (0..300u64).filter(move |o| o % 3 == 0 && o % 2 == t).map(|o| (Timestamp(o as i64 + 5), format!("paid {o}")))
    });
    let out = pairs.clone();
    orders
        .join(
            payments,
            |(customer, _): &(u64, u64)| *customer,
            |paid: &String| paid[5..].parse::<u64>().unwrap() % 10,
            Window::tumbling(Duration::from_millis(100)),
        )
        .for_each(move |w, _| out.lock().unwrap().push((w.key, w.window.start.0, ((w.value.0).1, w.value.1))));
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    run(&cluster, p.build().unwrap());
    cluster.shutdown();
    let mut expected = Vec::new();
    for o in 0..300u64 {
        for paid in (0..300u64).filter(|p| p % 3 == 0) {
            let (to, tp) = (o as i64, paid as i64 + 5);
            if o % 10 == paid % 10 && to - to % 100 == tp - tp % 100 {
                expected.push((o % 10, to - to % 100, (o, format!("paid {paid}"))));
            }
        }
    }
    expected.sort();
    let mut got = pairs.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, expected);
}

#[test]
fn processing_time_windows_count_every_record_once() {
    use gearpump::dsl::Window;
    let n = 30_000u64;
    let counts: Arc<Mutex<Vec<(i64, u64)>>> = Arc::default();
    let p = pipeline("processingTime");
    let c = counts.clone();
    p.generate("numbers", 1, move |_| {
        (0..n).map(|i| {
            if i % 1000 == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
            (Timestamp(i as i64), i)
        })
    })
    .key_by(|_: &u64| 0u8)
    .window(Window::tumbling(Duration::from_millis(20)).processing_time())
    .count()
    .for_each(move |w, _| c.lock().unwrap().push((w.window.start.0, w.value)));
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    run(&cluster, p.build().unwrap());
    cluster.shutdown();
    let counts = counts.lock().unwrap();
    assert!(counts.len() > 1, "the run spans several windows: {counts:?}");
    let starts: BTreeSet<i64> = counts.iter().map(|c| c.0).collect();
    assert_eq!(starts.len(), counts.len(), "each window fired once");
    assert_eq!(counts.iter().map(|c| c.1).sum::<u64>(), n);
}

#[test]
fn invalid_windows_and_watermarks_are_errors_naming_the_operator() {
    use gearpump::dsl::{Watermarks, Window};
    let bad = |w: Window| {
        let p = Pipeline::new("badWindow");
        p.collection("numbers", [1u64]).key_by(|i: &u64| *i).window(w).count().name("perKey").for_each(|_, _| {});
        p.build().unwrap_err()
    };
    let e = bad(Window::tumbling(Duration::ZERO));
    assert!(matches!(&e, DslError::Invalid { operator, .. } if operator == "perKey"), "{e}");
    let e = bad(Window::sliding(Duration::from_secs(1), Duration::from_secs(2)));
    assert!(e.to_string().contains("slide (2000 ms) must not exceed its size (1000 ms)"), "{e}");
    let e = bad(Window::session(Duration::ZERO));
    assert!(e.to_string().contains("gap"), "{e}");
    // A DataSource replays by its own timestamps: it must stamp its records itself.
    let p = Pipeline::new("badAssigner");
    p.source("numbers", 1, |_| Ok(gearpump::NumberSource::new(10, 1)))
        .assign_timestamps(|i: &u64| Timestamp(*i as i64))
        .for_each(|_, _| {});
    let e = p.build().unwrap_err();
    assert!(e.to_string().contains("\"numbers\"") && e.to_string().contains("KafkaSource::timestamped"), "{e}");
    let p = Pipeline::new("badWatermarks");
    p.collection("numbers", [1u64]).map(|i| i + 1).watermarks(Watermarks::ascending()).for_each(|_, _| {});
    let e = p.build().unwrap_err();
    assert!(e.to_string().contains("\"map\"") && e.to_string().contains("not a source"), "{e}");
}

#[test]
fn assigned_timestamps_place_a_collection_in_its_windows() {
    use gearpump::dsl::{Watermarks, Window};
    // Events (user, time in ms), out of order by up to 3 s.
    let events: Vec<(&str, i64)> =
        vec![("ann", 1_000), ("bob", 61_000), ("ann", 59_000), ("ann", 58_000), ("bob", 2_000), ("ann", 121_000)];
    let events: Vec<(String, i64)> = events.into_iter().map(|(u, t)| (u.to_string(), t)).collect();
    let got: Arc<Mutex<BTreeSet<(String, i64, u64)>>> = Arc::default();
    let g = got.clone();
    let p = pipeline("assigned");
    p.collection("events", events)
        .assign_timestamps(|(_, t): &(String, i64)| Timestamp(*t))
        .watermarks(Watermarks::bounded(Duration::from_secs(60)))
        .key_by(|(user, _): &(String, i64)| user.clone())
        .window(Window::tumbling(Duration::from_secs(60)))
        .count()
        .for_each(move |w, _| {
            g.lock().unwrap().insert((w.key, w.window.start.0, w.value));
        });
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    run(&cluster, p.build().unwrap());
    cluster.shutdown();
    let expected: BTreeSet<(String, i64, u64)> =
        [("ann", 0, 3), ("ann", 120_000, 1), ("bob", 0, 1), ("bob", 60_000, 1)]
            .into_iter()
            .map(|(u, s, n)| (u.to_string(), s, n))
            .collect();
    assert_eq!(*got.lock().unwrap(), expected);
}

/// Ten records stamped with the wall clock, then nothing, without ending: an idle source.
struct TenThenIdle(u64);

impl gearpump::DataSource for TenThenIdle {
    fn open(&mut self, _ctx: &mut TaskContext<'_>, _start: Timestamp) -> TaskResult {
        Ok(())
    }

    fn read(&mut self) -> Result<Option<Message>, gearpump::TaskError> {
        if self.0 == 10 {
            return Ok(None);
        }
        self.0 += 1;
        Ok(Some(Message::new(self.0, Timestamp::now())))
    }
}

/// Runs ten wall-clock-stamped records of an idle source through one-second windows for
/// `wait`; returns the counts that fired.
fn idle_source_counts(name: &str, watermarks: gearpump::dsl::Watermarks, wait: Duration) -> Vec<u64> {
    use gearpump::dsl::Window;
    let fired: Arc<Mutex<Vec<u64>>> = Arc::default();
    let f = fired.clone();
    let p = pipeline(name);
    p.source("ten", 1, |_| Ok(TenThenIdle(0)))
        .watermarks(watermarks)
        .key_by(|_: &u64| 0u8)
        .window(Window::tumbling(Duration::from_secs(1)))
        .count()
        .for_each(move |w, _| f.lock().unwrap().push(w.value));
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    let client = cluster.client();
    let id = client.submit(p.build().unwrap()).unwrap();
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline && fired.lock().unwrap().iter().sum::<u64>() < 10 {
        std::thread::sleep(Duration::from_millis(50));
    }
    client.kill(id).unwrap();
    cluster.shutdown();
    fired.lock().unwrap().clone()
}

#[test]
fn an_idle_source_lets_its_windows_fire() {
    use gearpump::dsl::Watermarks;
    // The source reads ten records and then nothing, without ending. Its watermark stays at the
    // last record's time, so the window holding it never closes (the ten are read within a
    // millisecond or so; should they straddle a second, the earlier window does close)...
    let held = idle_source_counts("notIdle", Watermarks::ascending(), Duration::from_secs(2));
    assert!(held.iter().sum::<u64>() < 10, "{held:?}");
    // ...unless idleness lets the watermark follow the wall clock.
    let fired = idle_source_counts(
        "idle",
        Watermarks::ascending().idle_after(Duration::from_millis(300)),
        Duration::from_secs(60),
    );
    assert_eq!(fired.iter().sum::<u64>(), 10, "every record counted once the windows closed: {fired:?}");
}
