//! Newtype identifiers. Each prints the way the guide and the REST API spell it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An application id, assigned by the master from 1 upwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AppId(pub u32);

/// A processor id. The processors of a built DAG are numbered in topological order from 0;
/// those a dynamic DAG change adds get the next ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProcessorId(pub u32);

/// The index of a task within its processor, `0..parallelism`.
pub type TaskIndex = u32;

/// One task: the `index`-th parallel instance of processor `processor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskId {
    /// The processor the task belongs to.
    pub processor: ProcessorId,
    /// The task's index within the processor.
    pub index: TaskIndex,
}

impl TaskId {
    /// Creates a task id.
    pub const fn new(processor: u32, index: TaskIndex) -> Self {
        TaskId { processor: ProcessorId(processor), index }
    }

    /// Packs the id into the eight bytes that travel on the wire: `processor << 32 | index`.
    pub const fn to_u64(self) -> u64 {
        ((self.processor.0 as u64) << 32) | self.index as u64
    }

    /// The inverse of [`TaskId::to_u64`].
    pub const fn from_u64(packed: u64) -> Self {
        TaskId { processor: ProcessorId((packed >> 32) as u32), index: packed as u32 }
    }
}

/// An executor id within an application. The AppMaster is executor [`ExecutorId::APP_MASTER`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ExecutorId(pub i32);

impl ExecutorId {
    /// The AppMaster runs as executor `-1`.
    pub const APP_MASTER: ExecutorId = ExecutorId(-1);
}

/// A worker id, assigned by the master when the worker registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WorkerId(pub u32);

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for ProcessorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskId(processorId={}, index={})", self.processor.0, self.index)
    }
}

impl fmt::Display for ExecutorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_id_packs_processor_high_and_index_low() {
        let id = TaskId::new(3, 7);
        assert_eq!(id.to_u64(), (3u64 << 32) | 7);
        assert_eq!(TaskId::from_u64(id.to_u64()), id);
        let max = TaskId::new(u32::MAX, u32::MAX);
        assert_eq!(TaskId::from_u64(max.to_u64()), max);
    }
}
