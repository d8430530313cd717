//! The catalog bounded context: products, prices and stock.
//!
//! It owns its database and talks to the world only over NATS:
//! commands arrive on `CATALOG_COMMANDS` ([`handlers::commands`]), facts
//! leave through the outbox to `CATALOG_EVENTS`, and the rare synchronous
//! read is served as the `catalog` micro service ([`handlers::rpc`]).
//!
//! - [`domain`]: validated value types and the rules of a product.
//! - [`storage`]: SeaORM entities, migrations and queries.
//! - [`handlers`]: the NATS edges.
//! - [`cache`]: the read cache of `get`, kept fresh by commits and events.
//! - [`demo`]: a small demo catalog for `jetshop up --seed-demo`.

pub mod cache;
pub mod demo;
pub mod domain;
pub mod error;
pub mod handlers;
pub mod settings;
pub mod storage;

use jetshop_contracts::streams;
use jetshop_platform::{
    host::{Database, ServiceHost},
    runtime::Runtime,
};
use tokio_util::sync::CancellationToken;

pub use error::Error;
pub use settings::CatalogSettings;

/// Name under which the catalog registers as a micro service.
pub const SERVICE_NAME: &str = "catalog";

/// Run the catalog until `shutdown`: the platform's service lifecycle
/// (database, streams, health, relay, ordered drain) around its RPC
/// endpoints, its command consumer and its cache follower.
pub async fn run(
    settings: CatalogSettings,
    rt: Runtime,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    settings.consumer.validate()?;
    // HELP text needs the recorder: install it first (idempotent).
    jetshop_platform::metrics::install();
    cache::describe();
    let mut host = ServiceHost::<Error>::start::<storage::migrations::Migrator>(
        SERVICE_NAME,
        rt,
        Database {
            url: &settings.database_url,
            settings: &settings.db,
        },
        &[
            streams::catalog_events(),
            streams::catalog_commands(),
            streams::dlq(),
        ],
        shutdown,
    )
    .await?;
    let cache = cache::ProductCache::new(settings.cache_capacity, settings.cache_ttl);
    let nats = host.nats().clone();
    host.background("cache-follower", {
        let cache = cache.clone();
        move |stop| cache.follow_events(nats, stop)
    });
    host.rpc(handlers::rpc::start(host.nats(), host.db().clone(), cache.clone()).await?);
    let (js, db, outbox) = (host.jetstream(), host.db().clone(), host.outbox());
    host.consumer("catalog-commands", move |stop| {
        handlers::commands::run(js, db, outbox, cache, settings.consumer, stop)
    });
    host.serve().await
}
