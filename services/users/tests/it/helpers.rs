//! Spawning the users service for one test, calling it, and reading its stream.

#![allow(dead_code)] // shared with the log-capture binary, which uses a part

use std::time::Duration;

use async_nats::jetstream::{self, message::StreamMessage};
use jetshop_contracts::{ErrorCode, Rpc, RpcError, streams, users::RegisterUser};
use jetshop_platform::{
    config::NatsSettings,
    envelope::MessageMeta,
    rpc::{CallError, RpcClient},
    runtime::Runtime,
};
use jetshop_testkit::{NatsServer, TestDb};
use jetshop_users::UsersSettings;
use tokio_util::sync::CancellationToken;

pub const EVENTS: &str = streams::USERS_EVENTS;
pub const PASSWORD: &str = "tr0ub4dor&3-horse-staple";

/// A running users service with its own NATS server and database.
pub struct TestUsers {
    pub server: NatsServer,
    pub db: TestDb,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub rpc: RpcClient,
    pub shutdown: CancellationToken,
    pub task: Option<tokio::task::JoinHandle<Result<(), jetshop_users::Error>>>,
}

impl TestUsers {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Spawn with settings adjusted by `tweak` (bootstrap admin, swagger-ui, ...).
    pub async fn spawn_with(tweak: impl FnOnce(&mut UsersSettings)) -> Self {
        jetshop_testkit::init_test_log();
        let server = NatsServer::start();
        let db = TestDb::fresh().await;
        let client =
            jetshop_platform::nats::connect(&NatsSettings::for_url(server.url()), "users-test")
                .await
                .unwrap();
        let mut settings = UsersSettings::for_database(db.url.clone());
        tweak(&mut settings);
        let mut app = Self {
            js: jetstream::new(client.clone()),
            rpc: RpcClient::new(client.clone(), Duration::from_secs(10), 0),
            server,
            db,
            client,
            shutdown: CancellationToken::new(),
            task: None,
        };
        app.start(settings).await;
        app
    }

    /// Start (again) on the same database and NATS server; ready once `$SRV.PING` answers.
    pub async fn start(&mut self, settings: UsersSettings) {
        self.shutdown = CancellationToken::new();
        let rt = Runtime::new(self.client.clone(), 1);
        let mut task = tokio::spawn(jetshop_users::run(settings, rt, self.shutdown.clone()));
        let client = self.client.clone();
        let ping = format!("$SRV.PING.{}", jetshop_users::SERVICE_NAME);
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                tokio::select! {
                    ended = &mut task => panic!("users stopped during start-up: {ended:?}"),
                    reply = client.request(ping.clone(), "".into()) => if reply.is_ok() { break },
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
        .await;
        assert!(ready.is_ok(), "users did not answer $SRV.PING within 30s");
        self.task = Some(task);
    }

    /// Stop the service and wait for it to drain.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    pub fn settings(&self) -> UsersSettings {
        UsersSettings::for_database(self.db.url.clone())
    }

    /// Call an endpoint with a correlation id.
    pub async fn call<R: Rpc>(&self, req: &R) -> Result<R::Reply, CallError> {
        self.rpc
            .call(req, &MessageMeta::correlated("test-correlation"))
            .await
    }

    /// Call an endpoint that must fail, and return its error.
    pub async fn refused<R: Rpc>(&self, req: &R) -> RpcError
    where
        R::Reply: std::fmt::Debug,
    {
        match self.call(req).await {
            Err(CallError::Remote(e)) => e,
            other => panic!("expected an error reply to {}, got {other:?}", R::TYPE),
        }
    }

    pub async fn register(&self, email: &str) -> jetshop_contracts::users::User {
        self.call(&RegisterUser {
            email: email.into(),
            password: PASSWORD.into(),
            display_name: None,
        })
        .await
        .unwrap()
    }

    /// A second connection to the service's database, for the admin API.
    pub async fn admin_db(&self) -> sea_orm::DatabaseConnection {
        jetshop_users::admin::connect_and_migrate(&self.db.url)
            .await
            .unwrap()
    }

    /// Wait until `stream` holds at least `n` messages, then return them all.
    pub async fn stream_messages(&self, stream: &str, n: u64) -> Vec<StreamMessage> {
        jetshop_testkit::stream_messages(&self.js, stream, n).await
    }

    /// Messages currently in `stream` (no waiting).
    pub async fn stream_count(&self, stream: &str) -> u64 {
        jetshop_testkit::stream_count(&self.js, stream).await
    }
}

/// Assert a bad_request whose details name `field`.
pub fn assert_bad_field(e: &RpcError, field: &str, what: &str) {
    assert_eq!(e.code, ErrorCode::BadRequest, "{what}: {e:?}");
    assert_eq!(
        e.details.as_ref().and_then(|d| d["field"].as_str()),
        Some(field),
        "{what}: {e:?}"
    );
}

/// A hex digest-looking hash for codes and tokens.
pub fn fake_hash() -> String {
    format!("{:064x}", rand_u128())
}

fn rand_u128() -> u128 {
    uuid::Uuid::new_v4().as_u128()
}
