//! Messages and their values.
//!
//! A [`Message`] is a value plus a [`Timestamp`]. The value is held as `Arc<dyn Value>`: moving a
//! message between tasks of one process moves a pointer, never the bytes, and fanning a message
//! out (broadcast, several downstream processors) bumps a reference count. Values are immutable,
//! as the guide requires.
//!
//! [`Value`] is implemented for every `Send + Sync + Debug + Serialize + DeserializeOwned` type.
//! Serde is the default codec for the wire; [`Value::hash_code`] hashes the same encoding, so the
//! hash partitioner sends a key to the same task in every process of every build.

use crate::time::Timestamp;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::any::Any;
use std::fmt;
use std::hash::Hasher;
use std::sync::Arc;

/// A hash of `value`'s serde (postcard) encoding, stable across processes and builds: what
/// [`Value::hash_code`] gives, so a key hashed here lands where the hash partitioner sends a
/// message carrying it.
pub fn serde_hash<T: Serialize + ?Sized>(value: &T) -> u64 {
    let hasher = HashFlavor(rustc_hash::FxHasher::default());
    // Serialising into a hasher cannot fail for the types serde derives; a custom
    // `Serialize` that errors still hashes what it wrote before failing.
    postcard::serialize_with_flavor::<T, HashFlavor, u64>(value, hasher).unwrap_or_default()
}

/// A value that can travel in a [`Message`].
///
/// Blanket-implemented: any `T: Send + Sync + Debug + Serialize + DeserializeOwned + 'static`
/// is a `Value`. Take it back out with [`Message::get`] or [`Message::into_value`].
pub trait Value: Any + Send + Sync + fmt::Debug {
    /// The Rust type name of the value (diagnostics and codec registry keys).
    fn type_name(&self) -> &'static str;
    /// A hash of the value's serde encoding, stable across processes and builds.
    fn hash_code(&self) -> u64;
    /// Appends the value's default (postcard) encoding to `out`.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), CodecError>;
}

impl<T> Value for T
where
    T: Any + Send + Sync + fmt::Debug + Serialize + DeserializeOwned,
{
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }

    fn hash_code(&self) -> u64 {
        serde_hash(self)
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        // Straight into the frame buffer: no intermediate allocation per message.
        let len = out.len();
        let taken = std::mem::take(out);
        match postcard::to_extend(self, taken) {
            Ok(extended) => {
                *out = extended;
                Ok(())
            }
            Err(e) => Err(CodecError::Encode {
                type_name: std::any::type_name::<T>(),
                reason: format!("{e} (at byte {len})"),
            }),
        }
    }
}

/// A postcard flavor that feeds the encoding into a hasher instead of a buffer.
struct HashFlavor(rustc_hash::FxHasher);

impl postcard::ser_flavors::Flavor for HashFlavor {
    type Output = u64;

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.write_u8(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.write(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<u64> {
        Ok(self.0.finish())
    }
}

/// Encoding or decoding a value failed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The value could not be encoded.
    #[error("cannot encode a value of type {type_name}: {reason}")]
    Encode {
        /// The value's type.
        type_name: &'static str,
        /// What the encoder said.
        reason: String,
    },
    /// Bytes could not be decoded as the expected type.
    #[error("cannot decode a value of type {type_name}: {reason}")]
    Decode {
        /// The expected type.
        type_name: &'static str,
        /// What the decoder said.
        reason: String,
    },
}

/// A message: an immutable value and its application timestamp.
#[derive(Clone)]
pub struct Message {
    value: Arc<dyn Value>,
    timestamp: Timestamp,
}

impl Message {
    /// Creates a message from a value and a timestamp.
    pub fn new<T: Value>(value: T, timestamp: Timestamp) -> Self {
        Message { value: Arc::new(value), timestamp }
    }

    /// Creates a message that shares an already allocated value (no copy, no allocation).
    pub fn from_shared(value: Arc<dyn Value>, timestamp: Timestamp) -> Self {
        Message { value, timestamp }
    }

    /// The message's timestamp.
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// The value, type-erased.
    pub fn value(&self) -> &dyn Value {
        &*self.value
    }

    /// The shared value, for re-sending without copying.
    pub fn shared_value(&self) -> &Arc<dyn Value> {
        &self.value
    }

    /// The value as a `T`, or `None` if it is of another type.
    pub fn get<T: Value>(&self) -> Option<&T> {
        let any: &dyn Any = &*self.value;
        any.downcast_ref::<T>()
    }

    /// Takes the value out as a `T`: without copying when this is the last reference, by
    /// cloning otherwise. Gives the message back if the value is of another type.
    pub fn into_value<T: Value + Clone>(self) -> Result<T, Message> {
        let timestamp = self.timestamp;
        let any: Arc<dyn Any + Send + Sync> = self.value.clone();
        match any.downcast::<T>() {
            Ok(arc) => {
                drop(self);
                Ok(Arc::try_unwrap(arc).unwrap_or_else(|shared| (*shared).clone()))
            }
            Err(_) => Err(Message { value: self.value, timestamp }),
        }
    }

    /// A new message with the same value and another timestamp.
    pub fn with_timestamp(&self, timestamp: Timestamp) -> Message {
        Message { value: self.value.clone(), timestamp }
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message").field("value", &self.value).field("timestamp", &self.timestamp).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downcasts_to_the_stored_type_only() {
        let m = Message::new(7u64, Timestamp(1));
        assert_eq!(m.get::<u64>(), Some(&7));
        assert_eq!(m.get::<i64>(), None);
        assert_eq!(m.value().type_name(), "u64");
    }

    #[test]
    fn into_value_moves_when_unique_and_clones_when_shared() {
        let m = Message::new(String::from("a"), Timestamp(1));
        let shared = m.clone();
        assert_eq!(m.into_value::<String>().unwrap(), "a");
        assert_eq!(shared.clone().into_value::<String>().unwrap(), "a");
        assert!(shared.into_value::<u8>().is_err());
    }

    #[test]
    fn hash_code_is_a_function_of_the_value() {
        let a = Message::new(String::from("word"), Timestamp(1));
        let b = Message::new(String::from("word"), Timestamp(2));
        let c = Message::new(String::from("other"), Timestamp(1));
        assert_eq!(a.value().hash_code(), b.value().hash_code());
        assert_ne!(a.value().hash_code(), c.value().hash_code());
    }

    #[test]
    fn encodes_with_postcard() {
        let mut out = Vec::new();
        (1u8, String::from("x")).encode(&mut out).unwrap();
        assert_eq!(out, vec![1, 1, b'x']);
    }
}
