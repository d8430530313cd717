//! Spawning the catalog for one test, and reading its streams.

use std::time::Duration;

use async_nats::jetstream::{self, message::StreamMessage};
use jetshop_catalog::CatalogSettings;
use jetshop_contracts::{
    catalog::{CreateProduct, Money},
    streams,
};
use jetshop_platform::{
    config::{ConsumerSettings, NatsSettings},
    envelope::{self, MessageMeta},
    rpc::RpcClient,
    runtime::Runtime,
};
use jetshop_testkit::{NatsServer, TestDb, eventually};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A running catalog with its own NATS server and database.
pub struct TestCatalog {
    pub _server: NatsServer,
    pub _db: TestDb,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub rpc: RpcClient,
    pub shutdown: CancellationToken,
    pub task: Option<tokio::task::JoinHandle<Result<(), jetshop_catalog::Error>>>,
}

impl TestCatalog {
    pub async fn spawn() -> Self {
        jetshop_testkit::init_test_log();
        let server = NatsServer::start();
        let db = TestDb::fresh().await;
        let client =
            jetshop_platform::nats::connect(&NatsSettings::for_url(server.url()), "catalog-test")
                .await
                .unwrap();
        let rt = Runtime::new(client.clone(), 1);
        let settings = CatalogSettings {
            consumer: ConsumerSettings {
                max_deliver: 3,
                backoff: vec![Duration::from_millis(100)],
                ack_wait: Duration::from_secs(5),
                concurrency: 8,
                ..Default::default()
            },
            ..CatalogSettings::for_database(db.url.clone())
        };
        let shutdown = CancellationToken::new();
        let mut task = tokio::spawn(jetshop_catalog::run(settings, rt, shutdown.clone()));
        let js = jetstream::new(client.clone());
        // Ready once the micro service answers; a start-up failure surfaces here.
        let ready = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                tokio::select! {
                    ended = &mut task => panic!("catalog stopped during start-up: {ended:?}"),
                    reply = client.request("$SRV.PING.catalog", "".into()) => if reply.is_ok() { break },
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
        .await;
        assert!(ready.is_ok(), "catalog did not answer $SRV.PING within 20s");
        let rpc = RpcClient::new(client.clone(), Duration::from_secs(2), 0);
        Self {
            _server: server,
            _db: db,
            client,
            js,
            rpc,
            shutdown,
            task: Some(task),
        }
    }

    /// Stop the service and wait for it to drain.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    pub async fn send<C: jetshop_contracts::Command>(&self, cmd: &C) -> String {
        let id = Uuid::now_v7().to_string();
        envelope::send_command(
            &self.js,
            &id,
            cmd,
            &MessageMeta::correlated("test-correlation"),
        )
        .await
        .unwrap();
        id
    }

    /// Wait until `stream` holds at least `n` messages, then return them all.
    pub async fn stream_messages(&self, stream: &str, n: u64) -> Vec<StreamMessage> {
        jetshop_testkit::stream_messages(&self.js, stream, n).await
    }

    /// Messages currently in `stream` (no waiting).
    pub async fn stream_count(&self, stream: &str) -> u64 {
        jetshop_testkit::stream_count(&self.js, stream).await
    }

    /// Create a product through a command and wait until it can be read.
    pub async fn create(&self, sku: &str, name: &str, stock: i64) -> CreateProduct {
        let cmd = create_cmd(sku, name, stock);
        self.send(&cmd).await;
        self.wait_for_product(cmd.id).await;
        cmd
    }

    pub async fn wait_for_product(&self, id: Uuid) -> jetshop_contracts::catalog::Product {
        let rpc = self.rpc.clone();
        eventually(&format!("product {id}"), Duration::from_secs(15), || {
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
        .await
    }
}

pub fn create_cmd(sku: &str, name: &str, stock: i64) -> CreateProduct {
    CreateProduct {
        id: Uuid::now_v7(),
        sku: sku.into(),
        name: name.into(),
        description: format!("{name}, for tests"),
        price: Money {
            amount_minor: 1500,
            currency: "EUR".into(),
        },
        stock,
    }
}

pub const DLQ: &str = streams::DLQ;
pub const EVENTS: &str = streams::CATALOG_EVENTS;
