//! One orders service with a catalog, its own NATS server and databases.

use std::time::Duration;

use async_nats::jetstream::{self, message::StreamMessage};
use jetshop_catalog::CatalogSettings;
use jetshop_contracts::{
    Command, Encoding, Event, Message,
    catalog::{CreateProduct, Money},
    headers,
    orders::{GetOrder, LineRequest, OrderStatus, OrderView, PlaceOrder},
};
use jetshop_orders::OrdersSettings;
use jetshop_platform::{
    config::{ConsumerSettings, NatsSettings},
    envelope::{self, MessageMeta},
    rpc::RpcClient,
    runtime::Runtime,
};
use jetshop_testkit::{NatsServer, TestDb, eventually};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub fn consumer_settings() -> ConsumerSettings {
    ConsumerSettings {
        max_deliver: 3,
        backoff: vec![Duration::from_millis(100)],
        ack_wait: Duration::from_secs(5),
        concurrency: 8,
        pin_timeout: Duration::from_secs(2),
    }
}

/// A running orders service and catalog.
pub struct Shop {
    pub _server: NatsServer,
    pub orders_db: TestDb,
    pub _catalog_db: TestDb,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub rpc: RpcClient,
    pub settings: OrdersSettings,
    catalog: (
        CancellationToken,
        JoinHandle<Result<(), jetshop_catalog::Error>>,
    ),
    orders: Option<(
        CancellationToken,
        JoinHandle<Result<(), jetshop_orders::Error>>,
    )>,
}

impl Shop {
    pub async fn start(configure: impl FnOnce(&mut OrdersSettings)) -> Self {
        jetshop_testkit::init_test_log();
        let server = NatsServer::start();
        let orders_db = TestDb::fresh().await;
        let catalog_db = TestDb::fresh().await;
        let client =
            jetshop_platform::nats::connect(&NatsSettings::for_url(server.url()), "orders-test")
                .await
                .unwrap();
        let catalog_settings = CatalogSettings {
            consumer: consumer_settings(),
            ..CatalogSettings::for_database(catalog_db.url.clone())
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(jetshop_catalog::run(
            catalog_settings,
            Runtime::new(client.clone(), 1),
            stop.clone(),
        ));
        wait_for_service(&client, "catalog").await;
        let mut settings = OrdersSettings {
            consumer: consumer_settings(),
            deadline_scan: Duration::from_millis(100),
            ..OrdersSettings::for_database(orders_db.url.clone())
        };
        configure(&mut settings);
        let mut shop = Self {
            _server: server,
            orders_db,
            _catalog_db: catalog_db,
            js: jetstream::new(client.clone()),
            rpc: RpcClient::new(client.clone(), Duration::from_secs(2), 1),
            client,
            settings,
            catalog: (stop, task),
            orders: None,
        };
        shop.start_orders().await;
        shop
    }

    pub async fn start_orders(&mut self) {
        let stop = CancellationToken::new();
        let task = tokio::spawn(jetshop_orders::run(
            self.settings.clone(),
            Runtime::new(self.client.clone(), 1),
            stop.clone(),
        ));
        wait_for_service(&self.client, "orders").await;
        self.orders = Some((stop, task));
    }

    /// Stop the orders service gracefully.
    pub async fn stop_orders(&mut self) {
        if let Some((stop, task)) = self.orders.take() {
            stop.cancel();
            task.await.unwrap().unwrap();
        }
    }

    /// Kill the orders service mid-flight: its task is dropped wherever it
    /// is, as a crashed process would be (open transactions roll back).
    pub async fn kill_orders(&mut self) {
        if let Some((_, task)) = self.orders.take() {
            task.abort();
            let _ = task.await;
        }
    }

    pub async fn stop(mut self) {
        self.stop_orders().await;
        self.catalog.0.cancel();
        let _ = (&mut self.catalog.1).await;
    }

    pub async fn send<C: Command>(&self, cmd: &C) -> String {
        let id = Uuid::now_v7().to_string();
        envelope::send_command(&self.js, &id, cmd, &MessageMeta::correlated("orders-test"))
            .await
            .unwrap();
        id
    }

    /// Publish an event as its owning service would (a fresh message id).
    pub async fn publish<E: Event>(&self, event: &E) {
        envelope::publish(
            &self.js,
            &event.subject(),
            &Uuid::now_v7().to_string(),
            event,
            &MessageMeta::correlated("orders-test"),
        )
        .await
        .unwrap();
    }

    pub async fn product(&self, sku: &str, price_minor: i64, stock: i64) -> Uuid {
        let cmd = CreateProduct {
            id: Uuid::now_v7(),
            sku: sku.into(),
            name: format!("{sku} name"),
            description: String::new(),
            price: Money {
                amount_minor: price_minor,
                currency: "EUR".into(),
            },
            stock,
        };
        self.send(&cmd).await;
        let rpc = self.rpc.clone();
        let id = cmd.id;
        eventually("the product", Duration::from_secs(15), || {
            let rpc = rpc.clone();
            async move {
                rpc.call(
                    &jetshop_contracts::catalog::GetProduct { id },
                    &MessageMeta::default(),
                )
                .await
                .ok()
            }
        })
        .await;
        id
    }

    pub async fn stock(&self, id: Uuid) -> i64 {
        self.rpc
            .call(
                &jetshop_contracts::catalog::GetProduct { id },
                &MessageMeta::default(),
            )
            .await
            .unwrap()
            .stock
    }

    pub async fn place(&self, lines: &[(Uuid, i64)], card_token: &str) -> Uuid {
        let order_id = Uuid::now_v7();
        self.send(&place_order(order_id, lines, card_token)).await;
        order_id
    }

    pub async fn order(&self, order_id: Uuid) -> Option<OrderView> {
        self.rpc
            .call(&GetOrder { order_id }, &MessageMeta::default())
            .await
            .ok()
    }

    pub async fn wait_status(&self, order_id: Uuid, status: OrderStatus) -> OrderView {
        eventually(
            &format!("order {order_id} to be {status:?}"),
            Duration::from_secs(30),
            || async move { self.order(order_id).await.filter(|o| o.status == status) },
        )
        .await
    }

    /// Wait until `stream` holds at least `n` messages of type `M`, and return them.
    pub async fn wait_messages<M: Message>(&self, stream: &str, n: usize) -> Vec<M> {
        eventually(
            &format!("{n} {} in {stream}", M::TYPE),
            Duration::from_secs(30),
            || async move {
                let all = messages_of::<M>(&self.js, stream).await;
                (all.len() >= n).then_some(all)
            },
        )
        .await
    }

    pub async fn count<M: Message>(&self, stream: &str) -> usize {
        messages_of::<M>(&self.js, stream).await.len()
    }
}

pub fn place_order(order_id: Uuid, lines: &[(Uuid, i64)], card_token: &str) -> PlaceOrder {
    PlaceOrder {
        order_id,
        customer_id: Uuid::now_v7(),
        customer_email: Some("buyer@example.com".into()),
        lines: lines
            .iter()
            .map(|(product_id, quantity)| LineRequest {
                product_id: *product_id,
                quantity: *quantity,
            })
            .collect(),
        card_token: card_token.into(),
    }
}

/// Every message of type `M` in `stream` (work-queue streams hold only the
/// unacknowledged ones; the tests read commands nobody consumes).
pub async fn messages_of<M: Message>(js: &jetstream::Context, stream: &str) -> Vec<M> {
    let count = jetshop_testkit::stream_count(js, stream).await;
    if count == 0 {
        return vec![];
    }
    let all: Vec<StreamMessage> = jetshop_testkit::stream_messages(js, stream, count).await;
    all.iter()
        .filter(|m| jetshop_testkit::header(m, headers::TYPE).as_deref() == Some(M::TYPE))
        .map(|m| Encoding::MsgPack.decode(&m.payload).unwrap())
        .collect()
}

async fn wait_for_service(client: &async_nats::Client, name: &str) {
    let subject = format!("$SRV.PING.{name}");
    let ready = tokio::time::timeout(Duration::from_secs(20), async {
        while client.request(subject.clone(), "".into()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await;
    assert!(ready.is_ok(), "{name} did not answer $SRV.PING within 20s");
}
