//! FSIO, the guide's file example: Hadoop SequenceFiles in, SequenceFiles out, on any store
//! (local disk, HDFS, WebHDFS, S3), exactly once.
//!
//! A [`FileSource`] reads the `(LongWritable, Text)` records of every SequenceFile at the
//! input URL (a directory, a glob or a file), a hash edge on the record spreads them over the
//! sink tasks, and an exactly-once [`FileSink`] writes them into rolling SequenceFiles under
//! the output URL, committed on completed checkpoints. Each record lands in exactly one
//! committed file, whatever fails on the way.

use gearpump::api::{DataSource, TaskError};
use gearpump::prelude::*;
use gearpump_connectors::files::seqfile::Compression;
use gearpump_connectors::files::{FileSink, FileSource};

/// How an FSIO run is set up.
#[derive(Clone, Debug)]
pub struct Options {
    /// The SequenceFiles read: a directory, a glob or a file URL.
    pub input: String,
    /// The directory URL the part files go to.
    pub output: String,
    /// Source tasks (each reads whole files).
    pub source_tasks: u32,
    /// Sink tasks (each writes its own part files).
    pub sink_tasks: u32,
    /// At most this many records per second per source task (0: as fast as possible).
    pub pace: u64,
    /// Compression of the files written.
    pub compression: Compression,
    /// Event-time ms per group of part files (records are stamped 1, 2, 3, … per source task).
    pub roll_time: i64,
    /// Checkpoint interval, ms of application time.
    pub checkpoint_interval_ms: i64,
    /// Where checkpoints are kept.
    pub checkpoint_dir: Option<String>,
}

/// Holds a source to `per_second` records a second.
struct Paced<S> {
    inner: S,
    per_second: u64,
    since: std::time::Instant,
    read: u64,
}

impl<S: DataSource> DataSource for Paced<S> {
    fn open(&mut self, ctx: &mut TaskContext<'_>, start: Timestamp) -> TaskResult {
        self.since = std::time::Instant::now();
        self.read = 0;
        self.inner.open(ctx, start)
    }

    fn read(&mut self) -> Result<Option<Message>, TaskError> {
        let allowed = (self.since.elapsed().as_secs_f64() * self.per_second as f64) as u64;
        if self.read >= allowed {
            return Ok(None);
        }
        let msg = self.inner.read()?;
        self.read += u64::from(msg.is_some());
        Ok(msg)
    }

    fn watermark(&self) -> Option<Timestamp> {
        self.inner.watermark()
    }

    fn poll_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(1)
    }

    fn on_checkpoint_complete(&mut self, ctx: &mut TaskContext<'_>, time: Timestamp) -> TaskResult {
        self.inner.on_checkpoint_complete(ctx, time)
    }

    fn close(&mut self) {
        self.inner.close();
    }
}

/// The record a message carries.
fn record(msg: &Message) -> Result<(i64, String), TaskError> {
    msg.get::<(i64, String)>()
        .cloned()
        .ok_or_else(|| TaskError::msg(format!("expected an (i64, String), got {:?}", msg.value())))
}

/// The FSIO application.
pub fn application(o: &Options) -> Result<StreamApplication, gearpump::AppError> {
    let (input, pace) = (o.input.clone(), o.pace);
    let source = Processor::source("gearpump_examples::fsio::SeqFileSource", o.source_tasks, move |_| {
        let files = FileSource::sequence_file::<i64, String>(input.clone());
        Ok::<_, TaskError>(Paced {
            inner: files,
            per_second: if pace == 0 { u64::MAX } else { pace },
            since: std::time::Instant::now(),
            read: 0,
        })
    });
    let (output, compression, roll_time) = (o.output.clone(), o.compression, o.roll_time);
    let sink = Processor::sink("gearpump_examples::fsio::SeqFileSink", o.sink_tasks, move |_| {
        Ok(FileSink::sequence_file(output.clone(), record).compressed(compression).roll_time(roll_time))
    });
    let mut config = UserConfig::empty().with(gearpump::api::state::CHECKPOINT_INTERVAL_KEY, o.checkpoint_interval_ms);
    if let Some(dir) = &o.checkpoint_dir {
        config.set("state.checkpoint.store.rootpath", dir);
    }
    StreamApplication::builder("fsio").config(config).edge(&source, PartitionerSpec::hash(), &sink).build()
}
