//! The guide's Kafka examples:
//!
//! - [`wordcount`]: KafkaWordCount: lines from a topic → Split → hash → Sum → `<word> <count>`
//!   records to another topic;
//! - [`read_write`]: Kafka read/write: a topic copied to another through a shuffle.
//!
//! Both read with [`KafkaSource`] (records stamped with their Kafka timestamps, replayed from
//! the start clock after a failure) and write with the at-least-once [`KafkaSink`].

use gearpump::prelude::*;
use gearpump_connectors::kafka::{KafkaSink, KafkaSource, Record};
use std::collections::HashMap;

/// Where the examples read and write.
#[derive(Clone, Debug)]
pub struct Topics {
    /// Kafka brokers, `host:port,…`.
    pub brokers: String,
    /// The topic read.
    pub source: String,
    /// The topic written.
    pub sink: String,
}

/// Splits each line into words.
pub struct Split;

impl Task for Split {
    fn on_next(&mut self, ctx: &mut TaskContext<'_>, msg: Message) -> TaskResult {
        let line: &String = msg.get().ok_or("Split expects lines of text")?;
        for word in line.split_whitespace() {
            ctx.output(Message::new(word.to_string(), msg.timestamp()));
        }
        Ok(())
    }
}

/// Counts words; emits `<word> <count so far>` for each.
#[derive(Default)]
pub struct Sum(HashMap<String, u64>);

impl Task for Sum {
    fn on_next(&mut self, ctx: &mut TaskContext<'_>, msg: Message) -> TaskResult {
        let t = msg.timestamp();
        let word = msg.into_value::<String>().map_err(|_| "Sum expects words")?;
        let count = self.0.entry(word.clone()).or_default();
        *count += 1;
        let line = format!("{word} {count}");
        ctx.output(Message::new(line, t));
        Ok(())
    }
}

/// Parallelism of KafkaWordCount's processors.
#[derive(Clone, Copy, Debug)]
pub struct WordCountParallelism {
    /// Source tasks.
    pub source: u32,
    /// Split tasks.
    pub split: u32,
    /// Sum tasks.
    pub sum: u32,
    /// Sink tasks.
    pub sink: u32,
}

/// Lines of text from the source topic.
fn lines(t: &Topics, parallelism: u32) -> Processor {
    let (brokers, topic) = (t.brokers.clone(), t.source.clone());
    Processor::source("gearpump_examples::kafka::Lines", parallelism, move |_| {
        Ok(KafkaSource::new(brokers.clone(), topic.clone()).utf8())
    })
}

/// `<word> <count>` lines to the sink topic, keyed by the word.
fn counts(t: &Topics, parallelism: u32) -> Processor {
    let (brokers, topic) = (t.brokers.clone(), t.sink.clone());
    Processor::sink("gearpump_examples::kafka::Counts", parallelism, move |_| {
        // Keyed by the text before the first space (the word), so a word's counts stay in
        // one partition, in order.
        Ok(KafkaSink::new(brokers.clone(), topic.clone()).encoded_by(|m| {
            let text: &String = m.get().ok_or("the sink expects text")?;
            let key = text.split(' ').next().unwrap_or_default();
            Ok(Record::value(text.as_bytes()).key(key.as_bytes()))
        }))
    })
}

/// KafkaWordCount: Kafka → Split → hash → Sum → Kafka, with `config` (Kafka settings such as
/// `kafka.consumer.*`, see [`gearpump_connectors::kafka`]).
pub fn wordcount(
    t: &Topics,
    p: WordCountParallelism,
    config: UserConfig,
) -> Result<StreamApplication, gearpump::AppError> {
    let split = Processor::from_fn("gearpump_examples::kafka::Split", p.split, |_| Ok(Split));
    let sum = Processor::from_fn("gearpump_examples::kafka::Sum", p.sum, |_| Ok(Sum::default()));
    StreamApplication::builder("KafkaWordCount")
        .edge(&lines(t, p.source), PartitionerSpec::shuffle(), &split)
        .edge(&split, PartitionerSpec::hash(), &sum)
        .edge(&sum, PartitionerSpec::shuffle(), &counts(t, p.sink))
        .config(config)
        .build()
}

/// Kafka read/write: every record of the source topic to the sink topic, through a shuffle,
/// with `config`.
pub fn read_write(
    t: &Topics,
    sources: u32,
    sinks: u32,
    config: UserConfig,
) -> Result<StreamApplication, gearpump::AppError> {
    // Records as bytes (`Vec<u8>`), whatever they hold.
    let (brokers, topic) = (t.brokers.clone(), t.source.clone());
    let read = Processor::source("gearpump_examples::kafka::Read", sources, move |_| {
        Ok(KafkaSource::new(brokers.clone(), topic.clone()))
    });
    let (brokers, topic) = (t.brokers.clone(), t.sink.clone());
    let write = Processor::sink("gearpump_examples::kafka::Write", sinks, move |_| {
        Ok(KafkaSink::new(brokers.clone(), topic.clone()))
    });
    StreamApplication::builder("KafkaReadWrite").edge(&read, PartitionerSpec::shuffle(), &write).config(config).build()
}

/// Kafka-to-Kafka windowed word count, in the typed DSL: lines from the source topic (stamped
/// with their Kafka timestamps) → words → a count per word and tumbling `window` →
/// `<word> <window start> <window end> <count>` records to the sink topic, keyed by the word,
/// written exactly once (read them with `isolation.level=read_committed`). Each window's count
/// comes out once, when the watermark passes its end.
pub fn window_count(
    t: &Topics,
    window: std::time::Duration,
    parallelism: u32,
    config: UserConfig,
) -> Result<StreamApplication, gearpump::DslError> {
    use gearpump::dsl::Window;
    let p = gearpump::Pipeline::new("KafkaWindowCount");
    p.config(config);
    let (brokers, topic) = (t.brokers.clone(), t.source.clone());
    let (out_brokers, out_topic) = (t.brokers.clone(), t.sink.clone());
    p.source("lines", parallelism, move |_| Ok(KafkaSource::new(brokers.clone(), topic.clone()).utf8()))
        .flat_map(|line: String| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .name("split")
        .key_by_value()
        .window(Window::tumbling(window))
        .count()
        .map(|w| format!("{} {} {} {}", w.key, w.window.start, w.window.end, w.value))
        .name("format")
        .sink(move |_| {
            Ok(KafkaSink::new(out_brokers.clone(), out_topic.clone())
                .encoded_by(|m| {
                    let text: &String = m.get().ok_or("the sink expects text")?;
                    let key = text.split(' ').next().unwrap_or_default();
                    Ok(Record::value(text.as_bytes()).key(key.as_bytes()))
                })
                .exactly_once())
        });
    p.build()
}
