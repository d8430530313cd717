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
use jetshop_platform::{
    host::{Database, ServiceHost},
    runtime::Runtime,
};
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
    let mut host = ServiceHost::<Error>::start::<storage::migrations::Migrator>(
        SERVICE_NAME,
        rt,
        Database {
            url: &settings.database_url,
            settings: &settings.db,
        },
        &[streams::users_events(), streams::dlq()],
        shutdown,
    )
    .await?;
    let ctx = handlers::Ctx {
        db: host.db().clone(),
        hasher: passwords::Hasher::new(&settings.argon2).await?,
        outbox: Some(host.outbox()),
    };
    bootstrap::run(&ctx, &settings).await?;
    host.rpc(handlers::rpc::start(host.nats(), ctx).await?);
    host.serve().await
}
