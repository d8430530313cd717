//! Payload encoding: MessagePack with named fields by default (fields can be
//! added without breaking old readers), JSON when the `Content-Type` header
//! says so (the NATS CLI and other humans' tools).

use serde::{Serialize, de::DeserializeOwned};

/// `Content-Type` of a MessagePack payload.
pub const MSGPACK: &str = "application/msgpack";
/// `Content-Type` of a JSON payload.
pub const JSON: &str = "application/json";

/// Why a payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The payload is not valid MessagePack for the expected type.
    #[error("invalid msgpack payload: {0}")]
    MsgPackDecode(#[from] rmp_serde::decode::Error),
    /// The value could not be written as MessagePack.
    #[error("cannot encode msgpack: {0}")]
    MsgPackEncode(#[from] rmp_serde::encode::Error),
    /// The payload is not valid JSON for the expected type.
    #[error("invalid json payload: {0}")]
    Json(#[from] serde_json::Error),
    /// The `Content-Type` names an encoding we do not speak.
    #[error("unsupported content type {0:?}")]
    UnsupportedContentType(String),
}

/// A payload encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// MessagePack with named fields.
    #[default]
    MsgPack,
    /// JSON.
    Json,
}

impl Encoding {
    /// The encoding a `Content-Type` header names. No header means
    /// MessagePack for our own publishers, except that a payload starting
    /// with `{` (as the NATS CLI sends without headers) is JSON.
    pub fn detect(content_type: Option<&str>, payload: &[u8]) -> Result<Self, CodecError> {
        match content_type.map(|c| c.split(';').next().unwrap_or("").trim()) {
            Some(MSGPACK) => Ok(Self::MsgPack),
            Some(JSON) => Ok(Self::Json),
            Some(other) if !other.is_empty() => {
                Err(CodecError::UnsupportedContentType(other.into()))
            }
            _ => {
                let first = payload.iter().find(|b| !b.is_ascii_whitespace());
                Ok(if matches!(first, Some(b'{') | Some(b'[')) {
                    Self::Json
                } else {
                    Self::MsgPack
                })
            }
        }
    }

    /// The `Content-Type` header value for this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::MsgPack => MSGPACK,
            Self::Json => JSON,
        }
    }

    /// Encode a value.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, CodecError> {
        Ok(match self {
            Self::MsgPack => rmp_serde::to_vec_named(value)?,
            Self::Json => serde_json::to_vec(value)?,
        })
    }

    /// Decode a value.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, CodecError> {
        Ok(match self {
            Self::MsgPack => rmp_serde::from_slice(bytes)?,
            Self::Json => serde_json::from_slice(bytes)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct V1 {
        a: u32,
    }
    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct V2 {
        a: u32,
        #[serde(default)]
        b: Option<String>,
    }

    #[test]
    fn msgpack_uses_named_fields_so_fields_can_be_added() {
        let old = Encoding::MsgPack.encode(&V1 { a: 7 }).unwrap();
        let read: V2 = Encoding::MsgPack.decode(&old).unwrap();
        assert_eq!(read, V2 { a: 7, b: None });
        let new = Encoding::MsgPack
            .encode(&V2 {
                a: 7,
                b: Some("x".into()),
            })
            .unwrap();
        let read: V1 = Encoding::MsgPack.decode(&new).unwrap();
        assert_eq!(read, V1 { a: 7 });
    }

    #[test]
    fn detection_follows_content_type_then_payload() {
        assert_eq!(
            Encoding::detect(Some("application/json"), b"").unwrap(),
            Encoding::Json
        );
        assert_eq!(
            Encoding::detect(Some("application/json; charset=utf-8"), b"").unwrap(),
            Encoding::Json
        );
        assert_eq!(
            Encoding::detect(Some(MSGPACK), b"{").unwrap(),
            Encoding::MsgPack
        );
        assert_eq!(
            Encoding::detect(None, b" {\"id\":1}").unwrap(),
            Encoding::Json
        );
        assert_eq!(Encoding::detect(None, &[0x81]).unwrap(), Encoding::MsgPack);
        assert!(Encoding::detect(Some("text/xml"), b"").is_err());
    }

    #[test]
    fn bad_payload_is_an_error_not_a_panic() {
        assert!(Encoding::Json.decode::<V1>(b"{not json").is_err());
        assert!(Encoding::MsgPack.decode::<V1>(&[0xc1, 0x00]).is_err());
    }
}
