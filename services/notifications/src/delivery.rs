//! Sending one delivery exactly once, as far as a service can.
//!
//! 1. The delivery row exists (created by the handler from the business
//!    key; a second arrival of the same fact finds it).
//! 2. [`deliver`] takes its lease ([`deliveries::claim`]): one handler
//!    wins; a delivery already sent is acknowledged without a word, and one
//!    being sent by another handler right now is retried later (by then
//!    it is sent, or the other handler failed and gave the lease back).
//! 3. It sends, then records `sent` and enqueues `NotificationSent` in one
//!    transaction.
//! 4. A failure that may pass is given back (`release`) and retried with
//!    backoff; on the last allowed delivery, or for a refusal no retry can
//!    change, the row becomes `failed`, `NotificationFailed` is enqueued in
//!    the same transaction, and the consumer runner dead-letters the message
//!    with the reason. A replay from the DLQ takes the failed row again.
//!
//! The one gap: a crash (SIGKILL, power loss) after the SMTP server
//! accepted the message but before `sent` is committed, or a database
//! outage that outlasts the lease (the handler keeps trying to record the
//! send for as long as its lease holds). The lease then runs out and a
//! redelivery sends again. Neither SMTP nor HTTP has
//! an idempotency key to prevent that; what we can do is make the
//! duplicate recognisable: an email keeps its `Message-ID` (derived from the
//! delivery id) so mail clients show it once, and a webhook call keeps its
//! `Jetshop-Delivery` header for the receiver to dedupe on.

use std::{future::Future, time::Duration};

use chrono::Utc;
use jetshop_contracts::notifications::{NotificationFailed, NotificationSent};
use jetshop_platform::{
    consumer::HandlerError,
    envelope::MessageMeta,
    outbox::{self, OutboxNotifier},
};
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use uuid::Uuid;

use crate::{
    Error, metrics as m,
    storage::{
        deliveries::{self, Claim, channel_name, parse_channel},
        entity::delivery::Model,
    },
};

/// How a send failed, which decides between retrying and giving up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Might work later (server down, timeout, 5xx, 429): retry with backoff.
    #[error("{0}")]
    Transient(String),
    /// Will never work (mailbox refused, webhook answered 4xx): give up now.
    #[error("{0}")]
    Permanent(String),
}

/// Extra time a lease runs beyond the longest possible send, so it never
/// runs out under a handler that is still within its timeout.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// Which delivery of the message in hand this is.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// 1 for the first delivery of the message.
    pub delivered: i64,
    /// The consumer's `max_deliver`: the last delivery is this one.
    pub max_deliver: i64,
}

impl Attempt {
    /// Whether the runner dead-letters the message if this delivery fails.
    pub fn is_last(self) -> bool {
        self.delivered >= self.max_deliver
    }
}

/// Send delivery `id` with `send`, at most once while its lease runs, and
/// record the outcome (see the module docs). `send` gets the claimed row
/// and returns a line for the log.
pub async fn deliver<F, Fut>(
    db: &DatabaseConnection,
    outbox: &OutboxNotifier,
    id: Uuid,
    max_send: Duration,
    attempt: Attempt,
    meta: &MessageMeta,
    send: F,
) -> Result<(), HandlerError>
where
    F: FnOnce(Model) -> Fut,
    Fut: Future<Output = Result<String, SendError>>,
{
    let lease = match deliveries::claim(db, id, max_send + LEASE_MARGIN).await? {
        Claim::Mine(lease) => lease,
        Claim::Settled(state) => {
            tracing::info!(delivery_id = %id, state = state.as_str(), "delivery already settled; nothing to send");
            return Ok(());
        }
        // The other handler's message answers for the delivery until it
        // is settled: it is acked only once the row says sent or failed.
        Claim::Busy if attempt.is_last() => {
            tracing::warn!(delivery_id = %id, "delivery still held by another handler at this message's last attempt; leaving it to that one");
            return Ok(());
        }
        Claim::Busy => {
            return Err(HandlerError::Transient(format!(
                "delivery {id} is being sent by another handler"
            )));
        }
    };
    let row = lease.delivery.clone();
    let channel = parse_channel(&row.channel)?;
    let channel_label = channel_name(channel);
    // The connection that records the outcome is taken before sending, so
    // that the moment between "the message left" and "sent is committed"
    // (the gap in the module docs) is three statements long, never a wait
    // for a pooled connection. The transaction writes nothing (and so locks
    // nothing, on PostgreSQL or SQLite) until the message is out.
    let recorder = match db.begin().await {
        Ok(txn) => txn,
        Err(err) => {
            deliveries::release(db, id, &lease.token, &err.to_string()).await?;
            return Err(Error::from(err).into());
        }
    };
    let started = std::time::Instant::now();
    let outcome = send(row.clone()).await;
    metrics::histogram!(m::SEND_DURATION, "channel" => channel_label)
        .record(started.elapsed().as_secs_f64());
    match outcome {
        Ok(detail) => {
            if let Err(err) = record_sent_in(recorder, &row, meta).await {
                tracing::warn!(delivery_id = %id, error = %err, "cannot record a sent delivery yet; retrying while the lease lasts");
                record_sent(db, &row, meta).await?;
            }
            outbox.notify();
            metrics::counter!(m::SENT, "channel" => channel_label, "kind" => row.kind.clone())
                .increment(1);
            tracing::info!(delivery_id = %id, kind = %row.kind, channel = channel_label, attempts = row.attempts, "{detail}");
            Ok(())
        }
        Err(SendError::Transient(reason)) if !attempt.is_last() => {
            metrics::counter!(m::RETRIED, "channel" => channel_label).increment(1);
            deliveries::release(db, id, &lease.token, &reason).await?;
            Err(HandlerError::Transient(reason))
        }
        Err(err) => {
            let permanent = matches!(err, SendError::Permanent(_));
            let reason = err.to_string();
            record_failed(db, &row, &reason, meta).await?;
            outbox.notify();
            metrics::counter!(m::FAILED, "channel" => channel_label, "kind" => row.kind.clone())
                .increment(1);
            tracing::error!(delivery_id = %id, kind = %row.kind, channel = channel_label, attempts = row.attempts, %reason, "delivery failed for good");
            // The runner dead-letters both: a permanent error at once, a
            // transient one because this was the last delivery.
            Err(if permanent {
                HandlerError::Permanent(reason)
            } else {
                HandlerError::Transient(reason)
            })
        }
    }
}

/// Mark sent and announce it, in one transaction. The message is out: a
/// database that is away now (a restart, a full pool) must not cause a
/// second send, so this keeps trying for as long as the lease keeps other
/// handlers off the delivery (at least [`LEASE_MARGIN`], since the send
/// itself is bounded by the lease's other part). Only an outage that
/// outlasts the lease reopens the gap described in the module docs.
async fn record_sent(
    db: &DatabaseConnection,
    row: &Model,
    meta: &MessageMeta,
) -> Result<(), Error> {
    // The lease's end, by this process's clock (the one that took it),
    // less a second so that the last try commits before it runs out.
    let give_up_ms = row.lease_until_ms.saturating_sub(1_000);
    let mut tries: u32 = 0;
    loop {
        match try_record_sent(db, row, meta).await {
            Ok(()) => return Ok(()),
            Err(err @ (Error::Db(_) | Error::Platform(_)))
                if Utc::now().timestamp_millis() < give_up_ms =>
            {
                tries += 1;
                tracing::warn!(delivery_id = %row.id, error = %err, tries, "cannot record a sent delivery yet; retrying while the lease lasts");
                let pause = Duration::from_millis(200u64 << tries.min(3));
                tokio::time::sleep(pause).await;
            }
            Err(err) => {
                tracing::error!(delivery_id = %row.id, error = %err, tries, "a sent delivery could not be recorded before its lease ran out; it may be sent again");
                return Err(err);
            }
        }
    }
}

async fn try_record_sent(
    db: &DatabaseConnection,
    row: &Model,
    meta: &MessageMeta,
) -> Result<(), Error> {
    record_sent_in(db.begin().await?, row, meta).await
}

/// Mark sent and enqueue `NotificationSent` in `txn`, and commit.
async fn record_sent_in(
    txn: DatabaseTransaction,
    row: &Model,
    meta: &MessageMeta,
) -> Result<(), Error> {
    let id = parse_uuid(&row.id)?;
    if deliveries::mark_sent(&txn, id).await? {
        let event = NotificationSent {
            notification_id: id,
            channel: parse_channel(&row.channel)?,
            kind: row.kind.clone(),
            user_id: parse_uuid(&row.user_id)?,
            order_id: row.order_id.as_deref().map(parse_uuid).transpose()?,
            sent_at: Utc::now(),
        };
        outbox::enqueue(&txn, &event, meta).await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Mark failed and announce it, in one transaction.
async fn record_failed(
    db: &DatabaseConnection,
    row: &Model,
    reason: &str,
    meta: &MessageMeta,
) -> Result<(), Error> {
    let id = parse_uuid(&row.id)?;
    let txn = db.begin().await?;
    if deliveries::mark_failed(&txn, id, reason).await? {
        let event = NotificationFailed {
            notification_id: id,
            channel: parse_channel(&row.channel)?,
            kind: row.kind.clone(),
            user_id: parse_uuid(&row.user_id)?,
            order_id: row.order_id.as_deref().map(parse_uuid).transpose()?,
            reason: reason.to_owned(),
        };
        outbox::enqueue(&txn, &event, meta).await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Ids are stored as text; one that does not parse is a corrupt row.
pub fn parse_uuid(s: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(s).map_err(|e| Error::Internal(format!("stored id {s:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_attempt_is_the_max_deliver_th() {
        let a = Attempt {
            delivered: 2,
            max_deliver: 3,
        };
        assert!(!a.is_last());
        assert!(Attempt { delivered: 3, ..a }.is_last());
    }
}
