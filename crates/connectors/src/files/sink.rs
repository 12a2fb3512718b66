//! The exactly-once file sink: rolling part files committed on completed checkpoints.

use super::seqfile::{Compression, SeqWriter, Writable};
use gearpump_api::{DataSink, TaskContext, TaskError, TaskResult};
use gearpump_core::{Message, Timestamp};
use gearpump_storage::{FileWriter, Files};

/// Bytes buffered before they go to the store.
const CHUNK: usize = 1 << 20;

/// A format the [`FileSink`] writes: a part file's header, its records, its end.
pub trait SinkFormat: Send + 'static {
    /// What a part file being written keeps.
    type Part: Send;
    /// The file name extension (`"txt"`, `"seq"`).
    fn extension(&self) -> &str;
    /// Starts a part file, appending its header to `out`.
    fn begin(&self, out: &mut Vec<u8>) -> Result<Self::Part, TaskError>;
    /// Appends `msg`'s record.
    fn write(&self, part: &mut Self::Part, msg: &Message, out: &mut Vec<u8>) -> TaskResult;
    /// Ends a part file, appending what it still holds.
    fn finish(&self, part: &mut Self::Part, out: &mut Vec<u8>) -> TaskResult;
}

/// Text lines: each message as the line `encode` makes of it.
pub struct TextFormat(fn(&Message) -> Result<String, TaskError>);

impl SinkFormat for TextFormat {
    type Part = ();
    fn extension(&self) -> &str {
        "txt"
    }
    fn begin(&self, _: &mut Vec<u8>) -> Result<(), TaskError> {
        Ok(())
    }
    fn write(&self, _: &mut (), msg: &Message, out: &mut Vec<u8>) -> TaskResult {
        let line = (self.0)(msg)?;
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        Ok(())
    }
    fn finish(&self, _: &mut (), _: &mut Vec<u8>) -> TaskResult {
        Ok(())
    }
}

/// Hadoop SequenceFiles of `K` keys and `V` values: each message as the record `encode`
/// makes of it.
pub struct SequenceFileFormat<K, V> {
    encode: fn(&Message) -> Result<(K, V), TaskError>,
    compression: Compression,
}

impl<K: Writable, V: Writable> SinkFormat for SequenceFileFormat<K, V> {
    type Part = (SeqWriter, Vec<u8>, Vec<u8>);
    fn extension(&self) -> &str {
        "seq"
    }
    fn begin(&self, out: &mut Vec<u8>) -> Result<Self::Part, TaskError> {
        let mut w = SeqWriter::new::<K, V>(self.compression);
        w.header(out);
        Ok((w, Vec::new(), Vec::new()))
    }
    fn write(&self, (w, k, v): &mut Self::Part, msg: &Message, out: &mut Vec<u8>) -> TaskResult {
        let (key, value) = (self.encode)(msg)?;
        k.clear();
        v.clear();
        key.write_to(k);
        value.write_to(v);
        w.append(k, v, out);
        Ok(())
    }
    fn finish(&self, (w, _, _): &mut Self::Part, out: &mut Vec<u8>) -> TaskResult {
        w.finish(out);
        Ok(())
    }
}

/// One part file being written.
struct Part<P> {
    /// The name it gets when committed, and the one it has until then.
    name: String,
    writing_as: String,
    writer: FileWriter,
    /// `None` once finished.
    format: Option<P>,
    buf: Vec<u8>,
    bytes: u64,
    records: u64,
}

/// The part files of records stamped in `[until - roll, until)`.
struct Group<P> {
    until: Timestamp,
    parts: Vec<Part<P>>,
}

/// Writes messages into rolling part files on any store [`Files`] serves, exactly once, by
/// committing them on completed checkpoints (the scheme of Flink's `FileSink`):
///
/// - records stamped in each roll interval (event time; [`FileSink::roll_time`], by default
///   the checkpoint interval `state.checkpoint.interval.ms`) go to part files of their own,
///   `part-<processor>-<task>-<interval end, 13 digits>-<n>.<ext>`; a part that reaches
///   [`FileSink::roll_size`] bytes is finished and the next one begun;
/// - until committed, a part is invisible: written under a hidden name
///   (`.part-….inprogress`, skipped by [`super::FileSource`], Hadoop and Spark) on stores that
///   rename (local disks, `hdfs://`), or, on object stores and WebHDFS, an upload that shows
///   nothing until it is completed;
/// - when the checkpoint at time `T` is complete, the parts of intervals ending at or before
///   `T` are finished and made visible (renamed, or completed), then the task's marker file
///   `_committed-<processor>-<task>` records `T`, and only then does the sink report its own
///   checkpoint at `T`: the application never restarts from a time whose output is not
///   committed;
/// - on recovery the sink deletes its in-progress parts and any visible part past its
///   marker (a commit cut short), and skips records stamped before the marker, which are
///   committed already. So after any crash each record is in exactly one visible file.
///
/// **A re-run** (a new application, not a recovery) replaces the output: each sink task
/// deletes its own earlier part files and marker when it first opens, and task 0 deletes
/// those of task indices at or above the parallelism. Use a new directory to keep old output.
///
/// Requires what every replay-based exactly-once sink does: a deterministic application and
/// an edge into the sink that sends each message to the same task in every replay (`hash`
/// of a deterministic value, `group_by`, `co_location`). When the application ends normally
/// (its sources ended), everything is committed; when it is killed, uncommitted parts stay
/// hidden.
///
/// ```no_run
/// use gearpump_api::Processor;
/// use gearpump_connectors::files::FileSink;
/// use gearpump_core::Message;
/// let sink = Processor::sink("Out", 2, |_| {
///     Ok(FileSink::sequence_file("hdfs://namenode:8020/out", |m: &Message| {
///         Ok((m.timestamp().0, m.get::<String>().cloned().unwrap_or_default()))
///     }))
/// });
/// ```
pub struct FileSink<F: SinkFormat> {
    url: String,
    format: F,
    roll_size: u64,
    roll_time: Option<i64>,
    // Set by `open`.
    files: Option<Files>,
    prefix: String,
    marker: String,
    roll: i64,
    grid: i64,
    groups: Vec<Group<F::Part>>,
    /// Records stamped before this were committed by an earlier incarnation: skip them.
    skip_before: Timestamp,
    /// The last checkpoint time reported.
    reported: Timestamp,
    /// Every message older than this has been written.
    upstream: Timestamp,
}

impl FileSink<TextFormat> {
    /// A sink of text lines, each message as `encode` renders it (without the newline).
    pub fn text(url: impl Into<String>, encode: fn(&Message) -> Result<String, TaskError>) -> Self {
        FileSink::new(url, TextFormat(encode))
    }
}

impl<K: Writable, V: Writable> FileSink<SequenceFileFormat<K, V>> {
    /// A sink of Hadoop SequenceFiles (uncompressed; see [`FileSink::compressed`]), each
    /// message as the `(key, value)` record `encode` makes of it.
    pub fn sequence_file(url: impl Into<String>, encode: fn(&Message) -> Result<(K, V), TaskError>) -> Self {
        FileSink::new(url, SequenceFileFormat { encode, compression: Compression::None })
    }

    /// Compresses the SequenceFiles (`Record` or `Block`, with Hadoop's `DefaultCodec`).
    #[must_use]
    pub fn compressed(mut self, compression: Compression) -> Self {
        self.format.compression = compression;
        self
    }
}

impl<R: super::ParquetRecord> FileSink<super::ParquetFormat<R>> {
    /// A sink of Parquet files (Snappy-compressed row groups), each message as the record
    /// `encode` makes of it (see [`super::ParquetRecord`]).
    pub fn parquet(url: impl Into<String>, encode: fn(&Message) -> Result<R, TaskError>) -> Self {
        FileSink::new(url, super::ParquetFormat::new(encode))
    }
}

impl<F: SinkFormat> FileSink<F> {
    /// A sink writing under directory `url` in `format`.
    pub fn new(url: impl Into<String>, format: F) -> Self {
        FileSink {
            url: url.into(),
            format,
            roll_size: 128 << 20,
            roll_time: None,
            files: None,
            prefix: String::new(),
            marker: String::new(),
            roll: 1000,
            grid: 1000,
            groups: Vec::new(),
            skip_before: Timestamp::MIN,
            reported: Timestamp::MIN,
            upstream: Timestamp::MIN,
        }
    }

    /// Finishes a part file once it holds `bytes` (default 128 MiB) and begins the next.
    #[must_use]
    pub fn roll_size(mut self, bytes: u64) -> Self {
        self.roll_size = bytes.max(1);
        self
    }

    /// Puts records of each `ms` of event time in part files of their own (default: the
    /// checkpoint interval). Parts are committed when the checkpoint at their interval's end
    /// completes, so a longer interval makes fewer, larger files, committed later.
    #[must_use]
    pub fn roll_time(mut self, ms: i64) -> Self {
        self.roll_time = Some(ms.max(1));
        self
    }

    fn err(&self, path: &str, why: impl std::fmt::Display) -> TaskError {
        let url = self.files.as_ref().map_or_else(|| gearpump_storage::shown_url(&self.url), |f| f.url_of(path));
        TaskError::msg(format!("file sink, {url}: {why}"))
    }

    fn files(&self) -> &Files {
        self.files.as_ref().expect("the file sink is open")
    }

    /// The end of the roll interval `t` falls in.
    fn interval_end(&self, t: Timestamp) -> Timestamp {
        Timestamp(t.0.div_euclid(self.roll).saturating_add(1).saturating_mul(self.roll))
    }

    /// The interval end in a part file's name `part-<p>-<t>-<until>-<n>.<ext>` of this task.
    fn until_of(&self, name: &str) -> Option<i64> {
        let rest = name.strip_prefix(&self.prefix)?.strip_prefix('-')?;
        let (until, _) = rest.rsplit_once('-')?;
        until.parse().ok()
    }

    /// Deletes this task's files: hidden ones always, visible ones past `after`.
    fn clean(&self, after: Option<Timestamp>) -> TaskResult {
        let files = self.files();
        let hidden = format!(".{}-", self.prefix);
        for f in files.list("").map_err(|e| self.err("", e))? {
            let delete = if f.path.starts_with(&hidden) {
                true
            } else {
                match self.until_of(&f.path) {
                    Some(until) => after.is_none_or(|a| until > a.0),
                    None => false,
                }
            };
            if delete {
                tracing::info!(file = %files.url_of(&f.path), "File sink: deleting an uncommitted or earlier run's part file.");
                files.delete(&f.path).map_err(|e| self.err(&f.path, e))?;
            }
        }
        Ok(())
    }

    fn new_part(&self, until: Timestamp, n: usize) -> Result<Part<F::Part>, TaskError> {
        // Zero-padded so that names sort by time.
        let name = format!("{}-{:013}-{n}.{}", self.prefix, until.0, self.format.extension());
        let writing_as = if self.files().can_rename() { format!(".{name}.inprogress") } else { name.clone() };
        let writer = self.files().create(&writing_as).map_err(|e| self.err(&writing_as, e))?;
        let mut buf = Vec::with_capacity(CHUNK);
        let format = self.format.begin(&mut buf)?;
        Ok(Part { name, writing_as, writer, format: Some(format), buf, bytes: 0, records: 0 })
    }

    fn push(files_err: impl Fn(&str, String) -> TaskError, part: &mut Part<F::Part>) -> TaskResult {
        if !part.buf.is_empty() {
            let bytes = std::mem::replace(&mut part.buf, Vec::with_capacity(CHUNK));
            part.writer.write(bytes).map_err(|e| files_err(&part.writing_as, e.to_string()))?;
        }
        Ok(())
    }

    /// Finishes the last part of group `g` if it is still being written.
    fn finish_part(&self, part: &mut Part<F::Part>) -> TaskResult {
        if let Some(mut p) = part.format.take() {
            self.format.finish(&mut p, &mut part.buf)?;
        }
        Self::push(|path, e| self.err(path, e), part)
    }

    /// Commits every group ending at or before `time`.
    fn commit_until(&mut self, time: Timestamp) -> TaskResult {
        while self.groups.first().is_some_and(|g| g.until <= time) {
            let mut group = self.groups.remove(0);
            let mut records = 0;
            for part in &mut group.parts {
                self.finish_part(part)?;
                records += part.records;
            }
            let files = self.files().clone();
            for part in group.parts {
                let Part { name, writing_as, writer, .. } = part;
                writer.close().map_err(|e| self.err(&writing_as, e))?;
                if writing_as != name {
                    files.rename(&writing_as, &name).map_err(|e| self.err(&writing_as, e))?;
                }
            }
            files
                .write_all(&self.marker, group.until.0.to_string().into_bytes())
                .map_err(|e| self.err(&self.marker, e))?;
            tracing::debug!(until = %group.until, records, "File sink committed.");
        }
        Ok(())
    }
}

impl<F: SinkFormat> DataSink for FileSink<F> {
    const TRANSACTIONAL: bool = true;

    fn open(&mut self, ctx: &mut TaskContext<'_>) -> TaskResult {
        let grid: i64 = ctx.config().get_or(gearpump_api::state::CHECKPOINT_INTERVAL_KEY, 1000)?;
        self.grid = grid.max(1);
        self.roll = self.roll_time.unwrap_or(self.grid);
        let id = ctx.task_id();
        self.prefix = format!("part-{}-{}", id.processor.0, id.index);
        self.marker = format!("_committed-{}-{}", id.processor.0, id.index);
        self.files = Some(Files::open(&self.url).map_err(|e| self.err("", e))?);
        self.groups.clear();
        let marker = match self.files().read_all(&self.marker) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).trim().parse::<i64>().ok().map(Timestamp),
            Err(gearpump_storage::StorageError::NotFound(_)) => None,
            Err(e) => return Err(self.err(&self.marker, e)),
        };
        // A marker counts only for a recovery: a sink that has reported checkpoints before.
        let recovering =
            ctx.state_store().is_some_and(|s| s.load(id, ctx.upstream_min_clock()).ok().flatten().is_some());
        if recovering {
            self.skip_before = marker.unwrap_or(Timestamp::MIN);
            self.clean(Some(self.skip_before))?;
        } else {
            self.skip_before = Timestamp::MIN;
            self.clean(None)?;
            self.files().delete(&self.marker).map_err(|e| self.err(&self.marker, e))?;
            if id.index == 0 {
                // Output of an earlier run with more tasks.
                let parallelism = ctx.parallelism();
                let ours = format!("part-{}-", id.processor.0);
                for f in self.files().list("").map_err(|e| self.err("", e))? {
                    let name = f.path.trim_start_matches('.');
                    let stale = name
                        .strip_prefix(&ours)
                        .or_else(|| name.strip_prefix(&format!("_committed-{}-", id.processor.0)))
                        .and_then(|r| r.split('-').next())
                        .and_then(|t| t.split('.').next())
                        .and_then(|t| t.parse::<u32>().ok())
                        .is_some_and(|t| t >= parallelism);
                    if stale {
                        self.files().delete(&f.path).map_err(|e| self.err(&f.path, e))?;
                    }
                }
            }
        }
        self.reported = ctx.upstream_min_clock();
        self.upstream = ctx.upstream_min_clock();
        tracing::info!(task = %id, url = %self.files().describe(), committed_until = %self.skip_before,
            recovering, "File sink opened.");
        Ok(())
    }

    fn write(&mut self, msg: Message) -> TaskResult {
        let t = msg.timestamp();
        if t < self.skip_before {
            return Ok(());
        }
        let until = self.interval_end(t);
        let g = match self.groups.binary_search_by(|g| g.until.cmp(&until)) {
            Ok(g) => g,
            Err(at) => {
                self.groups.insert(at, Group { until, parts: Vec::new() });
                at
            }
        };
        let needs_part = self.groups[g].parts.last().is_none_or(|p| p.format.is_none());
        if needs_part {
            let n = self.groups[g].parts.len();
            let part = self.new_part(until, n)?;
            self.groups[g].parts.push(part);
        }
        let roll_size = self.roll_size;
        let mut part = self.groups[g].parts.pop().expect("a part being written");
        let before = part.buf.len();
        let written = self.format.write(part.format.as_mut().expect("being written"), &msg, &mut part.buf);
        part.bytes += (part.buf.len() - before) as u64;
        part.records += 1;
        let outcome = written.and_then(|()| {
            if part.bytes >= roll_size {
                self.finish_part(&mut part)
            } else if part.buf.len() >= CHUNK {
                Self::push(|path, e| self.err(path, e), &mut part)
            } else {
                Ok(())
            }
        });
        self.groups[g].parts.push(part);
        outcome
    }

    fn flush(&mut self) -> TaskResult {
        let mut groups = std::mem::take(&mut self.groups);
        let mut outcome = Ok(());
        'all: for g in &mut groups {
            for p in &mut g.parts {
                if let Err(e) = Self::push(|path, e| self.err(path, e), p) {
                    outcome = Err(e);
                    break 'all;
                }
            }
        }
        self.groups = groups;
        outcome
    }

    fn on_watermark_progress(&mut self, _: &mut TaskContext<'_>, watermark: Timestamp) -> TaskResult {
        self.upstream = self.upstream.max(watermark);
        Ok(())
    }

    fn on_checkpoint_complete(&mut self, ctx: &mut TaskContext<'_>, time: Timestamp) -> TaskResult {
        self.commit_until(time)?;
        // Committed up to `time`, unless an open interval holds records older than it; then up
        // to that interval's start. Reported on the checkpoint grid only.
        let upto = match self.groups.first() {
            Some(g) if g.until.0.saturating_sub(self.roll) < time.0 => Timestamp(g.until.0.saturating_sub(self.roll)),
            _ => time,
        };
        let upto = if upto == Timestamp::MAX {
            upto
        } else {
            Timestamp(upto.0.div_euclid(self.grid).saturating_mul(self.grid))
        };
        if upto > self.reported {
            self.reported = upto;
            if let Some(store) = ctx.state_store() {
                store.save(ctx.task_id(), upto, &[])?;
            }
        }
        Ok(())
    }

    fn close(&mut self) {
        if self.upstream == Timestamp::MAX {
            // The application ended normally: every record was written; commit them all.
            if let Err(e) = self.commit_until(Timestamp::MAX) {
                tracing::error!(error = %e, "The file sink could not commit its last part files.");
            }
        }
        // Anything else was not covered by a complete checkpoint: a recovery writes it again.
        self.groups.clear();
    }
}
