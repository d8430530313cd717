//! `jetshop up`: the gateway and every service in one process.
//!
//! The parts share one NATS connection (and so one metrics recorder, served
//! at the gateway's `/metrics`) but nothing else: each service has its own
//! SQLite file under the data dir and reaches the others only over NATS,
//! exactly as when they run as separate processes with `jetshop run`.
//!
//! Without `--nats-url` a `nats-server` child is started first and stopped
//! last, after the gateway and the services have drained.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::Context;
use jetshop_platform::{config::NatsSettings, config::redact_url, runtime::Runtime};
use tokio_util::sync::CancellationToken;

use crate::{args::UpArgs, nats_child, seed, supervisor::Supervisor};

/// Run everything until `shutdown`.
pub async fn run(args: UpArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    args.catalog
        .consumer
        .validate()
        .context("catalog settings")?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;

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

async fn run_parts(args: UpArgs, url: String, shutdown: CancellationToken) -> anyhow::Result<()> {
    let nats = NatsSettings {
        url,
        connect_timeout: args.nats_connect_timeout,
        replicas: args.stream_replicas,
    };
    tracing::info!(
        ?nats,
        data_dir = %args.data_dir.display(),
        seed_demo = args.seed_demo,
        shutdown_timeout = ?args.shutdown_timeout,
        gateway = ?args.gateway,
        catalog.database_url = %redact_url(&args.catalog.database_url),
        catalog.consumer = ?args.catalog.consumer,
        "jetshop up: effective configuration"
    );
    jetshop_platform::metrics::install();
    let client = tokio::select! {
        client = jetshop_platform::nats::connect(&nats, "jetshop-up") => client?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    let rt = Runtime::new(client.clone(), nats.replicas);

    // Stop order = insertion order: the gateway stops taking requests
    // before the services behind it drain.
    let mut parts = Supervisor::new();
    let gateway_addr = args.gateway.http_addr;
    let (gateway, catalog) = (args.gateway, args.catalog);
    let gateway_rt = rt.clone();
    parts.spawn("gateway", move |stop| {
        jetshop_gateway::run(gateway, gateway_rt, stop)
    });
    let catalog_rt = rt.clone();
    parts.spawn(jetshop_catalog::SERVICE_NAME, move |stop| {
        jetshop_catalog::run(catalog, catalog_rt, stop)
    });
    if args.seed_demo {
        seed::spawn(rt.clone(), shutdown.child_token());
    }
    tokio::spawn(announce(gateway_addr, shutdown.child_token()));

    let result = parts.run(shutdown, args.shutdown_timeout).await;
    // Everything published so far reaches the server before it stops.
    if let Err(err) = client.drain().await {
        tracing::warn!(error = %err, "draining the NATS connection");
    }
    result
}

/// Print where to look once the gateway accepts connections.
async fn announce(addr: SocketAddr, stop: CancellationToken) {
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
