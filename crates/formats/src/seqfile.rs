//! Hadoop SequenceFiles (version 6, what Hadoop 2 and 3 write), read and written byte for byte
//! as Hadoop's `SequenceFile.Reader` and `Writer` do: uncompressed, record-compressed and
//! block-compressed, with Hadoop's `DefaultCodec` (zlib) or `GzipCodec`. Another codec is an
//! error that names it.
//!
//! Keys and values are Hadoop `Writable`s; [`Writable`] maps Rust types to them: `String` ↔
//! `Text`, `i64` ↔ `LongWritable`, `i32` ↔ `IntWritable`, `f64` ↔ `DoubleWritable`, `f32` ↔
//! `FloatWritable`, `bool` ↔ `BooleanWritable`, `Vec<u8>` ↔ `BytesWritable` and `()` ↔
//! `NullWritable`.

use flate2::Compression as Level;
use std::io::{Read, Write};

const MAGIC: &[u8; 3] = b"SEQ";
const VERSION: u8 = 6;
const SYNC_ESCAPE: i32 = -1;
/// Hadoop writes a sync marker when this many bytes passed since the last one.
const SYNC_INTERVAL: u64 = 5 * 1024 * 20;
/// Uncompressed bytes of records per block (Hadoop's `io.seqfile.compress.blocksize`).
const BLOCK_SIZE: usize = 1_000_000;
const DEFAULT_CODEC: &str = "org.apache.hadoop.io.compress.DefaultCodec";
const GZIP_CODEC: &str = "org.apache.hadoop.io.compress.GzipCodec";

/// A Rust type stored as a Hadoop `Writable` in SequenceFiles.
pub trait Writable: Sized + Send + 'static {
    /// The Java class Hadoop names in the file's header.
    const CLASS: &'static str;
    /// Appends the Writable's serialized form.
    fn write_to(&self, out: &mut Vec<u8>);
    /// Reads it back from exactly `bytes`.
    fn read_from(bytes: &[u8]) -> Result<Self, String>;
}

fn fixed<const N: usize>(bytes: &[u8], class: &str) -> Result<[u8; N], String> {
    bytes.try_into().map_err(|_| format!("a {class} is {N} bytes, not {}", bytes.len()))
}

impl Writable for String {
    const CLASS: &'static str = "org.apache.hadoop.io.Text";
    fn write_to(&self, out: &mut Vec<u8>) {
        write_vlong(out, self.len() as i64);
        out.extend_from_slice(self.as_bytes());
    }
    fn read_from(bytes: &[u8]) -> Result<Self, String> {
        let mut r = bytes;
        let len = read_vlong(&mut r).map_err(|e| format!("a Text's length: {e}"))?;
        if len < 0 || len as usize != r.len() {
            return Err(format!("a Text of {} bytes says it has {len}", r.len()));
        }
        String::from_utf8(r.to_vec()).map_err(|e| format!("a Text that is not UTF-8: {e}"))
    }
}

impl Writable for i64 {
    const CLASS: &'static str = "org.apache.hadoop.io.LongWritable";
    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }
    fn read_from(bytes: &[u8]) -> Result<Self, String> {
        fixed(bytes, Self::CLASS).map(i64::from_be_bytes)
    }
}

impl Writable for i32 {
    const CLASS: &'static str = "org.apache.hadoop.io.IntWritable";
    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }
    fn read_from(bytes: &[u8]) -> Result<Self, String> {
        fixed(bytes, Self::CLASS).map(i32::from_be_bytes)
    }
}

impl Writable for f64 {
    const CLASS: &'static str = "org.apache.hadoop.io.DoubleWritable";
    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bits().to_be_bytes());
    }
    fn read_from(bytes: &[u8]) -> Result<Self, String> {
        fixed(bytes, Self::CLASS).map(|b| f64::from_bits(u64::from_be_bytes(b)))
    }
}

impl Writable for f32 {
    const CLASS: &'static str = "org.apache.hadoop.io.FloatWritable";
    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bits().to_be_bytes());
    }
    fn read_from(bytes: &[u8]) -> Result<Self, String> {
        fixed(bytes, Self::CLASS).map(|b| f32::from_bits(u32::from_be_bytes(b)))
    }
}

impl Writable for bool {
    const CLASS: &'static str = "org.apache.hadoop.io.BooleanWritable";
    fn write_to(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn read_from(bytes: &[u8]) -> Result<Self, String> {
        fixed::<1>(bytes, Self::CLASS).map(|b| b[0] != 0)
    }
}

impl Writable for Vec<u8> {
    const CLASS: &'static str = "org.apache.hadoop.io.BytesWritable";
    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.len() as i32).to_be_bytes());
        out.extend_from_slice(self);
    }
    fn read_from(bytes: &[u8]) -> Result<Self, String> {
        let len = bytes.get(..4).map(|b| i32::from_be_bytes(b.try_into().unwrap()));
        match len {
            Some(n) if n >= 0 && n as usize == bytes.len() - 4 => Ok(bytes[4..].to_vec()),
            _ => Err(format!("a BytesWritable of {} bytes with a bad length", bytes.len())),
        }
    }
}

impl Writable for () {
    const CLASS: &'static str = "org.apache.hadoop.io.NullWritable";
    fn write_to(&self, _: &mut Vec<u8>) {}
    fn read_from(bytes: &[u8]) -> Result<Self, String> {
        if bytes.is_empty() { Ok(()) } else { Err(format!("a NullWritable of {} bytes", bytes.len())) }
    }
}

/// Appends Hadoop's variable-length encoding of `i` (`WritableUtils.writeVLong`).
pub fn write_vlong(out: &mut Vec<u8>, i: i64) {
    if (-112..=127).contains(&i) {
        out.push(i as u8);
        return;
    }
    let (mut len, v) = if i < 0 { (-120i32, !i) } else { (-112i32, i) };
    let mut tmp = v;
    while tmp != 0 {
        tmp >>= 8;
        len -= 1;
    }
    out.push(len as i8 as u8);
    let bytes = if len < -120 { -(len + 120) } else { -(len + 112) };
    for idx in (0..bytes).rev() {
        out.push((v >> (idx * 8)) as u8);
    }
}

/// Reads Hadoop's variable-length integer (`WritableUtils.readVLong`) from the front of `r`.
pub fn read_vlong(r: &mut &[u8]) -> Result<i64, String> {
    let (&first, rest) = r.split_first().ok_or("the data ends inside a number")?;
    *r = rest;
    let first = first as i8;
    if first >= -112 {
        return Ok(i64::from(first));
    }
    let negative = first < -120;
    let len = if negative { -119 - i32::from(first) } else { -111 - i32::from(first) } as usize;
    let n = len - 1;
    if r.len() < n {
        return Err("the data ends inside a number".into());
    }
    let mut v: i64 = 0;
    for &b in &r[..n] {
        v = (v << 8) | i64::from(b);
    }
    *r = &r[n..];
    Ok(if negative { !v } else { v })
}

/// How a SequenceFile's records are compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// Not at all.
    #[default]
    None,
    /// Each value on its own, with `DefaultCodec` (zlib).
    Record,
    /// Blocks of keys and values together, with `DefaultCodec` (zlib): the smallest files.
    Block,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Codec {
    Zlib,
    Gzip,
}

impl Codec {
    fn named(class: &str) -> Option<Codec> {
        match class {
            DEFAULT_CODEC | "org.apache.hadoop.io.compress.DeflateCodec" => Some(Codec::Zlib),
            GZIP_CODEC => Some(Codec::Gzip),
            _ => None,
        }
    }

    fn compress(self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len() / 2 + 16);
        match self {
            Codec::Zlib => {
                let mut e = flate2::write::ZlibEncoder::new(&mut out, Level::default());
                e.write_all(bytes).and_then(|()| e.finish().map(|_| ())).expect("compressing into memory");
            }
            Codec::Gzip => {
                let mut e = flate2::write::GzEncoder::new(&mut out, Level::default());
                e.write_all(bytes).and_then(|()| e.finish().map(|_| ())).expect("compressing into memory");
            }
        }
        out
    }

    fn decompress(self, bytes: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
        out.clear();
        match self {
            Codec::Zlib => flate2::read::ZlibDecoder::new(bytes).read_to_end(out).map(|_| ()),
            Codec::Gzip => flate2::read::MultiGzDecoder::new(bytes).read_to_end(out).map(|_| ()),
        }
    }
}

fn write_text(out: &mut Vec<u8>, s: &str) {
    write_vlong(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

/// Writes a SequenceFile into byte buffers (the caller stores them): [`SeqWriter::header`]
/// first, then [`SeqWriter::append`] per record, then [`SeqWriter::finish`].
#[derive(Debug)]
pub struct SeqWriter {
    key_class: &'static str,
    value_class: &'static str,
    compression: Compression,
    sync: [u8; 16],
    /// Bytes written so far.
    pos: u64,
    last_sync: u64,
    /// Block compression: the records buffered.
    block: Block,
}

#[derive(Debug, Default)]
struct Block {
    records: u64,
    key_lens: Vec<u8>,
    keys: Vec<u8>,
    value_lens: Vec<u8>,
    values: Vec<u8>,
}

impl SeqWriter {
    /// A writer of `K` keys and `V` values.
    pub fn new<K: Writable, V: Writable>(compression: Compression) -> Self {
        let mut sync = [0u8; 16];
        sync.iter_mut().for_each(|b| *b = fastrand::u8(..));
        SeqWriter {
            key_class: K::CLASS,
            value_class: V::CLASS,
            compression,
            sync,
            pos: 0,
            last_sync: 0,
            block: Block::default(),
        }
    }

    /// Appends the file's header.
    pub fn header(&mut self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        write_text(out, self.key_class);
        write_text(out, self.value_class);
        out.push(u8::from(self.compression != Compression::None));
        out.push(u8::from(self.compression == Compression::Block));
        if self.compression != Compression::None {
            write_text(out, DEFAULT_CODEC);
        }
        out.extend_from_slice(&0i32.to_be_bytes()); // no metadata
        out.extend_from_slice(&self.sync);
        self.pos += (out.len() - start) as u64;
        self.last_sync = self.pos;
    }

    fn sync_marker(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&SYNC_ESCAPE.to_be_bytes());
        out.extend_from_slice(&self.sync);
        self.pos += 20;
        self.last_sync = self.pos;
    }

    /// Appends a record of serialized key and value ([`Writable::write_to`]).
    pub fn append(&mut self, key: &[u8], value: &[u8], out: &mut Vec<u8>) {
        if self.compression == Compression::Block {
            let b = &mut self.block;
            b.records += 1;
            write_vlong(&mut b.key_lens, key.len() as i64);
            b.keys.extend_from_slice(key);
            write_vlong(&mut b.value_lens, value.len() as i64);
            b.values.extend_from_slice(value);
            if b.keys.len() + b.values.len() >= BLOCK_SIZE {
                self.write_block(out);
            }
            return;
        }
        if self.pos >= self.last_sync + SYNC_INTERVAL {
            self.sync_marker(out);
        }
        let start = out.len();
        let compressed;
        let value = if self.compression == Compression::Record {
            compressed = Codec::Zlib.compress(value);
            &compressed[..]
        } else {
            value
        };
        out.extend_from_slice(&((key.len() + value.len()) as i32).to_be_bytes());
        out.extend_from_slice(&(key.len() as i32).to_be_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(value);
        self.pos += (out.len() - start) as u64;
    }

    fn write_block(&mut self, out: &mut Vec<u8>) {
        if self.block.records == 0 {
            return;
        }
        let b = std::mem::take(&mut self.block);
        self.sync_marker(out);
        let start = out.len();
        write_vlong(out, b.records as i64);
        for buffer in [&b.key_lens, &b.keys, &b.value_lens, &b.values] {
            let c = Codec::Zlib.compress(buffer);
            write_vlong(out, c.len() as i64);
            out.extend_from_slice(&c);
        }
        self.pos += (out.len() - start) as u64;
    }

    /// Appends what is still buffered (a last block); the file is then complete.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.write_block(out);
    }

    /// Bytes of the file so far (buffered block records not counted).
    pub fn position(&self) -> u64 {
        self.pos
    }
}

/// Reading a SequenceFile failed: names what, and where (byte offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqError {
    /// The byte offset in the file.
    pub offset: u64,
    /// What is wrong there.
    pub why: String,
}

impl std::fmt::Display for SeqError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.why)
    }
}

/// A SequenceFile's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The key class.
    pub key_class: String,
    /// The value class.
    pub value_class: String,
    /// `None`, `Record` or `Block`.
    pub compression: Compression,
    /// The codec class, when compressed.
    pub codec: Option<String>,
    sync: [u8; 16],
    /// Where the records start.
    pub len: u64,
}

/// Bytes read from the front of a file, counted.
struct Cursor<'a, R> {
    r: &'a mut R,
    pos: u64,
}

impl<R: Read> Cursor<'_, R> {
    fn err(&self, why: impl Into<String>) -> SeqError {
        SeqError { offset: self.pos, why: why.into() }
    }

    fn exact(&mut self, buf: &mut [u8]) -> Result<(), SeqError> {
        self.r.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => self.err("the file ends inside a record (truncated?)"),
            _ => self.err(e.to_string()),
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// An `i32`, or `None` at a clean end of the file.
    fn int_or_end(&mut self) -> Result<Option<i32>, SeqError> {
        let mut b = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.r.read(&mut b[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(self.err("the file ends inside a record (truncated?)")),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.err(e.to_string())),
            }
        }
        self.pos += 4;
        Ok(Some(i32::from_be_bytes(b)))
    }

    fn int(&mut self) -> Result<i32, SeqError> {
        let mut b = [0u8; 4];
        self.exact(&mut b)?;
        Ok(i32::from_be_bytes(b))
    }

    fn vlong(&mut self) -> Result<i64, SeqError> {
        let mut first = [0u8; 1];
        self.exact(&mut first)?;
        let f = first[0] as i8;
        if f >= -112 {
            return Ok(i64::from(f));
        }
        let n = if f < -120 { -120 - i32::from(f) } else { -112 - i32::from(f) } as usize;
        let mut rest = [0u8; 8];
        self.exact(&mut rest[..n])?;
        let mut all = vec![first[0]];
        all.extend_from_slice(&rest[..n]);
        read_vlong(&mut &all[..]).map_err(|e| self.err(e))
    }

    fn bytes(&mut self, len: i64, what: &str) -> Result<Vec<u8>, SeqError> {
        if !(0..=1 << 30).contains(&len) {
            return Err(self.err(format!("{what} has an impossible length {len}")));
        }
        let mut v = vec![0u8; len as usize];
        self.exact(&mut v)?;
        Ok(v)
    }

    fn text(&mut self, what: &str) -> Result<String, SeqError> {
        let len = self.vlong()?;
        let bytes = self.bytes(len, what)?;
        String::from_utf8(bytes).map_err(|_| self.err(format!("{what} is not UTF-8")))
    }
}

/// Reads a SequenceFile's header from the front of `r`.
pub fn read_header(r: &mut impl Read) -> Result<Header, SeqError> {
    let mut c = Cursor { r, pos: 0 };
    let mut magic = [0u8; 4];
    c.exact(&mut magic).map_err(|_| SeqError { offset: 0, why: "not a SequenceFile (too short)".into() })?;
    if &magic[..3] != MAGIC {
        return Err(SeqError { offset: 0, why: "not a SequenceFile (no SEQ magic)".into() });
    }
    if magic[3] != VERSION {
        return Err(SeqError {
            offset: 3,
            why: format!("SequenceFile version {} (this reader reads version {VERSION})", magic[3]),
        });
    }
    let key_class = c.text("the key class")?;
    let value_class = c.text("the value class")?;
    let mut flags = [0u8; 2];
    c.exact(&mut flags)?;
    let compression = match (flags[0] != 0, flags[1] != 0) {
        (false, _) => Compression::None,
        (true, false) => Compression::Record,
        (true, true) => Compression::Block,
    };
    let codec = if compression == Compression::None { None } else { Some(c.text("the codec class")?) };
    let pairs = c.int()?;
    if !(0..=1 << 20).contains(&pairs) {
        return Err(c.err(format!("{pairs} metadata entries")));
    }
    for _ in 0..pairs {
        c.text("a metadata key")?;
        c.text("a metadata value")?;
    }
    let mut sync = [0u8; 16];
    c.exact(&mut sync)?;
    Ok(Header { key_class, value_class, compression, codec, sync, len: c.pos })
}

/// Where a reader resumes: a record boundary (`offset`), and for block-compressed files the
/// number of records of the block starting there already read (`skip`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeqPosition {
    /// The byte offset.
    pub offset: u64,
    /// Records to skip after it.
    pub skip: u64,
}

/// Reads the records of a SequenceFile from `r`, positioned at `from` (after
/// [`read_header`] read the header; [`Header::len`] is the first record).
pub struct SeqReader<R> {
    r: R,
    header: Header,
    codec: Option<Codec>,
    pos: u64,
    /// Block compression: the records of the current block not yet read.
    block: std::collections::VecDeque<(Vec<u8>, Vec<u8>)>,
    /// Where the current block started and how many of its records were read.
    block_start: u64,
    block_read: u64,
    scratch: Vec<u8>,
}

impl<R: Read> SeqReader<R> {
    /// A reader of a file with `header`, whose bytes from `from.offset` on `r` yields; skips
    /// `from.skip` records of a block starting there. A codec other than zlib or gzip is an
    /// error naming it.
    pub fn new(r: R, header: Header, from: SeqPosition) -> Result<Self, SeqError> {
        let codec = match &header.codec {
            None => None,
            Some(class) => Some(Codec::named(class).ok_or_else(|| SeqError {
                offset: 0,
                why: format!(
                    "compressed with {class}, which this reader does not support (it reads {DEFAULT_CODEC}, \
                     org.apache.hadoop.io.compress.DeflateCodec and {GZIP_CODEC})"
                ),
            })?),
        };
        let mut reader = SeqReader {
            r,
            header,
            codec,
            pos: from.offset,
            block: Default::default(),
            block_start: from.offset,
            block_read: 0,
            scratch: Vec::new(),
        };
        if from.skip > 0 {
            for _ in 0..from.skip {
                if reader.next_raw()?.is_none() {
                    break;
                }
            }
        }
        Ok(reader)
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Where the next record is.
    pub fn position(&self) -> SeqPosition {
        if self.header.compression == Compression::Block && !self.block.is_empty() {
            SeqPosition { offset: self.block_start, skip: self.block_read }
        } else {
            SeqPosition { offset: self.pos, skip: 0 }
        }
    }

    /// The next record's serialized key and value, or `None` at the end of the file.
    pub fn next_raw(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>, SeqError> {
        if self.header.compression == Compression::Block {
            return self.next_in_block();
        }
        let mut c = Cursor { r: &mut self.r, pos: self.pos };
        let mut len = match c.int_or_end()? {
            None => return Ok(None),
            Some(l) => l,
        };
        if len == SYNC_ESCAPE {
            let mut sync = [0u8; 16];
            c.exact(&mut sync)?;
            if sync != self.header.sync {
                return Err(c.err("a sync marker that is not the file's (corrupt?)"));
            }
            len = match c.int_or_end()? {
                None => {
                    self.pos = c.pos;
                    return Ok(None);
                }
                Some(l) => l,
            };
        }
        let key_len = c.int()?;
        if len < 0 || key_len < 0 || key_len > len {
            return Err(c.err(format!("a record of {len} bytes with a key of {key_len}")));
        }
        let key = c.bytes(i64::from(key_len), "a key")?;
        let value = c.bytes(i64::from(len - key_len), "a value")?;
        let value = match self.codec {
            None => value,
            Some(codec) => {
                codec
                    .decompress(&value, &mut self.scratch)
                    .map_err(|e| c.err(format!("a value that does not decompress: {e}")))?;
                std::mem::take(&mut self.scratch)
            }
        };
        self.pos = c.pos;
        Ok(Some((key, value)))
    }

    fn next_in_block(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>, SeqError> {
        if self.block.is_empty() {
            let codec = self.codec.expect("a block-compressed file has a codec");
            let start = self.pos;
            let mut c = Cursor { r: &mut self.r, pos: self.pos };
            match c.int_or_end()? {
                None => return Ok(None),
                Some(SYNC_ESCAPE) => {}
                Some(other) => return Err(c.err(format!("expected a block's sync marker, found {other}"))),
            }
            let mut sync = [0u8; 16];
            c.exact(&mut sync)?;
            if sync != self.header.sync {
                return Err(c.err("a sync marker that is not the file's (corrupt?)"));
            }
            let n = c.vlong()?;
            let mut parts: [Vec<u8>; 4] = Default::default();
            for part in &mut parts {
                let len = c.vlong()?;
                let raw = c.bytes(len, "a compressed block")?;
                codec.decompress(&raw, part).map_err(|e| c.err(format!("a block that does not decompress: {e}")))?;
            }
            let [key_lens, keys, value_lens, values] = parts;
            let (mut kl, mut vl) = (&key_lens[..], &value_lens[..]);
            let (mut k, mut v) = (&keys[..], &values[..]);
            for _ in 0..n {
                let (a, b) = (read_vlong(&mut kl).map_err(|e| c.err(e))?, read_vlong(&mut vl).map_err(|e| c.err(e))?);
                if a < 0 || b < 0 || a as usize > k.len() || b as usize > v.len() {
                    return Err(c.err("a block whose lengths do not match its data"));
                }
                let (key, rest_k) = k.split_at(a as usize);
                let (value, rest_v) = v.split_at(b as usize);
                self.block.push_back((key.to_vec(), value.to_vec()));
                (k, v) = (rest_k, rest_v);
            }
            self.pos = c.pos;
            self.block_start = start;
            self.block_read = 0;
            if self.block.is_empty() {
                return self.next_in_block();
            }
        }
        self.block_read += 1;
        Ok(self.block.pop_front())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlongs_match_hadoop() {
        // Hadoop's WritableUtils.writeVLong encodings.
        for (v, bytes) in [
            (0i64, vec![0u8]),
            (127, vec![127]),
            (-112, vec![0x90]),
            (128, vec![0x8f, 0x80]),
            (-113, vec![0x87, 0x70]),
            (300, vec![0x8e, 0x01, 0x2c]),
            (i64::MAX, vec![0x88, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        ] {
            let mut out = Vec::new();
            write_vlong(&mut out, v);
            assert_eq!(out, bytes, "{v}");
            assert_eq!(read_vlong(&mut &out[..]).unwrap(), v);
        }
        for v in [i64::MIN, -1_000_000, -121, 1 << 40] {
            let mut out = Vec::new();
            write_vlong(&mut out, v);
            assert_eq!(read_vlong(&mut &out[..]).unwrap(), v);
        }
    }

    fn file(compression: Compression, n: i64) -> Vec<u8> {
        let mut w = SeqWriter::new::<i64, String>(compression);
        let mut out = Vec::new();
        w.header(&mut out);
        for i in 0..n {
            let (mut k, mut v) = (Vec::new(), Vec::new());
            i.write_to(&mut k);
            format!("record {i}").write_to(&mut v);
            w.append(&k, &v, &mut out);
        }
        w.finish(&mut out);
        out
    }

    fn read(bytes: &[u8], from: Option<SeqPosition>) -> Vec<(i64, String)> {
        let mut r = bytes;
        let header = read_header(&mut r).unwrap();
        let from = from.unwrap_or(SeqPosition { offset: header.len, skip: 0 });
        let mut reader = SeqReader::new(&bytes[from.offset as usize..], header, from).unwrap();
        let mut out = Vec::new();
        while let Some((k, v)) = reader.next_raw().unwrap() {
            out.push((i64::read_from(&k).unwrap(), String::read_from(&v).unwrap()));
        }
        out
    }

    #[test]
    fn every_compression_round_trips_and_resumes_from_a_position() {
        for compression in [Compression::None, Compression::Record, Compression::Block] {
            let bytes = file(compression, 120_000);
            let all = read(&bytes, None);
            assert_eq!(all.len(), 120_000, "{compression:?}");
            assert_eq!(all[99_999], (99_999, "record 99999".into()));
            // Resume half way from the position the reader reports.
            let mut r = &bytes[..];
            let header = read_header(&mut r).unwrap();
            let len = header.len;
            let mut reader =
                SeqReader::new(&bytes[len as usize..], header, SeqPosition { offset: len, skip: 0 }).unwrap();
            for _ in 0..70_001 {
                reader.next_raw().unwrap().unwrap();
            }
            let at = reader.position();
            let rest = read(&bytes, Some(at));
            assert_eq!(rest.first(), Some(&(70_001, "record 70001".into())), "{compression:?} {at:?}");
            assert_eq!(rest.len(), 120_000 - 70_001);
        }
    }

    #[test]
    fn bad_files_name_the_offset_and_unknown_codecs_are_named() {
        let err = read_header(&mut &b"PAR1...."[..]).unwrap_err();
        assert!(err.why.contains("not a SequenceFile"), "{err}");
        let bytes = file(Compression::None, 100);
        let cut = &bytes[..bytes.len() - 5];
        let mut r = cut;
        let header = read_header(&mut r).unwrap();
        let len = header.len;
        let mut reader = SeqReader::new(&cut[len as usize..], header, SeqPosition { offset: len, skip: 0 }).unwrap();
        let err = loop {
            match reader.next_raw() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("a truncated file read to its end"),
                Err(e) => break e,
            }
        };
        assert!(err.why.contains("truncated") && err.offset > len, "{err}");
        let mut snappy = file(Compression::Record, 1);
        let at = snappy.windows(DEFAULT_CODEC.len()).position(|w| w == DEFAULT_CODEC.as_bytes()).unwrap();
        let other = "org.apache.hadoop.io.compress.SnappyCodec";
        snappy.splice(at - 1..at + DEFAULT_CODEC.len(), std::iter::once(other.len() as u8).chain(other.bytes()));
        let mut r = &snappy[..];
        let header = read_header(&mut r).unwrap();
        let err = SeqReader::new(r, header, SeqPosition::default()).err().unwrap();
        assert!(err.why.contains("SnappyCodec"), "{err}");
    }

    #[test]
    fn writables_round_trip() {
        fn rt<T: Writable + PartialEq + std::fmt::Debug>(v: &T) {
            let mut out = Vec::new();
            v.write_to(&mut out);
            assert_eq!(&T::read_from(&out).unwrap(), v);
        }
        rt(&"héllo".to_string());
        rt(&-5i64);
        rt(&7i32);
        rt(&1.5f64);
        rt(&2.5f32);
        rt(&true);
        rt(&vec![1u8, 2, 3]);
        rt(&());
        assert!(i64::read_from(&[1, 2]).is_err());
    }
}
