//! The payments bounded context: one payment intent per order, a card
//! provider behind timeouts, retries, a circuit breaker and a bulkhead,
//! and a double-entry ledger of every money movement.
//!
//! It owns its database and talks to the world only over NATS: the order
//! saga's commands (authorize, capture, void, refund) arrive on
//! `PAYMENTS_COMMANDS` ([`handlers::commands`]) and each is answered by an
//! event on `PAYMENTS_EVENTS`, written through the outbox in the same
//! transaction as the intent's change and its ledger postings. Every
//! operation is idempotent per order, and the provider is called with an
//! idempotency key per payment and operation, so no redelivery, retry,
//! restart or crash charges a card twice.
//!
//! - [`domain`]: the intent's states and rules, pure.
//! - [`ledger`]: the chart of accounts and each movement's postings.
//! - [`provider`]: the provider adapter trait and its implementation over the
//!   card processor's HTTP API.
//! - [`resilience`]: timeout, retries, circuit breaker and bulkhead around a provider.
//! - [`storage`]: SeaORM entities, migrations and queries.
//! - [`handlers`]: the command consumer.
//! - [`audit`]: intent summaries and the trial balance, for tests and operators.
//!
//! Start it with [`run`] (the card processor at `--payments-provider-url`,
//! as under `jetshop up`), or [`run_with_provider`] / [`run_with_resilient`]
//! to keep a handle on the provider or its circuit breaker (tests, drills).
//! The processor is a separate component (`jetshop-card-processor`) with
//! its own store: payments keeps nothing about it in memory, so any number
//! of payments replicas, and their restarts, see the same authorizations.

pub mod audit;
pub mod domain;
pub mod error;
pub mod handlers;
pub mod ledger;
pub mod metrics;
pub mod provider;
pub mod resilience;
pub mod settings;
pub mod storage;

use std::sync::Arc;

use jetshop_contracts::streams;
use jetshop_platform::{
    host::{Database, ServiceHost},
    rpc::RpcService,
    runtime::Runtime,
};
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

pub use error::Error;
pub use provider::{CardProcessorClient, PaymentProvider};
pub use resilience::{BreakerState, ResilientProvider};
pub use settings::PaymentsSettings;

/// Name of the payments service (outbox relay, logs).
pub const SERVICE_NAME: &str = "payments";

/// Connect to the payments database (default pool) and bring its schema up to date.
pub async fn connect(url: &str) -> Result<DatabaseConnection, Error> {
    connect_with(url, &jetshop_platform::config::DbSettings::default()).await
}

/// Connect to the payments database with this pool and bring its schema up to date.
pub async fn connect_with(
    url: &str,
    pool: &jetshop_platform::config::DbSettings,
) -> Result<DatabaseConnection, Error> {
    let db = jetshop_platform::db::connect_with(url, pool).await?;
    storage::migrate(&db).await?;
    Ok(db)
}

/// Run the payments service with the card processor at
/// `settings.provider_url` until `shutdown`. Returns after draining.
pub async fn run(
    settings: PaymentsSettings,
    rt: Runtime,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    settings.validate()?;
    let provider = Arc::new(CardProcessorClient::new(
        &settings.provider_url,
        settings.provider_timeout,
    )?);
    tracing::info!(url = %provider.base_url(), "payments calls the card processor over HTTP");
    run_with_provider(settings, rt, provider, shutdown).await
}

/// Run the payments service with `provider`, guarded by the settings'
/// resilience policy, until `shutdown`.
pub async fn run_with_provider(
    settings: PaymentsSettings,
    rt: Runtime,
    provider: Arc<dyn PaymentProvider>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let guarded = Arc::new(ResilientProvider::new(provider, settings.resilience()));
    run_with_resilient(settings, rt, guarded, shutdown).await
}

/// Run the payments service with an already guarded provider, so the
/// caller can watch its circuit breaker, until `shutdown`: migrate,
/// provision the streams, consume commands and relay the outbox.
pub async fn run_with_resilient(
    settings: PaymentsSettings,
    rt: Runtime,
    provider: Arc<ResilientProvider>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    settings.validate()?;
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
            streams::payments_events(),
            streams::payments_commands(),
            streams::dlq(),
        ],
        shutdown,
    )
    .await?;
    tracing::info!(settings = ?settings, "payments settings");
    // No endpoints yet, but registered all the same: `nats micro ls` and
    // `$SRV.PING` then count every payments instance like the others'.
    host.rpc(
        RpcService::start(
            host.nats(),
            SERVICE_NAME,
            env!("CARGO_PKG_VERSION"),
            "Payments of jetshop: intents, ledger and the card processor adapter",
        )
        .await?,
    );
    let (js, db, outbox) = (host.jetstream(), host.db().clone(), host.outbox());
    host.consumer("payments-commands", move |stop| {
        handlers::commands::run(js, db, outbox, provider, settings.consumer, stop)
    });
    host.serve().await
}
