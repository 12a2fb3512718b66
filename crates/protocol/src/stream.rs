//! The byte stream under a control connection: plain TCP, or TLS over it when the cluster's
//! [`ClusterSecret`] carries TLS settings (`gearpump.tls.enabled`). The challenge–response of
//! [`client_handshake`](crate::client_handshake) and [`server_handshake`](crate::server_handshake)
//! runs inside it either way.

use crate::{ClusterSecret, ProtocolError};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;

/// A control connection's stream: TCP, or TLS over TCP.
#[derive(Debug)]
pub enum ControlStream {
    /// Plain TCP (TLS off).
    Plain(TcpStream),
    /// TLS over TCP, either side.
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl ControlStream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            ControlStream::Plain(s) => s,
            ControlStream::Tls(s) => s.get_ref().0,
        }
    }
}

/// Opens the client side over `tcp`, connected to `host`: TLS when `secret` carries TLS
/// settings (the server's certificate must be signed by a trusted CA and name `host`).
pub async fn connect_stream(
    tcp: TcpStream,
    host: &str,
    secret: &ClusterSecret,
) -> Result<ControlStream, ProtocolError> {
    let Some(tls) = secret.tls() else { return Ok(ControlStream::Plain(tcp)) };
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| ProtocolError::Tls(format!("`{host}` cannot be checked against a certificate: {e}")))?;
    let stream = tokio_rustls::TlsConnector::from(tls.client()).connect(name, tcp).await.map_err(|e| {
        // A certificate or protocol problem will not go away by trying again; a dropped
        // connection (a master restarting) may.
        if e.to_string().contains("CaUsedAsEndEntity") {
            ProtocolError::Tls(format!(
                "TLS with {host} failed: {e} (the peer's certificate is marked as a CA; make it with \
                 basicConstraints CA:FALSE, see gearpump.tls.cert-file)"
            ))
        } else if e.kind() == io::ErrorKind::InvalidData {
            ProtocolError::Tls(format!(
                "TLS with {host} failed: {e} (does the peer have gearpump.tls.enabled, and a certificate that names \
                 `{host}`, signed by gearpump.tls.ca-file?)"
            ))
        } else {
            ProtocolError::Io(io::Error::new(e.kind(), format!("TLS with {host}: {e}")))
        }
    })?;
    Ok(ControlStream::Tls(Box::new(tokio_rustls::TlsStream::Client(stream))))
}

/// Opens the server side over an accepted `tcp`: TLS when `secret` carries TLS settings (the
/// handshake must end within `timeout`).
pub async fn accept_stream(
    tcp: TcpStream,
    secret: &ClusterSecret,
    timeout: Duration,
) -> Result<ControlStream, ProtocolError> {
    let Some(tls) = secret.tls() else { return Ok(ControlStream::Plain(tcp)) };
    let config = tls.server().ok_or_else(|| {
        ProtocolError::Tls("this node has no certificate to serve with (gearpump.tls.cert-file and key-file)".into())
    })?;
    let accept = tokio_rustls::TlsAcceptor::from(config).accept(tcp);
    let stream =
        tokio::time::timeout(timeout, accept).await.map_err(|_| ProtocolError::Timeout(timeout))?.map_err(|e| {
            ProtocolError::Tls(format!("TLS handshake failed: {e} (does the peer have gearpump.tls.enabled?)"))
        })?;
    Ok(ControlStream::Tls(Box::new(tokio_rustls::TlsStream::Server(stream))))
}

impl AsyncRead for ControlStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ControlStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ControlStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ControlStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ControlStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ControlStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ControlStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ControlStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ControlStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ControlStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ControlStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ControlStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ControlStream::Plain(s) => s.is_write_vectored(),
            ControlStream::Tls(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{client_handshake, read_msg, server_handshake, write_msg};
    use gearpump_core::tls::Tls;
    use std::path::Path;

    /// A self-signed certificate for `names`, written as `<stem>.crt` and `<stem>.key` in `dir`.
    fn certificate(dir: &Path, stem: &str, names: &[&str]) -> (std::path::PathBuf, std::path::PathBuf) {
        let names: Vec<String> = names.iter().map(ToString::to_string).collect();
        let cert = rcgen::generate_simple_self_signed(names).unwrap();
        let (crt, key) = (dir.join(format!("{stem}.crt")), dir.join(format!("{stem}.key")));
        std::fs::write(&crt, cert.cert.pem()).unwrap();
        std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
        (crt, key)
    }

    /// Serves one connection on a fresh port with `server`; connects to it as `host` with
    /// `client`; both sides' results (a request and its echo when both handshakes pass).
    async fn exchange(
        server: ClusterSecret,
        client: ClusterSecret,
        host: &str,
    ) -> (Result<(), ProtocolError>, Result<(), ProtocolError>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let stream = accept_stream(tcp, &server, Duration::from_secs(5)).await?;
            let (mut r, mut w) = tokio::io::split(stream);
            server_handshake(&mut r, &mut w, &server, Duration::from_secs(5)).await?;
            let got: crate::MasterRequest = read_msg(&mut r).await?;
            write_msg(&mut w, &got).await
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let connected = async {
            let stream = connect_stream(tcp, host, &client).await?;
            let (mut r, mut w) = tokio::io::split(stream);
            client_handshake(&mut r, &mut w, &client).await?;
            write_msg(&mut w, &crate::MasterRequest::ListApps).await?;
            let echo: crate::MasterRequest = read_msg(&mut r).await?;
            assert_eq!(echo, crate::MasterRequest::ListApps);
            Ok(())
        }
        .await;
        (connected, served.await.unwrap())
    }

    #[tokio::test]
    async fn tls_connections_carry_the_handshake_and_refuse_peers_without_tls_or_trust() {
        let dir = std::env::temp_dir().join(format!("gearpump-tls-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (crt, key) = certificate(&dir, "cluster", &["127.0.0.1", "localhost"]);
        let (other_crt, _) = certificate(&dir, "other", &["127.0.0.1"]);
        let secret = ClusterSecret::new("the cluster secret, long").unwrap();
        let server = secret.clone().with_tls(Tls::new(&crt, Some((&crt, &key))).unwrap());
        let client = secret.clone().with_tls(Tls::new(&crt, None).unwrap());

        // Both sides on TLS, by IP address and by name.
        for host in ["127.0.0.1", "localhost"] {
            let (c, s) = exchange(server.clone(), client.clone(), host).await;
            assert!(c.is_ok() && s.is_ok(), "{host}: {c:?} {s:?}");
        }

        // A client without TLS: the server names the failed TLS handshake; the client reads
        // the TLS alert where it expects the hello, and says that the peer speaks TLS.
        let (c, s) = exchange(server.clone(), secret.clone(), "127.0.0.1").await;
        assert!(matches!(&s, Err(ProtocolError::Tls(e)) if e.contains("gearpump.tls.enabled")), "{s:?}");
        let c = c.unwrap_err().to_string();
        assert!(c.contains("TLS alert") && c.contains("gearpump.tls.enabled"), "{c}");

        // A client on TLS, a server without: the server sees a TLS hello, and says so.
        let (c, s) = exchange(secret.clone(), client.clone(), "127.0.0.1").await;
        assert!(c.is_err(), "{c:?}");
        let s = s.unwrap_err().to_string();
        assert!(s.contains("TLS hello") && s.contains("gearpump.tls.enabled"), "{s}");

        // A client that trusts another certificate, or reaches the server by a name its
        // certificate does not give, refuses it: a TLS error naming what to check.
        let untrusting = secret.clone().with_tls(Tls::new(&other_crt, None).unwrap());
        let (c, _) = exchange(server.clone(), untrusting, "127.0.0.1").await;
        assert!(matches!(&c, Err(ProtocolError::Tls(e)) if e.contains("gearpump.tls.ca-file")), "{c:?}");
        let (c, _) = exchange(server.clone(), client.clone(), "127.0.0.2").await;
        assert!(matches!(&c, Err(ProtocolError::Tls(e)) if e.contains("127.0.0.2")), "{c:?}");

        // TLS does not replace the secret: a TLS client with another secret is still refused.
        let stranger = ClusterSecret::new("another secret entirely").unwrap().with_tls(Tls::new(&crt, None).unwrap());
        let (c, s) = exchange(server, stranger, "127.0.0.1").await;
        assert!(matches!(c, Err(ProtocolError::NotAuthenticated { .. })), "{c:?}");
        assert!(matches!(s, Err(ProtocolError::NotAuthenticated { .. })), "{s:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
