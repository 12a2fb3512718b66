//! A SequenceFile from outside (a file on HDFS, S3, a disk): the header and the records decode
//! or fail with an error naming the offset, never panic, whatever the bytes; and what decodes as
//! `(LongWritable, Text)` records decodes as Rust values or fails cleanly.

#![no_main]

use gearpump_formats::seqfile::{self, SeqPosition, SeqReader, Writable};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    let Ok(header) = seqfile::read_header(&mut r) else { return };
    let start = SeqPosition { offset: header.len, skip: 0 };
    let Ok(mut reader) = SeqReader::new(r, header, start) else { return };
    for _ in 0..10_000 {
        match reader.next_raw() {
            Ok(Some((k, v))) => {
                let _ = i64::read_from(&k);
                let _ = String::read_from(&v);
                let _ = reader.position();
            }
            Ok(None) | Err(_) => break,
        }
    }
});
