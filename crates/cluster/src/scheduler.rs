//! Scheduling: where granted slots go, and which waiting request is served first.
//!
//! A [`Scheduler`] is chosen by `gearpump.scheduling.scheduler-class` ([`named`]): the
//! default [`PriorityScheduler`] serves waiting requests by application priority (then in
//! arrival order), [`FifoScheduler`] in arrival order alone. Both place slots as the request's
//! locality says, spreading `Locality::Any` evenly ([`allocate`]). A program that embeds the
//! master can hand [`crate::core::MasterCore::with_scheduler`] a scheduler of its own.

use gearpump_core::{AppId, WorkerId};
use gearpump_protocol::{Locality, MasterError, Priority};
use std::sync::Arc;

/// A request for slots that waits until enough are free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The application.
    pub app: AppId,
    /// The connection of the AppMaster that asked.
    pub conn: u64,
    /// Slots wanted.
    pub slots: u32,
    /// Where.
    pub locality: Locality,
    /// The application's priority.
    pub priority: Priority,
    /// Arrival order.
    pub seq: u64,
}

/// Decides where slots go and which waiting request is served first.
pub trait Scheduler: Send + Sync + std::fmt::Debug {
    /// Its name (as `gearpump.scheduling.scheduler-class` gives it).
    fn name(&self) -> &'static str;

    /// Where `wanted` slots with `locality` go among `free` (live workers, free slots each),
    /// or why they cannot.
    fn place(
        &self,
        free: &[(WorkerId, u32)],
        wanted: u32,
        locality: Locality,
    ) -> Result<Vec<(WorkerId, u32)>, MasterError> {
        match locality {
            Locality::Any => allocate(free, wanted).ok_or(MasterError::NoSlotsFor { wanted }),
            Locality::EachWorker => {
                let each: Vec<_> = free.iter().filter(|(_, f)| *f >= wanted).map(|(w, _)| (*w, wanted)).collect();
                if each.is_empty() || wanted == 0 { Err(MasterError::NoSlotsFor { wanted }) } else { Ok(each) }
            }
            Locality::Worker(worker) => match free.iter().find(|(w, _)| *w == worker) {
                None => Err(MasterError::WorkerNotAlive(worker)),
                Some((_, f)) if *f < wanted => Err(MasterError::NoSlotsOn { worker, wanted }),
                Some(_) => Ok(vec![(worker, wanted)]),
            },
        }
    }

    /// Whether a new request of `priority` must wait behind `waiting` even if slots are free.
    fn must_wait(&self, priority: Priority, waiting: &[Waiting]) -> bool;

    /// Sorts the waiting requests into the order they are served in.
    fn order(&self, waiting: &mut [Waiting]);
}

/// The default: higher priority first, then first come, first served.
#[derive(Debug, Clone, Copy, Default)]
pub struct PriorityScheduler;

impl Scheduler for PriorityScheduler {
    fn name(&self) -> &'static str {
        "priority"
    }

    fn must_wait(&self, priority: Priority, waiting: &[Waiting]) -> bool {
        waiting.iter().any(|w| w.priority > priority)
    }

    fn order(&self, waiting: &mut [Waiting]) {
        waiting.sort_by_key(|w| (std::cmp::Reverse(w.priority), w.seq));
    }
}

/// First come, first served, whatever the priority.
#[derive(Debug, Clone, Copy, Default)]
pub struct FifoScheduler;

impl Scheduler for FifoScheduler {
    fn name(&self) -> &'static str {
        "fifo"
    }

    fn must_wait(&self, _: Priority, waiting: &[Waiting]) -> bool {
        !waiting.is_empty()
    }

    fn order(&self, waiting: &mut [Waiting]) {
        waiting.sort_by_key(|w| w.seq);
    }
}

/// The scheduler `gearpump.scheduling.scheduler-class` names: `priority` (or the guide's
/// `io.gearpump.cluster.scheduler.PriorityScheduler`) or `fifo`.
pub fn named(name: &str) -> Result<Arc<dyn Scheduler>, String> {
    match name {
        "priority" | "io.gearpump.cluster.scheduler.PriorityScheduler" => Ok(Arc::new(PriorityScheduler)),
        "fifo" => Ok(Arc::new(FifoScheduler)),
        other => Err(format!("{other:?} is not a known scheduler (priority, fifo)")),
    }
}

/// Allocates `wanted` slots over workers given as `(worker, free slots)`: each slot goes to the
/// worker with the most free slots left (ties to the lower id), so an application spreads
/// evenly. Returns `(worker, slots)` in worker order, or `None` if there are not enough.
pub fn allocate(workers: &[(WorkerId, u32)], wanted: u32) -> Option<Vec<(WorkerId, u32)>> {
    let total: u64 = workers.iter().map(|&(_, free)| u64::from(free)).sum();
    if u64::from(wanted) > total {
        return None;
    }
    let mut free: Vec<(WorkerId, u32, u32)> = workers.iter().map(|&(w, f)| (w, f, 0)).collect();
    free.sort_by_key(|&(w, _, _)| w);
    for _ in 0..wanted {
        let best = free
            .iter_mut()
            .filter(|(_, f, _)| *f > 0)
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
            .expect("enough slots were checked");
        best.1 -= 1;
        best.2 += 1;
    }
    Some(free.into_iter().filter(|&(_, _, n)| n > 0).map(|(w, _, n)| (w, n)).collect())
}

/// Groups granted slots into executors: one per worker to begin with, then the largest group
/// is halved (on its worker) until there are `wanted` executors or every executor has one slot.
/// An executor never spans workers, so `wanted` below the number of workers gives one each.
pub fn split_into_executors(allocation: &[(WorkerId, u32)], wanted: u32) -> Vec<(WorkerId, u32)> {
    let mut groups: Vec<(WorkerId, u32)> = allocation.iter().copied().filter(|&(_, n)| n > 0).collect();
    while (groups.len() as u32) < wanted {
        let Some((i, _)) =
            groups.iter().enumerate().filter(|(_, g)| g.1 > 1).max_by_key(|(i, g)| (g.1, std::cmp::Reverse(*i)))
        else {
            break;
        };
        let (worker, n) = groups[i];
        groups[i] = (worker, n - n / 2);
        groups.insert(i + 1, (worker, n / 2));
    }
    groups.sort_by_key(|&(w, n)| (w, std::cmp::Reverse(n)));
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    type Slots = Vec<(WorkerId, u32)>;

    #[test]
    fn executors_split_the_grant_without_spanning_workers() {
        let w = |i| WorkerId(i);
        let cases: Vec<(Slots, u32, Slots)> = vec![
            (vec![(w(1), 2), (w(2), 2)], 0, vec![(w(1), 2), (w(2), 2)]),
            (vec![(w(1), 2), (w(2), 2)], 2, vec![(w(1), 2), (w(2), 2)]),
            (vec![(w(1), 2), (w(2), 2)], 1, vec![(w(1), 2), (w(2), 2)]),
            (vec![(w(1), 2), (w(2), 2)], 4, vec![(w(1), 1), (w(1), 1), (w(2), 1), (w(2), 1)]),
            (vec![(w(1), 2), (w(2), 2)], 9, vec![(w(1), 1), (w(1), 1), (w(2), 1), (w(2), 1)]),
            (vec![(w(1), 5)], 3, vec![(w(1), 2), (w(1), 2), (w(1), 1)]),
            (vec![(w(1), 3), (w(2), 1)], 3, vec![(w(1), 2), (w(1), 1), (w(2), 1)]),
        ];
        for (grant, wanted, expected) in cases {
            assert_eq!(split_into_executors(&grant, wanted), expected, "{grant:?} into {wanted}");
        }
    }

    #[test]
    fn cluster_config_follows_gear_conf() {
        let conf = gearpump_config::GearConfig::defaults()
            .with_str(
                "conf/gear.conf",
                "gearpump.worker.slots = 7\ngearpump.streaming.ack-once-every-message-count = 50",
            )
            .unwrap();
        let cluster = crate::ClusterConfig::from_gear_config(&conf).unwrap();
        assert_eq!(cluster.slots_per_worker, 7);
        assert_eq!((cluster.flow.ack_once_every, cluster.flow.max_pending), (50, 1000));
        let bad = gearpump_config::GearConfig::defaults().with_str("x", "gearpump.worker.slots = 0").unwrap();
        assert!(
            crate::ClusterConfig::from_gear_config(&bad).unwrap_err().to_string().contains("gearpump.worker.slots")
        );
    }

    #[test]
    fn allocation_table() {
        let w = |i| WorkerId(i);
        let cases: Vec<(Slots, u32, Option<Slots>)> = vec![
            (vec![(w(1), 100), (w(2), 100)], 4, Some(vec![(w(1), 2), (w(2), 2)])),
            (vec![(w(1), 100), (w(2), 100)], 3, Some(vec![(w(1), 2), (w(2), 1)])),
            (vec![(w(1), 1), (w(2), 5)], 4, Some(vec![(w(2), 4)])),
            (vec![(w(1), 2), (w(2), 3)], 5, Some(vec![(w(1), 2), (w(2), 3)])),
            (vec![(w(1), 2), (w(2), 3)], 6, None),
            (vec![], 1, None),
            (vec![(w(1), 0)], 0, Some(vec![])),
        ];
        for (workers, wanted, expected) in cases {
            assert_eq!(allocate(&workers, wanted), expected, "{workers:?} wanting {wanted}");
        }
    }
}
