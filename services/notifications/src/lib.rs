//! The notifications bounded context: it tells people what happened to
//! their orders and accounts, by email and, when they ask for it, by
//! signed webhook, and keeps a log of every delivery.
//!
//! It owns its database and talks to the world over NATS only:
//! - `notifications-orders` consumes `ORDERS_EVENTS` (`orders.events.confirmed`,
//!   `orders.events.cancelled`) and `notifications-users` consumes
//!   `USERS_EVENTS` (`users.events.registered`); each fact becomes one email
//!   ([`handlers::events`]).
//! - A customer with a webhook also gets a `DeliverWebhook` command per order
//!   outcome, worked off by `notifications-webhooks` on
//!   `NOTIFICATIONS_COMMANDS` ([`handlers::webhooks`], [`webhook`]).
//! - `NotificationSent` / `NotificationFailed` leave through the outbox to
//!   `NOTIFICATIONS_EVENTS`.
//! - The `notifications` micro service registers, shows and removes webhooks
//!   ([`handlers::rpc`]).
//!
//! Exactly one email per fact, even when the fact arrives twice under
//! different message ids: the delivery log is keyed by what a delivery is
//! about (`order-confirmed:<order_id>`, `order-cancelled:<order_id>`,
//! `welcome:<user_id>`), and a lease on the row lets one handler send it.
//! [`delivery`] says how, and where the one remaining gap is.
//!
//! Email goes to the SMTP server of `--smtp-url` ([`settings`] documents the
//! URL), or, without one, into `--mail-dir` as one `.eml` file per delivery.
//!
//! - [`settings`]: flags and environment.
//! - [`email`]: templates and messages; [`mailer`]: SMTP or files.
//! - [`webhook`]: URL rules, secrets, signatures, the HTTP call.
//! - [`delivery`]: the send-once protocol over the delivery log.
//! - [`storage`]: entities, migrations and queries.
//! - [`audit`]: read-only views for invariant tests.

pub mod audit;
pub mod delivery;
pub mod email;
pub mod error;
pub mod handlers;
pub mod mailer;
pub mod metrics;
pub mod settings;
pub mod storage;
pub mod webhook;

use jetshop_contracts::streams;
use jetshop_platform::{
    host::{Database, ServiceHost},
    runtime::Runtime,
};
use tokio_util::sync::CancellationToken;

pub use error::Error;
pub use settings::NotificationsSettings;

/// Name under which the service registers as a micro service.
pub const SERVICE_NAME: &str = "notifications";

/// Run the notifications service until `shutdown`: migrate, provision
/// streams, serve the webhook RPC, consume orders and users events and
/// webhook commands, and relay the outbox. Returns after draining.
pub async fn run(
    settings: NotificationsSettings,
    rt: Runtime,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    settings.validate()?;
    let mailer = mailer::Mailer::from_settings(&settings)?;
    let from = settings
        .mail_from
        .parse()
        .map_err(|e| Error::Config(format!("--mail-from: {e}")))?;
    let webhooks = webhook::WebhookClient::new(settings.webhook_timeout)?;
    // The events it consumes belong to orders and users, but this service
    // may start first: provisioning is idempotent, so it makes sure they exist.
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
            streams::users_events(),
            streams::notifications_events(),
            streams::notifications_commands(),
            streams::dlq(),
        ],
        shutdown,
    )
    .await?;
    let deps = handlers::Deps {
        db: host.db().clone(),
        outbox: host.outbox(),
        mailer,
        from,
        webhooks,
        webhook_timeout: settings.webhook_timeout,
        max_deliver: settings.consumer.max_deliver,
    };
    tracing::info!(mail = %deps.mailer.describe(), "notifications delivers mail");
    host.rpc(
        handlers::rpc::start(host.nats(), host.db().clone(), settings.webhook_allow_http).await?,
    );
    let js = host.jetstream();
    host.consumer("notifications-orders", {
        let (js, deps, consumer) = (js.clone(), deps.clone(), settings.consumer.clone());
        move |stop| handlers::events::run_orders(js, deps, consumer, stop)
    });
    host.consumer("notifications-users", {
        let (js, deps, consumer) = (js.clone(), deps.clone(), settings.consumer.clone());
        move |stop| handlers::events::run_users(js, deps, consumer, stop)
    });
    host.consumer("notifications-webhooks", move |stop| {
        handlers::webhooks::run(js, deps, settings.consumer, stop)
    });
    host.serve().await
}
