//! `--seed-demo`: load the demo catalog through the front door.
//!
//! The products go in as ordinary `CreateProduct` commands on the catalog's
//! commands stream, exactly as any other client would send them. Each
//! command's id is the product id, so seeding twice is harmless: JetStream
//! drops a repeat within its duplicate window, and the catalog recognises a
//! product it already has after that.

use std::time::Duration;

use jetshop_contracts::streams;
use jetshop_platform::{
    envelope::{MessageMeta, send_command},
    runtime::Runtime,
};
use tokio_util::sync::CancellationToken;

use crate::args::SeedArgs;

/// How long to wait for the catalog to provision its commands stream.
const STREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// Correlation id on every seeding command, to find them in traces and the DLQ.
const CORRELATION_ID: &str = "jetshop-seed-demo";

/// Send the demo products once the catalog's commands stream exists.
/// Returns how many were sent (0 when `stop` came first).
pub async fn demo_catalog(rt: &Runtime, stop: &CancellationToken) -> anyhow::Result<usize> {
    let js = rt.jetstream();
    // The catalog creates its streams at start; publishing before that
    // would find no stream and fail.
    let deadline = tokio::time::Instant::now() + STREAM_TIMEOUT;
    while js.get_stream(streams::CATALOG_COMMANDS).await.is_err() {
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "stream {} did not appear within {STREAM_TIMEOUT:?}: is the catalog running?",
                streams::CATALOG_COMMANDS
            );
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(0),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    let products = jetshop_catalog::demo::products();
    let meta = MessageMeta::correlated(CORRELATION_ID);
    for product in &products {
        send_command(&js, &product.id.to_string(), product, &meta).await?;
    }
    Ok(products.len())
}

/// `jetshop seed`: connect, send the demo catalog, exit.
pub async fn run(args: SeedArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    tracing::info!(nats = ?args.nats, "jetshop seed: effective configuration");
    let client = tokio::select! {
        client = jetshop_platform::nats::connect(&args.nats, "jetshop-seed") => client?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    let rt = Runtime::new(client.clone(), args.nats.replicas);
    let sent = demo_catalog(&rt, &shutdown).await?;
    client.flush().await?;
    println!("sent {sent} demo products to the catalog service");
    Ok(())
}

/// Seed in the background, logging the outcome; never fails the process.
pub fn spawn(rt: Runtime, stop: CancellationToken) {
    tokio::spawn(async move {
        match demo_catalog(&rt, &stop).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(products = n, "demo catalog sent to the catalog service"),
            Err(err) => tracing::error!(
                error = format!("{err:#}"),
                "seeding the demo catalog failed"
            ),
        }
    });
}
