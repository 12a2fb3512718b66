//! The Kafka sinks: at-least-once (flush before the clock passes) and exactly-once
//! (transactions committed on completed checkpoints).

use super::{TRANSACTIONAL_ID_KEY, client_config, timeout};
use gearpump_api::{DataSink, TaskContext, TaskError, TaskResult};
use gearpump_core::{Message, Timestamp, UserConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a sink writes for one message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// The key (Kafka's default partitioner hashes it).
    pub key: Option<Vec<u8>>,
    /// The value.
    pub payload: Vec<u8>,
    /// The partition, if chosen here.
    pub partition: Option<i32>,
}

impl Record {
    /// A record with this value, no key.
    pub fn value(payload: impl Into<Vec<u8>>) -> Self {
        Record { key: None, payload: payload.into(), partition: None }
    }

    /// Sets the key.
    #[must_use]
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sends it to `partition`.
    #[must_use]
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// The default encoding: `String` and `Vec<u8>` values as they are, integers as decimal
    /// text, anything else an error naming its type.
    pub fn text(msg: &Message) -> Result<Record, TaskError> {
        let v = msg.value();
        if let Some(s) = msg.get::<String>() {
            return Ok(Record::value(s.as_bytes()));
        }
        if let Some(b) = msg.get::<Vec<u8>>() {
            return Ok(Record::value(b.clone()));
        }
        macro_rules! ints { ($($t:ty),*) => {$(
            if let Some(n) = msg.get::<$t>() { return Ok(Record::value(n.to_string())); }
        )*}}
        ints!(u64, i64, u32, i32, usize);
        Err(TaskError::msg(format!("the Kafka sink cannot encode {v:?}: give it an encoder (encoded_by)")))
    }
}

type Encode = Arc<dyn Fn(&Message) -> Result<Record, TaskError> + Send + Sync>;

/// Counts deliveries that failed and keeps the first error.
#[derive(Default)]
struct Deliveries {
    failed: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut failed = self.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            failed.get_or_insert_with(|| e.to_string());
        }
    }
}

impl Deliveries {
    fn check(&self, topic: &str) -> TaskResult {
        let failed = self.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        match failed {
            Some(e) => Err(TaskError::msg(format!("writing to Kafka topic {topic}: {e}"))),
            None => Ok(()),
        }
    }
}

type KafkaProducer = BaseProducer<Deliveries>;

/// Where and how a sink writes (shared by both sinks).
#[derive(Clone)]
struct Target {
    brokers: String,
    topic: String,
    encode: Encode,
}

impl Target {
    fn producer(&self, config: &UserConfig, extra: &[(&str, &str)]) -> Result<KafkaProducer, TaskError> {
        let mut defaults = vec![("linger.ms", "5")];
        defaults.extend_from_slice(extra);
        client_config(&self.brokers, &defaults, config, "kafka.producer.")
            .create_with_context(Deliveries::default())
            .map_err(|e| TaskError::msg(format!("creating a Kafka producer for brokers {}: {e}", self.brokers)))
    }

    /// Checks that the topic exists (an error names it, or the brokers if they do not answer).
    fn check_topic(&self, producer: &KafkaProducer, wait: Duration) -> TaskResult {
        let metadata = producer.client().fetch_metadata(Some(&self.topic), wait).map_err(|e| {
            TaskError::msg(format!("cannot reach the Kafka brokers {} within {wait:?}: {e}", self.brokers))
        })?;
        match metadata.topics().iter().find(|t| t.name() == self.topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
            _ => Err(TaskError::msg(format!("Kafka topic {} does not exist on brokers {}", self.topic, self.brokers))),
        }
    }

    /// Sends what `producer` holds now and waits until the brokers acknowledged all of it.
    /// (rdkafka's own `flush` polls in 100 ms steps, which would cap a sink flushed every 100
    /// ms at a few thousand records a second.)
    fn flush(&self, producer: &KafkaProducer, timeout: Duration) -> TaskResult {
        // A zero-timeout flush only wakes the broker threads to send at once.
        let _ = producer.flush(Duration::ZERO);
        let deadline = std::time::Instant::now() + timeout;
        loop {
            producer.poll(Duration::ZERO);
            if producer.in_flight_count() == 0 {
                return producer.context().check(&self.topic);
            }
            if std::time::Instant::now() > deadline {
                return Err(TaskError::msg(format!(
                    "flushing to Kafka topic {} (brokers {}): {} records unacknowledged after {timeout:?}",
                    self.topic,
                    self.brokers,
                    producer.in_flight_count()
                )));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Queues `msg` on `producer`, waiting while librdkafka's queue is full.
    fn send(&self, producer: &KafkaProducer, msg: &Message) -> TaskResult {
        let r = (self.encode)(msg)?;
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.topic).payload(&r.payload[..]);
        if let Some(k) = &r.key {
            record = record.key(&k[..]);
        }
        if let Some(p) = r.partition {
            record = record.partition(p);
        }
        if msg.timestamp().0 >= 0 {
            record = record.timestamp(msg.timestamp().0);
        }
        loop {
            match producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::ZERO);
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err((e, _)) => return Err(TaskError::msg(format!("writing to Kafka topic {}: {e}", self.topic))),
            }
        }
    }
}

/// Writes messages to a Kafka topic, at least once: the producer is flushed on the sink timer
/// (`gearpump.sink.flush.interval.ms`) and the application's clock is held at the oldest record
/// not yet acknowledged, so a recovery replays whatever a crash could lose.
pub struct KafkaSink {
    target: Target,
    producer: Option<KafkaProducer>,
    oldest_pending: Option<Timestamp>,
    timeout: Duration,
}

impl KafkaSink {
    /// Writes to `topic` on `brokers`, encoding messages with [`Record::text`].
    pub fn new(brokers: impl Into<String>, topic: impl Into<String>) -> Self {
        KafkaSink {
            target: Target { brokers: brokers.into(), topic: topic.into(), encode: Arc::new(Record::text) },
            producer: None,
            oldest_pending: None,
            timeout: Duration::from_secs(10),
        }
    }

    /// Encodes messages with `encode` (key, value, partition).
    #[must_use]
    pub fn encoded_by(
        mut self,
        encode: impl Fn(&Message) -> Result<Record, TaskError> + Send + Sync + 'static,
    ) -> Self {
        self.target.encode = Arc::new(encode);
        self
    }

    /// The same sink, exactly once: see [`ExactlyOnceKafkaSink`].
    pub fn exactly_once(self) -> ExactlyOnceKafkaSink {
        ExactlyOnceKafkaSink::new(self.target)
    }
}

impl DataSink for KafkaSink {
    fn open(&mut self, ctx: &mut TaskContext<'_>) -> TaskResult {
        self.timeout = timeout(ctx.config())?;
        let producer = self.target.producer(ctx.config(), &[])?;
        self.target.check_topic(&producer, self.timeout)?;
        self.producer = Some(producer);
        Ok(())
    }

    fn write(&mut self, msg: Message) -> TaskResult {
        let Some(producer) = &self.producer else { return Err(TaskError::msg("the Kafka sink is not open")) };
        self.target.send(producer, &msg)?;
        producer.poll(Duration::ZERO);
        let t = msg.timestamp();
        self.oldest_pending = Some(self.oldest_pending.map_or(t, |o| o.min(t)));
        Ok(())
    }

    fn flush(&mut self) -> TaskResult {
        let (Some(producer), Some(_)) = (&self.producer, self.oldest_pending) else { return Ok(()) };
        self.target.flush(producer, self.timeout)?;
        self.oldest_pending = None;
        Ok(())
    }

    fn watermark(&self) -> Option<Timestamp> {
        self.oldest_pending
    }

    fn close(&mut self) {
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, "Closing a Kafka sink lost its last records.");
        }
    }
}

/// How many transactions (producers) an exactly-once sink task keeps open at once.
const SLOTS: usize = 3;

/// One open transaction: the records stamped in `[from, until)`.
struct Transaction {
    slot: usize,
    from: Timestamp,
    until: Timestamp,
    records: u64,
}

/// Writes messages to a Kafka topic exactly once, by a two-phase commit tied to checkpoints
/// (the scheme of Flink's exactly-once Kafka sink, on the application's clock):
///
/// - records stamped in each checkpoint interval (`state.checkpoint.interval.ms`) are written
///   in a Kafka transaction of their own (a few producers with transactional ids
///   `<prefix>-<processor>-<task>-<slot>`; when all are busy the newest transaction takes
///   later intervals too);
/// - when the checkpoint at time `T` is complete (every other stateful task has persisted its
///   state at `T`), the transactions of records older than `T` are committed, each together
///   with a marker (the group `<prefix>-<processor>-<task>` commits offset `T` on the topic's
///   partition 0), and only then does the sink report its own checkpoint at `T`: the
///   application never restarts from a time whose output is not committed;
/// - on recovery every open transaction of the earlier incarnation is aborted (opening the
///   same transactional ids fences it), and records older than the marker, committed before
///   a crash that came ahead of the start clock, are not written again.
///
/// A `read_committed` consumer sees each record once. Requires a deterministic application
/// (the same records for the same input), as any replay-based exactly-once scheme does, and,
/// with several sink tasks, an edge into the sink that sends each message to the same task in
/// every replay: the marker is each task's own, and Kafka cannot commit the transactions of
/// several producers together, so after a crash between two tasks' commits, task A skips what
/// it committed and task B writes what it had not. `hash` of a deterministic value,
/// `group_by` a key, or `co_location` do; round robin (`shuffle`, `shuffle_grouping`) would
/// lose and repeat records, and building such an application fails with
/// [`gearpump_api::AppError::ReplayDependentPartitioner`]. Its processor is
/// [`gearpump_api::Processor::transactional`] (set by `Processor::sink`).
pub struct ExactlyOnceKafkaSink {
    target: Target,
    producers: Vec<KafkaProducer>,
    free: Vec<usize>,
    open: Vec<Transaction>,
    /// Where the transactions committed so far end.
    committed_until: Timestamp,
    /// Records stamped before this were committed by an earlier incarnation: skip them.
    skip_before: Timestamp,
    /// The last checkpoint time reported.
    reported: Timestamp,
    /// Reads and names the commit marker (its group is the sink task's).
    marker: Option<BaseConsumer>,
    grid: i64,
    timeout: Duration,
}

impl ExactlyOnceKafkaSink {
    fn new(target: Target) -> Self {
        ExactlyOnceKafkaSink {
            target,
            producers: Vec::new(),
            free: Vec::new(),
            open: Vec::new(),
            committed_until: Timestamp::MIN,
            skip_before: Timestamp::MIN,
            reported: Timestamp::MIN,
            marker: None,
            grid: 1000,
            timeout: Duration::from_secs(10),
        }
    }

    /// The end of the checkpoint interval `t` falls in.
    fn interval_end(&self, t: Timestamp) -> Timestamp {
        Timestamp(t.0.div_euclid(self.grid).saturating_add(1).saturating_mul(self.grid))
    }

    fn kafka(&self, what: &str, e: impl std::fmt::Display) -> TaskError {
        TaskError::msg(format!("{what} (Kafka topic {}, brokers {}): {e}", self.target.topic, self.target.brokers))
    }

    /// The transaction `t` belongs in, opening one if needed.
    fn transaction_for(&mut self, t: Timestamp) -> TaskResult {
        if self.open.last().is_some_and(|tx| t < tx.until) {
            return Ok(());
        }
        let until = self.interval_end(t);
        match self.free.pop() {
            Some(slot) => {
                self.producers[slot].begin_transaction().map_err(|e| self.kafka("beginning a transaction", e))?;
                let from = self.open.last().map_or(self.committed_until, |tx| tx.until);
                self.open.push(Transaction { slot, from, until, records: 0 });
            }
            None => {
                let last = self.open.last_mut().expect("no free producer means open transactions");
                last.until = until;
            }
        }
        Ok(())
    }

    /// Commits `tx` with the marker "committed until `tx.until`".
    fn commit(&mut self, tx: &Transaction) -> TaskResult {
        let producer = &self.producers[tx.slot];
        if let Some(consumer) = &self.marker {
            let mut offsets = TopicPartitionList::new();
            offsets
                .add_partition_offset(&self.target.topic, 0, Offset::Offset(tx.until.0.max(0)))
                .map_err(TaskError::msg)?;
            let group = consumer.group_metadata().ok_or_else(|| TaskError::msg("the marker consumer has no group"))?;
            producer
                .send_offsets_to_transaction(&offsets, &group, self.timeout)
                .map_err(|e| self.kafka("adding the commit marker to a transaction", e))?;
        }
        producer.commit_transaction(self.timeout).map_err(|e| self.kafka("committing a transaction", e))?;
        producer.context().check(&self.target.topic)?;
        Ok(())
    }
}

impl DataSink for ExactlyOnceKafkaSink {
    const TRANSACTIONAL: bool = true;

    fn open(&mut self, ctx: &mut TaskContext<'_>) -> TaskResult {
        let config = ctx.config();
        self.timeout = timeout(config)?;
        let grid: i64 = config.get_or(gearpump_api::state::CHECKPOINT_INTERVAL_KEY, 1000)?;
        self.grid = grid.max(1);
        let prefix = config
            .get_str(TRANSACTIONAL_ID_KEY)
            .map_or_else(|| format!("gearpump-{}-app{}", ctx.app_name(), ctx.app_id()), str::to_string);
        let id = ctx.task_id();
        let base = format!("{prefix}-{}-{}", id.processor, id.index);
        // The marker: what an earlier incarnation committed.
        let consumer: BaseConsumer = client_config(
            &self.target.brokers,
            &[("group.id", &base), ("enable.auto.commit", "false")],
            config,
            "kafka.consumer.",
        )
        .create()
        .map_err(|e| self.kafka("creating the marker consumer", e))?;
        self.producers.clear();
        for slot in 0..SLOTS {
            let tid = format!("{base}-{slot}");
            let producer = self.target.producer(config, &[("transactional.id", &tid)])?;
            if slot == 0 {
                self.target.check_topic(&producer, self.timeout)?;
            }
            // Fences the earlier incarnation's producer and aborts its open transaction.
            producer.init_transactions(self.timeout).map_err(|e| self.kafka(&format!("initialising {tid}"), e))?;
            self.producers.push(producer);
        }
        self.free = (0..SLOTS).rev().collect();
        self.open.clear();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.target.topic, 0);
        let committed = consumer
            .committed_offsets(tpl, self.timeout)
            .map_err(|e| self.kafka(&format!("reading the commit marker of {base}"), e))?;
        let marker = committed.find_partition(&self.target.topic, 0).and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(Timestamp(o)),
            _ => None,
        });
        // A marker counts only for a recovery: a sink that has reported checkpoints before.
        let recovering =
            ctx.state_store().is_some_and(|s| s.load(id, ctx.upstream_min_clock()).ok().flatten().is_some());
        self.skip_before = match marker {
            Some(m) if recovering => m,
            _ => Timestamp::MIN,
        };
        self.committed_until = self.skip_before;
        self.reported = ctx.upstream_min_clock();
        tracing::info!(task = %id, transactional_id = %base, committed_until = %self.skip_before,
            "Exactly-once Kafka sink opened.");
        self.marker = Some(consumer);
        Ok(())
    }

    fn write(&mut self, msg: Message) -> TaskResult {
        let t = msg.timestamp();
        if t < self.skip_before {
            return Ok(());
        }
        self.transaction_for(t)?;
        // The transaction whose interval holds `t` (the oldest for a late record).
        let i = self.open.iter().position(|tx| t < tx.until).unwrap_or(0);
        let slot = self.open[i].slot;
        self.open[i].records += 1;
        self.target.send(&self.producers[slot], &msg)?;
        self.producers[slot].poll(Duration::ZERO);
        Ok(())
    }

    fn on_checkpoint_complete(&mut self, ctx: &mut TaskContext<'_>, time: Timestamp) -> TaskResult {
        while self.open.first().is_some_and(|tx| tx.until <= time) {
            let tx = self.open.remove(0);
            self.commit(&tx)?;
            tracing::debug!(task = %ctx.task_id(), until = %tx.until, records = tx.records, "Committed a transaction.");
            self.committed_until = tx.until;
            self.free.push(tx.slot);
        }
        // Committed up to `time`, unless a transaction spans it (then up to where it starts);
        // reported on the interval grid only, where the other stateful tasks checkpoint (and
        // so at most once an interval when the sink is the only stateful task).
        let upto = match self.open.first() {
            Some(tx) if tx.from < time => tx.from,
            _ => time,
        };
        let upto = Timestamp(upto.0.div_euclid(self.grid).saturating_mul(self.grid));
        if upto > self.reported {
            self.reported = upto;
            if let Some(store) = ctx.state_store() {
                store.save(ctx.task_id(), upto, &[])?;
            }
        }
        Ok(())
    }

    fn close(&mut self) {
        // What is open was not covered by a complete checkpoint: a recovery writes it again.
        // Drop what is still queued instead of sending it only to abort it.
        for tx in self.open.drain(..) {
            let producer = &self.producers[tx.slot];
            producer.purge(PurgeConfig::default().queue().inflight());
            for _ in 0..100 {
                producer.poll(Duration::ZERO);
                if producer.in_flight_count() == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if let Err(e) = producer.abort_transaction(Duration::from_secs(2)) {
                tracing::warn!(error = %e, "Aborting a Kafka transaction failed; the next incarnation fences it.");
            }
        }
    }
}
