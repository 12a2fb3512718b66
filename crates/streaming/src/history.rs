//! [`CheckpointHistory`]: what the AppMaster remembers of recent checkpoints for the report
//! (REST `appmaster/<id>/checkpoints`, the dashboard): a pure record of the tasks' saves and of
//! the times that became complete, with wall-clock times passed in.

use gearpump_core::{TaskId, Timestamp};
use gearpump_protocol::CheckpointInfo;
use std::collections::{BTreeMap, VecDeque};

/// How many complete checkpoints are kept.
pub const KEPT: usize = 20;

/// Saves of checkpoints not complete yet, and the latest complete ones.
#[derive(Debug, Default, Clone)]
pub struct CheckpointHistory {
    /// Checkpoint time → when its first save was reported, and each task's save.
    open: BTreeMap<Timestamp, (i64, Vec<(TaskId, u64, u64)>)>,
    complete: VecDeque<CheckpointInfo>,
}

impl CheckpointHistory {
    /// `task` saved `bytes` of state at checkpoint time `time`, in `took_us`; reported at
    /// `now` (ms since the epoch).
    pub fn on_saved(&mut self, task: TaskId, time: Timestamp, bytes: u64, took_us: u64, now: i64) {
        let (_, tasks) = self.open.entry(time).or_insert((now, Vec::new()));
        tasks.retain(|(t, _, _)| *t != task);
        tasks.push((task, bytes, took_us));
    }

    /// The checkpoint at `time` became complete at `now`. Open times before it will never be
    /// (a later one made them moot): they are dropped.
    pub fn on_complete(&mut self, time: Timestamp, now: i64) {
        self.open = self.open.split_off(&time);
        let Some((started, mut tasks)) = self.open.remove(&time) else { return };
        tasks.sort_by_key(|(t, _, _)| *t);
        if self.complete.len() == KEPT {
            self.complete.pop_front();
        }
        self.complete.push_back(CheckpointInfo { time, started, completed: now, tasks });
    }

    /// The latest complete checkpoints, oldest first.
    pub fn recent(&self) -> Vec<CheckpointInfo> {
        self.complete.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_checkpoints_keep_their_saves_and_earlier_open_ones_are_dropped() {
        let mut h = CheckpointHistory::default();
        let (a, b) = (TaskId::new(1, 0), TaskId::new(1, 1));
        h.on_saved(b, Timestamp(1000), 20, 5, 100);
        h.on_saved(a, Timestamp(1000), 10, 7, 103);
        h.on_saved(a, Timestamp(2000), 11, 6, 200);
        h.on_complete(Timestamp(1000), 110);
        let done = h.recent();
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].time, done[0].started, done[0].completed), (Timestamp(1000), 100, 110));
        assert_eq!(done[0].tasks, vec![(a, 10, 7), (b, 20, 5)]);
        // 3000 completes before 2000 ever did: 2000 is dropped.
        h.on_saved(a, Timestamp(3000), 12, 6, 300);
        h.on_saved(b, Timestamp(3000), 22, 6, 301);
        h.on_complete(Timestamp(3000), 305);
        assert_eq!(h.recent().iter().map(|c| c.time.0).collect::<Vec<_>>(), vec![1000, 3000]);
        h.on_complete(Timestamp(2000), 400);
        assert_eq!(h.recent().len(), 2, "nothing open at 2000 any more");
        // Only the latest KEPT stay.
        for t in 0..30 {
            h.on_saved(a, Timestamp(10_000 + t), 1, 1, t);
            h.on_complete(Timestamp(10_000 + t), t);
        }
        let kept = h.recent();
        assert_eq!(kept.len(), KEPT);
        assert_eq!(kept.last().unwrap().time, Timestamp(10_029));
    }
}
