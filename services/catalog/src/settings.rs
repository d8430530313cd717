//! The catalog's settings: its database and its consumer's retry policy.

use clap::Args;
use jetshop_platform::config::{ConsumerSettings, DbSettings, redact_url};

/// Settings of the catalog service.
#[derive(Args, Clone)]
pub struct CatalogSettings {
    /// The catalog's own database (SQLite file or PostgreSQL URL).
    #[arg(
        long = "catalog-database-url",
        env = "CATALOG_DATABASE_URL",
        default_value = "sqlite://data/catalog.db"
    )]
    pub database_url: String,
    /// Pool size and acquire timeout (shared by every service; set by the caller).
    #[arg(skip)]
    pub db: DbSettings,
    /// Products kept in the read cache of `get` (0 disables it).
    #[arg(
        long = "catalog-cache-capacity",
        env = "CATALOG_CACHE_CAPACITY",
        default_value_t = 10_000
    )]
    pub cache_capacity: usize,
    /// Longest time a cached product is served without a refresh.
    #[arg(long = "catalog-cache-ttl", env = "CATALOG_CACHE_TTL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub cache_ttl: std::time::Duration,
    /// Retry policy of the command consumer.
    #[command(flatten)]
    pub consumer: ConsumerSettings,
}

impl CatalogSettings {
    /// Settings with a database URL and default everything else.
    pub fn for_database(url: impl Into<String>) -> Self {
        Self {
            database_url: url.into(),
            db: DbSettings::default(),
            cache_capacity: 10_000,
            cache_ttl: std::time::Duration::from_secs(30),
            consumer: ConsumerSettings::default(),
        }
    }
}

impl std::fmt::Debug for CatalogSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogSettings")
            .field("database_url", &redact_url(&self.database_url))
            .field("db", &self.db)
            .field("cache_capacity", &self.cache_capacity)
            .field("cache_ttl", &self.cache_ttl)
            .field("consumer", &self.consumer)
            .finish()
    }
}
