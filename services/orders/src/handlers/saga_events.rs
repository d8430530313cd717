//! The saga's ears: the catalog's stock events and the payments' events,
//! each turned into an [`Input`] for the order's saga.
//!
//! Per-order ordering: several instances may consume these at once. Each
//! input is applied with an optimistic version check on the saga row (and
//! the event store's unique sequence); a loser rolls back and retries from
//! a fresh read, so one order's inputs are applied one at a time, in the
//! order they win, and the state machine ignores any that no longer fit.

use jetshop_contracts::{
    catalog::{ReservationCommitted, StockRejected, StockReleased, StockReserved},
    payments::{
        PaymentAuthorized, PaymentCaptured, PaymentDeclined, PaymentRefunded, PaymentVoided,
    },
    streams,
    subjects::{self, catalog as cat, payments as pay},
};
use jetshop_platform::{
    config::ConsumerSettings,
    consumer::{self, ConsumerSpec, Delivery, HandlerError},
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{domain::saga::Input, engine::Engine};

/// Durable name of the consumer of the catalog's reservation events.
pub const STOCK_CONSUMER: &str = "orders-saga-stock";
/// Durable name of the consumer of the payments' events.
pub const PAYMENTS_CONSUMER: &str = "orders-saga-payments";

/// Consume the catalog's reservation events until `shutdown`.
pub async fn run_stock(
    js: async_nats::jetstream::Context,
    engine: Engine,
    settings: ConsumerSettings,
    shutdown: CancellationToken,
) -> Result<(), jetshop_platform::Error> {
    let spec = ConsumerSpec {
        stream: streams::CATALOG_EVENTS.into(),
        durable: STOCK_CONSUMER.into(),
        description: "Feeds the catalog's reservation outcomes to the order saga".into(),
        filter_subjects: vec![
            cat::STOCK_RESERVED.into(),
            cat::STOCK_REJECTED.into(),
            cat::STOCK_RELEASED.into(),
            cat::RESERVATION_COMMITTED.into(),
        ],
    };
    run(js, spec, engine, settings, shutdown).await
}

/// Consume the payments' events until `shutdown`.
pub async fn run_payments(
    js: async_nats::jetstream::Context,
    engine: Engine,
    settings: ConsumerSettings,
    shutdown: CancellationToken,
) -> Result<(), jetshop_platform::Error> {
    let spec = ConsumerSpec {
        stream: streams::PAYMENTS_EVENTS.into(),
        durable: PAYMENTS_CONSUMER.into(),
        description: "Feeds payment outcomes to the order saga".into(),
        filter_subjects: vec![
            pay::AUTHORIZED.into(),
            pay::DECLINED.into(),
            pay::CAPTURED.into(),
            pay::VOIDED.into(),
            pay::REFUNDED.into(),
        ],
    };
    run(js, spec, engine, settings, shutdown).await
}

async fn run(
    js: async_nats::jetstream::Context,
    spec: ConsumerSpec,
    engine: Engine,
    settings: ConsumerSettings,
    shutdown: CancellationToken,
) -> Result<(), jetshop_platform::Error> {
    let handler = move |d: Delivery| {
        let engine = engine.clone();
        async move { handle(&engine, &d).await }
    };
    // A saga takes its order's answers in the order they were published,
    // whichever replica holds the order's partition.
    consumer::run_per_key(js, spec, settings, handler, shutdown).await
}

/// Feed one event to its order's saga.
pub async fn handle(engine: &Engine, d: &Delivery) -> Result<(), HandlerError> {
    let Some((order_id, input)) = input_of(d)? else {
        tracing::debug!(subject = %d.subject, "not a saga answer; acknowledged");
        return Ok(());
    };
    engine
        .feed(
            Some((&d.consumer, &d.dedupe_id())),
            order_id,
            input,
            &d.meta.caused_by(),
        )
        .await
        .map_err(HandlerError::from)?;
    Ok(())
}

/// The order and saga input an event stands for.
fn input_of(d: &Delivery) -> Result<Option<(Uuid, Input)>, HandlerError> {
    Ok(Some(match subjects::keyed::base(&d.subject) {
        cat::STOCK_RESERVED => (d.decode::<StockReserved>()?.order_id, Input::StockReserved),
        cat::STOCK_REJECTED => {
            let e: StockRejected = d.decode()?;
            (e.order_id, Input::StockRejected { reason: e.reason })
        }
        cat::STOCK_RELEASED => (d.decode::<StockReleased>()?.order_id, Input::StockReleased),
        cat::RESERVATION_COMMITTED => (
            d.decode::<ReservationCommitted>()?.order_id,
            Input::ReservationCommitted,
        ),
        pay::AUTHORIZED => {
            let e: PaymentAuthorized = d.decode()?;
            (
                e.order_id,
                Input::PaymentAuthorized {
                    payment_id: e.payment_id,
                    amount: e.amount,
                },
            )
        }
        pay::DECLINED => {
            let e: PaymentDeclined = d.decode()?;
            (e.order_id, Input::PaymentDeclined { reason: e.reason })
        }
        pay::CAPTURED => {
            let e: PaymentCaptured = d.decode()?;
            (
                e.order_id,
                Input::PaymentCaptured {
                    payment_id: e.payment_id,
                    amount: e.amount,
                },
            )
        }
        pay::VOIDED => (d.decode::<PaymentVoided>()?.order_id, Input::PaymentVoided),
        pay::REFUNDED => (
            d.decode::<PaymentRefunded>()?.order_id,
            Input::PaymentRefunded,
        ),
        _ => return Ok(None),
    }))
}
