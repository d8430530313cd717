//! `jetshop up`: the gateway and every service in one process.
//!
//! The parts share one NATS connection (and so one metrics recorder, served
//! at the gateway's `/metrics`) but nothing else: each service has its own
//! SQLite file under the data dir and reaches the others only over NATS,
//! exactly as when they run as separate processes with `jetshop run`.
//!
//! Without `--nats-url` a `nats-server` child is started first and stopped
//! last, after the gateway and the services have drained.
//!
//! Without `--payments-provider-url` the card processor runs here too, on a
//! free loopback port with its database in the data dir, and payments is
//! pointed at it; it stops after payments, so no call is cut off.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::Context;
use jetshop_platform::{
    config::{NatsSecurity, NatsSettings},
    runtime::Runtime,
};
use tokio_util::sync::CancellationToken;

use crate::{args::UpArgs, nats_child, seed, supervisor::Supervisor};

/// Run everything until `shutdown`.
pub async fn run(args: UpArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    if args.nats_url.is_none() && args.nats_security != NatsSecurity::default() {
        anyhow::bail!(
            "--nats-nkey-file, --nats-tls-* and --nats-inbox-prefix need --nats-url: \
             the nats-server that `up` starts has no users and no TLS"
        );
    }
    args.catalog
        .consumer
        .validate()
        .context("catalog settings")?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    let mut args = args;
    bootstrap_defaults(&mut args)?;
    args.users.validate().context("users settings")?;
    args.db.validate().context("database settings")?;
    args.orders.consumer.validate().context("orders settings")?;
    args.payments.validate().context("payments settings")?;
    args.notifications
        .validate()
        .context("notifications settings")?;

    // Started here, on the main thread, so that it dies with the process.
    let (child, url) = match args.nats_url.clone() {
        Some(url) => (None, url),
        None => {
            let bin = nats_child::locate(args.nats_server_bin.as_deref())?;
            let child = nats_child::NatsChild::start(
                &bin,
                &args.data_dir.join("nats"),
                args.nats_monitor_port,
            )?;
            let url = child.url();
            tracing::info!(
                bin = %bin.path.display(),
                version = %bin.version,
                %url,
                log = %child.log_path().display(),
                "started nats-server"
            );
            println!("NATS: {url}  (nats --server {url} stream ls)");
            (Some(child), url)
        }
    };

    let result = run_parts(args, url, shutdown).await;
    if let Some(child) = child {
        child.stop().await;
    }
    result
}

async fn run_parts(
    mut args: UpArgs,
    url: String,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Bound before payments starts, so its URL is known and taken.
    let processor = if args.own_card_processor {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("bind the card processor on a loopback port")?;
        let addr = listener.local_addr()?;
        args.payments.provider_url = format!("http://{addr}");
        let mut settings = jetshop_card_processor::CardProcessorSettings::for_database(
            crate::args::sqlite_url(&args.data_dir, "card-processor"),
        );
        settings.http_addr = addr;
        settings.db = args.db.clone();
        println!("Card processor (test mode): http://{addr}  (tok_visa, tok_chargeDeclined, ...)");
        Some((settings, listener))
    } else {
        None
    };
    // One connection for every part: per-part NATS users cannot apply
    // here. Its own child server is open; a secured one given with
    // --nats-url takes one user for all (see docs/operations/nats-security.md).
    let nats = NatsSettings {
        connect_timeout: args.nats_connect_timeout,
        replicas: args.stream_replicas,
        security: args.nats_security.clone(),
        ..NatsSettings::for_url(url)
    };
    tracing::info!(
        ?nats,
        data_dir = %args.data_dir.display(),
        seed_demo = args.seed_demo,
        shutdown_timeout = ?args.shutdown_timeout,
        db = ?args.db,
        gateway = ?args.gateway,
        catalog = ?args.catalog,
        users = ?args.users,
        orders = ?args.orders,
        payments = ?args.payments,
        card_processor = ?processor.as_ref().map(|(settings, _)| settings),
        notifications = ?args.notifications,
        "jetshop up: effective configuration"
    );
    jetshop_platform::metrics::install();
    let client = tokio::select! {
        client = jetshop_platform::nats::connect(&nats, "jetshop-up") => client?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    let rt = Runtime::new(client.clone(), nats.replicas);

    // `/readyz` waits for every service, not only for those that
    // registered their checks first.
    for service in [
        jetshop_catalog::SERVICE_NAME,
        jetshop_users::SERVICE_NAME,
        jetshop_orders::SERVICE_NAME,
        jetshop_payments::SERVICE_NAME,
        jetshop_notifications::SERVICE_NAME,
    ] {
        rt.health.expect(service).await;
    }

    // Stop order = insertion order: the gateway stops taking requests
    // before the services behind it drain.
    let mut parts = Supervisor::new();
    let gateway_addr = args.gateway.http_addr;
    let notifications_mail_dir = args
        .notifications
        .smtp_url
        .is_none()
        .then(|| args.notifications.mail_dir.clone());
    let (gateway, catalog, users) = (args.gateway, args.catalog, args.users);
    let (orders, payments, notifications) = (args.orders, args.payments, args.notifications);
    let gateway_rt = rt.clone();
    parts.spawn("gateway", move |stop| {
        jetshop_gateway::run(gateway, gateway_rt, stop)
    });
    let catalog_rt = rt.clone();
    parts.spawn(jetshop_catalog::SERVICE_NAME, move |stop| {
        jetshop_catalog::run(catalog, catalog_rt, stop)
    });
    let users_rt = rt.clone();
    parts.spawn(jetshop_users::SERVICE_NAME, move |stop| {
        jetshop_users::run(users, users_rt, stop)
    });
    let orders_rt = rt.clone();
    parts.spawn(jetshop_orders::SERVICE_NAME, move |stop| {
        jetshop_orders::run(orders, orders_rt, stop)
    });
    let payments_rt = rt.clone();
    parts.spawn(jetshop_payments::SERVICE_NAME, move |stop| {
        jetshop_payments::run(payments, payments_rt, stop)
    });
    let notifications_rt = rt.clone();
    parts.spawn(jetshop_notifications::SERVICE_NAME, move |stop| {
        jetshop_notifications::run(notifications, notifications_rt, stop)
    });
    // After payments: it stops once payments has drained.
    if let Some((settings, listener)) = processor {
        parts.spawn(jetshop_card_processor::SERVICE_NAME, move |stop| {
            jetshop_card_processor::serve(settings, listener, stop)
        });
    }
    if args.seed_demo {
        seed::spawn(rt.clone(), shutdown.child_token());
    }
    let mail = notifications_mail_dir;
    tokio::spawn(announce(
        gateway_addr,
        nats.url.clone(),
        mail,
        shutdown.child_token(),
    ));

    let result = parts.run(shutdown, args.shutdown_timeout).await;
    // Everything published so far reaches the server before it stops.
    if let Err(err) = client.drain().await {
        tracing::warn!(error = %err, "draining the NATS connection");
    }
    result
}

/// Email of the admin `jetshop up` creates when none is configured.
pub const DEFAULT_ADMIN_EMAIL: &str = "admin@jetshop.local";

/// What a newcomer needs without configuring anything: an admin account
/// (its password generated once and kept, owner-readable only, in the data
/// dir) and the `swagger-ui` OAuth client for the gateway's own `/docs`.
fn bootstrap_defaults(args: &mut UpArgs) -> anyhow::Result<()> {
    if args.users.admin_email.is_none() && args.users.admin_password.is_none() {
        let path = args.data_dir.join("admin-password");
        let password = match std::fs::read_to_string(&path) {
            Ok(p) => p.trim().to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let p = uuid::Uuid::new_v4().simple().to_string();
                write_private(&path, &p)?;
                p
            }
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        args.users.admin_email = Some(DEFAULT_ADMIN_EMAIL.into());
        args.users.admin_password = Some(password);
        println!(
            "Admin:      {DEFAULT_ADMIN_EMAIL}, password in {}",
            path.display()
        );
    }
    if args.users.swagger_ui_redirect_uris.is_empty() {
        let addr = reachable(args.gateway.http_addr);
        let mut uris = vec![format!(
            "{}/docs/oauth-receiver.html",
            args.gateway.public_url()
        )];
        if args.gateway.auth.public_url.is_none() && addr.ip().is_loopback() {
            // Browsers are pointed at either name; Swagger UI derives the redirect from the page.
            uris.push(format!(
                "http://localhost:{}/docs/oauth-receiver.html",
                addr.port()
            ));
        }
        args.users.swagger_ui_redirect_uris = uris;
    }
    Ok(())
}

/// Write a secret file readable by its owner only.
fn write_private(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    writeln!(file, "{contents}").with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

/// Print where to look once the gateway accepts connections.
async fn announce(
    addr: SocketAddr,
    nats_url: String,
    mail_dir: Option<std::path::PathBuf>,
    stop: CancellationToken,
) {
    let reachable = reachable(addr);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if tokio::net::TcpStream::connect(reachable).await.is_ok() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
        }
    }
    println!("Swagger UI: http://{reachable}/docs");
    println!(
        "REST API:   http://{reachable}/v1/products  (spec /openapi.json, health /healthz /readyz, metrics /metrics)"
    );
    if let Some(dir) = mail_dir {
        println!("Mail:       {}/*.eml  (no --smtp-url given)", dir.display());
    }
    // The operator commands as this very binary, pointed at this NATS.
    let me = std::env::args().next().unwrap_or_else(|| "jetshop".into());
    let nats_url = jetshop_platform::config::redact_url(&nats_url);
    println!("Operate:    {me} dlq ls --nats-url {nats_url}");
    println!("            {me} sagas ls --state stuck --nats-url {nats_url}");
}

/// The address a local client can use for a listening address
/// (`0.0.0.0:8080` is reached as `127.0.0.1:8080`).
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    }
}
