//! Which value types can cross a process boundary, and how.
//!
//! Inside a process a [`Message`](crate::Message) value is never encoded. Across processes the
//! receiver must rebuild a value of the right type from bytes, so every type that travels is
//! registered in a [`Codecs`] registry, the same in every process of an application (they all
//! run the same binary and build the same application). The wire carries a type's
//! [`type_hash`] (a hash of its Rust type name) once per run of equal types in a batch.
//!
//! Serde (postcard) is the default codec. A type can instead get a custom codec
//! ([`Codecs::register_custom`]), chosen per application or, by name, from
//! `gearpump.serializers` in `gear.conf`.

use crate::message::{CodecError, Value};
use serde::de::DeserializeOwned;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::Arc;

type DecodeFn = Arc<dyn Fn(&[u8]) -> Result<Arc<dyn Value>, CodecError> + Send + Sync>;
type EncodeFn = Arc<dyn Fn(&dyn Value, &mut Vec<u8>) -> Result<(), CodecError> + Send + Sync>;

/// The stable wire id of a type: a hash of its Rust type name.
pub fn type_hash(type_name: &str) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    h.write(type_name.as_bytes());
    h.finish()
}

/// A registered type's codec.
#[derive(Clone)]
pub struct Codec {
    /// The type's name.
    pub type_name: &'static str,
    /// Its wire id.
    pub hash: u64,
    decode: DecodeFn,
    encode: Option<EncodeFn>,
}

impl Codec {
    /// Encodes `value` (which must be of this codec's type).
    pub fn encode(&self, value: &dyn Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
        match &self.encode {
            Some(custom) => custom(value, out),
            None => value.encode(out),
        }
    }

    /// Decodes a value of this codec's type.
    pub fn decode(&self, bytes: &[u8]) -> Result<Arc<dyn Value>, CodecError> {
        (self.decode)(bytes)
    }
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Codec({}, custom: {})", self.type_name, self.encode.is_some())
    }
}

/// The types an application can send between processes.
#[derive(Clone, Debug)]
pub struct Codecs {
    by_hash: HashMap<u64, Codec>,
    by_type: HashMap<TypeId, u64>,
    /// Codecs the binary offers by name, for `gearpump.serializers` to choose from.
    named: HashMap<String, (TypeId, Codec)>,
}

impl Default for Codecs {
    /// The built-in types: strings, bytes, integers, floats, bools, `()`, and pairs and
    /// vectors of the common ones.
    fn default() -> Self {
        let mut c = Codecs { by_hash: HashMap::new(), by_type: HashMap::new(), named: HashMap::new() };
        c.register::<()>();
        c.register::<bool>();
        c.register::<String>();
        c.register::<Vec<u8>>();
        c.register::<Vec<String>>();
        c.register::<u8>();
        c.register::<u16>();
        c.register::<u32>();
        c.register::<u64>();
        c.register::<i8>();
        c.register::<i16>();
        c.register::<i32>();
        c.register::<i64>();
        c.register::<f32>();
        c.register::<f64>();
        c.register::<(String, u64)>();
        c.register::<(String, i64)>();
        c.register::<(u32, u64)>();
        c.register::<(u64, u64)>();
        c.register::<(String, String)>();
        c.register::<(i64, String)>();
        c
    }
}

impl Codecs {
    /// Registers `T` with the default serde codec.
    pub fn register<T: Value + DeserializeOwned>(&mut self) -> &mut Self {
        let decode: DecodeFn = Arc::new(|bytes: &[u8]| {
            postcard::from_bytes::<T>(bytes)
                .map(|v| Arc::new(v) as Arc<dyn Value>)
                .map_err(|e| CodecError::Decode { type_name: std::any::type_name::<T>(), reason: e.to_string() })
        });
        self.insert::<T>(decode, None)
    }

    /// Registers `T` with a custom codec.
    pub fn register_custom<T, E, D>(&mut self, encode: E, decode: D) -> &mut Self
    where
        T: Value,
        E: Fn(&T, &mut Vec<u8>) -> Result<(), CodecError> + Send + Sync + 'static,
        D: Fn(&[u8]) -> Result<T, CodecError> + Send + Sync + 'static,
    {
        let decode: DecodeFn = Arc::new(move |bytes: &[u8]| decode(bytes).map(|v| Arc::new(v) as Arc<dyn Value>));
        let encode: EncodeFn = Arc::new(move |value: &dyn Value, out: &mut Vec<u8>| {
            let any: &dyn Any = value;
            let typed = any.downcast_ref::<T>().ok_or_else(|| CodecError::Encode {
                type_name: std::any::type_name::<T>(),
                reason: format!("given a {}", value.type_name()),
            })?;
            encode(typed, out)
        });
        self.insert::<T>(decode, Some(encode))
    }

    /// Offers a custom codec for `T` under `name`, without using it: `gearpump.serializers`
    /// (`"<type name>" = "<name>"`) switches it on for the whole cluster
    /// ([`Codecs::apply_serializers`]).
    pub fn register_named<T, E, D>(&mut self, name: impl Into<String>, encode: E, decode: D) -> &mut Self
    where
        T: Value,
        E: Fn(&T, &mut Vec<u8>) -> Result<(), CodecError> + Send + Sync + 'static,
        D: Fn(&[u8]) -> Result<T, CodecError> + Send + Sync + 'static,
    {
        let mut scratch = Codecs { by_hash: HashMap::new(), by_type: HashMap::new(), named: HashMap::new() };
        scratch.register_custom(encode, decode);
        let codec = scratch.by_hash.into_values().next().expect("just registered");
        self.named.insert(name.into(), (TypeId::of::<T>(), codec));
        self
    }

    /// Switches on the named codecs `serializers` maps type names to (the system-level
    /// serializers of `gearpump.serializers`). An unknown codec name, or one made for another
    /// type, is an error naming both.
    pub fn apply_serializers<'a>(
        &mut self,
        serializers: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), String> {
        for (type_name, codec_name) in serializers {
            let Some((type_id, codec)) = self.named.get(codec_name) else {
                return Err(format!(
                    "gearpump.serializers: codec {codec_name:?} for type {type_name:?} is not in this application binary"
                ));
            };
            if codec.type_name != type_name {
                return Err(format!(
                    "gearpump.serializers: codec {codec_name:?} is for {}, not {type_name:?}",
                    codec.type_name
                ));
            }
            self.by_type.insert(*type_id, codec.hash);
            self.by_hash.insert(codec.hash, codec.clone());
        }
        Ok(())
    }

    fn insert<T: Value>(&mut self, decode: DecodeFn, encode: Option<EncodeFn>) -> &mut Self {
        let type_name = std::any::type_name::<T>();
        let hash = type_hash(type_name);
        self.by_type.insert(TypeId::of::<T>(), hash);
        self.by_hash.insert(hash, Codec { type_name, hash, decode, encode });
        self
    }

    /// Adds every codec of `other`, replacing this registry's for the same type.
    pub fn extend(&mut self, other: &Codecs) {
        self.by_hash.extend(other.by_hash.iter().map(|(k, v)| (*k, v.clone())));
        self.by_type.extend(other.by_type.iter().map(|(k, v)| (*k, *v)));
        self.named.extend(other.named.iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    /// The codec for a value about to be sent, or an error naming its unregistered type.
    pub fn for_value(&self, value: &dyn Value) -> Result<&Codec, CodecError> {
        let any: &dyn Any = value;
        self.by_type.get(&any.type_id()).and_then(|h| self.by_hash.get(h)).ok_or_else(|| CodecError::Encode {
            type_name: value.type_name(),
            reason: "the type is not registered to cross processes; register it with \
                     StreamApplicationBuilder::message_type"
                .into(),
        })
    }

    /// The codec for a wire id.
    pub fn for_hash(&self, hash: u64) -> Option<&Codec> {
        self.by_hash.get(&hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Point {
        x: i32,
        y: i32,
    }

    fn roundtrip(codecs: &Codecs, value: &dyn Value) -> Arc<dyn Value> {
        let codec = codecs.for_value(value).unwrap();
        let mut buf = Vec::new();
        codec.encode(value, &mut buf).unwrap();
        codecs.for_hash(codec.hash).unwrap().decode(&buf).unwrap()
    }

    #[test]
    fn built_in_types_round_trip() {
        let codecs = Codecs::default();
        let v = roundtrip(&codecs, &String::from("hello"));
        assert_eq!((&*v as &dyn Any).downcast_ref::<String>().unwrap(), "hello");
        let v = roundtrip(&codecs, &(String::from("w"), 3u64));
        assert_eq!((&*v as &dyn Any).downcast_ref::<(String, u64)>().unwrap(), &("w".to_string(), 3));
    }

    #[test]
    fn system_level_serializers_switch_on_named_codecs() {
        let mut codecs = Codecs::default();
        codecs.register::<Point>();
        codecs.register_named::<Point, _, _>(
            "tiny_point",
            |p, out| {
                out.push(p.x as u8);
                out.push(p.y as u8);
                Ok(())
            },
            |b| Ok(Point { x: i32::from(b[0]), y: i32::from(b[1]) }),
        );
        let point = Point { x: 3, y: 4 };
        let mut buf = Vec::new();
        codecs.for_value(&point).unwrap().encode(&point, &mut buf).unwrap();
        assert_eq!(buf, [6, 8], "serde (zigzag varints) until switched on");
        let name = std::any::type_name::<Point>();
        codecs.apply_serializers([(name, "tiny_point")]).unwrap();
        buf.clear();
        codecs.for_value(&point).unwrap().encode(&point, &mut buf).unwrap();
        assert_eq!(buf, [3, 4]);
        assert_eq!((&*roundtrip(&codecs, &point) as &dyn Any).downcast_ref::<Point>(), Some(&point));
        let err = codecs.apply_serializers([(name, "no_such")]).unwrap_err();
        assert!(err.contains("no_such") && err.contains("Point"), "{err}");
        let err = codecs.apply_serializers([("alloc::string::String", "tiny_point")]).unwrap_err();
        assert!(err.contains("is for"), "{err}");
    }

    #[test]
    fn unregistered_types_are_named_in_the_error() {
        let err = Codecs::default().for_value(&Point { x: 1, y: 2 }).unwrap_err();
        assert!(err.to_string().contains("Point") && err.to_string().contains("message_type"), "{err}");
    }

    #[test]
    fn registered_and_custom_codecs() {
        let mut codecs = Codecs::default();
        codecs.register::<Point>();
        let v = roundtrip(&codecs, &Point { x: 1, y: -2 });
        assert_eq!((&*v as &dyn Any).downcast_ref::<Point>(), Some(&Point { x: 1, y: -2 }));

        // A custom codec: two little-endian i32s.
        codecs.register_custom::<Point, _, _>(
            |p, out| {
                out.extend_from_slice(&p.x.to_le_bytes());
                out.extend_from_slice(&p.y.to_le_bytes());
                Ok(())
            },
            |b| {
                let arr = |i: usize| b.get(i..i + 4).and_then(|s| s.try_into().ok()).map(i32::from_le_bytes);
                match (arr(0), arr(4)) {
                    (Some(x), Some(y)) => Ok(Point { x, y }),
                    _ => Err(CodecError::Decode { type_name: "Point", reason: "short".into() }),
                }
            },
        );
        let mut buf = Vec::new();
        codecs.for_value(&Point { x: 7, y: 9 }).unwrap().encode(&Point { x: 7, y: 9 }, &mut buf).unwrap();
        assert_eq!(buf, [7, 0, 0, 0, 9, 0, 0, 0]);
        let v = roundtrip(&codecs, &Point { x: 7, y: 9 });
        assert_eq!((&*v as &dyn Any).downcast_ref::<Point>(), Some(&Point { x: 7, y: 9 }));
        let hash = type_hash(std::any::type_name::<Point>());
        assert!(codecs.for_hash(hash).unwrap().decode(&[1, 2]).is_err());
    }
}
