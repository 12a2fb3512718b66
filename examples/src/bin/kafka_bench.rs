//! Kafka throughput, measured against a bare librdkafka client in the same run:
//!
//! 1. produce `-records` records of `-bytes` bytes to `-topic` with a bare producer;
//! 2. read them all with a bare consumer (the ceiling; both it and the source are timed from
//!    their first record to their last);
//! 3. read them with a Kafka source into a count on the embedded cluster;
//! 4. write as many through the at-least-once sink, then the exactly-once sink.
//!
//! `kafka_bench -brokerList 127.0.0.1:9092 -topic bench -records 2000000`; the topic must exist
//! (`tools/kafka/kafka.sh topic 127.0.0.1:9092 bench 4`), and so must `<topic>-out`.

use clap::Parser;
use gearpump::prelude::*;
use gearpump::{ClusterConfig, EmbeddedCluster, NumberSource};
use gearpump_connectors::kafka::{KafkaSink, KafkaSource, Record};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Kafka source and sink throughput beside bare librdkafka clients.
#[derive(Parser)]
struct Args {
    /// Kafka brokers.
    #[arg(long = "brokerList")]
    broker_list: String,
    /// The topic to fill and read (it must exist); the sinks write to `<topic>-out`.
    #[arg(long)]
    topic: String,
    /// Records.
    #[arg(long, default_value_t = 2_000_000)]
    records: u64,
    /// Bytes a record.
    #[arg(long, default_value_t = 100)]
    bytes: usize,
    /// Source tasks.
    #[arg(long = "sourceTask", default_value_t = 1)]
    source_task: u32,
    /// Task threads of the embedded cluster (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Only these phases, comma-separated: produce, consume, source, sinks (default: all).
    #[arg(long)]
    only: Option<String>,
}

fn main() -> std::process::ExitCode {
    gearpump_examples::main_with(run)
}

fn rate(n: u64, t: Duration) -> String {
    format!("{:.0} msg/s ({n} in {:.2} s)", n as f64 / t.as_secs_f64(), t.as_secs_f64())
}

/// Counts what it receives into a shared counter.
struct Count(Arc<AtomicU64>);
impl Task for Count {
    fn on_next(&mut self, _: &mut TaskContext<'_>, _: Message) -> TaskResult {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn run() -> anyhow::Result<()> {
    let a = Args::parse_from(gearpump::cli::normalize_args(std::env::args()));
    let out_topic = format!("{}-out", a.topic);
    let payload = vec![b'x'; a.bytes];

    let phase = |name: &str| a.only.as_deref().is_none_or(|o| o.split(',').any(|p| p.trim() == name));
    let mut config = ClusterConfig::default();
    if let Some(t) = a.threads {
        config.task_threads = t;
    }
    let cluster = EmbeddedCluster::start(config);

    // 1. A bare producer.
    if phase("produce") {
        let producer: BaseProducer =
            ClientConfig::new().set("bootstrap.servers", &a.broker_list).set("linger.ms", "5").create()?;
        let t0 = Instant::now();
        for i in 0..a.records {
            let key = i.to_le_bytes();
            let mut record = BaseRecord::to(&a.topic).key(&key[..]).payload(&payload[..]);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(5));
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(120))?;
        println!("bare producer:           {}", rate(a.records, t0.elapsed()));
    }

    // 2. A bare consumer of the same records: the ceiling.
    let mut bare = Duration::ZERO;
    if phase("consume") {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &a.broker_list)
            .set("group.id", "kafka-bench")
            .set("enable.auto.commit", "false")
            // As the source sets it: librdkafka's default (1 s) stalls any consumer whose
            // prefetch queue fills up.
            .set("fetch.queue.backoff.ms", "10")
            .create()?;
        let metadata = consumer.fetch_metadata(Some(&a.topic), Duration::from_secs(10))?;
        let mut tpl = TopicPartitionList::new();
        for p in metadata.topics()[0].partitions() {
            tpl.add_partition_offset(&a.topic, p.id(), Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        let mut t0 = Instant::now();
        let mut read = 0u64;
        let mut bytes = 0usize;
        while read < a.records {
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                if read == 0 {
                    // Both clocks start at the first record: connecting is not throughput.
                    t0 = Instant::now();
                }
                bytes += m?.payload_len();
                read += 1;
            }
        }
        bare = t0.elapsed();
        println!("bare consumer:           {} ({bytes} bytes)", rate(read, bare));
    }

    // 3. Kafka source → count on the embedded cluster.
    if phase("source") {
        let counted = Arc::new(AtomicU64::new(0));
        let (brokers, topic) = (a.broker_list.clone(), a.topic.clone());
        let source =
            Processor::source("Read", a.source_task, move |_| Ok(KafkaSource::new(brokers.clone(), topic.clone())));
        let c = counted.clone();
        let count = Processor::from_fn("Count", 1, move |_| Ok(Count(c.clone())));
        let app = StreamApplication::builder("kafkaRead").edge(&source, PartitionerSpec::shuffle(), &count).build()?;
        let submitted = Instant::now();
        let id = cluster.client().submit(app).map_err(|e| anyhow::anyhow!("{e}"))?;
        while counted.load(Ordering::Relaxed) == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
        let t0 = Instant::now();
        let start_up = submitted.elapsed();
        while counted.load(Ordering::Relaxed) < a.records {
            std::thread::sleep(Duration::from_millis(1));
        }
        let engine = t0.elapsed();
        let share = if bare.is_zero() {
            String::new()
        } else {
            format!(" = {:.0} % of the bare consumer", 100.0 * bare.as_secs_f64() / engine.as_secs_f64())
        };
        println!(
            "kafka source -> count:   {}{share} (first record {:.0} ms after submitting)",
            rate(a.records, engine),
            start_up.as_secs_f64() * 1000.0
        );
        cluster.client().kill(id).map_err(|e| anyhow::anyhow!("{e}"))?;
    }

    // 4. Numbers → the sinks.
    for exactly_once in [false, true].into_iter().filter(|_| phase("sinks")) {
        let records = a.records;
        let size = a.bytes;
        let numbers = Processor::source("Numbers", 1, move |_| Ok(NumberSource::new(records, 1000)));
        let (brokers, topic) = (a.broker_list.clone(), out_topic.clone());
        let encode = move |m: &Message| -> Result<Record, TaskError> {
            let n = *m.get::<u64>().ok_or("a number")?;
            let mut payload = vec![b'x'; size];
            payload[..8].copy_from_slice(&n.to_le_bytes());
            Ok(Record::value(payload))
        };
        let sink = if exactly_once {
            Processor::sink("ExactlyOnce", 1, move |_| {
                Ok(KafkaSink::new(brokers.clone(), topic.clone()).encoded_by(encode).exactly_once())
            })
        } else {
            Processor::sink("AtLeastOnce", 1, move |_| {
                Ok(KafkaSink::new(brokers.clone(), topic.clone()).encoded_by(encode))
            })
        };
        let root = std::env::temp_dir().join(format!("kafka-bench-{}", std::process::id()));
        let app = StreamApplication::builder("kafkaWrite")
            .edge(&numbers, PartitionerSpec::shuffle(), &sink)
            .config(UserConfig::empty().with("state.checkpoint.store.rootpath", root.display()))
            .build()?;
        let t0 = Instant::now();
        let id = cluster.client().submit(app).map_err(|e| anyhow::anyhow!("{e}"))?;
        let summary = cluster.client().wait(id, Duration::from_secs(600)).map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(summary.status == gearpump::AppStatus::Succeeded, "the sink run ended {summary:?}");
        let name = if exactly_once { "exactly-once sink:     " } else { "at-least-once sink:    " };
        println!("{name}   {}", rate(a.records, t0.elapsed()));
        let _ = std::fs::remove_dir_all(root);
    }
    cluster.shutdown();
    Ok(())
}
