//! Model check (loom) of the task mailbox's scheduling hand-off: the code of
//! `src/handoff.rs` itself, behind a loom mutex as the inbox holds it, under every interleaving
//! of producers pushing data and control while the task runs on a pool thread. Checked: the
//! task is never on the run queue twice nor run by two threads at once, and once everyone is
//! done no work is stranded in its inbox (no lost wake-up).

#[path = "../src/handoff.rs"]
#[allow(dead_code)]
mod handoff;

use handoff::Handoff;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    /// Start taking data (the task's `Start`, or an Ack that ends back-pressure).
    Unblock,
    /// Stop taking data (back-pressure).
    Block,
}

/// The inbox as `task.rs` has it: the queues and the hand-off under one lock.
struct Inbox {
    data: VecDeque<u32>,
    control: VecDeque<Control>,
    handoff: Handoff,
}

/// A task cell reduced to the hand-off: its inbox, the pool's run queue, and what the
/// activations did.
struct Cell {
    inbox: Mutex<Inbox>,
    /// Submissions on the pool's run queue.
    queued: AtomicUsize,
    /// Activations running now.
    running: AtomicUsize,
    /// Data processed, in order.
    processed: Mutex<Vec<u32>>,
    /// The activation's own view of back-pressure.
    blocked: Mutex<bool>,
}

impl Cell {
    fn new() -> Arc<Cell> {
        Arc::new(Cell {
            inbox: Mutex::new(Inbox { data: VecDeque::new(), control: VecDeque::new(), handoff: Handoff::new() }),
            queued: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            processed: Mutex::new(Vec::new()),
            blocked: Mutex::new(true),
        })
    }

    fn submit(&self) {
        let before = self.queued.fetch_add(1, Ordering::SeqCst);
        assert_eq!(before, 0, "the task is on the run queue twice");
    }

    /// `TaskCell::push_data`.
    fn push_data(&self, n: u32) {
        let submit = {
            let mut inbox = self.inbox.lock().unwrap();
            inbox.data.push_back(n);
            inbox.handoff.on_data()
        };
        if submit {
            self.submit();
        }
    }

    /// `TaskCell::push_control`.
    fn push_control(&self, c: Control) {
        let submit = {
            let mut inbox = self.inbox.lock().unwrap();
            inbox.control.push_back(c);
            inbox.handoff.on_control()
        };
        if submit {
            self.submit();
        }
    }

    /// What a pool thread does: runs the task if it is queued.
    fn run_if_queued(&self) -> bool {
        if self.queued.load(Ordering::SeqCst) == 0 {
            return false;
        }
        self.queued.fetch_sub(1, Ordering::SeqCst);
        self.activate();
        true
    }

    /// One activation, as `TaskRunner::activate` and `TaskCell::run` do it: control first, then
    /// data unless blocked (what it cannot take stays), then the hand-off.
    fn activate(&self) {
        assert_eq!(self.running.fetch_add(1, Ordering::SeqCst), 0, "two activations at once");
        let (controls, mut data) = {
            let mut inbox = self.inbox.lock().unwrap();
            (std::mem::take(&mut inbox.control), std::mem::take(&mut inbox.data))
        };
        let mut blocked = self.blocked.lock().unwrap();
        for c in controls {
            *blocked = c == Control::Block;
        }
        if !*blocked {
            self.processed.lock().unwrap().extend(data.drain(..));
        }
        {
            let mut inbox = self.inbox.lock().unwrap();
            inbox.handoff.set_blocked(*blocked);
            for n in data.into_iter().rev() {
                inbox.data.push_front(n);
            }
        }
        drop(blocked);
        self.running.fetch_sub(1, Ordering::SeqCst);
        let again = {
            let mut inbox = self.inbox.lock().unwrap();
            let (control, data) = (!inbox.control.is_empty(), !inbox.data.is_empty());
            inbox.handoff.on_run_end(false, control, data)
        };
        if again {
            self.submit();
        }
    }

    /// Drains the run queue as the pool would once producers are done; then nothing the task
    /// could take may be left.
    fn settle(&self) {
        while self.run_if_queued() {}
        let inbox = self.inbox.lock().unwrap();
        assert!(inbox.control.is_empty(), "control stranded: {:?}", inbox.control);
        if !*self.blocked.lock().unwrap() {
            assert!(inbox.data.is_empty(), "data stranded while the task takes data: {:?}", inbox.data);
        }
    }

    /// A started task (taking data), with nothing queued.
    fn started() -> Arc<Cell> {
        let cell = Cell::new();
        cell.push_control(Control::Unblock);
        cell.settle();
        cell
    }
}

/// A pool thread that looks for the task twice while the producers run.
fn pool_thread(cell: &Arc<Cell>) -> loom::thread::JoinHandle<()> {
    let cell = cell.clone();
    loom::thread::spawn(move || {
        for _ in 0..2 {
            if !cell.run_if_queued() {
                loom::thread::yield_now();
            }
        }
    })
}

#[test]
fn data_pushed_by_two_producers_while_the_task_runs_is_all_processed() {
    loom::model(|| {
        let cell = Cell::started();
        let producers: Vec<_> = [1, 2]
            .into_iter()
            .map(|n| {
                let cell = cell.clone();
                loom::thread::spawn(move || cell.push_data(n))
            })
            .collect();
        let pool = pool_thread(&cell);
        for p in producers {
            p.join().unwrap();
        }
        pool.join().unwrap();
        cell.settle();
        let mut done = cell.processed.lock().unwrap().clone();
        done.sort_unstable();
        assert_eq!(done, vec![1, 2]);
    });
}

#[test]
fn data_that_waited_for_the_start_is_processed_once_the_task_starts() {
    loom::model(|| {
        let cell = Cell::new();
        let data = {
            let cell = cell.clone();
            loom::thread::spawn(move || cell.push_data(7))
        };
        let start = {
            let cell = cell.clone();
            loom::thread::spawn(move || cell.push_control(Control::Unblock))
        };
        let pool = pool_thread(&cell);
        data.join().unwrap();
        start.join().unwrap();
        pool.join().unwrap();
        cell.settle();
        assert_eq!(*cell.processed.lock().unwrap(), vec![7]);
    });
}

#[test]
fn back_pressure_that_comes_and_goes_strands_nothing() {
    loom::model(|| {
        let cell = Cell::started();
        let acks = {
            let cell = cell.clone();
            loom::thread::spawn(move || {
                cell.push_control(Control::Block);
                cell.push_control(Control::Unblock);
            })
        };
        let data = {
            let cell = cell.clone();
            loom::thread::spawn(move || cell.push_data(3))
        };
        let pool = pool_thread(&cell);
        acks.join().unwrap();
        data.join().unwrap();
        pool.join().unwrap();
        cell.settle();
        assert_eq!(*cell.processed.lock().unwrap(), vec![3]);
    });
}
