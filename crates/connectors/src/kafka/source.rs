//! The Kafka source: partitions spread over tasks, record timestamps, idleness, replay from a
//! time through stored offsets or the broker's offsets-for-times.

use super::{IDLE_TIMEOUT_KEY, assigned, client_config, partitions_of, timeout};
use gearpump_api::{DataSource, TaskContext, TaskError, TaskResult, TimeStampFilter};
use gearpump_core::{Message, Timestamp};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A record as read from Kafka, handed to a [`KafkaSource`]'s decoder and timestamp extractor.
#[derive(Clone, Copy, Debug)]
pub struct KafkaRecord<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its key, if it has one.
    pub key: Option<&'a [u8]>,
    /// Its value (empty for a null value).
    pub payload: &'a [u8],
    /// Its timestamp (ms since the epoch; create or log-append time), if it has one.
    pub timestamp: Option<i64>,
}

type Decode = Arc<dyn Fn(&KafkaRecord<'_>, Timestamp) -> Result<Message, TaskError> + Send + Sync>;
type Extract = Arc<dyn Fn(&KafkaRecord<'_>) -> Timestamp + Send + Sync>;

/// How often an idle source checks that the brokers still answer.
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// How often a source asks the brokers whether its quiet partitions have unread records.
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// The longest a source waits for that answer (a partition stays unconfirmed without one).
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// The watermark is updated when no record is there, and at least every this many records.
const UPDATE_EVERY: u32 = 1024;

/// What one assigned partition has read.
#[derive(Clone, Debug)]
struct Partition {
    topic: String,
    partition: i32,
    /// The offset of the next record to read.
    next: i64,
    /// The largest timestamp read (`None`: none read yet).
    max_ts: Option<Timestamp>,
    /// When a record was last read (or the source opened), as of the last watermark update.
    last_record: Instant,
    /// Whether a record was read since the last watermark update.
    fresh: bool,
    /// Wall-clock time (ms) at which the brokers were last asked for the partition's end and
    /// it had been read up to there, since its last record: whatever it holds unread was
    /// appended later. `None`: not confirmed.
    caught_up_at: Option<i64>,
    /// `(t, offset)`: `offset` is the first record stamped at or after every time from `t` to
    /// the next entry's time (each entry made when the largest timestamp crossed a grid line).
    boundaries: VecDeque<(Timestamp, i64)>,
}

impl Partition {
    /// A partition read from `offset` on.
    fn new(topic: String, partition: i32, offset: i64, now: Instant) -> Self {
        Partition {
            topic,
            partition,
            next: offset,
            max_ts: None,
            last_record: now,
            fresh: false,
            caught_up_at: None,
            boundaries: VecDeque::from([(Timestamp::MIN, offset)]),
        }
    }

    /// The record at `offset`, stamped `t`, was read; `grid` is the checkpoint interval.
    fn on_record(&mut self, offset: i64, t: Timestamp, grid: i64) {
        self.next = offset + 1;
        self.fresh = true;
        if let Some(max) = self.max_ts {
            if t <= max {
                return;
            }
            // The first grid line past the old maximum: from it up to `t`, this record is the
            // first stamped at or after.
            let line = Timestamp(max.0.div_euclid(grid).saturating_add(1).saturating_mul(grid));
            if line <= t {
                self.boundaries.push_back((line, offset));
            }
        }
        self.max_ts = Some(t);
    }

    /// How far this partition lets the watermark go: the largest timestamp read (`start` if
    /// none), or, while it is confirmed caught up, the wall-clock time of that confirmation
    /// less `idle`, if later. Records appended after the confirmation are taken to be stamped
    /// no more than `idle` before it (later-stamped ones arrive late, as with Flink's idleness).
    fn bound(&self, start: Timestamp, idle: Duration) -> Timestamp {
        let read = self.max_ts.unwrap_or(start);
        match self.caught_up_at {
            Some(at) => read.max(Timestamp(at.saturating_sub(idle.as_millis() as i64))),
            None => read,
        }
    }

    /// Whether nothing was read from it for `idle` (as of the last watermark update).
    fn quiet(&self, now: Instant, idle: Duration) -> bool {
        now.duration_since(self.last_record) >= idle
    }

    /// The offset to resume from to replay everything stamped at or after `t`: exact when `t`
    /// is on the grid, else a little earlier (the replay drops what is older).
    fn position_for(&self, t: Timestamp) -> i64 {
        match self.max_ts {
            Some(max) if max >= t => {
                self.boundaries.iter().rev().find(|(g, _)| *g <= t).map_or(self.boundaries[0].1, |(_, o)| *o)
            }
            // Everything read so far is older than `t`.
            _ => self.next,
        }
    }
}

/// Reads Kafka topics as a [`DataSource`] (see the [module docs](super)). Values are the
/// records' bytes (`Vec<u8>`) unless [`KafkaSource::utf8`] or [`KafkaSource::decoded`] says
/// otherwise.
pub struct KafkaSource {
    brokers: String,
    topics: Vec<String>,
    decode: Decode,
    extract: Option<Extract>,
    consumer: Option<BaseConsumer>,
    parts: Vec<Partition>,
    filter: TimeStampFilter,
    idle: Duration,
    grid: i64,
    watermark: Timestamp,
    /// Times of the positions this task stored, oldest first.
    stored: crate::positions::StoredPositions,
    last_probe: Instant,
    /// When the quiet partitions were last checked for unread records.
    last_check: Option<Instant>,
    timeout: Duration,
    /// Records read since opening.
    read: u64,
    /// Records read since the watermark was last updated.
    since_update: u32,
    /// Reads in a row that found nothing.
    empty_reads: u32,
}

impl KafkaSource {
    /// Reads `topic` from the comma-separated `brokers` (`host:port,…`).
    pub fn new(brokers: impl Into<String>, topic: impl Into<String>) -> Self {
        KafkaSource {
            brokers: brokers.into(),
            topics: vec![topic.into()],
            decode: Arc::new(|r, t| Ok(Message::new(r.payload.to_vec(), t))),
            extract: None,
            consumer: None,
            parts: Vec::new(),
            filter: TimeStampFilter::new(Timestamp::MIN),
            idle: Duration::from_secs(5),
            grid: 1000,
            watermark: Timestamp::MIN,
            stored: Default::default(),
            last_probe: Instant::now(),
            last_check: None,
            timeout: Duration::from_secs(10),
            read: 0,
            since_update: 0,
            empty_reads: 0,
        }
    }

    /// Reads more topics besides the first.
    #[must_use]
    pub fn and_topic(mut self, topic: impl Into<String>) -> Self {
        self.topics.push(topic.into());
        self
    }

    /// Values are the records' values as `String` (invalid UTF-8 is an error naming the
    /// record).
    #[must_use]
    pub fn utf8(self) -> Self {
        self.decoded(|r, t| {
            let text = std::str::from_utf8(r.payload).map_err(|e| {
                TaskError::msg(format!("record {}/{}@{} is not UTF-8: {e}", r.topic, r.partition, r.offset))
            })?;
            Ok(Message::new(text.to_string(), t))
        })
    }

    /// Turns each record, stamped `t`, into a message with `decode`.
    #[must_use]
    pub fn decoded(
        mut self,
        decode: impl Fn(&KafkaRecord<'_>, Timestamp) -> Result<Message, TaskError> + Send + Sync + 'static,
    ) -> Self {
        self.decode = Arc::new(decode);
        self
    }

    /// Stamps messages with what `extract` returns instead of the record's timestamp.
    #[must_use]
    pub fn timestamped(mut self, extract: impl Fn(&KafkaRecord<'_>) -> Timestamp + Send + Sync + 'static) -> Self {
        self.extract = Some(Arc::new(extract));
        self
    }

    /// Records read since the source was opened (including those dropped as older than the
    /// start time).
    pub fn records_read(&self) -> u64 {
        self.read
    }

    /// The partitions this task reads and the offset each will read next.
    pub fn positions(&self) -> Vec<(String, i32, i64)> {
        self.parts.iter().map(|p| (p.topic.clone(), p.partition, p.next)).collect()
    }

    /// Where each partition starts: the positions stored for `start`, else the broker's
    /// offsets-for-times.
    fn start_offsets(
        &self,
        ctx: &TaskContext<'_>,
        consumer: &BaseConsumer,
        mine: &[(String, i32)],
        start: Timestamp,
    ) -> Result<Vec<(i64, &'static str)>, TaskError> {
        let stored: Vec<(String, i32, i64)> = match ctx.state_store().map(|s| s.load(ctx.task_id(), start)) {
            Some(Ok(Some(bytes))) => postcard::from_bytes(&bytes).unwrap_or_else(|e| {
                tracing::warn!(task = %ctx.task_id(), %start, error = %e, "Stored Kafka offsets do not decode; seeking by time.");
                Vec::new()
            }),
            Some(Err(e)) => {
                tracing::warn!(task = %ctx.task_id(), %start, error = %e, "No stored Kafka offsets; seeking by time.");
                Vec::new()
            }
            _ => Vec::new(),
        };
        let mut by_time = TopicPartitionList::new();
        for (topic, partition) in mine {
            if !stored.iter().any(|(t, p, _)| t == topic && p == partition) {
                let offset = if start.0 <= 0 { Offset::Beginning } else { Offset::Offset(start.0) };
                by_time.add_partition_offset(topic, *partition, offset).map_err(TaskError::msg)?;
            }
        }
        // A partition with no record at or after `start` starts at its end as it was *before*
        // the lookup: every record there then is older than `start`, and whatever is appended
        // from then on is read. (Its end asked for after the lookup would skip records
        // appended in between, stamped after `start`.)
        let mut ends_before: Vec<(String, i32, i64)> = Vec::new();
        let found = if by_time.count() == 0 || start.0 <= 0 {
            by_time
        } else {
            for e in by_time.elements() {
                let (_, high) = consumer
                    .fetch_watermarks(e.topic(), e.partition(), self.timeout)
                    .map_err(|err| TaskError::msg(format!("Kafka {}/{}: {err}", e.topic(), e.partition())))?;
                ends_before.push((e.topic().to_string(), e.partition(), high));
            }
            consumer.offsets_for_times(by_time, self.timeout).map_err(|e| {
                TaskError::msg(format!("looking up offsets for time {start} on Kafka brokers {}: {e}", self.brokers))
            })?
        };
        mine.iter()
            .map(|(topic, partition)| {
                if let Some((_, _, o)) = stored.iter().find(|(t, p, _)| t == topic && p == partition) {
                    return Ok((*o, "stored with the checkpoint"));
                }
                let elem = found.find_partition(topic, *partition);
                let offset = match elem.map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    Some(Offset::End) => match ends_before.iter().find(|(t, p, _)| t == topic && p == partition) {
                        Some((_, _, high)) => *high,
                        None => {
                            consumer
                                .fetch_watermarks(topic, *partition, self.timeout)
                                .map_err(|e| TaskError::msg(format!("Kafka {topic}/{partition}: {e}")))?
                                .1
                        }
                    },
                    _ => {
                        let (low, _) = consumer
                            .fetch_watermarks(topic, *partition, self.timeout)
                            .map_err(|e| TaskError::msg(format!("Kafka {topic}/{partition}: {e}")))?;
                        low
                    }
                };
                Ok((offset, if start.0 <= 0 { "the beginning" } else { "offsets-for-times" }))
            })
            .collect()
    }

    /// Recomputes the watermark (see the module docs); it never goes back. Partitions quiet
    /// for the idle timeout are checked for unread records first (at most every
    /// [`CHECK_EVERY`]): only one read up to its end may follow the wall clock, so a partition
    /// whose fetches stall (a broker restarting, a slow leader) holds the watermark instead of
    /// letting it pass records that a recovery from the clock would then skip.
    fn update_watermark(&mut self, consumer: &BaseConsumer) {
        let now = Instant::now();
        self.since_update = 0;
        for p in self.parts.iter_mut().filter(|p| p.fresh) {
            p.fresh = false;
            p.last_record = now;
            p.caught_up_at = None;
        }
        let due = self.last_check.is_none_or(|t| now.duration_since(t) >= CHECK_EVERY);
        if due && self.parts.iter().any(|p| p.quiet(now, self.idle)) {
            self.check_caught_up(consumer, now);
        }
        self.watermark = self.watermark.max(watermark_of(&self.parts, self.filter_start(), self.idle, wall_ms()));
    }

    /// Asks the brokers for the end of every quiet partition and marks those read up to it.
    fn check_caught_up(&mut self, consumer: &BaseConsumer, now: Instant) {
        self.last_check = Some(now);
        let asked_at = wall_ms();
        let mut ends = TopicPartitionList::new();
        for p in self.parts.iter().filter(|p| p.quiet(now, self.idle)) {
            if let Err(e) = ends.add_partition_offset(&p.topic, p.partition, Offset::End) {
                tracing::debug!(topic = %p.topic, partition = p.partition, error = %e, "Cannot ask for the end of a Kafka partition.");
            }
        }
        // With `read_committed` the end is the last stable offset, as far as this consumer can read.
        let ends = match consumer.offsets_for_times(ends, CHECK_TIMEOUT.min(self.timeout)) {
            Ok(ends) => ends,
            Err(e) => {
                tracing::debug!(brokers = %self.brokers, error = %e, "Cannot check the Kafka source's quiet partitions; they keep holding the watermark.");
                return;
            }
        };
        // The brokers answered: no need to probe them as well.
        self.last_probe = Instant::now();
        let positions = consumer.position().ok();
        for p in self.parts.iter_mut().filter(|p| p.quiet(now, self.idle)) {
            let Some(Offset::Offset(end)) =
                ends.find_partition(&p.topic, p.partition).filter(|e| e.error().is_ok()).map(|e| e.offset())
            else {
                continue;
            };
            // The consumer's position is past control records (transaction markers) too.
            let position = match positions.as_ref().and_then(|l| l.find_partition(&p.topic, p.partition)) {
                Some(e) => match e.offset() {
                    Offset::Offset(o) => o.max(p.next),
                    _ => p.next,
                },
                None => p.next,
            };
            if position >= end {
                p.caught_up_at = Some(asked_at);
            }
        }
    }

    fn filter_start(&self) -> Timestamp {
        self.filter.start()
    }

    /// Reads the next record kept by the filter, if one is there now.
    fn read_from(&mut self, consumer: &BaseConsumer) -> Result<Option<Message>, TaskError> {
        loop {
            let Some(polled) = consumer.poll(Duration::ZERO) else {
                self.empty_reads = self.empty_reads.saturating_add(1);
                self.update_watermark(consumer);
                if self.last_probe.elapsed() >= PROBE_EVERY {
                    self.probe(consumer)?;
                }
                return Ok(None);
            };
            let m = polled.map_err(|e| TaskError::msg(format!("reading Kafka (brokers {}): {e}", self.brokers)))?;
            self.read += 1;
            self.empty_reads = 0;
            self.since_update += 1;
            if self.since_update >= UPDATE_EVERY {
                self.update_watermark(consumer);
            }
            let record = KafkaRecord {
                topic: m.topic(),
                partition: m.partition(),
                offset: m.offset(),
                key: m.key(),
                payload: m.payload().unwrap_or_default(),
                timestamp: m.timestamp().to_millis(),
            };
            let t = match &self.extract {
                Some(f) => f(&record),
                None => Timestamp(record.timestamp.unwrap_or(0)),
            };
            if let Some(p) = self.parts.iter_mut().find(|p| p.partition == record.partition && p.topic == record.topic)
            {
                p.on_record(record.offset, t, self.grid);
            }
            if t < self.filter_start() {
                continue;
            }
            let msg = (self.decode)(&record, t)?;
            return Ok(Some(msg));
        }
    }

    /// Checks that the brokers answer (an idle source would not notice they went away).
    fn probe(&mut self, consumer: &BaseConsumer) -> TaskResult {
        self.last_probe = Instant::now();
        let Some(p) = self.parts.first() else { return Ok(()) };
        consumer.fetch_watermarks(&p.topic, p.partition, self.timeout).map(|_| ()).map_err(|e| {
            TaskError::msg(format!("the Kafka brokers {} do not answer (reading {}): {e}", self.brokers, p.topic))
        })
    }
}

impl DataSource for KafkaSource {
    fn open(&mut self, ctx: &mut TaskContext<'_>, start: Timestamp) -> TaskResult {
        let config = ctx.config();
        self.timeout = timeout(config)?;
        let idle_ms: u64 = config.get_or(IDLE_TIMEOUT_KEY, 5000)?;
        self.idle = Duration::from_millis(idle_ms.max(1));
        let grid: i64 = config.get_or(gearpump_api::state::CHECKPOINT_INTERVAL_KEY, 1000)?;
        self.grid = grid.max(1);
        let group = format!("gearpump-{}-app{}", ctx.app_name(), ctx.app_id());
        let consumer: BaseConsumer = client_config(
            &self.brokers,
            &[
                ("group.id", &group),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("isolation.level", "read_committed"),
                ("allow.auto.create.topics", "false"),
                // librdkafka stops fetching a partition whose prefetch queue is full for this
                // long (1 s by default): a task that drains a little slower than the broker
                // delivers then reads nothing for a second at a time (300 k records/s where
                // 1.3 M/s are possible). Retrying soon costs one cheap check per partition.
                ("fetch.queue.backoff.ms", "10"),
                // A position the broker no longer has (deleted by retention, or a log cut back
                // after an unclean restart) restarts at the oldest record rather than the end
                // (librdkafka's default): re-reading and dropping what is older than the start
                // time is slow but loses nothing, where jumping to the end would skip silently.
                ("auto.offset.reset", "earliest"),
            ],
            config,
            "kafka.consumer.",
        )
        .create()
        .map_err(|e| TaskError::msg(format!("creating a Kafka consumer for brokers {}: {e}", self.brokers)))?;
        let all = partitions_of(&consumer, &self.brokers, &self.topics, self.timeout)?;
        let id = ctx.task_id();
        let mine = assigned(&all, id.index, ctx.parallelism());
        let offsets = self.start_offsets(ctx, &consumer, &mine, start)?;
        let mut tpl = TopicPartitionList::new();
        let now = Instant::now();
        self.parts.clear();
        for ((topic, partition), (offset, from)) in mine.into_iter().zip(offsets) {
            tracing::info!(task = %id, %topic, partition, offset, %start, "Kafka source resumes from {from}.");
            tpl.add_partition_offset(&topic, partition, Offset::Offset(offset)).map_err(TaskError::msg)?;
            self.parts.push(Partition::new(topic, partition, offset, now));
        }
        consumer.assign(&tpl).map_err(|e| TaskError::msg(format!("assigning Kafka partitions: {e}")))?;
        self.consumer = Some(consumer);
        self.filter = TimeStampFilter::new(start);
        self.watermark = start;
        self.read = 0;
        self.last_probe = now;
        self.last_check = None;
        Ok(())
    }

    fn read(&mut self) -> Result<Option<Message>, TaskError> {
        let consumer = self.consumer.take().ok_or_else(|| TaskError::msg("the Kafka source is not open"))?;
        let read = self.read_from(&consumer);
        self.consumer = Some(consumer);
        read
    }

    fn watermark(&self) -> Option<Timestamp> {
        Some(self.watermark)
    }

    /// 1 ms while records keep coming (librdkafka refills its queue in the background; a
    /// longer pause would leave the source idle with records waiting), 10 ms once the topic
    /// has been quiet for a while.
    fn poll_interval(&self) -> Duration {
        Duration::from_millis(if self.empty_reads < 100 { 1 } else { 10 })
    }

    fn on_checkpoint_complete(&mut self, ctx: &mut TaskContext<'_>, time: Timestamp) -> TaskResult {
        // Checkpoints are taken on the interval grid: only positions there can be restored.
        if time.0.rem_euclid(self.grid) != 0 || ctx.state_store().is_none() {
            return Ok(());
        }
        let positions: Vec<(String, i32, i64)> =
            self.parts.iter().map(|p| (p.topic.clone(), p.partition, p.position_for(time))).collect();
        self.stored.save(ctx, time, &positions)?;
        // Boundaries before the one that applies at `time` are no longer needed.
        for p in &mut self.parts {
            while p.boundaries.len() > 1 && p.boundaries[1].0 <= time {
                p.boundaries.pop_front();
            }
        }
        Ok(())
    }

    fn close(&mut self) {
        self.consumer = None;
    }
}

/// The watermark of a task reading `parts` from `start`: the lowest of their
/// [bounds](Partition::bound); with no partitions, the wall clock (`wall`, ms) less `idle`.
fn watermark_of(parts: &[Partition], start: Timestamp, idle: Duration, wall: i64) -> Timestamp {
    parts
        .iter()
        .map(|p| p.bound(start, idle))
        .min()
        .unwrap_or_else(|| Timestamp(wall.saturating_sub(idle.as_millis() as i64)))
}

/// Milliseconds since the epoch, now.
fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(records: &[(i64, i64)]) -> Partition {
        // Reads `records` (offset, time) with a 1000 ms grid.
        let mut p = Partition::new("t".into(), 0, records[0].0, Instant::now());
        for &(offset, t) in records {
            p.on_record(offset, Timestamp(t), 1000);
        }
        p
    }

    const IDLE: Duration = Duration::from_secs(5);

    #[test]
    fn a_quiet_partition_holds_the_watermark_until_it_is_confirmed_read_to_its_end() {
        // Partition 0 reads records up to time 9000; partition 1 read up to 2000 and has gone
        // quiet, perhaps with records its fetches have not brought yet.
        let a = partition(&[(0, 9000)]);
        let mut b = partition(&[(0, 2000)]);
        let wall = 1_000_000;
        assert_eq!(watermark_of(&[a, b.clone()], Timestamp::MIN, IDLE, wall), Timestamp(2000));

        // The brokers said partition 1 ends where it was read to, at wall time 100000: it may
        // follow the wall clock less the idle timeout, and no longer holds partition 0.
        b.caught_up_at = Some(100_000);
        let a = partition(&[(0, 9000)]);
        assert_eq!(watermark_of(&[a, b.clone()], Timestamp::MIN, IDLE, wall), Timestamp(9000));
        let old = partition(&[(0, 500_000)]);
        assert_eq!(watermark_of(&[old, b], Timestamp::MIN, IDLE, wall), Timestamp(95_000));
    }

    #[test]
    fn partitions_never_read_start_at_the_start_time_and_no_partitions_follow_the_wall_clock() {
        let fresh = Partition::new("t".into(), 0, 0, Instant::now());
        assert_eq!(watermark_of(&[fresh], Timestamp(42), IDLE, 1_000_000), Timestamp(42));
        assert_eq!(watermark_of(&[], Timestamp(42), IDLE, 1_000_000), Timestamp(995_000));
    }

    #[test]
    fn the_position_for_a_time_is_the_first_record_stamped_at_or_after_it() {
        // Offsets 10.. stamped 500, 900, 1000, 1500, 3200, 2900 (late), 4100.
        let p = partition(&[(10, 500), (11, 900), (12, 1000), (13, 1500), (14, 3200), (15, 2900), (16, 4100)]);
        for (t, expected) in [(0, 10), (500, 10), (1000, 12), (2000, 14), (3000, 14), (4000, 16), (9000, 17)] {
            assert_eq!(p.position_for(Timestamp(t)), expected, "time {t}");
        }
    }
}
