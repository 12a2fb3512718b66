//! A slow sink back-pressures the pipeline up to the source; no queue exceeds its bound.

use gearpump::prelude::*;
use gearpump::{AppStatus, ClusterConfig, EmbeddedCluster, FlowConfig};
use std::time::{Duration, Instant};

struct Numbers(u64);
impl Task for Numbers {
    fn on_start(&mut self, ctx: &mut TaskContext<'_>, _: StartTime) -> TaskResult {
        ctx.send_self(Message::new((), Timestamp::now()));
        Ok(())
    }
    fn on_next(&mut self, ctx: &mut TaskContext<'_>, _: Message) -> TaskResult {
        // As fast as it is allowed to.
        while !ctx.is_backpressured() {
            self.0 += 1;
            ctx.output(Message::new(self.0, Timestamp::now()));
            if self.0.is_multiple_of(1000) {
                break;
            }
        }
        ctx.send_self(Message::new((), Timestamp::now()));
        Ok(())
    }
}

struct Forward;
impl Task for Forward {
    fn on_next(&mut self, ctx: &mut TaskContext<'_>, msg: Message) -> TaskResult {
        ctx.output(msg);
        Ok(())
    }
}

struct Slow(u64);
impl Task for Slow {
    fn on_next(&mut self, _: &mut TaskContext<'_>, _: Message) -> TaskResult {
        self.0 += 1;
        if self.0.is_multiple_of(20) {
            std::thread::sleep(Duration::from_micros(500));
        }
        Ok(())
    }
}

#[test]
fn slow_sink_bounds_every_queue_and_holds_back_the_source() {
    check_backpressure(gearpump::DataPlane::InMemory);
}

#[test]
fn back_pressure_works_the_same_over_tcp() {
    check_backpressure(gearpump::DataPlane::tcp([127, 0, 0, 1].into()));
}

fn check_backpressure(data_plane: gearpump::DataPlane) {
    let flow = FlowConfig::default();
    let cluster = EmbeddedCluster::start(ClusterConfig { flow, data_plane, ..ClusterConfig::default() });
    let client = cluster.client();
    let source = Processor::from_fn("Numbers", 1, |_| Ok(Numbers(0)));
    let middle = Processor::from_fn("Forward", 2, |_| Ok(Forward));
    let sink = Processor::from_fn("Slow", 1, |_| Ok(Slow(0)));
    let app = StreamApplication::builder("backpressure")
        .edge(&source, PartitionerSpec::shuffle(), &middle)
        .edge(&middle, PartitionerSpec::hash(), &sink)
        .build()
        .unwrap();
    let id = client.submit(app).unwrap();
    client.wait_active(id, Duration::from_secs(30)).unwrap();

    let max_pending = u64::from(flow.max_pending);
    // Un-acked messages the pipeline can hold: source→2 middle tasks, 2 middle tasks→sink.
    let capacity = 4 * max_pending;
    // Counters are published per activation, so a reading may lag by one activation's work.
    let slack = 2 * 4096;
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut samples = 0;
    let mut last_received = 0;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(150));
        let stats = client.stats(id).unwrap();
        let (src, mid, slow) = (&stats.processors[0], &stats.processors[1], &stats.processors[2]);
        for t in src.tasks.iter().chain(&mid.tasks) {
            assert!(t.max_pending <= max_pending, "{:?} had {} un-acked", t.task, t.max_pending);
        }
        for t in &mid.tasks {
            assert!(t.max_queued <= max_pending, "{:?} queued {}", t.task, t.max_queued);
        }
        assert!(slow.tasks[0].max_queued <= 2 * max_pending, "sink queued {}", slow.tasks[0].max_queued);
        assert!(
            src.sent <= slow.received + capacity + slack,
            "the source ran ahead: sent {} while the sink received {}",
            src.sent,
            slow.received
        );
        last_received = slow.received;
        samples += 1;
    }
    assert!(samples > 5);
    assert!(last_received > 0, "the sink made progress");
    // The report shows where the back-pressure is: on the edge into the slow sink, most of
    // the time.
    let edge = |from: u32, to: u32| {
        let s = client.snapshot().unwrap();
        let r = s.apps.into_iter().find(|a| a.info.id == id).and_then(|a| a.runtime);
        r.and_then(|r| r.edges.into_iter().find(|e| (e.from, e.to) == (from, to)))
            .map_or(0, |e| e.back_pressure_permille)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while edge(1, 2) < 500 {
        assert!(Instant::now() < deadline, "the edge into the slow sink shows {} ‰ back-pressure", edge(1, 2));
        std::thread::sleep(Duration::from_millis(200));
    }
    client.kill(id).unwrap();
    assert_eq!(client.wait(id, Duration::from_secs(30)).unwrap().status, AppStatus::Terminated);
    cluster.shutdown();
}
