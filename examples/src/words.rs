//! A word count as users run it, written twice: with the Task API and with the typed DSL.
//!
//! Lines of ten words are drawn with a xorshift generator from a vocabulary of 10,000 words
//! (`word00000` … `word09999`); a split step makes an owned `String` per word; words are
//! partitioned by hash; a running count per word is kept in a hash map. Both versions do the
//! same work per word, so their throughputs compare the two APIs.

use gearpump::Pipeline;
use gearpump::prelude::*;
use std::collections::HashMap;

/// Words per line.
pub const WORDS_PER_LINE: u64 = 10;
/// Distinct words.
pub const VOCABULARY: u64 = 10_000;

/// Makes the lines of one source task: `lines` lines, deterministic per task.
pub struct LineMaker {
    state: u64,
    left: u64,
    made: u64,
}

impl LineMaker {
    /// The lines of task `task`.
    pub fn new(task: u32, lines: u64) -> Self {
        LineMaker {
            state: 0x2545_F491_4F6C_DD1D ^ (u64::from(task) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            left: lines,
            made: 0,
        }
    }

    fn next_word(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x % VOCABULARY
    }
}

impl Iterator for LineMaker {
    /// A line and its timestamp (its number, in milliseconds / 1000: a thousand lines per
    /// millisecond of application time).
    type Item = (Timestamp, String);

    fn next(&mut self) -> Option<(Timestamp, String)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let mut line = String::with_capacity(WORDS_PER_LINE as usize * 10);
        for i in 0..WORDS_PER_LINE {
            if i > 0 {
                line.push(' ');
            }
            let w = self.next_word();
            // word00000 … word09999, without format!'s machinery.
            line.push_str("word");
            let mut digits = [b'0'; 5];
            let mut v = w;
            for d in digits.iter_mut().rev() {
                *d = b'0' + (v % 10) as u8;
                v /= 10;
            }
            line.push_str(std::str::from_utf8(&digits).expect("digits are ASCII"));
        }
        let t = Timestamp((self.made / 1000) as i64);
        self.made += 1;
        Some((t, line))
    }
}

/// The lines each of `tasks` source tasks makes for `words` words in all.
pub fn lines_per_task(words: u64, tasks: u32) -> u64 {
    words / WORDS_PER_LINE / u64::from(tasks.max(1))
}

/// The word count in the DSL: about as long as it reads. `config` is the application's (where
/// the counts' checkpoints go, for one).
pub fn dsl(words: u64, parallelism: u32, config: UserConfig) -> Result<StreamApplication, gearpump::DslError> {
    let lines = lines_per_task(words, parallelism);
    let p = Pipeline::new("wordCountDsl");
    p.config(config);
    p.generate("lines", parallelism, move |task| LineMaker::new(task.task_id.index, lines))
        .flat_map(|line: String| line.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .name("split")
        .key_by_value()
        .count();
    p.build()
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct More;

/// Task API: makes lines, a batch per turn.
struct Lines {
    maker: LineMaker,
    ended: bool,
}

impl Task for Lines {
    fn on_start(&mut self, ctx: &mut TaskContext<'_>, _start: StartTime) -> TaskResult {
        ctx.send_self(Message::new(More, Timestamp::MIN));
        Ok(())
    }

    fn on_next(&mut self, ctx: &mut TaskContext<'_>, _msg: Message) -> TaskResult {
        for _ in 0..1000 {
            if ctx.is_backpressured() {
                break;
            }
            match self.maker.next() {
                Some((t, line)) => ctx.output(Message::new(line, t)),
                None => {
                    self.ended = true;
                    return Ok(());
                }
            }
        }
        ctx.send_self(Message::new(More, Timestamp::MIN));
        Ok(())
    }

    fn watermark(&self) -> Option<Timestamp> {
        self.ended.then_some(Timestamp::MAX)
    }
}

/// Task API: splits a line into owned words.
struct Split;

impl Task for Split {
    fn on_next(&mut self, ctx: &mut TaskContext<'_>, msg: Message) -> TaskResult {
        let t = msg.timestamp();
        let line: &String =
            msg.get().ok_or_else(|| format!("Split expects lines, got {:?}", msg.value().type_name()))?;
        for word in line.split(' ') {
            ctx.output(Message::new(word.to_owned(), t));
        }
        Ok(())
    }
}

/// Task API: a running count per word.
#[derive(Default)]
struct Sum {
    counts: HashMap<String, u64, rustc_hash::FxBuildHasher>,
}

impl Task for Sum {
    fn on_next(&mut self, _ctx: &mut TaskContext<'_>, msg: Message) -> TaskResult {
        let word: String =
            msg.into_value().map_err(|m| format!("Sum expects words, got {:?}", m.value().type_name()))?;
        *self.counts.entry(word).or_insert(0) += 1;
        Ok(())
    }
}

/// The same word count with the Task API: lines → co-location → Split → hash → Sum.
pub fn task_api(words: u64, parallelism: u32, config: UserConfig) -> Result<StreamApplication, gearpump::AppError> {
    let lines = lines_per_task(words, parallelism);
    let source = Processor::from_fn("Lines", parallelism, move |info| {
        Ok(Lines { maker: LineMaker::new(info.task_id.index, lines), ended: false })
    });
    let split = Processor::from_fn("Split", parallelism, |_| Ok(Split));
    let sum = Processor::from_fn("Sum", parallelism, |_| Ok(Sum::default()));
    StreamApplication::builder("wordCountTasks")
        .config(config)
        .edge(&source, PartitionerSpec::co_location(), &split)
        .edge(&split, PartitionerSpec::hash(), &sum)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_ten_words_of_the_vocabulary() {
        let lines: Vec<_> = LineMaker::new(0, 3).collect();
        assert_eq!(lines.len(), 3);
        for (_, line) in &lines {
            let words: Vec<&str> = line.split(' ').collect();
            assert_eq!(words.len(), 10);
            assert!(words.iter().all(|w| w.len() == 9 && w.starts_with("word")), "{line}");
        }
        assert_ne!(lines[0].1, lines[1].1);
        assert_ne!(LineMaker::new(1, 1).next(), LineMaker::new(0, 1).next());
    }
}
