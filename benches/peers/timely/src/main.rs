//! The word count of `gearpump_examples::words` on Timely Dataflow: lines of ten words drawn with
//! the same xorshift generator from `word00000 … word09999`, a split step that makes an owned
//! `String` per word, an exchange by the word's hash, and a running count per word in a hash map
//! (FxHash, as in ours). `wordcount-timely [words] [workers]`; prints the wall time and words/s
//! and checks that every word was counted.

use rustc_hash::{FxHashMap, FxHasher};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::{Input, Operator, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WORDS_PER_LINE: u64 = 10;
const VOCABULARY: u64 = 10_000;
/// Lines per epoch: a thousand lines per millisecond of application time, as in ours.
const LINES_PER_EPOCH: u64 = 1000;
/// Epochs the input may run ahead of the count before the worker waits (bounded memory).
const SLACK: u64 = 8;

/// The same generator as `gearpump_examples::words::LineMaker`.
struct LineMaker {
    state: u64,
}

impl LineMaker {
    fn new(task: u64) -> Self {
        LineMaker { state: 0x2545_F491_4F6C_DD1D ^ (task + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) }
    }

    fn next_word(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x % VOCABULARY
    }

    fn line(&mut self) -> String {
        let mut line = String::with_capacity(WORDS_PER_LINE as usize * 10);
        for i in 0..WORDS_PER_LINE {
            if i > 0 {
                line.push(' ');
            }
            let mut v = self.next_word();
            line.push_str("word");
            let mut digits = [b'0'; 5];
            for d in digits.iter_mut().rev() {
                *d = b'0' + (v % 10) as u8;
                v /= 10;
            }
            line.push_str(std::str::from_utf8(&digits).expect("ASCII"));
        }
        line
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let words: u64 = args.next().map_or(50_000_000, |a| a.parse().expect("words: a number"));
    let workers: usize = args.next().map_or(2, |a| a.parse().expect("workers: a number"));
    let lines_per_worker = words / WORDS_PER_LINE / workers as u64;
    let expected = lines_per_worker * workers as u64 * WORDS_PER_LINE;
    let counted = Arc::new(AtomicU64::new(0));
    let counted_in = Arc::clone(&counted);

    let started = Instant::now();
    timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index() as u64;
        let mut input = InputHandle::<u64, timely::container::CapacityContainerBuilder<Vec<String>>>::new();
        let probe = ProbeHandle::new();
        let counted = Arc::clone(&counted_in);
        worker.dataflow::<u64, _, _>(|scope| {
            scope
                .input_from(&mut input)
                .unary::<timely::container::CapacityContainerBuilder<Vec<String>>, _, _, _>(
                    Pipeline,
                    "Split",
                    |_, _| {
                        move |input, output| {
                            input.for_each(|time, lines| {
                                let mut session = output.session(&time);
                                for line in lines.drain(..) {
                                    for word in line.split(' ') {
                                        session.give(word.to_owned());
                                    }
                                }
                            });
                        }
                    },
                )
                .unary_frontier::<timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _>(
                    Exchange::new(|word: &String| {
                        let mut h = FxHasher::default();
                        word.hash(&mut h);
                        h.finish()
                    }),
                    "Count",
                    move |_, _| {
                        let mut counts: FxHashMap<String, u64> = FxHashMap::default();
                        let mut seen = 0u64;
                        move |(input, frontier), _output| {
                            input.for_each(|_time, words| {
                                seen += words.len() as u64;
                                for word in words.drain(..) {
                                    *counts.entry(word).or_insert(0) += 1;
                                }
                            });
                            if frontier.is_empty() && seen > 0 {
                                counted.fetch_add(counts.values().sum::<u64>(), Ordering::Relaxed);
                                seen = 0;
                            }
                        }
                    },
                )
                .probe_with(&probe);
        });

        let mut maker = LineMaker::new(index);
        let mut made = 0u64;
        while made < lines_per_worker {
            let n = LINES_PER_EPOCH.min(lines_per_worker - made);
            for _ in 0..n {
                input.send(maker.line());
            }
            made += n;
            let epoch = *input.time() + 1;
            input.advance_to(epoch);
            while probe.less_than(&epoch.saturating_sub(SLACK)) {
                worker.step();
            }
        }
        input.close();
        while !probe.done() {
            worker.step();
        }
    })
    .expect("timely ran");
    let secs = started.elapsed().as_secs_f64();
    let counted = counted.load(Ordering::Relaxed);
    assert_eq!(counted, expected, "{counted} words counted of {expected}");
    println!(
        "engine=timely words={expected} workers={workers} wall={secs:.2}s throughput={:.2}M words/s",
        expected as f64 / secs / 1e6
    );
}
