//! A task's home in an executor: its mailbox ([`TaskCell`]) and the runner that drives the
//! user's [`Task`] through it.
//!
//! Data (batches from upstream, self messages, timers) and control (start, acks, clock ticks,
//! upstream clocks, stop) arrive in separate queues. Control is always handled; data only while
//! the task is started and none of its downstream tasks has `max_pending` un-acked messages.
//! That gate is the back-pressure: a blocked task stops draining its input, its upstream's
//! messages stay un-acked, and the upstream blocks in turn, up to the source.

use crate::handoff::Handoff;
use crate::pool::{PoolShared, Runnable};
use crate::timer::{TimerTarget, Timers};
use crate::window::WindowedHistogram;
use gearpump_api::{PartitionerInstance, StartTime, Task, TaskContext, TaskInfo, TaskIo, TaskResult, TimerId};
use gearpump_core::{Message, TaskId, Timestamp};
use gearpump_protocol::ExecutorReport;
use gearpump_transport::flow::{FlowConfig, InboundFlow, OutboundFlow};
use gearpump_transport::tcp::Connection;
use gearpump_transport::wire::{BatchHeader, EncodedBatch};
use gearpump_transport::{AckMessage, AckRequest, DataBatch, SessionId, now_nanos};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

/// How many input messages one activation handles before letting other tasks run.
const ACTIVATION_BUDGET: usize = 4096;

/// What a task tells its AppMaster.
#[derive(Debug)]
pub enum TaskEvent {
    /// The task's min clock.
    Clock {
        /// The task.
        task: TaskId,
        /// Its min clock.
        clock: Timestamp,
    },
    /// The task failed; it handles no more input.
    Failed {
        /// The task.
        task: TaskId,
        /// What went wrong.
        error: String,
    },
    /// The task has stopped (after `on_stop`).
    Stopped {
        /// The task.
        task: TaskId,
    },
    /// The task persisted its state at `time`.
    Checkpointed {
        /// The task.
        task: TaskId,
        /// The checkpoint time.
        time: Timestamp,
        /// How big the state was, in bytes.
        bytes: u64,
        /// How long writing it took, in microseconds.
        took_us: u64,
    },
}

impl From<TaskEvent> for ExecutorReport {
    fn from(event: TaskEvent) -> Self {
        match event {
            TaskEvent::Clock { task, clock } => ExecutorReport::Clock { task, clock },
            TaskEvent::Failed { task, error } => ExecutorReport::TaskFailed { task, error },
            TaskEvent::Stopped { task } => ExecutorReport::TaskStopped { task },
            TaskEvent::Checkpointed { task, time, bytes, took_us } => {
                ExecutorReport::Checkpointed { task, time, bytes, took_us }
            }
        }
    }
}

impl TaskEvent {
    /// The task event an executor's report carries (what it sent for one); any other report
    /// back as it was.
    pub fn from_report(report: ExecutorReport) -> Result<TaskEvent, ExecutorReport> {
        Ok(match report {
            ExecutorReport::Clock { task, clock } => TaskEvent::Clock { task, clock },
            ExecutorReport::TaskFailed { task, error } => TaskEvent::Failed { task, error },
            ExecutorReport::TaskStopped { task } => TaskEvent::Stopped { task },
            ExecutorReport::Checkpointed { task, time, bytes, took_us } => {
                TaskEvent::Checkpointed { task, time, bytes, took_us }
            }
            other => return Err(other),
        })
    }
}

pub(crate) enum Input {
    Batch {
        from: TaskId,
        session: SessionId,
        len: usize,
        messages: std::vec::IntoIter<Message>,
        ack_request: Option<AckRequest>,
        counted: bool,
        /// The connection a remote batch came on; its Acks go back that way.
        reply: Option<Arc<Connection>>,
        /// The latency probe: when the sender flushed the batch (ns since the epoch).
        sent_at: u64,
        /// A remote batch's messages, still encoded: decoded when the task reaches them.
        encoded: Option<EncodedBatch>,
    },
    SelfMessage(Message),
    Timer(TimerId),
}

#[derive(Clone, Copy)]
pub(crate) enum Control {
    Start(StartTime),
    Ack(AckMessage),
    Tick,
    UpstreamClock(Timestamp),
    CheckpointComplete(Timestamp),
    Stop,
}

struct Inbox {
    data: VecDeque<Input>,
    control: VecDeque<Control>,
    /// Who submits the task next (see [`Handoff`]).
    handoff: Handoff,
}

/// Counters a task publishes for the AppMaster, metrics and tests.
#[derive(Debug, Default)]
pub struct TaskCounters {
    /// Messages received from upstream tasks.
    pub received: AtomicU64,
    /// Messages sent to downstream tasks (counted once per target).
    pub sent: AtomicU64,
    /// Input messages queued now (inbox and taken but unprocessed).
    pub queued: AtomicU64,
    /// The most input messages ever queued at once.
    pub max_queued: AtomicU64,
    /// The most un-acked messages to one downstream task ever seen.
    pub max_pending: AtomicU64,
    /// The task's last reported min clock.
    pub clock: AtomicI64,
    /// Receive-latency samples (one per input batch).
    pub latency_samples: AtomicU64,
    /// Receive latency, median, in microseconds.
    pub latency_p50_us: AtomicU64,
    /// Receive latency, 99th percentile, in microseconds.
    pub latency_p99_us: AtomicU64,
    /// Receive latency, 99.9th percentile, in microseconds.
    pub latency_p999_us: AtomicU64,
    /// Nanoseconds spent unable to take input because a downstream task had too many
    /// un-acked messages (back-pressure).
    pub blocked_ns: AtomicU64,
    /// The same per outgoing edge, by downstream processor: nanoseconds during which some
    /// task of that edge had too many un-acked messages. Published on each clock tick.
    pub edges_blocked_ns: Mutex<Vec<(u32, u64)>>,
    /// Receive latency and processing time of the last 10–20 s, published on each clock tick.
    pub histograms: Mutex<TaskHistograms>,
}

/// A task's recent receive latency and processing time, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TaskHistograms {
    /// From a batch's flush at the sender to its last message processed here.
    pub receive_latency: gearpump_metrics::HistogramSummary,
    /// One `on_next` call, sampled once every `gearpump.metrics.sample-rate` messages.
    pub process_time: gearpump_metrics::HistogramSummary,
}

/// A task's mailbox and runner.
pub struct TaskCell {
    id: TaskId,
    inbox: Mutex<Inbox>,
    runner: Mutex<Option<TaskRunner>>,
    pool: Arc<PoolShared>,
    events: UnboundedSender<TaskEvent>,
    counters: TaskCounters,
}

impl TaskCell {
    pub(crate) fn new(id: TaskId, pool: Arc<PoolShared>, events: UnboundedSender<TaskEvent>) -> Arc<TaskCell> {
        Arc::new(TaskCell {
            id,
            // Until started, data waits.
            inbox: Mutex::new(Inbox { data: VecDeque::new(), control: VecDeque::new(), handoff: Handoff::new() }),
            runner: Mutex::new(None),
            pool,
            events,
            counters: TaskCounters { clock: AtomicI64::new(i64::MIN), ..TaskCounters::default() },
        })
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The task's counters.
    pub fn counters(&self) -> &TaskCounters {
        &self.counters
    }

    pub(crate) fn install(&self, runner: TaskRunner) {
        *self.runner.lock() = Some(runner);
    }

    /// Drops the runner (and the references to other cells it holds). A task busy for more
    /// than a moment (stuck in `on_stop` past the stop timeout, say) is left as it is, with
    /// a warning: waiting for it could be forever.
    pub(crate) fn clear(&self) {
        match self.runner.try_lock_for(std::time::Duration::from_millis(200)) {
            Some(mut runner) => drop(runner.take()),
            None => tracing::warn!(task = %self.id, "The task is still busy; it is left behind."),
        }
    }

    /// Delivers a batch from an upstream task in this process.
    pub(crate) fn push_batch(self: &Arc<Self>, batch: DataBatch) {
        let len = batch.messages.len();
        self.push_data(
            Input::Batch {
                from: batch.from,
                session: batch.session,
                len,
                messages: batch.messages.into_iter(),
                ack_request: batch.ack_request,
                counted: false,
                reply: None,
                sent_at: batch.sent_at,
                encoded: None,
            },
            len,
        );
    }

    /// Delivers a batch that came over `reply`, its messages still encoded.
    pub(crate) fn push_encoded(self: &Arc<Self>, batch: EncodedBatch, reply: Arc<Connection>) {
        let len = batch.count as usize;
        self.push_data(
            Input::Batch {
                from: batch.from,
                session: batch.session,
                len,
                messages: Vec::new().into_iter(),
                ack_request: batch.ack_request,
                counted: false,
                reply: Some(reply),
                sent_at: batch.sent_at,
                encoded: Some(batch),
            },
            len,
        );
    }

    fn push_data(self: &Arc<Self>, input: Input, len: usize) {
        // Count before the push, so the runner's decrement can never run ahead of it.
        if len > 0 {
            let queued = self.counters.queued.fetch_add(len as u64, Ordering::Relaxed) + len as u64;
            self.counters.max_queued.fetch_max(queued, Ordering::Relaxed);
        }
        self.push(|inbox| {
            inbox.data.push_back(input);
            inbox.handoff.on_data()
        });
    }

    /// Delivers a control message; control is handled even when the task is back-pressured.
    pub(crate) fn push_control(self: &Arc<Self>, control: Control) {
        self.push(|inbox| {
            inbox.control.push_back(control);
            inbox.handoff.on_control()
        });
    }

    /// Pushes into the inbox with `put`, which says (from the hand-off) whether this caller
    /// must submit the task; it does so after unlocking.
    fn push(self: &Arc<Self>, put: impl FnOnce(&mut Inbox) -> bool) {
        let submit = put(&mut self.inbox.lock());
        if submit {
            self.pool.submit(self.clone());
        }
    }
}

impl Runnable for TaskCell {
    fn home(&self) -> usize {
        // Tasks of one index share a thread, like a Timely worker's operators.
        self.id.index as usize
    }

    fn run(self: Arc<Self>) {
        let mut more = false;
        {
            let mut guard = self.runner.lock();
            if let Some(runner) = guard.as_mut() {
                match std::panic::catch_unwind(AssertUnwindSafe(|| runner.activate(&self))) {
                    Ok(m) => more = m,
                    Err(panic) => {
                        let error = panic_message(&panic);
                        tracing::error!(task = %self.id, %error, "Task panicked.");
                        guard.take();
                        let _ = self.events.send(TaskEvent::Failed { task: self.id, error });
                        let _ = self.events.send(TaskEvent::Stopped { task: self.id });
                    }
                }
            } else {
                // Stopped or never installed: discard whatever arrives.
                let mut inbox = self.inbox.lock();
                inbox.data.clear();
                inbox.control.clear();
            }
        }
        let again = {
            let mut inbox = self.inbox.lock();
            let (control, data) = (!inbox.control.is_empty(), !inbox.data.is_empty());
            inbox.handoff.on_run_end(more, control, data)
        };
        if again {
            self.pool.submit(self.clone());
        }
    }
}

impl TimerTarget for TaskCell {
    fn fire(self: Arc<Self>, timer: TimerId) {
        self.push_data(Input::Timer(timer), 0);
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        format!("panic: {s}")
    } else if let Some(s) = panic.downcast_ref::<String>() {
        format!("panic: {s}")
    } else {
        "panic".to_string()
    }
}

/// Where a downstream task lives.
pub(crate) enum Destination {
    /// In this process: batches move into its mailbox.
    Local(Arc<TaskCell>),
    /// In another executor: batches are encoded onto the connection to it.
    Remote(Arc<Connection>),
}

/// One downstream task of an edge.
struct Target {
    id: TaskId,
    dest: Destination,
    buffer: Vec<Message>,
    flow: OutboundFlow,
    blocked: bool,
}

/// One outgoing edge of the task.
pub(crate) struct OutEdge {
    pub(crate) partitioner: PartitionerInstance,
    targets: Vec<Target>,
    /// The downstream processor's life: messages outside it are not sent.
    life: gearpump_api::LifeTime,
    /// Its targets that have too many un-acked messages, since when one has, and the
    /// nanoseconds one had before (this edge's back-pressure).
    blocked: u32,
    blocked_since: Option<std::time::Instant>,
    blocked_ns: u64,
}

impl OutEdge {
    /// One more of its targets is blocked.
    fn block(&mut self) {
        self.blocked += 1;
        if self.blocked == 1 {
            self.blocked_since = Some(std::time::Instant::now());
        }
    }

    /// One of its targets is not blocked any more.
    fn unblock(&mut self) {
        self.blocked -= 1;
        if self.blocked == 0
            && let Some(since) = self.blocked_since.take()
        {
            self.blocked_ns += since.elapsed().as_nanos() as u64;
        }
    }

    /// Its back-pressure so far, counting a blocked spell under way up to now.
    fn blocked_ns_now(&mut self) -> u64 {
        if let Some(since) = self.blocked_since.as_mut() {
            let now = std::time::Instant::now();
            self.blocked_ns += now.duration_since(*since).as_nanos() as u64;
            *since = now;
        }
        self.blocked_ns
    }
}

impl OutEdge {
    pub(crate) fn new(
        partitioner: PartitionerInstance,
        targets: Vec<(TaskId, Destination)>,
        flow: FlowConfig,
        life: gearpump_api::LifeTime,
    ) -> Self {
        OutEdge {
            partitioner,
            life,
            blocked: 0,
            blocked_since: None,
            blocked_ns: 0,
            targets: targets
                .into_iter()
                .map(|(id, dest)| Target {
                    id,
                    dest,
                    buffer: Vec::with_capacity(flow.ack_once_every as usize),
                    flow: OutboundFlow::new(flow),
                    blocked: false,
                })
                .collect(),
        }
    }
}

/// The runtime side of [`TaskIo`]: outputs, self messages, timers.
struct RunnerIo {
    me: TaskId,
    me_cell: Weak<TaskCell>,
    session: SessionId,
    index: u32,
    edges: Vec<OutEdge>,
    /// Whether some downstream processor has a bounded life (messages outside it are not
    /// sent): checked per edge only then.
    mortal: bool,
    /// Downstream task → (edge, target) for routing acks.
    target_of: HashMap<TaskId, (usize, usize)>,
    blocked_targets: usize,
    self_queue: Vec<Message>,
    timers: Arc<Timers>,
    active_timers: HashMap<TimerId, (Arc<AtomicBool>, bool)>,
    next_timer: u64,
    upstream_clock: Timestamp,
    max_output_ts: Timestamp,
    sent: u64,
    multicast: Vec<u32>,
    /// A send that failed during a callback; the runner fails the task with it.
    error: Option<String>,
    /// Where persistent tasks keep checkpoints.
    state_store: Option<Arc<dyn gearpump_api::StateStore>>,
}

impl RunnerIo {
    #[inline]
    fn send_to(&mut self, edge: usize, target: usize, msg: Message) {
        let t = &mut self.edges[edge].targets[target];
        let ts = msg.timestamp();
        t.buffer.push(msg);
        self.sent += 1;
        if let Some(req) = t.flow.on_send(ts)
            && let Err(err) = Self::flush(self.me, self.session, t, Some(req))
        {
            self.error.get_or_insert(err);
        }
        if !t.blocked && !t.flow.allows_more() {
            t.blocked = true;
            self.blocked_targets += 1;
            self.edges[edge].block();
        }
    }

    /// Sends the target's buffered messages (and an AckRequest after them). A value that
    /// cannot be encoded for a remote target is an error for the task.
    fn flush(me: TaskId, session: SessionId, t: &mut Target, ack_request: Option<AckRequest>) -> Result<(), String> {
        if t.buffer.is_empty() && ack_request.is_none() {
            return Ok(());
        }
        match &t.dest {
            Destination::Local(cell) => {
                let capacity = t.buffer.capacity();
                let messages = std::mem::replace(&mut t.buffer, Vec::with_capacity(capacity));
                cell.push_batch(DataBatch { from: me, session, messages, ack_request, sent_at: now_nanos() });
                Ok(())
            }
            Destination::Remote(conn) => {
                let header = BatchHeader { target: t.id, from: me, session, sent_at: now_nanos(), ack_request };
                let sent = conn.send_batch(header, &t.buffer);
                t.buffer.clear();
                sent.map_err(|e| format!("sending to {}: {e}", t.id))
            }
        }
    }

    fn flush_all(&mut self) {
        for e in &mut self.edges {
            for t in &mut e.targets {
                if !t.buffer.is_empty()
                    && let Err(err) = Self::flush(self.me, self.session, t, None)
                {
                    self.error.get_or_insert(err);
                }
            }
        }
    }

    /// Sends an AckRequest to every target for which `request` gives one.
    fn request_acks(&mut self, mut request: impl FnMut(&mut OutboundFlow) -> Option<AckRequest>) {
        for e in &mut self.edges {
            for t in &mut e.targets {
                if let Some(req) = request(&mut t.flow)
                    && let Err(err) = Self::flush(self.me, self.session, t, Some(req))
                {
                    self.error.get_or_insert(err);
                }
            }
        }
    }

    /// The most un-acked messages to any one target now. Acks are applied only between
    /// activations, so this taken at the end of one is the peak of that activation.
    fn current_max_pending(&self) -> u64 {
        self.edges.iter().flat_map(|e| e.targets.iter()).map(|t| t.flow.pending()).max().unwrap_or(0)
    }

    fn min_unacked(&self) -> Timestamp {
        self.edges
            .iter()
            .flat_map(|e| e.targets.iter())
            .map(|t| t.flow.min_unacked_timestamp())
            .min()
            .unwrap_or(Timestamp::MAX)
    }
}

impl TaskIo for RunnerIo {
    #[inline]
    fn output(&mut self, msg: Message) {
        if msg.timestamp() > self.max_output_ts {
            self.max_output_ts = msg.timestamp();
        }
        let edges = self.edges.len();
        for e in 0..edges {
            let last_edge = e + 1 == edges;
            if self.mortal && !self.edges[e].life.contains(msg.timestamp()) {
                continue;
            }
            let n = self.edges[e].targets.len() as u32;
            match &mut self.edges[e].partitioner {
                PartitionerInstance::Unicast(p) => {
                    if let Some(i) = p.get_partition(&msg, n, self.index) {
                        let i = i as usize;
                        if i < n as usize {
                            let m = if last_edge { return self.send_to(e, i, msg) } else { msg.clone() };
                            self.send_to(e, i, m);
                        }
                    }
                }
                PartitionerInstance::Broadcast => {
                    for i in 0..n as usize {
                        self.send_to(e, i, msg.clone());
                    }
                }
                PartitionerInstance::Multicast(p) => {
                    let mut out = std::mem::take(&mut self.multicast);
                    out.clear();
                    p.get_partitions(&msg, n, self.index, &mut out);
                    for &i in &out {
                        if i < n {
                            self.send_to(e, i as usize, msg.clone());
                        }
                    }
                    self.multicast = out;
                }
            }
        }
    }

    fn send_self(&mut self, msg: Message) {
        self.self_queue.push(msg);
    }

    fn schedule(&mut self, delay: Duration, interval: Option<Duration>) -> TimerId {
        self.next_timer += 1;
        let id = TimerId(self.next_timer);
        let target: Weak<dyn TimerTarget> = self.me_cell.clone();
        let cancel = self.timers.schedule(target, id, delay, interval);
        self.active_timers.insert(id, (cancel, interval.is_some()));
        id
    }

    fn cancel(&mut self, timer: TimerId) {
        if let Some((flag, _)) = self.active_timers.remove(&timer) {
            flag.store(true, Ordering::SeqCst);
        }
    }

    fn upstream_min_clock(&self) -> Timestamp {
        self.upstream_clock
    }

    #[inline]
    fn is_backpressured(&self) -> bool {
        self.blocked_targets > 0
    }

    fn state_store(&self) -> Option<&dyn gearpump_api::StateStore> {
        self.state_store.as_deref()
    }
}

/// Drives one user task.
pub(crate) struct TaskRunner {
    task: Box<dyn Task>,
    info: TaskInfo,
    io: RunnerIo,
    inbound: InboundFlow,
    local: VecDeque<Input>,
    is_source: bool,
    started: bool,
    done: bool,
    directory: Arc<crate::executor::Directory>,
    received: u64,
    /// Receive latency (µs) of this task's input batches: flush at the sender to processed here.
    latency: hdrhistogram::Histogram<u64>,
    /// The same, over the last 10–20 s, for metrics.
    recent_latency: WindowedHistogram,
    /// `on_next` time (ns) of one message in `sample_rate`.
    process_time: WindowedHistogram,
    /// Time one `on_next` call in this many; 0: never.
    sample_rate: u32,
    /// Messages until the next timed one.
    until_sample: u32,
    /// Since when the task has been back-pressured, if it is.
    blocked_since: Option<std::time::Instant>,
    /// The clock the task started at, until its clock first moves past it: that move is
    /// reported when it happens rather than at the next tick, so that after a start or a
    /// restart the application's clock moves again within milliseconds. At steady state
    /// clocks are reported only on ticks.
    unmoved: Option<Timestamp>,
}

impl TaskRunner {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        task: Box<dyn Task>,
        info: TaskInfo,
        cell: &Arc<TaskCell>,
        session: SessionId,
        edges: Vec<OutEdge>,
        is_source: bool,
        timers: Arc<Timers>,
        directory: Arc<crate::executor::Directory>,
        sample_rate: u32,
    ) -> Self {
        let mut target_of = HashMap::new();
        for (e, edge) in edges.iter().enumerate() {
            for (t, target) in edge.targets.iter().enumerate() {
                target_of.insert(target.id, (e, t));
            }
        }
        let mortal = edges.iter().any(|e| e.life != gearpump_api::LifeTime::IMMORTAL);
        TaskRunner {
            task,
            io: RunnerIo {
                me: info.task_id,
                me_cell: Arc::downgrade(cell),
                session,
                index: info.task_id.index,
                edges,
                mortal,
                target_of,
                blocked_targets: 0,
                self_queue: Vec::new(),
                timers,
                active_timers: HashMap::new(),
                next_timer: 0,
                upstream_clock: Timestamp::MIN,
                max_output_ts: Timestamp::MIN,
                sent: 0,
                multicast: Vec::new(),
                error: None,
                state_store: None,
            },
            info,
            inbound: InboundFlow::default(),
            local: VecDeque::new(),
            is_source,
            started: false,
            done: false,
            directory,
            received: 0,
            latency: hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid histogram bounds"),
            recent_latency: WindowedHistogram::new(3_600_000_000, 1e-3),
            process_time: WindowedHistogram::new(60_000_000_000, 1e-6),
            sample_rate,
            until_sample: sample_rate,
            blocked_since: None,
            unmoved: None,
        }
    }

    /// The task's min clock: a lower bound on the timestamp of anything it still holds or may
    /// emit (its own watermark, or for a source what it emitted last; the upstream clock it was
    /// told; its un-acked output).
    fn clock(&self) -> Timestamp {
        let own = self.task.watermark().unwrap_or(if self.is_source { self.io.max_output_ts } else { Timestamp::MAX });
        let upstream = if self.is_source { Timestamp::MAX } else { self.io.upstream_clock };
        own.min(upstream).min(self.io.min_unacked())
    }

    /// Reports the clock now if it has just moved past the start clock for the first time.
    fn report_first_move(&mut self, cell: &TaskCell) {
        let Some(start) = self.unmoved else { return };
        if !self.started || self.done {
            return;
        }
        let clock = self.clock();
        if clock > start {
            self.unmoved = None;
            cell.counters.clock.store(clock.0, Ordering::Relaxed);
            let _ = cell.events.send(TaskEvent::Clock { task: cell.id, clock });
        }
    }

    /// One `on_next` call, timed if it is the one in `sample_rate` due.
    #[inline]
    fn next(
        task: &mut dyn Task,
        info: &TaskInfo,
        io: &mut RunnerIo,
        msg: Message,
        (until, rate, hist): (&mut u32, u32, &mut WindowedHistogram),
    ) -> TaskResult {
        let mut ctx = TaskContext::new(info, io);
        if rate == 0 {
            return task.on_next(&mut ctx, msg);
        }
        *until -= 1;
        if *until > 0 {
            return task.on_next(&mut ctx, msg);
        }
        *until = rate;
        let t0 = std::time::Instant::now();
        let result = task.on_next(&mut ctx, msg);
        hist.record(t0.elapsed().as_nanos() as u64);
        result
    }

    /// Adds the time back-pressured so far to the task's counter; keeps counting from `still`
    /// if it is still blocked.
    fn account_blocked(&mut self, cell: &TaskCell, still: Option<std::time::Instant>) {
        if let Some(since) = self.blocked_since.take() {
            let ns = since.elapsed().as_nanos() as u64;
            cell.counters.blocked_ns.fetch_add(ns, Ordering::Relaxed);
        }
        self.blocked_since = still;
    }

    fn fail(&mut self, cell: &TaskCell, error: String) {
        Self::fail_task(&mut self.done, cell, error);
    }

    /// Gives the task a checkpoint store (for persistent tasks).
    pub(crate) fn with_state_store(mut self, store: Option<Arc<dyn gearpump_api::StateStore>>) -> Self {
        self.io.state_store = store;
        self
    }

    fn fail_task(done: &mut bool, cell: &TaskCell, error: String) {
        // A task's error goes to logs, the REST API and `gear`'s output: no credentials in it.
        let error = match gearpump_core::redact(&error) {
            std::borrow::Cow::Owned(masked) => masked,
            std::borrow::Cow::Borrowed(_) => error,
        };
        tracing::error!(task = %cell.id, %error, "Task failed.");
        *done = true;
        let _ = cell.events.send(TaskEvent::Failed { task: cell.id, error });
    }

    /// One activation: control first, then up to a budget of input. Returns whether input
    /// that could be handled now remains.
    fn activate(&mut self, cell: &Arc<TaskCell>) -> bool {
        let (controls, data) = {
            let mut inbox = cell.inbox.lock();
            (std::mem::take(&mut inbox.control), std::mem::take(&mut inbox.data))
        };
        self.local.extend(data);
        for c in controls {
            self.handle_control(cell, c);
        }
        if self.done {
            self.local.clear();
            cell.inbox.lock().handoff.set_blocked(true);
            return false;
        }
        let mut budget = ACTIVATION_BUDGET;
        while budget > 0 && self.started && self.io.blocked_targets == 0 && !self.done {
            let Some(input) = self.local.front_mut() else { break };
            match input {
                Input::Batch { from, session, len, messages, ack_request, counted, reply, sent_at, encoded } => {
                    let (from, session) = (*from, *session);
                    if !*counted {
                        *counted = true;
                        if *len > 0 && !self.inbound.on_data(from, session, *len) {
                            tracing::debug!(task = %cell.id, %from, session, "Dropped messages of an unknown session.");
                            cell.counters.queued.fetch_sub(*len as u64, Ordering::Relaxed);
                            self.local.pop_front();
                            continue;
                        }
                        self.received += *len as u64;
                        if let Some(enc) = encoded.take() {
                            let codecs = reply.as_ref().map(|c| c.codecs().clone()).unwrap_or_default();
                            match enc.decode(&codecs) {
                                Ok(decoded) => *messages = decoded.into_iter(),
                                Err(e) => {
                                    // The sender's binary and ours disagree on a type, or the
                                    // stream is corrupt: nothing safe to do but stop.
                                    let error = format!("cannot decode a batch from {from}: {e}");
                                    Self::fail_task(&mut self.done, cell, error);
                                    break;
                                }
                            }
                        }
                    }
                    for msg in messages.by_ref() {
                        budget -= 1;
                        if let Err(e) = Self::next(
                            &mut *self.task,
                            &self.info,
                            &mut self.io,
                            msg,
                            (&mut self.until_sample, self.sample_rate, &mut self.process_time),
                        ) {
                            Self::fail_task(&mut self.done, cell, e.to_string());
                            break;
                        }
                        if budget == 0 || self.io.blocked_targets > 0 {
                            break;
                        }
                    }
                    if messages.len() == 0 {
                        let req = ack_request.take();
                        let reply = reply.take();
                        if *sent_at > 0 {
                            let micros = now_nanos().saturating_sub(*sent_at) / 1_000;
                            self.latency.saturating_record(micros.max(1));
                            self.recent_latency.record(micros);
                        }
                        // Uncount before acking: the Ack lets the sender refill the queue.
                        if *len > 0 {
                            cell.counters.queued.fetch_sub(*len as u64, Ordering::Relaxed);
                        }
                        self.local.pop_front();
                        if let Some(req) = req
                            && let Some(ack) = self.inbound.on_ack_request(from, session, req)
                        {
                            let ack = AckMessage { from: cell.id, session, ack };
                            match reply {
                                Some(conn) => conn.send_ack(from, &ack),
                                None => {
                                    if let Some(sender) = self.directory.get(from) {
                                        sender.push_control(Control::Ack(ack));
                                    }
                                }
                            }
                        }
                    }
                }
                Input::SelfMessage(_) => {
                    let Some(Input::SelfMessage(msg)) = self.local.pop_front() else { unreachable!() };
                    budget -= 1;
                    let sampling = (&mut self.until_sample, self.sample_rate, &mut self.process_time);
                    if let Err(e) = Self::next(&mut *self.task, &self.info, &mut self.io, msg, sampling) {
                        self.fail(cell, e.to_string());
                    }
                }
                Input::Timer(timer) => {
                    let timer = *timer;
                    self.local.pop_front();
                    budget -= 1;
                    let Some(&(_, periodic)) = self.io.active_timers.get(&timer) else { continue };
                    if !periodic {
                        self.io.active_timers.remove(&timer);
                    }
                    let mut ctx = TaskContext::new(&self.info, &mut self.io);
                    if let Err(e) = self.task.on_timer(&mut ctx, timer) {
                        self.fail(cell, e.to_string());
                    }
                }
            }
            if !self.io.self_queue.is_empty() {
                self.local.extend(self.io.self_queue.drain(..).map(Input::SelfMessage));
            }
            if let Some(e) = self.io.error.take() {
                self.fail(cell, e);
            }
        }
        self.io.flush_all();
        if let Some(e) = self.io.error.take()
            && !self.done
        {
            self.fail(cell, e);
        }
        cell.counters.received.store(self.received, Ordering::Relaxed);
        cell.counters.sent.store(self.io.sent, Ordering::Relaxed);
        cell.counters.max_pending.fetch_max(self.io.current_max_pending(), Ordering::Relaxed);
        if self.io.blocked_targets > 0 && self.blocked_since.is_none() {
            self.blocked_since = Some(std::time::Instant::now());
        }
        self.report_first_move(cell);
        let blocked = !self.started || self.done || self.io.blocked_targets > 0;
        cell.inbox.lock().handoff.set_blocked(blocked);
        !blocked && !self.local.is_empty()
    }

    fn handle_control(&mut self, cell: &Arc<TaskCell>, control: Control) {
        match control {
            Control::Start(start) => {
                if self.started || self.done {
                    return;
                }
                self.started = true;
                self.unmoved = Some(start.0);
                self.io.upstream_clock = start.0;
                self.io.max_output_ts = start.0;
                // Register this session with every downstream task before any message.
                self.io.request_acks(|flow| Some(flow.initial_request()));
                let mut ctx = TaskContext::new(&self.info, &mut self.io);
                if let Err(e) = self.task.on_start(&mut ctx, start) {
                    self.fail(cell, e.to_string());
                }
                self.local.extend(self.io.self_queue.drain(..).map(Input::SelfMessage));
            }
            Control::Ack(ack) => {
                if ack.session != self.io.session {
                    return;
                }
                let Some(&(e, t)) = self.io.target_of.get(&ack.from) else { return };
                let target = &mut self.io.edges[e].targets[t];
                if let Err(loss) = target.flow.on_ack(ack.ack) {
                    let error = format!("{loss} (to {})", ack.from);
                    self.fail(cell, error);
                    return;
                }
                if target.blocked && target.flow.allows_more() {
                    target.blocked = false;
                    self.io.edges[e].unblock();
                    self.io.blocked_targets -= 1;
                    if self.io.blocked_targets == 0 {
                        self.account_blocked(cell, None);
                    }
                }
            }
            Control::Tick => {
                if !self.started || self.done {
                    return;
                }
                self.io.request_acks(OutboundFlow::idle_request);
                let clock = self.clock();
                if self.unmoved.is_some_and(|start| clock > start) {
                    self.unmoved = None;
                }
                cell.counters.clock.store(clock.0, Ordering::Relaxed);
                let l = &self.latency;
                let c = &cell.counters;
                c.latency_samples.store(l.len(), Ordering::Relaxed);
                c.latency_p50_us.store(l.value_at_quantile(0.5), Ordering::Relaxed);
                c.latency_p99_us.store(l.value_at_quantile(0.99), Ordering::Relaxed);
                c.latency_p999_us.store(l.value_at_quantile(0.999), Ordering::Relaxed);
                *c.histograms.lock() = TaskHistograms {
                    receive_latency: self.recent_latency.summary(),
                    process_time: self.process_time.summary(),
                };
                if self.blocked_since.is_some() {
                    self.account_blocked(cell, Some(std::time::Instant::now()));
                }
                if !self.io.edges.is_empty() {
                    let edges = (self.io.edges.iter_mut())
                        .map(|e| (e.targets.first().map_or(0, |t| t.id.processor.0), e.blocked_ns_now()))
                        .collect();
                    *c.edges_blocked_ns.lock() = edges;
                }
                let _ = cell.events.send(TaskEvent::Clock { task: cell.id, clock });
            }
            Control::UpstreamClock(clock) => {
                if clock > self.io.upstream_clock && self.started && !self.done {
                    self.io.upstream_clock = clock;
                    let mut ctx = TaskContext::new(&self.info, &mut self.io);
                    if let Err(e) = self.task.on_watermark_progress(&mut ctx, clock) {
                        self.fail(cell, e.to_string());
                    }
                }
            }
            Control::CheckpointComplete(time) => {
                if self.started && !self.done {
                    let mut ctx = TaskContext::new(&self.info, &mut self.io);
                    if let Err(e) = self.task.on_checkpoint_complete(&mut ctx, time) {
                        self.fail(cell, e.to_string());
                    }
                }
            }
            Control::Stop => {
                if self.started {
                    let mut ctx = TaskContext::new(&self.info, &mut self.io);
                    self.task.on_stop(&mut ctx);
                }
                for (flag, _) in self.io.active_timers.values() {
                    flag.store(true, Ordering::SeqCst);
                }
                self.io.active_timers.clear();
                self.done = true;
                self.started = false;
                let _ = cell.events.send(TaskEvent::Stopped { task: cell.id });
            }
        }
    }
}
