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
use jetshop_platform::{outbox::Relay, runtime::Runtime};
use tokio_util::sync::CancellationToken;

pub use error::Error;
pub use settings::CatalogSettings;

/// Name under which the catalog registers as a micro service.
pub const SERVICE_NAME: &str = "catalog";

/// Run the catalog until `shutdown`: migrate, provision streams, serve RPC,
/// consume commands and relay the outbox. Returns after draining.
pub async fn run(
    settings: CatalogSettings,
    rt: Runtime,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    settings.consumer.validate()?;
    let db = jetshop_platform::db::connect_with(&settings.database_url, &settings.db).await?;
    storage::migrate(&db).await?;
    rt.provision(&[
        streams::catalog_events(),
        streams::catalog_commands(),
        streams::dlq(),
    ])
    .await?;
    rt.health.add_db("catalog-db", db.clone()).await;
    rt.health.add_nats("catalog-nats", rt.nats.clone()).await;

    let relay = Relay::new(db.clone(), rt.jetstream(), SERVICE_NAME);
    let outbox = relay.notifier();
    // The relay stops after the consumer, so it publishes the consumer's last commits.
    let relay_stop = CancellationToken::new();
    let relay_task = tokio::spawn(relay.run(relay_stop.clone()));

    let cache = cache::ProductCache::new(settings.cache_capacity, settings.cache_ttl);
    let follower = tokio::spawn(
        cache
            .clone()
            .follow_events(rt.nats.clone(), shutdown.child_token()),
    );
    let rpc = handlers::rpc::start(&rt.nats, db.clone(), cache.clone()).await?;
    let consumer = tokio::spawn(handlers::commands::run(
        rt.jetstream(),
        db.clone(),
        outbox,
        cache,
        settings.consumer.clone(),
        shutdown.child_token(),
    ));
    rt.health.started(SERVICE_NAME).await;
    tracing::info!(database = %jetshop_platform::config::redact_url(&settings.database_url), "catalog service running");

    shutdown.cancelled().await;
    rpc.stop().await;
    let consumed = consumer.await;
    relay_stop.cancel();
    let _ = relay_task.await;
    let _ = follower.await;
    db.close().await.ok();
    match consumed {
        Ok(result) => result.map_err(Error::from),
        Err(join) => Err(Error::Internal(format!(
            "command consumer panicked: {join}"
        ))),
    }
}
