//! Flow control and loss detection as pure state machines. See the crate docs.

use gearpump_core::{TaskId, Timestamp};
use std::collections::{HashMap, VecDeque};

/// Flow-control settings (`gearpump.streaming.ack-once-every-message-count`,
/// `gearpump.streaming.max-pending-message-count-per-connection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowConfig {
    /// Ask for an Ack after this many messages to one task (100).
    pub ack_once_every: u32,
    /// Stop draining input while this many messages to one task are un-acked (1000).
    pub max_pending: u32,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig { ack_once_every: 100, max_pending: 1000 }
    }
}

/// The sender asks the receiver how many messages of this session it has received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckRequest {
    /// Sequence number; 0 is the initial request that registers the session.
    pub seq: u32,
    /// How many messages the sender had sent in this session when it asked.
    pub sent: u64,
}

/// The receiver's answer to an [`AckRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The sequence number of the request answered.
    pub seq: u32,
    /// How many messages of the session the receiver had received when it answered.
    pub received: u64,
}

/// An Ack reported fewer (or more) messages than were sent: messages were lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("message loss: AckRequest {seq} covered {sent} messages but the receiver got {received}")]
pub struct MessageLoss {
    /// The request's sequence number.
    pub seq: u32,
    /// Messages sent up to the request.
    pub sent: u64,
    /// Messages the receiver reported.
    pub received: u64,
}

#[derive(Debug, Clone, Copy)]
struct Outstanding {
    seq: u32,
    sent: u64,
    /// The oldest timestamp among the messages this request covers (since the previous one).
    min_ts: Timestamp,
}

/// The sender's flow state towards one downstream task.
#[derive(Debug, Clone)]
pub struct OutboundFlow {
    config: FlowConfig,
    sent: u64,
    acked: u64,
    since_request: u32,
    next_seq: u32,
    outstanding: VecDeque<Outstanding>,
    /// Oldest timestamp sent since the last request.
    open_min: Timestamp,
}

impl OutboundFlow {
    /// A fresh flow (a new session).
    pub fn new(config: FlowConfig) -> Self {
        OutboundFlow {
            config: FlowConfig { ack_once_every: config.ack_once_every.max(1), max_pending: config.max_pending.max(1) },
            sent: 0,
            acked: 0,
            since_request: 0,
            next_seq: 0,
            outstanding: VecDeque::new(),
            open_min: Timestamp::MAX,
        }
    }

    /// The request sent before any message, registering the session with the receiver.
    pub fn initial_request(&mut self) -> AckRequest {
        self.request()
    }

    fn request(&mut self) -> AckRequest {
        let req = AckRequest { seq: self.next_seq, sent: self.sent };
        self.outstanding.push_back(Outstanding { seq: req.seq, sent: self.sent, min_ts: self.open_min });
        self.next_seq = self.next_seq.wrapping_add(1);
        self.since_request = 0;
        self.open_min = Timestamp::MAX;
        req
    }

    /// Records one message sent with timestamp `ts`; returns the AckRequest to send right after
    /// it when it is the `ack_once_every`-th since the last one.
    #[inline]
    pub fn on_send(&mut self, ts: Timestamp) -> Option<AckRequest> {
        self.sent += 1;
        self.since_request += 1;
        if ts < self.open_min {
            self.open_min = ts;
        }
        if self.since_request >= self.config.ack_once_every { Some(self.request()) } else { None }
    }

    /// An AckRequest for messages sent since the last one, if any: sent when the sender has been
    /// idle, so the tail of a stream is acknowledged too.
    pub fn idle_request(&mut self) -> Option<AckRequest> {
        (self.since_request > 0).then(|| self.request())
    }

    /// Applies an Ack. Stale Acks (for requests already covered) are ignored.
    pub fn on_ack(&mut self, ack: Ack) -> Result<(), MessageLoss> {
        let Some(pos) = self.outstanding.iter().position(|o| o.seq == ack.seq) else {
            return Ok(());
        };
        let covered = self.outstanding[pos];
        self.outstanding.drain(..=pos);
        if ack.received != covered.sent {
            return Err(MessageLoss { seq: ack.seq, sent: covered.sent, received: ack.received });
        }
        self.acked = self.acked.max(covered.sent);
        Ok(())
    }

    /// Messages sent and not yet acknowledged.
    pub fn pending(&self) -> u64 {
        self.sent - self.acked
    }

    /// Messages sent in this session.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Whether the sender may keep draining its input: fewer than `max_pending` un-acked.
    #[inline]
    pub fn allows_more(&self) -> bool {
        self.pending() < u64::from(self.config.max_pending)
    }

    /// The oldest timestamp among un-acked messages, `Timestamp::MAX` if none.
    pub fn min_unacked_timestamp(&self) -> Timestamp {
        self.outstanding.iter().map(|o| o.min_ts).fold(self.open_min, Timestamp::min)
    }
}

/// The receiver's flow state: one entry per upstream task.
#[derive(Debug, Clone, Default)]
pub struct InboundFlow {
    sessions: HashMap<TaskId, (u32, u64)>,
}

impl InboundFlow {
    /// Counts `count` messages from `from`'s `session`; `false` means they must be dropped
    /// (an unknown session: a zombie of an earlier incarnation).
    #[inline]
    pub fn on_data(&mut self, from: TaskId, session: u32, count: usize) -> bool {
        match self.sessions.get_mut(&from) {
            Some((s, received)) if *s == session => {
                *received += count as u64;
                true
            }
            _ => false,
        }
    }

    /// Answers an AckRequest. The initial request (`seq` 0, nothing sent) registers a new
    /// session, replacing the sender's previous one; a request from an unknown session is
    /// ignored.
    pub fn on_ack_request(&mut self, from: TaskId, session: u32, req: AckRequest) -> Option<Ack> {
        if req.seq == 0 && req.sent == 0 {
            self.sessions.insert(from, (session, 0));
        }
        match self.sessions.get(&from) {
            Some(&(s, received)) if s == session => Some(Ack { seq: req.seq, received }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> OutboundFlow {
        OutboundFlow::new(FlowConfig::default())
    }

    #[test]
    fn ack_request_on_every_100th_message() {
        let mut f = flow();
        assert_eq!(f.initial_request(), AckRequest { seq: 0, sent: 0 });
        for i in 1..=350u64 {
            let req = f.on_send(Timestamp(i as i64));
            if i % 100 == 0 {
                assert_eq!(req, Some(AckRequest { seq: (i / 100) as u32, sent: i }), "message {i}");
            } else {
                assert_eq!(req, None, "message {i}");
            }
        }
        assert_eq!(f.idle_request(), Some(AckRequest { seq: 4, sent: 350 }));
        assert_eq!(f.idle_request(), None);
    }

    #[test]
    fn refuses_to_drain_past_1000_unacked_and_resumes_after_ack() {
        let mut f = flow();
        f.initial_request();
        let mut requests = Vec::new();
        for i in 0..1000 {
            assert!(f.allows_more(), "blocked early at {i}");
            requests.extend(f.on_send(Timestamp(i)));
        }
        assert_eq!(f.pending(), 1000);
        assert!(!f.allows_more());
        // Acking the first 100 opens the window by 100.
        f.on_ack(Ack { seq: 1, received: 100 }).unwrap();
        assert_eq!(f.pending(), 900);
        assert!(f.allows_more());
        f.on_ack(Ack { seq: 10, received: 1000 }).unwrap();
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn ack_count_mismatch_is_loss() {
        let cases: &[(u64, bool)] = &[(100, false), (99, true), (0, true), (101, true)];
        for &(received, lost) in cases {
            let mut f = flow();
            f.initial_request();
            for i in 0..100 {
                f.on_send(Timestamp(i));
            }
            let result = f.on_ack(Ack { seq: 1, received });
            assert_eq!(result.is_err(), lost, "received {received}");
            if let Err(loss) = result {
                assert_eq!((loss.sent, loss.received), (100, received));
            }
        }
    }

    #[test]
    fn stale_and_unknown_acks_are_ignored() {
        let mut f = flow();
        f.initial_request();
        for i in 0..200 {
            f.on_send(Timestamp(i));
        }
        f.on_ack(Ack { seq: 2, received: 200 }).unwrap();
        f.on_ack(Ack { seq: 1, received: 5 }).unwrap();
        f.on_ack(Ack { seq: 77, received: 5 }).unwrap();
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn min_unacked_timestamp_tracks_the_oldest_unacked_message() {
        let mut f = OutboundFlow::new(FlowConfig { ack_once_every: 2, max_pending: 10 });
        f.initial_request();
        assert_eq!(f.min_unacked_timestamp(), Timestamp::MAX);
        f.on_send(Timestamp(5));
        f.on_send(Timestamp(3)); // request seq 1 covers {5, 3}
        f.on_send(Timestamp(8));
        f.on_send(Timestamp(9)); // request seq 2 covers {8, 9}
        f.on_send(Timestamp(7)); // open
        assert_eq!(f.min_unacked_timestamp(), Timestamp(3));
        f.on_ack(Ack { seq: 1, received: 2 }).unwrap();
        assert_eq!(f.min_unacked_timestamp(), Timestamp(7));
        f.on_ack(Ack { seq: 2, received: 4 }).unwrap();
        assert_eq!(f.min_unacked_timestamp(), Timestamp(7));
        let req = f.idle_request().unwrap();
        f.on_ack(Ack { seq: req.seq, received: 5 }).unwrap();
        assert_eq!(f.min_unacked_timestamp(), Timestamp::MAX);
    }

    #[test]
    fn receiver_registers_sessions_and_drops_zombies() {
        let up = TaskId::new(0, 0);
        let mut r = InboundFlow::default();
        // Data before registration is dropped.
        assert!(!r.on_data(up, 1, 5));
        assert_eq!(r.on_ack_request(up, 1, AckRequest { seq: 3, sent: 5 }), None);
        assert_eq!(r.on_ack_request(up, 1, AckRequest { seq: 0, sent: 0 }), Some(Ack { seq: 0, received: 0 }));
        assert!(r.on_data(up, 1, 5));
        assert_eq!(r.on_ack_request(up, 1, AckRequest { seq: 1, sent: 5 }), Some(Ack { seq: 1, received: 5 }));
        // A new incarnation replaces the session; the old one becomes a zombie.
        r.on_ack_request(up, 2, AckRequest { seq: 0, sent: 0 });
        assert!(!r.on_data(up, 1, 3));
        assert!(r.on_data(up, 2, 3));
        assert_eq!(r.on_ack_request(up, 2, AckRequest { seq: 1, sent: 3 }), Some(Ack { seq: 1, received: 3 }));
    }
}
