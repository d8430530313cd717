//! The users service's settings: its database, the accounts and clients it
//! creates on first start, and the cost of its password hashes.

use clap::Args;
use jetshop_platform::config::{DbSettings, redact_url};

use crate::Error;

/// Settings of the users service.
#[derive(Args, Clone)]
pub struct UsersSettings {
    /// The users' own database (SQLite file or PostgreSQL URL).
    #[arg(
        id = "users_database_url",
        long = "users-database-url",
        env = "USERS_DATABASE_URL",
        default_value = "sqlite://data/users.db"
    )]
    pub database_url: String,
    /// Pool size and acquire timeout (shared by every service; set by the caller).
    #[arg(skip)]
    pub db: DbSettings,
    /// Email of an admin account created on start when it does not exist yet.
    #[arg(long = "admin-email", env = "JETSHOP_ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    /// Password of that admin account (a secret: never printed).
    #[arg(long = "admin-password", env = "JETSHOP_ADMIN_PASSWORD")]
    pub admin_password: Option<String>,
    /// Redirect URIs of the public `swagger-ui` OAuth client, comma separated;
    /// when given, the client is created (or its redirect URIs updated) on start.
    #[arg(
        long = "swagger-ui-redirect-uri",
        env = "JETSHOP_SWAGGER_UI_REDIRECT_URI",
        value_delimiter = ','
    )]
    pub swagger_ui_redirect_uris: Vec<String>,
    /// Cost of the argon2id password hashes.
    #[command(flatten)]
    pub argon2: Argon2Settings,
}

impl UsersSettings {
    /// Settings with a database URL and default everything else.
    pub fn for_database(url: impl Into<String>) -> Self {
        Self {
            database_url: url.into(),
            db: DbSettings::default(),
            admin_email: None,
            admin_password: None,
            swagger_ui_redirect_uris: Vec::new(),
            argon2: Argon2Settings::default(),
        }
    }

    /// Check what clap cannot: the bootstrap admin needs both halves.
    pub fn validate(&self) -> Result<(), Error> {
        match (&self.admin_email, &self.admin_password) {
            (Some(_), None) => Err(Error::Config(
                "--admin-email is set but --admin-password (JETSHOP_ADMIN_PASSWORD) is not".into(),
            )),
            (None, Some(_)) => Err(Error::Config(
                "--admin-password is set but --admin-email (JETSHOP_ADMIN_EMAIL) is not".into(),
            )),
            _ => Ok(()),
        }?;
        if self
            .swagger_ui_redirect_uris
            .iter()
            .any(|u| u.trim().is_empty())
        {
            return Err(Error::Config(
                "--swagger-ui-redirect-uri holds an empty URI".into(),
            ));
        }
        self.argon2.params().map(|_| ())
    }
}

impl std::fmt::Debug for UsersSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsersSettings")
            .field("database_url", &redact_url(&self.database_url))
            .field("db", &self.db)
            .field("admin_email", &self.admin_email)
            .field(
                "admin_password",
                &self.admin_password.as_ref().map(|_| "***"),
            )
            .field("swagger_ui_redirect_uris", &self.swagger_ui_redirect_uris)
            .field("argon2", &self.argon2)
            .finish()
    }
}

/// argon2id cost parameters. The defaults are OWASP's minimum for argon2id
/// (19 MiB, 2 passes, 1 lane); lower them only in tests. Hashes keep their
/// own parameters, so changing these never locks anyone out.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct Argon2Settings {
    /// Memory per hash, in KiB.
    #[arg(
        long = "argon2-memory-kib",
        env = "USERS_ARGON2_MEMORY_KIB",
        default_value_t = 19_456
    )]
    pub memory_kib: u32,
    /// Passes over the memory.
    #[arg(
        long = "argon2-iterations",
        env = "USERS_ARGON2_ITERATIONS",
        default_value_t = 2
    )]
    pub iterations: u32,
    /// Lanes.
    #[arg(
        long = "argon2-parallelism",
        env = "USERS_ARGON2_PARALLELISM",
        default_value_t = 1
    )]
    pub parallelism: u32,
    /// Hashes computed at once; the rest wait. Bounds memory
    /// (`memory_kib` each) and keeps a login burst from starving the CPU.
    #[arg(
        id = "argon2_concurrency",
        long = "argon2-concurrency",
        env = "USERS_ARGON2_CONCURRENCY",
        default_value_t = 4
    )]
    pub concurrency: usize,
}

impl Default for Argon2Settings {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
            concurrency: 4,
        }
    }
}

impl Argon2Settings {
    /// The argon2 parameters, or a configuration error naming the problem.
    pub fn params(&self) -> Result<argon2::Params, Error> {
        if self.concurrency == 0 {
            return Err(Error::Config(
                "--argon2-concurrency must be at least 1".into(),
            ));
        }
        argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| Error::Config(format!("argon2 parameters: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_masks_the_admin_password_and_database_credentials() {
        let mut s = UsersSettings::for_database("postgres://u:dbsecret@db/users");
        s.admin_email = Some("admin@example.com".into());
        s.admin_password = Some("correct horse battery".into());
        let text = format!("{s:?}");
        assert!(!text.contains("correct horse"), "{text}");
        assert!(!text.contains("dbsecret"), "{text}");
        assert!(text.contains("admin@example.com"));
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        users: UsersSettings,
    }

    #[test]
    fn flags_parse_with_their_defaults() {
        use clap::Parser;
        let cli = Cli::try_parse_from([
            "jetshop",
            "--admin-email",
            "admin@example.com",
            "--swagger-ui-redirect-uri",
            "http://localhost:8080/docs/oauth-receiver.html,https://shop.example/docs/oauth-receiver.html",
        ])
        .unwrap();
        let s = cli.users;
        assert_eq!(s.database_url, "sqlite://data/users.db");
        assert_eq!(s.swagger_ui_redirect_uris.len(), 2);
        assert_eq!(s.argon2, Argon2Settings::default());
        assert!(s.admin_password.is_none());
    }

    #[test]
    fn admin_needs_email_and_password_together() {
        let mut s = UsersSettings::for_database("sqlite::memory:");
        s.admin_email = Some("admin@example.com".into());
        assert!(s.validate().is_err());
        s.admin_password = Some("x".into());
        assert!(s.validate().is_ok());
    }

    #[test]
    fn bad_argon2_parameters_are_a_configuration_error() {
        let a = Argon2Settings {
            memory_kib: 1,
            ..Default::default()
        };
        assert!(a.params().is_err());
        assert!(Argon2Settings::default().params().is_ok());
    }
}
