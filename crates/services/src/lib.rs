//! # gearpump-services
//!
//! The REST API of the guide under `/api/v1.0/`, a Prometheus endpoint at `/metrics`, a
//! server-sent-events stream for live pages, and the dashboard, all on one port
//! (`gearpump.services.http`, 8090).
//!
//! - [`backend`]: where answers come from. [`RemoteBackend`] asks a cluster's master over the
//!   control protocol (`gear services`, `gear local -services`); [`EmbeddedBackend`] reads an
//!   embedded cluster in this process (an application binary run by itself).
//! - [`views`]: the JSON shapes, built from the master's [`ClusterSnapshot`]
//!   (`gearpump_protocol`), with the guide's field names.
//! - [`rest::router`]: the routes. Bad ids and malformed bodies get 400 or 404 with a JSON
//!   `{"error": …}` that names what was wrong.
//! - [`auth`]: users, roles and sessions (`gearpump.ui-security.*`); with authentication on,
//!   every route but the dashboard's files and `/login` needs a logged-in caller whose role
//!   allows the request.
//! - [`listener`]: at most `gearpump.network.max-connections` connections, each closed after
//!   `gearpump.services.idle-timeout-ms` without traffic.
//! - [`https`]: HTTPS when `gearpump.services.tls.enabled` (its settings travel in
//!   [`RestAuth`], which then also marks the login cookie `Secure`).
//! - The dashboard is three files compiled into the binary (`assets/`): plain HTML, CSS and
//!   JavaScript with SVG charts and DAG, no build step and no third-party code.
//!
//! [`ClusterSnapshot`]: gearpump_protocol::ClusterSnapshot

pub mod auth;
pub mod backend;
pub mod https;
pub mod listener;
pub mod rest;
pub mod views;

pub use auth::RestAuth;
pub use backend::{Backend, BackendError, EmbeddedBackend, RemoteBackend, Upload};
pub use rest::{RestLimits, router, router_secured, router_with};

use std::net::SocketAddr;
use std::sync::Arc;

/// The dashboard's files.
mod assets {
    pub(crate) const INDEX: &str = include_str!("../assets/index.html");
    pub(crate) const JS: &str = include_str!("../assets/dashboard.js");
    pub(crate) const CSS: &str = include_str!("../assets/dashboard.css");
}

/// Serves the REST API and dashboard on `listener` until `shutdown` completes, to the callers
/// `auth` admits.
pub async fn serve(
    listener: tokio::net::TcpListener,
    backend: Arc<dyn Backend>,
    limits: RestLimits,
    auth: Arc<RestAuth>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let scheme = if auth.https().is_some() { "https" } else { "http" };
    tracing::info!(%addr, authentication = auth.enabled(), "Serving the REST API and dashboard at {scheme}://{addr}/");
    if !auth.enabled() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "REST authentication is off (gearpump.ui-security.authentication-enabled): anyone who \
            reaches this address may submit and kill applications.");
    }
    if auth.enabled() && auth.https().is_none() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "REST authentication is on without HTTPS (gearpump.services.tls.enabled): passwords \
            and session cookies cross the network in the clear.");
    }
    let (max, idle) = (limits.connections, limits.idle);
    let app = router_secured(backend, limits, auth.clone());
    match auth.https() {
        Some(config) => {
            let tls = https::TlsListener::new(listener, config)?;
            axum::serve(listener::GuardedListener::new(tls, max, idle), app).with_graceful_shutdown(shutdown).await
        }
        None => {
            axum::serve(listener::GuardedListener::new(listener, max, idle), app).with_graceful_shutdown(shutdown).await
        }
    }
}

/// Services running on a thread of their own; they stop when this is dropped.
pub struct ServicesHandle {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServicesHandle {
    /// Where they listen.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The dashboard's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for ServicesHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the services on a thread of their own, bound to `host:port`. If the port is taken,
/// binds any free port instead (and says so in the log) when `fallback` is set.
pub fn start(backend: Arc<dyn Backend>, host: &str, port: u16, fallback: bool) -> std::io::Result<ServicesHandle> {
    let std_listener = match std::net::TcpListener::bind((host, port)) {
        Ok(l) => l,
        Err(e) if fallback && e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(host, port, "The services port is in use; serving on a free port instead.");
            std::net::TcpListener::bind((host, 0))?
        }
        Err(e) => return Err(std::io::Error::new(e.kind(), format!("binding the services port {host}:{port}: {e}"))),
    };
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new().name("gearpump-services".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return tracing::error!(error = %e, "Cannot start the services' runtime."),
        };
        rt.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(std_listener) {
                Ok(l) => l,
                Err(e) => return tracing::error!(error = %e, "Cannot listen for the services."),
            };
            // An application run by itself: one user's own cluster, no accounts.
            let auth = Arc::new(RestAuth::disabled());
            if let Err(e) = serve(listener, backend, RestLimits::default(), auth, async move {
                let _ = stopped.await;
            })
            .await
            {
                tracing::error!(error = %e, "The services stopped.");
            }
        });
    })?;
    Ok(ServicesHandle { addr, stop: Some(stop), thread: Some(thread) })
}
