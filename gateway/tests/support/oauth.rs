//! The OAuth test stack, shared by the `oauth`, `oauth_logs` and `orders`
//! binaries: nats-server, the real users service (an admin, a customer, a
//! public and a confidential client, and the bootstrap `swagger-ui`
//! client), optionally the real catalog and orders services, a
//! redirect-URI echo server and the gateway, plus the client side of the
//! flows.
#![allow(dead_code, reason = "each test binary uses part of it")]

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use anyhow::{Context, Result, ensure};
use jetshop_contracts::users::{GrantType, Role};
use jetshop_gateway::{
    GatewaySettings,
    oauth::{keys::KeyPair, pkce},
    run,
};
use jetshop_platform::{config::NatsSettings, runtime::Runtime};
use jetshop_testkit::{NatsServer, TestDb, eventually, free_port};
use jetshop_users::{
    UsersSettings,
    admin::{self, NewClient},
};
use poem::{Route, Server, get, handler, listener::TcpListener, web::Json};
use reqwest::{StatusCode, header, redirect::Policy};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const WAIT: Duration = Duration::from_secs(20);
pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "a long admin passphrase";
pub const CUSTOMER_EMAIL: &str = "Customer@Example.com";
pub const CUSTOMER_PASSWORD: &str = "another long passphrase";
pub const NO_LIMITS: &str = "default=100000/60s,auth=100000/60s,writes=100000/60s";

/// What a stack is started with.
#[derive(Default)]
pub struct Options {
    pub catalog: bool,
    /// The orders service (implies the catalog).
    pub orders: bool,
    /// The payments service (see also [`Stack::start_payments`]).
    pub payments: bool,
    /// The notifications service (mail as `.eml` files in a temporary folder).
    pub notifications: bool,
    /// Sign with this key (so tests can forge tokens with it).
    pub signing_key: Option<KeyPair>,
    /// External issuer mode.
    pub issuer: Option<String>,
    /// Keep-alive period of event streams (the gateway's default otherwise).
    pub sse_keep_alive: Option<Duration>,
}

/// nats-server, the users service (with an admin, a customer, a public and
/// a confidential client), optionally the catalog, a redirect-URI echo
/// server, and the gateway.
pub struct Stack {
    pub base: String,
    /// Follows no redirects: the tests look at each one.
    pub http: reqwest::Client,
    /// The public client's redirect URI (echoes its query as JSON).
    pub redirect_uri: String,
    pub machine_secret: String,
    pub admin_id: Uuid,
    pub customer_id: Uuid,
    pub stop: CancellationToken,
    /// What the gateway was started with, for starting replicas of it.
    settings: GatewaySettings,
    rt: Runtime,
    _key_dir: tempfile::TempDir,
    _dbs: Vec<TestDb>,
    /// The card processors the payments services call.
    _processors: Vec<jetshop_testkit::CardProcessor>,
    _nats: NatsServer,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[handler]
pub fn echo(req: &poem::Request) -> Json<HashMap<String, String>> {
    Json(
        form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect(),
    )
}

pub async fn serve(app: impl poem::Endpoint + 'static, stop: &CancellationToken) -> String {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let stop = stop.clone();
    tokio::spawn(async move {
        Server::new(TcpListener::bind(addr))
            .run_with_graceful_shutdown(app, stop.cancelled_owned(), None)
            .await
    });
    format!("http://{addr}")
}

impl Stack {
    pub async fn start(opts: Options) -> Self {
        jetshop_testkit::init_test_log();
        let nats = NatsServer::start();
        let client = jetshop_platform::nats::connect(&NatsSettings::for_url(nats.url()), "test")
            .await
            .expect("connect to nats");
        let rt = Runtime::new(client, 1);
        let stop = CancellationToken::new();
        let mut dbs = Vec::new();
        let mut processors = Vec::new();

        let users_db = TestDb::fresh().await;
        let db = admin::connect_and_migrate(&users_db.url)
            .await
            .expect("users db");
        let admin = admin::create_user(&db, ADMIN_EMAIL, ADMIN_PASSWORD, &[Role::Admin])
            .await
            .expect("admin");
        let customer =
            admin::create_user(&db, CUSTOMER_EMAIL, CUSTOMER_PASSWORD, &[Role::Customer])
                .await
                .expect("customer");
        let echo_base = serve(Route::new().at("/cb", get(echo)), &stop).await;
        let redirect_uri = format!("{echo_base}/cb");
        admin::create_client(
            &db,
            NewClient {
                client_id: "web".into(),
                name: "Web <App>".into(),
                confidential: false,
                redirect_uris: vec![redirect_uri.clone()],
                grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
                scopes: [
                    "openid",
                    "profile",
                    "email",
                    "catalog:write",
                    "orders:read",
                    "orders:write",
                ]
                .map(String::from)
                .to_vec(),
                service_account: None,
            },
        )
        .await
        .expect("public client");
        let (_, secret) = admin::create_client(
            &db,
            NewClient {
                client_id: "machine".into(),
                name: "Machine".into(),
                confidential: true,
                redirect_uris: vec![],
                grant_types: vec![GrantType::ClientCredentials],
                scopes: vec!["catalog:write".into(), "orders:read".into()],
                service_account: None,
            },
        )
        .await
        .expect("confidential client");
        // The service's own bootstrap makes the `swagger-ui` client, with
        // the scopes it really gets in `jetshop up`.
        let users_settings = UsersSettings {
            swagger_ui_redirect_uris: vec![redirect_uri.clone()],
            ..UsersSettings::for_database(users_db.url.clone())
        };
        tokio::spawn(jetshop_users::run(users_settings, rt.clone(), stop.clone()));
        dbs.push(users_db);

        if opts.catalog || opts.orders {
            let catalog_db = TestDb::fresh().await;
            tokio::spawn(jetshop_catalog::run(
                jetshop_catalog::CatalogSettings::for_database(catalog_db.url.clone()),
                rt.clone(),
                stop.clone(),
            ));
            dbs.push(catalog_db);
        }
        if opts.orders {
            let orders_db = TestDb::fresh().await;
            tokio::spawn(jetshop_orders::run(
                jetshop_orders::OrdersSettings::for_database(orders_db.url.clone()),
                rt.clone(),
                stop.clone(),
            ));
            dbs.push(orders_db);
        }
        if opts.payments {
            let (db, processor) = start_payments(&rt, &stop).await;
            dbs.push(db);
            processors.push(processor);
        }
        let key_dir = tempfile::tempdir().expect("key dir");
        if opts.notifications {
            let notifications_db = TestDb::fresh().await;
            let settings = jetshop_notifications::NotificationsSettings {
                mail_dir: key_dir.path().join("mail"),
                ..jetshop_notifications::NotificationsSettings::for_database(
                    notifications_db.url.clone(),
                )
            };
            tokio::spawn(jetshop_notifications::run(
                settings,
                rt.clone(),
                stop.clone(),
            ));
            dbs.push(notifications_db);
        }

        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut settings = GatewaySettings::for_addr(addr);
        settings.limits.rate_limit = NO_LIMITS.parse().expect("policy");
        if let Some(period) = opts.sse_keep_alive {
            settings.sse_keep_alive = period;
        }
        if let Some(key) = &opts.signing_key {
            let path = key_dir.path().join("signing.pem");
            std::fs::write(&path, key.to_pem()).expect("write key");
            settings.auth.signing_key = Some(path);
        }
        settings.auth.issuer = opts
            .issuer
            .as_deref()
            .map(|u| u.parse().expect("issuer url"));
        tokio::spawn(run(settings.clone(), rt.clone(), stop.clone()));

        let stack = Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .expect("http client"),
            redirect_uri,
            machine_secret: secret.expect("a confidential client has a secret"),
            admin_id: admin.id,
            customer_id: customer.id,
            stop,
            settings,
            rt,
            _key_dir: key_dir,
            _dbs: dbs,
            _processors: processors,
            _nats: nats,
        };
        eventually("the gateway to listen", WAIT, || async {
            stack.http.get(stack.url("/healthz")).send().await.ok()
        })
        .await;
        // The users service answers once its endpoints are registered.
        if opts.issuer.is_some() {
            return stack;
        }
        eventually("the users service to answer", WAIT, || async {
            let resp = stack
                .authorize_page(&stack.auth_query("web", None, None))
                .await
                .ok()?;
            (resp.status() == StatusCode::OK).then_some(())
        })
        .await;
        stack
    }

    /// Start another replica of the gateway behind the same public URL
    /// (as behind a load balancer), sharing the users service and the
    /// signing key; returns its base URL.
    #[allow(dead_code)] // not every test binary that shares this module needs it
    pub async fn replica(&self) -> String {
        let mut settings = self.settings.clone();
        settings.auth.public_url = Some(self.base.parse().expect("base URL"));
        settings.http_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let base = format!("http://{}", settings.http_addr);
        tokio::spawn(run(settings, self.rt.clone(), self.stop.clone()));
        let health = format!("{base}/healthz");
        eventually("the replica to listen", WAIT, || async {
            self.http.get(&health).send().await.ok()
        })
        .await;
        base
    }

    /// Start the payments service now (it works off what queued meanwhile).
    #[allow(dead_code)] // not every test binary that shares this module needs it
    pub async fn start_payments(&mut self) {
        let (db, processor) = start_payments(&self.rt, &self.stop).await;
        self._dbs.push(db);
        self._processors.push(processor);
    }

    /// Kill the nats-server and start it again on the same port and store
    /// (a broker outage); every client reconnects by itself.
    #[allow(dead_code)] // not every test binary that shares this module needs it
    pub fn restart_nats(&mut self) {
        self._nats.restart();
    }

    /// The nats-server behind the stack, to look at its streams.
    #[allow(dead_code)] // not every test binary that shares this module needs it
    pub fn nats_url(&self) -> String {
        self._nats.url()
    }

    /// JetStream on the stack's NATS connection.
    #[allow(dead_code)] // not every test binary that shares this module needs it
    pub fn jetstream(&self) -> async_nats::jetstream::Context {
        self.rt.jetstream()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Query of an authorization request by the public client.
    pub fn auth_query(
        &self,
        client_id: &str,
        challenge: Option<&str>,
        scope: Option<&str>,
    ) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("state", "st&ate=1")
            .append_pair("nonce", "n-0S6_WzA2Mj");
        let default_challenge = pkce::challenge(&"v".repeat(43));
        q.append_pair("code_challenge", challenge.unwrap_or(&default_challenge))
            .append_pair("code_challenge_method", "S256");
        if let Some(scope) = scope {
            q.append_pair("scope", scope);
        }
        q.finish()
    }

    pub async fn authorize_page(&self, query: &str) -> reqwest::Result<reqwest::Response> {
        self.http
            .get(self.url(&format!("/oauth/authorize?{query}")))
            .send()
            .await
    }

    /// Fetch the login page, post the credentials, follow the redirect to
    /// the client's redirect URI: what the client receives there.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        verifier: &str,
        scope: Option<&str>,
    ) -> Result<HashMap<String, String>> {
        self.login_with("web", email, password, verifier, scope)
            .await
    }

    /// [`Self::login`] through the public client `client_id`.
    pub async fn login_with(
        &self,
        client_id: &str,
        email: &str,
        password: &str,
        verifier: &str,
        scope: Option<&str>,
    ) -> Result<HashMap<String, String>> {
        let query = self.auth_query(client_id, Some(&pkce::challenge(verifier)), scope);
        let page = self.authorize_page(&query).await?;
        ensure!(
            page.status() == StatusCode::OK,
            "login page: {}",
            page.status()
        );
        ensure!(
            page.headers()[header::CACHE_CONTROL] == "no-store",
            "the login page must not be cached"
        );
        let html = page.text().await?;
        ensure!(
            client_id != "web" || html.contains("Web &lt;App&gt;"),
            "client name shown, escaped"
        );
        let request = hidden_request(&html)?;
        let resp = self
            .http
            .post(self.url("/oauth/authorize"))
            .form(&[
                ("request", request.as_str()),
                ("email", email),
                ("password", password),
            ])
            .send()
            .await?;
        ensure!(
            resp.status() == StatusCode::SEE_OTHER,
            "login answered {}",
            resp.status()
        );
        let location = resp.headers()[header::LOCATION].to_str()?.to_owned();
        ensure!(
            location.starts_with(&format!("{}?", self.redirect_uri)),
            "{location}"
        );
        Ok(self.http.get(location).send().await?.json().await?)
    }

    pub async fn token(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.url("/oauth/token"))
            .form(form)
            .send()
            .await
            .expect("token request")
    }

    pub async fn exchange(&self, code: &str, verifier: &str) -> reqwest::Response {
        self.exchange_with("web", code, verifier).await
    }

    /// [`Self::exchange`] for the public client `client_id`.
    pub async fn exchange_with(
        &self,
        client_id: &str,
        code: &str,
        verifier: &str,
    ) -> reqwest::Response {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.redirect_uri),
            ("client_id", client_id),
            ("code_verifier", verifier),
        ])
        .await
    }

    /// Tokens for the admin through the full code flow.
    pub async fn tokens_for(
        &self,
        email: &str,
        password: &str,
        scope: Option<&str>,
    ) -> Result<Value> {
        self.tokens_via("web", email, password, scope).await
    }

    /// [`Self::tokens_for`] through the public client `client_id`.
    pub async fn tokens_via(
        &self,
        client_id: &str,
        email: &str,
        password: &str,
        scope: Option<&str>,
    ) -> Result<Value> {
        let verifier = pkce_verifier();
        let got = self
            .login_with(client_id, email, password, &verifier, scope)
            .await?;
        let resp = self.exchange_with(client_id, &got["code"], &verifier).await;
        ensure!(
            resp.status() == StatusCode::OK,
            "exchange: {}",
            resp.status()
        );
        Ok(resp.json().await?)
    }

    pub async fn machine_token(&self, scope: Option<&str>) -> Result<Value> {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let resp = self
            .http
            .post(self.url("/oauth/token"))
            .basic_auth("machine", Some(&self.machine_secret))
            .form(&form)
            .send()
            .await?;
        ensure!(
            resp.status() == StatusCode::OK,
            "client credentials: {}",
            resp.status()
        );
        Ok(resp.json().await?)
    }

    pub async fn get_with(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }
}

/// Spawn the payments service on a fresh database, calling a real card
/// processor (in process, its own database) that lives as long as the stack.
async fn start_payments(
    rt: &Runtime,
    stop: &CancellationToken,
) -> (TestDb, jetshop_testkit::CardProcessor) {
    let db = TestDb::fresh().await;
    let processor = jetshop_testkit::CardProcessor::start().await;
    let settings = jetshop_payments::PaymentsSettings {
        provider_url: processor.url(),
        ..jetshop_payments::PaymentsSettings::for_database(db.url.clone())
    };
    tokio::spawn(jetshop_payments::run(settings, rt.clone(), stop.clone()));
    (db, processor)
}

pub fn pkce_verifier() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

pub fn hidden_request(html: &str) -> Result<String> {
    let start = html
        .find(r#"name="request" value=""#)
        .context("no signed request in the login form")?
        + r#"name="request" value=""#.len();
    let end = html[start..].find('"').context("unterminated value")?;
    Ok(html[start..start + end].to_owned())
}

/// An RFC 6749 error body with `Cache-Control: no-store`.
pub async fn oauth_error(resp: reqwest::Response) -> Result<(StatusCode, String)> {
    let status = resp.status();
    ensure!(
        resp.headers()
            .get(header::CACHE_CONTROL)
            .is_some_and(|v| v == "no-store"),
        "token errors are not cached"
    );
    let body: Value = resp.json().await?;
    ensure!(body["error_description"].is_string(), "{body}");
    Ok((status, body["error"].as_str().context("error")?.to_owned()))
}

/// A 401 or 403 problem with its `WWW-Authenticate` challenge.
pub async fn challenge(resp: reqwest::Response) -> Result<(StatusCode, String)> {
    let status = resp.status();
    let www = resp
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .with_context(|| format!("WWW-Authenticate missing on a {status}"))?
        .to_str()?
        .to_owned();
    ensure!(
        resp.headers()[header::CONTENT_TYPE] == "application/problem+json",
        "problem body"
    );
    ensure!(www.starts_with(r#"Bearer realm="jetshop""#), "{www}");
    Ok((status, www))
}
