//! TLS for the control plane and the REST API: certificates and keys read from PEM files,
//! turned into rustls configurations (on the `ring` crypto provider).
//!
//! TLS here is for privacy on the wire; who belongs to the cluster is still proved by the
//! cluster secret's challenge–response ([`crate::auth`]), which runs inside the TLS session.
//! Clients check the server's certificate against the configured certificate authorities and
//! the name (host name or IP address) they connected to, so a cluster's certificate(s) must
//! name every host a master or AppMaster runs on, or come from a CA the cluster trusts.

/// The rustls crate these settings are made of (for servers and clients built on them).
pub use rustls;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A TLS set-up that cannot be used; says which file and why.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or held nothing usable.
    #[error("{what} `{path}`: {reason}")]
    File {
        /// What the file was for (certificate, key, CA).
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// rustls refused the combination (a key that does not match the certificate, say).
    #[error("TLS set-up: {0}")]
    Rustls(String),
}

/// TLS settings for one process: how it checks the servers it connects to and, when it has a
/// certificate and key, how it serves. Cheap to clone.
#[derive(Clone)]
pub struct Tls {
    client: Arc<rustls::ClientConfig>,
    server: Option<Arc<rustls::ServerConfig>>,
}

/// Two settings are the same when they share their configurations (clones of one another).
impl PartialEq for Tls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.client, &other.client)
    }
}

impl Eq for Tls {}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("serves", &self.server.is_some()).finish()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_error(what: &'static str, path: &Path, reason: impl fmt::Display) -> TlsError {
    TlsError::File { what, path: path.to_path_buf(), reason: reason.to_string() }
}

/// The certificates in the PEM file at `path` (at least one).
pub fn read_certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(what, path, e))?;
    if certs.is_empty() {
        return Err(file_error(what, path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// The private key in the PEM file at `path` (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            file_error("TLS key file", path, "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")
        }
        e => file_error("TLS key file", path, e),
    })
}

/// A server configuration from a certificate chain and its key (PEM files).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = read_certificates("TLS certificate file", cert)?;
    let key = read_key(key)?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rustls(format!("the key does not fit the certificate: {e}")))?;
    Ok(Arc::new(config))
}

impl Tls {
    /// Trusts the certificate authorities in the PEM file `ca` and, given `identity` (a
    /// certificate chain file and its key file), serves with it.
    pub fn new(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Self, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in read_certificates("TLS CA file", ca)? {
            roots.add(cert).map_err(|e| file_error("TLS CA file", ca, e))?;
        }
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server = identity.map(|(cert, key)| server_config(cert, key)).transpose()?;
        Ok(Tls { client: Arc::new(client), server })
    }

    /// How to check servers.
    pub fn client(&self) -> Arc<rustls::ClientConfig> {
        self.client.clone()
    }

    /// How to serve, if this process has a certificate and key.
    pub fn server(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.server.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_files_are_errors_that_name_them() {
        let dir = std::env::temp_dir().join(format!("gearpump-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let e = Tls::new(&missing, None).unwrap_err().to_string();
        assert!(e.contains("TLS CA file") && e.contains("missing.pem"), "{e}");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = Tls::new(&empty, None).unwrap_err().to_string();
        assert!(e.contains("holds no PEM certificate") && e.contains("empty.pem"), "{e}");
        let e = server_config(&empty, &empty).unwrap_err().to_string();
        assert!(e.contains("TLS certificate file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
