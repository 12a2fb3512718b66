//! WindowAverage, the guide's second state example: a number generator (value `n` at time
//! `n` ms) → a persistent windowed average. Windows of `window_size` ms start every
//! `window_step` ms; a window's average is emitted once every message of it has arrived (the
//! watermark has passed its end), and is exact across failures because the per-window sums and
//! counts are checkpointed state.

use gearpump::prelude::*;
use gearpump::{NumberSource, TaskId, api::TaskError};
use std::collections::BTreeMap;
use std::io::Write;

/// Per window start: (messages, sum of values).
type Windows = BTreeMap<i64, (u64, f64)>;

/// Averages numbers per sliding window.
pub struct WindowAverage {
    size: i64,
    step: i64,
    /// Windows ending at or before this were emitted.
    emitted_up_to: i64,
    output: Option<std::path::PathBuf>,
}

impl WindowAverage {
    /// Config key: window length, ms.
    pub const SIZE: &'static str = "window.size";
    /// Config key: window start interval, ms.
    pub const STEP: &'static str = "window.step";
    /// Config key: a directory for `window-<task>.txt` (`<start> <end> <average>` lines).
    pub const OUTPUT: &'static str = "window.output";

    /// The task for `info`, configured from its user config.
    pub fn new(info: &TaskInfo) -> Result<Self, TaskError> {
        let size: i64 = info.config.get_or(Self::SIZE, 5000)?;
        let step: i64 = info.config.get_or(Self::STEP, size)?;
        if size <= 0 || step <= 0 {
            return Err(TaskError::msg(format!("window size and step must be positive, not {size} and {step}")));
        }
        let output = info.config.get_str(Self::OUTPUT).map(std::path::PathBuf::from);
        Ok(WindowAverage { size, step, emitted_up_to: i64::MIN, output })
    }

    fn emit(&self, task: TaskId, start: i64, (count, sum): (u64, f64)) -> TaskResult {
        let line = format!("{start} {} {}", start + self.size, sum / count as f64);
        tracing::info!(%task, "Window average: {line}");
        if let Some(dir) = &self.output {
            let path = dir.join(format!("window-{}.txt", task.index));
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

impl PersistentTask for WindowAverage {
    type State = Windows;

    fn on_start(&mut self, _ctx: &mut TaskContext<'_>, start: StartTime, _: &PersistentState<Windows>) -> TaskResult {
        // Windows that ended before the start time were emitted by an earlier incarnation.
        self.emitted_up_to = start.0.0;
        Ok(())
    }

    fn process(
        &mut self,
        _ctx: &mut TaskContext<'_>,
        msg: Message,
        state: &mut PersistentState<Windows>,
    ) -> TaskResult {
        let n = *msg.get::<u64>().ok_or_else(|| format!("WindowAverage expects numbers, got {:?}", msg.value()))?;
        let t = msg.timestamp().0;
        // Every window [w, w + size) with w a multiple of step that holds t.
        let mut w = t.div_euclid(self.step) * self.step;
        let mut delta = Windows::new();
        while w > t - self.size {
            delta.insert(w, (1, n as f64));
            w -= self.step;
        }
        state.update(msg.timestamp(), delta);
        Ok(())
    }

    fn on_watermark(
        &mut self,
        ctx: &mut TaskContext<'_>,
        watermark: Timestamp,
        state: &PersistentState<Windows>,
    ) -> TaskResult {
        // Every message older than the watermark has arrived: windows ending by then are
        // complete. (After a recovery, windows closing after the start clock come out again.)
        if watermark.0.saturating_sub(self.emitted_up_to) < self.step && watermark < Timestamp::MAX {
            return Ok(());
        }
        let windows = state.get();
        for (w, v) in
            windows.iter().filter(|(w, _)| **w + self.size <= watermark.0 && **w + self.size > self.emitted_up_to)
        {
            self.emit(ctx.task_id(), *w, *v)?;
        }
        self.emitted_up_to = self.emitted_up_to.max(watermark.0);
        Ok(())
    }
}

/// The application: numbers `1..=messages`, number `n` at `n` ms, averaged over windows.
pub fn application(
    messages: u64,
    size: i64,
    step: i64,
    output: Option<&str>,
    checkpoint_dir: Option<&str>,
) -> Result<StreamApplication, gearpump::AppError> {
    let source = Processor::source("gearpump_examples::window_average::Numbers", 1, move |_| {
        Ok::<_, TaskError>(NumberSource::new(messages, 1))
    });
    let average = Processor::persistent("gearpump_examples::window_average::WindowAverage", 1, WindowAverage::new);
    let mut config = UserConfig::empty()
        .with(WindowAverage::SIZE, size)
        .with(WindowAverage::STEP, step)
        .with(gearpump::api::state::CHECKPOINT_INTERVAL_KEY, step);
    if let Some(dir) = output {
        config.set(WindowAverage::OUTPUT, dir);
    }
    if let Some(dir) = checkpoint_dir {
        config.set("state.checkpoint.store.rootpath", dir);
    }
    StreamApplication::builder("windowAverage").edge(&source, PartitionerSpec::hash(), &average).config(config).build()
}
