//! Opening and serving control connections, the same way on every port: TCP with Nagle off,
//! then TLS when the cluster's secret carries TLS settings, then the challenge–response of
//! [`client_handshake`] and [`server_handshake`]; messages written from a channel by a task
//! of their own; connections admitted through a [`ConnectionGate`].

use crate::{
    ClusterSecret, ConnectionGate, ControlStream, PortLimits, ProtocolError, accept_stream, client_handshake,
    connect_stream, server_handshake, write_msg,
};
use serde::Serialize;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The reading half of an opened control connection.
pub type ControlReader = ReadHalf<ControlStream>;
/// The writing half of an opened control connection.
pub type ControlWriter = WriteHalf<ControlStream>;

/// Opens the client side of a control connection over `tcp`, connected to `host`: proves
/// this node holds `secret` and checks that the server does too.
pub async fn open_control(
    tcp: TcpStream,
    host: &str,
    secret: &ClusterSecret,
) -> Result<(ControlReader, ControlWriter), ProtocolError> {
    tcp.set_nodelay(true)?;
    let stream = connect_stream(tcp, host, secret).await?;
    let (mut r, mut w) = tokio::io::split(stream);
    client_handshake(&mut r, &mut w, secret).await?;
    Ok((r, w))
}

/// Opens the server side of an accepted control connection: the client must prove it holds
/// `secret` within `timeout`.
pub async fn accept_control(
    tcp: TcpStream,
    secret: &ClusterSecret,
    timeout: Duration,
) -> Result<(ControlReader, ControlWriter), ProtocolError> {
    tcp.set_nodelay(true)?;
    let stream = accept_stream(tcp, secret, timeout).await?;
    let (mut r, mut w) = tokio::io::split(stream);
    server_handshake(&mut r, &mut w, secret, timeout).await?;
    Ok((r, w))
}

/// Writes the messages sent on the returned channel to `w`, in order, on a task of their own
/// that ends when the channel closes or a write fails.
pub fn spawn_writer<T, W>(mut w: W) -> (mpsc::UnboundedSender<T>, JoinHandle<()>)
where
    T: Serialize + Send + Sync + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<T>();
    let task = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if write_msg(&mut w, &msg).await.is_err() {
                break;
            }
        }
    });
    (tx, task)
}

/// Accepts connections on `listener` for as long as it is polled: each one `port` admits
/// under `limits` (see [`ConnectionGate`]) is served by `serve` on a task of its own, and
/// keeps its place at the gate until that task ends.
pub async fn serve_port<F, Fut>(listener: TcpListener, limits: PortLimits, port: &'static str, mut serve: F)
where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let gate = ConnectionGate::new(limits);
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let Some(admitted) = gate.admit(port, peer) else { continue };
                let served = serve(tcp, peer);
                tokio::spawn(async move {
                    let _admitted = admitted;
                    served.await;
                });
            }
            Err(e) => {
                tracing::warn!(port, error = %e, "Accepting a connection failed.");
                // Out of file descriptors, say: do not spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
