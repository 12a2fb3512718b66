//! Test helpers: one real Apache Kafka broker per test binary (started with
//! `tools/kafka/kafka.sh`, stopped when the test binary ends), and plain rdkafka clients to fill
//! and read topics. Included by the test crates with `#[path]`.

#![allow(dead_code)] // Each test binary uses some of these.

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A broker started for this test binary.
pub struct Broker {
    /// `127.0.0.1:<port>`.
    pub bootstrap: String,
    /// Its PID (a test may stop it).
    pub pid: u32,
    /// Its directory.
    pub dir: PathBuf,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("tools/kafka/kafka.sh").exists())
        .unwrap()
        .join("tools/kafka/kafka.sh")
}

/// Starts a broker in `dir` on `port` (0: a free one) that stops when this process ends.
pub fn start(dir: &std::path::Path, port: u16) -> Broker {
    let out = Command::new("bash")
        .arg(script())
        .args(["start", dir.to_str().unwrap(), &port.to_string(), &std::process::id().to_string()])
        .output()
        .expect("running tools/kafka/kafka.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "starting Kafka failed: {text} {}", String::from_utf8_lossy(&out.stderr));
    let line = text.lines().find(|l| l.starts_with("bootstrap=")).expect("the script names the broker");
    let mut bootstrap = String::new();
    let mut pid = 0;
    for part in line.split_whitespace() {
        if let Some(b) = part.strip_prefix("bootstrap=") {
            bootstrap = b.to_string();
        } else if let Some(p) = part.strip_prefix("pid=") {
            pid = p.parse().unwrap();
        }
    }
    Broker { bootstrap, pid, dir: dir.to_path_buf() }
}

/// The broker shared by the tests of this binary.
pub fn shared() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("gearpump-kafka-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        start(&dir, 0)
    })
}

impl Broker {
    /// Creates `topic` with `partitions` partitions (and waits until it is usable).
    pub fn topic(&self, topic: &str, partitions: i32) {
        let out = Command::new("bash")
            .arg(script())
            .args(["topic", &self.bootstrap, topic, &partitions.to_string()])
            .output()
            .expect("running tools/kafka/kafka.sh topic");
        assert!(out.status.success(), "creating topic {topic}: {}", String::from_utf8_lossy(&out.stderr));
        let c = consumer(&self.bootstrap, "read_uncommitted");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = c
                .fetch_metadata(Some(topic), Duration::from_secs(5))
                .map(|m| m.topics().iter().any(|t| t.name() == topic && t.partitions().len() == partitions as usize))
                .unwrap_or(false);
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "topic {topic} did not appear");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the broker (SIGKILL, by its PID).
    pub fn kill(&self) {
        let _ = Command::new("kill").args(["-9", &self.pid.to_string()]).status();
    }
}

fn consumer(bootstrap: &str, isolation: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "gearpump-tests")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .unwrap()
}

/// How [`produce_numbers`] stamps and paces records.
#[derive(Clone, Copy, Debug)]
pub enum Stamp {
    /// Number `n` is stamped `base + n / per_ms` ms; written as fast as the broker takes them.
    Numbered { base: i64, per_ms: u64 },
    /// Stamped with the time they are written (the producer's create time), at most this many
    /// a second.
    Now { per_second: u64 },
}

/// Writes the numbers `from..=to` as decimal text to `topic`, keyed by the number (Kafka's
/// default partitioner spreads them), stamped as `stamp` says.
pub fn produce_numbers(bootstrap: &str, topic: &str, from: u64, to: u64, stamp: Stamp) {
    let p: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("linger.ms", "20").create().unwrap();
    let started = Instant::now();
    for n in from..=to {
        let text = n.to_string();
        let mut record = BaseRecord::to(topic).key(&text).payload(&text);
        match stamp {
            Stamp::Numbered { base, per_ms } => record = record.timestamp(base + (n / per_ms) as i64),
            Stamp::Now { per_second } => {
                let due = Duration::from_micros((n - from) * 1_000_000 / per_second.max(1));
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        loop {
            match p.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    p.poll(Duration::from_millis(10));
                }
            }
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(60)).unwrap();
}

/// Every record of `topic` a consumer with `isolation` (`read_committed` or
/// `read_uncommitted`) sees now, as text: reads until the end of every partition.
pub fn read_all(bootstrap: &str, topic: &str, isolation: &str) -> Vec<String> {
    let c = consumer(bootstrap, isolation);
    let metadata = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let partitions: Vec<i32> = metadata.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning).unwrap();
        let (_, high) = c.fetch_watermarks(topic, *p, Duration::from_secs(10)).unwrap();
        ends.push((*p, high));
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // Done when every partition's position reached the end seen at the start (a committed
        // read skips transaction markers and aborted records on the way).
        let positions = c.position().unwrap();
        let done = ends.iter().all(|(p, high)| match positions.find_partition(topic, *p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o >= *high,
            _ => *high == 0,
        });
        if done {
            return out;
        }
        assert!(Instant::now() < deadline, "reading {topic} did not reach its end");
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
}
