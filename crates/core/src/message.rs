//! Messages and their values.
//!
//! A [`Message`] is a value plus a [`Timestamp`]. Values of the commonest types (`String`,
//! `Vec<u8>`, `u64`, `i64`, `f64`) are held in the message itself, so a message of one costs no
//! allocation of its own and no reference counting; any other value is held as `Arc<dyn Value>`:
//! moving a message between tasks of one process moves a pointer, never the bytes, and fanning
//! it out (broadcast, several downstream processors) bumps a reference count. Values are
//! immutable, as the guide requires.
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

/// `hash mod partitions` (0 when there are none): the partition a hash picks. A mask when
/// `partitions` is a power of two (the same result, without a 64-bit division's latency on
/// every message).
#[inline]
pub fn partition_of(hash: u64, partitions: u32) -> u32 {
    let n = u64::from(partitions.max(1));
    (if n.is_power_of_two() { hash & (n - 1) } else { hash % n }) as u32
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
///
/// Values of the commonest types (`String`, `Vec<u8>`, `u64`, `i64`, `f64`) are held in the
/// message itself: making one, moving it to a task of the same process and taking the value out
/// again with [`Message::into_value`] allocate nothing beyond the value's own buffer and touch no
/// reference count. Any other value is held behind an `Arc`, so fanning it out (broadcast,
/// several downstream processors) bumps a count instead of copying; cloning a message of an
/// inline type clones the value.
#[derive(Clone)]
pub struct Message {
    value: Repr,
    timestamp: Timestamp,
}

/// How a message holds its value.
#[derive(Clone)]
enum Repr {
    Str(String),
    Bytes(Vec<u8>),
    U64(u64),
    I64(i64),
    F64(f64),
    Shared(Arc<dyn Value>),
}

/// Moves `value` into `Repr`'s inline variant for its type, or gives it back.
#[inline(always)]
fn inline<T: Value>(value: T) -> Result<Repr, T> {
    cast(value)
        .map(Repr::Str)
        .or_else(|v| cast(v).map(Repr::Bytes))
        .or_else(|v| cast(v).map(Repr::U64))
        .or_else(|v| cast(v).map(Repr::I64))
        .or_else(|v| cast(v).map(Repr::F64))
}

/// `value` as a `U` when `V` is `U` (a move), or `value` back. Monomorphised per pair of types,
/// so the test is decided at compile time.
#[inline(always)]
fn cast<V: Any, U: Any>(value: V) -> Result<U, V> {
    let mut slot = Some(value);
    match (&mut slot as &mut dyn Any).downcast_mut::<Option<U>>() {
        Some(u) => Ok(u.take().expect("the slot was just filled")),
        None => Err(slot.expect("the slot was just filled")),
    }
}

/// The postcard encoding of a length: LEB128.
#[inline]
fn varint(mut n: u64, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = 0;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            buf[i] = byte;
            return &buf[..=i];
        }
        buf[i] = byte | 0x80;
        i += 1;
    }
}

/// [`serde_hash`] of a string, without serde's machinery: the same bytes into the same hasher
/// (its length as postcard writes it, then its bytes).
#[inline]
fn str_hash(s: &str) -> u64 {
    let bytes = s.as_bytes();
    let mut h = rustc_hash::FxHasher::default();
    let mut buf = [0u8; 10];
    h.write(varint(bytes.len() as u64, &mut buf));
    h.write(bytes);
    h.finish()
}

impl Message {
    /// Creates a message from a value and a timestamp.
    #[inline]
    pub fn new<T: Value>(value: T, timestamp: Timestamp) -> Self {
        let value = match inline(value) {
            Ok(repr) => repr,
            Err(value) => Repr::Shared(Arc::new(value)),
        };
        Message { value, timestamp }
    }

    /// Creates a message that shares an already allocated value (no copy, no allocation).
    pub fn from_shared(value: Arc<dyn Value>, timestamp: Timestamp) -> Self {
        Message { value: Repr::Shared(value), timestamp }
    }

    /// The message's timestamp.
    #[inline]
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// The value, type-erased.
    #[inline]
    pub fn value(&self) -> &dyn Value {
        match &self.value {
            Repr::Str(v) => v,
            Repr::Bytes(v) => v,
            Repr::U64(v) => v,
            Repr::I64(v) => v,
            Repr::F64(v) => v,
            Repr::Shared(v) => &**v,
        }
    }

    /// The value behind an `Arc`, for sending it on many times without copying: the message's
    /// own when it holds one, a new one (the value copied once) when it holds its value inline.
    pub fn shared_value(&self) -> Arc<dyn Value> {
        match &self.value {
            Repr::Str(v) => Arc::new(v.clone()),
            Repr::Bytes(v) => Arc::new(v.clone()),
            Repr::U64(v) => Arc::new(*v),
            Repr::I64(v) => Arc::new(*v),
            Repr::F64(v) => Arc::new(*v),
            Repr::Shared(v) => v.clone(),
        }
    }

    /// A hash of the value, stable across processes and builds: [`Value::hash_code`], computed
    /// without serde for the types held inline (the same result).
    #[inline]
    pub fn hash_code(&self) -> u64 {
        match &self.value {
            Repr::Str(v) => str_hash(v),
            // Serde writes a `Vec<u8>` as a sequence of single bytes: hashed as serde does.
            Repr::Bytes(v) => serde_hash(v),
            Repr::U64(v) => serde_hash(v),
            Repr::I64(v) => serde_hash(v),
            Repr::F64(v) => serde_hash(v),
            Repr::Shared(v) => v.hash_code(),
        }
    }

    /// The value as a `T`, or `None` if it is of another type.
    #[inline]
    pub fn get<T: Value>(&self) -> Option<&T> {
        let any: &dyn Any = self.value();
        any.downcast_ref::<T>()
    }

    /// Takes the value out as a `T`: a move for the types held inline and for a value behind an
    /// `Arc` that no other message shares, a clone otherwise. Gives the message back if the
    /// value is of another type.
    #[inline]
    pub fn into_value<T: Value + Clone>(self) -> Result<T, Message> {
        let timestamp = self.timestamp;
        let back = |value| Message { value, timestamp };
        match self.value {
            Repr::Str(v) => cast(v).map_err(|v| back(Repr::Str(v))),
            Repr::Bytes(v) => cast(v).map_err(|v| back(Repr::Bytes(v))),
            Repr::U64(v) => cast(v).map_err(|v| back(Repr::U64(v))),
            Repr::I64(v) => cast(v).map_err(|v| back(Repr::I64(v))),
            Repr::F64(v) => cast(v).map_err(|v| back(Repr::F64(v))),
            Repr::Shared(v) => {
                if !(&*v as &dyn Any).is::<T>() {
                    return Err(back(Repr::Shared(v)));
                }
                let any: Arc<dyn Any + Send + Sync> = v;
                match any.downcast::<T>() {
                    Ok(arc) => Ok(Arc::try_unwrap(arc).unwrap_or_else(|shared| (*shared).clone())),
                    Err(_) => unreachable!("the type was checked above"),
                }
            }
        }
    }

    /// A new message with the same value and another timestamp.
    pub fn with_timestamp(&self, timestamp: Timestamp) -> Message {
        Message { value: self.value.clone(), timestamp }
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message").field("value", &self.value()).field("timestamp", &self.timestamp).finish()
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
    fn inline_values_come_back_as_their_type_only() {
        let s = Message::new(String::from("word"), Timestamp(3));
        assert_eq!(s.get::<String>().map(String::as_str), Some("word"));
        assert_eq!(s.get::<Vec<u8>>(), None);
        assert_eq!(s.value().type_name(), "alloc::string::String");
        let s = s.into_value::<u64>().expect_err("a String is not a u64");
        assert_eq!(s.timestamp(), Timestamp(3));
        assert_eq!(s.clone().into_value::<String>().unwrap(), "word");
        assert_eq!(s.shared_value().type_name(), "alloc::string::String");
        assert_eq!(Message::new(vec![1u8, 2], Timestamp(0)).into_value::<Vec<u8>>().unwrap(), vec![1, 2]);
        assert_eq!(Message::new(5u64, Timestamp(0)).into_value::<u64>().unwrap(), 5);
        assert_eq!(Message::new(-5i64, Timestamp(0)).into_value::<i64>().unwrap(), -5);
        assert_eq!(Message::new(0.5f64, Timestamp(0)).into_value::<f64>().unwrap(), 0.5);
        assert!(Message::new(5u64, Timestamp(0)).into_value::<i64>().is_err());
        // Other types sit behind an Arc and come back the same way.
        let pair = Message::new((1u32, String::from("x")), Timestamp(0));
        assert_eq!(pair.get::<(u32, String)>(), Some(&(1, String::from("x"))));
        assert_eq!(pair.into_value::<(u32, String)>().unwrap(), (1, String::from("x")));
    }

    #[test]
    fn the_direct_hash_equals_the_serde_hash() {
        for len in [0usize, 1, 9, 127, 128, 300, 20_000] {
            let s: String = "abcdefghij".chars().cycle().take(len).collect();
            assert_eq!(Message::new(s.clone(), Timestamp(0)).hash_code(), serde_hash(&s), "a string of {len}");
            assert_eq!(Message::new(s.clone(), Timestamp(0)).hash_code(), s.hash_code());
            let b = s.into_bytes();
            assert_eq!(Message::new(b.clone(), Timestamp(0)).hash_code(), serde_hash(&b), "bytes of {len}");
        }
        for v in [0u64, 1, 300, u64::MAX] {
            assert_eq!(Message::new(v, Timestamp(0)).hash_code(), serde_hash(&v));
        }
        assert_eq!(Message::new(-7i64, Timestamp(0)).hash_code(), serde_hash(&-7i64));
        let shared = Message::from_shared(Arc::new(String::from("w")), Timestamp(0));
        assert_eq!(shared.hash_code(), Message::new(String::from("w"), Timestamp(0)).hash_code());
    }

    #[test]
    fn partition_of_is_the_remainder() {
        for n in [1u32, 2, 3, 4, 7, 8, 64, 100] {
            for h in [0u64, 1, 5, 1 << 40, u64::MAX, 0x9E37_79B9_7F4A_7C15] {
                assert_eq!(partition_of(h, n), (h % u64::from(n)) as u32, "{h} mod {n}");
            }
        }
        assert_eq!(partition_of(7, 0), 0);
    }

    #[test]
    fn encodes_with_postcard() {
        let mut out = Vec::new();
        (1u8, String::from("x")).encode(&mut out).unwrap();
        assert_eq!(out, vec![1, 1, b'x']);
    }
}
