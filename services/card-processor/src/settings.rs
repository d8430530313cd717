//! The card processor's settings: where it listens, its own database, and
//! its test-mode knobs.
//!
//! Flags are those of `jetshop run card-processor` (`--http-addr`,
//! `--database-url`, ...), environment `CARD_PROCESSOR_*`; clap ids are
//! prefixed so they never clash with another part's.

use std::{net::SocketAddr, time::Duration};

use clap::Args;
use jetshop_platform::config::{DbSettings, redact_url};

use crate::Error;

/// Settings of the card processor.
#[derive(Args, Clone)]
pub struct CardProcessorSettings {
    /// Where to serve the processor's HTTP API.
    #[arg(
        id = "card_processor_http_addr",
        long = "http-addr",
        env = "CARD_PROCESSOR_HTTP_ADDR",
        default_value = "127.0.0.1:9095"
    )]
    pub http_addr: SocketAddr,
    /// The processor's own database (SQLite file or PostgreSQL URL).
    #[arg(
        id = "card_processor_database_url",
        long = "database-url",
        env = "CARD_PROCESSOR_DATABASE_URL",
        default_value = "sqlite://data/card-processor.db"
    )]
    pub database_url: String,
    /// Pool size and acquire timeout (`--db-max-connections`, ...; set by the caller).
    #[arg(skip)]
    pub db: DbSettings,
    /// How long `tok_timeout` takes to answer: longer than any caller waits
    /// (`--payments-provider-timeout`).
    #[arg(
        id = "card_processor_late_after",
        long = "late-after",
        env = "CARD_PROCESSOR_LATE_AFTER",
        default_value = "10s",
        value_parser = humantime::parse_duration
    )]
    pub late_after: Duration,
    /// How many first attempts of each order's `tok_processingError` fail
    /// (503) before it is approved.
    #[arg(
        id = "card_processor_processing_failures",
        long = "processing-failures",
        env = "CARD_PROCESSOR_PROCESSING_FAILURES",
        default_value_t = 2
    )]
    pub processing_failures: u32,
}

impl CardProcessorSettings {
    /// Settings with a database URL and default everything else.
    pub fn for_database(url: impl Into<String>) -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 9095)),
            database_url: url.into(),
            db: DbSettings::default(),
            late_after: Duration::from_secs(10),
            processing_failures: 2,
        }
    }

    /// Check what clap cannot, with one clear line per problem.
    pub fn validate(&self) -> Result<(), Error> {
        if self.late_after.is_zero() {
            return Err(Error::Config("--late-after must be more than zero".into()));
        }
        Ok(())
    }
}

impl std::fmt::Debug for CardProcessorSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardProcessorSettings")
            .field("http_addr", &self.http_addr)
            .field("database_url", &redact_url(&self.database_url))
            .field("db", &self.db)
            .field("late_after", &self.late_after)
            .field("processing_failures", &self.processing_failures)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        processor: CardProcessorSettings,
    }

    #[test]
    fn flags_parse_with_their_defaults() {
        use clap::Parser;
        let cli = Cli::try_parse_from(["card-processor"]).unwrap();
        let built = CardProcessorSettings::for_database("sqlite://data/card-processor.db");
        assert_eq!(format!("{:?}", cli.processor), format!("{built:?}"));
        let cli = Cli::try_parse_from([
            "card-processor",
            "--http-addr",
            "0.0.0.0:1",
            "--late-after",
            "3s",
        ])
        .unwrap();
        assert_eq!(cli.processor.http_addr.port(), 1);
        assert_eq!(cli.processor.late_after, Duration::from_secs(3));
    }

    #[test]
    fn debug_masks_database_credentials() {
        let s = CardProcessorSettings::for_database("postgres://cp:hunter2@db/cp");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn a_zero_late_after_is_a_configuration_error() {
        let mut s = CardProcessorSettings::for_database("sqlite::memory:");
        s.late_after = Duration::ZERO;
        assert!(s.validate().is_err());
    }
}
