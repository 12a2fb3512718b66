//! Application time.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Application time in milliseconds since the Unix epoch (or any origin the application picks).
///
/// Message timestamps, watermarks and the min clock are all `Timestamp`s. A watermark of
/// [`Timestamp::MAX`] means "no message will ever come": a source that reports it has ended, and an
/// application whose min clock reaches it has succeeded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The earliest time; also the "no timestamp" of the guide's `Message.noTimeStamp`.
    pub const MIN: Timestamp = Timestamp(i64::MIN);
    /// The end of time: a watermark at `MAX` means the stream has ended.
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    /// The system time now, in milliseconds since the Unix epoch.
    pub fn now() -> Timestamp {
        let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        Timestamp(i64::try_from(millis).unwrap_or(i64::MAX))
    }

    /// Milliseconds since the epoch.
    pub const fn millis(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Timestamp::MAX => f.write_str("MAX"),
            Timestamp::MIN => f.write_str("MIN"),
            Timestamp(t) => write!(f, "{t}"),
        }
    }
}
