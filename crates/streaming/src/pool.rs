//! A fixed pool of threads that run task activations.
//!
//! A task is *scheduled* when it has work (a control message, or input while it is not
//! back-pressured). Scheduling pushes it onto the run queue of its *home* thread; that thread
//! pops it, runs one activation (a bounded amount of work, so tasks sharing a thread take
//! turns), and pushes it back if work remains. A task's home is its index modulo the threads,
//! as a Timely worker owns one index of every operator: the tasks of one index (a source and
//! its co-located successors) share a thread, and a task's state stays in one core's cache
//! instead of following it from core to core. A thread whose own queue is empty takes the
//! oldest runnable of another thread's queue (an idle core is worth more than a warm cache);
//! threads with nothing at all spin briefly, then park until work arrives.

use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Something the pool can run: one activation of a task.
pub(crate) trait Runnable: Send + Sync + 'static {
    /// Runs one activation. Implementations reschedule themselves if work remains.
    fn run(self: Arc<Self>);

    /// A number that picks the thread it runs on when that thread is free (any number; taken
    /// modulo the threads).
    fn home(&self) -> usize;
}

pub(crate) struct PoolShared {
    /// One run queue per thread, under one lock (a push or pop is a few instructions).
    queues: Mutex<Vec<VecDeque<Arc<dyn Runnable>>>>,
    cond: Condvar,
    sleepers: AtomicUsize,
    shutdown: AtomicBool,
}

impl PoolShared {
    /// Queues a runnable on its home thread's queue; wakes a parked thread if any (whichever
    /// wakes takes it if its home thread is busy).
    pub(crate) fn submit(&self, r: Arc<dyn Runnable>) {
        {
            let mut queues = self.queues.lock();
            let n = queues.len();
            queues[r.home() % n].push_back(r);
        }
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            self.cond.notify_one();
        }
    }

    /// Thread `me`'s next runnable: its own oldest, else another thread's oldest.
    fn pop(queues: &mut [VecDeque<Arc<dyn Runnable>>], me: usize) -> Option<Arc<dyn Runnable>> {
        if let Some(r) = queues[me].pop_front() {
            return Some(r);
        }
        let n = queues.len();
        (1..n).find_map(|k| queues[(me + k) % n].pop_front())
    }

    fn next(&self, me: usize) -> Option<Arc<dyn Runnable>> {
        // Spin a little before parking: a futex wake per batch would cost more than the batch.
        for i in 0..64 {
            if let Some(r) = Self::pop(&mut self.queues.lock(), me) {
                return Some(r);
            }
            if self.shutdown.load(Ordering::SeqCst) {
                return None;
            }
            if i < 32 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        let mut q = self.queues.lock();
        loop {
            if let Some(r) = Self::pop(&mut q, me) {
                return Some(r);
            }
            if self.shutdown.load(Ordering::SeqCst) {
                return None;
            }
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            // The timeout is a safety net only; submit() notifies.
            self.cond.wait_for(&mut q, Duration::from_millis(50));
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The task thread pool. One per process; shared by every executor in it.
pub struct TaskPool {
    shared: Arc<PoolShared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl TaskPool {
    /// Starts a pool of `threads` threads (at least one).
    pub fn new(threads: usize) -> Arc<TaskPool> {
        let threads = threads.max(1);
        let shared = Arc::new(PoolShared {
            queues: Mutex::new((0..threads).map(|_| VecDeque::new()).collect()),
            cond: Condvar::new(),
            sleepers: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
        });
        let handles = (0..threads)
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("gearpump-task-{i}"))
                    .spawn(move || {
                        while let Some(r) = shared.next(i) {
                            r.run();
                        }
                    })
                    .expect("spawning a task pool thread")
            })
            .collect();
        Arc::new(TaskPool { shared, threads: Mutex::new(handles) })
    }

    /// A pool with one thread per available core.
    pub fn with_available_cores() -> Arc<TaskPool> {
        Self::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2))
    }

    pub(crate) fn shared(&self) -> &Arc<PoolShared> {
        &self.shared
    }

    /// Stops the threads after the work in hand.
    pub fn shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.cond.notify_all();
        for h in self.threads.lock().drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for TaskPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.cond.notify_all();
    }
}
