//! The command consumer: create, update and adjust stock.
//!
//! Each command is applied in one transaction together with its inbox
//! claim and the event it causes (outbox), so a redelivered command has no
//! second effect and an effect never exists without its event. Invalid
//! commands go to the DLQ with the reason.

use jetshop_contracts::{
    catalog::{
        AdjustStock, CreateProduct, ProductChanged, ProductCreated, StockAdjusted, UpdateProduct,
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
    domain::{NewProduct, ProductChanges},
    storage::products,
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
                cache.invalidate(changed);
                outbox.notify();
            }
            Ok(())
        }
    };
    consumer::run(js, spec, settings, handler, shutdown).await
}

/// Apply one command; returns the product it changed, or `None` when the
/// command had been applied before.
pub async fn handle(db: &DatabaseConnection, d: &Delivery) -> Result<Option<Uuid>, HandlerError> {
    let meta = d.meta.caused_by();
    let txn = db.begin().await.map_err(HandlerError::transient)?;
    if !inbox::claim(&txn, CONSUMER, &d.dedupe_id())
        .await
        .map_err(HandlerError::transient)?
    {
        tracing::info!(message_id = %d.dedupe_id(), "command already applied; skipping");
        return Ok(None);
    }
    let changed = match d.subject.as_str() {
        subjects::catalog::CREATE_PRODUCT => create(&txn, d.decode()?, &meta).await,
        subjects::catalog::UPDATE_PRODUCT => update(&txn, d.decode()?, &meta).await,
        subjects::catalog::ADJUST_STOCK => adjust(&txn, d.decode()?, &meta).await,
        other => {
            return Err(HandlerError::Permanent(format!(
                "the catalog has no command {other}"
            )));
        }
    }
    .map_err(HandlerError::from)?;
    txn.commit().await.map_err(HandlerError::transient)?;
    Ok(Some(changed))
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
