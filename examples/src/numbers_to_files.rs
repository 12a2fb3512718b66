//! At-least-once into files: a replayable source of numbered messages → shuffle → line sinks
//! (one file per task). Whatever fails on the way, every number ends up in the files (some
//! perhaps twice, after a recovery).

use gearpump::prelude::*;
use gearpump::{NumberSource, api::TaskError};
use gearpump_connectors::files::LineSink;

/// The application: `messages` numbers, `per_ms` per millisecond of application time, at most
/// `pace` per second (0: unpaced), into `sink_tasks` files under `dir`.
pub fn application(
    messages: u64,
    per_ms: u64,
    pace: u64,
    sink_tasks: u32,
    dir: &str,
) -> Result<StreamApplication, gearpump::AppError> {
    let source = Processor::source("gearpump_examples::numbers_to_files::Numbers", 1, move |_| {
        let numbers = NumberSource::new(messages, per_ms);
        Ok::<_, TaskError>(if pace > 0 { numbers.paced(pace) } else { numbers })
    });
    let dir = dir.to_string();
    let sink = Processor::sink("gearpump_examples::numbers_to_files::Lines", sink_tasks, move |_| {
        Ok(LineSink::new(dir.clone(), LineSink::u64_lines))
    });
    StreamApplication::builder("numbersToFiles").edge(&source, PartitionerSpec::shuffle(), &sink).build()
}
