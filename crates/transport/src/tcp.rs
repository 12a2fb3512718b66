//! The TCP data plane: one [`DataServer`] per executor, one [`Connection`] per peer.
//!
//! Each connection has a reader thread and a writer thread. A sender appends its encoded
//! frame to the connection's buffer; if nobody is writing, it sends the buffer at once with a
//! non-blocking send (no thread hand-off on the common path, which keeps the AckRequest/Ack
//! round trip short). What the socket does not take goes to the writer thread, which writes it
//! blocking, followed by whatever piled up meanwhile. That is the guide's dynamic batching:
//! when the socket can take data, flush at once; otherwise accumulate and send together.
//! Flow control bounds the buffer (at most `max_pending` messages per target are un-acked).
//!
//! Both ends start with the cluster-secret handshake ([`gearpump_core::auth`]): each sends a
//! Hello frame with a fresh nonce, then a Proof frame, and checks the other's proof before any
//! data flows. A peer without the secret, one that sends anything else, a frame that does not
//! decode, or a frame over the size limit loses its connection, with a warning naming it; the
//! server and every other connection carry on.

use crate::AckMessage;
use crate::wire::{self, Frame};
pub use gearpump_core::auth::ClusterSecret;
use gearpump_core::auth::{self, Role};
pub use gearpump_core::config::PortLimits;
use gearpump_core::{CodecError, Codecs, Message, TaskId};
use parking_lot::{Condvar, Mutex};
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// What a frame's buffer starts at; it grows as the frame's bytes arrive.
const FIRST_READ: usize = 256 << 10;

/// Where inbound frames go.
pub trait FrameSink: Send + Sync + 'static {
    /// A batch for local task `target`, its messages still encoded; Acks for it go back
    /// through `reply`, which also knows the codecs to decode it with.
    fn batch(&self, target: TaskId, batch: wire::EncodedBatch, reply: &Arc<Connection>);
    /// An Ack for local sending task `target`.
    fn ack(&self, target: TaskId, ack: AckMessage);
}

/// Connect retries (`gearpump.netty.max-retries`, `base-sleep-ms`, `max-sleep-ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub max_retries: u32,
    /// The first wait; doubled each time.
    pub base_sleep: Duration,
    /// The longest wait.
    pub max_sleep: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_retries: 30, base_sleep: Duration::from_millis(100), max_sleep: Duration::from_millis(1000) }
    }
}

/// Traffic counters of a connection.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Bytes written.
    pub bytes_out: AtomicU64,
    /// Writes (syscall batches).
    pub writes: AtomicU64,
    /// Bytes read.
    pub bytes_in: AtomicU64,
}

struct Outbox {
    buf: Vec<u8>,
    closed: bool,
    /// Someone owns the socket's write side: a sender mid-send, or the writer thread.
    writing: bool,
    /// The writer thread owns it (a sender handed a remainder over).
    handed_off: bool,
    /// An empty buffer to swap in, so the hot path does not allocate.
    spare: Vec<u8>,
}

/// How many rounds a sender keeps sending what others appended meanwhile before it hands the
/// rest to the writer thread (so a task thread is never captured by a busy connection).
const SEND_ROUNDS: usize = 2;

/// One TCP connection between two executors.
pub struct Connection {
    peer: SocketAddr,
    stream: TcpStream,
    outbox: Mutex<Outbox>,
    ready: Condvar,
    codecs: Arc<Codecs>,
    closed: AtomicBool,
    stats: ConnectionStats,
}

impl Connection {
    /// Connects to `addr`, retrying per `retry`, proves this side holds `secret` and checks
    /// that the peer does, and starts the connection's threads.
    pub fn connect(
        addr: SocketAddr,
        sink: Arc<dyn FrameSink>,
        codecs: Arc<Codecs>,
        retry: RetryPolicy,
        secret: &ClusterSecret,
    ) -> io::Result<Arc<Connection>> {
        let mut attempt = 0;
        let mut sleep = retry.base_sleep;
        let stream = loop {
            match TcpStream::connect(addr) {
                Ok(s) => break s,
                Err(e) if attempt < retry.max_retries => {
                    tracing::debug!(%addr, attempt, error = %e, "Data connection failed; retrying.");
                    std::thread::sleep(sleep);
                    sleep = (sleep * 2).min(retry.max_sleep);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let mut stream = stream;
        handshake(&mut stream, Role::Client, secret, PortLimits::default().hello_timeout)
            .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, format!("executor at {addr}: {e}")))?;
        Self::start(stream, sink, codecs)
    }

    /// Starts the threads of a connection whose handshake is done.
    fn start(stream: TcpStream, sink: Arc<dyn FrameSink>, codecs: Arc<Codecs>) -> io::Result<Arc<Connection>> {
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr()?;
        let conn = Arc::new(Connection {
            peer,
            stream: stream.try_clone()?,
            outbox: Mutex::new(Outbox {
                buf: Vec::new(),
                closed: false,
                writing: false,
                handed_off: false,
                spare: Vec::new(),
            }),
            ready: Condvar::new(),
            codecs,
            closed: AtomicBool::new(false),
            stats: ConnectionStats::default(),
        });
        let writer_stream = stream.try_clone()?;
        let w = conn.clone();
        std::thread::Builder::new().name(format!("gearpump-tx-{peer}")).spawn(move || w.write_loop(writer_stream))?;
        let r = conn.clone();
        std::thread::Builder::new().name(format!("gearpump-rx-{peer}")).spawn(move || r.read_loop(stream, &*sink))?;
        Ok(conn)
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Traffic counters.
    pub fn stats(&self) -> &ConnectionStats {
        &self.stats
    }

    /// The codecs values are encoded and decoded with.
    pub fn codecs(&self) -> &Arc<Codecs> {
        &self.codecs
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn append(&self, f: impl FnOnce(&mut Vec<u8>) -> Result<(), CodecError>) -> Result<(), CodecError> {
        let mut out = self.outbox.lock();
        if out.closed {
            // A closed connection drops what it is given; the flow counts will show the loss.
            return Ok(());
        }
        f(&mut out.buf)?;
        if out.writing {
            // The owner of the write side sends it with its next round.
            return Ok(());
        }
        out.writing = true;
        for _ in 0..SEND_ROUNDS {
            let spare = std::mem::take(&mut out.spare);
            let mut chunk = std::mem::replace(&mut out.buf, spare);
            drop(out);
            let sent = self.send_now(&chunk);
            out = self.outbox.lock();
            match sent {
                Ok(n) if n == chunk.len() => {
                    chunk.clear();
                    out.spare = chunk;
                    if out.buf.is_empty() {
                        out.writing = false;
                        return Ok(());
                    }
                }
                Ok(n) => {
                    // The socket is full: the rest goes first, then what came meanwhile.
                    chunk.drain(..n);
                    chunk.extend_from_slice(&out.buf);
                    out.buf = chunk;
                    break;
                }
                Err(e) => {
                    drop(out);
                    if !self.is_closed() {
                        tracing::warn!(peer = %self.peer, error = %e, "Data connection send failed; closing it.");
                    }
                    self.close();
                    return Ok(());
                }
            }
        }
        out.handed_off = true;
        self.ready.notify_one();
        Ok(())
    }

    /// Sends what the socket takes now without blocking; returns how much it took.
    fn send_now(&self, mut data: &[u8]) -> io::Result<usize> {
        let sock = socket2::SockRef::from(&self.stream);
        let total = data.len();
        while !data.is_empty() {
            match sock.send_with_flags(data, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    data = &data[n..];
                    self.stats.writes.fetch_add(1, Ordering::Relaxed);
                    self.stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(total - data.len())
    }

    /// Queues a batch. An error means a value could not be encoded.
    pub fn send_batch(&self, header: wire::BatchHeader, messages: &[Message]) -> Result<(), CodecError> {
        let codecs = &self.codecs;
        self.append(|buf| wire::encode_batch(buf, header, messages, codecs))
    }

    /// Queues an Ack for remote sending task `target`.
    pub fn send_ack(&self, target: TaskId, ack: &AckMessage) {
        let _ = self.append(|buf| {
            wire::encode_ack(buf, target, ack);
            Ok(())
        });
    }

    /// Closes the connection; both threads end.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.outbox.lock().closed = true;
        self.ready.notify_all();
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Owns the write side while a remainder was handed over: writes blocking until the
    /// buffer is empty, then gives the write side back.
    fn write_loop(&self, mut stream: TcpStream) {
        let mut chunk = Vec::new();
        loop {
            {
                let mut out = self.outbox.lock();
                loop {
                    if out.closed {
                        return;
                    }
                    if out.handed_off {
                        if out.buf.is_empty() {
                            out.handed_off = false;
                            out.writing = false;
                        } else {
                            std::mem::swap(&mut out.buf, &mut chunk);
                            break;
                        }
                    }
                    self.ready.wait(&mut out);
                }
            }
            if let Err(e) = stream.write_all(&chunk) {
                if !self.is_closed() {
                    tracing::warn!(peer = %self.peer, error = %e, "Data connection write failed; closing it.");
                }
                self.close();
                return;
            }
            self.stats.bytes_out.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            self.stats.writes.fetch_add(1, Ordering::Relaxed);
            chunk.clear();
            // Do not keep a huge buffer alive after a burst.
            if chunk.capacity() > 8 << 20 {
                chunk = Vec::new();
            }
        }
    }

    fn read_loop(self: &Arc<Self>, stream: TcpStream, sink: &dyn FrameSink) {
        let mut reader = BufReader::with_capacity(256 << 10, stream);
        let result: Result<(), String> = loop {
            let mut prefix = [0u8; 4];
            match reader.read_exact(&mut prefix) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break Ok(()),
                Err(e) => break Err(e.to_string()),
            }
            let len = match wire::frame_len(prefix) {
                Ok(len) => len,
                Err(e) => break Err(e.to_string()),
            };
            // A fresh buffer per frame: a batch's body travels on to the receiving task. It
            // grows with the bytes that arrive, so an announced length costs nothing by itself.
            let body = if len <= FIRST_READ {
                // The common case, read in one go.
                let mut body = vec![0; len];
                if let Err(e) = reader.read_exact(&mut body) {
                    break Err(e.to_string());
                }
                body
            } else {
                let mut body = Vec::with_capacity(FIRST_READ);
                match (&mut reader).take(len as u64).read_to_end(&mut body) {
                    Ok(n) if n == len => body,
                    Ok(n) => break Err(format!("the connection closed {n} bytes into a {len}-byte frame")),
                    Err(e) => break Err(e.to_string()),
                }
            };
            self.stats.bytes_in.fetch_add(4 + len as u64, Ordering::Relaxed);
            let frame = match wire::decode_frame(body) {
                Ok(f) => f,
                Err(e) => break Err(e.to_string()),
            };
            match frame {
                Frame::Hello { .. } | Frame::Proof { .. } => break Err("a handshake frame after the handshake".into()),
                Frame::Batch { target, batch } => sink.batch(target, batch, self),
                Frame::Ack { target, ack } => sink.ack(target, ack),
            }
        };
        if let Err(error) = result
            && !self.is_closed()
        {
            tracing::warn!(peer = %self.peer, %error, "Closing a data connection that sent bad data.");
        }
        self.close();
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connection({})", self.peer)
    }
}

/// The largest handshake frame (a Hello or a Proof).
const HANDSHAKE_FRAME: usize = 64;

/// The cluster-secret handshake on a new connection, playing `role`: Hello (with a fresh
/// nonce) out and in, Proof out and in, the peer's proof checked. Within `limit`.
fn handshake(stream: &mut TcpStream, role: Role, secret: &ClusterSecret, limit: Duration) -> Result<(), String> {
    let io = |e: io::Error| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!("no handshake within {limit:?}"),
        io::ErrorKind::UnexpectedEof => "the peer closed the connection during the handshake".to_string(),
        _ => e.to_string(),
    };
    stream.set_read_timeout(Some(limit)).map_err(io)?;
    let own = auth::nonce();
    let mut out = Vec::with_capacity(2 * HANDSHAKE_FRAME);
    wire::encode_hello(&mut out, &own);
    stream.write_all(&out).map_err(io)?;
    let theirs = match read_handshake_frame(stream).map_err(|e| e.map_or_else(|w| w.to_string(), io))? {
        Frame::Hello { nonce, .. } => nonce,
        _ => return Err(wire::WireError::NotHello.to_string()),
    };
    out.clear();
    wire::encode_proof(&mut out, &secret.proof(role, &theirs, &own));
    stream.write_all(&out).map_err(io)?;
    let proof = match read_handshake_frame(stream).map_err(|e| e.map_or_else(|w| w.to_string(), io))? {
        Frame::Proof { proof } => proof,
        _ => return Err("no Proof after the Hello".into()),
    };
    let peer = if role == Role::Client { Role::Server } else { Role::Client };
    if !secret.verify(peer, &own, &theirs, &proof) {
        return Err(format!(
            "the peer does not hold this node's cluster secret (gearpump.cluster.secret{})",
            if secret.is_set() { "" } else { ", which is not set here" }
        ));
    }
    stream.set_read_timeout(None).map_err(io)?;
    Ok(())
}

/// Reads one small frame: an I/O error, or a frame that is not valid.
fn read_handshake_frame(stream: &mut TcpStream) -> Result<Frame, Result<io::Error, wire::WireError>> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).map_err(Ok)?;
    let len = wire::frame_len(prefix).map_err(Err)?;
    if len > HANDSHAKE_FRAME {
        return Err(Err(wire::WireError::NotHello));
    }
    let mut body = vec![0; len];
    stream.read_exact(&mut body).map_err(Ok)?;
    wire::decode_frame(body).map_err(Err)
}

/// An executor's data port: accepts connections from peer executors.
///
/// It keeps only weak references to what it accepted: a connection its peer closed ends its
/// threads and releases its socket at once. At most [`PortLimits::max_connections`] are open
/// at a time (more are refused with a warning naming the peer), a peer that does not finish
/// the handshake within [`PortLimits::hello_timeout`] is dropped, and so is one without the
/// cluster secret (a warning names it). Each handshake runs on a thread of its own, so a slow
/// peer does not hold up the others.
pub struct DataServer {
    addr: SocketAddr,
    stopped: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<Weak<Connection>>>>,
}

impl DataServer {
    /// Binds `addr` (port 0 for any) and starts accepting, with the default [`PortLimits`]
    /// and no cluster secret.
    pub fn bind(addr: SocketAddr, sink: Arc<dyn FrameSink>, codecs: Arc<Codecs>) -> io::Result<DataServer> {
        Self::bind_with(addr, sink, codecs, PortLimits::default(), ClusterSecret::none())
    }

    /// Binds `addr` (port 0 for any) and starts accepting within `limits` peers that hold
    /// `secret`.
    pub fn bind_with(
        addr: SocketAddr,
        sink: Arc<dyn FrameSink>,
        codecs: Arc<Codecs>,
        limits: PortLimits,
        secret: ClusterSecret,
    ) -> io::Result<DataServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stopped = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<Weak<Connection>>>> = Arc::default();
        let (stop, conns) = (stopped.clone(), connections.clone());
        // Connections still in their handshake count against the limit too.
        let handshaking = Arc::new(AtomicUsize::new(0));
        std::thread::Builder::new().name(format!("gearpump-data-{}", addr.port())).spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let stream = match stream {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "Accepting a data connection failed.");
                        // Out of file descriptors, say: do not spin.
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                let open = {
                    let mut conns = conns.lock();
                    conns.retain(|c| c.upgrade().is_some_and(|c| !c.is_closed()));
                    conns.len() + handshaking.load(Ordering::SeqCst)
                };
                if open >= limits.max_connections {
                    let peer = stream.peer_addr().map_or_else(|_| "unknown".to_string(), |p| p.to_string());
                    tracing::warn!(%peer, port = addr.port(), limit = limits.max_connections, "Refused a data connection: too many open on this port.");
                    continue;
                }
                let (sink, codecs, conns, secret) = (sink.clone(), codecs.clone(), conns.clone(), secret.clone());
                let pending = Handshaking::enter(&handshaking);
                let spawned = std::thread::Builder::new().name("gearpump-data-hello".into()).spawn(move || {
                    let _pending = pending;
                    let mut stream = stream;
                    let peer = stream.peer_addr().map_or_else(|_| "unknown".to_string(), |p| p.to_string());
                    if let Err(error) = handshake(&mut stream, Role::Server, &secret, limits.hello_timeout) {
                        tracing::warn!(%peer, %error, "Refused a data connection.");
                        return;
                    }
                    match Connection::start(stream, sink, codecs) {
                        Ok(c) => conns.lock().push(Arc::downgrade(&c)),
                        Err(e) => tracing::warn!(%peer, error = %e, "Accepting a data connection failed."),
                    }
                });
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "No thread for a new data connection; dropped it.");
                }
            }
        })?;
        Ok(DataServer { addr, stopped, connections })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Accepted connections still open.
    pub fn open_connections(&self) -> usize {
        self.connections.lock().iter().filter(|c| c.upgrade().is_some_and(|c| !c.is_closed())).count()
    }

    /// Stops accepting and closes every accepted connection.
    pub fn shutdown(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
        for c in self.connections.lock().drain(..).filter_map(|c| c.upgrade()) {
            c.close();
        }
    }
}

/// One connection in its handshake, counted while it lives.
struct Handshaking(Arc<AtomicUsize>);

impl Handshaking {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Handshaking(count.clone())
    }
}

impl Drop for Handshaking {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for DataServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection to `server` without a cluster secret.
    fn connect_to(server: &DataServer, sink: Arc<dyn FrameSink>, codecs: Arc<Codecs>) -> Arc<Connection> {
        Connection::connect(server.local_addr(), sink, codecs, RetryPolicy::default(), &ClusterSecret::none()).unwrap()
    }
    use crate::DataBatch;
    use crate::flow::Ack;
    use gearpump_core::Timestamp;
    use std::sync::mpsc;

    struct Collect(Mutex<mpsc::Sender<(TaskId, Option<DataBatch>, Option<AckMessage>)>>);
    impl FrameSink for Collect {
        fn batch(&self, target: TaskId, batch: wire::EncodedBatch, reply: &Arc<Connection>) {
            let batch = batch.into_batch(reply.codecs()).unwrap();
            // Answer every AckRequest as a receiver would.
            if let Some(req) = batch.ack_request {
                let ack =
                    AckMessage { from: target, session: batch.session, ack: Ack { seq: req.seq, received: req.sent } };
                reply.send_ack(batch.from, &ack);
            }
            let _ = self.0.lock().send((target, Some(batch), None));
        }
        fn ack(&self, target: TaskId, ack: AckMessage) {
            let _ = self.0.lock().send((target, None, Some(ack)));
        }
    }

    /// A header for task 0/0 → 1/0, session 1, no AckRequest.
    fn plain_header() -> wire::BatchHeader {
        wire::BatchHeader {
            target: TaskId::new(1, 0),
            from: TaskId::new(0, 0),
            session: 1,
            sent_at: 0,
            ack_request: None,
        }
    }

    fn sink() -> (Arc<dyn FrameSink>, mpsc::Receiver<(TaskId, Option<DataBatch>, Option<AckMessage>)>) {
        let (tx, rx) = mpsc::channel();
        (Arc::new(Collect(Mutex::new(tx))), rx)
    }

    #[test]
    fn batches_go_out_and_acks_come_back() {
        let codecs = Arc::new(Codecs::default());
        let (server_sink, server_rx) = sink();
        let server = DataServer::bind("127.0.0.1:0".parse().unwrap(), server_sink, codecs.clone()).unwrap();
        let (client_sink, client_rx) = sink();
        let conn = connect_to(&server, client_sink, codecs);
        let (to, from) = (TaskId::new(1, 0), TaskId::new(0, 0));
        for round in 0..100u64 {
            let msgs: Vec<_> = (0..100).map(|i| Message::new(round * 100 + i, Timestamp(i as i64))).collect();
            let req = crate::AckRequest { seq: round as u32 + 1, sent: (round + 1) * 100 };
            let h = wire::BatchHeader { target: to, from, session: 7, sent_at: 1, ack_request: Some(req) };
            conn.send_batch(h, &msgs).unwrap();
        }
        let mut next = 0u64;
        for _ in 0..100 {
            let (target, batch, _) = server_rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(target, to);
            for m in batch.unwrap().messages {
                assert_eq!(m.get::<u64>(), Some(&next));
                next += 1;
            }
        }
        for seq in 1..=100u32 {
            let (target, _, ack) = client_rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(target, from);
            assert_eq!(ack.unwrap().ack, Ack { seq, received: u64::from(seq) * 100 });
        }
        assert!(conn.stats().bytes_out.load(Ordering::Relaxed) > 100 * 100 * 9);
        conn.close();
        server.shutdown();
    }

    /// Stalls on the first batch so the sender's socket fills and the writer thread takes over.
    struct Stall(Mutex<mpsc::Sender<u64>>, AtomicBool);
    impl FrameSink for Stall {
        fn batch(&self, _: TaskId, batch: wire::EncodedBatch, reply: &Arc<Connection>) {
            let batch = batch.into_batch(reply.codecs()).unwrap();
            if !self.1.swap(true, Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(300));
            }
            for m in batch.messages {
                let _ = self.0.lock().send(*m.get::<u64>().unwrap());
            }
        }
        fn ack(&self, _: TaskId, _: AckMessage) {}
    }

    #[test]
    fn a_full_socket_hands_the_rest_to_the_writer_in_order() {
        let codecs = Arc::new(Codecs::default());
        let (tx, rx) = mpsc::channel();
        let stall: Arc<dyn FrameSink> = Arc::new(Stall(Mutex::new(tx), AtomicBool::new(false)));
        let server = DataServer::bind("127.0.0.1:0".parse().unwrap(), stall, codecs.clone()).unwrap();
        let (client_sink, _client_rx) = sink();
        let conn = connect_to(&server, client_sink, codecs);
        // About 40 MB: far beyond what the socket buffers hold while the reader stalls.
        let payload: Vec<u64> = (0..5_000_000).collect();
        for chunk in payload.chunks(1000) {
            let msgs: Vec<_> = chunk.iter().map(|&v| Message::new(v, Timestamp(0))).collect();
            let h = plain_header();
            conn.send_batch(h, &msgs).unwrap();
        }
        for expected in 0..5_000_000u64 {
            assert_eq!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), expected);
        }
        conn.close();
        server.shutdown();
    }

    #[test]
    fn garbage_closes_only_its_own_connection() {
        let codecs = Arc::new(Codecs::default());
        let (server_sink, server_rx) = sink();
        let server = DataServer::bind("127.0.0.1:0".parse().unwrap(), server_sink, codecs.clone()).unwrap();
        for garbage in [&b"GET / HTTP/1.1\r\n\r\n"[..], &[0xff; 64][..], &[5, 0, 0, 0, 0, b'G', b'P', b'D', b'Q'][..]] {
            let mut s = TcpStream::connect(server.local_addr()).unwrap();
            s.write_all(garbage).unwrap();
            // The server closes it: reading ends (after its Hello) without hanging.
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
        // A well-behaved peer still gets through.
        let (client_sink, _client_rx) = sink();
        let conn = connect_to(&server, client_sink, codecs);
        let h = plain_header();
        conn.send_batch(h, &[Message::new(5u64, Timestamp(0))]).unwrap();
        let (_, batch, _) = server_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(batch.unwrap().messages[0].get::<u64>(), Some(&5));
        server.shutdown();
    }

    #[test]
    fn connect_gives_up_after_the_retries() {
        let free = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let retry =
            RetryPolicy { max_retries: 2, base_sleep: Duration::from_millis(1), max_sleep: Duration::from_millis(2) };
        let (s, _rx) = sink();
        assert!(Connection::connect(free, s, Arc::new(Codecs::default()), retry, &ClusterSecret::none()).is_err());
    }
}
