//! Properties of the clock service over generated DAGs and report sequences, checked against
//! a direct model of its definition.

use gearpump_clock::ClockService;
use gearpump_core::{ProcessorId, TaskId, Timestamp};
use proptest::prelude::*;

/// A DAG: parallelisms, and edges only from lower to higher ids (acyclic).
fn dag() -> impl Strategy<Value = (Vec<u32>, Vec<(ProcessorId, ProcessorId)>)> {
    prop::collection::vec(1u32..4, 1..6).prop_flat_map(|par| {
        let n = par.len() as u32;
        let edges = prop::collection::vec((0..n, 0..n), 0..8).prop_map(|pairs| {
            let mut e: Vec<(ProcessorId, ProcessorId)> =
                pairs.into_iter().filter(|(a, b)| a < b).map(|(a, b)| (ProcessorId(a), ProcessorId(b))).collect();
            e.sort();
            e.dedup();
            e
        });
        (Just(par), edges)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn clocks_follow_their_definition_and_never_go_back(
        (par, edges) in dag(),
        start in -1000i64..1000,
        reports in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), -2000i64..5000), 0..200),
    ) {
        let mut clock = ClockService::new(&par, &edges, Timestamp(start));
        // The model: every task's latest report, every processor's clock so far.
        let mut latest: Vec<Vec<i64>> = par.iter().map(|&n| vec![start; n as usize]).collect();
        let mut proc_clock: Vec<i64> = vec![start; par.len()];
        let mut min_clock = start;
        for (p, t, at) in reports {
            let p = p.index(par.len());
            let t = t.index(par[p] as usize);
            let answer = clock.report(TaskId::new(p as u32, t as u32), Timestamp(at));
            latest[p][t] = at;
            let task_min = *latest[p].iter().min().unwrap();
            proc_clock[p] = proc_clock[p].max(task_min);
            let before = min_clock;
            min_clock = min_clock.max(*proc_clock.iter().min().unwrap());
            prop_assert!(min_clock >= before);
            prop_assert_eq!(clock.min_clock(), Timestamp(min_clock));
            for (q, c) in proc_clock.iter().enumerate() {
                prop_assert_eq!(clock.processor_clock(ProcessorId(q as u32)), Some(Timestamp(*c)));
                prop_assert!(Timestamp(*c) >= clock.min_clock());
            }
            // The answer is the min over the reporting task's upstream processors.
            let upstream = edges.iter().filter(|(_, to)| to.0 as usize == p).map(|(from, _)| proc_clock[from.0 as usize]).min();
            prop_assert_eq!(answer, upstream.map(Timestamp));
        }
        // A report for a task that does not exist changes nothing.
        let before = clock.min_clock();
        prop_assert_eq!(clock.report(TaskId::new(99, 0), Timestamp(i64::MAX)), None);
        prop_assert_eq!(clock.report(TaskId::new(0, 99), Timestamp(i64::MAX)), None);
        prop_assert_eq!(clock.min_clock(), before);
    }
}
