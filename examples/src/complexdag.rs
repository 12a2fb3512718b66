//! ComplexDAG: 2 sources, 5 inner nodes, 5 sinks, 15 hash edges. Every node appends its name
//! to the path the message carries, so a sink sees which way each message came.

use gearpump::prelude::*;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The processors, sources first.
pub const NODES: [&str; 12] = [
    "Source_0", "Source_1", "Node_0", "Node_1", "Node_2", "Node_3", "Node_4", "Sink_0", "Sink_1", "Sink_2", "Sink_3",
    "Sink_4",
];

/// The 15 edges, by name.
pub const EDGES: [(&str, &str); 15] = [
    ("Source_0", "Sink_1"),
    ("Source_0", "Sink_2"),
    ("Source_0", "Node_2"),
    ("Source_0", "Node_3"),
    ("Source_0", "Node_1"),
    ("Source_0", "Sink_0"),
    ("Node_2", "Node_3"),
    ("Node_1", "Node_3"),
    ("Node_1", "Sink_3"),
    ("Node_1", "Node_4"),
    ("Source_1", "Sink_4"),
    ("Source_1", "Node_0"),
    ("Node_3", "Sink_3"),
    ("Node_4", "Sink_3"),
    ("Node_0", "Sink_3"),
];

/// A message's path so far.
pub type Path = Vec<String>;

/// Paths seen by each sink, with how often.
pub type PathSink = Arc<Mutex<BTreeMap<String, BTreeMap<Path, u64>>>>;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Emit;

/// Emits `[name]` messages; with a limit, that many then ends.
struct Source {
    name: String,
    limit: Option<u64>,
    sent: u64,
}

impl Task for Source {
    fn on_start(&mut self, ctx: &mut TaskContext<'_>, _: StartTime) -> TaskResult {
        ctx.send_self(Message::new(Emit, Timestamp::now()));
        Ok(())
    }

    fn on_next(&mut self, ctx: &mut TaskContext<'_>, _: Message) -> TaskResult {
        if self.limit == Some(self.sent) {
            return Ok(());
        }
        let now = Timestamp::now();
        for _ in 0..100 {
            if self.limit == Some(self.sent) || ctx.is_backpressured() {
                break;
            }
            ctx.output(Message::new(vec![self.name.clone()], now));
            self.sent += 1;
        }
        ctx.send_self(Message::new(Emit, now));
        Ok(())
    }

    fn watermark(&self) -> Option<Timestamp> {
        (self.limit == Some(self.sent)).then_some(Timestamp::MAX)
    }
}

/// Appends its name and passes the message on; a sink records the path.
struct Node {
    name: String,
    sink: Option<PathSink>,
    seen: BTreeMap<Path, u64>,
}

impl Task for Node {
    fn on_next(&mut self, ctx: &mut TaskContext<'_>, msg: Message) -> TaskResult {
        let path: &Path = msg.get().ok_or("complexdag expects a path")?;
        let mut path = path.clone();
        path.push(self.name.clone());
        if self.sink.is_some() {
            *self.seen.entry(path).or_insert(0) += 1;
        } else {
            ctx.output(Message::new(path, msg.timestamp()));
        }
        Ok(())
    }

    fn on_stop(&mut self, _: &mut TaskContext<'_>) {
        if let Some(sink) = &self.sink {
            let mut all = sink.lock();
            let mine = all.entry(self.name.clone()).or_default();
            for (p, n) in std::mem::take(&mut self.seen) {
                *mine.entry(p).or_insert(0) += n;
            }
        }
    }
}

/// The ComplexDAG application; sources end after `messages` each if given; sinks record paths
/// into `sink` if given.
pub fn application(messages: Option<u64>, sink: Option<PathSink>) -> Result<StreamApplication, gearpump::AppError> {
    let sink = sink.unwrap_or_default();
    let processors: BTreeMap<&str, Processor> = NODES
        .iter()
        .map(|&name| {
            let p = if name.starts_with("Source") {
                Processor::from_fn(name, 1, move |_| Ok(Source { name: name.to_string(), limit: messages, sent: 0 }))
            } else {
                let sink = name.starts_with("Sink").then(|| sink.clone());
                Processor::from_fn(name, 1, move |_| {
                    Ok(Node { name: name.to_string(), sink: sink.clone(), seen: BTreeMap::new() })
                })
            };
            (name, p)
        })
        .collect();
    let mut builder = StreamApplication::builder("dag");
    for (from, to) in EDGES {
        builder = builder.edge(&processors[from], PartitionerSpec::hash(), &processors[to]);
    }
    builder.build()
}

/// Every path from a source to `sink` the DAG implies.
pub fn expected_paths(sink: &str) -> Vec<Path> {
    fn walk(node: &str, path: &mut Path, sink: &str, out: &mut Vec<Path>) {
        path.push(node.to_string());
        if node == sink {
            out.push(path.clone());
        }
        for (from, to) in EDGES {
            if from == node {
                walk(to, path, sink, out);
            }
        }
        path.pop();
    }
    let mut out = Vec::new();
    for source in ["Source_0", "Source_1"] {
        walk(source, &mut Vec::new(), sink, &mut out);
    }
    out.sort();
    out
}
