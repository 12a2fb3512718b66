//! Properties of the wire format and of flow control, over generated inputs.

use gearpump_core::{Codecs, Message, TaskId, Timestamp};
use gearpump_transport::flow::{InboundFlow, OutboundFlow};
use gearpump_transport::wire::{self, BatchHeader, Frame};
use gearpump_transport::{Ack, AckMessage, AckRequest, FlowConfig};
use proptest::prelude::*;
use std::collections::VecDeque;

/// A value as a message carries it: one of a few built-in types.
#[derive(Debug, Clone, PartialEq)]
enum V {
    N(u64),
    S(String),
    B(Vec<u8>),
}

fn value() -> impl Strategy<Value = V> {
    prop_oneof![
        any::<u64>().prop_map(V::N),
        ".{0,40}".prop_map(V::S),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(V::B)
    ]
}

fn message(v: &V, ts: i64) -> Message {
    match v {
        V::N(n) => Message::new(*n, Timestamp(ts)),
        V::S(s) => Message::new(s.clone(), Timestamp(ts)),
        V::B(b) => Message::new(b.clone(), Timestamp(ts)),
    }
}

fn back(m: &Message) -> V {
    if let Some(n) = m.get::<u64>() {
        V::N(*n)
    } else if let Some(s) = m.get::<String>() {
        V::S(s.clone())
    } else {
        V::B(m.get::<Vec<u8>>().expect("one of the three").clone())
    }
}

/// Splits `stream` into frame bodies by their length prefixes.
fn frames(mut stream: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !stream.is_empty() {
        let len = wire::frame_len(stream[..4].try_into().unwrap()).unwrap();
        out.push(stream[4..4 + len].to_vec());
        stream = &stream[4 + len..];
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// What a sender encodes, a receiver decodes: header, AckRequest, every value and
    /// timestamp in order, and Acks beside batches in one stream.
    #[test]
    fn batches_and_acks_round_trip(
        values in prop::collection::vec((value(), any::<i64>()), 0..40),
        (target, from) in (any::<u64>(), any::<u64>()),
        session in any::<u32>(),
        sent_at in any::<u64>(),
        request in proptest::option::of((any::<u32>(), any::<u64>())),
        ack in (any::<u32>(), any::<u64>()),
    ) {
        let codecs = Codecs::default();
        let messages: Vec<Message> = values.iter().map(|(v, ts)| message(v, *ts)).collect();
        let header = BatchHeader {
            target: TaskId::from_u64(target),
            from: TaskId::from_u64(from),
            session,
            sent_at,
            ack_request: request.map(|(seq, sent)| AckRequest { seq, sent }),
        };
        let mut stream = Vec::new();
        wire::encode_hello(&mut stream, &[1; 32]);
        wire::encode_batch(&mut stream, header, &messages, &codecs).unwrap();
        let ack_msg = AckMessage { from: TaskId::from_u64(target), session, ack: Ack { seq: ack.0, received: ack.1 } };
        wire::encode_ack(&mut stream, TaskId::from_u64(from), &ack_msg);
        let bodies = frames(&stream);
        prop_assert_eq!(bodies.len(), 3);
        let mut bodies = bodies.into_iter();
        let hello = matches!(wire::decode_frame(bodies.next().unwrap()), Ok(Frame::Hello { .. }));
        prop_assert!(hello, "the first frame is the Hello");
        match wire::decode_frame(bodies.next().unwrap()).unwrap() {
            Frame::Batch { target: t, batch } => {
                prop_assert_eq!(t, header.target);
                prop_assert_eq!(batch.from, header.from);
                prop_assert_eq!(batch.session, session);
                prop_assert_eq!(batch.sent_at, sent_at);
                prop_assert_eq!(batch.ack_request, header.ack_request);
                prop_assert_eq!(batch.count as usize, messages.len());
                let decoded = batch.decode(&codecs).unwrap();
                let got: Vec<(V, i64)> = decoded.iter().map(|m| (back(m), m.timestamp().0)).collect();
                prop_assert_eq!(got, values);
            }
            other => prop_assert!(false, "not a batch: {:?}", other),
        }
        match wire::decode_frame(bodies.next().unwrap()).unwrap() {
            Frame::Ack { target: t, ack: a } => {
                prop_assert_eq!(t, TaskId::from_u64(from));
                prop_assert_eq!(a, ack_msg);
            }
            other => prop_assert!(false, "not an ack: {:?}", other),
        }
    }

    /// Bytes from anywhere never panic the decoder: a frame either decodes or is an error,
    /// and so are a batch's messages.
    #[test]
    fn any_bytes_decode_or_fail_cleanly(body in prop::collection::vec(any::<u8>(), 0..512), kind in 0u8..4) {
        let codecs = Codecs::default();
        let mut body = body;
        if let Some(first) = body.first_mut() {
            *first = kind;
        }
        if let Ok(Frame::Batch { batch, .. }) = wire::decode_frame(body) {
            let _ = batch.decode(&codecs);
        }
    }

    /// A valid batch with any bytes flipped decodes or fails cleanly, never panics, and never
    /// yields more messages than its count.
    #[test]
    fn corrupted_batches_fail_cleanly(
        values in prop::collection::vec((value(), any::<i64>()), 1..10),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let codecs = Codecs::default();
        let messages: Vec<Message> = values.iter().map(|(v, ts)| message(v, *ts)).collect();
        let header = BatchHeader { target: TaskId::new(1, 0), from: TaskId::new(0, 0), session: 1, sent_at: 0, ack_request: None };
        let mut stream = Vec::new();
        wire::encode_batch(&mut stream, header, &messages, &codecs).unwrap();
        let mut body = stream[4..].to_vec();
        for (at, byte) in flips {
            let i = at.index(body.len());
            body[i] ^= byte;
        }
        if let Ok(Frame::Batch { batch, .. }) = wire::decode_frame(body)
            && let Ok(decoded) = batch.decode(&codecs)
        {
            prop_assert_eq!(decoded.len(), batch.count as usize);
        }
    }
}

/// One step of a sender, a lossy channel and a receiver.
#[derive(Debug, Clone)]
enum Step {
    /// The sender sends a message (if flow control allows).
    Send(i64),
    /// The channel delivers what it holds to the receiver, up to this many items.
    Deliver(u8),
    /// The channel drops its next data message (a lost message).
    Lose,
    /// The sender's idle tick: an AckRequest for the tail.
    Idle,
    /// The receiver's Acks reach the sender, up to this many.
    AckBack(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => any::<i64>().prop_map(Step::Send),
        4 => any::<u8>().prop_map(Step::Deliver),
        1 => Just(Step::Idle),
        1 => Just(Step::Lose),
        3 => any::<u8>().prop_map(Step::AckBack),
    ]
}

enum Wire {
    Data,
    Request(AckRequest),
}

/// Runs `steps` through a sender, an ordered channel that may lose data messages, and a
/// receiver; then drains everything. Returns whether a message was lost, whether the sender
/// detected a loss, and its final pending count.
fn run(steps: &[Step], config: FlowConfig) -> (bool, bool, u64) {
    let (me, session) = (TaskId::new(0, 0), 7);
    let mut out = OutboundFlow::new(config);
    let mut inbound = InboundFlow::default();
    let mut channel: VecDeque<Wire> = VecDeque::new();
    let mut acks: VecDeque<Ack> = VecDeque::new();
    let mut lose_next = false;
    let mut lost = false;
    let mut detected = false;
    channel.push_back(Wire::Request(out.initial_request()));
    let deliver = |channel: &mut VecDeque<Wire>,
                   inbound: &mut InboundFlow,
                   acks: &mut VecDeque<Ack>,
                   (lose, lost): (&mut bool, &mut bool),
                   n: usize| {
        for _ in 0..n {
            match channel.pop_front() {
                Some(Wire::Data) if *lose => {
                    *lose = false;
                    *lost = true;
                }
                Some(Wire::Data) => {
                    inbound.on_data(me, session, 1);
                }
                Some(Wire::Request(req)) => acks.extend(inbound.on_ack_request(me, session, req)),
                None => break,
            }
        }
    };
    for s in steps {
        match s {
            Step::Send(ts) => {
                if out.allows_more() {
                    channel.push_back(Wire::Data);
                    if let Some(req) = out.on_send(Timestamp(*ts)) {
                        channel.push_back(Wire::Request(req));
                    }
                }
                assert_eq!(out.allows_more(), out.pending() < u64::from(config.max_pending));
            }
            Step::Deliver(n) => {
                deliver(&mut channel, &mut inbound, &mut acks, (&mut lose_next, &mut lost), *n as usize)
            }
            Step::Lose => lose_next = true,
            Step::Idle => channel.extend(out.idle_request().map(Wire::Request)),
            Step::AckBack(n) => {
                for _ in 0..*n {
                    let Some(a) = acks.pop_front() else { break };
                    detected |= out.on_ack(a).is_err();
                }
            }
        }
        assert!(out.pending() <= out.sent());
    }
    // Drain: the tail is requested, delivered and acknowledged.
    channel.extend(out.idle_request().map(Wire::Request));
    deliver(&mut channel, &mut inbound, &mut acks, (&mut lose_next, &mut lost), usize::MAX);
    while let Some(a) = acks.pop_front() {
        detected |= out.on_ack(a).is_err();
    }
    (lost, detected, out.pending())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every lost message is detected by the Ack that covers it, and no loss is reported
    /// where none happened; the sender never has more than `max_pending` un-acked after a send
    /// it was allowed; without loss, once everything is delivered and acknowledged, nothing
    /// is pending.
    #[test]
    fn loss_is_detected_exactly_when_it_happens(
        steps in prop::collection::vec(step(), 0..400),
        every in 1u32..20,
        max in 1u32..60,
    ) {
        let (lost, detected, pending) = run(&steps, FlowConfig { ack_once_every: every, max_pending: max });
        prop_assert_eq!(detected, lost);
        if !lost {
            prop_assert_eq!(pending, 0);
        }
    }
}
