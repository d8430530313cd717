//! NATS security on a real server configured by `jetshop nats-config`:
//! the server refuses what a part's credentials do not allow, clients
//! without credentials, plaintext clients and clients without a
//! certificate from the CA.

#[path = "shared/secure_nats.rs"]
mod secure_nats;

use std::{
    io::{Read, Write},
    time::Duration,
};

use async_nats::{ConnectErrorKind, jetstream};
use futures::StreamExt;
use jetshop_contracts::{streams, subjects};
use jetshop_platform::{Error, nats};
use secure_nats::Credentials;

const BIN: &str = env!("CARGO_BIN_EXE_jetshop");

/// A JetStream context for `part`, quick to give up on a PubAck that a
/// refused publish never gets.
async fn js_as(nats: &Credentials, part: &str) -> jetstream::Context {
    let client = nats::connect(&nats.settings(part), part)
        .await
        .unwrap_or_else(|e| panic!("{part} connects: {e}"));
    let mut js = jetstream::new(client);
    js.set_timeout(Duration::from_secs(1));
    js
}

async fn publish(js: &jetstream::Context, subject: String) -> Result<(), String> {
    js.publish(subject, "{}".into())
        .await
        .map_err(|e| e.to_string())?
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn stored(js: &jetstream::Context, stream: &str) -> u64 {
    let mut s = js.get_stream(stream).await.unwrap();
    s.info().await.unwrap().state.messages
}

#[tokio::test]
async fn a_part_cannot_publish_another_part_s_commands_or_events() {
    let (_server, nats) = secure_nats::start(BIN);
    let ops = jetstream::new(nats.ops().await);
    nats::provision_streams(&ops, &streams::all(), 1)
        .await
        .unwrap();
    let order = uuid::Uuid::now_v7();
    let reserve = subjects::keyed::subject(subjects::catalog::RESERVE_STOCK, order);
    let confirmed = subjects::keyed::subject(subjects::orders::CONFIRMED, order);
    let captured = subjects::keyed::subject(subjects::payments::CAPTURED, order);

    // An observer with every right sees whatever gets through.
    let mut seen = ops
        .client()
        .subscribe(subjects::orders::EVENTS_ALL)
        .await
        .unwrap();

    let payments = js_as(&nats, "payments").await;
    assert!(
        publish(&payments, reserve.clone()).await.is_err(),
        "payments sent a catalog command"
    );
    assert!(
        publish(&payments, confirmed.clone()).await.is_err(),
        "payments published an orders event"
    );
    let capture = subjects::keyed::subject(subjects::payments::CAPTURE, order);
    assert!(
        publish(&payments, capture).await.is_err(),
        "payments sent itself a command only orders sends"
    );
    // Its own events go through.
    publish(&payments, captured).await.unwrap();

    let gateway = js_as(&nats, "gateway").await;
    assert!(
        publish(&gateway, confirmed.clone()).await.is_err(),
        "the gateway published an orders event"
    );

    // The same subjects from the part that owns them are accepted.
    let orders = js_as(&nats, "orders").await;
    publish(&orders, reserve).await.unwrap();
    publish(&orders, confirmed.clone()).await.unwrap();

    assert_eq!(stored(&ops, streams::CATALOG_COMMANDS).await, 1);
    assert_eq!(stored(&ops, streams::ORDERS_EVENTS).await, 1);
    assert_eq!(stored(&ops, streams::PAYMENTS_COMMANDS).await, 0);
    assert_eq!(stored(&ops, streams::PAYMENTS_EVENTS).await, 1);
    let first = tokio::time::timeout(Duration::from_secs(2), seen.next())
        .await
        .expect("the orders event reaches the observer")
        .unwrap();
    assert_eq!(first.subject.as_str(), confirmed);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), seen.next())
            .await
            .is_err(),
        "a refused publish reached a subscriber"
    );

    // Subscriptions are refused too: payments cannot listen to orders events.
    let mut eavesdrop = payments
        .client()
        .subscribe(subjects::orders::EVENTS_ALL)
        .await
        .unwrap();
    payments.client().flush().await.unwrap();
    publish(
        &orders,
        subjects::keyed::subject(subjects::orders::CANCELLED, order),
    )
    .await
    .unwrap();
    let heard = tokio::time::timeout(Duration::from_millis(500), eavesdrop.next()).await;
    assert!(
        !matches!(heard, Ok(Some(_))),
        "payments received an orders event"
    );
}

#[tokio::test]
async fn a_client_without_credentials_cannot_connect() {
    let (_server, nats) = secure_nats::start(BIN);
    let mut settings = nats.settings("ops");
    settings.security.nkey_file = None;
    settings.connect_timeout = Duration::from_millis(500);
    let err = nats::connect(&settings, "anonymous").await.unwrap_err();
    match err {
        Error::Connect { source, .. } => assert_eq!(
            source.kind(),
            ConnectErrorKind::AuthorizationViolation,
            "{source}"
        ),
        other => panic!("expected a refused connection, got {other}"),
    }

    // Someone else's seed is no better than none: a fresh nkey the server
    // does not know.
    let stranger = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(stranger.path(), nkeys::KeyPair::new_user().seed().unwrap()).unwrap();
    settings.security.nkey_file = Some(stranger.path().to_owned());
    let err = nats::connect(&settings, "stranger").await.unwrap_err();
    assert!(
        matches!(&err, Error::Connect { source, .. }
            if source.kind() == ConnectErrorKind::AuthorizationViolation),
        "{err}"
    );
    // With its own credentials the same client gets in.
    nats.ops().await;
}

#[tokio::test]
async fn a_plaintext_client_is_refused_when_tls_is_required() {
    let (server, nats) = secure_nats::start(BIN);
    // Speak the protocol in the clear, as a client without TLS does.
    let addr = server.url().replace("nats://", "");
    let mut socket = std::net::TcpStream::connect(&addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut info = [0u8; 4096];
    let n = socket.read(&mut info).unwrap();
    let info = String::from_utf8_lossy(&info[..n]);
    assert!(info.contains("\"tls_required\":true"), "{info}");
    socket
        .write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")
        .unwrap();
    let mut answer = Vec::new();
    // The server takes those bytes for a failed TLS handshake and hangs
    // up: the connection ends (not our read timeout) without a PONG.
    let ended = socket.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(ended.is_ok(), "the server kept the connection: {ended:?}");
    assert!(!answer.contains("PONG"), "{answer:?}");

    // TLS without a client certificate from the CA is refused as well (mTLS).
    let mut settings = nats.settings("ops");
    settings.security.tls_cert = None;
    settings.security.tls_key = None;
    settings.connect_timeout = Duration::from_millis(500);
    assert!(matches!(
        nats::connect(&settings, "no-client-cert").await,
        Err(Error::Connect { .. })
    ));

    // A client that does not trust the dev CA refuses the server.
    let mut settings = nats.settings("ops");
    settings.security.tls_ca = None;
    settings.connect_timeout = Duration::from_millis(500);
    assert!(matches!(
        nats::connect(&settings, "untrusting").await,
        Err(Error::Connect { .. })
    ));
}

#[tokio::test]
async fn bad_security_settings_stop_the_process_with_one_clear_line() {
    let (_server, nats) = secure_nats::start(BIN);
    let mut settings = nats.settings("payments");
    settings.security.nkey_file = Some(nats.part_dir("payments").join("payments.pem"));
    let err = nats::connect(&settings, "payments").await.unwrap_err();
    assert!(
        matches!(&err, Error::Config(line) if line.contains("--nats-nkey-file")),
        "{err}"
    );
    let mut settings = nats.settings("payments");
    settings.security.tls_ca = Some(nats.dir.path().join("missing.pem"));
    let err = nats::connect(&settings, "payments").await.unwrap_err();
    assert!(
        matches!(&err, Error::Config(line) if line.contains("--nats-tls-ca")),
        "{err}"
    );
}

/// `jetshop run <part>` as its own NATS user, its log in `logs`.
fn run_part(
    nats: &Credentials,
    logs: &std::path::Path,
    part: &str,
    own: Vec<String>,
) -> jetshop_testkit::Process {
    let mut args = vec!["run".to_owned(), part.to_owned()];
    args.extend(own);
    args.extend(nats.flags(part));
    jetshop_testkit::Process::spawn(
        part,
        logs,
        BIN,
        args,
        &[("RUST_LOG", "info"), ("NO_COLOR", "1")],
    )
}

async fn ready(url: &str) {
    jetshop_testkit::eventually(
        &format!("{url} to be ready"),
        Duration::from_secs(60),
        || async move {
            let status = reqwest::get(url).await.ok()?.status();
            status.is_success().then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn gateway_users_catalog_and_orders_serve_http_each_as_its_own_user() {
    let (_server, nats) = secure_nats::start(BIN);
    let data = tempfile::tempdir().unwrap();
    let db = |part: &str| format!("sqlite://{}/{part}.db?mode=rwc", data.path().display());
    // A machine client in the users database, as an operator makes one.
    let made = std::process::Command::new(BIN)
        .args(["oauth", "create-client", "--client-id", "importer"])
        .args(["--confidential", "--grant", "client_credentials"])
        .args(["--scope", "catalog:write", "--scope", "orders:read"])
        .args(["--users-database-url", &db("users")])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let printed = String::from_utf8_lossy(&made.stdout);
    let secret = printed
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .expect("the secret is printed")
        .to_owned();

    let admin = || -> (Vec<String>, String) {
        let addr = format!("127.0.0.1:{}", jetshop_testkit::free_port());
        let url = format!("http://{addr}/readyz");
        (vec!["--admin-addr".into(), addr], url)
    };
    let logs = data.path();
    let mut parts = Vec::new();
    let mut probes = Vec::new();
    for (part, flag) in [
        ("users", "--users-database-url"),
        ("catalog", "--catalog-database-url"),
        ("orders", "--orders-database-url"),
    ] {
        let (mut args, probe) = admin();
        args.extend([flag.to_owned(), db(part)]);
        parts.push(run_part(&nats, logs, part, args));
        probes.push(probe);
    }
    let http = format!("127.0.0.1:{}", jetshop_testkit::free_port());
    let base = format!("http://{http}");
    parts.push(run_part(
        &nats,
        logs,
        "gateway",
        vec![
            "--http-addr".into(),
            http.clone(),
            "--oauth-key-dir".into(),
            data.path().join("oauth-keys").display().to_string(),
        ],
    ));
    probes.push(format!("{base}/readyz"));
    for probe in &probes {
        ready(probe).await;
    }

    let web = reqwest::Client::new();
    // users.rpc.user.register, from the gateway's user to the users service's.
    let registered = web
        .post(format!("{base}/v1/users"))
        .json(&serde_json::json!({
            "email": "secure@example.com",
            "password": "a long secret passphrase 7",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201, "{:?}", registered.text().await);

    // users.rpc.client.authenticate.
    let token: serde_json::Value = web
        .post(format!("{base}/oauth/token"))
        .basic_auth("importer", Some(&secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "catalog:write orders:read"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().expect("a token").to_owned();

    // catalog.commands.create-product from the gateway, then
    // catalog.rpc.product.get once the catalog has made it.
    let created = web
        .post(format!("{base}/v1/products"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "secure-product-1")
        .json(&serde_json::json!({
            "sku": "SEC-1", "name": "Padlock",
            "price": {"amount_minor": 1200, "currency": "EUR"}, "stock": 3,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 202, "{:?}", created.text().await);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let product_url = format!("{base}{location}");
    jetshop_testkit::eventually("the product", Duration::from_secs(20), || {
        let url = product_url.clone();
        async move { (reqwest::get(url).await.ok()?.status() == 200).then_some(()) }
    })
    .await;

    // orders.rpc.order.get answers (not found) rather than timing out.
    let missing = web
        .get(format!("{base}/v1/orders/{}", uuid::Uuid::now_v7()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404, "{:?}", missing.text().await);

    for part in &mut parts {
        part.terminate(Duration::from_secs(10));
    }
    for part in &parts {
        let log = std::fs::read_to_string(part.log()).unwrap();
        assert!(log.contains("NATS connected"), "{}: {log}", part.name());
        assert!(
            !log.contains("Permissions Violation"),
            "{} was refused something:\n{log}",
            part.name()
        );
    }
}

#[tokio::test]
async fn up_runs_on_a_secured_server_as_the_ops_user() {
    let (_server, nats) = secure_nats::start(BIN);
    let data = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", jetshop_testkit::free_port());
    let mut args: Vec<String> = ["up", "--seed-demo", "--data-dir"].map(String::from).into();
    args.push(data.path().display().to_string());
    args.extend(["--http-addr".into(), http.clone()]);
    args.extend(nats.flags("ops"));
    let mut up = jetshop_testkit::Process::spawn(
        "up",
        data.path(),
        BIN,
        args,
        &[("RUST_LOG", "info"), ("NO_COLOR", "1")],
    );
    ready(&format!("http://{http}/readyz")).await;
    let url = format!("http://{http}/v1/products");
    jetshop_testkit::eventually("the demo catalog", Duration::from_secs(30), || {
        let url = url.clone();
        async move {
            let page: serde_json::Value = reqwest::get(url).await.ok()?.json().await.ok()?;
            (!page["items"].as_array()?.is_empty()).then_some(())
        }
    })
    .await;
    assert!(
        up.terminate(Duration::from_secs(30)),
        "up did not stop on SIGTERM"
    );
}
