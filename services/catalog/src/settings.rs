//! The catalog's settings: its database and its consumer's retry policy.

use clap::Args;
use jetshop_platform::config::{ConsumerSettings, redact_url};

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
    /// Retry policy of the command consumer.
    #[command(flatten)]
    pub consumer: ConsumerSettings,
}

impl CatalogSettings {
    /// Settings with a database URL and default everything else.
    pub fn for_database(url: impl Into<String>) -> Self {
        Self {
            database_url: url.into(),
            consumer: ConsumerSettings::default(),
        }
    }
}

impl std::fmt::Debug for CatalogSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogSettings")
            .field("database_url", &redact_url(&self.database_url))
            .field("consumer", &self.consumer)
            .finish()
    }
}
