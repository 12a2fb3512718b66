//! Files: a replayable line source and a line sink with at-least-once delivery.

use gearpump_api::{DataSink, DataSource, TaskContext, TaskError, TaskResult, TimeStampFilter};
use gearpump_core::{Message, Timestamp};
use gearpump_storage::{OffsetStore, Position};
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::PathBuf;

/// The time of a line, from its number (1-based) and text.
pub type LineTime = fn(u64, &str) -> Timestamp;

/// Reads a text file line by line, each line a `String` message stamped by a [`LineTime`]
/// (by default its line number, in ms). Replayable: opened at a start time it seeks to the
/// latest position its [`OffsetStore`] recorded at or before that time (every
/// `record_every` lines it records one), reads on from there and drops lines stamped earlier
/// than the start ([`TimeStampFilter`]). Line times must not decrease. At the end of the file
/// the source has ended (its watermark is `MAX`).
pub struct LineSource {
    path: PathBuf,
    offsets: PathBuf,
    time_of: LineTime,
    record_every: u64,
    reader: Option<BufReader<File>>,
    store: Option<OffsetStore>,
    filter: TimeStampFilter,
    /// Byte offset and number of the next line.
    next: Position,
    ended: bool,
    line: String,
    /// Lines read since opening (to show that a replay seeks).
    scanned: u64,
}

impl LineSource {
    /// Reads `path`, keeping its offset↔timestamp store in `offsets` (a file).
    pub fn new(path: impl Into<PathBuf>, offsets: impl Into<PathBuf>) -> Self {
        LineSource {
            path: path.into(),
            offsets: offsets.into(),
            time_of: |n, _| Timestamp(n as i64),
            record_every: 1000,
            reader: None,
            store: None,
            filter: TimeStampFilter::new(Timestamp::MIN),
            next: Position { offset: 0, index: 1 },
            ended: false,
            line: String::new(),
            scanned: 0,
        }
    }

    /// Stamps lines with `time_of` instead of their numbers.
    #[must_use]
    pub fn stamped(mut self, time_of: LineTime) -> Self {
        self.time_of = time_of;
        self
    }

    /// Records a position every `lines` lines (default 1000).
    #[must_use]
    pub fn record_every(mut self, lines: u64) -> Self {
        self.record_every = lines.max(1);
        self
    }

    /// Lines read from the file since it was opened (including those dropped as too old).
    pub fn lines_scanned(&self) -> u64 {
        self.scanned
    }

    /// Opens the file at the latest recorded position no later than `start`.
    pub fn open_at(&mut self, start: Timestamp) -> TaskResult {
        let store = OffsetStore::open(&self.offsets).map_err(TaskError::msg)?;
        let from = store.seek(start).map_or(Position { offset: 0, index: 1 }, |(_, p)| p);
        let mut file =
            File::open(&self.path).map_err(|e| TaskError::msg(format!("opening {}: {e}", self.path.display())))?;
        file.seek(SeekFrom::Start(from.offset))
            .map_err(|e| TaskError::msg(format!("seeking in {}: {e}", self.path.display())))?;
        self.reader = Some(BufReader::new(file));
        self.store = Some(store);
        self.filter = TimeStampFilter::new(start);
        self.next = from;
        self.ended = false;
        self.scanned = 0;
        Ok(())
    }
}

impl DataSource for LineSource {
    fn open(&mut self, _ctx: &mut TaskContext<'_>, start_time: Timestamp) -> TaskResult {
        self.open_at(start_time)
    }

    fn read(&mut self) -> Result<Option<Message>, TaskError> {
        let Some(reader) = &mut self.reader else { return Err(TaskError::msg("the line source is not open")) };
        loop {
            if self.ended {
                return Ok(None);
            }
            let here = self.next;
            self.line.clear();
            let n = reader
                .read_line(&mut self.line)
                .map_err(|e| TaskError::msg(format!("reading {}: {e}", self.path.display())))?;
            if n == 0 || !self.line.ends_with('\n') {
                // The end (a last line without a newline may still be being written).
                self.ended = n == 0;
                if n > 0 {
                    reader.seek_relative(-(n as i64)).map_err(TaskError::msg)?;
                }
                return Ok(None);
            }
            self.scanned += 1;
            self.next = Position { offset: here.offset + n as u64, index: here.index + 1 };
            let text = self.line.trim_end_matches(['\n', '\r']).to_string();
            let time = (self.time_of)(here.index, &text);
            if here.index.is_multiple_of(self.record_every)
                && let Some(store) = &mut self.store
            {
                store.record(time, here).map_err(TaskError::msg)?;
            }
            if let Some(msg) = self.filter.filter(Message::new(text, time)) {
                return Ok(Some(msg));
            }
        }
    }

    fn watermark(&self) -> Option<Timestamp> {
        // Line times do not decrease: the runtime's default (the latest time read) holds until
        // the end of the file.
        self.ended.then_some(Timestamp::MAX)
    }
}

/// Turns a message into the line written for it (without the newline).
pub type LineFormat = fn(&Message) -> Result<String, TaskError>;

/// Appends a line per message to `<dir>/part-<task index>`. Lines are buffered and made
/// durable (written and fsync'd) on every flush; until then the sink's watermark holds the
/// application's min clock at the oldest pending line, so a crash loses nothing a recovery does
/// not replay. After a recovery lines may repeat: at-least-once.
///
/// ```no_run
/// use gearpump_api::Processor;
/// use gearpump_connectors::files::LineSink;
/// let sink = Processor::sink("Lines", 2, |_| Ok(LineSink::new("/tmp/out", LineSink::u64_lines)));
/// ```
pub struct LineSink {
    dir: PathBuf,
    format: LineFormat,
    file: Option<(PathBuf, File)>,
    buffer: Vec<u8>,
    /// The oldest timestamp in `buffer`.
    oldest_pending: Option<Timestamp>,
}

impl LineSink {
    /// A sink writing under `dir` (created if missing), each message as `format` renders it.
    pub fn new(dir: impl Into<PathBuf>, format: LineFormat) -> Self {
        LineSink { dir: dir.into(), format, file: None, buffer: Vec::new(), oldest_pending: None }
    }

    /// A [`LineFormat`] for `u64` values.
    pub fn u64_lines(msg: &Message) -> Result<String, TaskError> {
        msg.get::<u64>()
            .map(u64::to_string)
            .ok_or_else(|| TaskError::msg(format!("expected a u64, got {:?}", msg.value())))
    }

    /// A [`LineFormat`] for `String` values.
    pub fn string_lines(msg: &Message) -> Result<String, TaskError> {
        msg.get::<String>().cloned().ok_or_else(|| TaskError::msg(format!("expected a String, got {:?}", msg.value())))
    }
}

impl DataSink for LineSink {
    fn open(&mut self, ctx: &mut TaskContext<'_>) -> TaskResult {
        let path = self.dir.join(format!("part-{}", ctx.task_id().index));
        let io = |e: std::io::Error| TaskError::msg(format!("opening {}: {e}", path.display()));
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io)?;
        self.file = Some((path, file));
        Ok(())
    }

    fn write(&mut self, msg: Message) -> TaskResult {
        let line = (self.format)(&msg)?;
        self.buffer.extend_from_slice(line.as_bytes());
        self.buffer.push(b'\n');
        let t = msg.timestamp();
        self.oldest_pending = Some(self.oldest_pending.map_or(t, |o| o.min(t)));
        Ok(())
    }

    fn flush(&mut self) -> TaskResult {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let Some((path, file)) = &mut self.file else { return Err(TaskError::msg("the line sink is not open")) };
        file.write_all(&self.buffer)
            .and_then(|()| file.sync_data())
            .map_err(|e| TaskError::msg(format!("writing {}: {e}", path.display())))?;
        self.buffer.clear();
        self.oldest_pending = None;
        Ok(())
    }

    fn watermark(&self) -> Option<Timestamp> {
        self.oldest_pending
    }

    fn close(&mut self) {
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, "Closing a line sink lost its last lines.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(name: &str, n: u64) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("gearpump-lines-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let text: String = (1..=n).map(|i| format!("line {i}\n")).collect();
        std::fs::write(dir.join("input.txt"), text).unwrap();
        (dir.join("input.txt"), dir.join("offsets"))
    }

    fn read_all(s: &mut LineSource) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        while let Some(m) = s.read().unwrap() {
            out.push((m.get::<String>().unwrap().clone(), m.timestamp().0));
        }
        out
    }

    #[test]
    fn a_replay_seeks_near_its_start_and_reads_exactly_the_lines_from_it() {
        let (input, offsets) = lines("replay", 10_000);
        let mut s = LineSource::new(&input, &offsets).record_every(100);
        s.open_at(Timestamp::MIN).unwrap();
        let all = read_all(&mut s);
        assert_eq!(all.len(), 10_000);
        assert_eq!(all[41], ("line 42".to_string(), 42));
        assert_eq!(s.watermark(), Some(Timestamp::MAX));
        // Replays: exactly the lines stamped at or after the start, found by seeking.
        for start in [1, 150, 4321, 10_000, 10_001] {
            let mut s = LineSource::new(&input, &offsets).record_every(100);
            s.open_at(Timestamp(start)).unwrap();
            let got = read_all(&mut s);
            assert_eq!(got.len() as i64, (10_001 - start).max(0), "start {start}");
            if let Some(first) = got.first() {
                assert_eq!(first.1, start);
            }
            assert!(s.lines_scanned() <= got.len() as u64 + 100, "start {start}: scanned {}", s.lines_scanned());
        }
    }

    #[test]
    fn a_growing_file_is_read_as_it_grows_and_missing_files_are_named() {
        let (input, offsets) = lines("grow", 3);
        let mut s = LineSource::new(&input, &offsets);
        s.open_at(Timestamp::MIN).unwrap();
        std::fs::OpenOptions::new().append(true).open(&input).unwrap().write_all(b"line 4\nhalf").unwrap();
        let got = read_all(&mut s);
        assert_eq!(got.len(), 4, "the half-written last line waits: {got:?}");
        let mut missing = LineSource::new(input.with_file_name("nope.txt"), &offsets);
        let err = missing.open_at(Timestamp::MIN).unwrap_err().to_string();
        assert!(err.contains("nope.txt"), "{err}");
    }
}
