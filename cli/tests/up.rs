//! Black-box tests of the `jetshop` binary: `up` with its own nats-server,
//! end to end over HTTP and NATS, then a clean SIGTERM shutdown; and the
//! one-line errors for bad configuration.

use std::{
    io::{BufRead, BufReader},
    net::TcpStream,
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use jetshop_testkit::free_port;
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

const BIN: &str = env!("CARGO_BIN_EXE_jetshop");

/// A running `jetshop` process, killed on drop if a test fails midway
/// (its nats-server child then dies with it).
struct Jetshop {
    child: Child,
    stdout: mpsc::Receiver<String>,
}

impl Jetshop {
    fn up(data_dir: &Path, http_port: u16) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.args(["up", "--seed-demo", "--data-dir"])
            .arg(data_dir)
            .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
            .env_remove("PAYMENTS_PROVIDER_URL");
        Self::spawn(cmd)
    }

    /// `jetshop run card-processor` on `port` with its database at `db_url`.
    fn card_processor(port: u16, db_url: &str) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "card-processor"])
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--database-url", db_url]);
        Self::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .env_remove("NATS_URL")
            .env_remove("CATALOG_DATABASE_URL")
            .env_remove("USERS_DATABASE_URL")
            .env_remove("JETSHOP_ADMIN_EMAIL")
            .env_remove("JETSHOP_ADMIN_PASSWORD")
            .env_remove("JETSHOP_HTTP_ADDR")
            .env("JETSHOP_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start jetshop up");
        let out = child.stdout.take().unwrap();
        let (tx, stdout) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if std::env::var_os("TEST_LOG").is_some() {
                    eprintln!("jetshop| {line}");
                }
                let _ = tx.send(line);
            }
        });
        Self { child, stdout }
    }

    /// The first stdout line starting with `prefix`.
    fn line_starting_with(&self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(e) => panic!("no line starting with {prefix:?}: {e}"),
            }
        }
    }

    fn terminate(&mut self) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        kill(pid, Signal::SIGTERM).expect("send SIGTERM");
    }

    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "jetshop did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Jetshop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `f` until it returns `Some`, or panic.
async fn eventually<T, Fut: std::future::Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Fut,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_the_demo_catalog_and_shuts_down_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let started = Instant::now();
    let mut jetshop = Jetshop::up(data.path(), port);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    // NATS: <url>  (nats --server <url> stream ls)
    let nats_line = jetshop.line_starting_with("NATS: ", Duration::from_secs(30));
    let nats_url = nats_line
        .split_whitespace()
        .nth(1)
        .expect("a URL after NATS:")
        .to_owned();
    let nats_port: u16 = nats_url.rsplit(':').next().unwrap().parse().unwrap();
    // Card processor (test mode): <url>  (...), its database in the data dir.
    let processor_line = jetshop.line_starting_with("Card processor", Duration::from_secs(30));
    let processor_url = processor_line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("a URL for the card processor")
        .to_owned();

    eventually("/healthz to answer 200", Duration::from_secs(60), || {
        let http = http.clone();
        let url = format!("{base}/healthz");
        async move {
            let r = http.get(url).send().await.ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;
    eprintln!("healthz answered {:?} after start", started.elapsed());

    // Ready means every service serves: the first 200 of /readyz (polled
    // tightly from the start) finds each of them answering at once.
    eventually("/readyz to answer 200", Duration::from_secs(60), || {
        let http = http.clone();
        let url = format!("{base}/readyz");
        async move {
            let r = http.get(url).send().await.ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;
    // (Payments serves no RPC, only its command consumer.)
    let probe = async_nats::connect(&nats_url)
        .await
        .expect("connect to NATS");
    for service in [
        jetshop_catalog::SERVICE_NAME,
        jetshop_users::SERVICE_NAME,
        jetshop_orders::SERVICE_NAME,
        jetshop_notifications::SERVICE_NAME,
    ] {
        let ping = format!("$SRV.PING.{service}");
        let reply = tokio::time::timeout(Duration::from_secs(2), probe.request(ping, "".into()))
            .await
            .unwrap_or_else(|_| panic!("{service}: no PING reply within 2 s of /readyz = 200"));
        reply.unwrap_or_else(|e| panic!("{service} does not serve although /readyz = 200: {e}"));
    }
    drop(probe);
    let processor_health = http
        .get(format!("{processor_url}/healthz"))
        .send()
        .await
        .expect("the card processor answers");
    assert!(processor_health.status().is_success());
    assert!(data.path().join("card-processor.db").exists());
    jetshop.line_starting_with("Swagger UI: http://", Duration::from_secs(10));

    // The demo catalog is seeded through NATS and listed through the gateway.
    let demo = jetshop_catalog::demo::products();
    let body = eventually(
        "the demo catalog at /v1/products",
        Duration::from_secs(30),
        || {
            let http = http.clone();
            let url = format!("{base}/v1/products?limit=100");
            let demo = demo.clone();
            async move {
                let body = http.get(url).send().await.ok()?.text().await.ok()?;
                demo.iter()
                    .all(|p| body.contains(&p.id.to_string()))
                    .then_some(body)
            }
        },
    )
    .await;
    assert!(serde_json::from_str::<serde_json::Value>(&body).is_ok());

    // The printed NATS server holds the streams and answers for the catalog.
    let client = async_nats::connect(&nats_url)
        .await
        .expect("connect to the printed NATS URL");
    let js = async_nats::jetstream::new(client.clone());
    for stream in [
        jetshop_contracts::streams::CATALOG_EVENTS,
        jetshop_contracts::streams::CATALOG_COMMANDS,
        jetshop_contracts::streams::USERS_EVENTS,
        jetshop_contracts::streams::DLQ,
    ] {
        js.get_stream(stream)
            .await
            .unwrap_or_else(|e| panic!("stream {stream}: {e}"));
    }
    let ping = format!("$SRV.PING.{}", jetshop_catalog::SERVICE_NAME);
    let reply = tokio::time::timeout(Duration::from_secs(5), client.request(ping, "".into()))
        .await
        .expect("PING within 5s")
        .expect("a PING reply from the catalog");
    let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(reply["name"], jetshop_catalog::SERVICE_NAME);

    // The users service runs too, with the default admin whose generated
    // password is kept (owner-readable only) in the data dir.
    let password_file = data.path().join("admin-password");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&password_file).unwrap().permissions(),
    );
    assert_eq!(
        mode & 0o077,
        0,
        "admin-password is readable by others: {mode:o}"
    );
    let password = std::fs::read_to_string(&password_file)
        .unwrap()
        .trim()
        .to_owned();
    let verify = jetshop_contracts::users::VerifyCredentials {
        email: "ADMIN@jetshop.local".into(),
        password,
    };
    let rpc = jetshop_platform::rpc::RpcClient::new(client.clone(), Duration::from_secs(5), 3);
    let admin = rpc
        .call(&verify, &jetshop_platform::envelope::MessageMeta::default())
        .await
        .expect("the default admin can log in");
    assert!(admin.roles.contains(&jetshop_contracts::users::Role::Admin));
    let swagger = rpc
        .call(
            &jetshop_contracts::users::GetClient {
                client_id: "swagger-ui".into(),
            },
            &jetshop_platform::envelope::MessageMeta::default(),
        )
        .await
        .expect("the swagger-ui client exists");
    assert!(
        swagger
            .redirect_uris
            .contains(&format!("http://127.0.0.1:{port}/docs/oauth-receiver.html"))
    );
    drop(client);

    // SIGTERM: everything drains, the process exits 0 and takes nats-server with it.
    jetshop.terminate();
    let status = jetshop.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "jetshop exited with {status}");
    assert!(
        TcpStream::connect(("127.0.0.1", nats_port)).is_err(),
        "the nats-server child still accepts connections after jetshop exited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_card_processor_serves_its_api_keeps_its_store_and_stops_on_sigterm() {
    use jetshop_contracts::card_processor::{
        Authorization, CreateAuthorization, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, paths,
    };
    let data = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}/cp.db", data.path().display());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let req = CreateAuthorization {
        merchant_reference: uuid::Uuid::new_v4(),
        order_reference: uuid::Uuid::new_v4(),
        amount_minor: 100,
        currency: "EUR".into(),
        card_token: "tok_visa".into(),
    };
    let authorize = || {
        http.post(format!("{base}{}", paths::AUTHORIZATIONS))
            .header(IDEMPOTENCY_KEY, "cli-test")
            .json(&req)
            .send()
    };

    let mut processor = Jetshop::card_processor(port, &db_url);
    let first: Authorization = eventually(
        "the card processor to answer",
        Duration::from_secs(30),
        || async { authorize().await.ok()?.json().await.ok() },
    )
    .await;
    processor.terminate();
    assert!(processor.wait_exit(Duration::from_secs(20)).success());

    // Started again on the same database: the same key replays the same hold.
    let _again = Jetshop::card_processor(port, &db_url);
    let replay = eventually(
        "the restarted card processor",
        Duration::from_secs(30),
        || async { authorize().await.ok() },
    )
    .await;
    assert_eq!(
        replay
            .headers()
            .get(IDEMPOTENT_REPLAYED)
            .map(|v| v.to_str().unwrap().to_owned()),
        Some("true".to_owned())
    );
    let replayed: Authorization = replay.json().await.unwrap();
    assert_eq!(replayed, first);
}

/// Run the binary to completion and return (status, stderr).
fn run_to_end(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("NATS_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run jetshop");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_flag_value_stops_with_one_line() {
    let (status, stderr) = run_to_end(&["up", "--http-addr", "nonsense"], &[]);
    assert!(!status.success());
    assert_eq!(stderr.trim_end().lines().count(), 1, "stderr: {stderr}");
    assert!(stderr.starts_with("error: "), "stderr: {stderr}");
    assert!(stderr.contains("--http-addr"), "stderr: {stderr}");
}

#[test]
fn nats_credentials_without_a_nats_url_stop_up_with_one_line() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().display().to_string();
    let (status, stderr) = run_to_end(
        &["up", "--data-dir", &dir],
        &[("NATS_NKEY_FILE", "/nowhere/ops.nk")],
    );
    assert!(!status.success());
    assert_eq!(stderr.trim_end().lines().count(), 1, "stderr: {stderr}");
    assert!(stderr.contains("need --nats-url"), "stderr: {stderr}");
}

#[test]
fn a_bad_environment_value_stops_with_one_line() {
    let (status, stderr) = run_to_end(
        &["run", "catalog"],
        &[("JETSHOP_CONSUMER_ACK_WAIT", "forever")],
    );
    assert!(!status.success());
    assert_eq!(stderr.trim_end().lines().count(), 1, "stderr: {stderr}");
    assert!(stderr.starts_with("error: "), "stderr: {stderr}");
}

#[test]
fn an_old_nats_server_is_refused_with_one_line() {
    let old = Path::new("/usr/sbin/nats-server");
    if !old.exists() {
        eprintln!("skipped: no Debian nats-server here");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let (status, stderr) = run_to_end(
        &[
            "up",
            "--data-dir",
            data.path().to_str().unwrap(),
            "--nats-server-bin",
            "/usr/sbin/nats-server",
        ],
        &[("JETSHOP_LOG_FORMAT", "json")],
    );
    let version = Command::new(old).arg("--version").output().unwrap();
    if String::from_utf8_lossy(&version.stdout).contains("v2.9") {
        assert!(!status.success());
        let last = stderr.trim_end().lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error: ") && last.contains("2.10"),
            "stderr: {stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "stderr: {stderr}");
    }
}

#[test]
fn openapi_prints_an_openapi_3_document() {
    let out = Command::new(BIN).arg("openapi").output().unwrap();
    assert!(out.status.success());
    let spec: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "not OpenAPI 3: {}",
        spec["openapi"]
    );
}
