//! Submission, status, kill, failure, timers, watermarks and the other partitioners on the
//! embedded cluster.

use gearpump::prelude::*;
use gearpump::{AppId, AppStatus, ClusterConfig, EmbeddedCluster, KillError, SubmitError};
use gearpump_examples::wordcount;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// Emits `0..n` (as `(task index, i)`) then ends.
struct Count {
    n: u64,
    next: u64,
    index: u32,
}
impl Task for Count {
    fn on_start(&mut self, ctx: &mut TaskContext<'_>, _: StartTime) -> TaskResult {
        self.index = ctx.task_id().index;
        ctx.send_self(Message::new((), Timestamp(0)));
        Ok(())
    }
    fn on_next(&mut self, ctx: &mut TaskContext<'_>, _: Message) -> TaskResult {
        while self.next < self.n && !ctx.is_backpressured() {
            ctx.output(Message::new((self.index, self.next), Timestamp(self.next as i64)));
            self.next += 1;
        }
        if self.next < self.n {
            ctx.send_self(Message::new((), Timestamp(0)));
        }
        Ok(())
    }
    fn watermark(&self) -> Option<Timestamp> {
        (self.next == self.n).then_some(Timestamp::MAX)
    }
}

type Received = Arc<Mutex<Vec<(u32, (u32, u64))>>>;

/// Records `(own index, value)` of everything it gets.
struct Record(Received, Vec<(u32, u64)>);
impl Task for Record {
    fn on_next(&mut self, _: &mut TaskContext<'_>, msg: Message) -> TaskResult {
        self.1.push(*msg.get::<(u32, u64)>().ok_or("expected (u32, u64)")?);
        Ok(())
    }
    fn on_stop(&mut self, ctx: &mut TaskContext<'_>) {
        let me = ctx.task_id().index;
        self.0.lock().extend(self.1.drain(..).map(|v| (me, v)));
    }
}

fn count_app(
    name: &str,
    sources: u32,
    n: u64,
    partitioner: PartitionerSpec,
    sinks: u32,
    out: &Received,
) -> StreamApplication {
    let source = Processor::from_fn("Count", sources, move |_| Ok(Count { n, next: 0, index: 0 }));
    let out = out.clone();
    let sink = Processor::from_fn("Record", sinks, move |_| Ok(Record(out.clone(), Vec::new())));
    StreamApplication::builder(name).edge(&source, partitioner, &sink).build().unwrap()
}

#[test]
fn broadcast_reaches_every_task_and_co_location_keeps_the_index() {
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    let client = cluster.client();

    let out = Received::default();
    let id = client.submit(count_app("broadcast", 2, 500, PartitionerSpec::broadcast(), 3, &out)).unwrap();
    assert_eq!(client.wait(id, WAIT).unwrap().status, AppStatus::Succeeded);
    let got = out.lock().clone();
    assert_eq!(got.len(), 2 * 500 * 3);
    for sink in 0..3 {
        assert_eq!(got.iter().filter(|(s, _)| *s == sink).count(), 1000, "sink task {sink}");
    }

    let out = Received::default();
    let id = client.submit(count_app("colocated", 3, 500, PartitionerSpec::co_location(), 3, &out)).unwrap();
    assert_eq!(client.wait(id, WAIT).unwrap().status, AppStatus::Succeeded);
    let got = out.lock().clone();
    assert_eq!(got.len(), 1500);
    assert!(got.iter().all(|(sink, (source, _))| sink == source), "co-location crossed indices");
    cluster.shutdown();
}

#[test]
fn submit_list_kill_and_the_errors_around_them() {
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    let client = cluster.client();
    let endless = || wordcount::application(1, 1, PartitionerSpec::hash(), None, None).unwrap();
    let id = client.submit(endless()).unwrap();
    assert_eq!(id, AppId(1));
    assert_eq!(client.wait_active(id, WAIT).unwrap().status, AppStatus::Active);

    // A second application of the same name is refused while the first runs.
    match client.submit(endless()) {
        Err(SubmitError::DuplicateName { name, id: running }) => {
            assert_eq!((name.as_str(), running), ("wordCount", id));
        }
        other => panic!("expected a duplicate-name error, got {other:?}"),
    }
    // More tasks than slots.
    let huge = wordcount::application(150, 100, PartitionerSpec::hash(), None, None).unwrap();
    let err = client.submit(huge.renamed("huge").unwrap()).unwrap_err();
    assert!(matches!(err, SubmitError::NotEnoughSlots { needed: 251, .. }), "{err}");

    let listed: Vec<_> = client.list().into_iter().map(|a| (a.id, a.name, a.status)).collect();
    assert_eq!(listed, vec![(id, "wordCount".to_string(), AppStatus::Active)]);

    client.kill(id).unwrap();
    assert_eq!(client.wait(id, WAIT).unwrap().status, AppStatus::Terminated);
    assert_eq!(client.kill(id), Err(KillError::NotRunning { id, status: AppStatus::Terminated }));
    assert_eq!(client.kill(AppId(99)), Err(KillError::UnknownApp(AppId(99))));
    assert!(client.status(AppId(99)).is_none());

    // The name is free again, and ids keep counting.
    let again = client.submit(endless()).unwrap();
    assert_eq!(again, AppId(2));
    client.kill(again).unwrap();
    client.wait(again, WAIT).unwrap();
    cluster.shutdown();
}

struct FailAfter(u64, bool);
impl Task for FailAfter {
    fn on_next(&mut self, _: &mut TaskContext<'_>, _: Message) -> TaskResult {
        self.0 += 1;
        if self.0 == 100 {
            if self.1 {
                panic!("boom at message 100");
            }
            return Err("refusing message 100".into());
        }
        Ok(())
    }
}

#[test]
fn a_task_error_or_panic_fails_the_application_with_the_error() {
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    let client = cluster.client();
    for (name, panics, expected) in
        [("erring", false, "refusing message 100"), ("panicking", true, "boom at message 100")]
    {
        let source = Processor::from_fn("Count", 1, |_| Ok(Count { n: 10_000, next: 0, index: 0 }));
        let sink = Processor::from_fn("FailAfter", 1, move |_| Ok(FailAfter(0, panics)));
        let app = StreamApplication::builder(name).path([&source, &sink]).build().unwrap();
        let id = client.submit(app).unwrap();
        let summary = client.wait(id, WAIT).unwrap();
        assert_eq!(summary.status, AppStatus::Failed, "{name}");
        let error = summary.error.unwrap_or_default();
        assert!(error.contains(expected) && error.contains("processorId=1"), "{name}: {error}");
    }
    // The cluster is still usable and its slots are free.
    assert!(client.workers().iter().all(|w| w.used == 0));
    cluster.shutdown();
}

#[test]
fn a_failing_task_factory_fails_the_application() {
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    let client = cluster.client();
    let source = Processor::from_fn("Count", 1, |_| Ok(Count { n: 10, next: 0, index: 0 }));
    let sink = Processor::from_fn("Broken", 1, |_| -> Result<FailAfter, TaskError> { Err("no database".into()) });
    let app = StreamApplication::builder("broken").path([&source, &sink]).build().unwrap();
    let id = client.submit(app).unwrap();
    let summary = client.wait(id, WAIT).unwrap();
    assert_eq!(summary.status, AppStatus::Failed);
    assert!(summary.error.unwrap().contains("no database"));
    cluster.shutdown();
}

/// A source driven by timers: a periodic one that is cancelled after 5 firings, and a one-shot.
#[derive(Default)]
struct Ticker {
    periodic: Option<TimerId>,
    once: Option<TimerId>,
    periodic_fired: u32,
    once_fired: u32,
    log: Arc<Mutex<(u32, u32)>>,
}
impl Task for Ticker {
    fn on_start(&mut self, ctx: &mut TaskContext<'_>, _: StartTime) -> TaskResult {
        self.periodic = Some(ctx.schedule(Duration::from_millis(5), Duration::from_millis(5)));
        self.once = Some(ctx.schedule_once(Duration::from_millis(1)));
        Ok(())
    }
    fn on_next(&mut self, _: &mut TaskContext<'_>, _: Message) -> TaskResult {
        Ok(())
    }
    fn on_timer(&mut self, ctx: &mut TaskContext<'_>, timer: TimerId) -> TaskResult {
        if Some(timer) == self.once {
            self.once_fired += 1;
        } else if Some(timer) == self.periodic {
            self.periodic_fired += 1;
            ctx.output(Message::new(u64::from(self.periodic_fired), Timestamp(i64::from(self.periodic_fired))));
            if self.periodic_fired == 5 {
                ctx.cancel(timer);
            }
        }
        Ok(())
    }
    fn watermark(&self) -> Option<Timestamp> {
        // Ends a while after the cancel, so late firings would be seen.
        (self.periodic_fired >= 5).then_some(Timestamp::MAX)
    }
    fn on_stop(&mut self, _: &mut TaskContext<'_>) {
        *self.log.lock() = (self.periodic_fired, self.once_fired);
    }
}

/// Records the upstream watermarks it is told.
struct Watch(Arc<Mutex<Vec<Timestamp>>>);
impl Task for Watch {
    fn on_next(&mut self, _: &mut TaskContext<'_>, _: Message) -> TaskResult {
        Ok(())
    }
    fn on_watermark_progress(&mut self, ctx: &mut TaskContext<'_>, watermark: Timestamp) -> TaskResult {
        assert_eq!(ctx.upstream_min_clock(), watermark);
        self.0.lock().push(watermark);
        Ok(())
    }
}

#[test]
fn timers_fire_and_cancel_and_watermarks_only_move_forward() {
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    let client = cluster.client();
    let log = Arc::new(Mutex::new((0, 0)));
    let marks = Arc::new(Mutex::new(Vec::new()));
    let (l, m) = (log.clone(), marks.clone());
    let ticker = Processor::from_fn("Ticker", 1, move |_| Ok(Ticker { log: l.clone(), ..Ticker::default() }));
    let watch = Processor::from_fn("Watch", 1, move |_| Ok(Watch(m.clone())));
    let app = StreamApplication::builder("timers").path([&ticker, &watch]).build().unwrap();
    let id = client.submit(app).unwrap();
    assert_eq!(client.wait(id, WAIT).unwrap().status, AppStatus::Succeeded);
    assert_eq!(*log.lock(), (5, 1), "(periodic firings, one-shot firings)");
    let marks = marks.lock().clone();
    assert!(marks.windows(2).all(|w| w[0] < w[1]), "watermarks went backwards: {marks:?}");
    assert_eq!(marks.last(), Some(&Timestamp::MAX));
    cluster.shutdown();
}
