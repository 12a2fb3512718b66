//! One thread per process that fires task timers.

use gearpump_api::TimerId;
use parking_lot::{Condvar, Mutex};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Receives fired timers.
pub(crate) trait TimerTarget: Send + Sync + 'static {
    fn fire(self: Arc<Self>, timer: TimerId);
}

struct Entry {
    due: Instant,
    seq: u64,
    timer: TimerId,
    interval: Option<Duration>,
    cancelled: Arc<AtomicBool>,
    target: Weak<dyn TimerTarget>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

struct State {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    shutdown: bool,
}

/// The timer service.
pub(crate) struct Timers {
    state: Mutex<State>,
    cond: Condvar,
}

impl Timers {
    pub(crate) fn start() -> Arc<Timers> {
        let timers = Arc::new(Timers {
            state: Mutex::new(State { heap: BinaryHeap::new(), seq: 0, shutdown: false }),
            cond: Condvar::new(),
        });
        let t = timers.clone();
        std::thread::Builder::new()
            .name("gearpump-timers".into())
            .spawn(move || t.run())
            .expect("spawning the timer thread");
        timers
    }

    /// Schedules `timer` for `target`; returns the flag that cancels it.
    pub(crate) fn schedule(
        &self,
        target: Weak<dyn TimerTarget>,
        timer: TimerId,
        delay: Duration,
        interval: Option<Duration>,
    ) -> Arc<AtomicBool> {
        let cancelled = Arc::new(AtomicBool::new(false));
        let mut s = self.state.lock();
        s.seq += 1;
        let seq = s.seq;
        s.heap.push(Reverse(Entry {
            due: Instant::now() + delay,
            seq,
            timer,
            interval,
            cancelled: cancelled.clone(),
            target,
        }));
        drop(s);
        self.cond.notify_one();
        cancelled
    }

    pub(crate) fn shutdown(&self) {
        self.state.lock().shutdown = true;
        self.cond.notify_one();
    }

    fn run(&self) {
        let mut s = self.state.lock();
        loop {
            if s.shutdown {
                return;
            }
            let now = Instant::now();
            match s.heap.peek() {
                None => {
                    self.cond.wait(&mut s);
                }
                Some(Reverse(e)) if e.due > now => {
                    let wait = e.due - now;
                    self.cond.wait_for(&mut s, wait);
                }
                Some(_) => {
                    let Reverse(mut e) = s.heap.pop().expect("peeked");
                    if e.cancelled.load(Ordering::SeqCst) {
                        continue;
                    }
                    let Some(target) = e.target.upgrade() else { continue };
                    if let Some(interval) = e.interval {
                        s.seq += 1;
                        let next = Entry {
                            due: e.due + interval.max(Duration::from_millis(1)),
                            seq: s.seq,
                            timer: e.timer,
                            interval: e.interval,
                            cancelled: e.cancelled.clone(),
                            target: std::mem::replace(&mut e.target, Weak::<NoTarget>::new()),
                        };
                        s.heap.push(Reverse(next));
                    }
                    drop(s);
                    target.fire(e.timer);
                    s = self.state.lock();
                }
            }
        }
    }
}

struct NoTarget;
impl TimerTarget for NoTarget {
    fn fire(self: Arc<Self>, _: TimerId) {}
}
