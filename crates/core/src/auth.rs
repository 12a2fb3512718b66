//! The cluster secret and the challenge–response that proves a peer holds it.
//!
//! Every connection inside a cluster (worker, AppMaster, executor, client or master to a
//! master; AppMaster to executor; executor to executor) opens with a mutual challenge–response:
//! each side sends a fresh random nonce, and each proves it holds the secret by sending
//! `HMAC-SHA256(secret, role ‖ the other side's nonce ‖ its own nonce)`. The secret never
//! travels, a recorded exchange cannot be replayed (the nonces are new every time), and the
//! role label (`client` or `server`) keeps a proof from being reflected back to its maker.
//!
//! Without a configured secret the key is empty: the exchange still runs (the protocol is the
//! same either way) and only proves that both sides have no secret. A node with a secret
//! refuses one without, and the other way round.
//!
//! This module is the pure part: nonces, proofs and their check. The control plane
//! (`gearpump-protocol`) and the data plane (`gearpump-transport`) put them on their wires.

use crate::tls::Tls;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;
use std::sync::Arc;

/// The length of a nonce and of a proof.
pub const PROOF_LEN: usize = 32;

/// The shortest secret accepted: shorter ones are guessable.
pub const MIN_SECRET_LEN: usize = 16;

/// A nonce or a proof.
pub type Bytes32 = [u8; PROOF_LEN];

/// Which end of a connection a proof is made by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The side that connected.
    Client,
    /// The side that accepted.
    Server,
}

impl Role {
    fn label(self) -> &'static [u8] {
        match self {
            Role::Client => b"gearpump client proof v1",
            Role::Server => b"gearpump server proof v1",
        }
    }
}

/// A cluster's shared secret (`gearpump.cluster.secret` or `gearpump.cluster.secret-file`),
/// or none, and the TLS settings its control-plane connections use, if any
/// (`gearpump.tls.*`): everything a node needs to join the cluster's conversations. Its
/// `Debug` never shows the secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClusterSecret {
    key: Option<Arc<[u8]>>,
    tls: Option<Tls>,
}

/// A secret that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Shorter than [`MIN_SECRET_LEN`] bytes.
    #[error("the cluster secret is {len} bytes long; it must have at least {MIN_SECRET_LEN}")]
    TooShort {
        /// Its length.
        len: usize,
    },
}

impl ClusterSecret {
    /// No secret: connections prove only that both sides have none.
    pub fn none() -> Self {
        ClusterSecret::default()
    }

    /// The secret `bytes` (at least [`MIN_SECRET_LEN`] of them).
    pub fn new(bytes: impl AsRef<[u8]>) -> Result<Self, SecretError> {
        let bytes = bytes.as_ref();
        if bytes.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort { len: bytes.len() });
        }
        Ok(ClusterSecret { key: Some(bytes.into()), tls: None })
    }

    /// The same secret, on control-plane connections wrapped in TLS with `tls`.
    #[must_use]
    pub fn with_tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The TLS settings of control-plane connections, if they use TLS.
    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// Whether a secret is set.
    pub fn is_set(&self) -> bool {
        self.key.is_some()
    }

    /// The proof that the `role` side holds this secret, on a connection where the other side
    /// sent `their_nonce` and this side `own_nonce`.
    pub fn proof(&self, role: Role, their_nonce: &Bytes32, own_nonce: &Bytes32) -> Bytes32 {
        self.mac(role, their_nonce, own_nonce).finalize().into_bytes().into()
    }

    /// Whether `proof`, from the peer playing `role`, shows it holds this secret: the peer
    /// made it over `own_nonce` (ours, as its "other side's nonce") and `their_nonce`.
    /// Compared in constant time.
    pub fn verify(&self, role: Role, own_nonce: &Bytes32, their_nonce: &Bytes32, proof: &Bytes32) -> bool {
        self.mac(role, own_nonce, their_nonce).verify_slice(proof).is_ok()
    }

    fn mac(&self, role: Role, first: &Bytes32, second: &Bytes32) -> Hmac<Sha256> {
        let key: &[u8] = self.key.as_deref().unwrap_or_default();
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(role.label());
        mac.update(first);
        mac.update(second);
        mac
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match (self.is_set(), self.tls.is_some()) {
            (true, false) => "ClusterSecret(set)",
            (false, false) => "ClusterSecret(none)",
            (true, true) => "ClusterSecret(set, TLS)",
            (false, true) => "ClusterSecret(none, TLS)",
        })
    }
}

/// A fresh random nonce from the operating system.
pub fn nonce() -> Bytes32 {
    let mut n = [0u8; PROOF_LEN];
    getrandom::fill(&mut n).expect("the operating system's random source works");
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> ClusterSecret {
        ClusterSecret::new(s).unwrap()
    }

    #[test]
    fn a_proof_checks_only_with_the_same_secret_role_and_nonces() {
        let (a, b) = (nonce(), nonce());
        assert_ne!(a, b, "nonces are fresh");
        let s = secret("correct horse battery staple");
        // The client proves over (server nonce, client nonce); the server checks with its own first.
        let p = s.proof(Role::Client, &b, &a);
        assert!(s.verify(Role::Client, &b, &a, &p));
        assert!(!secret("another secret of enough length").verify(Role::Client, &b, &a, &p), "another secret");
        assert!(!ClusterSecret::none().verify(Role::Client, &b, &a, &p), "no secret");
        assert!(!s.verify(Role::Server, &b, &a, &p), "reflected as the other role");
        assert!(!s.verify(Role::Client, &a, &b, &p), "nonces swapped");
        assert!(!s.verify(Role::Client, &nonce(), &a, &p), "another session");
        let mut flipped = p;
        flipped[31] ^= 1;
        assert!(!s.verify(Role::Client, &b, &a, &flipped));
    }

    #[test]
    fn without_a_secret_both_sides_agree_and_a_secret_side_refuses() {
        let (a, b) = (nonce(), nonce());
        let none = ClusterSecret::none();
        assert!(none.verify(Role::Server, &a, &b, &none.proof(Role::Server, &a, &b)));
        assert!(!secret("0123456789abcdef").verify(Role::Server, &a, &b, &none.proof(Role::Server, &a, &b)));
    }

    #[test]
    fn short_secrets_are_refused_and_debug_never_shows_one() {
        assert_eq!(ClusterSecret::new("short"), Err(SecretError::TooShort { len: 5 }));
        let s = secret("do not print this secret");
        assert_eq!(format!("{s:?}"), "ClusterSecret(set)");
        assert_eq!(format!("{:?}", ClusterSecret::none()), "ClusterSecret(none)");
    }
}
