//! The command line: every subcommand, flag and environment variable.
//!
//! Settings owned by a library (NATS, telemetry, the catalog, the gateway)
//! are flattened from that library's own `clap::Args`, so a setting is
//! declared once and reads the same under `jetshop up` and `jetshop run`.
//! [`parse`] turns any bad value into one `error: ...` line and exit code 2.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, parser::ValueSource};
use jetshop_card_processor::CardProcessorSettings;
use jetshop_catalog::CatalogSettings;
use jetshop_gateway::GatewaySettings;
use jetshop_notifications::NotificationsSettings;
use jetshop_orders::OrdersSettings;
use jetshop_payments::PaymentsSettings;
use jetshop_platform::config::{
    ConsumerSettings, DbSettings, NatsSecurity, NatsSettings, TelemetrySettings,
};
use jetshop_users::UsersSettings;

/// jetshop: an e-commerce backend of services talking over NATS JetStream.
#[derive(Parser, Debug)]
#[command(name = "jetshop", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway and every service in one process (starts its own
    /// nats-server unless --nats-url is given).
    Up(Box<UpArgs>),
    /// Run one service on its own, as a container would.
    #[command(subcommand)]
    Run(RunService),
    /// Send the demo catalog to a running catalog service (idempotent).
    Seed(SeedArgs),
    /// Print (or write) the gateway's OpenAPI 3 spec.
    Openapi(OpenapiArgs),
    /// Manage accounts in the users service's database.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage OAuth clients in the users service's database.
    #[command(subcommand)]
    Oauth(OauthCommand),
    /// Inspect, replay and purge dead letters (the `DLQ` stream).
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Inspect order sagas and retry stuck ones (through the orders service).
    #[command(subcommand)]
    Sagas(SagasCommand),
    /// Write NATS users with per-part permissions (from the contracts), their
    /// nkeys, a development CA and TLS certificates for server and clients.
    NatsConfig(NatsConfigArgs),
}

/// `jetshop nats-config`.
#[derive(clap::Args, Debug)]
pub struct NatsConfigArgs {
    /// Directory to write into; keys and certificates already there are kept.
    #[arg(
        long,
        short,
        env = "JETSHOP_NATS_CONFIG_DIR",
        default_value = "nats-security"
    )]
    pub out: PathBuf,
    /// Host names and IP addresses the server's certificate is valid for.
    #[arg(
        long = "host",
        value_delimiter = ',',
        default_value = "127.0.0.1,localhost"
    )]
    pub hosts: Vec<String>,
}

/// `jetshop sagas ...`.
#[derive(Subcommand, Debug)]
pub enum SagasCommand {
    /// List sagas: every open one, or those in one state (`--state stuck`).
    Ls(SagasLsArgs),
    /// Give a stuck saga's pending step a fresh set of attempts.
    Retry(SagasRetryArgs),
}

/// `jetshop sagas ls`.
#[derive(clap::Args, Debug)]
pub struct SagasLsArgs {
    /// Only sagas in this state (`stuck`, `reserving_stock`, ..., `completed`);
    /// every open one when absent.
    #[arg(long)]
    pub state: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// NATS.
    #[command(flatten)]
    pub nats: NatsSettings,
}

/// `jetshop sagas retry`.
#[derive(clap::Args, Debug)]
pub struct SagasRetryArgs {
    /// The order whose saga to retry.
    pub order_id: uuid::Uuid,
    /// Print JSON instead of a line.
    #[arg(long)]
    pub json: bool,
    /// NATS.
    #[command(flatten)]
    pub nats: NatsSettings,
}

/// `jetshop dlq ...`.
#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// Count dead letters per consumer and reason.
    Ls(DlqLsArgs),
    /// Print one dead letter as JSON: original subject, headers (the
    /// Jetshop-Dlq-* ones included) and the payload decoded from MessagePack
    /// or JSON (base64 when it is neither).
    Show(DlqShowArgs),
    /// Publish dead letters again on their original subject, with the
    /// original headers and a new message id, then delete them from the DLQ.
    Replay(DlqReplayArgs),
    /// Delete dead letters for good (refused without --yes).
    Purge(DlqPurgeArgs),
}

/// `jetshop dlq ls`.
#[derive(clap::Args, Debug)]
pub struct DlqLsArgs {
    /// Only this durable consumer's dead letters.
    #[arg(long)]
    pub consumer: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// NATS.
    #[command(flatten)]
    pub nats: NatsSettings,
}

/// `jetshop dlq show`.
#[derive(clap::Args, Debug)]
pub struct DlqShowArgs {
    /// The dead letter's sequence in the DLQ stream (as `dlq ls --json` or
    /// `nats stream view DLQ` show it).
    pub seq: u64,
    /// Print compact JSON on one line (the default is indented JSON).
    #[arg(long)]
    pub json: bool,
    /// NATS.
    #[command(flatten)]
    pub nats: NatsSettings,
}

/// `jetshop dlq replay`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["seq", "consumer", "all"])))]
pub struct DlqReplayArgs {
    /// Replay this dead letter (its sequence in the DLQ stream).
    pub seq: Option<u64>,
    /// Replay every dead letter of this durable consumer.
    #[arg(long)]
    pub consumer: Option<String>,
    /// Replay every dead letter.
    #[arg(long)]
    pub all: bool,
    /// Print JSON instead of one line per message.
    #[arg(long)]
    pub json: bool,
    /// NATS.
    #[command(flatten)]
    pub nats: NatsSettings,
}

/// `jetshop dlq purge`.
#[derive(clap::Args, Debug)]
pub struct DlqPurgeArgs {
    /// Only this durable consumer's dead letters.
    #[arg(long)]
    pub consumer: Option<String>,
    /// Really delete them.
    #[arg(long)]
    pub yes: bool,
    /// Print JSON instead of a line.
    #[arg(long)]
    pub json: bool,
    /// NATS.
    #[command(flatten)]
    pub nats: NatsSettings,
}

/// `jetshop users ...`.
#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Create an account with the admin role (idempotent for an existing
    /// admin: it is left as it is).
    CreateAdmin(CreateAdminArgs),
}

/// `jetshop users create-admin`.
#[derive(clap::Args)]
pub struct CreateAdminArgs {
    /// The admin's email.
    #[arg(long)]
    pub email: String,
    /// The admin's password (or `JETSHOP_ADMIN_PASSWORD`; read from standard
    /// input when neither is given, so it stays out of the shell history).
    #[arg(long, env = "JETSHOP_ADMIN_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// The users service's database.
    #[arg(
        long = "users-database-url",
        env = "USERS_DATABASE_URL",
        default_value = "sqlite://data/users.db"
    )]
    pub database_url: String,
}

impl std::fmt::Debug for CreateAdminArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateAdminArgs")
            .field("email", &self.email)
            .field(
                "database_url",
                &jetshop_platform::config::redact_url(&self.database_url),
            )
            .finish_non_exhaustive()
    }
}

/// `jetshop oauth ...`.
#[derive(Subcommand, Debug)]
pub enum OauthCommand {
    /// Register an OAuth client. A confidential client's secret is printed
    /// once and stored only as a hash.
    CreateClient(CreateClientArgs),
}

/// `jetshop oauth create-client`.
#[derive(clap::Args, Debug)]
pub struct CreateClientArgs {
    /// Client id (`my-app`).
    #[arg(long = "client-id")]
    pub client_id: String,
    /// Name shown on the login page.
    #[arg(long)]
    pub name: Option<String>,
    /// Give it a secret (machines, server-side apps); public clients use PKCE.
    #[arg(long)]
    pub confidential: bool,
    /// Allowed redirect URI (repeat for several), matched exactly.
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Vec<String>,
    /// Allowed grant (repeat): authorization_code, client_credentials, refresh_token.
    #[arg(long = "grant", value_parser = parse_grant, required = true)]
    pub grants: Vec<jetshop_contracts::users::GrantType>,
    /// Allowed scope (repeat), e.g. catalog:write.
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// The users service's database.
    #[arg(
        long = "users-database-url",
        env = "USERS_DATABASE_URL",
        default_value = "sqlite://data/users.db"
    )]
    pub database_url: String,
}

fn parse_grant(s: &str) -> Result<jetshop_contracts::users::GrantType, String> {
    use jetshop_contracts::users::GrantType;
    match s {
        "authorization_code" => Ok(GrantType::AuthorizationCode),
        "client_credentials" => Ok(GrantType::ClientCredentials),
        "refresh_token" => Ok(GrantType::RefreshToken),
        other => Err(format!(
            "unknown grant {other:?} (authorization_code, client_credentials, refresh_token)"
        )),
    }
}

/// `jetshop up`.
#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Use this NATS server instead of starting one.
    #[arg(long = "nats-url", env = "NATS_URL")]
    pub nats_url: Option<String>,
    /// Give up connecting to NATS at start after this long.
    #[arg(long = "nats-connect-timeout", env = "NATS_CONNECT_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub nats_connect_timeout: Duration,
    /// JetStream replicas per stream: 1 for one server, 3 in a cluster.
    #[arg(long = "stream-replicas", env = "JETSHOP_STREAM_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub stream_replicas: u8,
    /// Credentials and TLS for a secured server given with `--nats-url`
    /// (the `ops` user of `jetshop nats-config`: under `up` every part
    /// shares one connection).
    #[command(flatten)]
    pub nats_security: NatsSecurity,
    /// The nats-server to start; by default the first one on PATH that is 2.10 or newer.
    #[arg(long = "nats-server-bin", env = "NATS_SERVER_BIN")]
    pub nats_server_bin: Option<PathBuf>,
    /// Also open the started nats-server's monitoring port (http://127.0.0.1:PORT/varz).
    #[arg(long = "nats-monitor-port", env = "JETSHOP_NATS_MONITOR_PORT")]
    pub nats_monitor_port: Option<u16>,
    /// Where the services' SQLite files and the started nats-server's store live.
    #[arg(long = "data-dir", env = "JETSHOP_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Load the demo catalog (idempotent: safe on every start).
    #[arg(long = "seed-demo", env = "JETSHOP_SEED_DEMO")]
    pub seed_demo: bool,
    /// How long the gateway and each service get to drain on shutdown.
    #[arg(long = "shutdown-timeout", env = "JETSHOP_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// Every service's database pool (each service gets a pool of its own).
    #[command(flatten)]
    pub db: DbSettings,
    /// The gateway.
    #[command(flatten)]
    pub gateway: GatewaySettings,
    /// The catalog service (its database defaults to `<data-dir>/catalog.db`).
    #[command(flatten)]
    pub catalog: CatalogSettings,
    /// The users service (its database defaults to `<data-dir>/users.db`;
    /// without --admin-email, `admin@jetshop.local` is created with a
    /// password generated once and kept in `<data-dir>/admin-password`).
    #[command(flatten)]
    pub users: UsersSettings,
    /// The orders service (its database defaults to `<data-dir>/orders.db`).
    #[command(flatten)]
    pub orders: OrdersSettings,
    /// The payments service (its database defaults to `<data-dir>/payments.db`;
    /// without --payments-provider-url it calls the card processor that `up`
    /// starts on a free loopback port, its database `<data-dir>/card-processor.db`).
    #[command(flatten)]
    pub payments: PaymentsSettings,
    /// The notifications service (its database defaults to
    /// `<data-dir>/notifications.db`; without --smtp-url, mail is written as
    /// `.eml` files under `<data-dir>/mail`).
    #[command(flatten)]
    pub notifications: NotificationsSettings,
    /// Logs and traces.
    #[command(flatten)]
    pub telemetry: TelemetrySettings,
    /// Whether `up` runs the card processor itself (no
    /// --payments-provider-url given).
    #[arg(skip)]
    pub own_card_processor: bool,
}

impl UpArgs {
    /// Every service's consumers follow the one retry policy given on the
    /// command line (flattened once, with the catalog's settings).
    pub fn share_consumer_settings(&mut self) {
        let shared = self.catalog.consumer.clone();
        self.orders.consumer = shared.clone();
        self.payments.consumer = shared.clone();
        self.notifications.consumer = shared;
        self.share_db_settings();
    }

    /// Every service's pool follows the one `--db-*` setting.
    pub fn share_db_settings(&mut self) {
        self.catalog.db = self.db.clone();
        self.users.db = self.db.clone();
        self.orders.db = self.db.clone();
        self.payments.db = self.db.clone();
        self.notifications.db = self.db.clone();
    }
}

/// `jetshop run <service>`.
#[derive(Subcommand, Debug)]
pub enum RunService {
    /// The catalog service, with its admin port (healthz, readyz, metrics).
    Catalog(Box<RunCatalogArgs>),
    /// The users service, with its admin port (healthz, readyz, metrics).
    Users(Box<RunUsersArgs>),
    /// The REST gateway (serves its own healthz, readyz and metrics).
    Gateway(Box<RunGatewayArgs>),
    /// The orders service and its saga, with its admin port.
    Orders(Box<RunOrdersArgs>),
    /// The payments service, with its admin port.
    Payments(Box<RunPaymentsArgs>),
    /// The notifications service, with its admin port.
    Notifications(Box<RunNotificationsArgs>),
    /// The card processor in test mode (HTTP, its own database): what
    /// payments calls at --payments-provider-url.
    CardProcessor(Box<RunCardProcessorArgs>),
}

/// `jetshop run card-processor`.
#[derive(clap::Args, Debug)]
pub struct RunCardProcessorArgs {
    /// How long open requests get to finish on shutdown.
    #[arg(long = "shutdown-timeout", env = "JETSHOP_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// The card processor.
    #[command(flatten)]
    pub processor: CardProcessorSettings,
    /// The processor's database pool.
    #[command(flatten)]
    pub db: DbSettings,
    /// Logs and traces.
    #[command(flatten)]
    pub telemetry: TelemetrySettings,
}

/// What every `jetshop run <service>` with consumers takes.
#[derive(clap::Args, Debug)]
pub struct ServiceProcessArgs {
    /// How long the service gets to drain on shutdown.
    #[arg(long = "shutdown-timeout", env = "JETSHOP_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// NATS.
    #[command(flatten)]
    pub nats: NatsSettings,
    /// Retry policy of the service's consumers.
    #[command(flatten)]
    pub consumer: ConsumerSettings,
    /// The service's database pool.
    #[command(flatten)]
    pub db: DbSettings,
    /// Logs and traces.
    #[command(flatten)]
    pub telemetry: TelemetrySettings,
}

/// `jetshop run orders`.
#[derive(clap::Args, Debug)]
pub struct RunOrdersArgs {
    /// Where to serve /healthz, /readyz and /metrics.
    #[arg(
        long = "admin-addr",
        env = "JETSHOP_ADMIN_ADDR",
        default_value = "127.0.0.1:9092"
    )]
    pub admin_addr: std::net::SocketAddr,
    /// The process.
    #[command(flatten)]
    pub process: ServiceProcessArgs,
    /// The orders service.
    #[command(flatten)]
    pub orders: OrdersSettings,
}

/// `jetshop run payments`.
#[derive(clap::Args, Debug)]
pub struct RunPaymentsArgs {
    /// Where to serve /healthz, /readyz and /metrics.
    #[arg(
        long = "admin-addr",
        env = "JETSHOP_ADMIN_ADDR",
        default_value = "127.0.0.1:9093"
    )]
    pub admin_addr: std::net::SocketAddr,
    /// The process.
    #[command(flatten)]
    pub process: ServiceProcessArgs,
    /// The payments service.
    #[command(flatten)]
    pub payments: PaymentsSettings,
}

/// `jetshop run notifications`.
#[derive(clap::Args, Debug)]
pub struct RunNotificationsArgs {
    /// Where to serve /healthz, /readyz and /metrics.
    #[arg(
        long = "admin-addr",
        env = "JETSHOP_ADMIN_ADDR",
        default_value = "127.0.0.1:9094"
    )]
    pub admin_addr: std::net::SocketAddr,
    /// The process.
    #[command(flatten)]
    pub process: ServiceProcessArgs,
    /// The notifications service.
    #[command(flatten)]
    pub notifications: NotificationsSettings,
}

/// `jetshop run users`.
#[derive(clap::Args, Debug)]
pub struct RunUsersArgs {
    /// Where to serve /healthz, /readyz and /metrics.
    #[arg(
        long = "admin-addr",
        env = "JETSHOP_ADMIN_ADDR",
        default_value = "127.0.0.1:9091"
    )]
    pub admin_addr: std::net::SocketAddr,
    /// How long the service gets to drain on shutdown.
    #[arg(long = "shutdown-timeout", env = "JETSHOP_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// NATS.
    #[command(flatten)]
    pub nats: NatsSettings,
    /// The users service.
    #[command(flatten)]
    pub users: UsersSettings,
    /// The service's database pool.
    #[command(flatten)]
    pub db: DbSettings,
    /// Logs and traces.
    #[command(flatten)]
    pub telemetry: TelemetrySettings,
}

/// `jetshop run catalog`.
#[derive(clap::Args, Debug)]
pub struct RunCatalogArgs {
    /// Where to serve /healthz, /readyz and /metrics.
    #[arg(
        long = "admin-addr",
        env = "JETSHOP_ADMIN_ADDR",
        default_value = "127.0.0.1:9090"
    )]
    pub admin_addr: std::net::SocketAddr,
    /// How long the service gets to drain on shutdown.
    #[arg(long = "shutdown-timeout", env = "JETSHOP_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// NATS.
    #[command(flatten)]
    pub nats: NatsSettings,
    /// The catalog service.
    #[command(flatten)]
    pub catalog: CatalogSettings,
    /// The service's database pool.
    #[command(flatten)]
    pub db: DbSettings,
    /// Logs and traces.
    #[command(flatten)]
    pub telemetry: TelemetrySettings,
}

/// `jetshop run gateway`.
#[derive(clap::Args, Debug)]
pub struct RunGatewayArgs {
    /// How long the gateway gets to drain on shutdown.
    #[arg(long = "shutdown-timeout", env = "JETSHOP_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// NATS.
    #[command(flatten)]
    pub nats: NatsSettings,
    /// The gateway.
    #[command(flatten)]
    pub gateway: GatewaySettings,
    /// Logs and traces.
    #[command(flatten)]
    pub telemetry: TelemetrySettings,
}

/// `jetshop seed`.
#[derive(clap::Args, Debug)]
pub struct SeedArgs {
    /// NATS.
    #[command(flatten)]
    pub nats: NatsSettings,
    /// Logs and traces.
    #[command(flatten)]
    pub telemetry: TelemetrySettings,
}

/// `jetshop openapi`.
#[derive(clap::Args, Debug)]
pub struct OpenapiArgs {
    /// Write the spec to this file instead of standard output.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

impl Cli {
    /// The telemetry settings of the chosen subcommand (`openapi` logs nothing).
    pub fn telemetry(&self) -> Option<&TelemetrySettings> {
        match &self.command {
            Command::Up(a) => Some(&a.telemetry),
            Command::Run(RunService::Catalog(a)) => Some(&a.telemetry),
            Command::Run(RunService::Users(a)) => Some(&a.telemetry),
            Command::Run(RunService::Gateway(a)) => Some(&a.telemetry),
            Command::Run(RunService::Orders(a)) => Some(&a.process.telemetry),
            Command::Run(RunService::Payments(a)) => Some(&a.process.telemetry),
            Command::Run(RunService::Notifications(a)) => Some(&a.process.telemetry),
            Command::Run(RunService::CardProcessor(a)) => Some(&a.telemetry),
            Command::Seed(a) => Some(&a.telemetry),
            Command::Openapi(_)
            | Command::Users(_)
            | Command::Oauth(_)
            | Command::Dlq(_)
            | Command::Sagas(_)
            | Command::NatsConfig(_) => None,
        }
    }
}

/// Parse the process arguments and environment. Help and version are
/// printed as usual; any error becomes one line on stderr and the exit code
/// to stop with.
pub fn parse() -> Result<Cli, ExitCode> {
    parse_from(std::env::args_os())
}

fn parse_from<I, T>(args: I) -> Result<Cli, ExitCode>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = Cli::command().try_get_matches_from(args).map_err(report)?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(report)?;
    if let (Command::Up(up), Some(sub)) = (&mut cli.command, matches.subcommand_matches("up")) {
        // Under `up` every service keeps its database in the data dir unless
        // told otherwise; the catalog's own default knows nothing of it.
        if sub.value_source("database_url") == Some(ValueSource::DefaultValue) {
            up.catalog.database_url = sqlite_url(&up.data_dir, "catalog");
        }
        if sub.value_source("users_database_url") == Some(ValueSource::DefaultValue) {
            up.users.database_url = sqlite_url(&up.data_dir, "users");
        }
        if sub.value_source("key_dir") == Some(ValueSource::DefaultValue) {
            up.gateway.auth.key_dir = Some(up.data_dir.join("oauth-keys"));
        }
        for (id, service) in [
            ("orders_database_url", "orders"),
            ("payments_database_url", "payments"),
            ("notifications_database_url", "notifications"),
        ] {
            if sub.value_source(id) == Some(ValueSource::DefaultValue) {
                let url = sqlite_url(&up.data_dir, service);
                match service {
                    "orders" => up.orders.database_url = url,
                    "payments" => up.payments.database_url = url,
                    _ => up.notifications.database_url = url,
                }
            }
        }
        // Payments calls the processor `up` starts, unless told otherwise.
        up.own_card_processor =
            sub.value_source("payments_provider_url") == Some(ValueSource::DefaultValue);
        if sub.value_source("notifications_mail_dir") == Some(ValueSource::DefaultValue) {
            up.notifications.mail_dir = up.data_dir.join("mail");
        }
        up.share_consumer_settings();
    }
    Ok(cli)
}

/// `sqlite://<dir>/<service>.db`.
pub fn sqlite_url(dir: &std::path::Path, service: &str) -> String {
    format!("sqlite://{}/{service}.db", dir.display())
}

/// Print a clap outcome: help and version in full, errors as one line.
fn report(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            ExitCode::from(if err.use_stderr() { 2 } else { 0 })
        }
        _ => {
            // clap renders "error: ...", then usage and a tip; the first line says it all.
            let rendered = err.render().to_string();
            let line = rendered
                .lines()
                .next()
                .unwrap_or("error: invalid arguments");
            eprintln!("{line} (see --help)");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn up_keeps_the_catalog_database_in_the_data_dir() {
        let cli = parse_from(["jetshop", "up", "--data-dir", "/tmp/js"]).unwrap();
        let Command::Up(up) = cli.command else {
            panic!("not up")
        };
        assert_eq!(up.catalog.database_url, "sqlite:///tmp/js/catalog.db");
        assert_eq!(up.users.database_url, "sqlite:///tmp/js/users.db");
        assert_eq!(up.orders.database_url, "sqlite:///tmp/js/orders.db");
        assert_eq!(up.payments.database_url, "sqlite:///tmp/js/payments.db");
        assert_eq!(
            up.notifications.database_url,
            "sqlite:///tmp/js/notifications.db"
        );
        assert_eq!(up.notifications.mail_dir, PathBuf::from("/tmp/js/mail"));
        assert_eq!(
            up.own_card_processor,
            std::env::var_os("PAYMENTS_PROVIDER_URL").is_none()
        );
        assert_eq!(
            up.gateway.auth.key_dir,
            Some(PathBuf::from("/tmp/js/oauth-keys"))
        );
        assert!(up.nats_url.is_none() || std::env::var_os("NATS_URL").is_some());
    }

    #[test]
    fn an_explicit_database_url_wins() {
        let cli = parse_from([
            "jetshop",
            "up",
            "--catalog-database-url",
            "postgres://postgres@127.0.0.1/catalog",
        ])
        .unwrap();
        let Command::Up(up) = cli.command else {
            panic!("not up")
        };
        assert_eq!(
            up.catalog.database_url,
            "postgres://postgres@127.0.0.1/catalog"
        );
    }

    #[test]
    fn a_replay_needs_to_know_what_to_replay() {
        assert!(parse_from(["jetshop", "dlq", "replay"]).is_err());
        assert!(parse_from(["jetshop", "dlq", "replay", "3", "--all"]).is_err());
        let cli = parse_from(["jetshop", "dlq", "replay", "--consumer", "c"]).unwrap();
        let Command::Dlq(DlqCommand::Replay(r)) = cli.command else {
            panic!("not dlq replay")
        };
        assert_eq!(r.consumer.as_deref(), Some("c"));
        assert!(r.seq.is_none() && !r.all);
    }

    #[test]
    fn every_service_follows_the_one_consumer_policy() {
        let cli = parse_from(["jetshop", "up", "--consumer-max-deliver", "9"]).unwrap();
        let Command::Up(up) = cli.command else {
            panic!("not up")
        };
        assert_eq!(up.orders.consumer.max_deliver, 9);
        assert_eq!(up.payments.consumer.max_deliver, 9);
        assert_eq!(up.notifications.consumer.max_deliver, 9);
    }

    #[test]
    fn every_service_pool_follows_the_one_db_setting() {
        let cli = parse_from([
            "jetshop",
            "up",
            "--db-max-connections",
            "4",
            "--db-acquire-timeout",
            "2s",
        ])
        .unwrap();
        let Command::Up(up) = cli.command else {
            panic!("not up")
        };
        for db in [
            &up.catalog.db,
            &up.users.db,
            &up.orders.db,
            &up.payments.db,
            &up.notifications.db,
        ] {
            assert_eq!(db.max_connections, Some(4));
            assert_eq!(db.acquire_timeout, Duration::from_secs(2));
        }
        for service in ["catalog", "users", "orders", "payments", "notifications"] {
            let cli = parse_from(["jetshop", "run", service, "--db-max-connections", "3"])
                .unwrap_or_else(|_| panic!("jetshop run {service} --db-max-connections"));
            let db = match cli.command {
                Command::Run(RunService::Catalog(a)) => a.db,
                Command::Run(RunService::Users(a)) => a.db,
                Command::Run(RunService::Orders(a)) => a.process.db,
                Command::Run(RunService::Payments(a)) => a.process.db,
                Command::Run(RunService::Notifications(a)) => a.process.db,
                _ => panic!("not run {service}"),
            };
            assert_eq!(db.max_connections, Some(3));
        }
        assert!(parse_from(["jetshop", "up", "--db-max-connections", "0"]).is_err());
    }

    #[test]
    fn sagas_take_a_state_or_an_order() {
        let cli = parse_from(["jetshop", "sagas", "ls", "--state", "stuck"]).unwrap();
        let Command::Sagas(SagasCommand::Ls(ls)) = cli.command else {
            panic!("not sagas ls")
        };
        assert_eq!(ls.state.as_deref(), Some("stuck"));
        assert!(parse_from(["jetshop", "sagas", "retry", "not-a-uuid"]).is_err());
    }

    #[test]
    fn an_explicit_provider_url_means_up_runs_no_card_processor() {
        let cli = parse_from([
            "jetshop",
            "up",
            "--payments-provider-url",
            "http://processor:9095",
        ])
        .unwrap();
        let Command::Up(up) = cli.command else {
            panic!("not up")
        };
        assert!(!up.own_card_processor);
        assert_eq!(up.payments.provider_url, "http://processor:9095");
    }

    #[test]
    fn the_card_processor_runs_on_its_own() {
        let cli = parse_from([
            "jetshop",
            "run",
            "card-processor",
            "--http-addr",
            "127.0.0.1:9999",
            "--database-url",
            "sqlite:///tmp/cp.db",
        ])
        .unwrap();
        let Command::Run(RunService::CardProcessor(run)) = cli.command else {
            panic!("not run card-processor")
        };
        assert_eq!(run.processor.http_addr.port(), 9999);
        assert_eq!(run.processor.database_url, "sqlite:///tmp/cp.db");
    }

    #[test]
    fn a_bad_value_is_refused() {
        assert!(parse_from(["jetshop", "run", "catalog", "--admin-addr", "nope"]).is_err());
    }
}
