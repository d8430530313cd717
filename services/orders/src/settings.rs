//! The orders service's settings: its database, the saga's deadlines and
//! the catalog reads at placement.

use std::time::Duration;

use clap::Args;
use jetshop_platform::config::{ConsumerSettings, DbSettings, redact_url};

/// Settings of the orders service.
#[derive(Args, Clone)]
pub struct OrdersSettings {
    /// The orders' own database (SQLite file or PostgreSQL URL).
    #[arg(
        id = "orders_database_url",
        long = "orders-database-url",
        env = "ORDERS_DATABASE_URL",
        default_value = "sqlite://data/orders.db"
    )]
    pub database_url: String,
    /// Pool size and acquire timeout (shared by every service; set by the caller).
    #[arg(skip)]
    pub db: DbSettings,
    /// How long a saga step's first send waits for its answer before it is
    /// sent again; each resend waits twice as long, up to `--orders-step-timeout-max`.
    #[arg(id = "orders_step_timeout", long = "orders-step-timeout", env = "ORDERS_STEP_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub step_timeout: Duration,
    /// The longest any one send of a step waits.
    #[arg(id = "orders_step_timeout_max", long = "orders-step-timeout-max", env = "ORDERS_STEP_TIMEOUT_MAX", default_value = "5m", value_parser = humantime::parse_duration)]
    pub step_timeout_max: Duration,
    /// Sends of a step (the first and its retries) before the saga
    /// compensates, or, for a compensation, parks as `stuck`. With the
    /// default timeouts, 6 sends ride out an outage of about 17 minutes.
    #[arg(
        id = "orders_step_attempts",
        long = "orders-step-attempts",
        env = "ORDERS_STEP_ATTEMPTS",
        default_value_t = 6,
        value_parser = clap::value_parser!(i32).range(1..=100)
    )]
    pub step_attempts: i32,
    /// How often overdue saga steps are looked for.
    #[arg(id = "orders_deadline_scan", long = "orders-deadline-scan", env = "ORDERS_DEADLINE_SCAN", default_value = "1s", value_parser = humantime::parse_duration)]
    pub deadline_scan: Duration,
    /// Per-attempt timeout of the catalog price reads at placement.
    #[arg(id = "orders_catalog_timeout", long = "orders-catalog-timeout", env = "ORDERS_CATALOG_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub catalog_timeout: Duration,
    /// Retries of a catalog price read that timed out or found no responder.
    #[arg(
        id = "orders_catalog_retries",
        long = "orders-catalog-retries",
        env = "ORDERS_CATALOG_RETRIES",
        default_value_t = 2
    )]
    pub catalog_retries: u32,
    /// Retry policy of the consumers (shared by every service; set by the caller).
    #[arg(skip)]
    pub consumer: ConsumerSettings,
}

impl OrdersSettings {
    /// Settings with a database URL and default everything else.
    pub fn for_database(url: impl Into<String>) -> Self {
        Self {
            database_url: url.into(),
            db: DbSettings::default(),
            step_timeout: Duration::from_secs(30),
            step_timeout_max: Duration::from_secs(300),
            step_attempts: 6,
            deadline_scan: Duration::from_secs(1),
            catalog_timeout: Duration::from_secs(2),
            catalog_retries: 2,
            consumer: ConsumerSettings::default(),
        }
    }
}

impl std::fmt::Debug for OrdersSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrdersSettings")
            .field("database_url", &redact_url(&self.database_url))
            .field("db", &self.db)
            .field("step_timeout", &self.step_timeout)
            .field("step_timeout_max", &self.step_timeout_max)
            .field("step_attempts", &self.step_attempts)
            .field("deadline_scan", &self.deadline_scan)
            .field("catalog_timeout", &self.catalog_timeout)
            .field("catalog_retries", &self.catalog_retries)
            .field("consumer", &self.consumer)
            .finish()
    }
}
