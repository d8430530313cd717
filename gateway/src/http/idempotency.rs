//! `Idempotency-Key` on `POST` under `/v1`: a retried request gets the first
//! answer again instead of acting twice.
//!
//! For each caller ([`CallerKey`]) and key the store holds either a lock
//! (the first request is running) or the first response. The request's
//! fingerprint, a SHA-256 of method, path and query, and body, decides what
//! a later request with the same key gets:
//!
//! | stored                 | same fingerprint                   | other fingerprint |
//! |------------------------|------------------------------------|-------------------|
//! | nothing                | runs (takes the lock)              | runs              |
//! | lock                   | `409` problem                      | `422` problem     |
//! | response               | the response, `Idempotent-Replayed: true` | `422` problem |
//!
//! The lock is taken atomically (`SET NX` with a short TTL, so a crashed
//! gateway's lock expires); the response replaces it only if the lock is
//! still ours, and is kept for `--idempotency-ttl`. Only final answers are
//! kept: 2xx and 4xx other than 409 and 429. A 5xx (or a 409/429) drops the
//! lock so the client may retry. Without Redis a bounded in-process map does
//! the same for one replica. With Redis unreachable, a request carrying a key
//! is refused with 503 rather than run without the guarantee it asked for.
//!
//! A gateway that dies after acting but before storing the response leaves
//! only its lock, which expires; the retry then runs again. So that it
//! acts on the same thing rather than a new one, the first attempt mints a
//! [`KeyedId`] (a UUIDv7, stored with the lock in one step: one round trip
//! to Redis) kept beside the response for the whole TTL and
//! handed to every attempt with that key and body: an endpoint that names
//! what it creates by it (order placement does) creates it once, and the
//! service receiving the repeat sees an id it already has.
//!
//! [`Idempotency`] is a Poem [`Middleware`], usable around any endpoint.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex},
    time::{Duration, Instant},
};

use poem::{
    Body, Endpoint, IntoResponse, Middleware, PathPattern, Request, Response,
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
};
use sha2::{Digest, Sha256};

use crate::{
    error::Error,
    http::{
        limits::{CallerKey, CallerPolicy, Identify, LimitSettings, RedisStore},
        problem::Problem,
    },
};

/// The request header.
pub const KEY_HEADER: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on a replayed response.
pub const REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;
/// Most keys the in-process store holds; the soonest to expire go first.
pub const MAX_LOCAL_KEYS: usize = 10_000;
/// Requests Redis could not serve (label `cause`).
pub const REDIS_ERRORS: &str = "jetshop_idempotency_redis_errors_total";
/// Responses replayed from the store.
pub const REPLAYS: &str = "jetshop_idempotency_replays_total";

/// Response headers worth replaying; the rest (request id, rate limits,
/// dates) belong to the new request.
const REPLAYED: [HeaderName; 7] = [
    header::CONTENT_TYPE,
    header::LOCATION,
    header::CONTENT_LOCATION,
    header::ETAG,
    header::LAST_MODIFIED,
    header::LINK,
    header::CACHE_CONTROL,
];

/// Whether `key` is 1..=255 visible ASCII characters.
pub fn is_valid_key(key: &[u8]) -> bool {
    (1..=MAX_KEY_LEN).contains(&key.len()) && key.iter().all(u8::is_ascii_graphic)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// SHA-256 (hex) of method, path and query, and body.
fn fingerprint(method: &Method, path_and_query: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_str());
    h.update(b"\n");
    h.update(path_and_query);
    h.update(b"\n");
    h.update(body);
    hex(&h.finalize())
}

/// A stored entry. Encoded as bytes: `L<fp><token>` for a lock,
/// `D<fp>\n<meta json>\n<body>` for a response.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Lock { fp: String },
    Done { fp: String, response: Stored },
}

/// What a response is kept as.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Stored {
    status: u16,
    headers: Vec<(String, String)>,
    /// The route that served it, for metric labels on replays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pattern: Option<String>,
    #[serde(skip)]
    body: Vec<u8>,
}

impl Entry {
    fn decode(bytes: &[u8]) -> Option<Self> {
        let (tag, rest) = bytes.split_first()?;
        let fp = String::from_utf8(rest.get(..64)?.to_vec()).ok()?;
        match tag {
            b'L' => Some(Self::Lock { fp }),
            b'D' => {
                let rest = rest.get(65..)?;
                let nl = rest.iter().position(|b| *b == b'\n')?;
                let mut response: Stored = serde_json::from_slice(&rest[..nl]).ok()?;
                response.body = rest[nl + 1..].to_vec();
                Some(Self::Done { fp, response })
            }
            _ => None,
        }
    }
}

/// The id every attempt with one key and body is given: read it with
/// [`KeyedId::of`] to name what the request creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyedId(pub uuid::Uuid);

impl KeyedId {
    /// The id of a request that carried an `Idempotency-Key`, if it did.
    pub fn of(req: &Request) -> Option<uuid::Uuid> {
        req.data::<Self>().map(|id| id.0)
    }

    /// `I<fp><uuid as 32 hex digits>`.
    fn encode(self, fp: &str) -> Vec<u8> {
        format!("I{fp}{}", self.0.simple()).into_bytes()
    }

    /// The fingerprint it was minted for, and the id.
    fn decode(bytes: &[u8]) -> Option<(String, Self)> {
        let rest = bytes.strip_prefix(b"I")?;
        let fp = String::from_utf8(rest.get(..64)?.to_vec()).ok()?;
        let id = uuid::Uuid::try_parse_ascii(rest.get(64..)?).ok()?;
        Some((fp, Self(id)))
    }
}

fn encode_lock(fp: &str) -> Vec<u8> {
    // The token makes this lock distinguishable from any other for the same body.
    format!("L{fp}{}", uuid::Uuid::new_v4().simple()).into_bytes()
}

fn encode_done(fp: &str, response: &Stored) -> Vec<u8> {
    let mut out = format!("D{fp}\n").into_bytes();
    // Compact JSON has no raw newline.
    out.extend(serde_json::to_vec(response).unwrap_or_default());
    out.push(b'\n');
    out.extend(&response.body);
    out
}

/// Where entries live: three atomic operations on byte values.
#[derive(Debug)]
pub enum IdempotencyStore {
    /// Shared by all replicas.
    Redis(RedisStore),
    /// This process only, at most [`MAX_LOCAL_KEYS`] keys.
    Local(Mutex<HashMap<String, (Vec<u8>, Instant)>>),
}

/// Take the lock (`KEYS[1]`, set unless something is there) and, only if
/// it was free, the key's id (`KEYS[2]`, set unless it exists): one round trip for
/// both. Answers `{existing entry, nil}` when the lock is held, `{nil,
/// existing id}` (nil if ours was stored) when it was taken.
static LOCK_AND_ID: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {redis.call('GET', KEYS[1]), false}
end
if redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4]) then return {false, false} end
return {false, redis.call('GET', KEYS[2])}
",
    )
});
/// Replace (or with an empty new value, delete) a value only if it is still `ARGV[1]`.
static REPLACE_IF: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
",
    )
});

fn millis(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1)
}

impl IdempotencyStore {
    /// On Redis when the settings name one, else in process.
    pub fn from_settings(settings: &LimitSettings) -> Result<Self, redis::RedisError> {
        match &settings.redis_url {
            Some(url) => Ok(Self::Redis(RedisStore::new(
                url.expose(),
                &settings.redis_key_prefix,
                settings.redis_timeout,
                "idempotency",
                REDIS_ERRORS,
            )?)),
            None => Ok(Self::Local(Mutex::default())),
        }
    }

    /// Take `lock` under `key` unless something is there (`Err(existing)`),
    /// and then store `id` under `id_key` unless one is there: `Ok(None)`
    /// if ours was stored, else `Ok(Some(existing id))`.
    async fn lock_and_id(
        &self,
        key: &str,
        lock: &[u8],
        lock_ttl: Duration,
        id_key: &str,
        id: &[u8],
        ttl: Duration,
    ) -> Result<Result<Option<Vec<u8>>, Vec<u8>>, Error> {
        match self {
            Self::Redis(store) => {
                let (key, id_key) = (store.key(key), store.key(id_key));
                let (held, existing_id): (Option<Vec<u8>>, Option<Vec<u8>>) = store
                    .run(|mut conn| async move {
                        LOCK_AND_ID
                            .key(key)
                            .key(id_key)
                            .arg(lock)
                            .arg(millis(lock_ttl))
                            .arg(id)
                            .arg(millis(ttl))
                            .invoke_async(&mut conn)
                            .await
                    })
                    .await
                    .map_err(|_| unavailable())?;
                Ok(match held {
                    Some(held) => Err(held),
                    None => Ok(existing_id),
                })
            }
            Self::Local(map) => {
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                Ok(match local_set_nx_or_get(&mut map, key, lock, lock_ttl) {
                    Some(held) => Err(held),
                    None => Ok(local_set_nx_or_get(&mut map, id_key, id, ttl)),
                })
            }
        }
    }

    /// Replace `expected` under `key` by `new` (delete when `new` is
    /// empty); false if the value changed meanwhile.
    async fn replace_if(
        &self,
        key: &str,
        expected: &[u8],
        new: &[u8],
        ttl: Duration,
    ) -> Result<bool, Error> {
        match self {
            Self::Redis(store) => {
                let key = store.key(key);
                let done: u8 = store
                    .run(|mut conn| async move {
                        REPLACE_IF
                            .key(key)
                            .arg(expected)
                            .arg(new)
                            .arg(millis(ttl))
                            .invoke_async(&mut conn)
                            .await
                    })
                    .await
                    .map_err(|_| unavailable())?;
                Ok(done == 1)
            }
            Self::Local(map) => {
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                if map.get(key).is_none_or(|(v, _)| v != expected) {
                    return Ok(false);
                }
                if new.is_empty() {
                    map.remove(key);
                } else {
                    map.insert(key.to_owned(), (new.to_vec(), Instant::now() + ttl));
                }
                Ok(true)
            }
        }
    }
}

/// Store `value` under `key` in the in-process map unless a live value is
/// there: `None` if stored, else what is there. The soonest to expire go
/// first when the map is full.
fn local_set_nx_or_get(
    map: &mut HashMap<String, (Vec<u8>, Instant)>,
    key: &str,
    value: &[u8],
    ttl: Duration,
) -> Option<Vec<u8>> {
    let now = Instant::now();
    if let Some((v, exp)) = map.get(key)
        && *exp > now
    {
        return Some(v.clone());
    }
    if map.len() >= MAX_LOCAL_KEYS {
        map.retain(|_, (_, exp)| *exp > now);
    }
    if map.len() >= MAX_LOCAL_KEYS
        && let Some(first) = map
            .iter()
            .min_by_key(|(_, (_, exp))| *exp)
            .map(|(k, _)| k.clone())
    {
        map.remove(&first);
    }
    map.insert(key.to_owned(), (value.to_vec(), now + ttl));
    None
}

fn unavailable() -> Error {
    Error::StoreUnavailable {
        what: "the idempotency store",
    }
}

/// Middleware: idempotency keys on `POST` under `/v1`.
#[derive(Debug, Clone)]
pub struct Idempotency(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    store: IdempotencyStore,
    ttl: Duration,
    lock_ttl: Duration,
    caller: CallerPolicy,
}

impl Idempotency {
    /// The store and lifetimes the settings describe.
    pub fn from_settings(settings: &LimitSettings) -> Result<Self, redis::RedisError> {
        Ok(Self::new(
            IdempotencyStore::from_settings(settings)?,
            settings.idempotency_ttl,
            settings.idempotency_lock_ttl,
            CallerPolicy {
                trust_proxy: settings.trust_proxy,
                identify: None,
            },
        ))
    }

    /// The same middleware, identifying bearer tokens with `identify`.
    pub fn identify_with(self, identify: Arc<dyn Identify>) -> Self {
        let mut shared = Arc::into_inner(self.0).expect("not shared yet");
        shared.caller.identify = Some(identify);
        Self(Arc::new(shared))
    }

    /// A middleware on an explicit store.
    pub fn new(
        store: IdempotencyStore,
        ttl: Duration,
        lock_ttl: Duration,
        caller: CallerPolicy,
    ) -> Self {
        Self(Arc::new(Shared {
            store,
            ttl,
            lock_ttl,
            caller,
        }))
    }
}

impl<E: Endpoint> Middleware<E> for Idempotency {
    type Output = IdempotencyEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        IdempotencyEndpoint {
            inner,
            shared: self.0.clone(),
        }
    }
}

/// [`Idempotency`] around an endpoint.
#[derive(Debug)]
pub struct IdempotencyEndpoint<E> {
    inner: E,
    shared: Arc<Shared>,
}

/// Whether a response is final (worth replaying) rather than "try again".
fn is_final(status: StatusCode) -> bool {
    (status.is_success() || status.is_client_error())
        && status != StatusCode::CONFLICT
        && status != StatusCode::TOO_MANY_REQUESTS
}

fn under_v1(path: &str) -> bool {
    path.strip_prefix("/v1")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn problem(err: &Error, instance: &str) -> Response {
    Problem::from(err).at(instance).into_response()
}

impl<E: Endpoint> Endpoint for IdempotencyEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let Some(key) = (req.method() == Method::POST && under_v1(req.uri().path()))
            .then(|| req.headers().get(&KEY_HEADER).cloned())
            .flatten()
        else {
            return self.inner.call(req).await.map(IntoResponse::into_response);
        };
        let instance = req.uri().path().to_owned();
        if !is_valid_key(key.as_bytes()) {
            return Ok(problem(&Error::IdempotencyKeyMalformed, &instance));
        }
        let caller = CallerKey::resolve(&mut req, &self.shared.caller).await;
        // The body limit in front of us bounds what is read here.
        let body = req.take_body().into_bytes().await?;
        let path_and_query = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or(&instance);
        let fp = fingerprint(req.method(), path_and_query, &body);
        req.set_body(body);
        // Callers never share keys: hash caller and key into the name.
        let mut h = Sha256::new();
        h.update(caller.as_str());
        h.update([0]);
        h.update(key.as_bytes());
        let name = format!("idem:{}", hex(&h.finalize()));

        let lock = encode_lock(&fp);
        let store = &self.shared.store;
        // The id this key's attempts share, minted unless one exists; taken
        // with the lock, and only if the lock is ours.
        let minted = KeyedId(uuid::Uuid::now_v7());
        let taken = match store
            .lock_and_id(
                &name,
                &lock,
                self.shared.lock_ttl,
                &format!("{name}:id"),
                &minted.encode(&fp),
                self.shared.ttl,
            )
            .await
        {
            Ok(taken) => taken,
            Err(err) => return Ok(problem(&err, &instance)),
        };
        let existing_id = match taken {
            Ok(existing_id) => existing_id,
            Err(existing) => {
                return Ok(match Entry::decode(&existing) {
                    Some(Entry::Lock { fp: theirs } | Entry::Done { fp: theirs, .. })
                        if theirs != fp =>
                    {
                        problem(&Error::IdempotencyKeyReused, &instance)
                    }
                    Some(Entry::Done { response, .. }) => {
                        metrics::counter!(REPLAYS).increment(1);
                        replay(response)
                    }
                    // A lock, or something unreadable: treat as in progress.
                    _ => problem(&Error::IdempotencyInFlight, &instance),
                });
            }
        };

        // The lock is ours: the id is ours too, or the one a lost attempt minted.
        let id = match existing_id.map(|bytes| KeyedId::decode(&bytes)) {
            None => Ok(minted),
            Some(Some((theirs, id))) if theirs == fp => Ok(id),
            // Minted for another body: the key was reused.
            Some(Some(_)) => Err(Error::IdempotencyKeyReused),
            Some(None) => Err(Error::IdempotencyInFlight),
        };
        let id = match id {
            Ok(id) => id,
            Err(err) => {
                if let Err(e) = store.replace_if(&name, &lock, &[], Duration::ZERO).await {
                    tracing::warn!(error = %e, "could not release an idempotency lock");
                }
                return Ok(problem(&err, &instance));
            }
        };
        req.set_data(id);

        let mut resp = match self.inner.call(req).await {
            Ok(resp) => resp.into_response(),
            Err(err) => err.into_response(),
        };
        let status = resp.status();
        if !is_final(status) {
            if let Err(err) = store.replace_if(&name, &lock, &[], Duration::ZERO).await {
                // The lock expires by itself.
                tracing::warn!(error = %err, "could not release an idempotency lock");
            }
            return Ok(resp);
        }
        let body = resp.take_body().into_bytes().await.unwrap_or_default();
        let stored = Stored {
            status: status.as_u16(),
            headers: kept_headers(resp.headers()),
            pattern: resp.data::<PathPattern>().map(|p| p.0.to_string()),
            body: body.to_vec(),
        };
        match store
            .replace_if(&name, &lock, &encode_done(&fp, &stored), self.shared.ttl)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                "an idempotency lock expired before its request finished; \
                 the response was not stored (raise --idempotency-lock-ttl)"
            ),
            Err(err) => tracing::warn!(error = %err, "could not store an idempotent response"),
        }
        resp.set_body(Body::from(body));
        Ok(resp)
    }
}

fn kept_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    REPLAYED
        .iter()
        .flat_map(|name| {
            headers.get_all(name).iter().filter_map(move |v| {
                v.to_str()
                    .ok()
                    .map(|v| (name.as_str().to_owned(), v.to_owned()))
            })
        })
        .collect()
}

fn replay(stored: Stored) -> Response {
    let mut resp = Response::builder()
        .status(StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK))
        .body(stored.body);
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
    resp.headers_mut()
        .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    if let Some(p) = stored.pattern {
        resp.set_data(PathPattern(p.into()));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_up_to_255() {
        assert!(is_valid_key(b"a"));
        assert!(is_valid_key(&[b'x'; 255]));
        assert!(!is_valid_key(b""));
        assert!(!is_valid_key(&[b'x'; 256]));
        assert!(!is_valid_key(b"has space"));
        assert!(!is_valid_key("caf\u{e9}".as_bytes()));
    }

    #[test]
    fn entries_round_trip() {
        let fp = fingerprint(&Method::POST, "/v1/x?a=1", b"{}");
        assert_eq!(fp.len(), 64);
        assert_eq!(
            Entry::decode(&encode_lock(&fp)),
            Some(Entry::Lock { fp: fp.clone() })
        );
        let response = Stored {
            status: 201,
            headers: vec![("location".into(), "/v1/x/1".into())],
            pattern: Some("/v1/x".into()),
            body: b"line1\nline2\xff".to_vec(),
        };
        assert_eq!(
            Entry::decode(&encode_done(&fp, &response)),
            Some(Entry::Done {
                fp: fp.clone(),
                response
            })
        );
        assert_eq!(Entry::decode(b"Lshort"), None);
        let id = KeyedId(uuid::Uuid::now_v7());
        assert_eq!(KeyedId::decode(&id.encode(&fp)), Some((fp.clone(), id)));
        assert_eq!(KeyedId::decode(&encode_lock(&fp)), None);
    }

    #[test]
    fn fingerprints_cover_method_path_and_body() {
        let a = fingerprint(&Method::POST, "/v1/x", b"{}");
        assert_ne!(a, fingerprint(&Method::POST, "/v1/y", b"{}"));
        assert_ne!(a, fingerprint(&Method::POST, "/v1/x", b"{ }"));
        assert_ne!(a, fingerprint(&Method::PUT, "/v1/x", b"{}"));
    }

    #[test]
    fn only_final_answers_are_kept() {
        for s in [200, 201, 202, 400, 404, 422] {
            assert!(is_final(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [409, 429, 500, 502, 503] {
            assert!(!is_final(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }
}
