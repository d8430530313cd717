//! Rate limits, idempotency keys and hardening, over real HTTP against a
//! real nats-server and real Redis (the shared one at 127.0.0.1:6379 with a
//! key prefix per test, or a `redis-server` of the test's own when it has
//! to stop it).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use jetshop_gateway::{
    GatewaySettings,
    http::{
        idempotency::{Idempotency, IdempotencyStore, KeyedId},
        limits::{
            CallerPolicy, FailureMode, LimitSettings, RateLimiter, RatePolicy, RedisStore,
            RouteGroup, caller::caller_key,
        },
        problem,
    },
    run,
};
use jetshop_platform::{config::NatsSettings, runtime::Runtime};
use jetshop_testkit::{NatsServer, RedisServer, eventually, free_port};
use poem::{
    EndpointExt, Route, handler,
    http::StatusCode as PoemStatus,
    post,
    test::TestClient,
    web::{Data, Json as PoemJson},
};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);
const SHARED_REDIS: &str = "redis://127.0.0.1:6379";

/// A key prefix no other test uses.
fn prefix() -> String {
    format!("jetshop-test:{}:", Uuid::new_v4().simple())
}

/// A gateway on a free port, stopped on drop.
struct Gateway {
    base: String,
    stop: CancellationToken,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn runtime(nats: &NatsServer) -> Runtime {
    let client = jetshop_platform::nats::connect(&NatsSettings::for_url(nats.url()), "test")
        .await
        .expect("connect to nats");
    Runtime::new(client, 1)
}

impl Gateway {
    async fn start(nats: &NatsServer, configure: impl FnOnce(&mut GatewaySettings)) -> Self {
        jetshop_testkit::init_test_log();
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut settings = GatewaySettings::for_addr(addr);
        configure(&mut settings);
        let stop = CancellationToken::new();
        tokio::spawn(run(settings, runtime(nats).await, stop.clone()));
        let gw = Self {
            base: format!("http://{addr}"),
            stop,
        };
        let http = reqwest::Client::new();
        eventually("the gateway to listen", WAIT, || async {
            http.get(gw.url("/healthz")).send().await.ok()
        })
        .await;
        gw
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(self.url(path)).await.expect("request sent")
    }
}

fn limited(redis: Option<&str>, prefix: &str, policy: &str) -> impl FnOnce(&mut GatewaySettings) {
    let redis = redis.map(|u| u.parse().unwrap());
    let prefix = prefix.to_owned();
    let policy: RatePolicy = policy.parse().unwrap();
    move |s| {
        s.limits.redis_url = redis;
        s.limits.redis_key_prefix = prefix;
        s.limits.rate_limit = policy;
    }
}

fn header_u32(resp: &reqwest::Response, name: &str) -> Option<u32> {
    resp.headers().get(name)?.to_str().ok()?.parse().ok()
}

async fn problem_of(resp: reqwest::Response) -> Result<(StatusCode, Value)> {
    let status = resp.status();
    let ct = resp.headers()[header::CONTENT_TYPE].to_str()?.to_owned();
    anyhow::ensure!(ct == "application/problem+json", "{status}: {ct}");
    let body: Value = resp.json().await?;
    anyhow::ensure!(body["status"] == status.as_u16(), "{body}");
    Ok((status, body))
}

/// A limited route that answers quickly without any service behind it.
const LIMITED_PATH: &str = "/v1/nope";

async fn assert_budget(gw: &Gateway, limit: u32) -> Result<()> {
    for expected in (0..limit).rev() {
        let resp = gw.get(LIMITED_PATH).await;
        assert_ne!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header_u32(&resp, "ratelimit-limit"), Some(limit));
        assert_eq!(header_u32(&resp, "ratelimit-remaining"), Some(expected));
        assert!(header_u32(&resp, "ratelimit-reset").is_some());
    }
    assert_refused(gw, limit).await
}

async fn assert_refused(gw: &Gateway, limit: u32) -> Result<()> {
    let resp = gw.get(LIMITED_PATH).await;
    let retry = header_u32(&resp, "retry-after").context("retry-after")?;
    assert!(retry >= 1, "{retry}");
    assert_eq!(header_u32(&resp, "ratelimit-remaining"), Some(0));
    assert_eq!(header_u32(&resp, "ratelimit-limit"), Some(limit));
    let (status, body) = problem_of(resp).await?;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["type"], "urn:jetshop:problem:rate-limited");
    Ok(())
}

#[tokio::test]
async fn redis_limits_count_down_then_refuse_with_retry_after() -> Result<()> {
    let nats = NatsServer::start();
    let gw = Gateway::start(
        &nats,
        limited(Some(SHARED_REDIS), &prefix(), "default=3/60s"),
    )
    .await;
    // Probes, metrics, the document and Swagger UI are never limited.
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/docs/oauth-receiver.html",
    ] {
        let resp = gw.get(path).await;
        assert!(resp.headers().get("ratelimit-limit").is_none(), "{path}");
    }
    // The first request may have been the readiness poll: start clean.
    assert_budget(&gw, 3).await?;
    // Another group has its own budget.
    let resp = reqwest::Client::new()
        .post(gw.url("/v1/nope"))
        .send()
        .await?;
    assert_eq!(header_u32(&resp, "ratelimit-limit"), Some(30));
    Ok(())
}

#[tokio::test]
async fn two_gateways_share_one_budget_in_redis() -> Result<()> {
    let nats = NatsServer::start();
    let prefix = prefix();
    let a = Gateway::start(&nats, limited(Some(SHARED_REDIS), &prefix, "default=4/60s")).await;
    let b = Gateway::start(&nats, limited(Some(SHARED_REDIS), &prefix, "default=4/60s")).await;
    let mut remaining = Vec::new();
    for gw in [&a, &b, &a, &b] {
        let resp = gw.get(LIMITED_PATH).await;
        remaining.push(header_u32(&resp, "ratelimit-remaining").context("remaining")?);
    }
    assert_eq!(remaining, [3, 2, 1, 0]);
    assert_refused(&a, 4).await?;
    assert_refused(&b, 4).await?;
    Ok(())
}

#[tokio::test]
async fn in_process_limiter_without_redis() -> Result<()> {
    let nats = NatsServer::start();
    let gw = Gateway::start(&nats, limited(None, "unused:", "default=3/60s")).await;
    assert_budget(&gw, 3).await
}

async fn redis_errors_metric(gw: &Gateway) -> f64 {
    let text = gw.get("/metrics").await.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("jetshop_rate_limit_redis_errors_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn redis_outage_fails_open_fast_and_recovers() -> Result<()> {
    let nats = NatsServer::start();
    let mut redis = RedisServer::start();
    let gw = Gateway::start(
        &nats,
        limited(Some(&redis.url()), &prefix(), "default=2/60s"),
    )
    .await;
    assert_budget(&gw, 2).await?;

    redis.stop();
    let before = redis_errors_metric(&gw).await;
    let started = Instant::now();
    for _ in 0..10 {
        let resp = gw.get(LIMITED_PATH).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "served, not limited");
        assert!(resp.headers().get("ratelimit-limit").is_none());
    }
    let per_request = started.elapsed() / 10;
    eprintln!("fail-open with Redis down: {per_request:?} per request");
    assert!(per_request < Duration::from_millis(500), "{per_request:?}");
    assert!(redis_errors_metric(&gw).await >= before + 10.0);

    // A fresh (empty) Redis comes back: limits apply again, no restart.
    redis.restart();
    eventually("limits to apply again", WAIT, || async {
        let resp = gw.get(LIMITED_PATH).await;
        (resp.status() == StatusCode::TOO_MANY_REQUESTS).then_some(())
    })
    .await;
    Ok(())
}

#[tokio::test]
async fn redis_outage_fails_closed_with_503() -> Result<()> {
    let nats = NatsServer::start();
    let mut redis = RedisServer::start();
    let url = redis.url();
    let gw = Gateway::start(&nats, |s| {
        limited(Some(&url), &prefix(), "default=50/60s")(s);
        s.limits.redis_failure = FailureMode::Closed;
    })
    .await;
    assert!(header_u32(&gw.get(LIMITED_PATH).await, "ratelimit-limit").is_some());
    redis.stop();
    for _ in 0..3 {
        let resp = gw.get(LIMITED_PATH).await;
        assert!(header_u32(&resp, "retry-after").is_some());
        let (status, _) = problem_of(resp).await?;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(gw.get("/healthz").await.status(), StatusCode::OK);
    redis.restart();
    eventually("Redis to be used again", WAIT, || async {
        let resp = gw.get(LIMITED_PATH).await;
        (resp.status() == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    Ok(())
}

// ------------------------------------------------------------- idempotency

/// A POST route that counts its calls, answers 201 with a Location, and
/// waits for `gate` permits first when `slow` is in the body.
struct Counter {
    calls: AtomicUsize,
    started: tokio::sync::Notify,
    gate: tokio::sync::Semaphore,
}

impl Default for Counter {
    fn default() -> Self {
        Self {
            calls: AtomicUsize::new(0),
            started: tokio::sync::Notify::new(),
            gate: tokio::sync::Semaphore::new(0),
        }
    }
}

#[handler]
async fn create(counter: Data<&Arc<Counter>>, body: PoemJson<Value>) -> poem::Response {
    let n = counter.calls.fetch_add(1, Ordering::SeqCst) + 1;
    if body.0["slow"] == true {
        counter.started.notify_one();
        let _ = counter.gate.acquire().await;
    }
    if body.0["fail"] == true {
        return poem::Response::builder()
            .status(PoemStatus::BAD_GATEWAY)
            .body("failed");
    }
    poem::Response::builder()
        .status(PoemStatus::CREATED)
        .header("location", format!("/v1/things/{n}"))
        .header("x-other", "not replayed")
        .content_type("application/json")
        .body(json!({ "n": n, "echo": body.0 }).to_string())
}

fn idempotent_app(store: IdempotencyStore, counter: Arc<Counter>) -> impl poem::Endpoint {
    Route::new()
        .at("/v1/things", post(create))
        .at("/other", post(create))
        .data(counter)
        .around(problem::catch)
        .with(Idempotency::new(
            store,
            Duration::from_secs(60),
            Duration::from_secs(10),
            CallerPolicy::default(),
        ))
}

fn stores() -> Vec<(&'static str, IdempotencyStore)> {
    let redis = RedisStore::new(
        SHARED_REDIS,
        &prefix(),
        Duration::from_millis(500),
        "idempotency",
        "test_errors",
    )
    .unwrap();
    vec![
        ("local", IdempotencyStore::Local(Default::default())),
        ("redis", IdempotencyStore::Redis(redis)),
    ]
}

#[tokio::test]
async fn idempotent_replay_returns_the_first_response_and_acts_once() -> Result<()> {
    for (name, store) in stores() {
        let counter = Arc::new(Counter::default());
        let cli = TestClient::new(idempotent_app(store, counter.clone()));
        let send = |key: &'static str, body: Value| {
            cli.post("/v1/things")
                .header("idempotency-key", key)
                .body_json(&body)
                .send()
        };
        let first = send("k-1", json!({"a": 1})).await;
        first.assert_status(PoemStatus::CREATED);
        let location = first.0.headers()["location"].clone();
        assert!(first.0.headers().get("idempotent-replayed").is_none());
        let first_body = first.0.into_body().into_string().await?;

        let again = send("k-1", json!({"a": 1})).await;
        again.assert_status(PoemStatus::CREATED);
        let h = again.0.headers().clone();
        assert_eq!(h["location"], location, "{name}");
        assert_eq!(h["idempotent-replayed"], "true", "{name}");
        assert_eq!(h["content-type"], "application/json", "{name}");
        assert!(h.get("x-other").is_none(), "{name}");
        assert_eq!(again.0.into_body().into_string().await?, first_body);
        assert_eq!(
            counter.calls.load(Ordering::SeqCst),
            1,
            "{name}: acted once"
        );

        // Same key, other body: 422.
        let other = send("k-1", json!({"a": 2})).await;
        other.assert_status(PoemStatus::UNPROCESSABLE_ENTITY);
        other.assert_content_type("application/problem+json");
        // Another key acts again; no key acts every time; other paths are not covered.
        send("k-2", json!({"a": 1}))
            .await
            .assert_status(PoemStatus::CREATED);
        cli.post("/v1/things").body_json(&json!({})).send().await;
        cli.post("/other")
            .header("idempotency-key", "k-1")
            .body_json(&json!({}))
            .send()
            .await
            .assert_status(PoemStatus::CREATED);
        assert_eq!(counter.calls.load(Ordering::SeqCst), 4, "{name}");

        // A malformed key is a 400 problem.
        for bad in [String::new(), "has space".into(), "x".repeat(256)] {
            let resp = cli
                .post("/v1/things")
                .header("idempotency-key", bad.as_str())
                .body_json(&json!({}))
                .send()
                .await;
            resp.assert_status(PoemStatus::BAD_REQUEST);
            resp.assert_content_type("application/problem+json");
        }
        assert_eq!(counter.calls.load(Ordering::SeqCst), 4, "{name}");

        // A 5xx is not kept: the retry acts again.
        let failed = json!({"fail": true});
        send("k-fail", failed.clone())
            .await
            .assert_status(PoemStatus::BAD_GATEWAY);
        send("k-fail", failed)
            .await
            .assert_status(PoemStatus::BAD_GATEWAY);
        assert_eq!(counter.calls.load(Ordering::SeqCst), 6, "{name}");
    }
    Ok(())
}

#[tokio::test]
async fn a_second_request_while_the_first_runs_is_a_409() -> Result<()> {
    for (name, store) in stores() {
        let counter = Arc::new(Counter::default());
        let app = Arc::new(idempotent_app(store, counter.clone()));
        let slow = json!({"slow": true});
        let first = {
            let app = app.clone();
            let slow = slow.clone();
            tokio::spawn(async move {
                TestClient::new(app)
                    .post("/v1/things")
                    .header("idempotency-key", "same")
                    .body_json(&slow)
                    .send()
                    .await
                    .0
                    .status()
            })
        };
        counter.started.notified().await;
        let cli = TestClient::new(app);
        let second = cli
            .post("/v1/things")
            .header("idempotency-key", "same")
            .body_json(&slow)
            .send()
            .await;
        second.assert_status(PoemStatus::CONFLICT);
        second.assert_content_type("application/problem+json");
        let different = cli
            .post("/v1/things")
            .header("idempotency-key", "same")
            .body_json(&json!({"slow": false}))
            .send()
            .await;
        different.assert_status(PoemStatus::UNPROCESSABLE_ENTITY);
        counter.gate.add_permits(1);
        assert_eq!(first.await?, PoemStatus::CREATED, "{name}");
        assert_eq!(counter.calls.load(Ordering::SeqCst), 1, "{name}");
        // Now finished: replayed.
        let replay = cli
            .post("/v1/things")
            .header("idempotency-key", "same")
            .body_json(&slow)
            .send()
            .await;
        replay.assert_status(PoemStatus::CREATED);
        replay.assert_header("idempotent-replayed", "true");
    }
    Ok(())
}

/// Answers with the id the idempotency layer handed the request. While
/// `Hang` is set, the first call takes it and never answers, like a
/// gateway that died mid-request.
#[derive(Default)]
struct Hang(std::sync::atomic::AtomicBool);

#[handler]
async fn minted(req: &poem::Request, hang: Data<&Arc<Hang>>) -> poem::Response {
    if hang.0.0.swap(false, Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    let id = KeyedId::of(req).map(|id| id.to_string());
    poem::Response::builder()
        .status(PoemStatus::CREATED)
        .content_type("application/json")
        .body(json!({ "id": id }).to_string())
}

#[tokio::test]
async fn a_retry_after_an_attempt_that_never_answered_names_the_same_thing() -> Result<()> {
    for (name, store) in stores() {
        let lock_ttl = Duration::from_millis(300);
        let hang = Arc::new(Hang::default());
        let app = Arc::new(
            Route::new()
                .at("/v1/things", post(minted))
                .data(hang.clone())
                .with(Idempotency::new(
                    store,
                    Duration::from_secs(60),
                    lock_ttl,
                    CallerPolicy::default(),
                )),
        );
        let send = |key: Option<&'static str>, body: Value| {
            let app = app.clone();
            async move {
                let cli = TestClient::new(app);
                let mut req = cli.post("/v1/things").body_json(&body);
                if let Some(key) = key {
                    req = req.header("idempotency-key", key);
                }
                let resp = req.send().await;
                let status = resp.0.status();
                let body = resp.0.into_body().into_string().await?;
                anyhow::Ok((status, serde_json::from_str::<Value>(&body)?))
            }
        };

        // The first attempt takes the lock and is lost; its lock expires.
        hang.0.store(true, Ordering::SeqCst);
        let lost = tokio::spawn(send(Some("k-lost"), json!({"a": 1})));
        eventually(
            "the lost attempt to start",
            Duration::from_secs(5),
            || async { (!hang.0.load(Ordering::SeqCst)).then_some(()) },
        )
        .await;
        tokio::time::sleep(lock_ttl * 2).await;
        lost.abort();
        // The retry runs again, under the id the lost attempt was given,
        // and that id stays the key's.
        let (status, retry) = send(Some("k-lost"), json!({"a": 1})).await?;
        assert_eq!(status, PoemStatus::CREATED, "{name}: {retry}");
        let (_, replayed) = send(Some("k-lost"), json!({"a": 1})).await?;
        assert_eq!(replayed["id"], retry["id"], "{name}");
        // Another body under that key is refused, even after the lock expired.
        hang.0.store(true, Ordering::SeqCst);
        let lost = tokio::spawn(send(Some("k-body"), json!({"a": 1})));
        tokio::time::sleep(lock_ttl * 2).await;
        lost.abort();
        let (status, _) = send(Some("k-body"), json!({"a": 2})).await?;
        assert_eq!(status, PoemStatus::UNPROCESSABLE_ENTITY, "{name}");

        // The id is a UUIDv7 minted per key; no key, no id.
        let id = Uuid::parse_str(retry["id"].as_str().context("an id")?)?;
        assert_eq!(id.get_version_num(), 7, "{name}");
        let (_, other) = send(Some("k-other"), json!({"a": 1})).await?;
        assert_ne!(other["id"], retry["id"], "{name}");
        let (_, none) = send(None, json!({"a": 1})).await?;
        assert_eq!(none["id"], Value::Null, "{name}");
    }
    Ok(())
}

// ---------------------------------------------------------------- hardening

#[tokio::test]
async fn oversized_bodies_are_413_problems() -> Result<()> {
    let nats = NatsServer::start();
    let gw = Gateway::start(&nats, |s| s.hardening.max_body_bytes = 1024).await;
    let http = reqwest::Client::new();
    let resp = http
        .post(gw.url("/v1/products"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(vec![b' '; 2048])
        .send()
        .await?;
    let (status, body) = problem_of(resp).await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["type"], "urn:jetshop:problem:payload-too-large");
    Ok(())
}

#[tokio::test]
async fn streamed_bodies_are_counted() -> Result<()> {
    use jetshop_gateway::http::hardening::BodyLimit;
    let app = Route::new()
        .at(
            "/echo",
            post(poem::endpoint::make(|req: poem::Request| async move {
                req.into_body()
                    .into_bytes()
                    .await
                    .map(|b| b.len().to_string())
            })),
        )
        .with(BodyLimit { max: 1024 });
    let cli = TestClient::new(app);
    let chunks = |n: usize| {
        poem::Body::from_bytes_stream(futures::stream::iter(
            (0..n).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 256])),
        ))
    };
    let resp = cli.post("/echo").body(chunks(8)).send().await;
    resp.assert_status(PoemStatus::PAYLOAD_TOO_LARGE);
    resp.assert_content_type("application/problem+json");
    let resp = cli.post("/echo").body(chunks(4)).send().await;
    resp.assert_status_is_ok();
    resp.assert_text("1024").await;
    Ok(())
}

#[tokio::test]
async fn unknown_json_fields_are_400_problems_naming_the_field() -> Result<()> {
    use poem_openapi::{Object, OpenApi, OpenApiService, payload::Json};

    fn problems<E: poem::Endpoint + 'static>(ep: E) -> impl poem::Endpoint {
        problem::operation(ep)
    }

    #[derive(Object)]
    #[oai(deny_unknown_fields)]
    struct Thing {
        name: String,
    }

    struct Api;
    #[OpenApi]
    impl Api {
        #[oai(path = "/v1/things", method = "post", transform = "problems")]
        async fn create(&self, thing: Json<Thing>) -> Json<String> {
            Json(thing.0.name)
        }
    }

    let cli = TestClient::new(
        Route::new()
            .nest_no_strip("/v1", OpenApiService::new(Api, "t", "1"))
            .around(problem::catch),
    );
    let resp = cli
        .post("/v1/things")
        .body_json(&json!({"name": "x", "password_typo": "y"}))
        .send()
        .await;
    resp.assert_status(PoemStatus::BAD_REQUEST);
    resp.assert_content_type("application/problem+json");
    let body: Value = serde_json::from_str(&resp.0.into_body().into_string().await?)?;
    assert_eq!(body["errors"][0]["name"], "password_typo", "{body}");
    Ok(())
}

#[tokio::test]
async fn security_headers_on_every_response() -> Result<()> {
    let nats = NatsServer::start();
    let gw = Gateway::start(&nats, |_| {}).await;
    for path in [
        "/healthz",
        "/v1/products",
        "/nope",
        "/docs",
        "/openapi.json",
    ] {
        let resp = gw.get(path).await;
        let h = resp.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        let csp = h["content-security-policy"].to_str()?;
        if path == "/docs" {
            assert!(csp.contains("script-src 'self' 'unsafe-inline'"), "{csp}");
        } else {
            assert!(csp.starts_with("default-src 'none'"), "{path}: {csp}");
        }
        assert!(
            h.get("strict-transport-security").is_none(),
            "http: no HSTS"
        );
    }
    let resp = gw.get("/oauth/nope").await;
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let resp = gw.get("/v1/users/me").await;
    assert_eq!(resp.headers()["cache-control"], "no-store");
    Ok(())
}

#[tokio::test]
async fn cors_only_for_configured_origins() -> Result<()> {
    let nats = NatsServer::start();
    let gw = Gateway::start(&nats, |s| {
        s.hardening.cors_origins = vec!["https://shop.example".parse().unwrap()];
    })
    .await;
    let http = reqwest::Client::new();
    let preflight = |origin: &str| {
        http.request(reqwest::Method::OPTIONS, gw.url("/v1/products"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, idempotency-key",
            )
            .send()
    };
    let ok = preflight("https://shop.example").await?;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    let refused = preflight("https://evil.example").await?;
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let (status, _) = problem_of(refused).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Actual requests: the allowed origin may read the rate limit headers.
    let resp = http
        .get(gw.url("/v1/products"))
        .header("origin", "https://shop.example")
        .send()
        .await?;
    let exposed = resp.headers()["access-control-expose-headers"]
        .to_str()?
        .to_ascii_lowercase();
    for h in ["ratelimit-remaining", "x-request-id", "retry-after"] {
        assert!(exposed.contains(h), "{exposed}");
    }
    let resp = http
        .get(gw.url("/v1/products"))
        .header("origin", "https://evil.example")
        .send()
        .await?;
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    Ok(())
}

/// Not a check: prints what the limiter adds per request.
#[tokio::test]
async fn measure_rate_limit_overhead() -> Result<()> {
    let nats = NatsServer::start();
    let rt = runtime(&nats).await;
    const N: u32 = 2000;
    let generous = "default=1000000/60s";
    let mut report = Vec::new();
    for (name, redis) in [("in-process", None), ("redis", Some(SHARED_REDIS))] {
        let mut settings = GatewaySettings::for_addr("127.0.0.1:0".parse()?);
        limited(redis, &prefix(), generous)(&mut settings);
        let cli = TestClient::new(jetshop_gateway::app(&settings, rt.clone()));
        for _ in 0..100 {
            cli.get("/v1/nope").send().await;
        }
        let limited_start = Instant::now();
        for _ in 0..N {
            cli.get("/v1/nope").send().await;
        }
        let limited_time = limited_start.elapsed() / N;
        // /healthz skips the limiter: the same stack without it.
        let free_start = Instant::now();
        for _ in 0..N {
            cli.get("/healthz").send().await;
        }
        let free_time = free_start.elapsed() / N;
        report.push(format!(
            "{name}: limited route {limited_time:?}/req, unlimited route {free_time:?}/req"
        ));
    }
    // The limiter alone: what it adds to each request.
    for (name, redis) in [("in-process", None), ("redis", Some(SHARED_REDIS))] {
        let settings = LimitSettings {
            redis_url: redis.map(|u| u.parse().unwrap()),
            redis_key_prefix: prefix(),
            ..LimitSettings::default()
        };
        let limiter = RateLimiter::from_settings(&settings)?;
        let quota = settings.rate_limit.quota(RouteGroup::Default);
        let caller = caller_key(&poem::Request::builder().finish(), false);
        let start = Instant::now();
        for _ in 0..N {
            limiter
                .check(RouteGroup::Default, &caller, quota)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        report.push(format!(
            "{name} limiter check alone: {:?}/req",
            start.elapsed() / N
        ));
    }
    eprintln!("rate limit overhead (debug build, {N} sequential requests):");
    for line in report {
        eprintln!("  {line}");
    }
    Ok(())
}
