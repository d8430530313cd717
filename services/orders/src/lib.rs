//! The orders bounded context: the order aggregate and the order saga.
//!
//! An order is event-sourced: its events ([`domain::order`]) are the source
//! of truth, stored in the orders database and published through the outbox
//! to `ORDERS_EVENTS`; the `orders` table is their fold, for reads. Orders
//! also orchestrates the saga that takes an order from placed to confirmed
//! or cancelled across the catalog and payments ([`domain::saga`] holds
//! the rules, [`engine`] applies them transactionally).
//!
//! - [`handlers::commands`]: `PlaceOrder` and `CancelOrder`.
//! - [`handlers::saga_events`]: the catalog's and payments' answers.
//! - [`handlers::deadlines`]: retries, compensations and stuck sagas.
//! - [`handlers::rpc`]: `orders.rpc.order.*` and `orders.rpc.saga.*`.

pub mod domain;
pub mod engine;
pub mod error;
pub mod handlers;
pub mod metrics;
pub mod settings;
pub mod storage;

use jetshop_contracts::streams;
use jetshop_platform::{outbox::Relay, rpc::RpcClient, runtime::Runtime};
use tokio_util::sync::CancellationToken;

pub use error::Error;
pub use settings::OrdersSettings;

/// Name under which the orders service registers as a micro service.
pub const SERVICE_NAME: &str = "orders";

/// Run the orders service until `shutdown`: migrate, provision streams,
/// serve RPC, consume commands and the saga's answers, scan deadlines and
/// relay the outbox. Returns after draining.
pub async fn run(
    settings: OrdersSettings,
    rt: Runtime,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    settings.consumer.validate()?;
    let db = jetshop_platform::db::connect_with(&settings.database_url, &settings.db).await?;
    storage::migrate(&db).await?;
    // Its own streams, and those it sends commands to and hears answers
    // from: whichever service starts first creates them.
    rt.provision(&[
        streams::orders_events(),
        streams::orders_commands(),
        streams::catalog_events(),
        streams::catalog_commands(),
        streams::payments_events(),
        streams::payments_commands(),
        streams::dlq(),
    ])
    .await?;
    rt.health.add_db("orders-db", db.clone()).await;
    rt.health.add_nats("orders-nats", rt.nats.clone()).await;

    let relay = Relay::new(db.clone(), rt.jetstream(), SERVICE_NAME);
    let engine = engine::Engine::new(
        db.clone(),
        relay.notifier(),
        engine::Timing {
            step_timeout: settings.step_timeout,
            step_attempts: settings.step_attempts,
        },
    );
    // The relay stops last, so it publishes what the consumers committed.
    let relay_stop = CancellationToken::new();
    let relay_task = tokio::spawn(relay.run(relay_stop.clone()));

    let rpc = handlers::rpc::start(&rt.nats, engine.clone()).await?;
    let catalog = RpcClient::new(
        rt.nats.clone(),
        settings.catalog_timeout,
        settings.catalog_retries,
    );
    let js = rt.jetstream();
    let mut consumers = tokio::task::JoinSet::new();
    consumers.spawn(handlers::commands::run(
        js.clone(),
        engine.clone(),
        catalog,
        settings.consumer.clone(),
        shutdown.child_token(),
    ));
    consumers.spawn(handlers::saga_events::run_stock(
        js.clone(),
        engine.clone(),
        settings.consumer.clone(),
        shutdown.child_token(),
    ));
    consumers.spawn(handlers::saga_events::run_payments(
        js,
        engine.clone(),
        settings.consumer.clone(),
        shutdown.child_token(),
    ));
    let scanner = tokio::spawn(handlers::deadlines::run(
        engine,
        settings.deadline_scan,
        shutdown.child_token(),
    ));
    rt.health.started(SERVICE_NAME).await;
    tracing::info!(database = %jetshop_platform::config::redact_url(&settings.database_url), "orders service running");

    // A consumer that ends before shutdown (its stream is gone) stops the service.
    let mut result = Ok(());
    tokio::select! {
        _ = shutdown.cancelled() => {}
        Some(ended) = consumers.join_next() => {
            result = consumer_result(ended);
            // Both branches can be ready at shutdown; only an early end is news.
            if !shutdown.is_cancelled() {
                tracing::error!(error = ?result, "an orders consumer stopped on its own; shutting down");
            }
        }
    }
    shutdown.cancel();
    rpc.stop().await;
    while let Some(ended) = consumers.join_next().await {
        if result.is_ok() {
            result = consumer_result(ended);
        }
    }
    let _ = scanner.await;
    relay_stop.cancel();
    let _ = relay_task.await;
    db.close().await.ok();
    result
}

fn consumer_result(
    ended: Result<Result<(), jetshop_platform::Error>, tokio::task::JoinError>,
) -> Result<(), Error> {
    match ended {
        Ok(result) => result.map_err(Error::from),
        Err(join) => Err(Error::Corrupt(format!("consumer panicked: {join}"))),
    }
}
