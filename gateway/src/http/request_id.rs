//! `X-Request-Id` in and out: the caller's id is kept when it is sane,
//! otherwise a UUIDv7 is made up; handlers read it as a [`RequestId`] (and
//! send it on as the NATS correlation id), and every response carries it.

use std::sync::Arc;

use poem::{
    Endpoint, IntoResponse, Request, Response,
    http::{HeaderName, HeaderValue},
};

/// The request id header.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Longest caller-supplied id we keep.
pub const MAX_LEN: usize = 128;

/// The id of the request in hand (request data, set by [`propagate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// The caller's id when it is sane (1..=128 visible ASCII characters),
    /// else a new UUIDv7.
    pub fn from_header(value: Option<&HeaderValue>) -> Self {
        let given = value
            .and_then(|v| v.to_str().ok())
            .filter(|s| is_sane(s))
            .map(str::to_owned);
        Self(given.unwrap_or_else(|| uuid::Uuid::now_v7().to_string()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// 1..=[`MAX_LEN`] visible ASCII characters (no spaces or controls).
pub fn is_sane(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Middleware (for `around`): attach the request id to the request and to
/// whatever response comes back.
pub async fn propagate<E: Endpoint>(ep: Arc<E>, mut req: Request) -> poem::Result<Response> {
    let id = RequestId::from_header(req.headers().get(&HEADER));
    let value = HeaderValue::from_str(id.as_str()).expect("a sane id is a valid header value");
    req.set_data(id);
    let mut resp = match ep.call(req).await {
        Ok(resp) => resp.into_response(),
        Err(err) => err.into_response(),
    };
    resp.headers_mut().insert(HEADER, value);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_kept() {
        let v = HeaderValue::from_static("abc-123_XYZ.9");
        assert_eq!(RequestId::from_header(Some(&v)).0, "abc-123_XYZ.9");
    }

    #[test]
    fn insane_ids_are_replaced_by_uuid_v7() {
        for bad in ["", "has space", &"x".repeat(MAX_LEN + 1)] {
            let v = HeaderValue::from_str(bad).unwrap();
            let id = RequestId::from_header(Some(&v));
            assert_ne!(id.0, bad);
            assert_eq!(uuid::Uuid::parse_str(&id.0).unwrap().get_version_num(), 7);
        }
        let v = HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap();
        assert_ne!(
            RequestId::from_header(Some(&v)).0.as_bytes(),
            b"caf\xc3\xa9"
        );
        assert!(uuid::Uuid::parse_str(&RequestId::from_header(None).0).is_ok());
    }

    #[test]
    fn longest_allowed_is_kept() {
        let long = "a".repeat(MAX_LEN);
        let v = HeaderValue::from_str(&long).unwrap();
        assert_eq!(RequestId::from_header(Some(&v)).0, long);
    }
}
