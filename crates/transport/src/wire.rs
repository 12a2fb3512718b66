//! The data plane's wire format: length-prefixed frames.
//!
//! ```text
//! frame  = len:u32le  body            (len = body length, at most MAX_FRAME)
//! body   = 0 "GPDP" version:u16le nonce:[u8;32]                      Hello (first frame)
//!        | 3 proof:[u8;32]                                           Proof (second frame)
//!        | 1 target:u64 from:u64 session:u32 sent_at:u64 req:u8 [seq:u32 sent:u64]
//!            count:u32 message*                                      Batch
//!        | 2 target:u64 from:u64 session:u32 seq:u32 received:u64     Ack
//! message = ts:i64 tag:u8 [hash:u64 namelen:u16 name] len:u32 bytes
//! ```
//!
//! Only ids travel: task ids packed into eight bytes, the sender's session, the messages. A
//! message's type is written once per run of equal types in a batch (`tag` 1), else `tag` 0
//! means "as the previous message". All integers are little-endian.

use crate::{AckMessage, AckRequest, DataBatch, flow::Ack};
use gearpump_core::auth::{Bytes32, PROOF_LEN};
use gearpump_core::{CodecError, Codecs, Message, TaskId, Timestamp, Value};
use std::any::{Any, TypeId};

/// The magic bytes of the Hello frame.
pub const MAGIC: [u8; 4] = *b"GPDP";
/// The protocol version (2: the Hello carries a nonce and a Proof follows; see
/// [`gearpump_core::auth`]).
pub const VERSION: u16 = 2;
/// The largest frame accepted.
pub const MAX_FRAME: usize = 64 << 20;

const HELLO: u8 = 0;
const BATCH: u8 = 1;
const ACK: u8 = 2;
const PROOF: u8 = 3;

/// A batch whose header is decoded and whose messages are still bytes. The receiving task
/// decodes them ([`EncodedBatch::decode`]) on its own thread, so values are allocated and
/// dropped by the same thread and the connection's reader stays light.
#[derive(Debug)]
pub struct EncodedBatch {
    /// The sending task.
    pub from: TaskId,
    /// The sender's session.
    pub session: u32,
    /// The latency probe.
    pub sent_at: u64,
    /// The AckRequest following the messages.
    pub ack_request: Option<AckRequest>,
    /// How many messages.
    pub count: u32,
    body: Vec<u8>,
    offset: usize,
}

impl EncodedBatch {
    /// Decodes the messages.
    pub fn decode(&self, codecs: &Codecs) -> Result<Vec<Message>, WireError> {
        let mut c = Cursor(&self.body[self.offset..]);
        let count = self.count as usize;
        // Each message takes at least 17 bytes: never trust a count beyond what is there.
        let mut messages = Vec::with_capacity(count.min(c.0.len() / 17));
        let mut codec = None;
        for _ in 0..count {
            let ts = Timestamp(c.u64("a timestamp")? as i64);
            if c.u8("a type tag")? != 0 {
                let hash = c.u64("a type hash")?;
                let name_len = c.u16("a type name length")? as usize;
                let name = c.take(name_len, "a type name")?;
                codec = Some(codecs.for_hash(hash).ok_or_else(|| WireError::UnknownType {
                    hash,
                    name: String::from_utf8_lossy(name).into_owned(),
                })?);
            }
            let len = c.u32("a value length")? as usize;
            let bytes = c.take(len, "a value")?;
            let value = codec.ok_or(WireError::NoType)?.decode(bytes)?;
            messages.push(Message::from_shared(value, ts));
        }
        if !c.0.is_empty() {
            return Err(WireError::Trailing(c.0.len()));
        }
        Ok(messages)
    }

    /// Decodes the messages into a [`DataBatch`].
    pub fn into_batch(self, codecs: &Codecs) -> Result<DataBatch, WireError> {
        let messages = self.decode(codecs)?;
        Ok(DataBatch {
            from: self.from,
            session: self.session,
            messages,
            ack_request: self.ack_request,
            sent_at: self.sent_at,
        })
    }
}

/// A decoded frame.
#[derive(Debug)]
pub enum Frame {
    /// The first frame on a connection.
    Hello {
        /// The peer's protocol version.
        version: u16,
        /// The peer's fresh nonce for the challenge–response.
        nonce: Bytes32,
    },
    /// The second frame: the peer's proof that it holds the cluster secret.
    Proof {
        /// `HMAC(secret, role ‖ our nonce ‖ its nonce)`.
        proof: Bytes32,
    },
    /// Messages for `target`.
    Batch {
        /// The receiving task.
        target: TaskId,
        /// The batch, its messages still encoded.
        batch: EncodedBatch,
    },
    /// An Ack for the sending task `target`.
    Ack {
        /// The task that sent the acknowledged messages.
        target: TaskId,
        /// The Ack.
        ack: AckMessage,
    },
}

/// Bytes that are not a valid frame.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The frame ends early.
    #[error("truncated frame: no room for {0}")]
    Truncated(&'static str),
    /// The frame is longer than the protocol allows.
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    /// The first frame is not a Hello.
    #[error("not a Gearpump data connection (no Hello frame)")]
    NotHello,
    /// The Hello has the wrong magic or version.
    #[error("bad Hello: magic {magic:?}, version {version}")]
    BadHello {
        /// The magic bytes given.
        magic: [u8; 4],
        /// The version given.
        version: u16,
    },
    /// An unknown frame kind.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// Bytes left after the frame's content.
    #[error("{0} bytes of garbage after the frame's content")]
    Trailing(usize),
    /// A message of a type this process has no codec for.
    #[error("message of unregistered type {name:?} (hash {hash:#x})")]
    UnknownType {
        /// The type's wire id.
        hash: u64,
        /// The type name the sender gave.
        name: String,
    },
    /// The first message of a batch refers to a previous type.
    #[error("message refers to a previous type, but it is the first")]
    NoType,
    /// A value did not decode.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn begin(out: &mut Vec<u8>, kind: u8) -> usize {
    let at = out.len();
    put_u32(out, 0);
    out.push(kind);
    at
}

fn finish(out: &mut [u8], at: usize) {
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// Appends a Hello frame carrying `nonce`.
pub fn encode_hello(out: &mut Vec<u8>, nonce: &Bytes32) {
    let at = begin(out, HELLO);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(nonce);
    finish(out, at);
}

/// Appends a Proof frame.
pub fn encode_proof(out: &mut Vec<u8>, proof: &Bytes32) {
    let at = begin(out, PROOF);
    out.extend_from_slice(proof);
    finish(out, at);
}

/// Appends an Ack frame for the sending task `target`.
pub fn encode_ack(out: &mut Vec<u8>, target: TaskId, ack: &AckMessage) {
    let at = begin(out, ACK);
    put_u64(out, target.to_u64());
    put_u64(out, ack.from.to_u64());
    put_u32(out, ack.session);
    put_u32(out, ack.ack.seq);
    put_u64(out, ack.ack.received);
    finish(out, at);
}

/// The header of a Batch frame.
#[derive(Debug, Clone, Copy)]
pub struct BatchHeader {
    /// The receiving task.
    pub target: TaskId,
    /// The sending task.
    pub from: TaskId,
    /// The sender's session.
    pub session: u32,
    /// The latency probe: when the batch left, in nanoseconds since the epoch.
    pub sent_at: u64,
    /// An AckRequest following the messages.
    pub ack_request: Option<AckRequest>,
}

/// Appends a Batch frame. On an encoding error nothing is appended.
pub fn encode_batch(
    out: &mut Vec<u8>,
    h: BatchHeader,
    messages: &[Message],
    codecs: &Codecs,
) -> Result<(), CodecError> {
    let BatchHeader { target, from, session, sent_at, ack_request } = h;
    let start = out.len();
    let at = begin(out, BATCH);
    put_u64(out, target.to_u64());
    put_u64(out, from.to_u64());
    put_u32(out, session);
    put_u64(out, sent_at);
    match ack_request {
        Some(req) => {
            out.push(1);
            put_u32(out, req.seq);
            put_u64(out, req.sent);
        }
        None => out.push(0),
    }
    put_u32(out, messages.len() as u32);
    let mut previous: Option<TypeId> = None;
    let mut codec = None;
    for m in messages {
        out.extend_from_slice(&m.timestamp().0.to_le_bytes());
        let value: &dyn Value = m.value();
        let type_id = (value as &dyn Any).type_id();
        if previous == Some(type_id) {
            out.push(0);
        } else {
            let c = match codecs.for_value(value) {
                Ok(c) => c,
                Err(e) => {
                    out.truncate(start);
                    return Err(e);
                }
            };
            out.push(1);
            put_u64(out, c.hash);
            let name = c.type_name.as_bytes();
            out.extend_from_slice(&(name.len().min(u16::MAX as usize) as u16).to_le_bytes());
            out.extend_from_slice(&name[..name.len().min(u16::MAX as usize)]);
            previous = Some(type_id);
            codec = Some(c);
        }
        let len_at = out.len();
        put_u32(out, 0);
        if let Err(e) = codec.expect("set with the first message").encode(value, out) {
            out.truncate(start);
            return Err(e);
        }
        let len = (out.len() - len_at - 4) as u32;
        out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
    }
    finish(out, at);
    Ok(())
}

/// Reads a frame's length prefix: the body length, or an error if it is too large.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, WireError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(WireError::TooLarge(len));
    }
    if len == 0 {
        return Err(WireError::Truncated("the frame kind"));
    }
    Ok(len)
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Truncated(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.take(2, what)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }
}

/// Decodes a frame body (everything after the length prefix). A batch's messages are left
/// encoded; see [`EncodedBatch::decode`].
pub fn decode_frame(body: Vec<u8>) -> Result<Frame, WireError> {
    let mut c = Cursor(&body);
    let frame = match c.u8("the frame kind")? {
        HELLO => {
            let magic: [u8; 4] = c.take(4, "the magic")?.try_into().expect("4 bytes");
            let version = c.u16("the version")?;
            if magic != MAGIC || version != VERSION {
                return Err(WireError::BadHello { magic, version });
            }
            let nonce = c.take(PROOF_LEN, "the nonce")?.try_into().expect("32 bytes");
            Frame::Hello { version, nonce }
        }
        PROOF => Frame::Proof { proof: c.take(PROOF_LEN, "the proof")?.try_into().expect("32 bytes") },
        BATCH => {
            let target = TaskId::from_u64(c.u64("the target")?);
            let from = TaskId::from_u64(c.u64("the sender")?);
            let session = c.u32("the session")?;
            let sent_at = c.u64("the send time")?;
            let ack_request = match c.u8("the AckRequest flag")? {
                0 => None,
                _ => Some(AckRequest { seq: c.u32("the AckRequest seq")?, sent: c.u64("the AckRequest count")? }),
            };
            let count = c.u32("the message count")?;
            let offset = body.len() - c.0.len();
            let batch = EncodedBatch { from, session, sent_at, ack_request, count, body: Vec::new(), offset };
            // The messages are checked when the receiving task decodes them.
            return Ok(Frame::Batch { target, batch: EncodedBatch { body, ..batch } });
        }
        ACK => {
            let target = TaskId::from_u64(c.u64("the target")?);
            let from = TaskId::from_u64(c.u64("the acknowledging task")?);
            let session = c.u32("the session")?;
            let seq = c.u32("the Ack seq")?;
            let received = c.u64("the Ack count")?;
            Frame::Ack { target, ack: AckMessage { from, session, ack: Ack { seq, received } } }
        }
        other => return Err(WireError::UnknownKind(other)),
    };
    if !c.0.is_empty() {
        return Err(WireError::Trailing(c.0.len()));
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a whole frame body, a batch's messages included (for tests and tools).
    fn decode_body(body: &[u8], codecs: &Codecs) -> Result<DecodedFrame, WireError> {
        Ok(match decode_frame(body.to_vec())? {
            Frame::Hello { version, nonce } => DecodedFrame::Hello { version, nonce },
            Frame::Proof { proof } => DecodedFrame::Proof { proof },
            Frame::Batch { target, batch } => DecodedFrame::Batch { target, batch: batch.into_batch(codecs)? },
            Frame::Ack { target, ack } => DecodedFrame::Ack { target, ack },
        })
    }

    /// A frame with a batch's messages decoded.
    #[derive(Debug)]
    enum DecodedFrame {
        /// See [`Frame::Hello`].
        Hello {
            /// The peer's version.
            version: u16,
            /// Its nonce.
            nonce: Bytes32,
        },
        /// See [`Frame::Proof`].
        Proof {
            /// The proof.
            proof: Bytes32,
        },
        /// See [`Frame::Batch`].
        Batch {
            /// The receiving task.
            target: TaskId,
            /// The batch.
            batch: DataBatch,
        },
        /// See [`Frame::Ack`].
        Ack {
            /// The sending task.
            target: TaskId,
            /// The Ack.
            ack: AckMessage,
        },
    }

    fn header() -> BatchHeader {
        BatchHeader { target: TaskId::new(1, 0), from: TaskId::new(0, 0), session: 1, sent_at: 0, ack_request: None }
    }

    fn split(buf: &[u8]) -> Vec<&[u8]> {
        let mut frames = Vec::new();
        let mut rest = buf;
        while !rest.is_empty() {
            let len = frame_len(rest[..4].try_into().unwrap()).unwrap();
            frames.push(&rest[4..4 + len]);
            rest = &rest[4 + len..];
        }
        frames
    }

    #[test]
    fn frames_round_trip() {
        let codecs = Codecs::default();
        let mut buf = Vec::new();
        encode_hello(&mut buf, &[5; 32]);
        encode_proof(&mut buf, &[6; 32]);
        let messages = vec![
            Message::new(String::from("a"), Timestamp(1)),
            Message::new(String::from("bb"), Timestamp(2)),
            Message::new(7u64, Timestamp(-3)),
        ];
        let req = Some(AckRequest { seq: 4, sent: 300 });
        let h = BatchHeader {
            target: TaskId::new(1, 2),
            from: TaskId::new(0, 5),
            session: 9,
            sent_at: 77,
            ack_request: req,
        };
        encode_batch(&mut buf, h, &messages, &codecs).unwrap();
        let ack = AckMessage { from: TaskId::new(1, 2), session: 9, ack: Ack { seq: 4, received: 300 } };
        encode_ack(&mut buf, TaskId::new(0, 5), &ack);
        let frames = split(&buf);
        assert_eq!(frames.len(), 4);
        assert!(matches!(
            decode_body(frames[0], &codecs).unwrap(),
            DecodedFrame::Hello { version: VERSION, nonce: [5, ..] }
        ));
        assert!(matches!(decode_body(frames[1], &codecs).unwrap(), DecodedFrame::Proof { proof: [6, ..] }));
        let frames = &frames[1..];
        match decode_body(frames[1], &codecs).unwrap() {
            DecodedFrame::Batch { target, batch } => {
                assert_eq!(target, TaskId::new(1, 2));
                assert_eq!(
                    (batch.from, batch.session, batch.ack_request, batch.sent_at),
                    (TaskId::new(0, 5), 9, req, 77)
                );
                let got: Vec<_> = batch.messages.iter().map(|m| (format!("{:?}", m.value()), m.timestamp())).collect();
                assert_eq!(
                    got,
                    vec![
                        ("\"a\"".to_string(), Timestamp(1)),
                        ("\"bb\"".to_string(), Timestamp(2)),
                        ("7".to_string(), Timestamp(-3))
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        match decode_body(frames[2], &codecs).unwrap() {
            DecodedFrame::Ack { target, ack: got } => assert_eq!((target, got), (TaskId::new(0, 5), ack)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_type_is_written_once_per_run() {
        let codecs = Codecs::default();
        let words: Vec<_> = (0..10).map(|i| Message::new(i.to_string(), Timestamp(i))).collect();
        let mut buf = Vec::new();
        encode_batch(&mut buf, header(), &words, &codecs).unwrap();
        let name = std::any::type_name::<String>().as_bytes();
        assert_eq!(buf.windows(name.len()).filter(|w| *w == name).count(), 1);
    }

    #[test]
    fn unregistered_types_fail_to_encode_and_leave_the_buffer_as_it_was() {
        #[derive(Debug, serde::Serialize, serde::Deserialize)]
        struct Mine(u8);
        let mut buf = vec![1, 2, 3];
        let msgs = vec![Message::new(1u64, Timestamp(0)), Message::new(Mine(1), Timestamp(0))];
        let err = encode_batch(&mut buf, header(), &msgs, &Codecs::default());
        assert!(err.unwrap_err().to_string().contains("Mine"));
        assert_eq!(buf, vec![1, 2, 3]);
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let codecs = Codecs::default();
        let mut good = Vec::new();
        let msgs: Vec<_> = (0..5).map(|i| Message::new(format!("m{i}"), Timestamp(i))).collect();
        encode_batch(&mut good, header(), &msgs, &codecs).unwrap();
        let body = &good[4..];
        // Every truncation fails cleanly.
        for cut in 0..body.len() {
            assert!(decode_body(&body[..cut], &codecs).is_err(), "cut at {cut}");
        }
        // Random bytes never panic.
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let len = (rng % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng as u8
                })
                .collect();
            let _ = decode_body(&bytes, &codecs);
        }
        // A flipped kind and trailing bytes are named.
        assert!(matches!(decode_body(&[9], &codecs), Err(WireError::UnknownKind(9))));
        let mut trailing = body.to_vec();
        trailing.push(0);
        assert!(matches!(decode_body(&trailing, &codecs), Err(WireError::Trailing(1))));
        assert!(matches!(frame_len((MAX_FRAME as u32 + 1).to_le_bytes()), Err(WireError::TooLarge(_))));
        let mut hello = Vec::new();
        encode_hello(&mut hello, &[0; 32]);
        assert!(matches!(decode_body(&hello[4..hello.len() - 1], &codecs), Err(WireError::Truncated("the nonce"))));
        hello[5] = b'X';
        assert!(matches!(decode_body(&hello[4..], &codecs), Err(WireError::BadHello { .. })));
    }
}
