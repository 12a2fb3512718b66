//! # gearpump-config
//!
//! `gear.conf`: the configuration of every Gearpump daemon and application, in HOCON.
//!
//! The built-in defaults ([`DEFAULTS`], the repository's `conf/gear.conf`) carry every key of the guide's
//! Configuration Guide with its default. Layers are stacked on top, each winning over the ones
//! before: defaults < `conf/gear.conf` < `-conf FILE` < application config < command line.
//! Every layer is validated as it is added: a key the defaults do not know is an error naming
//! the key, the layer it came from and the nearest known key; a value of the wrong type is an
//! error naming the key, the layer and the type expected. Maps meant for free keys
//! (`gearpump.serializers`) accept any key.
//!
//! ```
//! use gearpump_config::GearConfig;
//!
//! let conf = GearConfig::defaults()
//!     .with_str("conf/gear.conf", "gearpump.worker.slots = 8")
//!     .unwrap()
//!     .with_override("gearpump.hostname", "10.0.0.7")
//!     .unwrap();
//! assert_eq!(conf.worker_slots(), 8);
//! assert_eq!(conf.hostname(), "10.0.0.7");
//!
//! let err = GearConfig::defaults().with_str("my.conf", "gearpump.worker.slot = 8").unwrap_err();
//! assert_eq!(err.to_string(), "my.conf: unknown config key `gearpump.worker.slot` (did you mean `gearpump.worker.slots`?)");
//! ```

mod settings;
pub use settings::Settings;

use hocon::{HoconValue, ScalarType};
use std::collections::BTreeMap;
use std::path::Path;

/// The built-in defaults.
pub const DEFAULTS: &str = include_str!("../../../conf/gear.conf");

/// Keys under these prefixes are free-form maps.
const FREE_MAPS: [&str; 4] = [
    "gearpump.serializers",
    "gearpump.ui-security.admins",
    "gearpump.ui-security.users",
    "gearpump.ui-security.guests",
];

/// A configuration layer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The layer is not valid HOCON (or its file could not be read).
    #[error("{source_name}: {message}")]
    Parse {
        /// The layer: a file path or a description.
        source_name: String,
        /// What the parser said.
        message: String,
    },
    /// The layer sets a key that does not exist.
    #[error("{source_name}: unknown config key `{key}`{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownKey {
        /// The layer.
        source_name: String,
        /// The key.
        key: String,
        /// The closest known key, if one is close.
        suggestion: Option<String>,
    },
    /// The layer gives a key a value of the wrong type.
    #[error("{source_name}: config key `{key}` must be {expected}, found {found}")]
    WrongType {
        /// The layer.
        source_name: String,
        /// The key.
        key: String,
        /// What the key takes.
        expected: &'static str,
        /// What was given.
        found: String,
    },
    /// A value has the right type but is not acceptable.
    #[error("config key `{key}`: {value:?} {reason}")]
    Invalid {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Why not.
        reason: String,
    },
}

/// A master's address from `gearpump.cluster.masters`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    /// Host name or IP.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl std::str::FromStr for HostPort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (host, port) = s.rsplit_once(':').ok_or_else(|| "is not host:port".to_string())?;
        if host.is_empty() {
            return Err("has no host".into());
        }
        let port = port.parse::<u16>().map_err(|_| format!("has a bad port {port:?}"))?;
        Ok(HostPort { host: host.to_string(), port })
    }
}

/// Keys of the guide's Configuration Guide that have no effect here, and why. A layer may set
/// them (a `gear.conf` written for the original keeps working); [`GearConfig::without_effect`]
/// names those set, for a warning. They are not in the defaults.
pub const NO_EFFECT: &[(&str, &str)] = &[
    ("gearpump.task-dispatcher", "tasks always run on a fixed pool of threads, one per core"),
    ("gearpump.appmaster.vmargs", "AppMasters are native processes of the application binary, not JVMs"),
    ("gearpump.appmaster.extraClasspath", "the application binary carries all its code; there is no class path"),
    ("gearpump.executor.vmargs", "executors are native processes of the application binary, not JVMs"),
    ("gearpump.executor.extraClasspath", "the application binary carries all its code; there is no class path"),
    ("gearpump.services.ws", "live updates use the REST port (gearpump.services.http) itself"),
    ("gearpump.netty.buffer-size", "data-plane buffers grow as needed, bounded by flow control"),
    (
        "gearpump.netty.message-batch-size",
        "the data plane writes whenever the socket takes data and batches whatever waits meanwhile",
    ),
    ("gearpump.netty.fulsh-check-interval", "the data plane has no flush timer: it flushes as soon as it can"),
];

/// The layered, validated configuration.
#[derive(Debug, Clone)]
pub struct GearConfig {
    /// Leaf values by dotted path, after layering.
    values: BTreeMap<String, HoconValue>,
    /// The layers applied, lowest first.
    layers: Vec<String>,
    /// Keys of [`NO_EFFECT`] a layer set.
    without_effect: Vec<String>,
}

impl Default for GearConfig {
    fn default() -> Self {
        Self::defaults()
    }
}

impl GearConfig {
    /// The built-in defaults alone.
    pub fn defaults() -> Self {
        let parsed = hocon::parse(DEFAULTS).expect("the built-in defaults parse");
        let mut values = BTreeMap::new();
        for key in parsed.keys() {
            if let Some(v) = parsed.get(key) {
                flatten(key, v, &mut values);
            }
        }
        GearConfig { values, layers: vec!["defaults".into()], without_effect: Vec::new() }
    }

    /// Adds the layer in `path`, if the file exists (as `conf/gear.conf` may not).
    pub fn with_optional_file(self, path: &Path) -> Result<Self, ConfigError> {
        if path.exists() { self.with_file(path) } else { Ok(self) }
    }

    /// Adds the layer in `path`; a missing file is an error.
    pub fn with_file(self, path: &Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Parse { source_name: name.clone(), message: format!("cannot read: {e}") })?;
        self.with_str(&name, &text)
    }

    /// Adds a layer given as HOCON text, named `source_name` in errors.
    pub fn with_str(mut self, source_name: &str, text: &str) -> Result<Self, ConfigError> {
        let layer = parse_layer(source_name, text)?;
        for (key, value) in &layer {
            self.check(source_name, key, value)?;
        }
        // A layer that sets a free map replaces entries one by one, like any other key.
        self.take(layer);
        self.layers.push(source_name.to_string());
        Ok(self)
    }

    /// [`GearConfig::with_str`], but keys this version does not know are left out (and
    /// returned) instead of failing: for a configuration written by a newer cluster and handed
    /// to an application binary built against an older version (`GEARPUMP_CONF`). Known keys
    /// with values of the wrong type still fail.
    pub fn with_str_ignoring_unknown(
        mut self,
        source_name: &str,
        text: &str,
    ) -> Result<(Self, Vec<String>), ConfigError> {
        let layer = parse_layer(source_name, text)?;
        let mut ignored = Vec::new();
        let mut kept = BTreeMap::new();
        for (key, value) in layer {
            match self.check(source_name, &key, &value) {
                Ok(()) => {
                    kept.insert(key, value);
                }
                Err(ConfigError::UnknownKey { .. }) => ignored.push(key),
                Err(e) => return Err(e),
            }
        }
        self.take(kept);
        self.layers.push(source_name.to_string());
        Ok((self, ignored))
    }

    /// Takes a checked layer's values; keys without effect are only noted.
    fn take(&mut self, layer: BTreeMap<String, HoconValue>) {
        for (key, value) in layer {
            if no_effect(&key).is_some() {
                if !self.without_effect.contains(&key) {
                    self.without_effect.push(key);
                }
            } else {
                self.values.insert(key, value);
            }
        }
    }

    /// Adds one `key = value` (the command line's top layer). The value is HOCON: `8`, `true`,
    /// `"text"` or bare text.
    pub fn with_override(self, key: &str, value: &str) -> Result<Self, ConfigError> {
        let quoted = if value.parse::<f64>().is_ok() || value == "true" || value == "false" || value.starts_with('[') {
            value.to_string()
        } else {
            format!("{value:?}")
        };
        self.with_str("command line", &format!("{key} = {quoted}"))
    }

    fn check(&self, source_name: &str, key: &str, value: &HoconValue) -> Result<(), ConfigError> {
        if FREE_MAPS.iter().any(|m| key.starts_with(&format!("{m}."))) || no_effect(key).is_some() {
            return Ok(());
        }
        let Some(default) = self.values.get(key) else {
            return Err(ConfigError::UnknownKey {
                source_name: source_name.into(),
                key: key.into(),
                suggestion: self.closest_key(key),
            });
        };
        let (expected, ok) = match default {
            HoconValue::Scalar(s) => match s.value_type {
                ScalarType::Number => ("a number", scalar_raw(value).is_some_and(|r| r.parse::<f64>().is_ok())),
                ScalarType::Boolean => ("true or false", scalar_raw(value).is_some_and(|r| parse_bool(r).is_some())),
                _ => ("a string", matches!(value, HoconValue::Scalar(_))),
            },
            HoconValue::Array(_) => ("a list", matches!(value, HoconValue::Array(_))),
            _ => ("an object", matches!(value, HoconValue::Object(_))),
        };
        if ok {
            Ok(())
        } else {
            Err(ConfigError::WrongType {
                source_name: source_name.into(),
                key: key.into(),
                expected,
                found: describe(value),
            })
        }
    }

    fn closest_key(&self, key: &str) -> Option<String> {
        self.values
            .keys()
            .map(|k| (edit_distance(k, key), k))
            .filter(|(d, _)| *d <= 3.max(key.len() / 5))
            .min()
            .map(|(_, k)| k.clone())
    }

    /// The layers applied, lowest first.
    pub fn layers(&self) -> &[String] {
        &self.layers
    }

    /// Every key and its value as HOCON text, sorted (for `config` REST routes and logs).
    pub fn entries(&self) -> impl Iterator<Item = (&str, String)> {
        self.values.iter().map(|(k, v)| (k.as_str(), render(v)))
    }

    /// The whole configuration as HOCON text, one `key = value` per line: what a worker hands
    /// to the processes it starts, which read it back with [`GearConfig::with_str`].
    pub fn to_hocon(&self) -> String {
        fn value(v: &HoconValue) -> String {
            match v {
                HoconValue::Scalar(s) => match s.value_type {
                    ScalarType::Number | ScalarType::Boolean => s.raw.clone(),
                    ScalarType::Null => "null".into(),
                    _ => format!("{:?}", s.raw),
                },
                HoconValue::Array(items) => format!("[{}]", items.iter().map(value).collect::<Vec<_>>().join(", ")),
                HoconValue::Object(m) if m.is_empty() => "{}".into(),
                _ => "null".into(),
            }
        }
        self.values.iter().map(|(k, v)| format!("{k} = {}\n", value(v))).collect()
    }

    /// The raw string of a scalar key.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.values.get(key).and_then(scalar_raw)
    }

    /// A numeric key as `T`, with an error naming the key when it does not fit.
    pub fn get_num<T: TryFrom<i64>>(&self, key: &str) -> Result<T, ConfigError> {
        let raw = self.get_str(key).unwrap_or_default();
        let n = raw
            .parse::<i64>()
            .or_else(|_| raw.parse::<f64>().map(|f| f as i64))
            .map_err(|_| invalid(key, raw, "is not a number"))?;
        T::try_from(n).map_err(|_| invalid(key, raw, "is out of range"))
    }

    /// A boolean key.
    pub fn get_bool(&self, key: &str) -> Result<bool, ConfigError> {
        let raw = self.get_str(key).unwrap_or_default();
        parse_bool(raw).ok_or_else(|| invalid(key, raw, "is not true or false"))
    }

    /// The entries of a free map such as `gearpump.serializers`, by their key within it.
    pub fn map(&self, prefix: &str) -> BTreeMap<String, String> {
        let p = format!("{prefix}.");
        self.values
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(&p).map(|rest| (rest.trim_matches('"').to_string(), render(v))))
            .collect()
    }

    /// A list of strings (`key = ["a", "b"]`); empty when unset.
    pub fn get_strings(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        match self.values.get(key) {
            None => Ok(Vec::new()),
            Some(HoconValue::Array(items)) => Ok(items.iter().filter_map(scalar_raw).map(str::to_string).collect()),
            Some(other) => Err(invalid(key, &render(other), "must be a list of strings")),
        }
    }

    /// `gearpump.hostname`.
    pub fn hostname(&self) -> &str {
        self.get_str("gearpump.hostname").unwrap_or("127.0.0.1")
    }

    /// `gearpump.cluster.masters`.
    pub fn masters(&self) -> Result<Vec<HostPort>, ConfigError> {
        let key = "gearpump.cluster.masters";
        let Some(HoconValue::Array(items)) = self.values.get(key) else { return Ok(Vec::new()) };
        let masters = items
            .iter()
            .map(|item| {
                let raw = scalar_raw(item).unwrap_or_default();
                raw.parse::<HostPort>().map_err(|reason| invalid(key, raw, &reason))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if masters.is_empty() {
            return Err(invalid(key, "[]", "must name at least one master"));
        }
        Ok(masters)
    }

    /// `gearpump.worker.slots` ([`GearConfig::validate`] refuses a value over `u32::MAX`).
    pub fn worker_slots(&self) -> u32 {
        self.get_num("gearpump.worker.slots").unwrap_or(100)
    }

    /// `gearpump.network.max-connections` and `gearpump.network.hello-timeout-ms`: open
    /// connections allowed per listening port, and the time a new one has to say hello.
    pub fn port_limits(&self) -> Result<(u32, std::time::Duration), ConfigError> {
        let max = self.get_num::<u32>("gearpump.network.max-connections")?;
        let hello = self.get_num::<u32>("gearpump.network.hello-timeout-ms")?;
        Ok((max.max(1), std::time::Duration::from_millis(hello.max(1).into())))
    }

    /// The cluster secret: `gearpump.cluster.secret`, or the first line of the file
    /// `gearpump.cluster.secret-file`; none when both are empty. Errors never show the secret.
    pub fn cluster_secret(&self) -> Result<gearpump_core::auth::ClusterSecret, ConfigError> {
        use gearpump_core::auth::ClusterSecret;
        const KEY: &str = "gearpump.cluster.secret";
        const FILE: &str = "gearpump.cluster.secret-file";
        let inline = self.get_str(KEY).unwrap_or_default();
        let file = self.get_str(FILE).unwrap_or_default();
        let tls = self.control_tls()?;
        let with_tls = |secret: ClusterSecret| match tls {
            Some(tls) => secret.with_tls(tls),
            None => secret,
        };
        let (key, secret) = match (inline.is_empty(), file.is_empty()) {
            (true, true) => return Ok(with_tls(ClusterSecret::none())),
            (false, false) => return Err(invalid(KEY, MASKED, &format!("and `{FILE}` are both set; set one"))),
            (false, true) => (KEY, inline.to_string()),
            (true, false) => {
                let text =
                    std::fs::read_to_string(file).map_err(|e| invalid(FILE, file, &format!("cannot be read: {e}")))?;
                (FILE, text.lines().next().unwrap_or_default().trim().to_string())
            }
        };
        ClusterSecret::new(secret).map(with_tls).map_err(|e| invalid(key, MASKED, &format!("is not usable: {e}")))
    }

    /// The control plane's TLS settings (`gearpump.tls.*`), when `gearpump.tls.enabled`.
    pub fn control_tls(&self) -> Result<Option<gearpump_core::tls::Tls>, ConfigError> {
        if !self.get_bool("gearpump.tls.enabled")? {
            return Ok(None);
        }
        let cert = self.get_str("gearpump.tls.cert-file").unwrap_or_default();
        let key = self.get_str("gearpump.tls.key-file").unwrap_or_default();
        let ca = self.get_str("gearpump.tls.ca-file").unwrap_or_default();
        let ca = if ca.is_empty() { cert } else { ca };
        if ca.is_empty() {
            return Err(invalid(
                "gearpump.tls.ca-file",
                "",
                "must be set (or gearpump.tls.cert-file) when gearpump.tls.enabled is true",
            ));
        }
        let identity = match (cert.is_empty(), key.is_empty()) {
            (false, false) => Some((std::path::Path::new(cert), std::path::Path::new(key))),
            (true, true) => None,
            (false, true) => {
                return Err(invalid("gearpump.tls.key-file", "", "must be set when gearpump.tls.cert-file is"));
            }
            (true, false) => {
                return Err(invalid("gearpump.tls.cert-file", "", "must be set when gearpump.tls.key-file is"));
            }
        };
        let ca_key = if self.get_str("gearpump.tls.ca-file").unwrap_or_default().is_empty() {
            "gearpump.tls.cert-file"
        } else {
            "gearpump.tls.ca-file"
        };
        gearpump_core::tls::Tls::new(std::path::Path::new(ca), identity).map(Some).map_err(|e| {
            tls_invalid(e, |what| match what {
                "TLS CA file" => ca_key,
                "TLS key file" => "gearpump.tls.key-file",
                _ => "gearpump.tls.cert-file",
            })
        })
    }

    /// HTTPS for the REST API and dashboard (`gearpump.services.tls.*`, falling back to the
    /// control plane's certificate and key), when `gearpump.services.tls.enabled`.
    pub fn services_tls(
        &self,
    ) -> Result<Option<std::sync::Arc<gearpump_core::tls::rustls::ServerConfig>>, ConfigError> {
        if !self.get_bool("gearpump.services.tls.enabled")? {
            return Ok(None);
        }
        let pick = |own: &str, shared: &str| -> &str {
            let v = self.get_str(own).unwrap_or_default();
            if v.is_empty() { self.get_str(shared).unwrap_or_default() } else { v }
        };
        let cert = pick("gearpump.services.tls.cert-file", "gearpump.tls.cert-file");
        let key = pick("gearpump.services.tls.key-file", "gearpump.tls.key-file");
        if cert.is_empty() || key.is_empty() {
            return Err(invalid(
                "gearpump.services.tls.cert-file",
                cert,
                "and key-file must be set (or gearpump.tls.cert-file and key-file) when gearpump.services.tls.enabled \
                 is true",
            ));
        }
        gearpump_core::tls::server_config(std::path::Path::new(cert), std::path::Path::new(key)).map(Some).map_err(
            |e| {
                tls_invalid(e, |what| match what {
                    "TLS key file" => "gearpump.services.tls.key-file",
                    _ => "gearpump.services.tls.cert-file",
                })
            },
        )
    }

    /// The REST/dashboard port: `gearpump.services.port` if a layer set it, else
    /// `gearpump.services.http`.
    pub fn services_port(&self) -> Result<u16, ConfigError> {
        let port_set =
            self.values.get("gearpump.services.port") != Self::defaults().values.get("gearpump.services.port");
        self.get_num(if port_set { "gearpump.services.port" } else { "gearpump.services.http" })
    }

    /// The guide's keys a layer set that have no effect here, each with why ([`NO_EFFECT`]).
    pub fn without_effect(&self) -> impl Iterator<Item = (&str, &'static str)> {
        self.without_effect.iter().filter_map(|k| no_effect(k).map(|why| (k.as_str(), why)))
    }

    /// Checks every typed key once, and the relations between keys, so a daemon fails at
    /// start-up rather than later.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.settings()?;
        self.cluster_secret()?;
        self.services_tls()?;
        self.services_port()?;
        for key in [
            "gearpump.worker.slots",
            "gearpump.cluster.heartbeat-interval-ms",
            "gearpump.cluster.worker-timeout-ms",
            "gearpump.cluster.master-timeout-ms",
            "gearpump.netty.max-retries",
            "gearpump.netty.base-sleep-ms",
            "gearpump.netty.max-sleep-ms",
            "gearpump.streaming.ack-once-every-message-count",
            "gearpump.streaming.max-pending-message-count-per-connection",
            "gearpump.application.total-retries",
            "gearpump.application.stop-timeout-ms",
            "gearpump.metrics.sample-rate",
            "gearpump.metrics.report-interval-ms",
            "gearpump.retainHistoryData.hours",
            "gearpump.retainHistoryData.intervalMs",
            "gearpump.retainRecentData.seconds",
            "gearpump.retainRecentData.intervalMs",
            "gearpump.network.max-connections",
            "gearpump.network.hello-timeout-ms",
            "gearpump.services.body-limit-bytes",
            "gearpump.services.upload-limit-bytes",
            "gearpump.ui-security.session-timeout-ms",
        ] {
            let n: u64 = self.get_num(key)?;
            if n == 0 && !key.contains("retries") {
                return Err(invalid(key, "0", "must be positive"));
            }
        }
        // Counts that travel as 32-bit numbers: a value that does not fit is an error, not
        // a default in disguise.
        for key in ["gearpump.worker.slots", "gearpump.network.max-connections", "gearpump.network.hello-timeout-ms"] {
            self.get_num::<u32>(key)?;
        }
        self.get_num::<u16>("gearpump.metrics.graphite.port")?;
        self.get_bool("gearpump.metrics.enabled")?;
        self.get_bool("gearpump.ui-security.authentication-enabled")?;
        self.get_strings("gearpump.services.allowed-hosts")?;
        let reporter = self.get_str("gearpump.metrics.reporter").unwrap_or_default();
        if !["logfile", "graphite", "akka"].contains(&reporter) {
            return Err(invalid("gearpump.metrics.reporter", reporter, "is not one of logfile, graphite, akka"));
        }
        self.check_relations()?;
        let scheduler = self.get_str("gearpump.scheduling.scheduler-class").unwrap_or_default();
        if !["priority", "io.gearpump.cluster.scheduler.PriorityScheduler", "fifo"].contains(&scheduler) {
            return Err(invalid(
                "gearpump.scheduling.scheduler-class",
                scheduler,
                "is not a known scheduler (priority, fifo)",
            ));
        }
        Ok(())
    }
}

impl GearConfig {
    /// Relations between keys that each look fine alone.
    fn check_relations(&self) -> Result<(), ConfigError> {
        let num = |k: &str| self.get_num::<u64>(k);
        let must_be_below = |low: &str, high: &str, why: &str| -> Result<(), ConfigError> {
            let (l, h) = (num(low)?, num(high)?);
            if l < h {
                Ok(())
            } else {
                Err(invalid(low, &l.to_string(), &format!("must be less than {high} ({h}): {why}")))
            }
        };
        must_be_below(
            "gearpump.cluster.heartbeat-interval-ms",
            "gearpump.cluster.worker-timeout-ms",
            "a worker would be declared dead between two heartbeats",
        )?;
        must_be_below(
            "gearpump.cluster.heartbeat-interval-ms",
            "gearpump.cluster.master-timeout-ms",
            "workers would give up on the master between two heartbeats",
        )?;
        let (base, max) = (num("gearpump.netty.base-sleep-ms")?, num("gearpump.netty.max-sleep-ms")?);
        if base > max {
            return Err(invalid(
                "gearpump.netty.base-sleep-ms",
                &base.to_string(),
                &format!("must not exceed gearpump.netty.max-sleep-ms ({max})"),
            ));
        }
        let (every, pending) = (
            num("gearpump.streaming.ack-once-every-message-count")?,
            num("gearpump.streaming.max-pending-message-count-per-connection")?,
        );
        if every > pending {
            return Err(invalid(
                "gearpump.streaming.ack-once-every-message-count",
                &every.to_string(),
                &format!(
                    "must not exceed gearpump.streaming.max-pending-message-count-per-connection ({pending}): \
                     a sender would reach its limit before it asks for an ack, and stall each time"
                ),
            ));
        }
        for (interval, keep, unit) in [
            ("gearpump.retainRecentData.intervalMs", "gearpump.retainRecentData.seconds", 1000),
            ("gearpump.retainHistoryData.intervalMs", "gearpump.retainHistoryData.hours", 3_600_000),
        ] {
            let (i, k) = (num(interval)?, num(keep)?.saturating_mul(unit));
            if i > k {
                return Err(invalid(interval, &i.to_string(), &format!("must not exceed what {keep} keeps ({k} ms)")));
            }
        }
        Ok(())
    }
}

/// Why `key` has no effect, if it is one of [`NO_EFFECT`].
fn no_effect(key: &str) -> Option<&'static str> {
    NO_EFFECT.iter().find(|(k, _)| *k == key).map(|(_, why)| *why)
}

/// `text` (HOCON) as flat `a.b.c` keys, not yet checked.
fn parse_layer(source_name: &str, text: &str) -> Result<BTreeMap<String, HoconValue>, ConfigError> {
    let parsed = hocon::parse(text)
        .map_err(|e| ConfigError::Parse { source_name: source_name.into(), message: e.to_string() })?;
    let mut layer = BTreeMap::new();
    for key in parsed.keys() {
        if let Some(v) = parsed.get(key) {
            flatten(key, v, &mut layer);
        }
    }
    Ok(layer)
}

/// What an error shows instead of a secret value.
const MASKED: &str = "<secret>";

/// A TLS file that cannot be used, as an error naming the key that gave it (`key_of` maps
/// what the file was for to that key).
fn tls_invalid(e: gearpump_core::tls::TlsError, key_of: impl Fn(&str) -> &'static str) -> ConfigError {
    match e {
        gearpump_core::tls::TlsError::File { what, path, reason } => {
            invalid(key_of(what), &path.display().to_string(), &format!("cannot be used as the {what}: {reason}"))
        }
        e @ gearpump_core::tls::TlsError::Rustls(_) => {
            invalid(key_of("TLS key file"), "", &format!("cannot be used: {e}"))
        }
    }
}

fn invalid(key: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid { key: key.into(), value: value.into(), reason: reason.into() }
}

fn parse_bool(raw: &str) -> Option<bool> {
    match raw {
        "true" | "yes" | "on" => Some(true),
        "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn scalar_raw(v: &HoconValue) -> Option<&str> {
    match v {
        HoconValue::Scalar(s) => Some(s.raw.as_str()),
        _ => None,
    }
}

fn describe(v: &HoconValue) -> String {
    match v {
        HoconValue::Scalar(s) => format!("{:?}", s.raw),
        HoconValue::Array(_) => "a list".into(),
        HoconValue::Object(_) => "an object".into(),
        _ => "an unresolved value".into(),
    }
}

fn render(v: &HoconValue) -> String {
    match v {
        HoconValue::Scalar(s) => s.raw.clone(),
        HoconValue::Array(items) => format!("[{}]", items.iter().map(render).collect::<Vec<_>>().join(", ")),
        HoconValue::Object(m) if m.is_empty() => "{}".into(),
        _ => "{…}".into(),
    }
}

/// Flattens objects into dotted leaf paths; empty objects and lists are leaves.
fn flatten(prefix: &str, value: &HoconValue, out: &mut BTreeMap<String, HoconValue>) {
    match value {
        HoconValue::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                // Keys with anything but plain identifier characters (type names in free maps)
                // are quoted, to stay one segment and to render back as valid HOCON.
                let plain = !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                let segment = if plain { k.clone() } else { format!("\"{k}\"") };
                flatten(&format!("{prefix}.{segment}"), v, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), value.clone());
        }
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == cb { prev } else { 1 + prev.min(row[j]).min(row[j + 1]) };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key of the guide's Configuration Guide, with its default.
    const GUIDE: &[(&str, &str)] = &[
        ("gearpump.hostname", "127.0.0.1"),
        ("gearpump.cluster.masters", "[127.0.0.1:3000]"),
        ("gearpump.metrics.enabled", "false"),
        ("gearpump.metrics.sample-rate", "10"),
        ("gearpump.metrics.report-interval-ms", "15000"),
        ("gearpump.metrics.reporter", "logfile"),
        ("gearpump.metrics.graphite.host", "127.0.0.1"),
        ("gearpump.metrics.graphite.port", "2003"),
        ("gearpump.retainHistoryData.hours", "72"),
        ("gearpump.retainHistoryData.intervalMs", "3600000"),
        ("gearpump.retainRecentData.seconds", "300"),
        ("gearpump.retainRecentData.intervalMs", "15000"),
        ("gearpump.log.daemon.dir", "logs"),
        ("gearpump.log.application.dir", "logs"),
        ("gearpump.serializers", "{}"),
        ("gearpump.worker.slots", "100"),
        ("gearpump.appmaster.vmargs", ""),
        ("gearpump.appmaster.extraClasspath", ""),
        ("gearpump.executor.vmargs", ""),
        ("gearpump.executor.extraClasspath", ""),
        ("gearpump.jarstore.rootpath", "jarstore/"),
        ("gearpump.scheduling.scheduler-class", "priority"),
        ("gearpump.services.host", "127.0.0.1"),
        ("gearpump.services.port", "8090"),
        ("gearpump.services.ws", "8091"),
        ("gearpump.netty.buffer-size", "5242880"),
        ("gearpump.netty.max-retries", "30"),
        ("gearpump.netty.base-sleep-ms", "100"),
        ("gearpump.netty.max-sleep-ms", "1000"),
        ("gearpump.netty.message-batch-size", "262144"),
        ("gearpump.netty.fulsh-check-interval", "10"),
        ("gearpump.task-dispatcher", "pinned"),
        ("gearpump.streaming.ack-once-every-message-count", "100"),
        ("gearpump.streaming.max-pending-message-count-per-connection", "1000"),
        ("gearpump.application.total-retries", "5"),
    ];

    #[test]
    fn defaults_carry_every_guide_key() {
        let conf = GearConfig::defaults();
        let entries: BTreeMap<&str, String> = conf.entries().collect();
        for (key, value) in GUIDE {
            if no_effect(key).is_some() {
                // Accepted from a layer, noted, and left out of the values.
                let set = GearConfig::defaults().with_str("a.conf", &format!("{key} = {value:?}")).unwrap();
                assert_eq!(set.without_effect().map(|(k, _)| k).collect::<Vec<_>>(), vec![*key]);
                assert!(!set.entries().any(|(k, _)| k == *key), "{key}");
                continue;
            }
            assert_eq!(entries.get(key).map(String::as_str), Some(*value), "{key}");
        }
        conf.validate().unwrap();
        assert_eq!(conf.masters().unwrap(), vec![HostPort { host: "127.0.0.1".into(), port: 3000 }]);
        assert_eq!(conf.services_port().unwrap(), 8090);
    }

    #[test]
    fn layers_stack_with_later_ones_winning() {
        let conf = GearConfig::defaults()
            .with_str("conf/gear.conf", "gearpump { worker.slots = 4, hostname = \"a\" }")
            .unwrap()
            .with_str(
                "-conf extra.conf",
                "gearpump.worker.slots = 6\ngearpump.cluster.masters = [\"h1:3000\", \"h2:3001\"]",
            )
            .unwrap()
            .with_override("gearpump.hostname", "b")
            .unwrap();
        assert_eq!(conf.worker_slots(), 6);
        assert_eq!(conf.hostname(), "b");
        assert_eq!(conf.masters().unwrap().len(), 2);
        assert_eq!(conf.layers(), ["defaults", "conf/gear.conf", "-conf extra.conf", "command line"]);
    }

    #[test]
    fn bad_layers_name_the_key_and_the_file() {
        let cases: &[(&str, &str)] = &[
            (
                "gearpump.worker.slotz = 3",
                "a.conf: unknown config key `gearpump.worker.slotz` (did you mean `gearpump.worker.slots`?)",
            ),
            ("gearpump.nonsense.thing = 3", "a.conf: unknown config key `gearpump.nonsense.thing`"),
            (
                "gearpump.worker.slots = many",
                "a.conf: config key `gearpump.worker.slots` must be a number, found \"many\"",
            ),
            (
                "gearpump.metrics.enabled = 3",
                "a.conf: config key `gearpump.metrics.enabled` must be true or false, found \"3\"",
            ),
            (
                "gearpump.cluster.masters = \"h:1\"",
                "a.conf: config key `gearpump.cluster.masters` must be a list, found \"h:1\"",
            ),
            ("gearpump.worker = 3", "a.conf: unknown config key `gearpump.worker`"),
        ];
        for (text, expected) in cases {
            let err = GearConfig::defaults().with_str("a.conf", text).unwrap_err();
            assert_eq!(err.to_string(), *expected, "{text}");
        }
        let err = GearConfig::defaults().with_str("a.conf", "gearpump { worker {").unwrap_err();
        assert!(matches!(err, ConfigError::Parse { ref source_name, .. } if source_name == "a.conf"), "{err}");
        let err = GearConfig::defaults().with_file(Path::new("/no/such/gear.conf")).unwrap_err();
        assert!(err.to_string().starts_with("/no/such/gear.conf: cannot read"), "{err}");
    }

    #[test]
    fn validation_names_bad_values() {
        let cases: &[(&str, &str)] = &[
            ("gearpump.cluster.masters = [\"nohost\"]", "gearpump.cluster.masters"),
            ("gearpump.cluster.masters = [\"h:99999\"]", "gearpump.cluster.masters"),
            ("gearpump.cluster.masters = []", "gearpump.cluster.masters"),
            ("gearpump.worker.slots = -1", "gearpump.worker.slots"),
            // Registered a worker with the default 100 slots before.
            ("gearpump.worker.slots = 5000000000", "gearpump.worker.slots"),
            ("gearpump.network.max-connections = 0", "gearpump.network.max-connections"),
            ("gearpump.network.hello-timeout-ms = 99999999999", "gearpump.network.hello-timeout-ms"),
            ("gearpump.streaming.ack-once-every-message-count = 0", "gearpump.streaming.ack-once-every-message-count"),
            ("gearpump.metrics.reporter = \"kafka\"", "gearpump.metrics.reporter"),
            ("gearpump.services.port = 70000", "gearpump.services.port"),
        ];
        for (text, key) in cases {
            let conf = GearConfig::defaults().with_str("a.conf", text).unwrap();
            match conf.validate().unwrap_err() {
                ConfigError::Invalid { key: k, .. } => assert_eq!(&k, key, "{text}"),
                other => panic!("{text}: {other}"),
            }
        }
    }

    #[test]
    fn tls_settings_that_cannot_be_used_are_errors_naming_the_key_and_file() {
        let check = |text: &str| {
            let conf = GearConfig::defaults().with_str("a.conf", text).unwrap();
            conf.validate().map(|()| conf.cluster_secret().unwrap().tls().is_some()).map_err(|e| e.to_string())
        };
        assert_eq!(check(""), Ok(false), "off by default");
        let missing = check("gearpump.tls.enabled = true");
        assert!(missing.as_ref().is_err_and(|e| e.contains("gearpump.tls.ca-file")), "{missing:?}");
        let only_cert = check("gearpump.tls.enabled = true\ngearpump.tls.cert-file = \"/x.crt\"");
        assert!(only_cert.as_ref().is_err_and(|e| e.contains("gearpump.tls.key-file")), "{only_cert:?}");
        let no_file = check(
            "gearpump.tls.enabled = true\ngearpump.tls.cert-file = \"/no/such.crt\"\ngearpump.tls.key-file = \"/k\"",
        );
        assert!(
            no_file.as_ref().is_err_and(|e| e.contains("gearpump.tls.cert-file") && e.contains("/no/such.crt")),
            "{no_file:?}"
        );
        let https = check("gearpump.services.tls.enabled = true");
        assert!(https.as_ref().is_err_and(|e| e.contains("gearpump.services.tls.cert-file")), "{https:?}");
    }

    #[test]
    fn the_cluster_secret_comes_from_the_config_or_a_file_and_errors_never_show_it() {
        let secret = |text: &str| GearConfig::defaults().with_str("a.conf", text).unwrap().cluster_secret();
        assert!(!secret("").unwrap().is_set());
        assert!(secret("gearpump.cluster.secret = \"a long enough secret\"").unwrap().is_set());
        let dir = std::env::temp_dir().join(format!("gear-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "a long enough secret\nsecond line ignored\n").unwrap();
        let from_file = secret(&format!("gearpump.cluster.secret-file = \"{}\"", file.display())).unwrap();
        assert_eq!(from_file, secret("gearpump.cluster.secret = \"a long enough secret\"").unwrap());
        for (text, key) in [
            ("gearpump.cluster.secret = \"short-secret\"", "gearpump.cluster.secret"),
            (
                "gearpump.cluster.secret = \"a long enough secret\"\ngearpump.cluster.secret-file = \"/x\"",
                "gearpump.cluster.secret",
            ),
            ("gearpump.cluster.secret-file = \"/no/such/secret\"", "gearpump.cluster.secret-file"),
        ] {
            let err = secret(text).unwrap_err();
            assert!(matches!(&err, ConfigError::Invalid { key: k, .. } if k == key), "{text}: {err}");
            assert!(!err.to_string().contains("short-secret") && !err.to_string().contains("enough"), "{err}");
            let conf = GearConfig::defaults().with_str("a.conf", text).unwrap();
            assert!(conf.validate().is_err(), "validate checks the secret: {text}");
        }
        std::fs::write(&file, "tiny\n").unwrap();
        let err = secret(&format!("gearpump.cluster.secret-file = \"{}\"", file.display())).unwrap_err();
        assert!(err.to_string().contains("at least 16") && !err.to_string().contains("tiny"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_newer_clusters_keys_are_left_out_where_asked_and_known_ones_still_checked() {
        let text = "gearpump.worker.slots = 7\ngearpump.some-future.key = 1\n";
        assert!(GearConfig::defaults().with_str("c", text).is_err());
        let (conf, ignored) = GearConfig::defaults().with_str_ignoring_unknown("c", text).unwrap();
        assert_eq!(ignored, vec!["gearpump.some-future.key".to_string()]);
        assert_eq!(conf.worker_slots(), 7);
        let bad = GearConfig::defaults().with_str_ignoring_unknown("c", "gearpump.worker.slots = many\n");
        assert!(matches!(bad, Err(ConfigError::WrongType { .. })), "{bad:?}");
    }

    #[test]
    fn free_maps_take_any_key() {
        let conf = GearConfig::defaults()
            .with_str("app", "gearpump.serializers { \"my_app::Point\" = \"point_codec\" }")
            .unwrap();
        assert_eq!(conf.map("gearpump.serializers").get("my_app::Point").map(String::as_str), Some("point_codec"));
        let dotted = GearConfig::defaults().with_str("app", "gearpump.serializers { \"a.b.C\" = \"c\" }").unwrap();
        assert_eq!(dotted.map("gearpump.serializers").get("a.b.C").map(String::as_str), Some("c"));
    }

    #[test]
    fn to_hocon_round_trips() {
        let conf = GearConfig::defaults()
            .with_str("a", "gearpump.worker.slots = 7\ngearpump.serializers { \"a.b::C\" = \"c\", \"x::Y\" = \"y\" }\ngearpump.hostname = \"h w\"")
            .unwrap();
        let back = GearConfig::defaults().with_str("system config", &conf.to_hocon()).unwrap();
        assert_eq!(back.entries().collect::<Vec<_>>(), conf.entries().collect::<Vec<_>>());
        assert_eq!(back.map("gearpump.serializers").get("a.b::C").map(String::as_str), Some("c"));
        assert_eq!(back.map("gearpump.serializers").get("x::Y").map(String::as_str), Some("y"));
    }

    #[test]
    fn services_port_follows_whichever_key_was_set() {
        let via_port = GearConfig::defaults().with_str("a", "gearpump.services.port = 9000").unwrap();
        assert_eq!(via_port.services_port().unwrap(), 9000);
        let via_http = GearConfig::defaults().with_str("a", "gearpump.services.http = 9001").unwrap();
        assert_eq!(via_http.services_port().unwrap(), 9001);
    }

    #[test]
    fn relations_between_keys_are_checked_and_named() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "gearpump.cluster.heartbeat-interval-ms = 5000",
                "gearpump.cluster.heartbeat-interval-ms",
                "worker-timeout-ms",
            ),
            (
                "gearpump.cluster { heartbeat-interval-ms = 500, master-timeout-ms = 400, worker-timeout-ms = 9000 }",
                "gearpump.cluster.heartbeat-interval-ms",
                "master-timeout-ms",
            ),
            ("gearpump.netty.base-sleep-ms = 2000", "gearpump.netty.base-sleep-ms", "max-sleep-ms (1000)"),
            (
                "gearpump.streaming.ack-once-every-message-count = 2000",
                "gearpump.streaming.ack-once-every-message-count",
                "before it asks for an ack",
            ),
            ("gearpump.retainRecentData.intervalMs = 301000", "gearpump.retainRecentData.intervalMs", "300000 ms"),
        ];
        for (text, key, why) in cases {
            let conf = GearConfig::defaults().with_str("a.conf", text).unwrap();
            let e = conf.validate().unwrap_err();
            assert!(matches!(&e, ConfigError::Invalid { key: k, .. } if k == key), "{text}: {e}");
            assert!(e.to_string().contains(why), "{text}: {e}");
        }
        let fine = "gearpump.cluster { heartbeat-interval-ms = 200, worker-timeout-ms = 300 }";
        GearConfig::defaults().with_str("a.conf", fine).unwrap().validate().unwrap();
    }
}
