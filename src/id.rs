//! 32-byte identifiers: blob ids (keyed BLAKE3 of plaintext) and file names (BLAKE3 of the
//! stored bytes).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A 32-byte id, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct Id(pub [u8; 32]);

impl Ord for Id {
    /// Lexicographic byte order, compared as two big-endian 128-bit halves: the index's binary
    /// searches run this millions of times, and a `memcmp` call per step costs more.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let half = |b: &[u8; 32], i: usize| {
            u128::from_be_bytes(b[i..i + 16].try_into().expect("16 bytes"))
        };
        half(&self.0, 0)
            .cmp(&half(&other.0, 0))
            .then_with(|| half(&self.0, 16).cmp(&half(&other.0, 16)))
    }
}

impl PartialOrd for Id {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Id {
    /// Unkeyed BLAKE3 of `data`: the name of a stored repository file.
    pub fn of_stored(data: &[u8]) -> Id {
        Id(*blake3::hash(data).as_bytes())
    }

    /// A fresh random id.
    pub fn random() -> Id {
        let mut b = [0u8; 32];
        crate::crypto::fill_random(&mut b);
        Id(b)
    }

    /// Full 64-digit hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The 8-digit short form used in listings.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }

    /// Parses a full 64-digit hex id.
    pub fn from_hex(s: &str) -> Option<Id> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s, &mut b).ok()?;
        Some(Id(b))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl Serialize for Id {
    /// Raw bytes in binary formats (CBOR); hex in human-readable ones (JSON output).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("32 bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Id, E> {
                <[u8; 32]>::try_from(v)
                    .map(Id)
                    .map_err(|_| E::invalid_length(v.len(), &self))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Id, E> {
                self.visit_bytes(&v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Id::from_hex(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(V)
        } else {
            d.deserialize_bytes(V)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn order_is_lexicographic(a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
            prop_assert_eq!(Id(a).cmp(&Id(b)), a.cmp(&b));
        }

        #[test]
        fn hex_round_trip(a in any::<[u8; 32]>()) {
            prop_assert_eq!(Id::from_hex(&Id(a).to_hex()), Some(Id(a)));
            let json = serde_json::to_string(&Id(a)).unwrap();
            prop_assert_eq!(serde_json::from_str::<Id>(&json).unwrap(), Id(a));
        }
    }
}
