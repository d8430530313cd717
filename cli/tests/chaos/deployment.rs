//! The scaled deployment, started for the fault suite as an operator would
//! run it: a 3-node JetStream cluster with every stream at 3 replicas (n3
//! in its own network namespace, reached over a veth pair), a
//! private PostgreSQL with one database per part, a Redis for the
//! gateways, an SMTP server, and every part as its own `jetshop run
//! <part>` process: two replicas each of orders, payments, notifications
//! and the gateway (both gateways on the one Redis and one OAuth key
//! folder), one each of catalog, users and the card processor.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use jetshop_testkit::{
    NatsCluster, NetNamespace, PostgresServer, Process, RedisServer, SmtpServer, TestDb, free_port,
};

pub const BIN: &str = env!("CARGO_BIN_EXE_jetshop");
pub const ADMIN_EMAIL: &str = "admin@chaos.example";
pub const ADMIN_PASSWORD: &str = "a long chaos admin passphrase";

/// Retry policy of every consumer: patient enough to outlast any one fault
/// of the suite (a PostgreSQL restart, a leader election), with an
/// `ack_wait` short enough that a replica frozen past it (the SIGSTOP
/// fault) hands its messages over within the run.
pub const ACK_WAIT: Duration = Duration::from_secs(5);
const CONSUMER: &[&str] = &[
    "--consumer-max-deliver",
    "30",
    "--consumer-backoff",
    "250ms,500ms,1s,2s,3s",
    "--consumer-ack-wait",
    "5s",
];

/// `--smtp-timeout` of the notifications replicas.
pub const SMTP_TIMEOUT: &str = "10s";
/// How long a delivery claim lasts with it (SMTP timeout + 30 s margin).
pub const DELIVERY_LEASE: Duration = Duration::from_secs(40);

/// One part's replicas.
pub struct Part {
    pub replicas: Vec<Process>,
    /// Each replica's readiness URL (`/readyz`, or the processor's `/healthz`).
    pub ready: Vec<String>,
}

/// Everything running. Fields drop in order: the processes first, then
/// their databases (dropped on a server that still runs), then the servers.
pub struct Deployment {
    /// Processes by part name.
    pub parts: BTreeMap<&'static str, Part>,
    pub catalog_db: TestDb,
    pub users_db: TestDb,
    pub orders_db: TestDb,
    pub payments_db: TestDb,
    pub notifications_db: TestDb,
    pub processor_db: TestDb,
    pub nats: NatsCluster,
    pub postgres: PostgresServer,
    pub redis: RedisServer,
    pub smtp: SmtpServer,
    /// Base URLs of the gateway replicas.
    pub gateways: Vec<String>,
    pub js: async_nats::jetstream::Context,
    pub logs: PathBuf,
    _logs_dir: Option<tempfile::TempDir>,
    _keys: tempfile::TempDir,
}

impl Deployment {
    pub async fn start() -> Self {
        let logs_dir = tempfile::Builder::new()
            .prefix("jetshop-chaos.")
            .tempdir()
            .unwrap();
        let logs = logs_dir.path().to_owned();
        let keep = std::env::var_os("KEEP_LOGS").is_some_and(|v| v != "0");
        // n3 in a network namespace, so a fault can partition it away;
        // without root there is none, and that one fault is skipped.
        let nats = if NetNamespace::supported() {
            NatsCluster::start_with_netns(3, 2)
        } else {
            println!(
                "chaos: no network namespaces here (root and iproute2 needed): the partition fault is skipped"
            );
            NatsCluster::start(3)
        };
        let postgres = PostgresServer::start();
        let redis = RedisServer::start();
        let smtp = SmtpServer::start();
        let pg = postgres.url();
        let db = || TestDb::postgres_on(&pg);
        let (catalog_db, users_db, orders_db, payments_db, notifications_db, processor_db) = (
            db().await,
            db().await,
            db().await,
            db().await,
            db().await,
            db().await,
        );
        let client = nats.client().await;
        let keys = tempfile::tempdir().unwrap();
        let gateway_ports = [free_port(), free_port()];
        let gateways: Vec<String> = gateway_ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
        let mut d = Self {
            js: async_nats::jetstream::new(client),
            nats,
            postgres,
            redis,
            smtp,
            catalog_db,
            users_db,
            orders_db,
            payments_db,
            notifications_db,
            processor_db,
            parts: BTreeMap::new(),
            gateways,
            logs,
            _logs_dir: if keep {
                let _ = logs_dir.keep();
                None
            } else {
                Some(logs_dir)
            },
            _keys: keys,
        };
        if keep {
            println!("chaos: logs kept in {}", d.logs.display());
        }
        let processor_port = free_port();
        d.add(
            "card-processor",
            1,
            |_| {
                vec![
                    "run".into(),
                    "card-processor".into(),
                    "--http-addr".into(),
                    format!("127.0.0.1:{processor_port}"),
                ]
            },
            |d| vec!["--database-url".into(), d.processor_db.url.clone()],
            |_| format!("http://127.0.0.1:{processor_port}/healthz"),
        );
        // Streams first: every service provisions them at 3 replicas; the
        // catalog and users come up before the parts that call them.
        let public = d.gateways[0].clone();
        d.add_service("catalog", 1, |d| {
            vec!["--catalog-database-url".into(), d.catalog_db.url.clone()]
        });
        d.add_service("users", 1, |d| {
            vec![
                "--users-database-url".into(),
                d.users_db.url.clone(),
                "--admin-email".into(),
                ADMIN_EMAIL.into(),
                "--admin-password".into(),
                ADMIN_PASSWORD.into(),
                "--swagger-ui-redirect-uri".into(),
                format!("{public}/docs/oauth-receiver.html"),
            ]
        });
        d.wait_ready().await;
        d.add_service("orders", 2, |d| {
            vec!["--orders-database-url".into(), d.orders_db.url.clone()]
        });
        d.add_service("payments", 2, |d| {
            vec![
                "--payments-database-url".into(),
                d.payments_db.url.clone(),
                "--payments-provider-url".into(),
                format!("http://127.0.0.1:{processor_port}"),
            ]
        });
        d.add_service("notifications", 2, |d| {
            vec![
                "--notifications-database-url".into(),
                d.notifications_db.url.clone(),
                "--smtp-url".into(),
                d.smtp.url(),
                // The delivery lease is this plus 30 s: a killed replica's
                // claims run out within the run.
                "--smtp-timeout".into(),
                SMTP_TIMEOUT.into(),
            ]
        });
        let key_dir = d._keys.path().display().to_string();
        d.add(
            "gateway",
            2,
            |i| {
                vec![
                    "run".into(),
                    "gateway".into(),
                    "--http-addr".into(),
                    format!("127.0.0.1:{}", gateway_ports[i]),
                ]
            },
            |d| {
                vec![
                    "--nats-url".into(),
                    d.nats.urls(),
                    "--stream-replicas".into(),
                    "3".into(),
                    "--redis-url".into(),
                    d.redis.url(),
                    "--oauth-key-dir".into(),
                    key_dir.clone(),
                    "--public-url".into(),
                    public.clone(),
                    "--rate-limit".into(),
                    "default=1000000/60s,auth=1000000/60s,writes=1000000/60s".into(),
                    // A crashed gateway's Idempotency-Key lock must not
                    // hold a customer's retry off for a minute.
                    "--idempotency-lock-ttl".into(),
                    "15s".into(),
                ]
            },
            |d| format!("{}/readyz", d.gateways[0]),
        );
        // The readiness of each gateway replica is its own URL.
        let ready: Vec<String> = d.gateways.iter().map(|g| format!("{g}/readyz")).collect();
        d.parts.get_mut("gateway").unwrap().ready = ready;
        d.wait_ready().await;
        d
    }

    /// Add a part of `n` replicas; `own(i)` is the start of replica `i`'s
    /// command line (what differs per replica), `shared` the rest.
    fn add(
        &mut self,
        name: &'static str,
        n: usize,
        own: impl Fn(usize) -> Vec<String>,
        shared: impl Fn(&Self) -> Vec<String>,
        ready: impl Fn(&Self) -> String,
    ) {
        let mut part = Part {
            replicas: Vec::new(),
            ready: Vec::new(),
        };
        for i in 0..n {
            let mut args = own(i);
            args.extend(shared(self));
            args.extend(["--shutdown-timeout".into(), "5s".into()]);
            part.replicas.push(Process::spawn(
                &format!("{name}-{}", i + 1),
                &self.logs,
                BIN,
                args,
                &[("RUST_LOG", "info"), ("NO_COLOR", "1")],
            ));
            part.ready.push(ready(self));
        }
        self.parts.insert(name, part);
    }

    /// Add a NATS-connected service with an admin port per replica.
    fn add_service(&mut self, name: &'static str, n: usize, own: impl Fn(&Self) -> Vec<String>) {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        self.add(
            name,
            n,
            |i| {
                vec![
                    "run".into(),
                    name.into(),
                    "--admin-addr".into(),
                    format!("127.0.0.1:{}", ports[i]),
                ]
            },
            |d| {
                let mut args = vec![
                    "--nats-url".into(),
                    d.nats.urls(),
                    "--stream-replicas".into(),
                    "3".into(),
                ];
                args.extend(own(d));
                // Users has no consumers (and so no such flags).
                if name != "users" {
                    args.extend(CONSUMER.iter().map(|s| (*s).to_owned()));
                }
                args
            },
            |_| String::new(),
        );
        self.parts.get_mut(name).unwrap().ready = ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}/readyz"))
            .collect();
    }

    /// Wait until every running replica answers its readiness URL.
    pub async fn wait_ready(&mut self) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        for (name, part) in &mut self.parts {
            for (i, url) in part.ready.iter().enumerate() {
                loop {
                    let process = &mut part.replicas[i];
                    assert!(
                        process.is_running(),
                        "{} exited; its log:\n{}",
                        process.name(),
                        tail(process.log(), 40)
                    );
                    let ok = http
                        .get(url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    if ok {
                        break;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "{name}-{} not ready at {url}; its log:\n{}",
                        i + 1,
                        tail(process.log(), 40)
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Replica `i` of `part`.
    pub fn replica(&mut self, part: &str, i: usize) -> &mut Process {
        &mut self.parts.get_mut(part).unwrap().replicas[i]
    }

    /// Where this run keeps its state, for [`crate::invariants::check`].
    pub fn stores(&self) -> crate::invariants::Stores<'_> {
        crate::invariants::Stores {
            catalog_db: &self.catalog_db.url,
            orders_db: &self.orders_db.url,
            payments_db: &self.payments_db.url,
            notifications_db: &self.notifications_db.url,
            js: &self.js,
            smtp: &self.smtp,
            // Notifications replicas are SIGKILLed mid-send.
            resends_possible: true,
        }
    }

    /// Stop every process gracefully (so the logs end cleanly).
    pub fn stop(&mut self) {
        for part in self.parts.values_mut() {
            for p in &mut part.replicas {
                p.terminate(Duration::from_secs(10));
            }
        }
    }

    /// How many lines in every log match `needle`, by process.
    pub fn grep_logs(&self, needle: &str) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for part in self.parts.values() {
            for p in &part.replicas {
                let n = std::fs::read_to_string(p.log())
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains(needle))
                    .count();
                if n > 0 {
                    out.insert(p.name().to_owned(), n);
                }
            }
        }
        out
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
