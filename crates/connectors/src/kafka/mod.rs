//! Kafka: a replayable source ([`KafkaSource`]) and sinks, at-least-once ([`KafkaSink`]) and
//! exactly-once ([`ExactlyOnceKafkaSink`]), on librdkafka (the `rdkafka` crate).
//!
//! ```no_run
//! use gearpump_api::{Processor, PartitionerSpec, StreamApplication};
//! use gearpump_connectors::kafka::{KafkaSink, KafkaSource};
//! let brokers = "127.0.0.1:9092";
//! let source = Processor::source("Read", 2, move |_| Ok(KafkaSource::new(brokers, "input").utf8()));
//! let sink = Processor::sink("Write", 2, move |_| Ok(KafkaSink::new(brokers, "output")));
//! let app = StreamApplication::builder("copy").edge(&source, PartitionerSpec::shuffle(), &sink).build();
//! ```
//!
//! # Source
//! The topic's partitions are spread over the source's tasks: partition `i` (in the order of
//! topic, then partition number) goes to task `i % parallelism`, so every partition is read by
//! exactly one task. A message is stamped with the record's timestamp (or what an extractor
//! returns: [`KafkaSource::timestamped`]); a task's watermark is the minimum over its
//! partitions of the largest timestamp read. A partition that had no record for
//! `kafka.source.idle.timeout.ms` is idle (Flink's idleness) once the brokers confirm it has
//! been read to its end: it then follows the wall clock less that timeout, so an idle or empty
//! topic does not hold the application's clock. A quiet partition that still has unread records
//! (its fetches stall while a broker restarts, say) keeps holding the watermark, so the clock
//! never passes records that a recovery from it would skip. Records that arrive in an idle
//! partition stamped more than the timeout before their arrival are late.
//!
//! Replay: opened at a start time the source seeks every partition to the first offset at or
//! after it, from the offsets it stored with the application's checkpoints
//! ([`gearpump_api::StateStore`], on every completed checkpoint) or, where none is stored, from
//! the broker's offsets-for-times; records stamped earlier than the start are dropped.
//!
//! # Sinks
//! [`KafkaSink`] flushes the producer on the sink timer and holds the application's clock at
//! its oldest unacknowledged record: at-least-once. [`ExactlyOnceKafkaSink`] writes each
//! checkpoint interval's records in a Kafka transaction and commits it when the checkpoint that
//! covers it completes (a two-phase commit); see its docs.
//!
//! # Settings
//! Application (or processor) config keys:
//! - `kafka.consumer.<property>` and `kafka.producer.<property>`: librdkafka properties passed
//!   to the source's consumer and the sinks' producers (`kafka.consumer.fetch.max.bytes`,
//!   `kafka.producer.linger.ms`, …); they override the source's own defaults, among them
//!   `fetch.queue.backoff.ms = 10` (librdkafka's 1000 ms stalls a consumer whose prefetch
//!   queue fills up) and `isolation.level = read_committed`;
//! - [`IDLE_TIMEOUT_KEY`], [`TIMEOUT_KEY`], [`TRANSACTIONAL_ID_KEY`].

mod sink;
mod source;

pub use sink::{ExactlyOnceKafkaSink, KafkaSink, Record};
pub use source::{KafkaRecord, KafkaSource};

use gearpump_api::TaskError;
use gearpump_core::UserConfig;
use rdkafka::ClientConfig;

/// Config key: after how many ms without a record a partition read to its end is idle and
/// follows the wall clock less this many ms instead of holding the watermark (default 5000).
pub const IDLE_TIMEOUT_KEY: &str = "kafka.source.idle.timeout.ms";
/// Config key: how long (ms) to wait for the brokers when opening and for requests such as
/// offset look-ups and commits (default 10000).
pub const TIMEOUT_KEY: &str = "kafka.timeout.ms";
/// Config key: the prefix of the exactly-once sink's transactional ids (default
/// `gearpump-<app name>-app<app id>`); task `p.i` uses `<prefix>-<p>-<i>-<slot>`. Two
/// applications writing at once must not share it.
pub const TRANSACTIONAL_ID_KEY: &str = "kafka.sink.transactional.id.prefix";

/// A librdkafka client config for `brokers`, with every `<prefix><property>` of `config` on
/// top of `defaults`.
fn client_config(brokers: &str, defaults: &[(&str, &str)], config: &UserConfig, prefix: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in defaults {
        c.set(*k, *v);
    }
    for (k, v) in config.iter() {
        if let Some(property) = k.strip_prefix(prefix) {
            c.set(property, v);
        }
    }
    c
}

/// The request timeout of [`TIMEOUT_KEY`].
fn timeout(config: &UserConfig) -> Result<std::time::Duration, TaskError> {
    let ms: u64 = config.get_or(TIMEOUT_KEY, 10_000)?;
    Ok(std::time::Duration::from_millis(ms.max(1)))
}

/// The partitions of `topics` (sorted by topic, then partition), failing with an error that
/// names the brokers when they cannot be reached and the topic when it does not exist.
fn partitions_of<C: rdkafka::consumer::Consumer>(
    consumer: &C,
    brokers: &str,
    topics: &[String],
    timeout: std::time::Duration,
) -> Result<Vec<(String, i32)>, TaskError> {
    let mut all = Vec::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| {
            TaskError::msg(format!(
                "cannot reach the Kafka brokers {brokers} (for topic {topic}) within {timeout:?}: {e}"
            ))
        })?;
        let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Err(TaskError::msg(format!("Kafka topic {topic} does not exist on brokers {brokers}")));
        };
        if let Some(e) = t.error() {
            let e = rdkafka::error::RDKafkaErrorCode::from(e);
            return Err(TaskError::msg(format!("Kafka topic {topic} on brokers {brokers}: {e}")));
        }
        if t.partitions().is_empty() {
            return Err(TaskError::msg(format!("Kafka topic {topic} does not exist on brokers {brokers}")));
        }
        let mut ps: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        ps.sort_unstable();
        all.extend(ps.into_iter().map(|p| (topic.clone(), p)));
    }
    Ok(all)
}

/// The partitions of `all` that task `index` of `parallelism` reads: every `parallelism`-th,
/// from the `index`-th. With more tasks than partitions some tasks read none.
pub fn assigned(all: &[(String, i32)], index: u32, parallelism: u32) -> Vec<(String, i32)> {
    let n = parallelism.max(1) as usize;
    all.iter().enumerate().filter(|(i, _)| i % n == index as usize).map(|(_, p)| p.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_is_read_by_exactly_one_task() {
        for (partitions, tasks) in [(4, 1), (4, 2), (4, 3), (4, 4), (3, 5), (1, 3), (7, 3)] {
            let all: Vec<(String, i32)> = (0..partitions).map(|p| ("t".to_string(), p)).collect();
            let mut seen: Vec<(String, i32)> = (0..tasks).flat_map(|i| assigned(&all, i, tasks)).collect();
            seen.sort();
            assert_eq!(seen, all, "{partitions} partitions over {tasks} tasks");
            let most = (0..tasks).map(|i| assigned(&all, i, tasks).len()).max().unwrap();
            assert_eq!(most, (partitions as usize).div_ceil(tasks as usize), "evenly spread");
        }
    }

    #[test]
    fn properties_pass_through_under_their_prefix() {
        let config = UserConfig::empty()
            .with("kafka.consumer.fetch.max.bytes", 1024)
            .with("kafka.producer.linger.ms", 5)
            .with("other", 1);
        let c = client_config("b:1", &[("fetch.max.bytes", "9")], &config, "kafka.consumer.");
        assert_eq!(c.get("bootstrap.servers"), Some("b:1"));
        assert_eq!(c.get("fetch.max.bytes"), Some("1024"), "the config overrides the default");
        assert_eq!(c.get("linger.ms"), None);
        assert_eq!(c.get("other"), None);
    }
}
