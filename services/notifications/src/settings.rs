//! The notifications service's settings: its database, where mail goes
//! (an SMTP server, or `.eml` files when none is configured), and how
//! webhooks are called.
//!
//! # The SMTP URL
//!
//! `--smtp-url` (`SMTP_URL`) names the server, the TLS mode and the
//! credentials in one value; TLS is on unless the URL says otherwise:
//!
//! | URL | meaning |
//! |---|---|
//! | `smtp://user:pass@mail.example.com` | STARTTLS, required (port 587 by default) |
//! | `smtp://user:pass@mail.example.com:2587?tls=opportunistic` | STARTTLS when the server offers it, plain text otherwise |
//! | `smtps://user:pass@mail.example.com` | implicit TLS from the first byte (port 465 by default) |
//! | `smtp://127.0.0.1:2525?tls=none` | plain text, for a local test server (Mailpit, aiosmtpd) |
//!
//! User and password are percent-decoded (`%40` for `@`). Credentials over
//! `tls=none` or `tls=opportunistic` are refused unless the host is loopback:
//! a password must never cross a network in clear. Without `--smtp-url`
//! every message is written to `--mail-dir` as an `.eml` file instead.

use std::{path::PathBuf, time::Duration};

use clap::Args;
use jetshop_platform::config::{ConsumerSettings, DbSettings, redact_url};

use crate::Error;

/// Settings of the notifications service.
#[derive(Args, Clone)]
pub struct NotificationsSettings {
    /// The notifications service's own database (SQLite file or PostgreSQL URL).
    #[arg(
        id = "notifications_database_url",
        long = "notifications-database-url",
        env = "NOTIFICATIONS_DATABASE_URL",
        default_value = "sqlite://data/notifications.db"
    )]
    pub database_url: String,
    /// Pool size and acquire timeout (shared by every service; set by the caller).
    #[arg(skip)]
    pub db: DbSettings,
    /// SMTP server for email: `smtp://user:pass@host:587` (STARTTLS),
    /// `smtps://user:pass@host` (implicit TLS) or `smtp://127.0.0.1:2525?tls=none`
    /// (plain, local only). Without it, mail is written to --mail-dir.
    #[arg(id = "notifications_smtp_url", long = "smtp-url", env = "SMTP_URL")]
    pub smtp_url: Option<String>,
    /// Longest time one email may take to hand to the SMTP server
    /// (connect, TLS, authentication and data together).
    #[arg(
        id = "notifications_smtp_timeout",
        long = "smtp-timeout",
        env = "SMTP_TIMEOUT",
        default_value = "30s",
        value_parser = humantime::parse_duration
    )]
    pub smtp_timeout: Duration,
    /// Where messages are written as `.eml` files when no SMTP server is configured.
    #[arg(
        id = "notifications_mail_dir",
        long = "mail-dir",
        env = "NOTIFICATIONS_MAIL_DIR",
        default_value = "data/mail"
    )]
    pub mail_dir: PathBuf,
    /// The `From` of every email (`Name <address>` or a bare address).
    #[arg(
        id = "notifications_mail_from",
        long = "mail-from",
        env = "NOTIFICATIONS_MAIL_FROM",
        default_value = "jetshop <no-reply@jetshop.local>"
    )]
    pub mail_from: String,
    /// Longest time a webhook call may take before it counts as failed (and is retried).
    #[arg(
        id = "notifications_webhook_timeout",
        long = "notifications-webhook-timeout",
        env = "NOTIFICATIONS_WEBHOOK_TIMEOUT",
        default_value = "5s",
        value_parser = humantime::parse_duration
    )]
    pub webhook_timeout: Duration,
    /// Accept `http://` webhook URLs to any host (a private network behind
    /// a proxy). Without it only `https://` is accepted, and `http://` to
    /// loopback (`localhost`, `127.0.0.1`, `[::1]`) for local development.
    #[arg(
        id = "notifications_webhook_allow_http",
        long = "notifications-webhook-allow-http",
        env = "NOTIFICATIONS_WEBHOOK_ALLOW_HTTP"
    )]
    pub webhook_allow_http: bool,
    /// Retry policy of the three consumers. Not a flag of its own: the cli
    /// fills it from the one `--consumer-*` group every service shares.
    #[arg(skip)]
    pub consumer: ConsumerSettings,
}

impl NotificationsSettings {
    /// Settings with a database URL and default everything else (no SMTP:
    /// mail goes to `data/mail`).
    pub fn for_database(url: impl Into<String>) -> Self {
        Self {
            database_url: url.into(),
            db: DbSettings::default(),
            smtp_url: None,
            smtp_timeout: Duration::from_secs(30),
            mail_dir: PathBuf::from("data/mail"),
            mail_from: "jetshop <no-reply@jetshop.local>".into(),
            webhook_timeout: Duration::from_secs(5),
            webhook_allow_http: false,
            consumer: ConsumerSettings::default(),
        }
    }

    /// Check what clap cannot: the SMTP URL, the sender, the timeouts and
    /// the consumer policy.
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(url) = &self.smtp_url {
            SmtpTarget::parse(url)?;
        }
        self.mail_from
            .parse::<lettre::message::Mailbox>()
            .map_err(|e| Error::Config(format!("--mail-from {:?}: {e}", self.mail_from)))?;
        if self.smtp_timeout < Duration::from_secs(1) {
            return Err(Error::Config("--smtp-timeout must be at least 1s".into()));
        }
        if self.webhook_timeout.is_zero() {
            return Err(Error::Config(
                "--notifications-webhook-timeout must not be zero".into(),
            ));
        }
        self.consumer.validate()?;
        Ok(())
    }
}

impl std::fmt::Debug for NotificationsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationsSettings")
            .field("database_url", &redact_url(&self.database_url))
            .field("db", &self.db)
            .field("smtp_url", &self.smtp_url.as_deref().map(redact_url))
            .field("smtp_timeout", &self.smtp_timeout)
            .field("mail_dir", &self.mail_dir)
            .field("mail_from", &self.mail_from)
            .field("webhook_timeout", &self.webhook_timeout)
            .field("webhook_allow_http", &self.webhook_allow_http)
            .field("consumer", &self.consumer)
            .finish()
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// STARTTLS, and fail when the server does not offer it.
    Required,
    /// STARTTLS when offered, plain text otherwise.
    Opportunistic,
    /// TLS from the first byte (`smtps://`).
    Implicit,
    /// Plain text (a local test server).
    None,
}

/// A parsed `--smtp-url`.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpTarget {
    /// Server host name or address.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// How the connection is secured.
    pub tls: SmtpTls,
    /// User name and password for SMTP AUTH, when given.
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for SmtpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .finish_non_exhaustive()
    }
}

impl SmtpTarget {
    /// Parse an SMTP URL (see the module docs for the scheme).
    pub fn parse(raw: &str) -> Result<Self, Error> {
        // Never echo the raw URL: it may hold a password.
        let shown = redact_url(raw);
        let bad = |why: &str| Error::Config(format!("--smtp-url {shown}: {why}"));
        let url = url::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
        let tls_param = url
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        if let Some((k, _)) = url.query_pairs().find(|(k, _)| k != "tls") {
            return Err(bad(&format!("unknown parameter {k:?} (only tls=...)")));
        }
        let (tls, default_port) = match (url.scheme(), tls_param.as_deref()) {
            ("smtp", None | Some("required")) => (SmtpTls::Required, 587),
            ("smtp", Some("opportunistic")) => (SmtpTls::Opportunistic, 587),
            ("smtp", Some("none")) => (SmtpTls::None, 25),
            ("smtps", None | Some("implicit")) => (SmtpTls::Implicit, 465),
            ("smtp" | "smtps", Some(other)) => {
                return Err(bad(&format!(
                    "tls={other} is not one of required, opportunistic, none (smtp://) or implicit (smtps://)"
                )));
            }
            (scheme, _) => {
                return Err(bad(&format!(
                    "scheme {scheme}:// is not smtp:// or smtps://"
                )));
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let credentials = match (url.username(), url.password()) {
            ("", None) => None,
            (user, Some(pass)) => Some((decode(user), decode(pass))),
            (_, None) => return Err(bad("a user name without a password")),
        };
        let target = Self {
            port: url.port().unwrap_or(default_port),
            host,
            tls,
            credentials,
        };
        if target.credentials.is_some()
            && matches!(tls, SmtpTls::None | SmtpTls::Opportunistic)
            && !is_loopback_host(&target.host)
        {
            return Err(bad(
                "credentials would be sent without TLS; use smtp:// (STARTTLS) or smtps://",
            ));
        }
        Ok(target)
    }
}

/// Whether `host` names this machine (`localhost`, 127.0.0.0/8, `::1`).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_masks_the_smtp_password_and_database_credentials() {
        let mut s = NotificationsSettings::for_database("postgres://u:dbsecret@db/notifications");
        s.smtp_url = Some("smtp://mailer:smtp-s3cret@mail.example.com:587".into());
        let text = format!("{s:?}");
        assert!(!text.contains("smtp-s3cret"), "{text}");
        assert!(!text.contains("dbsecret"), "{text}");
        assert!(text.contains("mail.example.com"), "{text}");
        let target = SmtpTarget::parse(s.smtp_url.as_deref().unwrap()).unwrap();
        assert!(!format!("{target:?}").contains("smtp-s3cret"));
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        notifications: NotificationsSettings,
    }

    #[test]
    fn flags_parse_with_their_defaults() {
        use clap::Parser;
        let s = Cli::try_parse_from(["jetshop"]).unwrap().notifications;
        assert_eq!(s.database_url, "sqlite://data/notifications.db");
        assert_eq!(s.smtp_url, None);
        assert_eq!(s.mail_dir, PathBuf::from("data/mail"));
        assert_eq!(s.mail_from, "jetshop <no-reply@jetshop.local>");
        assert_eq!(s.webhook_timeout, Duration::from_secs(5));
        assert!(!s.webhook_allow_http);
        assert_eq!(
            s.consumer.max_deliver,
            ConsumerSettings::default().max_deliver
        );
        assert!(s.validate().is_ok());

        let s = Cli::try_parse_from([
            "jetshop",
            "--smtp-url",
            "smtps://u:p@mail.example.com",
            "--notifications-webhook-timeout",
            "2s",
            "--notifications-webhook-allow-http",
            "--mail-dir",
            "/tmp/mail",
        ])
        .unwrap()
        .notifications;
        assert_eq!(s.webhook_timeout, Duration::from_secs(2));
        assert!(s.webhook_allow_http);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn smtp_urls_pick_tls_port_and_credentials() {
        let t = SmtpTarget::parse("smtp://user%40example.com:p%2Fw+d@mail.example.com").unwrap();
        assert_eq!(t.tls, SmtpTls::Required);
        assert_eq!(t.port, 587);
        assert_eq!(
            t.credentials,
            Some(("user@example.com".into(), "p/w+d".into()))
        );
        let t = SmtpTarget::parse("smtps://mail.example.com").unwrap();
        assert_eq!((t.tls, t.port), (SmtpTls::Implicit, 465));
        let t = SmtpTarget::parse("smtp://127.0.0.1:2525?tls=none").unwrap();
        assert_eq!((t.tls, t.port, t.credentials), (SmtpTls::None, 2525, None));
        let t = SmtpTarget::parse("smtp://[::1]:2525?tls=opportunistic").unwrap();
        assert_eq!((t.host.as_str(), t.tls), ("::1", SmtpTls::Opportunistic));
        // Credentials in clear only to this machine.
        assert!(SmtpTarget::parse("smtp://u:p@localhost:2525?tls=none").is_ok());
        assert!(SmtpTarget::parse("smtp://u:p@mail.example.com?tls=none").is_err());
        assert!(SmtpTarget::parse("smtp://u:p@mail.example.com?tls=opportunistic").is_err());
    }

    #[test]
    fn bad_smtp_urls_are_refused_without_echoing_the_password() {
        for url in [
            "http://u:hunter2@mail.example.com",
            "smtp://u:hunter2@mail.example.com?tls=maybe",
            "smtp://u:hunter2@mail.example.com?port=25",
            "smtps://u:hunter2@mail.example.com?tls=none",
            "smtp://user@mail.example.com",
            "not a url",
        ] {
            let err = SmtpTarget::parse(url).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn a_bad_sender_or_timeout_is_a_configuration_error() {
        let mut s = NotificationsSettings::for_database("sqlite::memory:");
        s.mail_from = "not an address".into();
        assert!(s.validate().is_err());
        let mut s = NotificationsSettings::for_database("sqlite::memory:");
        s.webhook_timeout = Duration::ZERO;
        assert!(s.validate().is_err());
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "a.localhost",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "example.com",
            "10.0.0.1",
            "localhost.example.com",
            "0.0.0.0",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
