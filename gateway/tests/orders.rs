//! `/v1/orders` over real HTTP, in front of the real users, catalog and
//! orders services on a real nats-server and databases. Tokens are signed
//! with the stack's key (exact scopes, no login per test); one test signs
//! in through the bootstrap `swagger-ui` client to show the real issuer
//! grants the order scopes.
//!
//! Most tests run no payments service: an order whose stock is held waits
//! at `stock_reserved` for a payment authorization that never comes (the
//! saga's deadline is far off), which makes it a stable order to read,
//! list, follow and start cancelling. Orders the catalog refuses (more
//! units than in stock) end `cancelled` without payments. The tests of
//! whole sagas add the payments service (and a real card processor in test mode),
//! and the webhook test the notifications service.

#[path = "support/oauth.rs"]
mod support;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use jetshop_contracts::catalog::{CreateProduct, Money};
use jetshop_gateway::oauth::{
    keys::KeyPair,
    mint::{ACCESS_TOKEN_TYP, AccessClaims, sign},
};
use jetshop_platform::envelope::{MessageMeta, send_command};
use jetshop_testkit::eventually;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use uuid::Uuid;

use support::*;

/// An orders stack whose tokens the test can sign.
struct Shop {
    stack: Stack,
    key: KeyPair,
}

impl Shop {
    /// Users, catalog, orders and the gateway.
    async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    /// The same with more services (`payments`, `notifications`).
    async fn start_with(options: Options) -> Self {
        let key = KeyPair::generate();
        let pem = key.to_pem();
        let stack = Stack::start(Options {
            orders: true,
            signing_key: Some(key),
            // A client that leaves is noticed at the next keep-alive writes.
            sse_keep_alive: Some(Duration::from_millis(500)),
            ..options
        })
        .await;
        let key = KeyPair::from_pem(&pem).expect("the key again");
        let shop = Self { stack, key };
        // The orders service answers once it has migrated and registered.
        let token = shop.customer(&["orders:read"]);
        eventually("the orders service to answer", WAIT, || async {
            let resp = shop.get("/v1/orders", &token).await;
            (resp.status() == StatusCode::OK).then_some(())
        })
        .await;
        shop
    }

    /// An access token for `sub`, issued to `client`, with `scopes`.
    fn token(&self, sub: &str, client: &str, scopes: &[&str], roles: &[&str]) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = AccessClaims {
            iss: self.stack.base.clone(),
            sub: sub.to_owned(),
            aud: "jetshop".into(),
            exp: now + 600,
            nbf: now,
            iat: now,
            jti: Uuid::new_v4().to_string(),
            scope: scopes.join(" "),
            client_id: client.to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        };
        sign(&self.key, ACCESS_TOKEN_TYP, &claims)
    }

    /// A token for the stack's customer.
    fn customer(&self, scopes: &[&str]) -> String {
        self.token(
            &self.stack.customer_id.to_string(),
            "web",
            scopes,
            &["customer"],
        )
    }

    /// A token for the stack's admin.
    fn admin(&self) -> String {
        self.token(
            &self.stack.admin_id.to_string(),
            "web",
            &["orders:read", "orders:write", "users:admin"],
            &["admin"],
        )
    }

    async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.stack.get_with(path, token).await
    }

    async fn post(&self, path: &str, token: &str, body: Option<&Value>) -> reqwest::Response {
        let mut req = self
            .stack
            .http
            .post(self.stack.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(body);
        }
        req.send().await.expect("request")
    }

    /// Create a product through the catalog's command stream and wait
    /// until the gateway serves it.
    async fn product(&self, sku: &str, price_minor: i64, stock: i64) -> Uuid {
        let id = Uuid::now_v7();
        let create = CreateProduct {
            id,
            sku: sku.into(),
            name: format!("Product {sku}"),
            description: String::new(),
            price: Money {
                amount_minor: price_minor,
                currency: "EUR".into(),
            },
            stock,
        };
        let js = self.stack.jetstream();
        let command_id = Uuid::now_v7().to_string();
        eventually("the catalog's command stream", WAIT, || async {
            send_command(&js, &command_id, &create, &MessageMeta::default())
                .await
                .ok()
        })
        .await;
        let path = format!("/v1/products/{id}");
        eventually("the product to be served", WAIT, || async {
            let resp = self
                .stack
                .http
                .get(self.stack.url(&path))
                .send()
                .await
                .ok()?;
            (resp.status() == StatusCode::OK).then_some(())
        })
        .await;
        id
    }

    /// Place an order as the customer: the 202's body.
    async fn place(&self, lines: &[(Uuid, i64)], card: &str) -> Result<Value> {
        let resp = self
            .post(
                "/v1/orders",
                &self.customer(&["orders:write"]),
                Some(&order_body(lines, card)),
            )
            .await;
        ensure!(
            resp.status() == StatusCode::ACCEPTED,
            "place: {} {}",
            resp.status(),
            resp.text().await?
        );
        Ok(resp.json().await?)
    }

    /// The catalog's stock of a product now.
    async fn stock(&self, product: Uuid) -> i64 {
        let resp = self
            .stack
            .http
            .get(self.stack.url(&format!("/v1/products/{product}")))
            .send()
            .await
            .expect("product");
        let product: Value = resp.json().await.expect("product body");
        product["stock"].as_i64().expect("stock")
    }

    /// Poll the order until its status is `status`.
    async fn wait_for(&self, order_id: &str, status: &str) -> Value {
        let token = self.admin();
        let path = format!("/v1/orders/{order_id}");
        eventually(
            &format!("order {order_id} to be {status}"),
            WAIT,
            || async {
                let order: Value = self.get(&path, &token).await.json().await.ok()?;
                (order["status"] == status).then_some(order)
            },
        )
        .await
    }
}

fn order_body(lines: &[(Uuid, i64)], card: &str) -> Value {
    json!({
        "lines": lines
            .iter()
            .map(|(id, q)| json!({"product_id": id, "quantity": q}))
            .collect::<Vec<_>>(),
        "card_token": card,
    })
}

async fn problem(resp: reqwest::Response) -> Result<(StatusCode, Value)> {
    let status = resp.status();
    ensure!(
        resp.headers()[header::CONTENT_TYPE] == "application/problem+json",
        "a problem, got {:?}",
        resp.headers().get(header::CONTENT_TYPE)
    );
    Ok((status, resp.json().await?))
}

/// The `status` events of a Server-Sent Events body read so far, and
/// whether the server ended the stream.
struct Sse {
    resp: reqwest::Response,
    buffer: String,
}

impl Sse {
    fn new(resp: reqwest::Response) -> Self {
        Self {
            resp,
            buffer: String::new(),
        }
    }

    /// The next `status` event's data; `None` when the stream ended.
    /// Comments (keep-alives) are skipped.
    async fn next(&mut self) -> Result<Option<Value>> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let mut event = "message";
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = v;
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if data.is_empty() {
                    continue;
                }
                ensure!(event == "status", "unexpected event {event}");
                return Ok(Some(serde_json::from_str(&data)?));
            }
            let chunk = tokio::time::timeout(WAIT, self.resp.chunk())
                .await
                .context("no event in time")??;
            match chunk {
                Some(bytes) => self.buffer.push_str(std::str::from_utf8(&bytes)?),
                None => return Ok(None),
            }
        }
    }
}

/// The value of a Prometheus sample line `name{labels} value` (0 when absent).
async fn metric(shop: &Shop, name: &str) -> f64 {
    let text = shop
        .stack
        .http
        .get(shop.stack.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn place_read_list_and_history() -> Result<()> {
    let shop = Shop::start().await;
    let mug = shop.product("MUG-1", 1250, 10).await;
    let tee = shop.product("TEE-1", 2000, 10).await;

    // Two lines of the mug are added up.
    let body = order_body(&[(mug, 1), (tee, 1), (mug, 2)], "tok_visa");
    let resp = shop
        .post("/v1/orders", &shop.customer(&["orders:write"]), Some(&body))
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = resp.headers()[header::LOCATION].to_str()?.to_owned();
    let accepted: Value = resp.json().await?;
    let id = accepted["order_id"]
        .as_str()
        .context("order_id")?
        .to_owned();
    assert_eq!(Uuid::parse_str(&id)?.get_version_num(), 7);
    assert_eq!(location, format!("/v1/orders/{id}"));
    assert_eq!(accepted["status"], "placed");
    assert_eq!(accepted["links"]["self"], location);
    assert_eq!(accepted["links"]["events"], format!("{location}/events"));

    // Without a payments service the order waits for its authorization.
    let reader = shop.customer(&["orders:read"]);
    let order: Value = eventually("the order to hold its stock", WAIT, || async {
        let order: Value = shop.get(&location, &reader).await.json().await.ok()?;
        (order["status"] == "stock_reserved").then_some(order)
    })
    .await;
    assert_eq!(order["id"], id.as_str());
    assert_eq!(order["customer_id"], shop.stack.customer_id.to_string());
    let lines = order["lines"].as_array().context("lines")?;
    assert_eq!(lines.len(), 2, "{order}");
    let mug_line = lines
        .iter()
        .find(|l| l["product_id"] == mug.to_string())
        .context("mug line")?;
    assert_eq!(mug_line["quantity"], 3);
    assert_eq!(mug_line["sku"], "MUG-1");
    assert_eq!(mug_line["unit_price"]["amount_minor"], 1250);
    assert_eq!(mug_line["line_total"]["amount_minor"], 3750);
    assert_eq!(order["total"]["amount_minor"], 5750);
    assert_eq!(order["total"]["currency"], "EUR");
    assert!(order.get("cancel_reason").is_none());
    let timeline = order["timeline"].as_array().context("timeline")?;
    assert!(
        timeline.iter().any(|t| t["step"] == "reserve_stock"),
        "{timeline:?}"
    );

    // The aggregate's events, oldest first.
    let history: Value = shop
        .get(&format!("{location}/history"), &reader)
        .await
        .json()
        .await?;
    assert_eq!(history["order_id"], id.as_str());
    let events = history["events"].as_array().context("events")?;
    assert_eq!(events[0]["sequence"], 1);
    assert_eq!(events[0]["type"], "orders.placed");
    assert_eq!(events[0]["data"]["order_id"], id.as_str());
    assert!(
        events.iter().any(|e| e["type"] == "orders.stock-reserved"),
        "{events:?}"
    );

    // Two more orders; pages of two, newest first, with a next link.
    let second = shop.place(&[(tee, 1)], "tok_visa").await?;
    let third = shop.place(&[(tee, 1)], "tok_visa").await?;
    // Accepted is not yet applied: wait until the service has all three.
    eventually("three orders to be listed", WAIT, || async {
        let page: Value = shop.get("/v1/orders", &reader).await.json().await.ok()?;
        (page["items"].as_array()?.len() == 3).then_some(())
    })
    .await;
    let resp = shop.get("/v1/orders?limit=2", &reader).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let link = resp.headers()[header::LINK].to_str()?.to_owned();
    let page: Value = resp.json().await?;
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|o| o["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        ids(&page),
        vec![
            third["order_id"].as_str().unwrap().to_owned(),
            second["order_id"].as_str().unwrap().to_owned()
        ]
    );
    let next = page["next"].as_str().context("next")?;
    assert!(next.contains("limit=2"), "{next}");
    assert_eq!(link, format!("<{next}>; rel=\"next\""));
    let rest: Value = shop.get(next, &reader).await.json().await?;
    assert_eq!(ids(&rest), vec![id.clone()]);
    assert!(rest.get("next").is_none(), "{rest}");

    // Status filter.
    let reserved: Value = eventually("all three to hold stock", WAIT, || async {
        let page: Value = shop
            .get("/v1/orders?status=stock_reserved", &reader)
            .await
            .json()
            .await
            .ok()?;
        (ids(&page).len() == 3).then_some(page)
    })
    .await;
    assert!(ids(&reserved).contains(&id));
    let confirmed: Value = shop
        .get("/v1/orders?status=confirmed", &reader)
        .await
        .json()
        .await?;
    assert!(ids(&confirmed).is_empty());
    let resp = shop.get("/v1/orders?status=nope", &reader).await;
    assert_eq!(problem(resp).await?.0, StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test]
async fn another_customers_order_is_404_and_admins_see_everything() -> Result<()> {
    let shop = Shop::start().await;
    let mug = shop.product("MUG-2", 500, 5).await;
    let placed = shop.place(&[(mug, 1)], "tok_visa").await?;
    let id = placed["order_id"].as_str().context("order_id")?;
    shop.wait_for(id, "stock_reserved").await;

    let stranger = shop.token(
        &Uuid::now_v7().to_string(),
        "web",
        &["orders:read", "orders:write"],
        &["customer"],
    );
    let missing = Uuid::now_v7();
    for (method, suffix) in [
        ("GET", ""),
        ("GET", "/history"),
        ("GET", "/events"),
        ("POST", "/cancel"),
    ] {
        let ask = |order: String| {
            let shop = &shop;
            let stranger = &stranger;
            async move {
                let path = format!("/v1/orders/{order}{suffix}");
                if method == "GET" {
                    shop.get(&path, stranger).await
                } else {
                    shop.post(&path, stranger, None).await
                }
            }
        };
        // Someone else's order answers exactly like one that does not exist.
        let (status, theirs) = problem(ask(id.to_owned()).await).await?;
        let (_, nobodys) = problem(ask(missing.to_string()).await).await?;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {suffix}");
        assert_eq!(
            theirs["detail"].as_str().unwrap().replace(id, "X"),
            nobodys["detail"]
                .as_str()
                .unwrap()
                .replace(&missing.to_string(), "X"),
            "{method} {suffix}"
        );
        assert_eq!(theirs["type"], nobodys["type"]);
    }
    // Their list does not have it either, nor may they list the customer's.
    let theirs: Value = shop.get("/v1/orders", &stranger).await.json().await?;
    assert_eq!(theirs["items"], json!([]));
    let resp = shop
        .get(
            &format!("/v1/orders?customer_id={}", shop.stack.customer_id),
            &stranger,
        )
        .await;
    assert_eq!(problem(resp).await?.0, StatusCode::FORBIDDEN);

    // An admin reads it, its history, and the customer's list.
    let admin = shop.admin();
    let order: Value = shop
        .get(&format!("/v1/orders/{id}"), &admin)
        .await
        .json()
        .await?;
    assert_eq!(order["id"], id);
    let resp = shop.get(&format!("/v1/orders/{id}/history"), &admin).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let listed: Value = shop
        .get(
            &format!("/v1/orders?customer_id={}", shop.stack.customer_id),
            &admin,
        )
        .await
        .json()
        .await?;
    assert_eq!(listed["items"][0]["id"], id);
    Ok(())
}

#[tokio::test]
async fn bad_orders_are_refused_before_anything_is_queued() -> Result<()> {
    let shop = Shop::start().await;
    let mug = shop.product("MUG-3", 500, 5).await;
    let writer = shop.customer(&["orders:write"]);

    // An unknown product is a 422 naming the line.
    let ghost = Uuid::now_v7();
    let resp = shop
        .post(
            "/v1/orders",
            &writer,
            Some(&order_body(&[(mug, 1), (ghost, 1)], "tok_visa")),
        )
        .await;
    let (status, p) = problem(resp).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(p["type"], "urn:jetshop:problem:unknown-product");
    assert_eq!(p["errors"][0]["name"], "lines[1].product_id");
    assert!(p["detail"].as_str().unwrap().contains(&ghost.to_string()));

    // Each line within the schema's bound, but one product over all of
    // them is more than an order may ask for: a 422 naming its first line.
    let resp = shop
        .post(
            "/v1/orders",
            &writer,
            Some(&order_body(
                &[(ghost, 1), (mug, 600), (mug, 401)],
                "tok_visa",
            )),
        )
        .await;
    let (status, p) = problem(resp).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(p["type"], "urn:jetshop:problem:too-many-units");
    assert_eq!(p["errors"][0]["name"], "lines[1].quantity");

    // Shapes the schema refuses, and values of other JSON types than it
    // says (no coercion of a number into the card token).
    let many: Vec<(Uuid, i64)> = (0..51).map(|_| (Uuid::now_v7(), 1)).collect();
    for body in [
        order_body(&[], "tok_visa"),
        order_body(&many, "tok_visa"),
        order_body(&[(mug, 0)], "tok_visa"),
        order_body(&[(mug, 1001)], "tok_visa"),
        json!({"lines": [{"product_id": mug, "quantity": 1}], "card_token": 42}),
        json!({"lines": [{"product_id": mug, "quantity": 1.5}], "card_token": "tok_visa"}),
        order_body(&[(mug, 1)], ""),
        order_body(&[(mug, 1)], "tok visa"),
        order_body(&[(mug, 1)], &"x".repeat(65)),
        json!({"lines": [{"product_id": mug, "quantity": 1}], "card_token": "tok_visa", "coupon": "x"}),
        json!({"lines": [{"product_id": "nope", "quantity": 1}], "card_token": "tok_visa"}),
    ] {
        let resp = shop.post("/v1/orders", &writer, Some(&body)).await;
        assert_eq!(problem(resp).await?.0, StatusCode::BAD_REQUEST, "{body}");
    }

    // Nothing above reached the orders service.
    let page: Value = shop
        .get("/v1/orders", &shop.customer(&["orders:read"]))
        .await
        .json()
        .await?;
    assert_eq!(page["items"], json!([]));
    Ok(())
}

#[tokio::test]
async fn an_idempotency_key_replays_the_same_order() -> Result<()> {
    let shop = Shop::start().await;
    let mug = shop.product("MUG-4", 500, 5).await;
    let writer = shop.customer(&["orders:write"]);
    let body = order_body(&[(mug, 1)], "tok_visa");
    let post = |key: &'static str, body: Value| {
        let shop = &shop;
        let writer = &writer;
        async move {
            shop.stack
                .http
                .post(shop.stack.url("/v1/orders"))
                .bearer_auth(writer)
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .expect("request")
        }
    };
    let first = post("order-1", body.clone()).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let location = first.headers()[header::LOCATION].clone();
    let first: Value = first.json().await?;
    let again = post("order-1", body.clone()).await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()[header::LOCATION], location);
    let again: Value = again.json().await?;
    assert_eq!(again["order_id"], first["order_id"]);

    // The same key for another order is refused.
    let other = post("order-1", order_body(&[(mug, 2)], "tok_visa")).await;
    assert_eq!(problem(other).await?.0, StatusCode::UNPROCESSABLE_ENTITY);

    // One order exists.
    let id = first["order_id"].as_str().unwrap();
    shop.wait_for(id, "stock_reserved").await;
    let page: Value = shop
        .get("/v1/orders", &shop.customer(&["orders:read"]))
        .await
        .json()
        .await?;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");
    Ok(())
}

#[tokio::test]
async fn scopes_and_callers() -> Result<()> {
    let shop = Shop::start().await;
    let mug = shop.product("MUG-5", 500, 5).await;
    let body = order_body(&[(mug, 1)], "tok_visa");

    // No token: 401 with a challenge.
    let resp = shop
        .stack
        .http
        .post(shop.stack.url("/v1/orders"))
        .json(&body)
        .send()
        .await?;
    assert_eq!(challenge(resp).await?.0, StatusCode::UNAUTHORIZED);
    let resp = shop
        .stack
        .http
        .get(shop.stack.url("/v1/orders"))
        .send()
        .await?;
    assert_eq!(challenge(resp).await?.0, StatusCode::UNAUTHORIZED);

    // A reader may not place or cancel; a writer may not read.
    let reader = shop.customer(&["orders:read"]);
    let (status, www) = challenge(shop.post("/v1/orders", &reader, Some(&body)).await).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(www.contains(r#"scope="orders:write""#), "{www}");
    let writer = shop.customer(&["orders:write"]);
    let (status, www) = challenge(shop.get("/v1/orders", &writer).await).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(www.contains(r#"scope="orders:read""#), "{www}");
    let resp = shop
        .get(&format!("/v1/orders/{}", Uuid::now_v7()), &writer)
        .await;
    assert_eq!(challenge(resp).await?.0, StatusCode::FORBIDDEN);

    // A client acting for itself places no orders: orders are a customer's.
    let robot = shop.token("robot", "robot", &["orders:read", "orders:write"], &[]);
    let (status, p) = problem(shop.post("/v1/orders", &robot, Some(&body)).await).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(p["detail"].as_str().unwrap().contains("account"), "{p}");
    let resp = shop.get("/v1/orders", &robot).await;
    assert_eq!(problem(resp).await?.0, StatusCode::FORBIDDEN);
    Ok(())
}

#[tokio::test]
async fn the_bootstrap_swagger_ui_client_grants_the_order_scopes() -> Result<()> {
    let shop = Shop::start().await;
    let stack = &shop.stack;
    let scope = "openid orders:read orders:write";
    let customer = eventually("the swagger-ui client", WAIT, || async {
        stack
            .tokens_via("swagger-ui", CUSTOMER_EMAIL, CUSTOMER_PASSWORD, Some(scope))
            .await
            .ok()
    })
    .await;
    assert_eq!(customer["scope"], scope);
    let admin = stack
        .tokens_via(
            "swagger-ui",
            ADMIN_EMAIL,
            ADMIN_PASSWORD,
            Some("orders:read orders:write users:admin"),
        )
        .await?;
    assert_eq!(admin["scope"], "orders:read orders:write users:admin");

    // The customer's real token places an order; the admin's reads it.
    let mug = shop.product("MUG-6", 500, 5).await;
    let token = customer["access_token"].as_str().context("access_token")?;
    let resp = shop
        .post(
            "/v1/orders",
            token,
            Some(&order_body(&[(mug, 1)], "tok_visa")),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = resp.headers()[header::LOCATION].to_str()?.to_owned();
    let admin_token = admin["access_token"].as_str().context("access_token")?;
    eventually("the admin to see the order", WAIT, || async {
        (shop.get(&location, admin_token).await.status() == StatusCode::OK).then_some(())
    })
    .await;
    Ok(())
}

#[tokio::test]
async fn cancelling_needs_an_order_that_is_not_final() -> Result<()> {
    let shop = Shop::start().await;
    let mug = shop.product("MUG-7", 500, 2).await;
    let writer = shop.customer(&["orders:write"]);

    // More than the stock: the catalog refuses and the order is cancelled.
    let refused = shop.place(&[(mug, 3)], "tok_visa").await?;
    let refused_id = refused["order_id"].as_str().context("order_id")?;
    let order = shop.wait_for(refused_id, "cancelled").await;
    assert!(order["cancel_reason"].is_string(), "{order}");
    let resp = shop
        .post(&format!("/v1/orders/{refused_id}/cancel"), &writer, None)
        .await;
    let (status, p) = problem(resp).await?;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(p["detail"].as_str().unwrap().contains("cancelled"), "{p}");

    // A held order can be cancelled (with or without a reason): 202, and
    // the saga starts unwinding.
    let held = shop.place(&[(mug, 1)], "tok_visa").await?;
    let held_id = held["order_id"].as_str().context("order_id")?;
    shop.wait_for(held_id, "stock_reserved").await;
    let resp = shop
        .post(
            &format!("/v1/orders/{held_id}/cancel"),
            &writer,
            Some(&json!({"reason": "changed my mind"})),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(
        resp.headers()[header::LOCATION],
        format!("/v1/orders/{held_id}").as_str()
    );
    let body: Value = resp.json().await?;
    assert_eq!(body["status"], "cancelling");
    shop.wait_for(held_id, "cancelling").await;
    let resp = shop
        .post(&format!("/v1/orders/{held_id}/cancel"), &writer, None)
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED, "asking twice is fine");

    // Unknown fields in the optional body are refused.
    let resp = shop
        .post(
            &format!("/v1/orders/{held_id}/cancel"),
            &writer,
            Some(&json!({"why": "x"})),
        )
        .await;
    assert_eq!(problem(resp).await?.0, StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test]
async fn the_event_stream_follows_an_order_live() -> Result<()> {
    let shop = Shop::start().await;
    let mug = shop.product("MUG-8", 500, 5).await;
    let placed = shop.place(&[(mug, 1)], "tok_visa").await?;
    let id = placed["order_id"].as_str().context("order_id")?;
    shop.wait_for(id, "stock_reserved").await;

    let resp = shop
        .get(
            &format!("/v1/orders/{id}/events"),
            &shop.customer(&["orders:read"]),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()[header::CONTENT_TYPE]
            .to_str()?
            .starts_with("text/event-stream")
    );
    assert!(resp.headers().contains_key("x-request-id"));
    let mut events = Sse::new(resp);
    // The current status first.
    let first = events.next().await?.context("a first event")?;
    assert_eq!(first["order_id"], id);
    assert_eq!(first["status"], "stock_reserved");
    assert!(first["at"].is_string());
    assert_eq!(metric(&shop, "jetshop_gateway_order_watchers").await, 1.0);

    // A change while the stream is open arrives on it.
    let resp = shop
        .post(
            &format!("/v1/orders/{id}/cancel"),
            &shop.customer(&["orders:write"]),
            None,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let next = events.next().await?.context("the change")?;
    assert_eq!(next["status"], "cancelling");

    // The client goes away: the hub forgets the order.
    drop(events);
    eventually("the watcher to leave", WAIT, || async {
        (metric(&shop, "jetshop_gateway_order_watchers").await == 0.0).then_some(())
    })
    .await;
    Ok(())
}

#[tokio::test]
async fn an_event_stream_outlives_a_broker_restart() -> Result<()> {
    let mut shop = Shop::start().await;
    let mug = shop.product("MUG-13", 500, 5).await;
    let placed = shop.place(&[(mug, 1)], "tok_visa").await?;
    let id = placed["order_id"].as_str().context("order_id")?.to_owned();
    shop.wait_for(&id, "stock_reserved").await;
    let resp = shop
        .get(
            &format!("/v1/orders/{id}/events"),
            &shop.customer(&["orders:read"]),
        )
        .await;
    let mut events = Sse::new(resp);
    assert_eq!(
        events.next().await?.context("first")?["status"],
        "stock_reserved"
    );

    shop.stack.restart_nats();
    // Once everyone is back, a change reaches the open stream: the hub's
    // subscription came back with the connection.
    let writer = shop.customer(&["orders:write"]);
    let cancel = format!("/v1/orders/{id}/cancel");
    eventually("the cancellation to be accepted", WAIT, || async {
        let resp = shop.post(&cancel, &writer, None).await;
        (resp.status() == StatusCode::ACCEPTED).then_some(())
    })
    .await;
    let next = events.next().await?.context("the change")?;
    assert_eq!(next["status"], "cancelling");
    Ok(())
}

#[tokio::test]
async fn the_event_stream_ends_at_a_final_status() -> Result<()> {
    let shop = Shop::start().await;
    let mug = shop.product("MUG-9", 500, 1).await;
    let reader = shop.customer(&["orders:read"]);
    // The catalog refuses this one, so it ends `cancelled` on its own;
    // follow it from as early as possible.
    let placed = shop.place(&[(mug, 2)], "tok_visa").await?;
    let id = placed["order_id"].as_str().context("order_id")?;
    let path = format!("/v1/orders/{id}/events");
    let resp = eventually("the order to be readable", WAIT, || async {
        let resp = shop.get(&path, &reader).await;
        (resp.status() == StatusCode::OK).then_some(resp)
    })
    .await;
    let mut events = Sse::new(resp);
    let mut statuses = Vec::new();
    while let Some(event) = events.next().await? {
        assert_eq!(event["order_id"], id);
        statuses.push(event["status"].as_str().unwrap().to_owned());
        if event["status"] == "cancelled" {
            assert!(event["cancel_reason"].is_string(), "{event}");
        }
    }
    // Each status once, in saga order, ending with the final one.
    assert_eq!(statuses.last().map(String::as_str), Some("cancelled"));
    let order = ["placed", "cancelled"];
    let positions: Vec<usize> = statuses
        .iter()
        .map(|s| order.iter().position(|o| o == s).expect("a known status"))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{statuses:?}");

    // A final order's stream is one event long.
    let resp = shop.get(&path, &reader).await;
    let mut events = Sse::new(resp);
    assert_eq!(
        events.next().await?.context("the status")?["status"],
        "cancelled"
    );
    assert!(events.next().await?.is_none());
    Ok(())
}

/// Statuses in the order a saga can go through them.
const SAGA_ORDER: [&str; 7] = [
    "placed",
    "stock_reserved",
    "payment_authorized",
    "paid",
    "cancelling",
    "confirmed",
    "cancelled",
];

/// Read a whole event stream: the statuses, each checked to be about `id`.
async fn statuses_until_the_end(resp: reqwest::Response, id: &str) -> Result<Vec<String>> {
    let mut events = Sse::new(resp);
    let mut statuses = Vec::new();
    while let Some(event) = events.next().await? {
        ensure!(event["order_id"] == id, "{event}");
        statuses.push(event["status"].as_str().context("status")?.to_owned());
    }
    Ok(statuses)
}

/// Whether every status is known and comes after the one before it.
fn in_saga_order(statuses: &[String]) -> bool {
    let at = |s: &String| SAGA_ORDER.iter().position(|o| o == s);
    statuses
        .windows(2)
        .all(|w| matches!((at(&w[0]), at(&w[1])), (Some(a), Some(b)) if a < b))
        && statuses.iter().all(|s| at(s).is_some())
}

#[tokio::test]
async fn a_good_card_confirms_the_order_and_its_stream_ends_there() -> Result<()> {
    let shop = Shop::start_with(Options {
        payments: true,
        ..Default::default()
    })
    .await;
    let mug = shop.product("MUG-10", 1250, 5).await;
    let placed = shop.place(&[(mug, 2)], "tok_visa").await?;
    let id = placed["order_id"].as_str().context("order_id")?;
    let path = format!("/v1/orders/{id}/events");
    let reader = shop.customer(&["orders:read"]);
    let resp = eventually("the order to be readable", WAIT, || async {
        let resp = shop.get(&path, &reader).await;
        (resp.status() == StatusCode::OK).then_some(resp)
    })
    .await;
    let statuses = statuses_until_the_end(resp, id).await?;
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("confirmed"),
        "{statuses:?}"
    );
    assert!(in_saga_order(&statuses), "{statuses:?}");

    let order: Value = shop
        .get(&format!("/v1/orders/{id}"), &reader)
        .await
        .json()
        .await?;
    assert_eq!(order["status"], "confirmed");
    assert_eq!(order["total"]["amount_minor"], 2500);
    let steps: Vec<&str> = order["timeline"]
        .as_array()
        .context("timeline")?
        .iter()
        .filter_map(|t| t["step"].as_str())
        .collect();
    for step in ["reserve_stock", "authorize_payment", "capture_payment"] {
        assert!(steps.contains(&step), "{step} in {steps:?}");
    }
    let history: Value = shop
        .get(&format!("/v1/orders/{id}/history"), &reader)
        .await
        .json()
        .await?;
    let types: Vec<&str> = history["events"]
        .as_array()
        .context("events")?
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(types.first(), Some(&"orders.placed"));
    assert_eq!(types.last(), Some(&"orders.confirmed"), "{types:?}");
    // The units are sold, and a confirmed order cannot be cancelled.
    assert_eq!(shop.stock(mug).await, 3);
    let resp = shop
        .post(
            &format!("/v1/orders/{id}/cancel"),
            &shop.customer(&["orders:write"]),
            None,
        )
        .await;
    assert_eq!(problem(resp).await?.0, StatusCode::CONFLICT);
    Ok(())
}

#[tokio::test]
async fn a_declined_card_cancels_the_order_and_gives_the_stock_back() -> Result<()> {
    let shop = Shop::start_with(Options {
        payments: true,
        ..Default::default()
    })
    .await;
    let mug = shop.product("MUG-11", 1250, 5).await;
    let placed = shop.place(&[(mug, 2)], "tok_chargeDeclined").await?;
    let id = placed["order_id"].as_str().context("order_id")?;
    let order = shop.wait_for(id, "cancelled").await;
    assert!(
        order["cancel_reason"]
            .as_str()
            .is_some_and(|r| r.contains("declined")),
        "{order}"
    );
    eventually("the stock to come back", WAIT, || async {
        (shop.stock(mug).await == 5).then_some(())
    })
    .await;
    Ok(())
}

#[tokio::test]
async fn an_order_cancelled_before_payment_ends_cancelled() -> Result<()> {
    // Payments starts late: the order waits at stock_reserved meanwhile.
    let mut shop = Shop::start().await;
    let mug = shop.product("MUG-12", 1250, 5).await;
    let placed = shop.place(&[(mug, 2)], "tok_visa").await?;
    let id = placed["order_id"].as_str().context("order_id")?.to_owned();
    shop.wait_for(&id, "stock_reserved").await;
    assert_eq!(shop.stock(mug).await, 3, "two units held");
    let events = shop
        .get(
            &format!("/v1/orders/{id}/events"),
            &shop.customer(&["orders:read"]),
        )
        .await;
    assert_eq!(events.status(), StatusCode::OK);

    let resp = shop
        .post(
            &format!("/v1/orders/{id}/cancel"),
            &shop.customer(&["orders:write"]),
            Some(&json!({"reason": "changed my mind"})),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    shop.wait_for(&id, "cancelling").await;

    // The payment's void (after its never-captured authorization) lets
    // the saga give the stock back and finish.
    shop.stack.start_payments().await;
    let statuses = statuses_until_the_end(events, &id).await?;
    assert_eq!(statuses.first().map(String::as_str), Some("stock_reserved"));
    assert_eq!(statuses.last().map(String::as_str), Some("cancelled"));
    assert!(in_saga_order(&statuses), "{statuses:?}");
    let order = shop.wait_for(&id, "cancelled").await;
    assert_eq!(order["cancel_reason"], "changed my mind");
    eventually("the stock to come back", WAIT, || async {
        (shop.stock(mug).await == 5).then_some(())
    })
    .await;
    Ok(())
}

#[tokio::test]
async fn your_webhook_is_set_read_and_removed() -> Result<()> {
    let shop = Shop::start_with(Options {
        notifications: true,
        ..Default::default()
    })
    .await;
    let writer = shop.customer(&["orders:write"]);
    let reader = shop.customer(&["orders:read"]);
    let put = |token: String, body: Value| {
        let shop = &shop;
        async move {
            shop.stack
                .http
                .put(shop.stack.url("/v1/me/webhook"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("request")
        }
    };
    let delete = |token: String| {
        let shop = &shop;
        async move {
            shop.stack
                .http
                .delete(shop.stack.url("/v1/me/webhook"))
                .bearer_auth(token)
                .send()
                .await
                .expect("request")
        }
    };

    // Nothing yet (once the service answers at all).
    eventually("the notifications service to answer", WAIT, || async {
        let resp = shop.get("/v1/me/webhook", &reader).await;
        (resp.status() == StatusCode::NOT_FOUND).then_some(())
    })
    .await;

    let url = "https://hooks.example.com/jetshop";
    let resp = put(writer.clone(), json!({ "url": url })).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let set: Value = resp.json().await?;
    assert_eq!(set["url"], url);
    let secret = set["secret"].as_str().context("secret")?;
    assert!(secret.len() >= 16, "{secret}");

    // Read back without the secret.
    let got: Value = shop.get("/v1/me/webhook", &reader).await.json().await?;
    assert_eq!(got["url"], url);
    assert!(got.get("secret").is_none(), "{got}");

    // Setting it again makes a new secret.
    let again: Value = put(writer.clone(), json!({ "url": url }))
        .await
        .json()
        .await?;
    assert_ne!(again["secret"], set["secret"]);

    // Plain http only to loopback: the schema's pattern says so, and the
    // refusal names the field.
    let resp = put(
        writer.clone(),
        json!({ "url": "http://hooks.example.com/x" }),
    )
    .await;
    let (status, p) = problem(resp).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(p["errors"][0]["name"], "url", "{p}");
    // And the gateway's: a URL at all, no other fields.
    for body in [
        json!({ "url": "ftp://x.example" }),
        json!({ "url": url, "x": 1 }),
    ] {
        let resp = put(writer.clone(), body.clone()).await;
        assert_eq!(problem(resp).await?.0, StatusCode::BAD_REQUEST, "{body}");
    }

    // Scopes and callers.
    let (status, _) = challenge(put(reader.clone(), json!({ "url": url })).await).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = challenge(shop.get("/v1/me/webhook", &writer).await).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let robot = shop.token("robot", "robot", &["orders:read", "orders:write"], &[]);
    assert_eq!(
        problem(shop.get("/v1/me/webhook", &robot).await).await?.0,
        StatusCode::FORBIDDEN
    );

    // Removed: 204, then 404; removing again is still 204.
    assert_eq!(
        delete(writer.clone()).await.status(),
        StatusCode::NO_CONTENT
    );
    let resp = shop.get("/v1/me/webhook", &reader).await;
    assert_eq!(problem(resp).await?.0, StatusCode::NOT_FOUND);
    assert_eq!(
        delete(writer.clone()).await.status(),
        StatusCode::NO_CONTENT
    );
    Ok(())
}
