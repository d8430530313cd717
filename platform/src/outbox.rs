//! The transactional outbox and its relay.
//!
//! A service writes its state change and the events it causes in one
//! database transaction ([`enqueue`]). The [`Relay`] publishes unpublished
//! rows in order with `Nats-Msg-Id` = event id, waits for each PubAck, then
//! marks the rows published. It is woken right after a commit
//! ([`OutboxNotifier::notify`]), polls once a second as a safety net (other
//! replicas, rows left by a crash), and when NATS is down the rows simply
//! wait: JetStream's dedupe window makes a republish after a lost PubAck
//! harmless.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_nats::{HeaderMap, jetstream};
use chrono::Utc;
use jetshop_contracts::{Command, Encoding, Event, Message};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, sea_query::Expr,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    Error,
    envelope::{MessageMeta, headers_for, new_message_id},
    metrics as m,
};

/// The `outbox` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// One event waiting to be (or already) published.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        /// Commit order; the relay publishes in this order.
        #[sea_orm(primary_key)]
        pub seq: i64,
        /// The event id, sent as `Nats-Msg-Id`.
        #[sea_orm(unique)]
        pub message_id: String,
        /// Where it goes.
        pub subject: String,
        /// `Jetshop-Type`, for operators reading the table.
        pub message_type: String,
        /// The encoded event.
        pub payload: Vec<u8>,
        /// Headers as a JSON object (trace context captured at enqueue).
        pub headers: String,
        /// When it was enqueued.
        pub created_at: DateTimeUtc,
        /// When the stream acknowledged it; `None` while pending.
        pub published_at: Option<DateTimeUtc>,
        /// Failed publish attempts.
        pub attempts: i32,
        /// The last publish failure.
        pub last_error: Option<String>,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Add `event` to the outbox, inside the caller's transaction. Returns the event id.
pub async fn enqueue<C: ConnectionTrait, E: Event>(
    db: &C,
    event: &E,
    meta: &MessageMeta,
) -> Result<String, Error> {
    let id = new_message_id().to_string();
    insert(db, E::SUBJECT, &id, event, meta).await?;
    Ok(id)
}

/// Add `event` to the outbox under an id the caller already gave it (an
/// event-sourced service stores the event under the same id it publishes).
pub async fn enqueue_event_as<C: ConnectionTrait, E: Event>(
    db: &C,
    event: &E,
    event_id: &str,
    meta: &MessageMeta,
) -> Result<(), Error> {
    insert(db, E::SUBJECT, event_id, event, meta).await
}

/// Add `command` to the outbox under a message id the caller chose, inside
/// the caller's transaction. A saga derives the id from the order and the
/// step's attempt, so a step sent twice by a crashed and restarted process
/// is one message to JetStream's dedupe and to the receiver's inbox.
pub async fn enqueue_command<C: ConnectionTrait, M: Command>(
    db: &C,
    command: &M,
    message_id: &str,
    meta: &MessageMeta,
) -> Result<(), Error> {
    insert(db, M::SUBJECT, message_id, command, meta).await
}

async fn insert<C: ConnectionTrait, M: Message>(
    db: &C,
    subject: &str,
    id: &str,
    message: &M,
    meta: &MessageMeta,
) -> Result<(), Error> {
    let headers = headers_for::<M>(id, Encoding::MsgPack, meta);
    let headers: BTreeMap<String, String> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                v.first().map(|v| v.as_str().to_owned()).unwrap_or_default(),
            )
        })
        .collect();
    let row = entity::ActiveModel {
        message_id: Set(id.to_owned()),
        subject: Set(subject.to_owned()),
        message_type: Set(M::TYPE.to_owned()),
        payload: Set(Encoding::MsgPack.encode(message)?),
        headers: Set(serde_json::to_string(&headers).unwrap_or_else(|_| "{}".into())),
        created_at: Set(Utc::now()),
        published_at: Set(None),
        attempts: Set(0),
        last_error: Set(None),
        ..Default::default()
    };
    entity::Entity::insert(row)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Wakes the relay after a commit. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct OutboxNotifier(Arc<Notify>);

impl OutboxNotifier {
    /// Tell the relay that new rows were committed.
    pub fn notify(&self) {
        self.0.notify_one();
    }
}

/// Publishes outbox rows to JetStream.
pub struct Relay {
    db: DatabaseConnection,
    js: jetstream::Context,
    notifier: OutboxNotifier,
    service: String,
    batch: u64,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// Published rows are kept this long for operators, then deleted.
const KEEP_PUBLISHED: chrono::TimeDelta = chrono::TimeDelta::hours(24);

impl Relay {
    /// A relay for one service's database.
    pub fn new(db: DatabaseConnection, js: jetstream::Context, service: impl Into<String>) -> Self {
        Self {
            db,
            js,
            notifier: OutboxNotifier::default(),
            service: service.into(),
            batch: 256,
        }
    }

    /// The handle that wakes this relay.
    pub fn notifier(&self) -> OutboxNotifier {
        self.notifier.clone()
    }

    /// Publish until `shutdown`; then make one last pass so committed events
    /// are not left waiting for the next start.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        let mut last_cleanup = tokio::time::Instant::now();
        loop {
            let result = self.publish_batch().await;
            match result {
                Ok(n) if n > 0 => {
                    failures = 0;
                    continue;
                }
                Ok(_) => {
                    failures = 0;
                    if last_cleanup.elapsed() > Duration::from_secs(600) {
                        last_cleanup = tokio::time::Instant::now();
                        if let Err(err) = self.cleanup().await {
                            tracing::warn!(error = %err, "outbox cleanup failed");
                        }
                    }
                    tokio::select! {
                        _ = self.notifier.0.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
                Err(err) => {
                    failures += 1;
                    let delay = Duration::from_millis(200 * 2u64.pow(failures.min(5)))
                        .min(Duration::from_secs(5));
                    tracing::warn!(error = %err, retry_in = ?delay, service = %self.service, "outbox relay cannot publish; events wait in the outbox");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
            }
        }
        match tokio::time::timeout(Duration::from_secs(5), self.publish_batch()).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "outbox final flush failed; events wait for the next start")
            }
            Err(_) => {
                tracing::warn!("outbox final flush timed out; events wait for the next start")
            }
        }
    }

    /// Publish one batch of pending rows; returns how many were published.
    pub async fn publish_batch(&self) -> Result<usize, Error> {
        let rows = entity::Entity::find()
            .filter(entity::Column::PublishedAt.is_null())
            .order_by_asc(entity::Column::Seq)
            .limit(self.batch)
            .all(&self.db)
            .await?;
        if rows.is_empty() {
            metrics::gauge!(m::OUTBOX_BACKLOG, "service" => self.service.clone()).set(0.0);
            return Ok(0);
        }
        // Send the whole batch, then collect the acknowledgements: one round
        // trip per batch instead of per event, still in commit order.
        let mut pending = Vec::with_capacity(rows.len());
        let mut failure = None;
        for row in &rows {
            let headers = decode_headers(&row.headers);
            match self
                .js
                .publish_with_headers(row.subject.clone(), headers, row.payload.clone().into())
                .await
            {
                Ok(ack) => pending.push((row, ack)),
                Err(e) => {
                    failure = Some((row.seq, e.to_string()));
                    break;
                }
            }
        }
        let mut published = Vec::with_capacity(pending.len());
        for (row, ack) in pending {
            match ack.await {
                Ok(_) => published.push(row.seq),
                Err(e) => {
                    failure = Some((row.seq, e.to_string()));
                    break;
                }
            }
        }
        if !published.is_empty() {
            entity::Entity::update_many()
                .col_expr(entity::Column::PublishedAt, Expr::value(Utc::now()))
                .filter(entity::Column::Seq.is_in(published.clone()))
                .exec(&self.db)
                .await?;
            metrics::counter!(m::OUTBOX_PUBLISHED, "service" => self.service.clone())
                .increment(published.len() as u64);
        }
        let backlog = entity::Entity::find()
            .filter(entity::Column::PublishedAt.is_null())
            .count(&self.db)
            .await?;
        metrics::gauge!(m::OUTBOX_BACKLOG, "service" => self.service.clone()).set(backlog as f64);
        if let Some((seq, error)) = failure {
            entity::Entity::update_many()
                .col_expr(
                    entity::Column::Attempts,
                    sea_orm::sea_query::ExprTrait::add(Expr::col(entity::Column::Attempts), 1),
                )
                .col_expr(entity::Column::LastError, Expr::value(error.clone()))
                .filter(entity::Column::Seq.eq(seq))
                .exec(&self.db)
                .await?;
            if published.is_empty() {
                return Err(Error::Publish {
                    subject: format!("outbox row {seq}"),
                    source: error.into(),
                });
            }
        }
        Ok(published.len())
    }

    async fn cleanup(&self) -> Result<(), Error> {
        entity::Entity::delete_many()
            .filter(entity::Column::PublishedAt.lt(Utc::now() - KEEP_PUBLISHED))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

fn decode_headers(json: &str) -> HeaderMap {
    let map: BTreeMap<String, String> = serde_json::from_str(json).unwrap_or_default();
    let mut headers = HeaderMap::new();
    for (k, v) in map {
        headers.insert(k.as_str(), v.as_str());
    }
    headers
}
