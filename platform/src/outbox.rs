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
//!
//! A row keeps the trace context of the span it was written in (in its
//! headers); the relay publishes it in a PRODUCER span that continues that
//! trace, as the work of the relay's service, and hands the consumer the
//! publish span's context instead: a trace shows the hop and its wait.
//!
//! # One publisher per outbox, any number of replicas
//!
//! Every replica of a service runs a relay over the same table, but only
//! the one holding the outbox's **lease** publishes. The lease is a row of
//! `outbox_lease` (name = the service, holder = this relay's id,
//! `expires_at_ms` by the database's clock, so replicas' clock skew does
//! not matter), taken and renewed by one conditional upsert
//! (`INSERT .. ON CONFLICT (name) DO UPDATE .. WHERE holder = me OR
//! expired`), the same statement on SQLite and PostgreSQL and atomic on
//! both. The holder renews it every [`LeaseSettings::renew_every`]
//! (1 s) with a time to live of [`LeaseSettings::ttl`] (5 s), and checks
//! it before every batch: a holder whose renewal fails, or that could not
//! renew before its lease ran out, publishes nothing more. Standby relays
//! try to take the lease at the same pace and get it once the holder's
//! expires (within `ttl + renew_every` of a crashed or frozen holder); a
//! holder that stops cleanly releases it, so a standby takes over within
//! `renew_every`.
//!
//! Why a lease and not `FOR UPDATE SKIP LOCKED`: rows claimed by several
//! relays at once would leave in whichever order their PubAcks came back,
//! and events of one aggregate must leave in `seq` order; SQLite has no
//! row locks either. One publisher per outbox keeps the order with one
//! plain query, and a batch of 256 rows per round trip is far from the
//! bottleneck.
//!
//! The order promised is that of the committed rows' `seq`, as one relay
//! reads them. Rows of one aggregate come from transactions that follow one
//! another (they conflict on the aggregate), so they leave in the order they
//! were written. Rows of unrelated transactions running at the same time
//! on PostgreSQL may commit out of `seq` order (a sequence value is taken
//! before commit) and then leave in commit order instead.
//!
//! What the lease cannot rule out: a holder that stalls in the middle of a
//! batch for longer than the time to live (a frozen process, a NATS
//! publish timing out) may still send the rest of that batch after a
//! standby took over and sent the same rows. Those repeats carry the same
//! `Nats-Msg-Id` and fall inside the stream's duplicate window, so
//! JetStream stores each event once; and as both relays send in `seq`
//! order, the first copy of each event to arrive still comes in order.
//!
//! Metrics (labelled by service): [`m::OUTBOX_BACKLOG`] (rows not yet
//! published), [`m::OUTBOX_OLDEST_AGE`] (age of the oldest of them, 0 when
//! there is none) and [`m::OUTBOX_LEASE_HELD`] (1 on the replica that
//! publishes), measured by every replica, so a backlog shows even when no
//! replica holds the lease.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_nats::{HeaderMap, jetstream};
use chrono::Utc;
use jetshop_contracts::{Command, Encoding, Event, Message};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
    sea_query::{Alias, Expr, OnConflict, Query},
};
use tokio::{sync::Notify, time::Instant};
use tokio_util::sync::CancellationToken;

use tracing::Instrument;

use crate::{
    Error, envelope,
    envelope::{MessageMeta, headers_for, new_message_id},
    metrics as m, telemetry,
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
    insert(db, &event.subject(), &id, event, meta).await?;
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
    insert(db, &event.subject(), event_id, event, meta).await
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
    insert(db, &command.subject(), message_id, command, meta).await
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

/// How relays of one outbox share it (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseSettings {
    /// How long a lease lasts unless renewed: how long the outbox waits
    /// for a standby after its holder dies.
    pub ttl: Duration,
    /// How often the holder renews it and a standby tries to take it.
    pub renew_every: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(5),
            renew_every: Duration::from_secs(1),
        }
    }
}

/// Whether a relay holds its outbox's lease right now. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct LeaseStatus(Arc<AtomicBool>);

impl LeaseStatus {
    /// True while this relay is the one that publishes.
    pub fn is_held(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// This relay's claim on the outbox.
struct Lease {
    /// The lease row's name: one per service outbox.
    name: String,
    /// Who we are in the `holder` column.
    holder: String,
    settings: LeaseSettings,
    /// Until when (by our monotonic clock) we may publish; `None` when we
    /// do not hold it. Counted from before the renewal was sent, so it
    /// never outlives the row's `expires_at_ms`.
    held_until: Option<Instant>,
    /// When we last renewed it.
    renewed_at: Option<Instant>,
    status: LeaseStatus,
}

/// Publishes outbox rows to JetStream.
pub struct Relay {
    db: DatabaseConnection,
    js: jetstream::Context,
    notifier: OutboxNotifier,
    service: String,
    batch: u64,
    lease: Lease,
    /// When the backlog gauges were last measured from the table.
    measured_at: std::sync::Mutex<Option<Instant>>,
}

/// Least time between two measurements of the backlog while publishing:
/// each is two queries, and a busy relay publishes many small batches a
/// second (every statement is a trip to the database's thread); a gauge
/// scraped every few seconds needs no more.
const MEASURE_EVERY: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("service", &self.service)
            .field("holder", &self.lease.holder)
            .finish_non_exhaustive()
    }
}

/// Published rows are kept this long for operators, then deleted.
const KEEP_PUBLISHED: chrono::TimeDelta = chrono::TimeDelta::hours(24);

impl Relay {
    /// A relay for one service's database.
    pub fn new(db: DatabaseConnection, js: jetstream::Context, service: impl Into<String>) -> Self {
        let service = service.into();
        Self {
            db,
            js,
            notifier: OutboxNotifier::default(),
            lease: Lease {
                name: service.clone(),
                holder: holder_id(),
                settings: LeaseSettings::default(),
                held_until: None,
                renewed_at: None,
                status: LeaseStatus::default(),
            },
            service,
            batch: 256,
            measured_at: std::sync::Mutex::new(None),
        }
    }

    /// Share the outbox with other replicas on these terms instead of the
    /// defaults (tests shorten them).
    pub fn with_lease(mut self, settings: LeaseSettings) -> Self {
        self.lease.settings = settings;
        self
    }

    /// Publish at most this many rows per batch (256 by default).
    pub fn with_batch(mut self, batch: u64) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// The handle that wakes this relay.
    pub fn notifier(&self) -> OutboxNotifier {
        self.notifier.clone()
    }

    /// Whether this relay holds the outbox's lease (and so publishes).
    pub fn lease_status(&self) -> LeaseStatus {
        self.lease.status.clone()
    }

    /// This relay's id in the `outbox_lease` table.
    pub fn holder(&self) -> &str {
        &self.lease.holder
    }

    /// Publish until `shutdown` while holding the outbox's lease, standing
    /// by while another replica holds it; then make one last pass (if still
    /// the holder) so committed events are not left waiting for the next
    /// start, and release the lease so a standby takes over at once.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        let mut last_cleanup = tokio::time::Instant::now();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            // Before every batch: are we (still) the one that publishes?
            match self.ensure_lease().await {
                Ok(true) => {}
                Ok(false) => {
                    failures = 0;
                    if let Err(err) = self.measure().await {
                        tracing::debug!(error = %err, "outbox metrics not measured");
                    }
                    // A notify here is another commit that the holder will
                    // find on its next poll; nothing for us to do but wait
                    // for our next chance at the lease.
                    tokio::select! {
                        _ = tokio::time::sleep(self.lease.settings.renew_every) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    continue;
                }
                Err(err) => {
                    failures += 1;
                    let delay = Duration::from_millis(200 * 2u64.pow(failures.min(5)))
                        .min(self.lease.settings.renew_every);
                    tracing::warn!(error = %err, retry_in = ?delay, service = %self.service, "outbox relay cannot check its lease; events wait in the outbox");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    continue;
                }
            }
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
                    // Idle: wake on a commit, or poll (and renew the lease)
                    // once per renewal period.
                    tokio::select! {
                        _ = self.notifier.0.notified() => {}
                        _ = tokio::time::sleep(self.lease.settings.renew_every) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
                Err(err) => {
                    failures += 1;
                    // Capped at the renewal period: the lease must be
                    // renewed while NATS is down, or a standby would take
                    // over only to fail the same way.
                    let delay = Duration::from_millis(200 * 2u64.pow(failures.min(5)))
                        .min(Duration::from_secs(5))
                        .min(self.lease.settings.renew_every);
                    tracing::warn!(error = %err, retry_in = ?delay, service = %self.service, "outbox relay cannot publish; events wait in the outbox");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
            }
        }
        let flush = async {
            if self.ensure_lease().await? {
                self.publish_batch().await?;
            }
            Ok::<_, Error>(())
        };
        match tokio::time::timeout(Duration::from_secs(5), flush).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "outbox final flush failed; events wait for the next start")
            }
            Err(_) => {
                tracing::warn!("outbox final flush timed out; events wait for the next start")
            }
        }
        if let Err(err) = self.release_lease().await {
            tracing::warn!(error = %err, service = %self.service, "outbox lease not released; a standby takes over when it expires");
        }
    }

    /// Take or renew the lease when due. Returns whether this relay may
    /// publish its next batch.
    async fn ensure_lease(&mut self) -> Result<bool, Error> {
        let now = Instant::now();
        let settings = &self.lease.settings;
        if let (Some(until), Some(renewed)) = (self.lease.held_until, self.lease.renewed_at)
            && now.duration_since(renewed) < settings.renew_every
            && until > now + settings.renew_every
        {
            return Ok(true);
        }
        let sent = Instant::now();
        let result = try_lease(&self.db, &self.lease.name, &self.lease.holder, settings.ttl).await;
        match result {
            Ok(true) => {
                if self.lease.held_until.is_none() {
                    tracing::info!(service = %self.service, holder = %self.lease.holder, "outbox lease taken; this replica publishes the outbox");
                }
                self.lease.held_until = Some(sent + settings.ttl);
                self.lease.renewed_at = Some(sent);
                self.set_held(true);
                Ok(true)
            }
            Ok(false) => {
                if self.lease.held_until.is_some() {
                    tracing::warn!(service = %self.service, holder = %self.lease.holder, "outbox lease lost to another replica; standing by");
                }
                self.lease.held_until = None;
                self.lease.renewed_at = None;
                self.set_held(false);
                Ok(false)
            }
            Err(err) => {
                // Not renewed: still ours until it runs out, not after.
                if self
                    .lease
                    .held_until
                    .is_some_and(|until| until <= Instant::now())
                {
                    tracing::warn!(service = %self.service, holder = %self.lease.holder, "outbox lease ran out before it could be renewed; standing by");
                    self.lease.held_until = None;
                    self.lease.renewed_at = None;
                    self.set_held(false);
                }
                Err(err)
            }
        }
    }

    /// Give the lease up (on shutdown) so a standby need not wait it out.
    async fn release_lease(&mut self) -> Result<(), Error> {
        if self.lease.held_until.take().is_none() {
            return Ok(());
        }
        use sea_orm::sea_query::ExprTrait;
        self.lease.renewed_at = None;
        self.set_held(false);
        let stmt = Query::update()
            .table(Alias::new(LEASE_TABLE))
            .value(Alias::new("expires_at_ms"), 0i64)
            .and_where(Expr::col(Alias::new("name")).eq(self.lease.name.as_str()))
            .and_where(Expr::col(Alias::new("holder")).eq(self.lease.holder.as_str()))
            .to_owned();
        self.db.execute(&stmt).await?;
        tracing::info!(service = %self.service, holder = %self.lease.holder, "outbox lease released");
        Ok(())
    }

    fn set_held(&self, held: bool) {
        self.lease.status.0.store(held, Ordering::Relaxed);
        metrics::gauge!(m::OUTBOX_LEASE_HELD, "service" => self.service.clone()).set(if held {
            1.0
        } else {
            0.0
        });
    }

    /// Measure the backlog and the age of its oldest row.
    async fn measure(&self) -> Result<(), Error> {
        let backlog = entity::Entity::find()
            .filter(entity::Column::PublishedAt.is_null())
            .count(&self.db)
            .await?;
        let oldest: Option<chrono::DateTime<Utc>> = if backlog == 0 {
            None
        } else {
            entity::Entity::find()
                .select_only()
                .column(entity::Column::CreatedAt)
                .filter(entity::Column::PublishedAt.is_null())
                .order_by_asc(entity::Column::Seq)
                .into_tuple()
                .one(&self.db)
                .await?
        };
        let age = oldest
            .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        metrics::gauge!(m::OUTBOX_BACKLOG, "service" => self.service.clone()).set(backlog as f64);
        metrics::gauge!(m::OUTBOX_OLDEST_AGE, "service" => self.service.clone()).set(age);
        Ok(())
    }

    /// Publish one batch of pending rows; returns how many were published.
    /// This does not look at the lease: [`Relay::run`] calls it only while
    /// holding it (tests call it directly).
    pub async fn publish_batch(&self) -> Result<usize, Error> {
        let rows = entity::Entity::find()
            .filter(entity::Column::PublishedAt.is_null())
            .order_by_asc(entity::Column::Seq)
            .limit(self.batch)
            .all(&self.db)
            .await?;
        if rows.is_empty() {
            metrics::gauge!(m::OUTBOX_BACKLOG, "service" => self.service.clone()).set(0.0);
            metrics::gauge!(m::OUTBOX_OLDEST_AGE, "service" => self.service.clone()).set(0.0);
            return Ok(0);
        }
        // Send the whole batch, then collect the acknowledgements: one round
        // trip per batch instead of per event, still in commit order.
        let mut pending = Vec::with_capacity(rows.len());
        let mut failure = None;
        for row in &rows {
            let mut headers = decode_headers(&row.headers);
            // The publish continues the trace the row was written in, as
            // this service's work; the consumer's span becomes its child.
            let span = envelope::producer_span(&row.subject);
            telemetry::set_parent(&span, &self.service, Some(&headers));
            telemetry::inject(&span, &mut headers);
            match self
                .js
                .publish_with_headers(row.subject.clone(), headers, row.payload.clone().into())
                .instrument(span.clone())
                .await
            {
                Ok(ack) => pending.push((row, ack, span)),
                Err(e) => {
                    span.record("otel.status_code", "ERROR");
                    failure = Some((row.seq, e.to_string()));
                    break;
                }
            }
        }
        let mut published = Vec::with_capacity(pending.len());
        let mut duplicates = 0u64;
        // Each span ends with its acknowledgement (dropped with `pending`
        // after a failure).
        for (row, ack, span) in pending {
            match ack.await {
                Ok(ack) => {
                    duplicates += u64::from(ack.duplicate);
                    published.push(row.seq);
                }
                Err(e) => {
                    span.record("otel.status_code", "ERROR");
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
            if duplicates > 0 {
                // Another relay (or this one, before a crash) sent them first.
                metrics::counter!(m::OUTBOX_DUPLICATES, "service" => self.service.clone())
                    .increment(duplicates);
            }
        }
        // Measured after a failure (the figure operators look at then) and
        // at most once a second otherwise. A short batch sent whole most
        // likely emptied the outbox: say so without asking; a commit since
        // shows at the next measurement.
        let drained = failure.is_none() && (rows.len() as u64) < self.batch;
        let due = {
            let mut at = self.measured_at.lock().unwrap_or_else(|e| e.into_inner());
            let due = failure.is_some() || at.is_none_or(|t| t.elapsed() >= MEASURE_EVERY);
            if due {
                *at = Some(Instant::now());
            }
            due
        };
        if due {
            self.measure().await?;
        } else if drained {
            metrics::gauge!(m::OUTBOX_BACKLOG, "service" => self.service.clone()).set(0.0);
            metrics::gauge!(m::OUTBOX_OLDEST_AGE, "service" => self.service.clone()).set(0.0);
        }
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

/// The lease table (created by [`crate::db::shared_migrations`]).
const LEASE_TABLE: &str = "outbox_lease";

/// Take the lease `name` for `holder` for `ttl`, or renew it: one upsert
/// that succeeds when the lease is free, expired or already ours, by the
/// database's clock. Returns whether `holder` now holds it.
pub async fn try_lease<C: ConnectionTrait>(
    db: &C,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<bool, Error> {
    use sea_orm::sea_query::ExprTrait;
    let now = db_now_ms(db.get_database_backend());
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
    let table = Alias::new(LEASE_TABLE);
    let stmt = Query::insert()
        .into_table(table.clone())
        .columns([
            Alias::new("name"),
            Alias::new("holder"),
            Alias::new("expires_at_ms"),
        ])
        .values_panic([name.into(), holder.into(), Expr::cust(now).add(ttl_ms)])
        .on_conflict(
            OnConflict::column(Alias::new("name"))
                .update_columns([Alias::new("holder"), Alias::new("expires_at_ms")])
                .action_and_where(
                    Expr::col((table.clone(), Alias::new("holder")))
                        .eq(holder)
                        .or(Expr::col((table, Alias::new("expires_at_ms"))).lt(Expr::cust(now))),
                )
                .to_owned(),
        )
        .to_owned();
    Ok(db.execute(&stmt).await?.rows_affected() == 1)
}

/// The database's clock in milliseconds since the Unix epoch.
fn db_now_ms(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
        // clock_timestamp(), not now(): the time of the statement, even
        // inside a long transaction.
        _ => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    }
}

/// A relay's id in the lease table: the host (a pod's name), the process
/// and a random part, so an operator can tell who publishes.
fn holder_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".into());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}/{}/{}", std::process::id(), &random[..8])
}

fn decode_headers(json: &str) -> HeaderMap {
    let map: BTreeMap<String, String> = serde_json::from_str(json).unwrap_or_default();
    let mut headers = HeaderMap::new();
    for (k, v) in map {
        headers.insert(k.as_str(), v.as_str());
    }
    headers
}
