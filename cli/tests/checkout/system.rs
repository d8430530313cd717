//! The whole checkout, started for one test: each service in this process
//! with its own NATS connection (or orders as a `jetshop run orders`
//! child process that a test can SIGKILL), each with its own database.

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use crate::secure_nats::Credentials;
use async_nats::jetstream;
use jetshop_catalog::CatalogSettings;
use jetshop_contracts::{
    catalog::{CreateProduct, GetProduct, Money},
    orders::{GetOrder, LineRequest, OrderStatus, OrderView, PlaceOrder},
};
use jetshop_notifications::NotificationsSettings;
use jetshop_orders::OrdersSettings;
use jetshop_payments::{CardProcessorClient, PaymentsSettings, ResilientProvider};
use jetshop_platform::{
    config::{ConsumerSettings, NatsSettings},
    envelope::{self, MessageMeta},
    rpc::RpcClient,
    runtime::Runtime,
};
use jetshop_testkit::{CardProcessor, NatsServer, SmtpServer, TestDb, eventually, free_port};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const BIN: &str = env!("CARGO_BIN_EXE_jetshop");

/// How the services retry in these tests: quick, and patient enough that a
/// broker restart or an open breaker does not exhaust the deliveries.
pub fn consumer_settings() -> ConsumerSettings {
    ConsumerSettings {
        max_deliver: 12,
        backoff: vec![
            Duration::from_millis(100),
            Duration::from_millis(250),
            Duration::from_millis(500),
            Duration::from_secs(1),
        ],
        ack_wait: Duration::from_secs(10),
        concurrency: 16,
        pin_timeout: Duration::from_secs(2),
    }
}

/// Knobs a test may turn before the system starts.
#[derive(Clone)]
pub struct Options {
    pub consumer: ConsumerSettings,
    pub orders: OrdersSettings,
    pub payments: PaymentsSettings,
    /// Run orders as a `jetshop run orders` child process (killable).
    pub orders_as_process: bool,
    /// NATS as `jetshop nats-config` secures it: every part connects as its
    /// own nkey user, with its generated permissions, over mutual TLS.
    pub secured: bool,
}

impl Default for Options {
    fn default() -> Self {
        let mut orders = OrdersSettings::for_database("");
        // Fixed 5 s waits (no doubling): tok_timeout orders end in 15 s.
        orders.step_timeout = Duration::from_secs(5);
        orders.step_timeout_max = Duration::from_secs(5);
        orders.step_attempts = 3;
        orders.deadline_scan = Duration::from_millis(200);
        let mut payments = PaymentsSettings::for_database("");
        payments.provider_timeout = Duration::from_millis(200);
        payments.provider_retries = 2;
        payments.provider_backoff = Duration::from_millis(20);
        payments.breaker_failure_threshold = 5;
        payments.breaker_open_duration = Duration::from_secs(1);
        Self {
            consumer: consumer_settings(),
            orders,
            payments,
            orders_as_process: false,
            secured: false,
        }
    }
}

type Task = (CancellationToken, JoinHandle<Result<(), String>>);

/// The running checkout.
pub struct System {
    pub nats: NatsServer,
    /// The parts' credentials when [`Options::secured`].
    pub credentials: Option<Credentials>,
    pub smtp: SmtpServer,
    pub catalog_db: TestDb,
    pub orders_db: TestDb,
    pub payments_db: TestDb,
    pub notifications_db: TestDb,
    pub js: jetstream::Context,
    pub rpc: RpcClient,
    /// The card processor (a real one, in this process, with its own
    /// database): outlives payments restarts, as a real one would.
    pub processor: CardProcessor,
    /// The current payments process's guard around it (breaker, bulkhead).
    pub guarded: Option<Arc<ResilientProvider>>,
    pub options: Options,
    tasks: HashMap<&'static str, Task>,
    orders_child: Option<Child>,
    _logs: tempfile::TempDir,
}

impl System {
    pub async fn start(options: Options) -> Self {
        jetshop_testkit::init_test_log();
        let (nats, credentials) = if options.secured {
            let (nats, credentials) = crate::secure_nats::start(BIN);
            (nats, Some(credentials))
        } else {
            (NatsServer::start(), None)
        };
        let smtp = SmtpServer::start();
        let (catalog_db, orders_db, payments_db, notifications_db) = (
            TestDb::fresh().await,
            TestDb::fresh().await,
            TestDb::fresh().await,
            TestDb::fresh().await,
        );
        // The test stands in for the gateway and for operators: it places
        // orders, creates products and reads every stream, so under
        // security it is the unrestricted `ops` user.
        let client = match &credentials {
            Some(c) => c.ops().await,
            None => connect(&NatsSettings::for_url(nats.url()), "checkout-test").await,
        };
        let mut system = Self {
            credentials,
            js: jetstream::new(client.clone()),
            rpc: RpcClient::new(client, Duration::from_secs(5), 2),
            nats,
            smtp,
            catalog_db,
            orders_db,
            payments_db,
            notifications_db,
            processor: CardProcessor::start().await,
            guarded: None,
            options,
            tasks: HashMap::new(),
            orders_child: None,
            _logs: tempfile::tempdir().unwrap(),
        };
        system.start_catalog().await;
        system.start_payments().await;
        system.start_notifications().await;
        system.start_orders().await;
        system
    }

    /// Where this run keeps its state, for [`crate::invariants::check`].
    pub fn stores(&self) -> crate::invariants::Stores<'_> {
        crate::invariants::Stores {
            catalog_db: &self.catalog_db.url,
            orders_db: &self.orders_db.url,
            payments_db: &self.payments_db.url,
            notifications_db: &self.notifications_db.url,
            js: &self.js,
            smtp: &self.smtp,
            // Notifications runs in this process and is never killed.
            resends_possible: false,
        }
    }

    async fn runtime(&self, name: &str) -> Runtime {
        Runtime::new(connect(&self.nats_settings(name), name).await, 1)
    }

    /// How part `name` reaches NATS: with its own credentials when secured.
    fn nats_settings(&self, name: &str) -> NatsSettings {
        match &self.credentials {
            Some(c) => c.settings(name),
            None => NatsSettings::for_url(self.nats.url()),
        }
    }

    /// Run one service in this process on its own NATS connection.
    async fn spawn<F, Fut, E>(&mut self, name: &'static str, run: F)
    where
        F: FnOnce(Runtime, CancellationToken) -> Fut,
        Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let rt = self.runtime(name).await;
        let stop = CancellationToken::new();
        let fut = run(rt, stop.clone());
        let task = tokio::spawn(async move { fut.await.map_err(|e| e.to_string()) });
        self.tasks.insert(name, (stop, task));
        self.wait_ready(name).await;
    }

    async fn wait_ready(&self, name: &str) {
        // Services with RPC answer $SRV.PING; the others are ready once
        // their durable consumers exist.
        let probe = match name {
            "catalog" | "orders" => format!("$SRV.PING.{name}"),
            _ => String::new(),
        };
        let client = self.js.client();
        let consumers: &[(&str, &str)] = match name {
            "payments" => &[("PAYMENTS_COMMANDS", "payments-commands")],
            "notifications" => &[("ORDERS_EVENTS", "notifications-orders")],
            _ => &[],
        };
        eventually(
            &format!("{name} to be ready"),
            Duration::from_secs(30),
            || {
                let client = client.clone();
                let probe = probe.clone();
                let js = self.js.clone();
                async move {
                    if !probe.is_empty() && client.request(probe, "".into()).await.is_err() {
                        return None;
                    }
                    for (stream, durable) in consumers {
                        let stream = js.get_stream(*stream).await.ok()?;
                        stream
                            .get_consumer::<jetstream::consumer::pull::Config>(durable)
                            .await
                            .ok()?;
                    }
                    Some(())
                }
            },
        )
        .await;
    }

    pub async fn start_catalog(&mut self) {
        let settings = CatalogSettings {
            consumer: self.options.consumer.clone(),
            ..CatalogSettings::for_database(self.catalog_db.url.clone())
        };
        self.spawn("catalog", move |rt, stop| {
            jetshop_catalog::run(settings, rt, stop)
        })
        .await;
    }

    pub async fn start_payments(&mut self) {
        let mut settings = self.options.payments.clone();
        settings.database_url = self.payments_db.url.clone();
        settings.consumer = self.options.consumer.clone();
        settings.provider_url = self.processor.url();
        let client = CardProcessorClient::new(&settings.provider_url, settings.provider_timeout)
            .expect("card processor client");
        let guarded = Arc::new(ResilientProvider::new(
            Arc::new(client),
            settings.resilience(),
        ));
        self.guarded = Some(guarded.clone());
        self.spawn("payments", move |rt, stop| {
            jetshop_payments::run_with_resilient(settings, rt, guarded, stop)
        })
        .await;
    }

    pub async fn start_notifications(&mut self) {
        let mut settings = NotificationsSettings::for_database(self.notifications_db.url.clone());
        settings.smtp_url = Some(self.smtp.url());
        settings.consumer = self.options.consumer.clone();
        self.spawn("notifications", move |rt, stop| {
            jetshop_notifications::run(settings, rt, stop)
        })
        .await;
    }

    fn orders_settings(&self) -> OrdersSettings {
        let mut settings = self.options.orders.clone();
        settings.database_url = self.orders_db.url.clone();
        settings.consumer = self.options.consumer.clone();
        settings
    }

    pub async fn start_orders(&mut self) {
        if self.options.orders_as_process {
            self.start_orders_process().await;
            return;
        }
        let settings = self.orders_settings();
        self.spawn("orders", move |rt, stop| {
            jetshop_orders::run(settings, rt, stop)
        })
        .await;
    }

    /// `jetshop run orders` as a child process, configured like the
    /// in-process one, its log in a temp file.
    async fn start_orders_process(&mut self) {
        let s = self.orders_settings();
        let c = &self.options.consumer;
        let backoff: Vec<String> = c
            .backoff
            .iter()
            .map(|d| humantime::format_duration(*d).to_string())
            .collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self._logs.path().join("orders.log"))
            .unwrap();
        let nats_flags = match &self.credentials {
            Some(c) => c.flags("orders"),
            None => vec!["--nats-url".into(), self.nats.url()],
        };
        let child = Command::new(BIN)
            .args(["run", "orders"])
            .args(nats_flags)
            .args(["--admin-addr", &format!("127.0.0.1:{}", free_port())])
            .args(["--orders-database-url", &s.database_url])
            .args([
                "--orders-step-timeout",
                &humantime::format_duration(s.step_timeout).to_string(),
            ])
            .args([
                "--orders-step-timeout-max",
                &humantime::format_duration(s.step_timeout_max).to_string(),
            ])
            .args(["--orders-step-attempts", &s.step_attempts.to_string()])
            .args([
                "--orders-deadline-scan",
                &humantime::format_duration(s.deadline_scan).to_string(),
            ])
            .args(["--consumer-max-deliver", &c.max_deliver.to_string()])
            .args(["--consumer-backoff", &backoff.join(",")])
            .args([
                "--consumer-ack-wait",
                &humantime::format_duration(c.ack_wait).to_string(),
            ])
            .args(["--consumer-concurrency", &c.concurrency.to_string()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start jetshop run orders");
        self.orders_child = Some(child);
        self.wait_ready("orders").await;
    }

    /// SIGKILL the orders process: no draining, no last acks.
    pub fn kill_orders_process(&mut self) {
        let mut child = self.orders_child.take().expect("orders runs as a process");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Stop a service gracefully.
    pub async fn stop_service(&mut self, name: &str) {
        if let Some((stop, task)) = self.tasks.remove(name) {
            stop.cancel();
            task.await.unwrap().unwrap();
        }
    }

    pub async fn shutdown(mut self) {
        if let Some(mut child) = self.orders_child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in ["orders", "notifications", "payments", "catalog"] {
            if let Some((stop, task)) = self.tasks.remove(name) {
                stop.cancel();
                let _ = task.await;
            }
        }
    }

    /// Create products with the given stock; returns (id, stock, price).
    pub async fn products(&self, stocks: &[i64]) -> Vec<(Uuid, i64)> {
        let mut out = Vec::new();
        for (i, stock) in stocks.iter().enumerate() {
            let cmd = CreateProduct {
                id: Uuid::now_v7(),
                sku: format!("CHK-{i}-{}", &Uuid::now_v7().simple().to_string()[20..]),
                name: format!("Checkout product {i}"),
                description: String::new(),
                price: Money {
                    amount_minor: 1000 + 250 * i as i64,
                    currency: "EUR".into(),
                },
                stock: *stock,
            };
            envelope::send_command(
                &self.js,
                &Uuid::now_v7().to_string(),
                &cmd,
                &MessageMeta::default(),
            )
            .await
            .unwrap();
            let id = cmd.id;
            eventually("a product", Duration::from_secs(20), || async move {
                self.rpc
                    .call(&GetProduct { id }, &MessageMeta::default())
                    .await
                    .ok()
            })
            .await;
            out.push((id, *stock));
        }
        out
    }

    /// Send one placement as the gateway does.
    pub async fn place(&self, lines: Vec<(Uuid, i64)>, token: &str, n: usize) -> Uuid {
        let order_id = Uuid::now_v7();
        let email = format!("buyer{n}@example.com");
        self.send_placement(order_id, &order_id.to_string(), &email, lines, token)
            .await;
        order_id
    }

    /// The placement of an existing order again, under a new message id and
    /// with other content: the first placement must stand.
    pub async fn place_again(&self, order_id: Uuid, product: Uuid) {
        let message_id = Uuid::now_v7().to_string();
        let email = "someone-else@example.com";
        self.send_placement(order_id, &message_id, email, vec![(product, 1)], "tok_visa")
            .await;
    }

    async fn send_placement(
        &self,
        order_id: Uuid,
        message_id: &str,
        email: &str,
        lines: Vec<(Uuid, i64)>,
        token: &str,
    ) {
        let cmd = PlaceOrder {
            order_id,
            customer_id: Uuid::now_v7(),
            customer_email: Some(email.into()),
            lines: lines
                .into_iter()
                .map(|(product_id, quantity)| LineRequest {
                    product_id,
                    quantity,
                })
                .collect(),
            card_token: token.into(),
        };
        let meta = MessageMeta::correlated(order_id.to_string());
        envelope::send_command(&self.js, message_id, &cmd, &meta)
            .await
            .unwrap();
    }

    /// Wait until a durable consumer has nothing pending or unacknowledged.
    pub async fn wait_consumed(&self, stream: &str, durable: &str) {
        let s = self.js.get_stream(stream).await.unwrap();
        eventually(
            &format!("{durable} to catch up"),
            Duration::from_secs(60),
            || {
                let s = s.clone();
                async move {
                    let mut c: jetstream::consumer::PullConsumer =
                        s.get_consumer(durable).await.ok()?;
                    let info = c.info().await.ok()?;
                    (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
                }
            },
        )
        .await;
    }

    /// Place `n` orders at once over `products`, with a mix of cards: mostly
    /// approving, some declined, some failing transiently, a few timing out.
    pub async fn place_many(&self, n: usize, products: &[(Uuid, i64)]) -> Vec<Uuid> {
        let placements = (0..n).map(|i| {
            let token = token_for(i);
            let first = products[i % products.len()].0;
            let mut lines = vec![(first, 1 + (i % 2) as i64)];
            if i % 3 == 0 && products.len() > 1 {
                lines.push((products[(i + 1) % products.len()].0, 1));
            }
            self.place(lines, token, i)
        });
        futures::future::join_all(placements).await
    }

    pub async fn order(&self, order_id: Uuid) -> Option<OrderView> {
        self.rpc
            .call(&GetOrder { order_id }, &MessageMeta::default())
            .await
            .ok()
    }

    /// Wait until every order is confirmed or cancelled; returns how long it took.
    pub async fn wait_terminal(&self, orders: &[Uuid], timeout: Duration) -> Duration {
        let started = Instant::now();
        let db = jetshop_platform::db::connect(&self.orders_db.url)
            .await
            .unwrap();
        loop {
            let mut open = Vec::new();
            for &id in orders {
                let row = jetshop_orders::storage::projection::find(&db, id)
                    .await
                    .ok()
                    .flatten();
                let terminal = row
                    .and_then(|r| OrderStatus::parse(&r.status))
                    .is_some_and(OrderStatus::is_terminal);
                if !terminal {
                    open.push(id);
                }
            }
            if open.is_empty() {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < timeout,
                "{} of {} orders still open after {timeout:?}, e.g. {:?}",
                open.len(),
                orders.len(),
                self.order(open[0]).await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The card of the `i`-th order of a mixed run.
pub fn token_for(i: usize) -> &'static str {
    match i % 20 {
        3 | 13 => "tok_chargeDeclined",
        7 => "tok_insufficientFunds",
        9 | 17 => "tok_processingError",
        19 if i % 40 == 19 => "tok_timeout",
        _ => "tok_visa",
    }
}

async fn connect(settings: &NatsSettings, name: &str) -> async_nats::Client {
    jetshop_platform::nats::connect(settings, name)
        .await
        .unwrap()
}
