//! The command consumer: place and cancel orders.
//!
//! Placement reads prices from the catalog (RPC with timeout and retry)
//! before its transaction; a catalog that cannot be asked makes the command
//! transient (retried with backoff, dead-lettered after the last attempt,
//! replayable with `jetshop dlq replay`). An unknown product is a business
//! outcome: the order is recorded as cancelled with the reason.

use futures::future::join_all;
use jetshop_contracts::{
    ErrorCode,
    catalog::{GetProduct, Product},
    orders::{CancelOrder, OrderPlaced, PlaceOrder},
    streams, subjects,
};
use jetshop_platform::{
    config::ConsumerSettings,
    consumer::{self, ConsumerSpec, Delivery, HandlerError},
    envelope::MessageMeta,
    rpc::{CallError, RpcClient},
};
use tokio_util::sync::CancellationToken;

use crate::{
    Error,
    domain::{pricing, saga::Input},
    engine::Engine,
    storage::events,
};

/// Durable name of the command consumer.
pub const CONSUMER: &str = "orders-commands";

/// Consume the orders' commands until `shutdown`.
pub async fn run(
    js: async_nats::jetstream::Context,
    engine: Engine,
    catalog: RpcClient,
    settings: ConsumerSettings,
    shutdown: CancellationToken,
) -> Result<(), jetshop_platform::Error> {
    let spec = ConsumerSpec {
        stream: streams::ORDERS_COMMANDS.into(),
        durable: CONSUMER.into(),
        description: "Places and cancels orders".into(),
        filter_subjects: vec![
            subjects::orders::PLACE_ORDER.into(),
            subjects::orders::CANCEL_ORDER.into(),
        ],
    };
    let handler = move |d: Delivery| {
        let engine = engine.clone();
        let catalog = catalog.clone();
        async move { handle(&engine, &catalog, &d).await }
    };
    // An order's cancel is applied after its placement, whichever replica
    // holds the order's partition.
    consumer::run_per_key(js, spec, settings, handler, shutdown).await
}

/// Apply one command.
pub async fn handle(
    engine: &Engine,
    catalog: &RpcClient,
    d: &Delivery,
) -> Result<(), HandlerError> {
    let meta = d.meta.caused_by();
    match subjects::keyed::base(&d.subject) {
        subjects::orders::PLACE_ORDER => place(engine, catalog, d, d.decode()?, &meta).await,
        subjects::orders::CANCEL_ORDER => cancel(engine, d, d.decode()?, &meta).await,
        other => Err(HandlerError::Permanent(format!(
            "the orders service has no command {other}"
        ))),
    }
}

async fn place(
    engine: &Engine,
    catalog: &RpcClient,
    d: &Delivery,
    cmd: PlaceOrder,
    meta: &MessageMeta,
) -> Result<(), HandlerError> {
    let lines = pricing::validate(&cmd).map_err(HandlerError::from)?;
    // Cheap early exit for a repeat; the transaction checks again.
    if !events::load(engine.db(), cmd.order_id)
        .await
        .map_err(HandlerError::from)?
        .is_empty()
    {
        tracing::info!(order_id = %cmd.order_id, "order already placed; skipping");
        return Ok(());
    }
    let products = fetch(catalog, &lines, meta)
        .await
        .map_err(HandlerError::from)?;
    let priced = pricing::price(&lines, &products).map(|(lines, total)| OrderPlaced {
        order_id: cmd.order_id,
        customer_id: cmd.customer_id,
        customer_email: cmd.customer_email.clone(),
        lines,
        total,
        placed_at: chrono::Utc::now(),
    });
    engine
        .place(CONSUMER, &d.dedupe_id(), &cmd, priced, meta)
        .await
        .map_err(HandlerError::from)?;
    Ok(())
}

/// Each line's product, `None` when the catalog does not know it.
async fn fetch(
    catalog: &RpcClient,
    lines: &[jetshop_contracts::orders::LineRequest],
    meta: &MessageMeta,
) -> Result<Vec<Option<Product>>, Error> {
    let calls = lines.iter().map(|l| async move {
        match catalog.call(&GetProduct { id: l.product_id }, meta).await {
            Ok(p) => Ok(Some(p)),
            Err(CallError::Remote(e)) if e.code == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(Error::CatalogUnavailable(e.to_string())),
        }
    });
    join_all(calls).await.into_iter().collect()
}

async fn cancel(
    engine: &Engine,
    d: &Delivery,
    cmd: CancelOrder,
    meta: &MessageMeta,
) -> Result<(), HandlerError> {
    let input = Input::CancelRequested {
        by: cmd.requested_by.clone(),
        reason: cmd.reason.clone(),
    };
    let fed = engine
        .feed(Some((CONSUMER, &d.dedupe_id())), cmd.order_id, input, meta)
        .await
        .map_err(HandlerError::from)?;
    tracing::info!(order_id = %cmd.order_id, outcome = ?fed, "cancel handled");
    Ok(())
}
