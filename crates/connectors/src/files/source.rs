//! The file source: a directory, a glob or a file on any store, read by its tasks.

use super::seqfile::{self, SeqPosition, SeqReader, Writable};
use gearpump_api::{DataSource, TaskContext, TaskError, TaskResult, TimeStampFilter};
use gearpump_core::{Message, Timestamp, Value};
use gearpump_storage::{FileInfo, Files};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::{BufRead, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes fetched from the store per read.
const CHUNK: u64 = 4 << 20;

/// The bytes of one file from an offset on, fetched from the store in large ranges.
pub struct ByteReader {
    files: Files,
    path: String,
    size: u64,
    /// The offset of `buf[0]`.
    next_fetch: u64,
    buf: Vec<u8>,
    at: usize,
}

impl ByteReader {
    fn new(files: Files, path: String, size: u64, offset: u64) -> Self {
        ByteReader { files, path, size, next_fetch: offset.min(size), buf: Vec::new(), at: 0 }
    }
}

impl Read for ByteReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ByteReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.at >= self.buf.len() && self.next_fetch < self.size {
            let end = (self.next_fetch + CHUNK).min(self.size);
            self.buf = self.files.read(&self.path, self.next_fetch, end).map_err(std::io::Error::other)?;
            self.at = 0;
            self.next_fetch = end;
        }
        Ok(&self.buf[self.at..])
    }

    fn consume(&mut self, n: usize) {
        self.at = (self.at + n).min(self.buf.len());
    }
}

/// A format the [`FileSource`] reads: how a file's bytes become values, and where a reader
/// can resume.
pub trait SourceFormat: Send + 'static {
    /// The value of one record.
    type Item: Value;
    /// An open file.
    type Reader: Send;
    /// Opens a file (its bytes from `at.offset` on are `bytes`; `header` reads it from its
    /// start, for formats whose files begin with one).
    fn open(
        &self,
        bytes: ByteReader,
        header: &mut dyn FnMut() -> ByteReader,
        at: SeqPosition,
    ) -> Result<Self::Reader, String>;
    /// Where a file's records start.
    fn first(&self, header: &mut dyn FnMut() -> ByteReader) -> Result<SeqPosition, String>;
    /// The next record, or `None` at the end of the file.
    fn next(&self, reader: &mut Self::Reader) -> Result<Option<Self::Item>, String>;
    /// Where the next record is.
    fn position(&self, reader: &Self::Reader) -> SeqPosition;
}

/// Text files, one `String` per line (without its line end; `\n` or `\r\n`). A last line
/// without a newline is a line.
#[derive(Clone, Copy, Debug, Default)]
pub struct TextLines;

/// An open text file.
pub struct TextReader {
    bytes: ByteReader,
    offset: u64,
    line: Vec<u8>,
}

impl SourceFormat for TextLines {
    type Item = String;
    type Reader = TextReader;

    fn open(
        &self,
        bytes: ByteReader,
        _: &mut dyn FnMut() -> ByteReader,
        at: SeqPosition,
    ) -> Result<TextReader, String> {
        Ok(TextReader { bytes, offset: at.offset, line: Vec::new() })
    }

    fn first(&self, _: &mut dyn FnMut() -> ByteReader) -> Result<SeqPosition, String> {
        Ok(SeqPosition::default())
    }

    fn next(&self, r: &mut TextReader) -> Result<Option<String>, String> {
        r.line.clear();
        let n = r.bytes.read_until(b'\n', &mut r.line).map_err(|e| format!("at byte {}: {e}", r.offset))?;
        if n == 0 {
            return Ok(None);
        }
        let start = r.offset;
        r.offset += n as u64;
        let mut end = r.line.len();
        if r.line[..end].ends_with(b"\n") {
            end -= 1;
        }
        if r.line[..end].ends_with(b"\r") {
            end -= 1;
        }
        String::from_utf8(r.line[..end].to_vec())
            .map(Some)
            .map_err(|_| format!("at byte {start}: a line that is not UTF-8"))
    }

    fn position(&self, r: &TextReader) -> SeqPosition {
        SeqPosition { offset: r.offset, skip: 0 }
    }
}

/// Hadoop SequenceFiles of `K` keys and `V` values (see [`seqfile`]), each record a `(K, V)`
/// value. A file whose classes are not `K`'s and `V`'s is an error naming both.
pub struct SequenceFiles<K, V>(std::marker::PhantomData<fn() -> (K, V)>);

impl<K, V> Default for SequenceFiles<K, V> {
    fn default() -> Self {
        SequenceFiles(std::marker::PhantomData)
    }
}

impl<K: Writable, V: Writable> SequenceFiles<K, V> {
    fn header(&self, header: &mut dyn FnMut() -> ByteReader) -> Result<seqfile::Header, String> {
        let h = seqfile::read_header(&mut header()).map_err(|e| e.to_string())?;
        if h.key_class != K::CLASS || h.value_class != V::CLASS {
            return Err(format!(
                "a SequenceFile of {} keys and {} values, read as {} and {}",
                h.key_class,
                h.value_class,
                K::CLASS,
                V::CLASS
            ));
        }
        Ok(h)
    }
}

impl<K, V> SourceFormat for SequenceFiles<K, V>
where
    K: Writable + Value,
    V: Writable + Value,
    (K, V): Value,
{
    type Item = (K, V);
    type Reader = SeqReader<ByteReader>;

    fn open(
        &self,
        bytes: ByteReader,
        header: &mut dyn FnMut() -> ByteReader,
        at: SeqPosition,
    ) -> Result<Self::Reader, String> {
        let h = self.header(header)?;
        SeqReader::new(bytes, h, at).map_err(|e| e.to_string())
    }

    fn first(&self, header: &mut dyn FnMut() -> ByteReader) -> Result<SeqPosition, String> {
        Ok(SeqPosition { offset: self.header(header)?.len, skip: 0 })
    }

    fn next(&self, r: &mut Self::Reader) -> Result<Option<(K, V)>, String> {
        let at = r.position().offset;
        match r.next_raw().map_err(|e| e.to_string())? {
            None => Ok(None),
            Some((k, v)) => {
                let key = K::read_from(&k).map_err(|e| format!("the record at byte {at}: its key: {e}"))?;
                let value = V::read_from(&v).map_err(|e| format!("the record at byte {at}: its value: {e}"))?;
                Ok(Some((key, value)))
            }
        }
    }

    fn position(&self, r: &Self::Reader) -> SeqPosition {
        r.position()
    }
}

/// Where a source task is: in which file, where in it, and how many records it had read
/// before (the default timestamps count them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Position {
    file: String,
    at: SeqPosition,
    ordinal: u64,
}

/// The time of a record, from its value and its number among the task's records (1-based).
pub type RecordTime<T> = Arc<dyn Fn(&T, u64) -> Timestamp + Send + Sync>;

/// Reads files as a [`DataSource`]: every file of a directory (`…/dir`), of a glob
/// (`…/dir/*.seq`: `*` and `?` in the last segment) or one file, on any store
/// [`Files`] serves, in a [`SourceFormat`] (text lines, SequenceFiles).
///
/// - **Split**: each file is read whole by one task: the files are dealt out to the tasks in
///   name order (with [`FileSource::monitor`], by a hash of the name instead, so that tasks
///   listing at different moments agree). Names starting with `.` or `_` (in-progress and
///   marker files) are not read. A single large file is read by one task.
/// - **Order and time**: a task reads its files in name order, each from start to end. A
///   record's timestamp is its number among the task's records (1, 2, 3, …), or what
///   [`FileSource::stamped`] computes from its value; times must not decrease along a task's
///   files.
/// - **Replay**: with checkpoints on (`state.checkpoint.store`), each task stores its position
///   at every checkpoint time, so a recovery resumes exactly where the restart time is;
///   without them a replay reads from the start and drops what is older than the start time.
/// - **New files**: with [`FileSource::monitor`], the source lists the directory again every
///   interval and reads files that appeared (they should be complete when they appear: write
///   them under a hidden name and rename them, as [`super::FileSink`] does; and sort after the
///   files there, e.g. by a timestamp in the name, for exact replays). Without it the source
///   ends after the last file (its watermark is `MAX`).
///
/// ```no_run
/// use gearpump_api::Processor;
/// use gearpump_connectors::files::FileSource;
/// // Every line of every file under /data/in, over 2 tasks.
/// let lines = Processor::source("Lines", 2, |_| Ok(FileSource::text("/data/in")));
/// // (i64, String) records of SequenceFiles on HDFS.
/// let records = Processor::source("Records", 2, |_| {
///     Ok(FileSource::sequence_file::<i64, String>("hdfs://namenode:8020/data/*.seq"))
/// });
/// ```
pub struct FileSource<F: SourceFormat> {
    url: String,
    format: F,
    time_of: Option<RecordTime<F::Item>>,
    monitor: Option<Duration>,
    // Set by `open`.
    files: Option<Files>,
    /// The directory (under the store's root) and the pattern of the names read.
    dir: String,
    pattern: Pattern,
    task: (u32, u32),
    /// Files of this task not yet read, in order, and those seen.
    queue: VecDeque<FileInfo>,
    seen: std::collections::HashSet<String>,
    current: Option<(FileInfo, F::Reader)>,
    ordinal: u64,
    filter: TimeStampFilter,
    ended: bool,
    last_list: Instant,
    /// `(t, position)`: the first record stamped at or after every time from `t` on (until the
    /// next entry) is at `position`.
    boundaries: VecDeque<(Timestamp, Position)>,
    max_ts: Option<Timestamp>,
    grid: i64,
    stored: crate::positions::StoredPositions,
}

/// Which names in the directory are read.
#[derive(Clone, Debug)]
enum Pattern {
    All,
    One(String),
    Glob(String),
}

/// Whether `name` matches `glob` (`*`: any run of characters, `?`: any one).
fn glob_match(glob: &[u8], name: &[u8]) -> bool {
    match (glob.split_first(), name.split_first()) {
        (None, _) => name.is_empty(),
        (Some((b'*', rest)), _) => (0..=name.len()).any(|i| glob_match(rest, &name[i..])),
        (Some((b'?', rest)), Some((_, n))) => glob_match(rest, n),
        (Some((g, rest)), Some((c, n))) => g == c && glob_match(rest, n),
        (Some(_), None) => false,
    }
}

impl Pattern {
    fn matches(&self, name: &str) -> bool {
        if name.starts_with('.') || name.starts_with('_') {
            return false;
        }
        match self {
            Pattern::All => true,
            Pattern::One(one) => name == one,
            Pattern::Glob(g) => glob_match(g.as_bytes(), name.as_bytes()),
        }
    }
}

impl FileSource<TextLines> {
    /// Every line of the files at `url`, as `String`s.
    pub fn text(url: impl Into<String>) -> Self {
        FileSource::new(url, TextLines)
    }

    /// Every record of the SequenceFiles at `url`, as `(K, V)` values:
    /// `FileSource::sequence_file::<i64, String>(url)` reads `(LongWritable, Text)` files.
    pub fn sequence_file<K, V>(url: impl Into<String>) -> FileSource<SequenceFiles<K, V>>
    where
        K: Writable + Value,
        V: Writable + Value,
        (K, V): Value,
    {
        FileSource::new(url, SequenceFiles::default())
    }

    /// Every row of the Parquet files at `url`, as `R` records (see
    /// [`super::ParquetRecord`]): `FileSource::parquet::<WordCount>(url)`. A file is fetched
    /// whole before it is read (Parquet is read from its footer).
    pub fn parquet<R: super::ParquetRecord + Value>(url: impl Into<String>) -> FileSource<super::ParquetFiles<R>> {
        FileSource::new(url, super::ParquetFiles::default())
    }
}

impl<F: SourceFormat> FileSource<F> {
    /// A source of the files at `url` in `format`.
    pub fn new(url: impl Into<String>, format: F) -> Self {
        FileSource {
            url: url.into(),
            format,
            time_of: None,
            monitor: None,
            files: None,
            dir: String::new(),
            pattern: Pattern::All,
            task: (0, 1),
            queue: VecDeque::new(),
            seen: Default::default(),
            current: None,
            ordinal: 0,
            filter: TimeStampFilter::new(Timestamp::MIN),
            ended: false,
            last_list: Instant::now(),
            boundaries: VecDeque::new(),
            max_ts: None,
            grid: 1000,
            stored: Default::default(),
        }
    }

    /// Stamps each record with `time_of(value, number)` instead of its number. Times must not
    /// decrease along a task's files.
    #[must_use]
    pub fn stamped(mut self, time_of: impl Fn(&F::Item, u64) -> Timestamp + Send + Sync + 'static) -> Self {
        self.time_of = Some(Arc::new(time_of));
        self
    }

    /// Lists the directory again every `interval` for new files, and never ends.
    #[must_use]
    pub fn monitor(mut self, interval: Duration) -> Self {
        self.monitor = Some(interval);
        self
    }

    fn err(&self, path: &str, why: impl std::fmt::Display) -> TaskError {
        let url = self.files.as_ref().map_or_else(|| gearpump_storage::shown_url(&self.url), |f| f.url_of(path));
        TaskError::msg(format!("file source, {url}: {why}"))
    }

    /// Splits the URL into the store's root, the directory and the names read.
    fn resolve(&mut self) -> TaskResult {
        let (base, query) = self.url.split_once('?').map_or((self.url.as_str(), None), |(b, q)| (b, Some(q)));
        let with_query = |root: &str| query.map_or_else(|| root.to_string(), |q| format!("{root}?{q}"));
        let (parent, last) = base.trim_end_matches('/').rsplit_once('/').unwrap_or((".", base));
        if last.contains(['*', '?']) {
            self.files = Some(Files::open(&with_query(parent)).map_err(|e| self.err("", e))?);
            self.pattern = Pattern::Glob(last.to_string());
            return Ok(());
        }
        let local = !base.contains("://") || base.starts_with("file://");
        let is_file = if local {
            let path = base.strip_prefix("file://").unwrap_or(base);
            let meta = std::fs::metadata(path).map_err(|e| self.err("", e))?;
            meta.is_file()
        } else {
            let parent_files = Files::open(&with_query(parent)).map_err(|e| self.err("", e))?;
            match parent_files.stat(last).map_err(|e| self.err("", e))? {
                Some(info) => !info.dir,
                // An object store has no directories, only names with a common prefix.
                None if !parent_files.list(last).map_err(|e| self.err("", e))?.is_empty() => false,
                None => return Err(self.err("", "no such file or directory")),
            }
        };
        if is_file {
            self.files = Some(Files::open(&with_query(parent)).map_err(|e| self.err("", e))?);
            self.pattern = Pattern::One(last.to_string());
        } else {
            self.files = Some(Files::open(&with_query(base)).map_err(|e| self.err("", e))?);
            self.pattern = Pattern::All;
        }
        Ok(())
    }

    /// Lists the directory and queues this task's files not seen before, in name order.
    fn list(&mut self) -> TaskResult {
        let files = self.files.as_ref().expect("listed after open");
        let found = files.list(&self.dir).map_err(|e| self.err(&self.dir, e))?;
        let found: Vec<FileInfo> = found
            .into_iter()
            .filter(|f| !f.dir && self.pattern.matches(f.path.rsplit('/').next().unwrap_or(&f.path)))
            .collect();
        let (index, tasks) = (u64::from(self.task.0), u64::from(self.task.1));
        for (i, f) in found.into_iter().enumerate() {
            if self.seen.contains(&f.path) {
                continue;
            }
            let name = f.path.rsplit('/').next().unwrap_or(&f.path);
            // A fixed set of files is dealt out in name order; files that appear later go by
            // a hash of their name, as tasks list at different moments.
            let mine = if self.monitor.is_none() {
                i as u64 % tasks == index
            } else {
                gearpump_core::serde_hash(&name.to_string()) % tasks == index
            };
            self.seen.insert(f.path.clone());
            if mine {
                self.queue.push_back(f);
            }
        }
        self.last_list = Instant::now();
        Ok(())
    }

    fn reader(&self, info: &FileInfo, at: Option<SeqPosition>) -> Result<F::Reader, TaskError> {
        let files = self.files.clone().expect("open");
        let mut header = || ByteReader::new(files.clone(), info.path.clone(), info.size, 0);
        let at = match at {
            Some(at) => at,
            None => self.format.first(&mut header).map_err(|e| self.err(&info.path, e))?,
        };
        let bytes = ByteReader::new(files.clone(), info.path.clone(), info.size, at.offset);
        self.format.open(bytes, &mut header, at).map_err(|e| self.err(&info.path, e))
    }

    /// Opens the source at `start` from stored `position`, if any.
    fn start_at(&mut self, start: Timestamp, position: Option<Position>) -> TaskResult {
        self.resolve()?;
        self.queue.clear();
        self.seen.clear();
        self.current = None;
        self.list()?;
        self.ordinal = 0;
        if let Some(p) = position {
            // Files before the stored one were read before the restart time.
            while self.queue.front().is_some_and(|f| f.path < p.file) {
                self.queue.pop_front();
            }
            if let Some(info) = self.queue.front().filter(|f| f.path == p.file).cloned() {
                self.queue.pop_front();
                let reader = self.reader(&info, Some(p.at))?;
                self.current = Some((info, reader));
            }
            self.ordinal = p.ordinal;
            self.boundaries = VecDeque::from([(Timestamp::MIN, p)]);
        }
        self.filter = TimeStampFilter::new(start);
        self.ended = false;
        self.max_ts = None;
        Ok(())
    }

    fn position(&self) -> Option<Position> {
        match &self.current {
            Some((info, r)) => {
                Some(Position { file: info.path.clone(), at: self.format.position(r), ordinal: self.ordinal })
            }
            None => self.queue.front().map(|f| Position {
                file: f.path.clone(),
                at: SeqPosition::default(),
                ordinal: self.ordinal,
            }),
        }
    }

    /// The position to resume from to replay everything stamped at or after `t`.
    fn position_for(&self, t: Timestamp) -> Option<Position> {
        match self.max_ts {
            Some(max) if max >= t => self.boundaries.iter().rev().find(|(g, _)| *g <= t).map(|(_, p)| p.clone()),
            _ => None,
        }
        .or_else(|| self.position())
    }
}

impl<F: SourceFormat> DataSource for FileSource<F> {
    fn open(&mut self, ctx: &mut TaskContext<'_>, start: Timestamp) -> TaskResult {
        let grid: i64 = ctx.config().get_or(gearpump_api::state::CHECKPOINT_INTERVAL_KEY, 1000)?;
        self.grid = grid.max(1);
        self.task = (ctx.task_id().index, ctx.parallelism().max(1));
        let stored: Option<Position> = match ctx.state_store().map(|s| s.load(ctx.task_id(), start)) {
            Some(Ok(Some(bytes))) => postcard::from_bytes(&bytes).ok(),
            _ => None,
        };
        let how = if stored.is_some() { "the position stored with the checkpoint" } else { "the beginning" };
        self.start_at(start, stored)?;
        tracing::info!(task = %ctx.task_id(), url = %self.files.as_ref().map_or(String::new(), Files::describe),
            files = self.queue.len() + usize::from(self.current.is_some()), %start, from = how, "File source opened.");
        Ok(())
    }

    fn read(&mut self) -> Result<Option<Message>, TaskError> {
        loop {
            if self.ended {
                return Ok(None);
            }
            if self.current.is_none() {
                if self.queue.is_empty() {
                    match self.monitor {
                        None => {
                            self.ended = true;
                            return Ok(None);
                        }
                        Some(every) if self.last_list.elapsed() >= every => {
                            self.list()?;
                            if self.queue.is_empty() {
                                return Ok(None);
                            }
                        }
                        Some(_) => return Ok(None),
                    }
                }
                let info = self.queue.pop_front().expect("a queued file");
                let reader = self.reader(&info, None)?;
                self.current = Some((info, reader));
            }
            let (info, reader) = self.current.as_mut().expect("a current file");
            // Where this record starts (the file's name is copied only for a boundary).
            let (at, ordinal) = (self.format.position(reader), self.ordinal);
            let item = match self.format.next(reader) {
                Ok(Some(item)) => item,
                Ok(None) => {
                    self.current = None;
                    continue;
                }
                Err(e) => {
                    let path = info.path.clone();
                    return Err(self.err(&path, e));
                }
            };
            self.ordinal += 1;
            let t = match &self.time_of {
                Some(f) => f(&item, self.ordinal),
                None => Timestamp(self.ordinal as i64),
            };
            let boundary = match self.max_ts {
                Some(max) if t <= max => None,
                // The first grid line past the old maximum: from it up to `t`, this record is
                // the first stamped at or after.
                Some(max) => Some(Timestamp(max.0.div_euclid(self.grid).saturating_add(1).saturating_mul(self.grid)))
                    .filter(|line| *line <= t),
                None => Some(Timestamp::MIN),
            };
            self.max_ts = Some(self.max_ts.map_or(t, |max| max.max(t)));
            if let Some(line) = boundary {
                let file = self.current.as_ref().expect("a current file").0.path.clone();
                self.boundaries.push_back((line, Position { file, at, ordinal }));
            }
            if let Some(msg) = self.filter.filter(Message::new(item, t)) {
                return Ok(Some(msg));
            }
        }
    }

    fn watermark(&self) -> Option<Timestamp> {
        self.ended.then_some(Timestamp::MAX)
    }

    fn on_checkpoint_complete(&mut self, ctx: &mut TaskContext<'_>, time: Timestamp) -> TaskResult {
        // Checkpoints are taken on the interval grid: only positions there can be restored.
        let time = Timestamp(time.0.div_euclid(self.grid).saturating_mul(self.grid));
        if self.stored.last().is_some_and(|t| t >= time) || ctx.state_store().is_none() {
            return Ok(());
        }
        let Some(position) = self.position_for(time) else { return Ok(()) };
        self.stored.save(ctx, time, &position)?;
        while self.boundaries.len() > 1 && self.boundaries[1].0 <= time {
            self.boundaries.pop_front();
        }
        Ok(())
    }

    fn close(&mut self) {
        self.current = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        for (g, name, m) in [
            ("*.seq", "part-0.seq", true),
            ("*.seq", "part-0.txt", false),
            ("part-?", "part-1", true),
            ("part-?", "part-10", false),
            ("*", "", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
        ] {
            assert_eq!(glob_match(g.as_bytes(), name.as_bytes()), m, "{g} {name}");
        }
        assert!(!Pattern::All.matches(".part-0.inprogress"));
        assert!(!Pattern::All.matches("_SUCCESS"));
    }
}
