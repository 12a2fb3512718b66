//! A control frame's buffer grows with the bytes received, not with the length a peer
//! announces. The allocator below counts live bytes (`cap`); this file holds one test so that
//! no other test allocates meanwhile.

use cap::Cap;
use gearpump_protocol::{MAX_FRAME, read_msg};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

#[global_allocator]
static GLOBAL: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

fn live() -> usize {
    GLOBAL.allocated()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_lengths_cost_nothing_until_the_bytes_arrive() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peers = 20;
    let sent = 256 << 10;
    let before = live();
    let server = tokio::spawn(async move {
        let mut readers = Vec::new();
        for _ in 0..peers {
            let (mut stream, _) = listener.accept().await.unwrap();
            readers.push(tokio::spawn(async move { read_msg::<_, Vec<u8>>(&mut stream).await.map(|_| ()) }));
        }
        readers
    });
    let mut clients = Vec::new();
    for _ in 0..peers {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        // The largest frame allowed, then a quarter MiB of it, then silence.
        c.write_all(&(MAX_FRAME as u32).to_le_bytes()).await.unwrap();
        c.write_all(&vec![7u8; sent]).await.unwrap();
        clients.push(c);
    }
    let readers = server.await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = live().saturating_sub(before);
    // Announced: 20 × 16 MiB = 320 MiB. Received: 20 × 256 KiB = 5 MiB, buffers at most twice that.
    assert!(grown < 40 << 20, "{grown} bytes held for {} bytes received", peers * sent);
    drop(clients);
    for r in readers {
        let closed = r.await.unwrap();
        assert!(closed.is_err(), "a truncated frame is an error");
    }
    let after = live().saturating_sub(before);
    assert!(after < 4 << 20, "{after} bytes still held after the peers left");
}
