//! A control-plane frame body (postcard) as each side reads it: a request to a master, its
//! reply, an executor's report and an AppMaster's command, a worker's command.
#![no_main]

use gearpump_protocol::{ExecutorCommand, ExecutorReport, MasterReply, MasterRequest, WorkerCommand};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else { return };
    match which % 5 {
        0 => drop(postcard::from_bytes::<MasterRequest>(body)),
        1 => drop(postcard::from_bytes::<MasterReply>(body)),
        2 => drop(postcard::from_bytes::<ExecutorReport>(body)),
        3 => drop(postcard::from_bytes::<ExecutorCommand>(body)),
        _ => drop(postcard::from_bytes::<WorkerCommand>(body)),
    }
});
