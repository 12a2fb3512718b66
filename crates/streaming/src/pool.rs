//! A fixed pool of threads that run task activations.
//!
//! A task is *scheduled* when it has work (a control message, or input while it is not
//! back-pressured). Scheduling pushes it onto one run queue; a pool thread pops it, runs one
//! activation (a bounded amount of work, so tasks sharing a thread take turns), and pushes it
//! back if work remains. Idle threads spin briefly, then park until work arrives.

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
}

pub(crate) struct PoolShared {
    queue: Mutex<VecDeque<Arc<dyn Runnable>>>,
    cond: Condvar,
    sleepers: AtomicUsize,
    shutdown: AtomicBool,
}

impl PoolShared {
    /// Queues a runnable; wakes a parked thread if any.
    pub(crate) fn submit(&self, r: Arc<dyn Runnable>) {
        self.queue.lock().push_back(r);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            self.cond.notify_one();
        }
    }

    fn next(&self) -> Option<Arc<dyn Runnable>> {
        // Spin a little before parking: a futex wake per batch would cost more than the batch.
        for i in 0..64 {
            if let Some(r) = self.queue.lock().pop_front() {
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
        let mut q = self.queue.lock();
        loop {
            if let Some(r) = q.pop_front() {
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
        let shared = Arc::new(PoolShared {
            queue: Mutex::new(VecDeque::new()),
            cond: Condvar::new(),
            sleepers: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
        });
        let handles = (0..threads.max(1))
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("gearpump-task-{i}"))
                    .spawn(move || {
                        while let Some(r) = shared.next() {
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
