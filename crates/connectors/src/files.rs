//! Files: a line sink with at-least-once delivery.

use gearpump_api::{DataSink, TaskContext, TaskError, TaskResult};
use gearpump_core::{Message, Timestamp};
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

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
