//! The customers' side, over REST only, as a browser app behind a load
//! balancer would do it: register (`POST /v1/users`), sign in through the
//! built-in issuer with the authorization code flow and PKCE (the public
//! `swagger-ui` client, the real login form), and place orders with an
//! `Idempotency-Key`, retrying a connection error, a 5xx or a 409 (the
//! key's first request still holds its lock) against the next gateway.
//!
//! Shared by the fault suite (`cli/tests/chaos`) and the checkout load
//! generator (`checkout-load`), so both load the system the way its
//! users do.

use std::time::{Duration, Instant};

use jetshop_gateway::oauth::pkce;
use reqwest::{StatusCode, header, redirect::Policy};
use serde_json::{Value, json};
use uuid::Uuid;

/// How long one placement may keep retrying before it is an error.
pub const PLACE_PATIENCE: Duration = Duration::from_secs(180);

/// A signed-in customer.
#[derive(Debug, Clone)]
pub struct Customer {
    pub token: String,
    /// The gateway it talks to first.
    pub home: usize,
}

/// What placements ran into on the way (for the report).
#[derive(Debug, Default, Clone)]
pub struct Retries {
    pub connection_errors: u64,
    pub server_errors: u64,
    pub conflicts: u64,
}

/// HTTP to the gateway replicas.
#[derive(Clone)]
pub struct Shop {
    http: reqwest::Client,
    gateways: Vec<String>,
    /// The public URL (issuer, redirect URIs): the first gateway's.
    public: String,
}

impl Shop {
    /// Customers of these gateway base URLs (at least one).
    pub fn new(gateways: &[String]) -> Self {
        assert!(!gateways.is_empty(), "a shop needs a gateway");
        Self {
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .timeout(Duration::from_secs(15))
                .pool_idle_timeout(Duration::from_secs(5))
                .build()
                .expect("an HTTP client"),
            gateways: gateways.to_vec(),
            public: gateways[0].clone(),
        }
    }

    /// Gateway `i`, round the list.
    pub fn gateway(&self, i: usize) -> &str {
        &self.gateways[i % self.gateways.len()]
    }

    /// The HTTP client (no redirects followed), for other calls.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Register customer `n` and sign them in (retrying across gateways
    /// while anything transient is in the way, for up to a minute).
    pub async fn sign_up(&self, n: usize, scopes: &str) -> Result<Customer, String> {
        let email = format!(
            "customer{n}-{}@load.example",
            &Uuid::new_v4().simple().to_string()[..8]
        );
        let password = format!("Load-{}", Uuid::new_v4().simple());
        let home = n % self.gateways.len();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut attempt = 0;
        loop {
            let gw = self.gateway(home + attempt);
            let body = json!({"email": email, "password": password, "display_name": format!("Customer {n}")});
            match self
                .http
                .post(format!("{gw}/v1/users"))
                .json(&body)
                .send()
                .await
            {
                // 409: an earlier attempt created it (its answer was lost).
                Ok(r)
                    if r.status() == StatusCode::CREATED || r.status() == StatusCode::CONFLICT =>
                {
                    break;
                }
                Ok(r) if !r.status().is_server_error() => {
                    return Err(format!(
                        "POST /v1/users: {} {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    ));
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(format!("cannot register {email}"));
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let mut attempt = 0;
        let token = loop {
            match self
                .sign_in(self.gateway(home + attempt), &email, &password, scopes)
                .await
            {
                Ok(token) => break token,
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("cannot sign in {email}: {e}"));
                }
                Err(_) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        };
        Ok(Customer { token, home })
    }

    /// The code flow with PKCE through gateway `gw`; the access token.
    pub async fn sign_in(
        &self,
        gw: &str,
        email: &str,
        password: &str,
        scopes: &str,
    ) -> Result<String, String> {
        let verifier = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        let redirect_uri = format!("{}/docs/oauth-receiver.html", self.public);
        let state = Uuid::new_v4().simple().to_string();
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", "swagger-ui")
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("scope", scopes)
            .append_pair("state", &state)
            .append_pair("code_challenge", &pkce::challenge(&verifier))
            .append_pair("code_challenge_method", "S256")
            .finish();
        let err = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
        let page = self
            .http
            .get(format!("{gw}/oauth/authorize?{query}"))
            .send()
            .await
            .map_err(|e| err("login page", &e))?;
        if page.status() != StatusCode::OK {
            return Err(format!("login page: {}", page.status()));
        }
        let html = page.text().await.map_err(|e| err("login page", &e))?;
        let request = hidden_request(&html).ok_or("no signed request on the login page")?;
        let answer = self
            .http
            .post(format!("{gw}/oauth/authorize"))
            .form(&[
                ("request", request.as_str()),
                ("email", email),
                ("password", password),
            ])
            .send()
            .await
            .map_err(|e| err("login", &e))?;
        if answer.status() != StatusCode::SEE_OTHER {
            return Err(format!("login answered {}", answer.status()));
        }
        let location = answer
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or("no Location after login")?
            .to_owned();
        let query = location.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let params: std::collections::HashMap<String, String> =
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
        if params.get("state") != Some(&state) {
            return Err(format!("state came back wrong: {location}"));
        }
        let code = params
            .get("code")
            .ok_or_else(|| format!("no code: {location}"))?;
        let grant = self
            .http
            .post(format!("{gw}/oauth/token"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &redirect_uri),
                ("client_id", "swagger-ui"),
                ("code_verifier", &verifier),
            ])
            .send()
            .await
            .map_err(|e| err("token", &e))?;
        if grant.status() != StatusCode::OK {
            return Err(format!("token answered {}", grant.status()));
        }
        let body: Value = grant.json().await.map_err(|e| err("token body", &e))?;
        body["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no access token: {body}"))
    }

    /// Place one order under a fresh `Idempotency-Key`, retrying (same key,
    /// alternating gateways) until it is accepted, for up to
    /// [`PLACE_PATIENCE`]; the order's id. Any other 4xx is an error.
    pub async fn place(
        &self,
        customer: &Customer,
        lines: &[(Uuid, i64)],
        card_token: &str,
        retries: &std::sync::Mutex<Retries>,
    ) -> Result<Uuid, String> {
        let key = Uuid::new_v4().to_string();
        let body = json!({
            "lines": lines.iter().map(|(p, q)| json!({"product_id": p, "quantity": q})).collect::<Vec<_>>(),
            "card_token": card_token,
        });
        let started = Instant::now();
        let mut requests = 0u32;
        let mut last: String;
        loop {
            let gw = self.gateway(customer.home + requests as usize);
            requests += 1;
            let sent = self
                .http
                .post(format!("{gw}/v1/orders"))
                .bearer_auth(&customer.token)
                .header("Idempotency-Key", &key)
                .json(&body)
                .send()
                .await;
            match sent {
                Ok(r) if r.status() == StatusCode::ACCEPTED => {
                    let v: Value = r.json().await.map_err(|e| format!("202 body: {e}"))?;
                    return v["order_id"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| format!("no order id in {v}"));
                }
                Ok(r) if r.status() == StatusCode::CONFLICT => {
                    lock(retries).conflicts += 1;
                    last = format!("409 {}", r.text().await.unwrap_or_default());
                }
                Ok(r) if r.status().is_server_error() => {
                    lock(retries).server_errors += 1;
                    last = format!("{} {}", r.status(), r.text().await.unwrap_or_default());
                }
                Ok(r) => {
                    return Err(format!(
                        "POST /v1/orders on {gw}: {} {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    ));
                }
                Err(e) => {
                    lock(retries).connection_errors += 1;
                    last = e.to_string();
                }
            }
            if started.elapsed() >= PLACE_PATIENCE {
                return Err(format!(
                    "a placement not accepted after {PLACE_PATIENCE:?} ({requests} requests); last: {last}"
                ));
            }
            let backoff = Duration::from_millis(100 * u64::from(requests.min(10)));
            tokio::time::sleep(backoff).await;
        }
    }
}

fn lock(retries: &std::sync::Mutex<Retries>) -> std::sync::MutexGuard<'_, Retries> {
    retries.lock().unwrap_or_else(|e| e.into_inner())
}

/// The signed authorization request in the login form.
fn hidden_request(html: &str) -> Option<String> {
    let marker = r#"name="request" value=""#;
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}
