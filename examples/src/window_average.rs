//! WindowAverage, the guide's second state example, in the typed DSL: a number generator
//! (value `n` at time `n` ms) → averages over sliding windows. Windows of `size` ms start every
//! `step` ms; a window's average is emitted once the watermark has passed its end, and its
//! state is then evicted. The per-window sums and counts are checkpointed, so the averages are
//! exact across failures.

use gearpump::dsl::{Aggregator, Window, Windowed};
use gearpump::prelude::*;
use gearpump::{DslError, NumberSource, Pipeline};
use std::io::Write;
use std::time::Duration;

/// The average of a window's values: (count, sum) as it goes.
pub struct Average;

impl Aggregator<u64> for Average {
    type Acc = (u64, f64);
    type Out = f64;

    fn create(&self) -> (u64, f64) {
        (0, 0.0)
    }

    fn add(&self, acc: &mut (u64, f64), value: u64) {
        acc.0 += 1;
        acc.1 += value as f64;
    }

    fn merge(&self, acc: &mut (u64, f64), other: (u64, f64)) {
        acc.0 += other.0;
        acc.1 += other.1;
    }

    fn result(&self, acc: &(u64, f64)) -> f64 {
        acc.1 / acc.0 as f64
    }
}

/// Appends `<start> <end> <average>` lines to `window-<task>.txt` in a directory, and logs
/// them.
struct AverageFile {
    dir: Option<std::path::PathBuf>,
    file: Option<std::fs::File>,
}

impl DataSink for AverageFile {
    fn open(&mut self, ctx: &mut TaskContext<'_>) -> TaskResult {
        if let Some(dir) = &self.dir {
            let path = dir.join(format!("window-{}.txt", ctx.task_id().index));
            self.file = Some(std::fs::OpenOptions::new().create(true).append(true).open(&path)?);
        }
        Ok(())
    }

    fn write(&mut self, msg: Message) -> TaskResult {
        let w: &Windowed<(), f64> = msg.get().ok_or("the averages' sink expects window averages")?;
        let line = format!("{} {} {}", w.window.start, w.window.end, w.value);
        tracing::info!("Window average: {line}");
        if let Some(f) = &mut self.file {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// The application: numbers `1..=messages`, number `n` at `n` ms, averaged over windows of
/// `size` ms every `step` ms. With `output`, the averages go to `window-0.txt` there.
pub fn application(
    messages: u64,
    size: i64,
    step: i64,
    output: Option<&str>,
    checkpoint_dir: Option<&str>,
) -> Result<StreamApplication, DslError> {
    let ms = |v: i64| Duration::from_millis(u64::try_from(v).unwrap_or(0));
    let mut config = UserConfig::empty().with(gearpump::api::state::CHECKPOINT_INTERVAL_KEY, step.max(1));
    if let Some(dir) = checkpoint_dir {
        config.set("state.checkpoint.store.rootpath", dir);
    }
    let output = output.map(std::path::PathBuf::from);
    let p = Pipeline::new("windowAverage");
    p.config(config);
    p.source("numbers", 1, move |_| Ok(NumberSource::new(messages, 1)))
        .key_by(|_: &u64| ())
        .window(Window::sliding(ms(size), ms(step)))
        .aggregate(Average)
        .name("average")
        .sink(move |_| Ok(AverageFile { dir: output.clone(), file: None }));
    p.build()
}
