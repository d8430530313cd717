//! The payments service's settings: its database and how hard it leans on
//! the card provider (timeout, retries, circuit breaker, bulkhead).
//!
//! Every flag is prefixed `--payments-` (environment `PAYMENTS_`) and has
//! an explicit clap id, so `jetshop up` can flatten these next to the other
//! services' settings without two arguments sharing an id. The consumer's
//! retry policy is not a flag here: the cli owns the one
//! `--consumer-*` group and fills [`PaymentsSettings::consumer`] itself.

use std::time::Duration;

use clap::Args;
use jetshop_platform::config::{ConsumerSettings, DbSettings, redact_url};

use crate::{Error, resilience::Policy};

/// Where the card processor listens by default (`jetshop run card-processor`).
pub const DEFAULT_PROVIDER_URL: &str = "http://127.0.0.1:9095";

/// Settings of the payments service.
#[derive(Args, Clone)]
pub struct PaymentsSettings {
    /// The payments' own database (SQLite file or PostgreSQL URL).
    #[arg(
        id = "payments_database_url",
        long = "payments-database-url",
        env = "PAYMENTS_DATABASE_URL",
        default_value = "sqlite://data/payments.db"
    )]
    pub database_url: String,
    /// The card processor's HTTP API (`jetshop run card-processor`; `jetshop
    /// up` starts one and sets this itself).
    #[arg(
        id = "payments_provider_url",
        long = "payments-provider-url",
        env = "PAYMENTS_PROVIDER_URL",
        default_value = DEFAULT_PROVIDER_URL
    )]
    pub provider_url: String,
    /// Pool size and acquire timeout (shared by every service; set by the caller).
    #[arg(skip)]
    pub db: DbSettings,
    /// Longest wait for one provider call before it counts as a timeout.
    #[arg(
        id = "payments_provider_timeout",
        long = "payments-provider-timeout",
        env = "PAYMENTS_PROVIDER_TIMEOUT",
        default_value = "2s",
        value_parser = humantime::parse_duration
    )]
    pub provider_timeout: Duration,
    /// Retries of a provider call that failed transiently or timed out
    /// (declines are never retried), within one command delivery.
    #[arg(
        id = "payments_provider_retries",
        long = "payments-provider-retries",
        env = "PAYMENTS_PROVIDER_RETRIES",
        default_value_t = 2
    )]
    pub provider_retries: u32,
    /// First delay between provider retries; doubles each time, with jitter.
    #[arg(
        id = "payments_provider_backoff",
        long = "payments-provider-backoff",
        env = "PAYMENTS_PROVIDER_BACKOFF",
        default_value = "100ms",
        value_parser = humantime::parse_duration
    )]
    pub provider_backoff: Duration,
    /// Consecutive failed provider calls that open the circuit breaker.
    #[arg(
        id = "payments_breaker_failure_threshold",
        long = "payments-breaker-failure-threshold",
        env = "PAYMENTS_BREAKER_FAILURE_THRESHOLD",
        default_value_t = 5
    )]
    pub breaker_failure_threshold: u32,
    /// How long an open breaker fails calls fast before letting one probe
    /// through. Short: a processor back after a restart is used again within
    /// a second, and one probe a second costs a dead one nothing.
    #[arg(
        id = "payments_breaker_open_duration",
        long = "payments-breaker-open-duration",
        env = "PAYMENTS_BREAKER_OPEN_DURATION",
        default_value = "1s",
        value_parser = humantime::parse_duration
    )]
    pub breaker_open_duration: Duration,
    /// Provider calls in flight at once; more wait briefly, then fail transiently.
    #[arg(
        id = "payments_bulkhead_max_concurrent",
        long = "payments-bulkhead-max-concurrent",
        env = "PAYMENTS_BULKHEAD_MAX_CONCURRENT",
        default_value_t = 16
    )]
    pub bulkhead_max_concurrent: usize,
    /// Longest wait for a free bulkhead slot before failing transiently.
    #[arg(
        id = "payments_bulkhead_max_wait",
        long = "payments-bulkhead-max-wait",
        env = "PAYMENTS_BULKHEAD_MAX_WAIT",
        default_value = "250ms",
        value_parser = humantime::parse_duration
    )]
    pub bulkhead_max_wait: Duration,
    /// Retry policy of the command consumer (filled by the cli, which owns
    /// the shared `--consumer-*` flags).
    #[arg(skip)]
    pub consumer: ConsumerSettings,
}

impl PaymentsSettings {
    /// Settings with a database URL and default everything else.
    pub fn for_database(url: impl Into<String>) -> Self {
        Self {
            database_url: url.into(),
            provider_url: DEFAULT_PROVIDER_URL.into(),
            db: DbSettings::default(),
            provider_timeout: Duration::from_secs(2),
            provider_retries: 2,
            provider_backoff: Duration::from_millis(100),
            breaker_failure_threshold: 5,
            breaker_open_duration: Duration::from_secs(1),
            bulkhead_max_concurrent: 16,
            bulkhead_max_wait: Duration::from_millis(250),
            consumer: ConsumerSettings::default(),
        }
    }

    /// Check what clap cannot, with one clear line per problem.
    pub fn validate(&self) -> Result<(), Error> {
        // Plain HTTP only: no TLS is built in (see provider::card_processor).
        if !self.provider_url.starts_with("http://") {
            return Err(Error::Config(format!(
                "--payments-provider-url must be an http:// URL, got {:?}",
                self.provider_url
            )));
        }
        if self.provider_timeout.is_zero() {
            return Err(Error::Config(
                "--payments-provider-timeout must be more than zero".into(),
            ));
        }
        if self.breaker_failure_threshold == 0 {
            return Err(Error::Config(
                "--payments-breaker-failure-threshold must be at least 1".into(),
            ));
        }
        if self.bulkhead_max_concurrent == 0 {
            return Err(Error::Config(
                "--payments-bulkhead-max-concurrent must be at least 1".into(),
            ));
        }
        self.consumer.validate()?;
        Ok(())
    }

    /// The resilience policy around provider calls.
    pub fn resilience(&self) -> Policy {
        Policy {
            timeout: self.provider_timeout,
            retries: self.provider_retries,
            backoff: self.provider_backoff,
            breaker_failure_threshold: self.breaker_failure_threshold,
            breaker_open_duration: self.breaker_open_duration,
            bulkhead_max_concurrent: self.bulkhead_max_concurrent,
            bulkhead_max_wait: self.bulkhead_max_wait,
        }
    }
}

impl std::fmt::Debug for PaymentsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentsSettings")
            .field("database_url", &redact_url(&self.database_url))
            .field("provider_url", &redact_url(&self.provider_url))
            .field("db", &self.db)
            .field("provider_timeout", &self.provider_timeout)
            .field("provider_retries", &self.provider_retries)
            .field("provider_backoff", &self.provider_backoff)
            .field("breaker_failure_threshold", &self.breaker_failure_threshold)
            .field("breaker_open_duration", &self.breaker_open_duration)
            .field("bulkhead_max_concurrent", &self.bulkhead_max_concurrent)
            .field("bulkhead_max_wait", &self.bulkhead_max_wait)
            .field("consumer", &self.consumer)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        payments: PaymentsSettings,
        // The cli flattens the shared consumer group once, next to every
        // service's settings: ours must not declare it a second time.
        #[command(flatten)]
        consumer: ConsumerSettings,
    }

    #[test]
    fn flags_parse_with_their_defaults_beside_the_shared_consumer_flags() {
        use clap::Parser;
        let cli = Cli::try_parse_from(["jetshop", "--consumer-max-deliver", "7"]).unwrap();
        let s = cli.payments;
        assert_eq!(s.database_url, "sqlite://data/payments.db");
        assert_eq!(s.provider_url, "http://127.0.0.1:9095");
        assert_eq!(s.provider_timeout, Duration::from_secs(2));
        assert_eq!(s.provider_retries, 2);
        assert_eq!(s.breaker_failure_threshold, 5);
        assert_eq!(s.breaker_open_duration, Duration::from_secs(1));
        assert_eq!(s.bulkhead_max_concurrent, 16);
        assert_eq!(cli.consumer.max_deliver, 7);
        assert!(s.validate().is_ok());
        let d = PaymentsSettings::for_database("sqlite://data/payments.db");
        assert_eq!(format!("{d:?}"), format!("{s:?}"));
    }

    #[test]
    fn flags_override_the_defaults() {
        use clap::Parser;
        let cli = Cli::try_parse_from([
            "jetshop",
            "--payments-provider-timeout",
            "500ms",
            "--payments-breaker-failure-threshold",
            "3",
            "--payments-bulkhead-max-concurrent",
            "4",
            "--payments-provider-url",
            "http://processor:9095",
        ])
        .unwrap();
        assert_eq!(cli.payments.provider_url, "http://processor:9095");
        assert_eq!(cli.payments.provider_timeout, Duration::from_millis(500));
        assert_eq!(cli.payments.breaker_failure_threshold, 3);
        assert_eq!(cli.payments.bulkhead_max_concurrent, 4);
    }

    #[test]
    fn debug_masks_database_credentials() {
        let s = PaymentsSettings::for_database("postgres://pay:hunter2@db/payments");
        let text = format!("{s:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("pay:***"), "{text}");
    }

    #[test]
    fn zero_threshold_or_bulkhead_is_a_configuration_error() {
        let mut s = PaymentsSettings::for_database("sqlite::memory:");
        s.breaker_failure_threshold = 0;
        assert!(s.validate().is_err());
        let mut s = PaymentsSettings::for_database("sqlite::memory:");
        s.bulkhead_max_concurrent = 0;
        assert!(s.validate().is_err());
        let mut s = PaymentsSettings::for_database("sqlite::memory:");
        s.provider_url = "https://processor".into();
        assert!(s.validate().is_err());
    }
}
