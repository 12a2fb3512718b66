//! ComplexDAG delivers to all five sinks exactly the paths the DAG implies.

use gearpump::{AppStatus, ClusterConfig, EmbeddedCluster};
use gearpump_examples::complexdag::{self, PathSink, expected_paths};
use std::time::Duration;

#[test]
fn every_sink_sees_every_path_of_the_dag_once_per_message() {
    check_paths(ClusterConfig::default());
}

#[test]
fn every_path_arrives_over_tcp_too() {
    let data_plane = gearpump::DataPlane::tcp([127, 0, 0, 1].into());
    check_paths(ClusterConfig { data_plane, ..ClusterConfig::default() });
}

fn check_paths(config: ClusterConfig) {
    const MESSAGES: u64 = 2_000;
    let cluster = EmbeddedCluster::start(config);
    let client = cluster.client();
    let sink = PathSink::default();
    let app = complexdag::application(Some(MESSAGES), Some(sink.clone())).unwrap();
    assert_eq!(app.dag().processors().len(), 12);
    assert_eq!(app.dag().edges().len(), 15);
    let id = client.submit(app).unwrap();
    let summary = client.wait(id, Duration::from_secs(120)).unwrap();
    assert_eq!(summary.status, AppStatus::Succeeded, "{summary:?}");
    let seen = sink.lock().clone();
    for sink_name in ["Sink_0", "Sink_1", "Sink_2", "Sink_3", "Sink_4"] {
        let expected = expected_paths(sink_name);
        assert!(!expected.is_empty());
        let got = seen.get(sink_name).cloned().unwrap_or_default();
        let paths: Vec<_> = got.keys().cloned().collect();
        assert_eq!(paths, expected, "paths at {sink_name}");
        for (path, n) in got {
            assert_eq!(n, MESSAGES, "{sink_name} via {path:?}");
        }
    }
    cluster.shutdown();
}
