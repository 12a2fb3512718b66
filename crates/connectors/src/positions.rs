//! Read positions that replayable sources store with the application's checkpoints, so that a
//! recovery resumes exactly where the restart time is.

use gearpump_api::{TaskContext, TaskError, TaskResult};
use gearpump_core::Timestamp;
use std::collections::VecDeque;

/// How many stored positions a source keeps (older ones are deleted).
const KEEP_POSITIONS: usize = 16;

/// The times at which a source task stored its positions, oldest first.
#[derive(Debug, Default)]
pub(crate) struct StoredPositions {
    stored: VecDeque<Timestamp>,
}

impl StoredPositions {
    /// The latest time a position was stored at.
    pub(crate) fn last(&self) -> Option<Timestamp> {
        self.stored.back().copied()
    }

    /// Stores `position` at checkpoint `time` in the task's state store (if it has one), and
    /// deletes all but the latest [`KEEP_POSITIONS`].
    pub(crate) fn save(
        &mut self,
        ctx: &mut TaskContext<'_>,
        time: Timestamp,
        position: &impl serde::Serialize,
    ) -> TaskResult {
        let Some(store) = ctx.state_store() else { return Ok(()) };
        let bytes = postcard::to_allocvec(position).map_err(TaskError::msg)?;
        store.save(ctx.task_id(), time, &bytes)?;
        self.stored.push_back(time);
        if self.stored.len() > KEEP_POSITIONS
            && let Some(oldest_kept) = self.stored.get(self.stored.len() - KEEP_POSITIONS).copied()
        {
            store.prune(ctx.task_id(), oldest_kept)?;
            while self.stored.front().is_some_and(|t| *t < oldest_kept) {
                self.stored.pop_front();
            }
        }
        Ok(())
    }
}
