//! A data-plane frame body from a peer executor: it decodes or is an error, and so are a
//! batch's messages; never a panic, never more messages than the batch declares.
#![no_main]

use gearpump_core::Codecs;
use gearpump_transport::wire::{self, Frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 4 {
        let _ = wire::frame_len(data[..4].try_into().unwrap());
    }
    if let Ok(Frame::Batch { batch, .. }) = wire::decode_frame(data.to_vec()) {
        if let Ok(messages) = batch.decode(&Codecs::default()) {
            assert_eq!(messages.len(), batch.count as usize);
        }
    }
});
