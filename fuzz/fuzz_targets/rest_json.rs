//! A `POST master/submitdag` body: it deserializes or is an error.
#![no_main]

use gearpump_protocol::DagRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<DagRequest>(data);
    let _ = serde_json::from_slice::<serde_json::Value>(data);
});
