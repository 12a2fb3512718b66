//! Dynamic DAG: applying a [`DagChange`] to a [`StreamApplication`].
//!
//! A change is checked in full before anything of it counts: a task type the binary does not
//! know, a parallelism of 0, an edge a partitioner cannot serve, a cycle, a processor left
//! without input: each is an [`AppError`] naming what was wrong, and the application stays as
//! it was. Applied, a change retires processors (they stay in the DAG under their ids, with no
//! tasks and no edges, their life ending at the transit time) and adds new ones under the next
//! ids, born at the transit time. Applying the same list of changes to the same binary's
//! application gives the same DAG in every process.

use crate::application::{AppError, DagEdge, MAX_TASKS, StreamApplication, check_edge};
use crate::processor::{LifeTime, Predecessor, ProcessorDescription};
use crate::{PartitionerSpec, TaskFactory};
use gearpump_core::{AppliedChange, DagChange, DagProcessor, Graph, ProcessorId, Timestamp, UserConfig};
use std::collections::{BTreeMap, BTreeSet};

impl StreamApplication {
    /// The application with `change` applied at application time `transit`: the next DAG
    /// version. The application itself is left as it was.
    pub fn apply(&self, change: &DagChange, transit: Timestamp) -> Result<StreamApplication, AppError> {
        let mut next = self.clone();
        next.apply_in_place(change, transit)?;
        next.changes.push(AppliedChange { change: change.clone(), transit });
        Ok(next)
    }

    /// The application with `changes` applied in order (what the masters keep of a running
    /// application's DAG, replayed by a new AppMaster and by every executor).
    pub fn with_changes(&self, changes: &[AppliedChange]) -> Result<StreamApplication, AppError> {
        let mut app = self.clone();
        for c in changes {
            app = app.apply(&c.change, c.transit)?;
        }
        Ok(app)
    }

    fn apply_in_place(&mut self, change: &DagChange, transit: Timestamp) -> Result<(), AppError> {
        match change {
            DagChange::Replace { processor_id, new_processor, inherit_conf } => {
                let old = self.live_processor(*processor_id)?;
                let mut conf = conf_of(new_processor);
                if *inherit_conf {
                    conf = old.config.clone().merge(&conf);
                }
                let predecessor = successor_state(old, transit);
                let new = self.add(new_processor, conf, transit)?;
                let p = &mut self.dag.processors[new.0 as usize];
                p.predecessor = predecessor.filter(|_| p.stateful);
                self.retire(*processor_id, transit);
                for e in &mut self.dag.edges {
                    if e.from == *processor_id {
                        e.from = new;
                    }
                    if e.to == *processor_id {
                        e.to = new;
                    }
                }
            }
            DagChange::Rescale { processor_id, parallelism } => {
                let old = self.live_processor(*processor_id)?.clone();
                let same = DagProcessor {
                    task_class: old.task_type.clone(),
                    parallelism: *parallelism,
                    description: old.description.clone(),
                    task_conf: BTreeMap::new(),
                };
                let replace =
                    DagChange::Replace { processor_id: *processor_id, new_processor: same, inherit_conf: true };
                let factory = self.dag.factories[processor_id.0 as usize].clone();
                self.apply_in_place(&replace, transit)?;
                // The same code as the processor rescaled, whatever its task type is registered as.
                let new = self.dag.processors.len() - 1;
                self.dag.factories[new] = factory;
                let p = &mut self.dag.processors[new];
                (p.stateful, p.transactional) = (old.stateful, old.transactional);
                p.predecessor = successor_state(&old, transit);
            }
            DagChange::Attach { processors, edges } => {
                if processors.is_empty() && edges.is_empty() {
                    return Err(AppError::InvalidChange("an attach adds no processor and no edge".into()));
                }
                let mut named = BTreeMap::new();
                for (name, p) in processors {
                    if name.parse::<u32>().is_ok() {
                        return Err(AppError::InvalidChange(format!(
                            "new processor name {name:?} looks like a processor id; name new processors with letters"
                        )));
                    }
                    named.insert(name.as_str(), self.add(p, conf_of(p), transit)?);
                }
                for (from, partitioner, to) in edges {
                    let spec = self.partitioner(partitioner)?;
                    let (from, to) = (self.edge_end(&named, from)?, self.edge_end(&named, to)?);
                    self.dag.edges.push(DagEdge { from, to, partitioner: spec });
                }
            }
            DagChange::Remove { processor_ids } => {
                if processor_ids.is_empty() {
                    return Err(AppError::InvalidChange("a remove names no processor".into()));
                }
                let had_input: BTreeSet<ProcessorId> = self.dag.edges.iter().map(|e| e.to).collect();
                for id in processor_ids {
                    self.live_processor(*id)?;
                    self.retire(*id, transit);
                }
                self.dag.edges.retain(|e| !processor_ids.contains(&e.from) && !processor_ids.contains(&e.to));
                let has_input: BTreeSet<ProcessorId> = self.dag.edges.iter().map(|e| e.to).collect();
                if let Some(p) = self.dag.live().find(|p| had_input.contains(&p.id) && !has_input.contains(&p.id)) {
                    return Err(AppError::LeftWithoutInput { id: p.id, task_type: p.task_type.clone() });
                }
                if self.dag.live().next().is_none() {
                    return Err(AppError::InvalidChange("it would remove every processor".into()));
                }
            }
        }
        self.check()
    }

    /// A processor that runs now.
    fn live_processor(&self, id: ProcessorId) -> Result<&ProcessorDescription, AppError> {
        self.dag.processors.get(id.0 as usize).filter(|p| !p.retired).ok_or(AppError::UnknownProcessor { id })
    }

    /// Adds processor `p` (task config `conf`), born at `transit`; returns its id.
    fn add(&mut self, p: &DagProcessor, conf: UserConfig, transit: Timestamp) -> Result<ProcessorId, AppError> {
        let kind = self
            .kinds
            .get(&p.task_class)
            .cloned()
            .ok_or_else(|| AppError::UnknownTaskType { task_type: p.task_class.clone() })?;
        if p.parallelism == 0 {
            return Err(AppError::ZeroParallelism { task_type: p.task_class.clone() });
        }
        let id = ProcessorId(self.dag.processors.len() as u32);
        let description = if p.description.is_empty() { p.task_class.clone() } else { p.description.clone() };
        self.dag.processors.push(ProcessorDescription {
            id,
            task_type: p.task_class.clone(),
            parallelism: p.parallelism,
            description,
            config: conf,
            life: LifeTime { birth: transit, death: Timestamp::MAX },
            stateful: kind.stateful,
            transactional: kind.transactional,
            retired: false,
            predecessor: None,
        });
        let factory: TaskFactory = kind.factory;
        self.dag.factories.push(factory);
        Ok(id)
    }

    /// Ends `id`'s life at `transit`.
    fn retire(&mut self, id: ProcessorId, transit: Timestamp) {
        let p = &mut self.dag.processors[id.0 as usize];
        p.retired = true;
        p.life.death = transit;
    }

    /// A partitioner by name: a built-in one or one on an edge of the application as built.
    fn partitioner(&self, name: &str) -> Result<PartitionerSpec, AppError> {
        self.partitioners.get(name).cloned().ok_or_else(|| AppError::UnknownPartitioner {
            name: name.to_string(),
            known: self.partitioners.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    /// An end of an attached edge: a new processor's name, or a live processor's id.
    fn edge_end(&self, named: &BTreeMap<&str, ProcessorId>, end: &str) -> Result<ProcessorId, AppError> {
        if let Some(id) = named.get(end) {
            return Ok(*id);
        }
        let unknown = || AppError::UnknownEdgeEnd { name: end.to_string() };
        let id = ProcessorId(end.parse().map_err(|_| unknown())?);
        self.live_processor(id).map_err(|_| unknown())?;
        Ok(id)
    }

    /// What every DAG must be, checked over the live processors: edges their partitioners
    /// can serve, at most one edge per pair, no cycle, not too many tasks.
    fn check(&self) -> Result<(), AppError> {
        let dag = &self.dag;
        let total: u64 = dag.live().map(|p| u64::from(p.parallelism)).sum();
        if total > u64::from(MAX_TASKS) {
            return Err(AppError::TooManyTasks { total });
        }
        let mut graph = Graph::new();
        let nodes: Vec<usize> = dag.processors.iter().map(|p| graph.add_node(p.id)).collect();
        let mut seen = BTreeSet::new();
        for e in &dag.edges {
            let (a, b) = (dag.processor(e.from), dag.processor(e.to));
            if !seen.insert((e.from, e.to)) {
                return Err(AppError::DuplicateEdge { from: a.task_type.clone(), to: b.task_type.clone() });
            }
            check_edge(a, &e.partitioner, b)?;
            graph.add_edge(nodes[e.from.0 as usize], (), nodes[e.to.0 as usize]);
        }
        graph.topological_order().map_err(|e| AppError::Cycle {
            processors: e.nodes.iter().map(|&i| dag.processors[i].task_type.clone()).collect(),
        })?;
        Ok(())
    }
}

/// Where the state of a processor taking over from `old` at `transit` is: `old`'s checkpoints
/// there, or, if `old` was born at that time too (no checkpoint of its own yet), wherever it
/// took its state from. None when `old` kept no state.
fn successor_state(old: &ProcessorDescription, transit: Timestamp) -> Option<Predecessor> {
    match old.predecessor {
        _ if !old.stateful => None,
        inherited if old.life.birth == transit => inherited.filter(|p| p.transit == transit),
        _ => Some(Predecessor { processor: old.id, parallelism: old.parallelism, transit }),
    }
}

/// A named processor's task config.
fn conf_of(p: &DagProcessor) -> UserConfig {
    p.task_conf.iter().fold(UserConfig::empty(), |c, (k, v)| c.with(k.as_str(), v.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, Processor, Task, TaskContext, TaskResult};

    struct Nop;
    impl Task for Nop {
        fn on_next(&mut self, _: &mut TaskContext<'_>, _: Message) -> TaskResult {
            Ok(())
        }
    }

    fn p(name: &str, parallelism: u32) -> Processor {
        Processor::from_fn(name, parallelism, |_| Ok(Nop))
    }

    /// Split (1) → Sum (2) → Sink (1), with "Other" registered.
    fn wordcount() -> StreamApplication {
        let (split, sum, sink) = (p("Split", 1), p("Sum", 2), p("Sink", 1));
        StreamApplication::builder("wc")
            .path([&split, &sum, &sink])
            .register("Other", std::sync::Arc::new(|_: &crate::TaskInfo| Ok(Box::new(Nop) as Box<dyn Task>)))
            .build()
            .unwrap()
    }

    fn named(task_class: &str, parallelism: u32) -> DagProcessor {
        DagProcessor {
            task_class: task_class.into(),
            parallelism,
            description: String::new(),
            task_conf: BTreeMap::new(),
        }
    }

    fn edges(app: &StreamApplication) -> Vec<(u32, &str, u32)> {
        app.dag().edges().iter().map(|e| (e.from.0, e.partitioner.name(), e.to.0)).collect()
    }

    #[test]
    fn a_replacement_takes_the_old_processors_edges_under_the_next_id_from_the_transit_time() {
        let app = wordcount();
        let change =
            DagChange::Replace { processor_id: ProcessorId(2), new_processor: named("Other", 3), inherit_conf: false };
        let next = app.apply(&change, Timestamp(500)).unwrap();
        assert_eq!(next.version(), 1);
        assert_eq!(app.version(), 0, "the application applied to is left as it was");
        let (old, new) = (next.dag().processor(ProcessorId(2)), next.dag().processor(ProcessorId(3)));
        assert!(old.retired);
        assert_eq!(old.life, LifeTime { birth: Timestamp::MIN, death: Timestamp(500) });
        assert_eq!((new.task_type.as_str(), new.parallelism), ("Other", 3));
        assert_eq!(new.life, LifeTime { birth: Timestamp(500), death: Timestamp::MAX });
        assert_eq!(edges(&next), vec![(0, "hash", 1), (1, "hash", 3)]);
        assert_eq!(next.dag().task_count(), 1 + 2 + 3);
        assert_eq!(next.dag().tasks_of(ProcessorId(2)), 0);
        // Replaying the recorded changes gives the same DAG.
        let again = app.with_changes(next.changes()).unwrap();
        assert_eq!(again.dag().processors(), next.dag().processors());
    }

    #[test]
    fn a_rescale_is_a_replacement_by_the_same_task_with_other_parallelism() {
        let app = wordcount()
            .apply(&DagChange::Rescale { processor_id: ProcessorId(1), parallelism: 4 }, Timestamp(7))
            .unwrap();
        let new = app.dag().processor(ProcessorId(3));
        assert_eq!((new.task_type.as_str(), new.parallelism), ("Sum", 4));
        assert_eq!(edges(&app), vec![(0, "hash", 3), (3, "hash", 2)]);
        // And back.
        let back =
            app.apply(&DagChange::Rescale { processor_id: ProcessorId(3), parallelism: 2 }, Timestamp(9)).unwrap();
        assert_eq!(back.dag().task_count(), 4);
        assert_eq!(back.version(), 2);
    }

    #[test]
    fn a_persistent_processor_taken_over_takes_its_state_from_the_last_one_with_a_checkpoint() {
        let source = p("Source", 1);
        let count = Processor::persistent("Count", 2, |_| Ok(Counter));
        let app = StreamApplication::builder("c").path([&source, &count]).build().unwrap();
        let rescale = |app: &StreamApplication, id: u32, n: u32, t: i64| {
            app.apply(&DagChange::Rescale { processor_id: ProcessorId(id), parallelism: n }, Timestamp(t)).unwrap()
        };
        let app = rescale(&app, 1, 4, 100);
        let two = app.dag().processor(ProcessorId(2));
        assert!(two.stateful);
        assert_eq!(
            two.predecessor,
            Some(Predecessor { processor: ProcessorId(1), parallelism: 2, transit: Timestamp(100) })
        );
        // Changed again before its first checkpoint (the same transit time): the state is
        // still processor 1's; later, processor 2's own.
        let again = rescale(&app, 2, 3, 100);
        assert_eq!(again.dag().processor(ProcessorId(3)).predecessor, two.predecessor);
        let later = rescale(&app, 2, 3, 2000);
        let from_two = Predecessor { processor: ProcessorId(2), parallelism: 4, transit: Timestamp(2000) };
        assert_eq!(later.dag().processor(ProcessorId(3)).predecessor, Some(from_two));
        // A stateless processor takes nothing.
        let replaced = app.apply(
            &DagChange::Replace {
                processor_id: ProcessorId(0),
                new_processor: named("Source", 1),
                inherit_conf: false,
            },
            Timestamp(5),
        );
        assert_eq!(replaced.unwrap().dag().processor(ProcessorId(3)).predecessor, None);
    }

    struct Counter;
    impl crate::PersistentTask for Counter {
        type State = u64;
        fn process(
            &mut self,
            _: &mut TaskContext<'_>,
            msg: Message,
            state: &mut crate::PersistentState<u64>,
        ) -> TaskResult {
            state.update(msg.timestamp(), 1);
            Ok(())
        }
    }

    #[test]
    fn attach_and_remove_sub_graphs() {
        let app = wordcount();
        let attach = DagChange::Attach {
            processors: [("audit".to_string(), named("Other", 2)), ("log".to_string(), named("Sink", 1))].into(),
            edges: vec![("1".into(), "shuffle".into(), "audit".into()), ("audit".into(), "hash".into(), "log".into())],
        };
        let app = app.apply(&attach, Timestamp(3)).unwrap();
        // New processors are numbered in name order: audit 3, log 4.
        assert_eq!(edges(&app), vec![(0, "hash", 1), (1, "hash", 2), (1, "shuffle", 3), (3, "hash", 4)]);
        let app = app
            .apply(&DagChange::Remove { processor_ids: vec![ProcessorId(3), ProcessorId(4)] }, Timestamp(4))
            .unwrap();
        assert_eq!(edges(&app), vec![(0, "hash", 1), (1, "hash", 2)]);
        assert_eq!(app.dag().task_count(), 4);
    }

    #[test]
    fn a_bad_change_names_what_is_wrong_and_changes_nothing() {
        let app = wordcount();
        let t = Timestamp(1);
        let bad = |c: DagChange| app.apply(&c, t).unwrap_err();
        assert_eq!(
            bad(DagChange::Replace {
                processor_id: ProcessorId(2),
                new_processor: named("Nope", 1),
                inherit_conf: false
            }),
            AppError::UnknownTaskType { task_type: "Nope".into() }
        );
        assert_eq!(
            bad(DagChange::Rescale { processor_id: ProcessorId(9), parallelism: 2 }),
            AppError::UnknownProcessor { id: ProcessorId(9) }
        );
        assert_eq!(
            bad(DagChange::Rescale { processor_id: ProcessorId(1), parallelism: 0 }),
            AppError::ZeroParallelism { task_type: "Sum".into() }
        );
        // Removing Sum leaves Sink without input.
        assert_eq!(
            bad(DagChange::Remove { processor_ids: vec![ProcessorId(1)] }),
            AppError::LeftWithoutInput { id: ProcessorId(2), task_type: "Sink".into() }
        );
        let cycle =
            DagChange::Attach { processors: BTreeMap::new(), edges: vec![("2".into(), "hash".into(), "0".into())] };
        assert!(matches!(bad(cycle), AppError::Cycle { .. }));
        let unknown =
            DagChange::Attach { processors: BTreeMap::new(), edges: vec![("2".into(), "magic".into(), "x".into())] };
        assert!(
            bad(unknown)
                .to_string()
                .contains("unknown partitioner \"magic\"; known ones are broadcast, co_location, hash")
        );
        // A retired processor is no longer there to change.
        let app = app.apply(&DagChange::Rescale { processor_id: ProcessorId(1), parallelism: 3 }, t).unwrap();
        assert_eq!(
            app.apply(&DagChange::Rescale { processor_id: ProcessorId(1), parallelism: 2 }, t).unwrap_err(),
            AppError::UnknownProcessor { id: ProcessorId(1) }
        );
    }
}
