//! `jetshop run <service>`: one service per process, as in a container.
//!
//! The service gets its own NATS connection. A service (not the gateway,
//! which serves them itself) also gets an admin port with `/healthz`,
//! `/readyz` and `/metrics`.

use anyhow::Context;
use jetshop_platform::{config::redact_url, runtime::Runtime};
use tokio_util::sync::CancellationToken;

use crate::{
    args::{RunCatalogArgs, RunGatewayArgs},
    supervisor::Supervisor,
};

/// Run the catalog service until `shutdown`.
pub async fn catalog(args: RunCatalogArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    args.catalog
        .consumer
        .validate()
        .context("catalog settings")?;
    tracing::info!(
        nats = ?args.nats,
        admin_addr = %args.admin_addr,
        shutdown_timeout = ?args.shutdown_timeout,
        database_url = %redact_url(&args.catalog.database_url),
        consumer = ?args.catalog.consumer,
        "jetshop run catalog: effective configuration"
    );
    jetshop_platform::metrics::install();
    let client = tokio::select! {
        client = jetshop_platform::nats::connect(&args.nats, jetshop_catalog::SERVICE_NAME) => client?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    let rt = Runtime::new(client.clone(), args.nats.replicas);

    let mut parts = Supervisor::new();
    let service_rt = rt.clone();
    let settings = args.catalog;
    parts.spawn(jetshop_catalog::SERVICE_NAME, move |stop| {
        jetshop_catalog::run(settings, service_rt, stop)
    });
    // The admin port stops last so readiness stays visible while draining.
    let health = rt.health.clone();
    let admin_addr = args.admin_addr;
    parts.spawn("admin", move |stop| {
        jetshop_platform::admin::serve(admin_addr, health, stop)
    });
    let result = parts.run(shutdown, args.shutdown_timeout).await;
    if let Err(err) = client.drain().await {
        tracing::warn!(error = %err, "draining the NATS connection");
    }
    result
}

/// Run the gateway until `shutdown`.
pub async fn gateway(args: RunGatewayArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    tracing::info!(
        nats = ?args.nats,
        shutdown_timeout = ?args.shutdown_timeout,
        gateway = ?args.gateway,
        "jetshop run gateway: effective configuration"
    );
    jetshop_platform::metrics::install();
    let client = tokio::select! {
        client = jetshop_platform::nats::connect(&args.nats, "gateway") => client?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    let rt = Runtime::new(client.clone(), args.nats.replicas);
    let mut parts = Supervisor::new();
    let settings = args.gateway;
    parts.spawn("gateway", move |stop| {
        jetshop_gateway::run(settings, rt, stop)
    });
    let result = parts.run(shutdown, args.shutdown_timeout).await;
    if let Err(err) = client.drain().await {
        tracing::warn!(error = %err, "draining the NATS connection");
    }
    result
}
