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
use jetshop_platform::{
    host::{Database, ServiceHost},
    rpc::RpcClient,
    runtime::Runtime,
};
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
    // Its own streams, and those it sends commands to and hears answers
    // from: whichever service starts first creates them.
    // HELP text needs the recorder: install it first (idempotent).
    jetshop_platform::metrics::install();
    metrics::describe();
    let mut host = ServiceHost::<Error>::start::<storage::migrations::Migrator>(
        SERVICE_NAME,
        rt,
        Database {
            url: &settings.database_url,
            settings: &settings.db,
        },
        &[
            streams::orders_events(),
            streams::orders_commands(),
            streams::catalog_events(),
            streams::catalog_commands(),
            streams::payments_events(),
            streams::payments_commands(),
            streams::dlq(),
        ],
        shutdown,
    )
    .await?;
    let engine = engine::Engine::new(
        host.db().clone(),
        host.outbox(),
        engine::Timing {
            step_timeout: settings.step_timeout,
            step_timeout_max: settings.step_timeout_max,
            step_attempts: settings.step_attempts,
        },
    );
    host.rpc(handlers::rpc::start(host.nats(), engine.clone()).await?);
    let catalog = RpcClient::new(
        host.nats().clone(),
        settings.catalog_timeout,
        settings.catalog_retries,
    );
    let js = host.jetstream();
    host.consumer("orders-commands", {
        let (js, engine, consumer) = (js.clone(), engine.clone(), settings.consumer.clone());
        move |stop| handlers::commands::run(js, engine, catalog, consumer, stop)
    });
    host.consumer("orders-saga-stock", {
        let (js, engine, consumer) = (js.clone(), engine.clone(), settings.consumer.clone());
        move |stop| handlers::saga_events::run_stock(js, engine, consumer, stop)
    });
    host.consumer("orders-saga-payments", {
        let (engine, consumer) = (engine.clone(), settings.consumer.clone());
        move |stop| handlers::saga_events::run_payments(js, engine, consumer, stop)
    });
    host.background("deadline-scan", move |stop| {
        handlers::deadlines::run(engine, settings.deadline_scan, stop)
    });
    host.serve().await
}
