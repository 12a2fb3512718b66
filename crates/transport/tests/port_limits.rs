//! The data port under abuse: announced frame lengths, connections that come and go, silent
//! peers and too many peers. One test (the allocator counts the whole process).

use cap::Cap;
use gearpump_core::auth::{ClusterSecret, Role, nonce};
use gearpump_core::{Codecs, TaskId};
use gearpump_transport::tcp::{Connection, DataServer, FrameSink, PortLimits, RetryPolicy};
use gearpump_transport::{AckMessage, wire};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

struct Nothing;
impl FrameSink for Nothing {
    fn batch(&self, _: TaskId, _: wire::EncodedBatch, _: &Arc<Connection>) {}
    fn ack(&self, _: TaskId, _: AckMessage) {}
}

fn secret() -> ClusterSecret {
    ClusterSecret::new("the data port test's secret").unwrap()
}

/// Does the client's half of the handshake on `c` as a peer holding `secret` would.
fn greet(c: &mut TcpStream, secret: &ClusterSecret) {
    let own = nonce();
    let mut out = Vec::new();
    wire::encode_hello(&mut out, &own);
    c.write_all(&out).unwrap();
    let mut frame = [0u8; 4 + 1 + 4 + 2 + 32];
    c.read_exact(&mut frame).unwrap();
    let theirs: [u8; 32] = frame[11..].try_into().unwrap();
    out.clear();
    wire::encode_proof(&mut out, &secret.proof(Role::Client, &theirs, &own));
    c.write_all(&out).unwrap();
    let mut proof = [0u8; 4 + 1 + 32];
    c.read_exact(&mut proof).unwrap();
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// Waits (up to a minute) for `cond`; the machine may be slow, the outcome may not.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < until, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the server closed `c` (a read sees the end, or a reset).
fn closed_by_server(c: &mut TcpStream) -> bool {
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return true,
            // The server's half of the handshake.
            Ok(_) => continue,
        }
    }
}

#[test]
fn the_data_port_holds_what_peers_send_not_what_they_announce_and_lets_go_of_what_they_close() {
    let limits = PortLimits { max_connections: 64, hello_timeout: Duration::from_millis(500) };
    let server = DataServer::bind_with(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Nothing),
        Arc::new(Codecs::default()),
        limits,
        secret(),
    )
    .unwrap();
    let addr = server.local_addr();

    // 1. Twenty peers greet, announce the largest frame (64 MiB) and send 1 MiB of it.
    let before = GLOBAL.allocated();
    let mut announcers = Vec::new();
    for _ in 0..20 {
        let mut c = TcpStream::connect(addr).unwrap();
        greet(&mut c, &secret());
        c.write_all(&(wire::MAX_FRAME as u32).to_le_bytes()).unwrap();
        c.write_all(&vec![0u8; 1 << 20]).unwrap();
        announcers.push(c);
    }
    std::thread::sleep(Duration::from_millis(500));
    let held = GLOBAL.allocated().saturating_sub(before);
    // Announced 1.28 GB; received 20 MiB (buffers may be up to twice what arrived).
    assert!(held < 100 << 20, "{held} bytes held for 20 MiB received");
    drop(announcers);
    eventually("the announcers' connections closed", || server.open_connections() == 0);

    // 2. 300 peers connect, greet and leave: nothing of them stays.
    let fds = open_fds();
    for _ in 0..300 {
        let mut c = TcpStream::connect(addr).unwrap();
        greet(&mut c, &secret());
    }
    eventually("every closed connection let go of its socket", || {
        server.open_connections() == 0 && open_fds() <= fds + 2
    });

    // 3. A peer that says nothing is dropped after the hello timeout.
    let mut silent = TcpStream::connect(addr).unwrap();
    assert!(closed_by_server(&mut silent));
    eventually("the silent connection is gone", || server.open_connections() == 0);

    // 4. Over the limit: the 65th connection is refused, the 64 others stay.
    let mut kept = Vec::new();
    for _ in 0..64 {
        let mut c = TcpStream::connect(addr).unwrap();
        greet(&mut c, &secret());
        kept.push(c);
    }
    eventually("64 connections open", || server.open_connections() == 64);
    let mut extra = TcpStream::connect(addr).unwrap();
    assert!(closed_by_server(&mut extra));
    assert_eq!(server.open_connections(), 64);
    drop(kept);
    eventually("all closed", || server.open_connections() == 0);

    // 5. Peers without the secret, or with another, are refused; with it, they are served.
    for other in [ClusterSecret::none(), ClusterSecret::new("another secret, long enough").unwrap()] {
        let mut c = TcpStream::connect(addr).unwrap();
        greet(&mut c, &other);
        assert!(closed_by_server(&mut c), "a peer with {other:?} is refused");
        let refused =
            Connection::connect(addr, Arc::new(Nothing), Arc::new(Codecs::default()), RetryPolicy::default(), &other)
                .unwrap_err();
        assert!(refused.to_string().contains("cluster secret"), "{refused}");
    }
    let served =
        Connection::connect(addr, Arc::new(Nothing), Arc::new(Codecs::default()), RetryPolicy::default(), &secret());
    assert!(served.is_ok(), "{served:?}");
    eventually("the peer with the secret is served", || server.open_connections() == 1);
}
