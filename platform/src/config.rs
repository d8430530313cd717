//! Settings shared by every process, as clap argument groups: each setting is
//! a flag and an environment variable with a default that works for
//! `jetshop up`. Services flatten these into their own settings.
//!
//! Secrets never reach a log line: [`redact_url`] masks URL passwords and
//! every `Debug` impl here uses it.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::Args;

use crate::Error;

/// How to reach NATS and how to shape the streams.
#[derive(Args, Clone)]
pub struct NatsSettings {
    /// NATS server URL(s), comma separated.
    #[arg(
        long = "nats-url",
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub url: String,
    /// Give up connecting at start after this long.
    #[arg(long = "nats-connect-timeout", env = "NATS_CONNECT_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// JetStream replicas per stream: 1 for one server, 3 in a cluster.
    #[arg(long = "stream-replicas", env = "JETSHOP_STREAM_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,
    /// Credentials, TLS and inbox.
    #[command(flatten)]
    pub security: NatsSecurity,
}

/// How a connection proves who it is and encrypts: an nkey, TLS with
/// optional client certificates, and the reply-subject prefix the server's
/// permissions expect. All off by default (`jetshop up` needs none);
/// `jetshop nats-config` writes what each part needs.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct NatsSecurity {
    /// File holding this part's NATS nkey seed (`SU...`), written by
    /// `jetshop nats-config`; none: connect without credentials.
    #[arg(long = "nats-nkey-file", env = "NATS_NKEY_FILE")]
    pub nkey_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust for the server's TLS certificate.
    /// Giving it, a client certificate or a `tls://` URL makes TLS required.
    #[arg(long = "nats-tls-ca", env = "NATS_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for servers that verify clients (mTLS);
    /// needs `--nats-tls-key`.
    #[arg(long = "nats-tls-cert", env = "NATS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `--nats-tls-cert`.
    #[arg(long = "nats-tls-key", env = "NATS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Prefix of this connection's reply subjects. Under per-part NATS
    /// permissions each part may read only its own, `_INBOX_<part>`.
    #[arg(
        long = "nats-inbox-prefix",
        env = "NATS_INBOX_PREFIX",
        default_value = "_INBOX"
    )]
    pub inbox_prefix: String,
}

impl Default for NatsSecurity {
    fn default() -> Self {
        Self {
            nkey_file: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            inbox_prefix: "_INBOX".into(),
        }
    }
}

impl NatsSettings {
    /// Settings for a given URL with every other value at its default.
    pub fn for_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            connect_timeout: Duration::from_secs(30),
            replicas: 1,
            security: NatsSecurity::default(),
        }
    }

    /// These settings with the credentials, certificates and inbox prefix
    /// of one part's directory as `jetshop nats-config` writes it
    /// (`<dir>/<part>.nk`, `<part>.pem`, `<part>-key.pem`, and the `ca.pem`
    /// beside `<dir>`).
    pub fn with_part_credentials(mut self, dir: &Path, part: &str) -> Self {
        self.security = NatsSecurity {
            nkey_file: Some(dir.join(format!("{part}.nk"))),
            tls_cert: Some(dir.join(format!("{part}.pem"))),
            tls_key: Some(dir.join(format!("{part}-key.pem"))),
            tls_ca: dir.parent().map(|root| root.join("ca.pem")),
            inbox_prefix: jetshop_contracts::access::inbox_prefix(part),
        };
        self
    }

    /// Whether the connection must be encrypted.
    pub fn tls_required(&self) -> bool {
        self.security.tls_ca.is_some()
            || self.security.tls_cert.is_some()
            || self.url.split(',').any(|u| u.trim().starts_with("tls://"))
    }
}

impl fmt::Debug for NatsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSettings")
            .field("url", &redact_url(&self.url))
            .field("connect_timeout", &self.connect_timeout)
            .field("replicas", &self.replicas)
            // Paths only: the seed and the key stay in their files.
            .field("security", &self.security)
            .finish()
    }
}

/// Retry policy and concurrency of a durable consumer.
#[derive(Args, Clone, Debug)]
pub struct ConsumerSettings {
    /// Deliveries before a failing message goes to the DLQ.
    #[arg(
        long = "consumer-max-deliver",
        env = "JETSHOP_CONSUMER_MAX_DELIVER",
        default_value_t = 5
    )]
    pub max_deliver: i64,
    /// Delay before each redelivery, comma separated (`1s,5s,30s`); the last repeats.
    #[arg(long = "consumer-backoff", env = "JETSHOP_CONSUMER_BACKOFF", default_value = "1s,5s,30s,2m", value_parser = humantime::parse_duration, value_delimiter = ',')]
    pub backoff: Vec<Duration>,
    /// How long a handler may hold a message before the server redelivers it
    /// (the runner sends in-progress acks well before).
    #[arg(long = "consumer-ack-wait", env = "JETSHOP_CONSUMER_ACK_WAIT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub ack_wait: Duration,
    /// Messages handled at once per consumer.
    #[arg(
        long = "consumer-concurrency",
        env = "JETSHOP_CONSUMER_CONCURRENCY",
        default_value_t = 16
    )]
    pub concurrency: usize,
    /// For consumers that keep per-key order: how long a replica that
    /// stopped pulling (dead, stalled, partitioned away) keeps its
    /// partitions before another replica takes them over.
    #[arg(long = "consumer-pin-timeout", env = "JETSHOP_CONSUMER_PIN_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub pin_timeout: Duration,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            max_deliver: 5,
            backoff: ["1s", "5s", "30s", "2m"]
                .iter()
                .map(|d| humantime::parse_duration(d).unwrap())
                .collect(),
            ack_wait: Duration::from_secs(30),
            concurrency: 16,
            pin_timeout: Duration::from_secs(5),
        }
    }
}

impl ConsumerSettings {
    /// Check the combination the server would refuse, with a clear message.
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_deliver < 1 {
            return Err(Error::Config(
                "--consumer-max-deliver must be at least 1".into(),
            ));
        }
        if self.backoff.is_empty() {
            return Err(Error::Config(
                "--consumer-backoff needs at least one delay".into(),
            ));
        }
        if self.concurrency == 0 {
            return Err(Error::Config(
                "--consumer-concurrency must be at least 1".into(),
            ));
        }
        if self.pin_timeout < Duration::from_secs(2) {
            return Err(Error::Config(
                "--consumer-pin-timeout must be at least 2s".into(),
            ));
        }
        if self.ack_wait < Duration::from_secs(1) {
            return Err(Error::Config(
                "--consumer-ack-wait must be at least 1s".into(),
            ));
        }
        Ok(())
    }

    /// The delay before delivery number `delivered + 1`, given that
    /// `delivered` deliveries (1-based) have failed.
    pub fn delay_after(&self, delivered: i64) -> Duration {
        let i = usize::try_from(delivered.max(1) - 1).unwrap_or(usize::MAX);
        *self
            .backoff
            .get(i)
            .or(self.backoff.last())
            .unwrap_or(&Duration::from_secs(1))
    }
}

/// Pool size used on PostgreSQL when `--db-max-connections` is not given.
///
/// Sized so the whole scaled deployment fits a default PostgreSQL
/// (`max_connections` = 100, of which `superuser_reserved_connections` = 3
/// are kept for superusers): six parts own a database (users, catalog,
/// orders, payments, notifications, the card processor), each run as two
/// replicas, is 6 x 2 = 12 pools; 12 x 6 = 72 connections at most, which
/// leaves 100 - 3 - 72 = 25 for migrations at start-up, `jetshop` operator
/// commands, `psql`, monitoring and test runs. With three replicas of every
/// part (18 pools) set `--db-max-connections 5` (90), or raise the server's
/// `max_connections`.
pub const POSTGRES_DEFAULT_MAX_CONNECTIONS: u32 = 6;

/// Pool size used on SQLite when `--db-max-connections` is not given: one
/// writer at a time anyway (WAL), readers beside it.
pub const SQLITE_DEFAULT_MAX_CONNECTIONS: u32 = 8;

/// How each service's database pool is shaped. One setting for every
/// service of a process (under `jetshop up` each service still gets a pool
/// of its own of this size).
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct DbSettings {
    /// Most connections one service's pool opens (default: 6 on PostgreSQL,
    /// so 6 parts x 2 replicas fit a default PostgreSQL's 100 connections;
    /// 8 on SQLite).
    #[arg(long = "db-max-connections", env = "JETSHOP_DB_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_connections: Option<u32>,
    /// How long a query waits for a pooled connection (or a new one to
    /// open) before it fails; the failure is transient, so a consumer
    /// retries the message with backoff.
    #[arg(long = "db-acquire-timeout", env = "JETSHOP_DB_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub acquire_timeout: Duration,
}

impl Default for DbSettings {
    fn default() -> Self {
        Self {
            max_connections: None,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

impl DbSettings {
    /// The pool size for a SQLite or a PostgreSQL database.
    pub fn max_connections_for(&self, is_sqlite: bool) -> u32 {
        self.max_connections.unwrap_or(if is_sqlite {
            SQLITE_DEFAULT_MAX_CONNECTIONS
        } else {
            POSTGRES_DEFAULT_MAX_CONNECTIONS
        })
    }

    /// Check what clap cannot.
    pub fn validate(&self) -> Result<(), Error> {
        if self.acquire_timeout < Duration::from_millis(100) {
            return Err(Error::Config(
                "--db-acquire-timeout must be at least 100ms".into(),
            ));
        }
        Ok(())
    }
}

/// Log output format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    #[default]
    Pretty,
    /// One JSON object per line with trace and correlation ids.
    Json,
}

/// Logging and tracing.
#[derive(Args, Clone, Debug)]
pub struct TelemetrySettings {
    /// Log format.
    #[arg(long = "log-format", env = "JETSHOP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// Log filter in `tracing` EnvFilter syntax.
    #[arg(
        long = "log",
        env = "RUST_LOG",
        default_value = "info,sqlx=warn,sea_orm=warn,async_nats=warn"
    )]
    pub log_filter: String,
    /// OTLP endpoint; tracing export is on when set (`http://127.0.0.1:4318` for OTLP/HTTP, `:4317` for gRPC).
    #[arg(long = "otlp-endpoint", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// OTLP protocol: `http/protobuf` or `grpc`.
    #[arg(
        long = "otlp-protocol",
        env = "OTEL_EXPORTER_OTLP_PROTOCOL",
        default_value = "http/protobuf"
    )]
    pub otlp_protocol: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Pretty,
            log_filter: "info".into(),
            otlp_endpoint: None,
            otlp_protocol: "http/protobuf".into(),
        }
    }
}

/// A URL with any password replaced by `***`, for logs.
pub fn redact_url(url: &str) -> String {
    // scheme://user:password@host/... ; only the part between ':' and '@'
    // after the scheme is secret.
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_owned()
            };
            format!("{}://{}@{}", &url[..scheme_end], masked, &rest[at + 1..])
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/catalog"),
            "postgres://app:***@db:5432/catalog"
        );
        assert_eq!(redact_url("nats://token@h:4222"), "nats://***@h:4222");
        assert_eq!(
            redact_url("sqlite://data/catalog.db?mode=rwc"),
            "sqlite://data/catalog.db?mode=rwc"
        );
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
    }

    #[test]
    fn tls_is_required_by_a_ca_a_client_certificate_or_a_tls_url() {
        let plain = NatsSettings::for_url("nats://a:4222");
        assert!(!plain.tls_required());
        assert!(NatsSettings::for_url("nats://a:4222, tls://b:4222").tls_required());
        let part = plain.with_part_credentials(Path::new("/sec/payments"), "payments");
        assert!(part.tls_required());
        let security = &part.security;
        assert_eq!(security.tls_ca.as_deref(), Some(Path::new("/sec/ca.pem")));
        assert_eq!(
            security.nkey_file.as_deref(),
            Some(Path::new("/sec/payments/payments.nk"))
        );
        assert_eq!(security.inbox_prefix, "_INBOX_payments");
        // Paths are logged, never what the files hold.
        let logged = format!("{part:?}");
        assert!(logged.contains("payments.nk") && logged.contains("_INBOX_payments"));
    }

    #[test]
    fn backoff_repeats_its_last_step() {
        let s = ConsumerSettings {
            backoff: vec![Duration::from_millis(100), Duration::from_millis(300)],
            ..Default::default()
        };
        assert_eq!(s.delay_after(1), Duration::from_millis(100));
        assert_eq!(s.delay_after(2), Duration::from_millis(300));
        assert_eq!(s.delay_after(7), Duration::from_millis(300));
    }

    #[test]
    fn the_default_postgres_pools_of_a_scaled_deployment_fit_a_default_server() {
        let parts_with_a_database = 6;
        let replicas = 2;
        let reserved_for_superusers = 3;
        let pools = parts_with_a_database * replicas;
        let used = pools * DbSettings::default().max_connections_for(false);
        assert!(used + reserved_for_superusers + 20 <= 100, "{used}");
        assert_eq!(DbSettings::default().max_connections_for(true), 8);
        let set = DbSettings {
            max_connections: Some(3),
            ..Default::default()
        };
        assert_eq!(set.max_connections_for(false), 3);
        assert_eq!(set.max_connections_for(true), 3);
    }

    #[test]
    fn invalid_consumer_settings_are_refused() {
        let s = ConsumerSettings {
            max_deliver: 0,
            ..Default::default()
        };
        assert!(s.validate().is_err());
        let s = ConsumerSettings {
            backoff: vec![],
            ..Default::default()
        };
        assert!(s.validate().is_err());
    }
}
