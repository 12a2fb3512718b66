//! The scheduling hand-off of a task's mailbox: who puts the task on the pool's run queue, so
//! that it is queued at most once at a time and work pushed while it runs is never stranded.
//!
//! The state lives inside the inbox's lock, beside the queues: a producer pushes and claims in
//! one critical section ([`Handoff::on_data`], [`Handoff::on_control`]) and the one that gets
//! `true` submits the task after unlocking. The activation that runs it records whether the
//! task takes data ([`Handoff::set_blocked`]) and ends with [`Handoff::on_run_end`], which, in
//! the critical section where it looks at the queues, either keeps the claim (work is there:
//! the runner submits again) or releases it. No ordering of separate atomics to get right: an
//! earlier version released an atomic flag and then looked, and the model check
//! (`tests/handoff_loom.rs`, loom, every interleaving) found executions that stranded data.

/// The hand-off state of one task, guarded by its inbox's lock.
#[derive(Debug)]
pub(crate) struct Handoff {
    /// The task is on the run queue or running.
    scheduled: bool,
    /// Data is not to be processed now (back-pressure, not started, or done); control still is.
    blocked: bool,
}

impl Handoff {
    /// A task not scheduled and blocked (it takes data once it has started).
    pub(crate) fn new() -> Self {
        Handoff { scheduled: false, blocked: true }
    }

    fn claim(&mut self) -> bool {
        !std::mem::replace(&mut self.scheduled, true)
    }

    /// Data was pushed: whether the caller must submit the task.
    pub(crate) fn on_data(&mut self) -> bool {
        !self.blocked && self.claim()
    }

    /// A control message was pushed: whether the caller must submit the task.
    pub(crate) fn on_control(&mut self) -> bool {
        self.claim()
    }

    /// Sets whether data waits; only the running activation calls it.
    pub(crate) fn set_blocked(&mut self, blocked: bool) {
        self.blocked = blocked;
    }

    /// An activation ended: `more` if it has more to do at once, `control` and `data` whether
    /// the queues hold any. Whether the runner must submit the task again (the claim is kept);
    /// otherwise it is released.
    pub(crate) fn on_run_end(&mut self, more: bool, control: bool, data: bool) -> bool {
        let again = more || control || (data && !self.blocked);
        if !again {
            self.scheduled = false;
        }
        again
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_claim_at_a_time_and_data_waits_while_blocked() {
        let mut h = Handoff::new();
        assert!(!h.on_data(), "blocked until started");
        assert!(h.on_control(), "control always claims");
        assert!(!h.on_control(), "once");
        h.set_blocked(false);
        assert!(h.on_run_end(false, false, true), "the data that waited");
        assert!(!h.on_run_end(false, false, false));
        assert!(h.on_data());
        assert!(!h.on_data());
    }
}
