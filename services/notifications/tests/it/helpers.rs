//! Spawning the notifications service for one test (real nats-server,
//! fresh database, real SMTP server or a mail folder), publishing the facts
//! it consumes, and a real HTTP server to receive webhooks.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, atomic::AtomicU16, atomic::Ordering},
    time::Duration,
};

use async_nats::jetstream::{self, consumer::pull};
use chrono::Utc;
use jetshop_contracts::{
    Event,
    catalog::Money,
    orders::{OrderCancelled, OrderConfirmed, OrderLine},
    users::{Role, User, UserRegistered},
};
use jetshop_notifications::{NotificationsSettings, audit};
use jetshop_platform::{
    config::{ConsumerSettings, NatsSettings},
    envelope::{self, MessageMeta},
    rpc::RpcClient,
    runtime::Runtime,
};
use jetshop_testkit::{NatsServer, SmtpServer, TestDb, eventually};
use poem::{EndpointExt, Route, handler, http::StatusCode, web::Data};
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How to start the service.
pub struct Options {
    /// A real SMTP server (otherwise `.eml` files in a temporary folder).
    pub smtp: bool,
    /// Retry policy of the consumers.
    pub consumer: ConsumerSettings,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            smtp: true,
            consumer: ConsumerSettings {
                max_deliver: 3,
                backoff: vec![Duration::from_millis(100)],
                ack_wait: Duration::from_secs(5),
                concurrency: 8,
                pin_timeout: Duration::from_secs(2),
            },
        }
    }
}

/// A running notifications service with its own NATS server and database.
pub struct TestApp {
    pub _nats: NatsServer,
    pub db: TestDb,
    pub smtp: Option<SmtpServer>,
    pub mail_dir: tempfile::TempDir,
    pub client: async_nats::Client,
    pub settings: NotificationsSettings,
    pub js: jetstream::Context,
    pub rpc: RpcClient,
    pub shutdown: CancellationToken,
    pub task: Option<tokio::task::JoinHandle<Result<(), jetshop_notifications::Error>>>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(opts: Options) -> Self {
        jetshop_testkit::init_test_log();
        let nats = NatsServer::start();
        let db = TestDb::fresh().await;
        let smtp = opts.smtp.then(SmtpServer::start);
        let mail_dir = tempfile::tempdir().unwrap();
        let client = jetshop_platform::nats::connect(
            &NatsSettings::for_url(nats.url()),
            "notifications-test",
        )
        .await
        .unwrap();
        let settings = NotificationsSettings {
            smtp_url: smtp.as_ref().map(|s| s.url()),
            smtp_timeout: Duration::from_secs(5),
            mail_dir: mail_dir.path().to_owned(),
            webhook_timeout: Duration::from_secs(2),
            consumer: opts.consumer,
            ..NotificationsSettings::for_database(db.url.clone())
        };
        let mut app = Self {
            _nats: nats,
            db,
            smtp,
            mail_dir,
            js: jetstream::new(client.clone()),
            rpc: RpcClient::new(client.clone(), Duration::from_secs(2), 0),
            client,
            settings,
            shutdown: CancellationToken::new(),
            task: None,
        };
        app.start().await;
        app
    }

    /// Start the service (again, after [`TestApp::stop`]) on the same
    /// NATS server, database and mail settings.
    pub async fn start(&mut self) {
        self.shutdown = CancellationToken::new();
        let rt = Runtime::new(self.client.clone(), 1);
        let mut task = tokio::spawn(jetshop_notifications::run(
            self.settings.clone(),
            rt,
            self.shutdown.clone(),
        ));
        // Ready once the micro service answers; a start-up failure surfaces here.
        let client = self.client.clone();
        let ready = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                tokio::select! {
                    ended = &mut task => panic!("notifications stopped during start-up: {ended:?}"),
                    reply = client.request("$SRV.PING.notifications", "".into()) => if reply.is_ok() { break },
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
        .await;
        assert!(
            ready.is_ok(),
            "notifications did not answer $SRV.PING within 20s"
        );
        self.task = Some(task);
    }

    /// Stop the service and wait for it to drain.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    pub fn smtp(&self) -> &SmtpServer {
        self.smtp.as_ref().expect("started with an SMTP server")
    }

    /// Publish `event` under a fresh message id; returns the id.
    pub async fn publish<E: Event>(&self, event: &E) -> String {
        let id = Uuid::now_v7().to_string();
        envelope::publish(
            &self.js,
            &event.subject(),
            &id,
            event,
            &MessageMeta::correlated("test-correlation"),
        )
        .await
        .unwrap();
        id
    }

    /// The service's database, for the audit views.
    pub async fn audit(&self) -> DatabaseConnection {
        audit::connect(&self.db.url).await.unwrap()
    }

    /// Wait until durable `consumer` of `stream` has nothing pending and
    /// nothing in hand: every message so far is acknowledged (or
    /// dead-lettered).
    pub async fn wait_idle(&self, stream: &str, consumer: &str) {
        let js = self.js.clone();
        eventually(
            &format!("{consumer} to be idle"),
            Duration::from_secs(30),
            || {
                let js = js.clone();
                async move {
                    let mut c: jetstream::consumer::Consumer<pull::Config> = js
                        .get_stream(stream)
                        .await
                        .ok()?
                        .get_consumer(consumer)
                        .await
                        .ok()?;
                    let info = c.info().await.ok()?;
                    (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
                }
            },
        )
        .await;
    }

    /// The `.eml` files written so far, by file name.
    pub fn eml_files(&self) -> HashMap<String, String> {
        std::fs::read_dir(self.mail_dir.path())
            .map(|dir| {
                dir.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .map(|p| {
                        (
                            p.file_name().unwrap().to_string_lossy().into_owned(),
                            std::fs::read_to_string(&p).unwrap(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub fn eur(amount_minor: i64) -> Money {
    Money {
        amount_minor,
        currency: "EUR".into(),
    }
}

/// An order of two mugs and a teapot, 57.50 EUR.
pub fn confirmed(customer_id: Uuid, email: Option<&str>) -> OrderConfirmed {
    OrderConfirmed {
        order_id: Uuid::now_v7(),
        customer_id,
        customer_email: email.map(str::to_owned),
        lines: vec![
            OrderLine {
                product_id: Uuid::now_v7(),
                sku: "MUG-BLUE".into(),
                name: "Blue mug".into(),
                quantity: 2,
                unit_price: eur(1500),
                line_total: eur(3000),
            },
            OrderLine {
                product_id: Uuid::now_v7(),
                sku: "TEAPOT".into(),
                name: "Teapot".into(),
                quantity: 1,
                unit_price: eur(2750),
                line_total: eur(2750),
            },
        ],
        total: eur(5750),
        confirmed_at: Utc::now(),
    }
}

pub fn cancelled(customer_id: Uuid, email: Option<&str>, reason: &str) -> OrderCancelled {
    OrderCancelled {
        order_id: Uuid::now_v7(),
        customer_id,
        customer_email: email.map(str::to_owned),
        reason: reason.into(),
        cancelled_at: Utc::now(),
    }
}

pub fn registered(email: &str, name: &str) -> UserRegistered {
    UserRegistered {
        user: User {
            id: Uuid::now_v7(),
            email: email.into(),
            display_name: name.into(),
            roles: vec![Role::Customer],
            version: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        },
    }
}

/// A header of a raw RFC 5322 message (first occurrence, unfolded).
pub fn mail_header(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next().unwrap_or(raw);
    let head = head.split("\n\n").next().unwrap_or(head);
    let unfolded = head.replace("\r\n ", " ").replace("\n ", " ");
    unfolded.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

/// One request a [`HookServer`] received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HashMap<String, String>,
    pub body: String,
}

#[derive(Clone, Default)]
struct HookState {
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
}

/// A real HTTP server on a free loopback port that records every POST
/// and answers with a chosen status.
pub struct HookServer {
    pub url: String,
    state: HookState,
    stop: CancellationToken,
}

#[handler]
async fn receive(req: &poem::Request, body: String, state: Data<&HookState>) -> StatusCode {
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    state
        .received
        .lock()
        .unwrap()
        .push(Received { headers, body });
    StatusCode::from_u16(state.status.load(Ordering::SeqCst)).unwrap()
}

impl HookServer {
    /// Start one that answers `status` to every call.
    pub async fn start(status: u16) -> Self {
        let port = jetshop_testkit::free_port();
        let state = HookState::default();
        state.status.store(status, Ordering::SeqCst);
        let app = Route::new()
            .at("/hook", poem::post(receive))
            .data(state.clone());
        let stop = CancellationToken::new();
        let signal = stop.clone();
        tokio::spawn(async move {
            poem::Server::new(poem::listener::TcpListener::bind(format!(
                "127.0.0.1:{port}"
            )))
            .run_with_graceful_shutdown(app, signal.cancelled_owned(), None)
            .await
        });
        eventually(
            "the webhook receiver to listen",
            Duration::from_secs(10),
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
        Self {
            url: format!("http://127.0.0.1:{port}/hook"),
            state,
            stop,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Wait until at least `n` calls arrived; return them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        eventually(
            &format!("{n} webhook calls"),
            Duration::from_secs(20),
            || async move {
                let all = self.received();
                (all.len() >= n).then_some(all)
            },
        )
        .await
    }
}

impl Drop for HookServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
