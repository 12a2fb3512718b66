//! [`UserConfig`]: the configuration an application hands to its tasks.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Display;
use std::str::FromStr;

/// Typed key/value configuration, carried with the application and each processor.
///
/// Values are stored as strings so a configuration survives the trip to another process and can
/// be shown by the REST API as it is; [`UserConfig::get`] parses them on the way out and names the
/// key when a value does not parse.
///
/// ```
/// use gearpump_core::UserConfig;
/// let conf = UserConfig::empty().with("split.text", "a b").with("rounds", 3);
/// assert_eq!(conf.get::<u32>("rounds").unwrap(), Some(3));
/// assert_eq!(conf.get_or("missing", 5u32).unwrap(), 5);
/// assert!(conf.get::<u32>("split.text").is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserConfig {
    entries: BTreeMap<String, String>,
}

/// A configuration value could not be read as the type asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: cannot read {value:?} as {expected}: {reason}")]
pub struct ConfigError {
    /// The key whose value is wrong.
    pub key: String,
    /// The value found.
    pub value: String,
    /// The type expected.
    pub expected: &'static str,
    /// What the parser said.
    pub reason: String,
}

impl UserConfig {
    /// An empty configuration.
    pub fn empty() -> Self {
        UserConfig::default()
    }

    /// Returns this configuration with `key` set to `value`.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Display) -> Self {
        self.entries.insert(key.into(), value.to_string());
        self
    }

    /// Sets `key` to `value` in place.
    pub fn set(&mut self, key: impl Into<String>, value: impl Display) {
        self.entries.insert(key.into(), value.to_string());
    }

    /// Removes `key`; returns this configuration.
    #[must_use]
    pub fn without(mut self, key: &str) -> Self {
        self.entries.remove(key);
        self
    }

    /// The raw string value of `key`.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// The value of `key` parsed as `T`; `Ok(None)` when absent, an error naming the key when
    /// present but not a `T`.
    pub fn get<T>(&self, key: &str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.entries.get(key) {
            None => Ok(None),
            Some(raw) => raw.parse::<T>().map(Some).map_err(|e| ConfigError {
                key: key.to_string(),
                value: raw.clone(),
                expected: std::any::type_name::<T>(),
                reason: e.to_string(),
            }),
        }
    }

    /// The value of `key` parsed as `T`, or `default` when absent.
    pub fn get_or<T>(&self, key: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.get(key)?.unwrap_or(default))
    }

    /// Layers `other` on top of `self`: keys in `other` win.
    #[must_use]
    pub fn merge(mut self, other: &UserConfig) -> Self {
        for (k, v) in &other.entries {
            self.entries.insert(k.clone(), v.clone());
        }
        self
    }

    /// All entries, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_lets_the_right_side_win() {
        let base = UserConfig::empty().with("a", 1).with("b", 2);
        let top = UserConfig::empty().with("b", 3).with("c", 4);
        let merged = base.merge(&top);
        assert_eq!(merged.get::<i32>("a").unwrap(), Some(1));
        assert_eq!(merged.get::<i32>("b").unwrap(), Some(3));
        assert_eq!(merged.get::<i32>("c").unwrap(), Some(4));
    }

    #[test]
    fn ill_typed_value_names_the_key() {
        let conf = UserConfig::empty().with("rounds", "many");
        let err = conf.get::<u32>("rounds").unwrap_err();
        assert_eq!(err.key, "rounds");
        assert!(err.to_string().contains("rounds"), "{err}");
    }
}

/// Limits of one listening port, control or data (`gearpump.network.max-connections`,
/// `gearpump.network.hello-timeout-ms`): a daemon refuses connections over the limit and
/// closes a connection that has not said hello within the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortLimits {
    /// Connections open at once (1024).
    pub max_connections: usize,
    /// How long a new connection has to send its hello (10 s).
    pub hello_timeout: std::time::Duration,
}

impl Default for PortLimits {
    fn default() -> Self {
        PortLimits { max_connections: 1024, hello_timeout: std::time::Duration::from_secs(10) }
    }
}
