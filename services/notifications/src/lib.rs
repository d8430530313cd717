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
pub mod mailer;
pub mod metrics;
pub mod settings;
pub mod storage;
pub mod webhook;

pub use error::Error;
pub use settings::NotificationsSettings;

/// Name under which the service registers as a micro service.
pub const SERVICE_NAME: &str = "notifications";
