//! The users bounded context: accounts, credentials, profiles, OAuth
//! clients, and the OAuth grants every gateway replica shares.
//!
//! It owns its database and talks to the world only over NATS: every
//! request is an RPC on the `users` micro service ([`handlers::rpc`]), and
//! facts (`users.events.registered`, `profile-changed`) leave through the
//! outbox to `USERS_EVENTS`. Passwords and client secrets are kept as
//! argon2id hashes ([`passwords`]); codes and refresh tokens arrive already
//! hashed by the gateway.
//!
//! - [`domain`]: validated value types (email, password policy, names, roles).
//! - [`storage`]: SeaORM entities, migrations and queries.
//! - [`handlers`]: the RPC endpoints and the operations behind them.
//! - [`admin`]: what the CLI calls to create admins and OAuth clients.
//! - [`bootstrap`]: the admin and `swagger-ui` client made on first start.

pub mod admin;
pub mod bootstrap;
pub mod domain;
pub mod error;
pub mod handlers;
pub mod passwords;
pub mod settings;
pub mod storage;

use jetshop_contracts::streams;
use jetshop_platform::{outbox::Relay, runtime::Runtime};
use tokio_util::sync::CancellationToken;

pub use error::Error;
pub use settings::UsersSettings;

/// Name under which the service registers as a micro service.
pub const SERVICE_NAME: &str = "users";

/// Run the users service until `shutdown`: migrate, provision streams,
/// bootstrap, serve RPC and relay the outbox. Returns after draining.
pub async fn run(
    settings: UsersSettings,
    rt: Runtime,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    settings.validate()?;
    let db = jetshop_platform::db::connect_with(&settings.database_url, &settings.db).await?;
    storage::migrate(&db).await?;
    rt.provision(&[streams::users_events(), streams::dlq()])
        .await?;
    rt.health.add_db("users-db", db.clone()).await;
    rt.health.add_nats("users-nats", rt.nats.clone()).await;

    let relay = Relay::new(db.clone(), rt.jetstream(), SERVICE_NAME);
    let ctx = handlers::Ctx {
        db: db.clone(),
        hasher: passwords::Hasher::new(&settings.argon2).await?,
        outbox: Some(relay.notifier()),
    };
    // Before the relay starts: its first pass publishes what this wrote.
    bootstrap::run(&ctx, &settings).await?;
    // The relay stops after the RPC endpoints, so it publishes their last commits.
    let relay_stop = CancellationToken::new();
    let relay_task = tokio::spawn(relay.run(relay_stop.clone()));

    let served = handlers::rpc::start(&rt.nats, ctx).await;
    let result = match served {
        Ok(rpc) => {
            rt.health.started(SERVICE_NAME).await;
            tracing::info!(database = %jetshop_platform::config::redact_url(&settings.database_url), "users service running");
            shutdown.cancelled().await;
            rpc.stop().await;
            Ok(())
        }
        Err(e) => Err(e),
    };
    relay_stop.cancel();
    let _ = relay_task.await;
    db.close().await.ok();
    result
}
