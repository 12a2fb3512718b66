//! WordCount in the typed DSL: the guide's WordCount (lines → words → counts) as one pipeline.
//! Split runs chained with the source; the count keeps its state per word, checkpointed.

use crate::wordcount::{CountSink, TEXT_TO_SPLIT};
use gearpump::{DslError, Pipeline, StreamApplication, Timestamp, UserConfig};

/// The WordCount pipeline: `parallelism` tasks per operator, the text's lines `rounds` times
/// in all (forever without), the final counts added to `sink` if given; `config` is the
/// application's.
pub fn application(
    rounds: Option<u64>,
    parallelism: u32,
    sink: Option<CountSink>,
    config: UserConfig,
) -> Result<StreamApplication, DslError> {
    let lines: Vec<String> = TEXT_TO_SPLIT.lines().map(str::to_owned).collect();
    let p = Pipeline::new("wordCountDsl");
    p.config(config);
    let counts = p
        .generate("lines", parallelism, move |task| {
            let (i, n) = (u64::from(task.task_id.index), u64::from(task.parallelism));
            let lines = lines.clone();
            // Task i reads the rounds r with r % n == i; line k of all is stamped k ms.
            let per_round = lines.len() as u64;
            (0..rounds.unwrap_or(u64::MAX)).filter(move |r| r % n == i).flat_map(move |r| {
                let lines = lines.clone();
                (0..per_round).map(move |k| (Timestamp((r * per_round + k) as i64), lines[k as usize].clone()))
            })
        })
        .flat_map(|line: String| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .name("split")
        .key_by_value()
        .count();
    match sink {
        Some(sink) => counts.for_each(move |(word, n), _| {
            let mut all = sink.lock();
            let c = all.entry(word).or_insert(0);
            *c = (*c).max(n);
        }),
        None => {
            counts.filter(|(_, n)| n % 1_000_000 == 0).for_each(|(word, n), _| tracing::info!("{word}: {n} so far"))
        }
    };
    p.build()
}
