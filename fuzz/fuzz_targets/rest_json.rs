//! A `POST master/submitdag` or `POST appmaster/<id>/dynamicdag` body: it deserializes or is
//! an error; a DAG change that deserializes is applied to a small application, and either
//! makes a valid next version or is an error.
#![no_main]

use gearpump_api::{Message, Processor, StreamApplication, Task, TaskContext, TaskResult};
use gearpump_core::{DagChange, Timestamp};
use gearpump_protocol::DagRequest;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

struct Nop;
impl Task for Nop {
    fn on_next(&mut self, _: &mut TaskContext<'_>, _: Message) -> TaskResult {
        Ok(())
    }
}

/// Source (1) → Sum (2, persistent-free) → Sink (1).
fn app() -> &'static StreamApplication {
    static APP: OnceLock<StreamApplication> = OnceLock::new();
    APP.get_or_init(|| {
        let p = |name: &str, n| Processor::from_fn(name, n, |_| Ok(Nop));
        StreamApplication::builder("fuzz").path([&p("Source", 1), &p("Sum", 2), &p("Sink", 1)]).build().unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<DagRequest>(data);
    let _ = serde_json::from_slice::<serde_json::Value>(data);
    if let Ok(change) = serde_json::from_slice::<DagChange>(data)
        && let Ok(next) = app().apply(&change, Timestamp(1))
    {
        assert_eq!(next.version(), 1);
        assert!(next.dag().task_count() > 0);
    }
});
