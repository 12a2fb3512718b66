//! SOL, the throughput benchmark: producer → shuffle → processor → shuffle → … processor.

use gearpump::prelude::*;
use gearpump::{Value, api::TaskError};
use std::sync::Arc;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Produce;

/// How many distinct payloads a producer cycles through.
const PAYLOADS: usize = 1024;
/// Messages a producer sends per turn.
const BATCH: usize = 1000;

/// Sends random digit strings of `bytesPerMessage` bytes as fast as flow control allows.
pub struct SolProducer {
    payloads: Vec<Arc<dyn Value>>,
    next: usize,
    limit: Option<u64>,
    sent: u64,
}

impl SolProducer {
    /// Config key: message size in bytes (100).
    pub const BYTES_PER_MESSAGE: &'static str = "sol.bytesPerMessage";
    /// Config key: stop after this many messages per producer (default: never).
    pub const MESSAGES: &'static str = "sol.messages";

    /// A producer configured from `info`.
    pub fn new(info: &TaskInfo) -> Result<Self, TaskError> {
        let size = info.config.get_or(Self::BYTES_PER_MESSAGE, 100usize)?;
        let mut rng = fastrand::Rng::new();
        // Payloads are made once and shared: in one process a message moves a pointer.
        let payloads = (0..PAYLOADS)
            .map(|_| {
                let s: String = (0..size).map(|_| rng.digit(10)).collect();
                Arc::new(s) as Arc<dyn Value>
            })
            .collect();
        Ok(SolProducer { payloads, next: 0, limit: info.config.get(Self::MESSAGES)?, sent: 0 })
    }
}

impl Task for SolProducer {
    fn on_start(&mut self, ctx: &mut TaskContext<'_>, _start: StartTime) -> TaskResult {
        ctx.send_self(Message::new(Produce, Timestamp::now()));
        Ok(())
    }

    fn on_next(&mut self, ctx: &mut TaskContext<'_>, _msg: Message) -> TaskResult {
        let now = Timestamp::now();
        let mut n = BATCH as u64;
        if let Some(limit) = self.limit {
            n = n.min(limit - self.sent);
        }
        for _ in 0..n {
            ctx.output(Message::from_shared(self.payloads[self.next].clone(), now));
            self.next = (self.next + 1) % PAYLOADS;
            self.sent += 1;
            if ctx.is_backpressured() {
                break;
            }
        }
        if self.limit != Some(self.sent) {
            ctx.send_self(Message::new(Produce, now));
        }
        Ok(())
    }

    fn watermark(&self) -> Option<Timestamp> {
        (self.limit == Some(self.sent)).then_some(Timestamp::MAX)
    }
}

/// Forwards every message (the last stage has no downstream, so it only counts).
pub struct SolProcessor;

impl Task for SolProcessor {
    fn on_next(&mut self, ctx: &mut TaskContext<'_>, msg: Message) -> TaskResult {
        ctx.output(msg);
        Ok(())
    }
}

/// The SOL application: `producers` producers, then `stages - 1` stages of `processors`
/// processors, joined by shuffle.
pub fn application(
    producers: u32,
    processors: u32,
    bytes_per_message: usize,
    stages: u32,
    messages_per_producer: Option<u64>,
) -> Result<StreamApplication, gearpump::AppError> {
    let producer =
        Processor::from_fn("SOLStreamProducer", producers, SolProducer::new).description("SOLStreamProducer");
    let mut config = UserConfig::empty().with(SolProducer::BYTES_PER_MESSAGE, bytes_per_message);
    if let Some(m) = messages_per_producer {
        config.set(SolProducer::MESSAGES, m);
    }
    let mut builder = StreamApplication::builder("sol").config(config).processor(&producer);
    let mut previous = producer;
    for stage in 1..stages.max(2) {
        let p = Processor::from_fn("SOLStreamProcessor", processors, |_| Ok(SolProcessor))
            .description(format!("SOLStreamProcessor_{stage}"));
        builder = builder.edge(&previous, PartitionerSpec::shuffle(), &p);
        previous = p;
    }
    builder.build()
}
