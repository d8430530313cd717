//! A card processor in test mode, outside the shop: what a real processor
//! (Stripe, Adyen, ...) is to payments, with the answers chosen by test card
//! tokens (`tok_visa`, `tok_chargeDeclined`, ... see [`domain`]).
//!
//! Why a separate component and not an object inside payments: a processor
//! keeps the authorizations, so every payments replica, and every payments
//! restart, must see the same ones. An in-memory simulator inside each
//! payments process could not: a capture taken by another replica found no
//! authorization and a good order was cancelled. This one has its own
//! durable store (SQLite by default, PostgreSQL by URL) and is reached only
//! over HTTP ([`jetshop_contracts::card_processor`]), so payments talks to
//! it exactly as it would to a real one, through its timeout, retries,
//! circuit breaker and bulkhead.
//!
//! - [`domain`]: the payment's states, the card tokens and each operation's
//!   decision, pure.
//! - [`processor`]: one request, one transaction (log, outage, idempotency,
//!   effect, stored answer), run again on conflicts.
//! - [`storage`]: SeaORM entities, migrations and queries.
//! - [`api`]: the Poem routes, and the one mapping of failures to HTTP.
//! - [`settings`]: flags and environment.
//!
//! Start it with [`run`] (binds `--http-addr`) or [`serve`] (a listener the
//! caller bound, e.g. on port 0 under `jetshop up` and in tests). Nothing is
//! kept in memory between requests: any number of instances may share one
//! database, and a restart loses nothing.

pub mod api;
pub mod domain;
pub mod error;
pub mod processor;
pub mod settings;
pub mod storage;

use std::time::Duration;

use jetshop_platform::config::DbSettings;
use poem::{Server, listener::TcpAcceptor};
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::Error;
pub use processor::Processor;
pub use settings::CardProcessorSettings;

/// Name of the card processor (logs, `jetshop up`'s parts).
pub const SERVICE_NAME: &str = "card-processor";

/// How long open connections get to finish at shutdown.
const GRACEFUL_SHUTDOWN: Duration = Duration::from_secs(5);

/// Connect to the processor's database with the pool `db` says and bring
/// its schema up to date.
pub async fn connect(url: &str, db: &DbSettings) -> Result<DatabaseConnection, Error> {
    let db = jetshop_platform::db::connect_with(url, db).await?;
    storage::migrate(&db).await?;
    Ok(db)
}

/// Bind `settings.http_addr` and serve until `shutdown`.
pub async fn run(
    settings: CardProcessorSettings,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let addr = settings.http_addr;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    serve(settings, listener, shutdown).await
}

/// Serve the processor's API on `listener` until `shutdown` (its
/// `http_addr` is ignored: the listener is already bound). Returns after
/// the open requests ended.
pub async fn serve(
    settings: CardProcessorSettings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    settings.validate()?;
    let local = listener.local_addr().map_err(Error::Serve)?;
    let db = connect(&settings.database_url, &settings.db).await?;
    let processor = Processor::new(
        db.clone(),
        settings.late_after,
        settings.processing_failures,
        shutdown.clone(),
    );
    tracing::info!(addr = %local, settings = ?settings, "card processor listening (test mode)");
    let acceptor = TcpAcceptor::from_tokio(listener).map_err(Error::Serve)?;
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(
            api::app(processor),
            shutdown.cancelled_owned(),
            Some(GRACEFUL_SHUTDOWN),
        )
        .await
        .map_err(Error::Serve)?;
    db.close().await.ok();
    tracing::info!("card processor stopped");
    Ok(())
}
