//! Properties of the built-in partitioners over generated values and parallelisms.

use gearpump_api::{Message, PartitionerInstance, PartitionerSpec, TaskIndex};
use gearpump_core::Timestamp;
use proptest::prelude::*;

fn unicast(spec: &PartitionerSpec) -> Box<dyn gearpump_api::Partitioner> {
    match spec.instantiate() {
        PartitionerInstance::Unicast(p) => p,
        _ => panic!("{spec:?} is not unicast"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Hash: in range, and equal values always go to the same task (also from another
    /// upstream task's instance).
    #[test]
    fn hash_is_in_range_and_stable(values in prop::collection::vec(".{0,12}", 1..50), n in 1u32..64) {
        let spec = PartitionerSpec::hash();
        let (mut a, mut b) = (unicast(&spec), unicast(&spec));
        for v in &values {
            let m = Message::new(v.clone(), Timestamp(0));
            let pa = a.get_partition(&m, n, 0);
            prop_assert!(pa.is_some_and(|p| p < n));
            prop_assert_eq!(pa, b.get_partition(&m, n, 3));
        }
    }

    /// Shuffle: in range, and every run of `n` messages reaches every task once; shuffle
    /// grouping: every round of `n` is a permutation.
    #[test]
    fn shuffles_spread_evenly(n in 1u32..40, rounds in 1usize..5) {
        for spec in [PartitionerSpec::shuffle(), PartitionerSpec::shuffle_grouping()] {
            let mut p = unicast(&spec);
            let m = Message::new(0u64, Timestamp(0));
            for _ in 0..rounds {
                let mut seen = vec![0u32; n as usize];
                for _ in 0..n {
                    let t = p.get_partition(&m, n, 0).unwrap();
                    prop_assert!(t < n);
                    seen[t as usize] += 1;
                }
                prop_assert!(seen.iter().all(|&c| c == 1), "{}: {:?}", spec.name(), seen);
            }
        }
    }

    /// Co-location: task i sends to task i.
    #[test]
    fn co_location_keeps_the_index(n in 1u32..64, i in 0u32..64) {
        let i: TaskIndex = i % n;
        let mut p = unicast(&PartitionerSpec::co_location());
        prop_assert_eq!(p.get_partition(&Message::new(1u8, Timestamp(0)), n, i), Some(i));
    }
}
