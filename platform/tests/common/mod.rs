//! Shared by the integration test binaries: a real nats-server, a fresh
//! database with the shared tables plus an `effects` table, and test
//! message types.
#![allow(dead_code)]

use std::time::Duration;

use async_nats::jetstream;
use jetshop_contracts::{
    Event, Message, Rpc,
    streams::{self, Retention, StreamSpec},
};
use jetshop_platform::{db, nats};
use jetshop_testkit::{NatsServer, TestDb};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use serde::{Deserialize, Serialize};

/// The shared tables (outbox, inbox), as a service's `Migrator` lists them.
pub struct Migrator;

#[sea_orm_migration::async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        db::shared_migrations()
    }
}

/// Name of the test events stream.
pub const TEST_EVENTS: &str = "TEST_EVENTS";

/// A stream for [`Thing`] events, like a context's events stream.
pub fn test_events() -> StreamSpec {
    StreamSpec {
        name: TEST_EVENTS,
        subjects: vec!["test.events.>".into()],
        retention: Retention::Limits,
        max_age: Duration::from_secs(3600),
        duplicate_window: streams::DUPLICATE_WINDOW,
        description: "Test events",
        partitioned: false,
    }
}

/// A second subject in the test events stream, for a second consumer.
pub const OTHER_THING_SUBJECT: &str = "test.events.other-thing";

/// A test event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Thing {
    pub n: u32,
    pub note: String,
}

impl Message for Thing {
    const TYPE: &'static str = "test.thing";
    const VERSION: u32 = 1;
}

impl Event for Thing {
    const SUBJECT: &'static str = "test.events.thing";
}

/// A test RPC: echo the text back, after `delay_ms`, or fail when asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Echo {
    pub text: String,
    #[serde(default)]
    pub delay_ms: u64,
    #[serde(default)]
    pub fail: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EchoReply {
    pub text: String,
}

impl Message for Echo {
    const TYPE: &'static str = "test.echo";
    const VERSION: u32 = 1;
}

impl Message for EchoReply {
    const TYPE: &'static str = "test.echo-reply";
    const VERSION: u32 = 1;
}

pub const ECHO_GROUP: &str = "test.rpc.echo";
pub const ECHO_ENDPOINT: &str = "say";

impl Rpc for Echo {
    type Reply = EchoReply;
    const SUBJECT: &'static str = "test.rpc.echo.say";
}

/// A nats-server with the test events stream and the DLQ provisioned.
pub struct Nats {
    pub server: NatsServer,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
}

impl Nats {
    pub async fn start() -> Self {
        jetshop_testkit::init_test_log();
        let server = NatsServer::start();
        let client = server.client().await;
        nats::check_version(&client.server_info().version).expect("nats-server >= 2.10 on PATH");
        let js = jetstream::new(client.clone());
        nats::provision_streams(&js, &[test_events(), streams::dlq()], 1)
            .await
            .unwrap();
        Self { server, client, js }
    }

    /// Messages in a stream right now.
    pub async fn stream_messages(&self, name: &str) -> u64 {
        self.js
            .get_stream(name)
            .await
            .unwrap()
            .get_info()
            .await
            .unwrap()
            .state
            .messages
    }
}

/// A fresh database with the shared tables and an `effects` table.
pub async fn database() -> (TestDb, DatabaseConnection) {
    let test = TestDb::fresh().await;
    let conn = db::connect(&test.url).await.unwrap();
    Migrator::up(&conn, None).await.unwrap();
    conn.execute_unprepared(
        "CREATE TABLE effects (id VARCHAR(255) NOT NULL, note VARCHAR(255) NOT NULL)",
    )
    .await
    .unwrap();
    (test, conn)
}

/// Run a `SELECT COUNT(*) AS n ...` query.
pub async fn count(db: &impl ConnectionTrait, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .expect("a count row");
    row.try_get::<i64>("", "n").unwrap()
}
