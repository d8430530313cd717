//! The command consumer: create, update and adjust stock; reserve, release
//! and commit stock for orders.
//!
//! Each command is applied in one transaction together with its inbox
//! claim and the event it causes (outbox), so a redelivered command has no
//! second effect and an effect never exists without its event. Invalid
//! commands go to the DLQ with the reason.
//!
//! Reservations (the order saga's stock steps):
//! - Reserve takes every line or none: each line is a conditional UPDATE
//!   (`stock >= quantity` in the WHERE), so concurrent orders never oversell,
//!   whatever the isolation level. When a line cannot be had, the whole
//!   transaction rolls back and a fresh one records the inbox claim and a
//!   `StockRejected`: a business outcome, acknowledged, not dead-lettered.
//! - Reserve is idempotent per order: an order that already has a
//!   reservation (in any state) is left alone and nothing is emitted again;
//!   its first outcome's event, published through the outbox, is the answer.
//!   A rejection records no reservation, so a later reserve of the same
//!   order (under a new message id) is a new attempt.
//! - Release gives back `reserved` lines only; a released or committed
//!   order is a no-op (no event), and committed stock never comes back.
//!   Releasing an order never reserved always answers (`StockReleased`
//!   with no lines, since a compensating saga waits for it) and leaves a
//!   released marker, so that reserve command, arriving late, is a no-op.
//! - Commit makes `reserved` lines final (their stock was taken at reserve);
//!   committing again is a no-op, committing a released or unknown order is
//!   a permanent error.

use jetshop_contracts::{
    catalog::{
        AdjustStock, CommitReservation, CreateProduct, ProductChanged, ProductCreated,
        ReleaseStock, ReservationCommitted, ReservationLine, ReserveStock, StockAdjusted,
        StockRejected, StockReleased, StockReserved, UnavailableLine, UpdateProduct,
    },
    streams, subjects,
};
use jetshop_platform::{
    config::ConsumerSettings,
    consumer::{self, ConsumerSpec, Delivery, HandlerError},
    envelope::MessageMeta,
    inbox,
    outbox::{self, OutboxNotifier},
};
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    Error,
    cache::ProductCache,
    domain::{NewProduct, ProductChanges, ReservationRequest},
    storage::{
        products,
        reservations::{self, State},
    },
};

/// Durable name of the command consumer.
pub const CONSUMER: &str = "catalog-commands";

/// Consume the catalog's commands until `shutdown`.
pub async fn run(
    js: async_nats::jetstream::Context,
    db: DatabaseConnection,
    outbox: OutboxNotifier,
    cache: ProductCache,
    settings: ConsumerSettings,
    shutdown: CancellationToken,
) -> Result<(), jetshop_platform::Error> {
    let spec = ConsumerSpec {
        stream: streams::CATALOG_COMMANDS.into(),
        durable: CONSUMER.into(),
        description: "Applies catalog commands".into(),
        filter_subjects: vec![],
    };
    let handler = move |d: Delivery| {
        let db = db.clone();
        let outbox = outbox.clone();
        let cache = cache.clone();
        async move {
            if let Some(changed) = handle(&db, &d).await? {
                // Readers on this instance must not see the old version.
                for id in changed {
                    cache.invalidate(id);
                }
                outbox.notify();
            }
            Ok(())
        }
    };
    consumer::run(js, spec, settings, handler, shutdown).await
}

/// Apply one command; returns the products it changed (possibly none), or
/// `None` when the command had been applied before.
pub async fn handle(
    db: &DatabaseConnection,
    d: &Delivery,
) -> Result<Option<Vec<Uuid>>, HandlerError> {
    let meta = d.meta.caused_by();
    let txn = db.begin().await.map_err(HandlerError::from)?;
    if !inbox::claim(&txn, CONSUMER, &d.dedupe_id())
        .await
        .map_err(HandlerError::from)?
    {
        tracing::info!(message_id = %d.dedupe_id(), "command already applied; skipping");
        return Ok(None);
    }
    let changed = match subjects::keyed::base(&d.subject) {
        subjects::catalog::CREATE_PRODUCT => create(&txn, d.decode()?, &meta).await.map(one),
        subjects::catalog::UPDATE_PRODUCT => update(&txn, d.decode()?, &meta).await.map(one),
        subjects::catalog::ADJUST_STOCK => adjust(&txn, d.decode()?, &meta).await.map(one),
        subjects::catalog::RESERVE_STOCK => match reserve(&txn, d.decode()?, &meta).await? {
            Reservation::Made(touched) => Ok(touched),
            Reservation::Refused(rejected) => {
                txn.rollback().await.map_err(HandlerError::from)?;
                return reject(db, d, rejected, &meta).await;
            }
        },
        subjects::catalog::RELEASE_STOCK => release(&txn, d.decode()?, &meta).await,
        subjects::catalog::COMMIT_RESERVATION => commit(&txn, d.decode()?, &meta).await,
        other => {
            return Err(HandlerError::Permanent(format!(
                "the catalog has no command {other}"
            )));
        }
    }
    .map_err(HandlerError::from)?;
    txn.commit().await.map_err(HandlerError::from)?;
    Ok(Some(changed))
}

fn one(id: Uuid) -> Vec<Uuid> {
    vec![id]
}

async fn create(
    txn: &DatabaseTransaction,
    cmd: CreateProduct,
    meta: &MessageMeta,
) -> Result<Uuid, Error> {
    let new = NewProduct::parse(&cmd)?;
    if let Some(existing) = products::find(txn, new.id).await? {
        // The same create arriving again (a retried request past the
        // stream's dedupe window) is a success without a second event.
        if existing.sku == new.sku.as_str() {
            tracing::info!(product_id = %new.id, "product already exists; create is a no-op");
            return Ok(new.id);
        }
        return Err(Error::AlreadyExists(new.id));
    }
    if let Some(owner) = products::find_by_sku(txn, new.sku.as_str()).await? {
        // Each statement sees the latest commit: the same create, applied
        // concurrently and committed since the lookup above, owns the sku.
        if owner.id == new.id.to_string() {
            return Ok(new.id);
        }
        return Err(Error::DuplicateSku(new.sku.as_str().to_owned()));
    }
    let row = products::insert(txn, &new).await?;
    let product = products::to_wire(&row)?;
    outbox::enqueue(txn, &ProductCreated { product }, meta).await?;
    tracing::info!(product_id = %new.id, sku = %new.sku.as_str(), "product created");
    Ok(new.id)
}

async fn update(
    txn: &DatabaseTransaction,
    cmd: UpdateProduct,
    meta: &MessageMeta,
) -> Result<Uuid, Error> {
    let changes = ProductChanges::parse(&cmd)?;
    let current = products::find(txn, cmd.id)
        .await?
        .ok_or(Error::NotFound(cmd.id))?;
    let row = products::update(txn, current, &changes).await?;
    outbox::enqueue(
        txn,
        &ProductChanged {
            product: products::to_wire(&row)?,
        },
        meta,
    )
    .await?;
    tracing::info!(product_id = %cmd.id, version = row.version, "product changed");
    Ok(cmd.id)
}

async fn adjust(
    txn: &DatabaseTransaction,
    cmd: AdjustStock,
    meta: &MessageMeta,
) -> Result<Uuid, Error> {
    if cmd.delta == 0 {
        return Err(Error::invalid("delta", "must not be zero"));
    }
    let row = products::adjust_stock(txn, cmd.id, cmd.delta).await?;
    let event = StockAdjusted {
        product_id: cmd.id,
        delta: cmd.delta,
        stock: row.stock,
        reason: cmd.reason,
        version: row.version,
    };
    outbox::enqueue(txn, &event, meta).await?;
    tracing::info!(product_id = %cmd.id, delta = cmd.delta, stock = row.stock, "stock adjusted");
    Ok(cmd.id)
}

/// What a reserve came to inside its transaction.
enum Reservation {
    /// Reserved (or reserved before): commit; these products changed.
    Made(Vec<Uuid>),
    /// A line cannot be had: roll back and record this rejection instead.
    Refused(StockRejected),
}

async fn reserve(
    txn: &DatabaseTransaction,
    cmd: ReserveStock,
    meta: &MessageMeta,
) -> Result<Reservation, Error> {
    let req = ReservationRequest::parse(&cmd)?;
    let order_id = req.order_id;
    // Idempotent per order: a reservation in any state means this order was
    // reserved before; change nothing and emit nothing (see the module docs).
    if !reservations::of_order(txn, order_id).await?.is_empty() {
        tracing::info!(%order_id, "order already has a reservation; reserve is a no-op");
        return Ok(Reservation::Made(vec![]));
    }
    // The marker first: it serialises this reserve with a concurrent
    // release of the same order (see `storage::reservations`).
    reservations::insert(txn, order_id, reservations::ORDER_MARKER, 0).await?;
    let mut unavailable = Vec::new();
    for line in &req.lines {
        // The row first: a concurrent reserve of the same order waits on
        // its key (PostgreSQL) and then fails as a conflict, to be retried.
        reservations::insert(txn, order_id, line.product_id, line.quantity).await?;
        // `UPDATE .. SET stock = stock - q WHERE id = ? AND stock >= q`:
        // safe under READ COMMITTED, where each statement sees the latest commit.
        match products::adjust_stock(txn, line.product_id, -line.quantity).await {
            Ok(_) => {}
            // Keep going so that the rejection lists every missing line;
            // everything is rolled back anyway.
            Err(Error::NotFound(_)) => unavailable.push(UnavailableLine {
                product_id: line.product_id,
                requested: line.quantity,
                available: 0,
            }),
            Err(Error::InsufficientStock { stock, .. }) => unavailable.push(UnavailableLine {
                product_id: line.product_id,
                requested: line.quantity,
                available: stock,
            }),
            Err(other) => return Err(other),
        }
    }
    if !unavailable.is_empty() {
        let reason = unavailable
            .iter()
            .map(|u| {
                format!(
                    "product {}: {} requested, {} available",
                    u.product_id, u.requested, u.available
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Ok(Reservation::Refused(StockRejected {
            order_id,
            reason: format!("insufficient stock: {reason}"),
            unavailable,
        }));
    }
    let touched = req.lines.iter().map(|l| l.product_id).collect();
    outbox::enqueue(
        txn,
        &StockReserved {
            order_id,
            lines: req.lines,
        },
        meta,
    )
    .await?;
    tracing::info!(%order_id, "stock reserved");
    Ok(Reservation::Made(touched))
}

/// Record a refused reservation in a fresh transaction: the inbox claim and
/// the `StockRejected` event, nothing else.
async fn reject(
    db: &DatabaseConnection,
    d: &Delivery,
    rejected: StockRejected,
    meta: &MessageMeta,
) -> Result<Option<Vec<Uuid>>, HandlerError> {
    let txn = db.begin().await.map_err(HandlerError::from)?;
    if !inbox::claim(&txn, CONSUMER, &d.dedupe_id())
        .await
        .map_err(HandlerError::from)?
    {
        tracing::info!(message_id = %d.dedupe_id(), "command already applied; skipping");
        return Ok(None);
    }
    let order_id = rejected.order_id;
    // The same order, reserved concurrently under another message id, may
    // have succeeded meanwhile: then its outcome stands and this one is a no-op.
    if reservations::of_order(&txn, order_id)
        .await
        .map_err(HandlerError::from)?
        .is_empty()
    {
        // A `released` marker: the saga cancels the order on this answer,
        // so a resend of the reserve that arrives later (after stock came
        // back) must find the order settled and hold nothing for it.
        reservations::insert_in_state(
            &txn,
            order_id,
            reservations::ORDER_MARKER,
            0,
            State::Released,
        )
        .await
        .map_err(HandlerError::from)?;
        tracing::info!(%order_id, reason = %rejected.reason, "stock reservation rejected");
        outbox::enqueue(&txn, &rejected, meta)
            .await
            .map_err(|e| HandlerError::from(Error::from(e)))?;
    } else {
        tracing::info!(%order_id, "order already has a reservation; reserve is a no-op");
    }
    txn.commit().await.map_err(HandlerError::from)?;
    Ok(Some(vec![]))
}

async fn release(
    txn: &DatabaseTransaction,
    cmd: ReleaseStock,
    meta: &MessageMeta,
) -> Result<Vec<Uuid>, Error> {
    let order_id = cmd.order_id;
    let rows = reservations::of_order(txn, order_id).await?;
    if rows.is_empty() {
        // Never reserved (or not yet: the saga gave up waiting). Leave a
        // released marker so a late reserve is a no-op, and answer anyway:
        // a compensating saga waits for this event.
        reservations::insert_in_state(
            txn,
            order_id,
            reservations::ORDER_MARKER,
            0,
            State::Released,
        )
        .await?;
        outbox::enqueue(
            txn,
            &StockReleased {
                order_id,
                lines: vec![],
            },
            meta,
        )
        .await?;
        tracing::info!(%order_id, "release of an order never reserved: marked released");
        return Ok(vec![]);
    }
    let mut lines = Vec::new();
    let mut moved = false;
    for row in rows {
        if row.state != State::Reserved {
            continue;
        }
        let product_id = row.product_uuid()?;
        if product_id == reservations::ORDER_MARKER {
            moved |= reservations::transition(
                txn,
                order_id,
                product_id,
                State::Reserved,
                State::Released,
            )
            .await?;
            continue;
        }
        // Only the one move that wins `reserved -> released` gives units
        // back: a concurrent commit or release of this line finds it moved.
        if reservations::transition(txn, order_id, product_id, State::Reserved, State::Released)
            .await?
        {
            products::adjust_stock(txn, product_id, row.quantity).await?;
            lines.push(ReservationLine {
                product_id,
                quantity: row.quantity,
            });
        }
    }
    if lines.is_empty() && !moved {
        tracing::info!(%order_id, "nothing reserved for the order; release is a no-op");
        return Ok(vec![]);
    }
    let touched = lines.iter().map(|l| l.product_id).collect();
    outbox::enqueue(txn, &StockReleased { order_id, lines }, meta).await?;
    tracing::info!(%order_id, reason = cmd.reason.as_deref().unwrap_or(""), "stock released");
    Ok(touched)
}

async fn commit(
    txn: &DatabaseTransaction,
    cmd: CommitReservation,
    meta: &MessageMeta,
) -> Result<Vec<Uuid>, Error> {
    let order_id = cmd.order_id;
    let rows = reservations::of_order(txn, order_id).await?;
    if rows.is_empty() {
        return Err(Error::ReservationNotFound(order_id));
    }
    let mut lines = Vec::new();
    for row in rows {
        let product_id = row.product_uuid()?;
        if product_id == reservations::ORDER_MARKER {
            if row.state == State::Released {
                return Err(Error::ReservationReleased(order_id));
            }
            reservations::transition(txn, order_id, product_id, State::Reserved, State::Committed)
                .await?;
            continue;
        }
        let state = match row.state {
            State::Reserved => {
                if reservations::transition(
                    txn,
                    order_id,
                    product_id,
                    State::Reserved,
                    State::Committed,
                )
                .await?
                {
                    lines.push(ReservationLine {
                        product_id,
                        quantity: row.quantity,
                    });
                    continue;
                }
                // Moved by a concurrent release or commit: see where to.
                reservations::find(txn, order_id, product_id)
                    .await?
                    .map_or(State::Released, |r| r.state)
            }
            other => other,
        };
        if state == State::Released {
            return Err(Error::ReservationReleased(order_id));
        }
    }
    if lines.is_empty() {
        tracing::info!(%order_id, "reservation already committed; commit is a no-op");
        return Ok(vec![]);
    }
    outbox::enqueue(txn, &ReservationCommitted { order_id, lines }, meta).await?;
    tracing::info!(%order_id, "reservation committed");
    // The stock was taken at reserve: no product changes now.
    Ok(vec![])
}
