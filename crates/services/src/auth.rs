//! Users, roles and sessions of the REST API and the dashboard.
//!
//! Off unless `gearpump.ui-security.authentication-enabled` is true. Then every route but the
//! dashboard's own files and `/login` needs a caller: a session cookie (`POST /login` with
//! `user` and `password` sets it; `POST /logout` ends it) or HTTP Basic credentials (for
//! `curl -u` and scripts). Users are listed in three maps of the configuration, name to an
//! argon2 hash (`gear passwd` makes one):
//!
//! - `gearpump.ui-security.guests`: read everything;
//! - `gearpump.ui-security.users`: also submit applications, and kill, restart or replay
//!   those they submitted (the submitter is the logged-in user);
//! - `gearpump.ui-security.admins`: anything.
//!
//! [`Authorizer::decide`] is the pure decision: who may do what to which path.

use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use gearpump_config::{ConfigError, GearConfig};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads.
    Guest,
    /// Reads, submits, and manages its own applications.
    User,
    /// Anything.
    Admin,
}

impl Role {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Guest => "guest",
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

/// Who made a request: a logged-in user, or anyone when authentication is off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The user's name; `None` when authentication is off.
    pub user: Option<String>,
    /// What it may do (an admin's rights when authentication is off).
    pub role: Role,
}

impl Caller {
    /// The caller when authentication is off.
    pub fn anyone() -> Self {
        Caller { user: None, role: Role::Admin }
    }
}

/// The configuration keys of the three role maps.
const ROLE_KEYS: [(&str, Role); 3] = [
    ("gearpump.ui-security.admins", Role::Admin),
    ("gearpump.ui-security.users", Role::User),
    ("gearpump.ui-security.guests", Role::Guest),
];

/// How long a verified Basic credential is trusted without hashing it again.
const BASIC_CACHE: Duration = Duration::from_secs(300);

/// Password checks run at once: each takes argon2's 19 MiB and tens of milliseconds, by
/// design, so a flood of logins must queue rather than take the memory and cores.
const VERIFYING: usize = 2;
/// Password checks allowed to wait for one of those; more are answered 503 at once.
const WAITING: usize = 64;

/// Sessions a user may have open; a new login ends their oldest beyond it.
const SESSIONS_PER_USER: usize = 32;

/// The name of the session cookie.
pub const COOKIE: &str = "gearpump_session";

/// One user's account.
#[derive(Clone)]
struct Account {
    role: Role,
    hash: String,
}

/// A login.
struct Session {
    caller: Caller,
    expires: Instant,
}

/// The users, their sessions and the verified Basic credentials of a REST server.
pub struct RestAuth {
    /// `None`: authentication is off.
    accounts: Option<HashMap<String, Account>>,
    sessions: Mutex<HashMap<String, Session>>,
    basic: Mutex<HashMap<[u8; 32], Session>>,
    ttl: Duration,
    /// Verified when a name is unknown, so that a wrong name takes as long as a wrong password.
    decoy: String,
    /// Password checks running or waiting (see [`VERIFYING`]).
    verifying: tokio::sync::Semaphore,
    waiting: std::sync::atomic::AtomicUsize,
    /// Host names (lower case) requests may name besides IP addresses and `localhost`.
    hosts: Vec<String>,
    /// HTTPS settings (`gearpump.services.tls.*`), if on.
    https: Option<Arc<gearpump_core::tls::rustls::ServerConfig>>,
}

impl std::fmt::Debug for RestAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let users = self.accounts.as_ref().map(HashMap::len);
        f.debug_struct("RestAuth").field("users", &users).finish_non_exhaustive()
    }
}

/// Why a request is not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No valid session or credentials (401).
    Unauthenticated(String),
    /// Known, but not allowed (403).
    Forbidden(String),
    /// Too many password checks at once (503).
    Busy,
}

impl RestAuth {
    /// Authentication off: every caller may do anything.
    pub fn disabled() -> Self {
        RestAuth {
            accounts: None,
            sessions: Mutex::default(),
            basic: Mutex::default(),
            ttl: Duration::from_secs(3600),
            decoy: String::new(),
            verifying: tokio::sync::Semaphore::new(VERIFYING),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            hosts: Vec::new(),
            https: None,
        }
    }

    /// Serves over HTTPS with `config` (and marks the login cookie `Secure`).
    #[must_use]
    pub fn with_https(mut self, config: Arc<gearpump_core::tls::rustls::ServerConfig>) -> Self {
        self.https = Some(config);
        self
    }

    /// The HTTPS settings, if the services serve HTTPS.
    pub fn https(&self) -> Option<Arc<gearpump_core::tls::rustls::ServerConfig>> {
        self.https.clone()
    }

    /// Also answers requests that name `hosts` (see [`RestAuth::host_allowed`]).
    #[must_use]
    pub fn with_hosts(mut self, hosts: impl IntoIterator<Item = String>) -> Self {
        self.hosts.extend(hosts.into_iter().map(|h| h.trim_end_matches('.').to_ascii_lowercase()));
        self
    }

    /// Whether a request whose `Host` header is `host` is answered: an IP address, `localhost`,
    /// or a listed name (`gearpump.services.allowed-hosts`, `gearpump.services.host`,
    /// `gearpump.hostname`). A page that rebinds its own DNS name to this server's address
    /// (DNS rebinding) sends its own name and is refused.
    pub fn host_allowed(&self, host: &str) -> bool {
        let name = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => match host.rsplit_once(':') {
                Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
                _ => host,
            },
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        name.parse::<std::net::IpAddr>().is_ok() || name == "localhost" || self.hosts.contains(&name)
    }

    /// Users with `role`, name to password, hashed here (tests and embedded uses).
    pub fn with_users(users: &[(&str, &str, Role)]) -> Self {
        let accounts =
            users.iter().map(|(n, p, r)| (n.to_string(), Account { role: *r, hash: hash_password(p) })).collect();
        RestAuth { accounts: Some(accounts), decoy: hash_password("decoy"), ..Self::disabled() }
    }

    /// What `conf` says (`gearpump.ui-security.*`). A hash that does not parse, a user in two
    /// roles, or authentication on without users is an error naming the key.
    pub fn from_config(conf: &GearConfig) -> Result<Self, ConfigError> {
        let invalid =
            |key: &str, reason: String| ConfigError::Invalid { key: key.to_string(), value: "<hidden>".into(), reason };
        let ttl = Duration::from_millis(conf.get_num("gearpump.ui-security.session-timeout-ms")?);
        let mut hosts = conf.get_strings("gearpump.services.allowed-hosts")?;
        hosts.extend(conf.get_str("gearpump.services.host").map(str::to_string));
        hosts.push(conf.hostname().to_string());
        let https = conf.services_tls()?;
        if !conf.get_bool("gearpump.ui-security.authentication-enabled")? {
            return Ok(RestAuth { ttl, https, ..Self::disabled() }.with_hosts(hosts));
        }
        let mut accounts = HashMap::new();
        for (key, role) in ROLE_KEYS {
            for (name, hash) in conf.map(key) {
                let full = format!("{key}.{name}");
                PasswordHash::new(&hash).map_err(|e| {
                    invalid(&full, format!("is not a password hash ({e}); make one with `gear passwd`"))
                })?;
                if accounts.insert(name.clone(), Account { role, hash }).is_some() {
                    return Err(invalid(&full, format!("user {name:?} is listed in more than one role")));
                }
            }
        }
        if accounts.is_empty() {
            return Err(invalid(
                "gearpump.ui-security.authentication-enabled",
                "is true but no user is listed in gearpump.ui-security.admins, users or guests".into(),
            ));
        }
        Ok(RestAuth { accounts: Some(accounts), ttl, https, decoy: hash_password("decoy"), ..Self::disabled() }
            .with_hosts(hosts))
    }

    /// Whether authentication is on.
    pub fn enabled(&self) -> bool {
        self.accounts.is_some()
    }

    /// The role of `name` if `password` is theirs. Takes an argon2 verification either way.
    fn check(&self, name: &str, password: &str) -> Option<Role> {
        let accounts = self.accounts.as_ref()?;
        let (hash, role) = match accounts.get(name) {
            Some(a) => (a.hash.as_str(), Some(a.role)),
            None => (self.decoy.as_str(), None),
        };
        let ok = PasswordHash::new(hash)
            .is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok());
        role.filter(|_| ok)
    }

    /// The role of `name` if `password` is theirs, checked off the async threads, at most
    /// two at a time; [`Denied::Busy`] when 64 checks wait already.
    pub async fn verify(self: &std::sync::Arc<Self>, name: &str, password: &str) -> Result<Option<Role>, Denied> {
        use std::sync::atomic::Ordering;
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= WAITING {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Denied::Busy);
        }
        let permit = self.verifying.acquire().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let _permit = permit.map_err(|_| Denied::Busy)?;
        let (me, name, password) = (self.clone(), name.to_string(), password.to_string());
        tokio::task::spawn_blocking(move || me.check(&name, &password)).await.map_err(|_| Denied::Busy)
    }

    /// Logs `name` in: a new session token and the caller, `Ok(None)` for a wrong name or
    /// password (the same answer for both).
    pub async fn login(
        self: &std::sync::Arc<Self>,
        name: &str,
        password: &str,
    ) -> Result<Option<(String, Caller)>, Denied> {
        let Some(role) = self.verify(name, password).await? else { return Ok(None) };
        Ok(Some(self.open_session(name, role)))
    }

    fn open_session(&self, name: &str, role: Role) -> (String, Caller) {
        let token: String = gearpump_core::auth::nonce().iter().map(|b| format!("{b:02x}")).collect();
        let caller = Caller { user: Some(name.to_string()), role };
        let mut sessions = self.sessions.lock();
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        // A user logging in again and again keeps only their newest sessions.
        let mut theirs: Vec<(Instant, String)> = sessions
            .iter()
            .filter(|(_, s)| s.caller.user.as_deref() == Some(name))
            .map(|(t, s)| (s.expires, t.clone()))
            .collect();
        if theirs.len() >= SESSIONS_PER_USER {
            theirs.sort();
            for (_, t) in &theirs[..=theirs.len() - SESSIONS_PER_USER] {
                sessions.remove(t);
            }
        }
        sessions.insert(token.clone(), Session { caller: caller.clone(), expires: now + self.ttl });
        (token, caller)
    }

    /// Sessions open now.
    pub fn open_sessions(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Ends the session `token`.
    pub fn logout(&self, token: &str) {
        self.sessions.lock().remove(token);
    }

    /// How long a session lasts.
    pub fn session_ttl(&self) -> Duration {
        self.ttl
    }

    /// The caller of a request with these headers.
    pub async fn caller(self: &std::sync::Arc<Self>, headers: &axum::http::HeaderMap) -> Result<Caller, Denied> {
        if !self.enabled() {
            return Ok(Caller::anyone());
        }
        if let Some(token) = session_token(headers) {
            let sessions = self.sessions.lock();
            if let Some(s) = sessions.get(token).filter(|s| s.expires > Instant::now()) {
                return Ok(s.caller.clone());
            }
        }
        if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
            return self.basic(value.as_bytes()).await;
        }
        Err(Denied::Unauthenticated(
            "log in first: POST /login with user and password, or send HTTP Basic credentials".into(),
        ))
    }

    /// The caller of an `Authorization: Basic …` header.
    async fn basic(self: &std::sync::Arc<Self>, value: &[u8]) -> Result<Caller, Denied> {
        use sha2::Digest;
        let key: [u8; 32] = sha2::Sha256::digest(value).into();
        if let Some(s) = self.basic.lock().get(&key).filter(|s| s.expires > Instant::now()) {
            return Ok(s.caller.clone());
        }
        let wrong = || Denied::Unauthenticated("wrong user name or password".into());
        let text = std::str::from_utf8(value).map_err(|_| wrong())?;
        let encoded = text
            .strip_prefix("Basic")
            .ok_or_else(|| Denied::Unauthenticated("only Basic credentials or a session cookie are accepted".into()))?;
        let decoded = base64_decode(encoded.trim()).ok_or_else(wrong)?;
        let decoded = String::from_utf8(decoded).map_err(|_| wrong())?;
        let (name, password) = decoded.split_once(':').ok_or_else(wrong)?;
        let role = self.verify(name, password).await?.ok_or_else(wrong)?;
        let caller = Caller { user: Some(name.to_string()), role };
        let mut cache = self.basic.lock();
        let now = Instant::now();
        cache.retain(|_, s| s.expires > now);
        cache.insert(key, Session { caller: caller.clone(), expires: now + BASIC_CACHE });
        Ok(caller)
    }
}

/// The session cookie's value in `headers`, if any.
pub fn session_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE).and_then(|rest| rest.strip_prefix('=')))
}

/// An argon2id hash of `password` with a fresh salt, in the PHC string format that the role
/// maps take (`$argon2id$v=19$…`).
pub fn hash_password(password: &str) -> String {
    argon2::Argon2::default().hash_password(password.as_bytes()).expect("argon2 hashes any password").to_string()
}

/// Standard base64 (with padding), as HTTP Basic uses.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let take = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&n.to_be_bytes()[1..1 + take]);
    }
    Some(out)
}

/// Which requests a role may make.
pub struct Authorizer;

/// What [`Authorizer::decide`] needs to know about the application a request is about.
pub enum Target<'a> {
    /// The request is not about one application.
    None,
    /// About application `id`, submitted by `owner`.
    App {
        /// Its id.
        id: u32,
        /// Who submitted it.
        owner: &'a str,
    },
}

/// Paths under `/api/v1.0` where any user may submit.
const SUBMIT_PATHS: [&str; 3] = ["/master/submitapp", "/master/uploadjar", "/master/submitdag"];

impl Authorizer {
    /// The application id a mutating API path (below `/api/v1.0`) is about, if any:
    /// `/appmaster/<id>…`.
    pub fn app_of(path: &str) -> Option<u32> {
        path.strip_prefix("/appmaster/")?.split('/').next()?.parse().ok()
    }

    /// Whether `caller` may send a request with `method` to the API `path` (below
    /// `/api/v1.0`) about `target`.
    pub fn decide(caller: &Caller, method: &axum::http::Method, path: &str, target: &Target<'_>) -> Result<(), Denied> {
        use axum::http::Method;
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) || caller.role == Role::Admin {
            return Ok(());
        }
        let who = caller.user.as_deref().unwrap_or("anyone");
        let role = caller.role.as_str();
        match (caller.role, target) {
            (Role::Guest, _) => Err(Denied::Forbidden(format!("{who} is a guest and may only read"))),
            (Role::User, _) if SUBMIT_PATHS.contains(&path) => Ok(()),
            (Role::User, Target::App { owner, .. }) if *owner == who => Ok(()),
            (Role::User, Target::App { id, owner }) => Err(Denied::Forbidden(format!(
                "application {id} was submitted by {owner}; {who} ({role}) may manage only their own applications"
            ))),
            _ => Err(Denied::Forbidden(format!("only admins may {method} {path}; {who} is a {role}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue, Method};

    fn caller(name: &str, role: Role) -> Caller {
        Caller { user: Some(name.into()), role }
    }

    #[test]
    fn guests_read_users_submit_and_manage_their_own_admins_anything() {
        let (alice, bob, guest, admin) = (
            caller("alice", Role::User),
            caller("bob", Role::User),
            caller("g", Role::Guest),
            caller("root", Role::Admin),
        );
        let app = Target::App { id: 3, owner: "alice" };
        let get = Method::GET;
        let post = Method::POST;
        let delete = Method::DELETE;
        for c in [&alice, &bob, &guest, &admin] {
            assert!(Authorizer::decide(c, &get, "/appmaster/3", &app).is_ok(), "everyone reads");
        }
        assert!(Authorizer::decide(&alice, &post, "/master/submitapp", &Target::None).is_ok());
        assert!(Authorizer::decide(&alice, &delete, "/appmaster/3", &app).is_ok(), "her own");
        assert!(Authorizer::decide(&alice, &post, "/appmaster/3/restart", &app).is_ok());
        let denied = Authorizer::decide(&bob, &delete, "/appmaster/3", &app).unwrap_err();
        assert!(matches!(&denied, Denied::Forbidden(m) if m.contains("submitted by alice")), "{denied:?}");
        for path in ["/master/submitdag", "/appmaster/3"] {
            assert!(matches!(Authorizer::decide(&guest, &post, path, &app), Err(Denied::Forbidden(_))));
        }
        assert!(Authorizer::decide(&admin, &delete, "/appmaster/3", &app).is_ok());
        assert!(Authorizer::decide(&alice, &post, "/some/other/thing", &Target::None).is_err(), "unknown: admins only");
        assert!(Authorizer::decide(&Caller::anyone(), &delete, "/appmaster/3", &app).is_ok(), "auth off");
        assert_eq!(Authorizer::app_of("/appmaster/12/restart"), Some(12));
        assert_eq!(Authorizer::app_of("/master/submitapp"), None);
    }

    #[tokio::test]
    async fn sessions_and_basic_credentials_identify_callers_and_wrong_ones_do_not() {
        let auth = std::sync::Arc::new(RestAuth::with_users(&[
            ("alice", "wonderland", Role::User),
            ("root", "toor-toor", Role::Admin),
        ]));
        assert_eq!(auth.login("alice", "wrong").await, Ok(None));
        assert_eq!(auth.login("nobody", "wonderland").await, Ok(None));
        let (token, c) = auth.login("alice", "wonderland").await.unwrap().unwrap();
        assert_eq!(c, caller("alice", Role::User));
        let mut h = HeaderMap::new();
        assert!(matches!(auth.caller(&h).await, Err(Denied::Unauthenticated(_))));
        h.insert("cookie", HeaderValue::from_str(&format!("theme=dark; {COOKIE}={token}")).unwrap());
        assert_eq!(auth.caller(&h).await.unwrap(), caller("alice", Role::User));
        auth.logout(&token);
        assert!(auth.caller(&h).await.is_err(), "logged out");
        let mut b = HeaderMap::new();
        // root:toor-toor
        b.insert("authorization", HeaderValue::from_static("Basic cm9vdDp0b29yLXRvb3I="));
        assert_eq!(auth.caller(&b).await.unwrap(), caller("root", Role::Admin));
        assert_eq!(auth.caller(&b).await.unwrap(), caller("root", Role::Admin), "from the cache");
        b.insert("authorization", HeaderValue::from_static("Basic cm9vdDp3cm9uZw=="));
        assert!(matches!(auth.caller(&b).await, Err(Denied::Unauthenticated(_))), "root:wrong");
        b.insert("authorization", HeaderValue::from_static("Basic !!!"));
        assert!(auth.caller(&b).await.is_err());
        // Logging in again and again keeps a bounded number of sessions.
        for _ in 0..SESSIONS_PER_USER + 10 {
            auth.login("root", "toor-toor").await.unwrap().unwrap();
        }
        assert_eq!(auth.open_sessions(), SESSIONS_PER_USER, "root's newest only (alice logged out)");
        let off = std::sync::Arc::new(RestAuth::disabled());
        assert_eq!(off.caller(&HeaderMap::new()).await.unwrap(), Caller::anyone());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_password_checks_queues_a_few_and_turns_the_rest_away() {
        let auth = std::sync::Arc::new(RestAuth::with_users(&[("alice", "wonderland", Role::User)]));
        let tries: Vec<_> = (0..200)
            .map(|_| {
                let auth = auth.clone();
                tokio::spawn(async move { auth.verify("alice", "wrong").await })
            })
            .collect();
        let mut busy = 0;
        for t in tries {
            match t.await.unwrap() {
                Err(Denied::Busy) => busy += 1,
                Ok(None) => {}
                other => panic!("{other:?}"),
            }
        }
        // Without the bound every one would wait (and, off the async threads, each take its
        // 19 MiB at once).
        assert!(busy > 0, "{busy} of 200 turned away");
        assert_eq!(auth.verify("alice", "wonderland").await, Ok(Some(Role::User)), "and it serves again");
    }

    #[test]
    fn only_addresses_localhost_and_listed_names_are_answered() {
        let auth = RestAuth::disabled().with_hosts(["Gear-Master.example".to_string()]);
        for ok in [
            "127.0.0.1:8090",
            "127.0.0.1",
            "[::1]:8090",
            "[::1]",
            "localhost:8090",
            "LOCALHOST",
            "10.1.2.3:80",
            "gear-master.example:8090",
            "gear-master.example.",
        ] {
            assert!(auth.host_allowed(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:8090",
            "127.0.0.1.evil.example:8090",
            "localhost.evil.example",
            "",
            "gear-master.example.evil",
        ] {
            assert!(!auth.host_allowed(refused), "{refused}");
        }
    }

    #[test]
    fn base64_decodes_what_http_basic_sends() {
        assert_eq!(base64_decode("cm9vdDp0b29yLXRvb3I=").unwrap(), b"root:toor-toor");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
        assert!(base64_decode("Y").is_none());
        assert!(base64_decode("a*cd").is_none());
    }
}
