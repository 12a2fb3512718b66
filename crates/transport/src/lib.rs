//! # gearpump-transport
//!
//! What travels between tasks, and the flow-control logic that governs it.
//!
//! - [`flow`]: pure state machines for one *subscription* (one upstream task → the tasks of one
//!   downstream processor). [`flow::OutboundFlow`] is the sender's counter for one downstream
//!   task: an [`AckRequest`] every `ack_once_every` messages, back-pressure while
//!   `max_pending` messages are un-acked, loss detection when an [`Ack`]'s count differs, and
//!   the oldest un-acked timestamp for the clock. [`flow::InboundFlow`] is the receiver's side:
//!   it registers each sender's session, drops messages of unknown sessions (zombies of an
//!   earlier incarnation) and answers AckRequests with the count received.
//! - [`wire`]: the frame format on TCP, and [`tcp`]: the data server and connections, with
//!   dynamic batching and connect retries.
//! - [`DataBatch`] and [`AckMessage`]: the units delivered between tasks, in process by moving
//!   them, across processes by the TCP transport. Only ids travel: the sender's [`TaskId`],
//!   its session, the messages, and an optional AckRequest that follows them.
//!
//! ```
//! use gearpump_transport::flow::{FlowConfig, InboundFlow, OutboundFlow};
//! use gearpump_core::{TaskId, Timestamp};
//!
//! let cfg = FlowConfig { ack_once_every: 2, max_pending: 4 };
//! let sender = TaskId::new(0, 0);
//! let mut out = OutboundFlow::new(cfg);
//! let mut inbound = InboundFlow::default();
//! let hello = out.initial_request();
//! inbound.on_ack_request(sender, 7, hello);
//! assert_eq!(out.on_send(Timestamp(1)), None);
//! let req = out.on_send(Timestamp(2)).expect("every 2nd message asks for an ack");
//! assert!(inbound.on_data(sender, 7, 2));
//! let ack = inbound.on_ack_request(sender, 7, req).unwrap();
//! out.on_ack(ack).unwrap();
//! assert_eq!(out.pending(), 0);
//! ```

pub mod flow;
pub mod tcp;
pub mod wire;

pub use flow::{Ack, AckRequest, FlowConfig, MessageLoss};

use gearpump_core::{Message, TaskId};

/// A session id: a task's incarnation. A restarted task gets a new one.
pub type SessionId = u32;

/// Messages from one upstream task to one downstream task, optionally followed by an
/// AckRequest.
#[derive(Debug)]
pub struct DataBatch {
    /// The sending task.
    pub from: TaskId,
    /// The sender's session.
    pub session: SessionId,
    /// The messages, in order.
    pub messages: Vec<Message>,
    /// An AckRequest to answer after the messages.
    pub ack_request: Option<AckRequest>,
    /// When the batch left the sender, in nanoseconds since the Unix epoch (0: unknown): the
    /// latency probe. The receiver records the time from it to when the batch is processed.
    pub sent_at: u64,
}

/// Now, in nanoseconds since the Unix epoch (for [`DataBatch::sent_at`]).
pub fn now_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// An Ack from a downstream task back to the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckMessage {
    /// The acknowledging (downstream) task.
    pub from: TaskId,
    /// The sender session being acknowledged.
    pub session: SessionId,
    /// The acknowledgement.
    pub ack: Ack,
}
