//! The gateway over real HTTP, in front of a real catalog on a real
//! nats-server and database. No mocks.

use std::{collections::HashSet, net::SocketAddr, time::Duration};

use anyhow::{Context, Result, ensure};
use jetshop_catalog::CatalogSettings;
use jetshop_contracts::catalog::CreateProduct;
use jetshop_gateway::{GatewaySettings, openapi_json, run};
use jetshop_platform::{
    config::NatsSettings,
    envelope::{MessageMeta, send_command},
    runtime::Runtime,
};
use jetshop_testkit::{NatsServer, TestDb, eventually, free_port};
use reqwest::{StatusCode, header};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

/// A running catalog that can be stopped.
struct Catalog {
    stop: CancellationToken,
    task: JoinHandle<Result<(), jetshop_catalog::Error>>,
    _db: TestDb,
}

impl Catalog {
    async fn start(rt: &Runtime) -> Self {
        let db = TestDb::fresh().await;
        let stop = CancellationToken::new();
        let settings = CatalogSettings::for_database(db.url.clone());
        let task = tokio::spawn(jetshop_catalog::run(settings, rt.clone(), stop.clone()));
        Self {
            stop,
            task,
            _db: db,
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("catalog stops in time")
            .expect("catalog task does not panic")
            .expect("catalog stops cleanly");
    }
}

/// nats-server, optionally the catalog, and the gateway on a free port.
struct Stack {
    nats: NatsServer,
    rt: Runtime,
    catalog: Option<Catalog>,
    base: String,
    http: reqwest::Client,
    stop: CancellationToken,
    gateway: Option<JoinHandle<Result<(), jetshop_gateway::Error>>>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(c) = &self.catalog {
            c.stop.cancel();
        }
    }
}

impl Stack {
    async fn start(with_catalog: bool) -> Self {
        Self::start_with(with_catalog, |_| {}).await
    }

    /// The stack with the gateway's settings changed by `tune`.
    async fn start_with(with_catalog: bool, tune: impl FnOnce(&mut GatewaySettings)) -> Self {
        jetshop_testkit::init_test_log();
        let nats = NatsServer::start();
        let client = jetshop_platform::nats::connect(&NatsSettings::for_url(nats.url()), "test")
            .await
            .expect("connect to nats");
        let rt = Runtime::new(client, 1);
        let catalog = if with_catalog {
            Some(Catalog::start(&rt).await)
        } else {
            None
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let stop = CancellationToken::new();
        let mut settings = GatewaySettings::for_addr(addr);
        tune(&mut settings);
        let gateway = tokio::spawn(run(settings, rt.clone(), stop.clone()));
        let stack = Self {
            nats,
            rt,
            catalog,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            stop,
            gateway: Some(gateway),
        };
        eventually("the gateway to listen", WAIT, || async {
            stack.http.get(stack.url("/healthz")).send().await.ok()
        })
        .await;
        stack
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    /// Create products through the catalog's command stream and wait until
    /// the gateway serves each one.
    async fn seed(&self, products: &[CreateProduct]) {
        let js = self.rt.jetstream();
        for p in products {
            // The catalog provisions its streams as it starts: retry until
            // the stream takes the command (the same id, so no duplicate).
            let command_id = Uuid::now_v7().to_string();
            eventually("the command stream to accept", WAIT, || async {
                send_command(&js, &command_id, p, &MessageMeta::default())
                    .await
                    .ok()
            })
            .await;
        }
        for p in products {
            let path = format!("/v1/products/{}", p.id);
            eventually(&format!("product {} to be served", p.sku), WAIT, || async {
                (self.get(&path).await.status() == StatusCode::OK).then_some(())
            })
            .await;
        }
    }
}

fn product(sku: &str, amount_minor: i64) -> CreateProduct {
    CreateProduct {
        id: Uuid::new_v4(),
        sku: sku.into(),
        name: format!("Product {sku}"),
        description: format!("The {sku} product."),
        price: jetshop_contracts::catalog::Money {
            amount_minor,
            currency: "EUR".into(),
        },
        stock: 7,
    }
}

/// Status, content type and JSON body of a problem response.
async fn problem(resp: reqwest::Response) -> Result<(StatusCode, Value)> {
    let status = resp.status();
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .context("content-type")?
        .to_str()?
        .to_owned();
    ensure!(
        ct == "application/problem+json",
        "{status}: content type {ct}"
    );
    let body: Value = resp.json().await?;
    ensure!(
        body["status"] == status.as_u16(),
        "status field {body} for {status}"
    );
    for field in ["type", "title"] {
        ensure!(body[field].is_string(), "{field} missing in {body}");
    }
    Ok((status, body))
}

#[tokio::test]
async fn lists_and_gets_products() -> Result<()> {
    let stack = Stack::start(true).await;
    let demo = jetshop_catalog::demo::products();
    stack.seed(&demo).await;

    let page: Value = stack.get("/v1/products?limit=100").await.json().await?;
    let items = page["items"].as_array().context("items")?;
    assert_eq!(items.len(), demo.len());
    assert!(page.get("next_cursor").is_none_or(Value::is_null));

    let wanted = &demo[0];
    let resp = stack.get(&format!("/v1/products/{}", wanted.id)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()[header::CONTENT_TYPE]
            .to_str()?
            .starts_with("application/json")
    );
    let got: Value = resp.json().await?;
    assert_eq!(got["id"], wanted.id.to_string());
    assert_eq!(got["sku"], wanted.sku);
    assert_eq!(got["name"], wanted.name);
    assert_eq!(got["description"], wanted.description);
    assert_eq!(got["price"]["amount_minor"], wanted.price.amount_minor);
    assert_eq!(got["price"]["currency"], wanted.price.currency);
    assert_eq!(got["stock"], wanted.stock);
    assert!(got["version"].is_i64());
    for ts in ["created_at", "updated_at"] {
        let ts = got[ts].as_str().context("timestamp")?;
        chrono::DateTime::parse_from_rfc3339(ts)?;
    }
    assert!(items.contains(&got), "the list holds the same product");

    let found: Value = stack
        .get(&format!("/v1/products?q={}", wanted.sku.to_lowercase()))
        .await
        .json()
        .await?;
    let skus: Vec<&str> = found["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|p| p["sku"].as_str())
        .collect();
    assert!(skus.contains(&wanted.sku.as_str()), "{skus:?}");
    Ok(())
}

#[tokio::test]
async fn pages_through_products_one_at_a_time() -> Result<()> {
    let stack = Stack::start(true).await;
    let products: Vec<_> = (0..5)
        .map(|i| product(&format!("PAGE-{i}"), 100 + i))
        .collect();
    stack.seed(&products).await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..=products.len() + 1 {
        let path = match &cursor {
            Some(c) => format!("/v1/products?limit=1&cursor={c}"),
            None => "/v1/products?limit=1".to_owned(),
        };
        let resp = stack.get(&path).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let page: Value = resp.json().await?;
        let items = page["items"].as_array().context("items")?;
        assert!(items.len() <= 1, "limit=1 returned {}", items.len());
        seen.extend(
            items
                .iter()
                .filter_map(|p| p["id"].as_str().map(str::to_owned)),
        );
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert!(cursor.is_none(), "pagination did not end");
    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        seen.len(),
        "a product was served twice: {seen:?}"
    );
    let wanted: HashSet<_> = products.iter().map(|p| p.id.to_string()).collect();
    assert_eq!(unique, wanted);
    Ok(())
}

#[tokio::test]
async fn unknown_product_is_a_404_problem() -> Result<()> {
    let stack = Stack::start(true).await;
    // The catalog answers once its RPC endpoints are registered.
    let path = format!("/v1/products/{}", Uuid::new_v4());
    let resp = eventually("the catalog to answer", WAIT, || async {
        let resp = stack.get(&path).await;
        (resp.status() != StatusCode::SERVICE_UNAVAILABLE).then_some(resp)
    })
    .await;
    let (status, body) = problem(resp).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["instance"], path);
    Ok(())
}

#[tokio::test]
async fn bad_parameters_are_400_problems() -> Result<()> {
    let stack = Stack::start(false).await;
    for (path, param) in [
        ("/v1/products/not-a-uuid", "id"),
        ("/v1/products?limit=0", "limit"),
        ("/v1/products?limit=1000", "limit"),
        ("/v1/products?limit=ten", "limit"),
    ] {
        let (status, body) = problem(stack.get(path).await).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(body["errors"][0]["name"], param, "{path}: {body}");
        assert!(body["errors"][0]["reason"].is_string(), "{path}: {body}");
    }
    Ok(())
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_are_problems() -> Result<()> {
    let stack = Stack::start(false).await;
    for path in ["/nope", "/v1/nope", "/v1/products/1/2"] {
        let (status, body) = problem(stack.get(path).await).await?;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["instance"], path);
    }
    for (path, allow) in [("/v1/products", "GET, POST"), ("/healthz", "GET")] {
        let resp = stack.http.delete(stack.url(path)).send().await?;
        // RFC 9110: a 405 names the methods the resource does answer.
        assert_eq!(resp.headers()["allow"].to_str()?, allow, "{path}");
        let (status, _) = problem(resp).await?;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
    }
    Ok(())
}

fn no_product_cache(settings: &mut GatewaySettings) {
    settings.product_cache_ttl = Duration::ZERO;
}

/// The stock a product read answers.
async fn stock_read(stack: &Stack, id: Uuid) -> Option<i64> {
    let resp = stack.get(&format!("/v1/products/{id}")).await;
    let body: Value = resp.json().await.ok()?;
    body["stock"].as_i64()
}

#[tokio::test]
async fn product_reads_are_cached_and_a_change_shows_at_once() -> Result<()> {
    // A TTL far longer than the wait below: only the catalog's events can
    // make the change show in time.
    let mut stack = Stack::start_with(true, |s| {
        s.product_cache_ttl = Duration::from_secs(300);
    })
    .await;
    let p = product("CACHED-1", 500);
    stack.seed(std::slice::from_ref(&p)).await;
    assert_eq!(stock_read(&stack, p.id).await, Some(7));

    let adjust = jetshop_contracts::catalog::AdjustStock {
        id: p.id,
        delta: -3,
        reason: Some("damaged".into()),
    };
    send_command(
        &stack.rt.jetstream(),
        &Uuid::now_v7().to_string(),
        &adjust,
        &MessageMeta::default(),
    )
    .await?;
    eventually(
        "the stock change to show",
        Duration::from_secs(5),
        || async { (stock_read(&stack, p.id).await == Some(4)).then_some(()) },
    )
    .await;

    // Served from the gateway's cache: the catalog is not asked.
    stack.catalog.take().context("catalog")?.stop().await;
    for _ in 0..3 {
        assert_eq!(stock_read(&stack, p.id).await, Some(4));
    }
    Ok(())
}

#[tokio::test]
async fn stopped_catalog_is_a_503_with_retry_after() -> Result<()> {
    // Without the gateway's product cache, every read reaches the catalog.
    let mut stack = Stack::start_with(true, no_product_cache).await;
    let p = product("GONE-1", 500);
    stack.seed(std::slice::from_ref(&p)).await;
    stack.catalog.take().context("catalog")?.stop().await;

    for path in [format!("/v1/products/{}", p.id), "/v1/products".to_owned()] {
        let resp = stack.get(&path).await;
        assert_eq!(
            resp.headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.to_str().unwrap()),
            Some("1"),
            "{path}"
        );
        let (status, body) = problem(resp).await?;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
    }
    Ok(())
}

#[tokio::test]
async fn a_stopped_service_trips_its_breaker_and_a_restarted_one_is_found_again() -> Result<()> {
    // Without the gateway's product cache, every read reaches the catalog.
    let mut stack = Stack::start_with(true, no_product_cache).await;
    let p = product("TRIP-1", 500);
    stack.seed(std::slice::from_ref(&p)).await;
    stack.catalog.take().context("catalog")?.stop().await;
    let path = format!("/v1/products/{}", p.id);

    // Each failed call counts; once enough failed in a row the gateway
    // stops asking and says so, with when to come back.
    let (retry_after, detail) = eventually("the catalog's breaker to open", WAIT, || async {
        let resp = stack.get(&path).await;
        let retry_after: u64 = resp
            .headers()
            .get(header::RETRY_AFTER)?
            .to_str()
            .ok()?
            .parse()
            .ok()?;
        let (status, body) = problem(resp).await.ok()?;
        let detail = body["detail"].as_str()?.to_owned();
        (status == StatusCode::SERVICE_UNAVAILABLE && detail.contains("stopped asking"))
            .then_some((retry_after, detail))
    })
    .await;
    assert!(detail.contains("catalog"), "{detail}");
    let open_for = GatewaySettings::DEFAULT_BREAKER_OPEN_FOR.as_secs();
    assert!(
        (1..=open_for).contains(&retry_after),
        "Retry-After: {retry_after}"
    );

    // Back (with an empty store): after the open period a probe finds it,
    // and the gateway answers from it again.
    stack.catalog = Some(Catalog::start(&stack.rt).await);
    eventually("the catalog to be asked again", WAIT, || async {
        (stack.get(&path).await.status() == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    Ok(())
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() -> Result<()> {
    let stack = Stack::start(false).await;
    let request_id = |resp: &reqwest::Response| {
        resp.headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned())
    };

    for path in ["/healthz", "/nope", "/v1/products?limit=0"] {
        let resp = stack
            .http
            .get(stack.url(path))
            .header("X-Request-Id", "req-42.abc")
            .send()
            .await?;
        assert_eq!(request_id(&resp).as_deref(), Some("req-42.abc"), "{path}");
    }

    for given in [None, Some("has a space"), Some(&*"x".repeat(129))] {
        let mut req = stack.http.get(stack.url("/healthz"));
        if let Some(given) = given {
            req = req.header("X-Request-Id", given);
        }
        let resp = req.send().await?;
        let id = request_id(&resp).context("x-request-id")?;
        assert_eq!(Uuid::parse_str(&id)?.get_version_num(), 7, "{given:?}");
    }
    Ok(())
}

#[tokio::test]
async fn liveness_and_readiness() -> Result<()> {
    let mut stack = Stack::start(true).await;
    let resp = stack.get("/healthz").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await?["status"], "ok");

    let ready = eventually("readiness", WAIT, || async {
        let resp = stack.get("/readyz").await;
        (resp.status() == StatusCode::OK).then_some(resp)
    })
    .await;
    let body: Value = ready.json().await?;
    let checks: Vec<&str> = body["checks"]
        .as_array()
        .context("checks")?
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(checks.contains(&"gateway-nats"), "{checks:?}");

    stack.nats.stop();
    eventually("not ready without NATS", WAIT, || async {
        let resp = stack.get("/readyz").await;
        (resp.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(())
    })
    .await;
    assert_eq!(stack.get("/healthz").await.status(), StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn serves_the_openapi_document_and_swagger_ui() -> Result<()> {
    let stack = Stack::start(false).await;
    let resp = stack.get("/openapi.json").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let spec: Value = resp.json().await?;
    assert!(
        spec["openapi"]
            .as_str()
            .context("openapi")?
            .starts_with("3."),
        "{}",
        spec["openapi"]
    );
    assert_eq!(spec["info"]["title"], "jetshop");
    assert_eq!(spec["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(spec["paths"]["/v1/products/{id}"]["get"].is_object());
    assert!(spec["paths"]["/v1/products"]["get"].is_object());
    let problem = &spec["paths"]["/v1/products/{id}"]["get"]["responses"]["404"]["content"];
    assert!(problem["application/problem+json"].is_object(), "{problem}");

    let resp = stack.get("/docs").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()[header::CONTENT_TYPE]
            .to_str()?
            .starts_with("text/html")
    );
    assert!(resp.text().await?.contains("swagger"));
    Ok(())
}

#[tokio::test]
async fn exposes_http_metrics_by_route_template() -> Result<()> {
    let stack = Stack::start(false).await;
    stack.get(&format!("/v1/products/{}", Uuid::new_v4())).await;
    stack.get("/v1/products/not-a-uuid").await;
    for path in ["/nope", "/v1/nope", "/docs", "/docs/oauth-receiver.html"] {
        stack.get(path).await;
    }
    let resp = stack.get("/metrics").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await?;
    assert!(text.contains("jetshop_http_requests_total"), "{text}");
    assert!(text.contains("jetshop_http_request_duration_seconds"));
    assert!(text.contains(r#"route="/v1/products/{id}""#), "{text}");
    let unmatched = r#"jetshop_http_requests_total{method="GET",route="unmatched",status="404"} 2"#;
    assert!(text.contains(unmatched), "{text}");
    assert!(!text.contains(r#"route="/v1""#), "{text}");
    assert!(!text.contains("not-a-uuid"), "raw paths leak into labels");
    Ok(())
}

#[tokio::test]
async fn run_stops_on_shutdown_and_refuses_a_taken_port() -> Result<()> {
    let mut stack = Stack::start(false).await;
    // The same address is taken now: a second gateway fails with a clear error.
    let addr: SocketAddr = stack.base.trim_start_matches("http://").parse()?;
    let err = run(
        GatewaySettings::for_addr(addr),
        stack.rt.clone(),
        CancellationToken::new(),
    )
    .await
    .expect_err("the port is taken");
    assert!(matches!(err, jetshop_gateway::Error::Bind { .. }), "{err}");

    stack.stop.cancel();
    let gateway = stack.gateway.take().context("gateway task")?;
    tokio::time::timeout(WAIT, gateway)
        .await??
        .context("run returns Ok")?;
    ensure!(
        stack.http.get(stack.url("/healthz")).send().await.is_err(),
        "still serving after shutdown"
    );
    Ok(())
}

/// The checked-in `gateway/openapi.json` is what the code generates.
/// Regenerate with `UPDATE_OPENAPI=1 cargo nextest run -p jetshop-gateway openapi_artifact`.
#[test]
fn openapi_artifact_is_up_to_date() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let generated = format!("{}\n", openapi_json());
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write openapi.json");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "gateway/openapi.json is stale; regenerate it with UPDATE_OPENAPI=1 \
         cargo nextest run -p jetshop-gateway openapi_artifact"
    );
}
