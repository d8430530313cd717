//! `jetshop run <service>`: one service per process, as in a container.
//!
//! The service gets its own NATS connection. A service (not the gateway,
//! which serves them itself) also gets an admin port with `/healthz`,
//! `/readyz` and `/metrics`.

use std::{future::Future, net::SocketAddr, time::Duration};

use anyhow::Context;
use jetshop_platform::{config::NatsSettings, runtime::Runtime};
use tokio_util::sync::CancellationToken;

use crate::{
    args::{
        RunCardProcessorArgs, RunCatalogArgs, RunGatewayArgs, RunNotificationsArgs, RunOrdersArgs,
        RunPaymentsArgs, RunUsersArgs, ServiceProcessArgs,
    },
    supervisor::Supervisor,
};

/// Run the catalog service until `shutdown`.
pub async fn catalog(mut args: RunCatalogArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    args.catalog
        .consumer
        .validate()
        .context("catalog settings")?;
    args.db.validate().context("database settings")?;
    args.catalog.db = args.db.clone();
    tracing::info!(
        nats = ?args.nats,
        admin_addr = %args.admin_addr,
        shutdown_timeout = ?args.shutdown_timeout,
        catalog = ?args.catalog,
        "jetshop run catalog: effective configuration"
    );
    let settings = args.catalog;
    service(
        jetshop_catalog::SERVICE_NAME,
        &args.nats,
        args.admin_addr,
        args.shutdown_timeout,
        shutdown,
        move |rt, stop| jetshop_catalog::run(settings, rt, stop),
    )
    .await
}

/// Run the users service until `shutdown`.
pub async fn users(mut args: RunUsersArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    args.users.validate().context("users settings")?;
    args.db.validate().context("database settings")?;
    args.users.db = args.db.clone();
    tracing::info!(
        nats = ?args.nats,
        admin_addr = %args.admin_addr,
        shutdown_timeout = ?args.shutdown_timeout,
        users = ?args.users,
        "jetshop run users: effective configuration"
    );
    let settings = args.users;
    service(
        jetshop_users::SERVICE_NAME,
        &args.nats,
        args.admin_addr,
        args.shutdown_timeout,
        shutdown,
        move |rt, stop| jetshop_users::run(settings, rt, stop),
    )
    .await
}

/// Run the orders service (and its saga) until `shutdown`.
pub async fn orders(args: RunOrdersArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut settings = args.orders;
    settings.consumer = args.process.consumer.clone();
    args.process.db.validate().context("database settings")?;
    settings.db = args.process.db.clone();
    settings.consumer.validate().context("orders settings")?;
    consuming(
        jetshop_orders::SERVICE_NAME,
        args.admin_addr,
        args.process,
        settings,
        shutdown,
        jetshop_orders::run,
    )
    .await
}

/// Run the payments service until `shutdown`.
pub async fn payments(args: RunPaymentsArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut settings = args.payments;
    settings.consumer = args.process.consumer.clone();
    args.process.db.validate().context("database settings")?;
    settings.db = args.process.db.clone();
    settings.validate().context("payments settings")?;
    consuming(
        jetshop_payments::SERVICE_NAME,
        args.admin_addr,
        args.process,
        settings,
        shutdown,
        jetshop_payments::run,
    )
    .await
}

/// Run the notifications service until `shutdown`.
pub async fn notifications(
    args: RunNotificationsArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut settings = args.notifications;
    settings.consumer = args.process.consumer.clone();
    args.process.db.validate().context("database settings")?;
    settings.db = args.process.db.clone();
    settings.validate().context("notifications settings")?;
    consuming(
        jetshop_notifications::SERVICE_NAME,
        args.admin_addr,
        args.process,
        settings,
        shutdown,
        jetshop_notifications::run,
    )
    .await
}

/// Run the card processor until `shutdown`. It has no NATS connection and
/// no admin port: it is outside the shop, reached over its own HTTP API
/// (which serves `/healthz`).
pub async fn card_processor(
    mut args: RunCardProcessorArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    args.processor.db = args.db.clone();
    args.processor
        .validate()
        .context("card processor settings")?;
    tracing::info!(
        shutdown_timeout = ?args.shutdown_timeout,
        processor = ?args.processor,
        "jetshop run card-processor: effective configuration"
    );
    let mut parts = Supervisor::new();
    let settings = args.processor;
    parts.spawn(jetshop_card_processor::SERVICE_NAME, move |stop| {
        jetshop_card_processor::run(settings, stop)
    });
    parts.run(shutdown, args.shutdown_timeout).await
}

/// A service with consumers (its settings already hold the process's
/// consumer policy): log the effective configuration, then run it.
async fn consuming<S, F, Fut, E>(
    name: &'static str,
    admin_addr: SocketAddr,
    process: ServiceProcessArgs,
    settings: S,
    shutdown: CancellationToken,
    run: F,
) -> anyhow::Result<()>
where
    S: std::fmt::Debug + Send + 'static,
    F: FnOnce(S, Runtime, CancellationToken) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    tracing::info!(
        nats = ?process.nats,
        %admin_addr,
        shutdown_timeout = ?process.shutdown_timeout,
        ?settings,
        "jetshop run {name}: effective configuration"
    );
    service(
        name,
        &process.nats,
        admin_addr,
        process.shutdown_timeout,
        shutdown,
        move |rt, stop| run(settings, rt, stop),
    )
    .await
}

/// One service with its own NATS connection and an admin port.
async fn service<F, Fut, E>(
    name: &'static str,
    nats: &NatsSettings,
    admin_addr: SocketAddr,
    shutdown_timeout: Duration,
    shutdown: CancellationToken,
    run: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Runtime, CancellationToken) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    jetshop_platform::metrics::install();
    let client = tokio::select! {
        client = jetshop_platform::nats::connect(nats, name) => client?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    let rt = Runtime::new(client.clone(), nats.replicas);

    // Not ready until the service has migrated, provisioned and started
    // its consumers: the admin port answers before that.
    rt.health.expect(name).await;
    let mut parts = Supervisor::new();
    let service_rt = rt.clone();
    parts.spawn(name, move |stop| run(service_rt, stop));
    // The admin port stops last so readiness stays visible while draining.
    let health = rt.health.clone();
    parts.spawn("admin", move |stop| {
        jetshop_platform::admin::serve(admin_addr, health, stop)
    });
    let result = parts.run(shutdown, shutdown_timeout).await;
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
