//! The orchestrator: applies the saga's decisions. One decision is one
//! database transaction holding the inbox claim, the aggregate's new events
//! (and their outbox rows), the projection, the saga's new state (checked
//! against the version read), the timeline and the next command (outbox).
//! A lost race with another instance rolls everything back and starts
//! again from a fresh read.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jetshop_contracts::{
    catalog::{CommitReservation, ReleaseStock, ReservationLine, ReserveStock},
    orders::{
        OrderCancellationRequested, OrderPaymentAuthorized, OrderPaymentCaptured, OrderPlaced,
        OrderStockReserved, PlaceOrder,
    },
    payments::{AuthorizePayment, CapturePayment, RefundPayment, VoidPayment},
};
use jetshop_platform::{
    envelope::MessageMeta,
    inbox,
    outbox::{self, OutboxNotifier},
};
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use uuid::Uuid;

use crate::{
    Error,
    domain::{
        order::{Order, OrderEvent},
        saga::{Decision, Fact, Input, Next, Note, SagaState, Step},
    },
    metrics as m,
    storage::{
        events, projection,
        sagas::{self, Change},
        timeline,
    },
};

/// How a saga's steps are timed.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a step's first send waits for its answer.
    pub step_timeout: Duration,
    /// The longest wait of any send: each resend waits twice as long as
    /// the one before, up to this.
    pub step_timeout_max: Duration,
    /// Sends of a step before it is given up.
    pub step_attempts: i32,
}

impl Timing {
    /// How long send `attempt` (1 for the first) of a step waits. Doubling
    /// keeps a healthy system's retries quick while letting a step ride out
    /// an outage of minutes before the saga compensates (or parks as stuck):
    /// with the defaults, 30 s, 1, 2, 4, 5 and 5 min, about 17 min in all.
    pub fn wait_for(&self, attempt: i32) -> Duration {
        let doublings = u32::try_from(attempt.saturating_sub(1))
            .unwrap_or(0)
            .min(20);
        self.step_timeout
            .saturating_mul(1 << doublings)
            .min(self.step_timeout_max.max(self.step_timeout))
    }

    /// The deadline of send `attempt` made at `now`.
    fn deadline(&self, now: DateTime<Utc>, attempt: i32) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.wait_for(attempt)).unwrap_or(chrono::Duration::MAX)
    }
}

/// What feeding an input came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fed {
    /// The saga moved (or noted something).
    Applied,
    /// The input meant nothing in the saga's state.
    Ignored,
    /// This message was handled before.
    Duplicate,
    /// No saga drives this order.
    Unknown,
}

/// Applies decisions; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    db: DatabaseConnection,
    outbox: OutboxNotifier,
    timing: Timing,
}

/// Tries of one decision before a conflict is handed back as transient.
const CONFLICT_TRIES: u32 = 8;

impl Engine {
    /// An engine over the orders database.
    pub fn new(db: DatabaseConnection, outbox: OutboxNotifier, timing: Timing) -> Self {
        Self { db, outbox, timing }
    }

    /// The database.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Record a new order and start its saga, or record it cancelled when it
    /// cannot be placed (`priced` is the reason). Returns `false` when the
    /// message or the order was seen before.
    pub async fn place(
        &self,
        consumer: &str,
        dedupe_id: &str,
        cmd: &PlaceOrder,
        priced: Result<OrderPlaced, String>,
        meta: &MessageMeta,
    ) -> Result<bool, Error> {
        let order_id = cmd.order_id;
        let txn = self.db.begin().await?;
        if !inbox::claim(&txn, consumer, dedupe_id).await? {
            return Ok(false);
        }
        // The same order under another message id (a client retry that got
        // past the stream's dedupe window): the first one stands.
        if !events::load(&txn, order_id).await?.is_empty() {
            txn.commit().await?;
            tracing::info!(%order_id, "order already placed; placement is a no-op");
            return Ok(false);
        }
        let now = Utc::now();
        match priced {
            Ok(placed) => {
                let event = OrderEvent::Placed(placed);
                events::append(&txn, order_id, 0, std::slice::from_ref(&event), meta, now).await?;
                let order = Order::replay([(&event, now)])?
                    .ok_or_else(|| Error::Corrupt("placed order folds to nothing".into()))?;
                projection::save(&txn, &order).await?;
                let change = Change {
                    state: SagaState::ReservingStock,
                    step: Some(Step::ReserveStock),
                    attempts: 1,
                    sends: 1,
                    deadline_at: Some(self.timing.deadline(now, 1)),
                    step_started_at: now,
                    last_error: None,
                    cancel_reason: None,
                };
                sagas::insert(&txn, order_id, &change, &cmd.card_token, now).await?;
                send(
                    &txn,
                    &order,
                    Step::ReserveStock,
                    1,
                    &cmd.card_token,
                    None,
                    meta,
                )
                .await?;
                timeline::add(
                    &txn,
                    order_id,
                    &[
                        Note {
                            step: "order",
                            outcome: "placed",
                            detail: None,
                        },
                        started(Step::ReserveStock, 1),
                    ],
                    now,
                )
                .await?;
                metrics::counter!(m::ORDERS_PLACED).increment(1);
                tracing::info!(%order_id, total = order.total.amount_minor, "order placed");
            }
            Err(reason) => {
                let event = OrderEvent::Cancelled(jetshop_contracts::orders::OrderCancelled {
                    order_id,
                    customer_id: cmd.customer_id,
                    customer_email: cmd.customer_email.clone(),
                    reason: reason.clone(),
                    cancelled_at: now,
                });
                events::append(&txn, order_id, 0, std::slice::from_ref(&event), meta, now).await?;
                let order = Order::replay([(&event, now)])?
                    .ok_or_else(|| Error::Corrupt("cancelled order folds to nothing".into()))?;
                projection::save(&txn, &order).await?;
                timeline::add(
                    &txn,
                    order_id,
                    &[Note {
                        step: "order",
                        outcome: "cancelled",
                        detail: Some(reason.clone()),
                    }],
                    now,
                )
                .await?;
                let class = m::reason_class(Some(&reason));
                metrics::counter!(m::ORDERS_COMPLETED, "outcome" => "cancelled", "reason" => class)
                    .increment(1);
                // Refused at placement: placed and final at the same instant.
                metrics::histogram!(m::ORDER_COMPLETION_DURATION, "outcome" => "cancelled")
                    .record(0.0);
                tracing::info!(%order_id, %reason, "order cannot be placed; cancelled");
            }
        }
        txn.commit().await?;
        self.outbox.notify();
        Ok(true)
    }

    /// Feed `input` to the saga of `order_id`. `dedupe` is the consumer and
    /// message id to claim in the inbox (none for deadlines and operators).
    pub async fn feed(
        &self,
        dedupe: Option<(&str, &str)>,
        order_id: Uuid,
        input: Input,
        meta: &MessageMeta,
    ) -> Result<Fed, Error> {
        let mut tries = 0;
        loop {
            match self.feed_once(dedupe, order_id, &input, meta).await {
                Err(Error::Conflict(_)) if tries + 1 < CONFLICT_TRIES => {
                    tries += 1;
                    let pause = rand_millis(5 << tries.min(5));
                    tracing::debug!(%order_id, tries, "saga changed concurrently; retrying");
                    tokio::time::sleep(pause).await;
                }
                other => return other,
            }
        }
    }

    async fn feed_once(
        &self,
        dedupe: Option<(&str, &str)>,
        order_id: Uuid,
        input: &Input,
        meta: &MessageMeta,
    ) -> Result<Fed, Error> {
        let txn = self.db.begin().await?;
        if let Some((consumer, id)) = dedupe
            && !inbox::claim(&txn, consumer, id).await?
        {
            return Ok(Fed::Duplicate);
        }
        let Some(row) = sagas::find(&txn, order_id).await? else {
            txn.commit().await?;
            tracing::debug!(%order_id, ?input, "no saga for this order; ignoring");
            return Ok(Fed::Unknown);
        };
        let now = Utc::now();
        // Another instance may have moved the step on since the scan.
        if *input == Input::DeadlinePassed && row.deadline_at.is_none_or(|d| d > now) {
            return Ok(Fed::Ignored);
        }
        let saga = sagas::to_domain(&row)?;
        let Some(decision) = saga.decide(input, self.timing.step_attempts) else {
            txn.commit().await?;
            tracing::debug!(%order_id, state = saga.state.as_str(), ?input, "nothing to do");
            return Ok(Fed::Ignored);
        };
        let stored = events::load(&txn, order_id).await?;
        let mut order = Order::replay(stored.iter().map(|s| (&s.event, s.recorded_at)))?
            .ok_or_else(|| Error::Corrupt(format!("saga without events for {order_id}")))?;

        // The aggregate first: its events, then the projection.
        let new_events: Vec<OrderEvent> = decision
            .facts
            .iter()
            .map(|f| event_for(&order, f, decision.cancel_reason.as_deref(), now))
            .collect();
        if !new_events.is_empty() {
            events::append(&txn, order_id, order.version, &new_events, meta, now).await?;
            for e in &new_events {
                order.apply(e, now);
            }
            projection::save(&txn, &order).await?;
        }

        // Then the saga, checked against the version read.
        let mut change = Change::from_row(&row)?;
        if let Some(reason) = &decision.cancel_reason {
            change.cancel_reason = Some(reason.clone());
        }
        if let Some(error) = &decision.error {
            change.last_error = Some(error.clone());
        }
        let mut notes = decision.notes.clone();
        let finished_step = saga.step;
        let to_send = self.advance(&mut change, &decision, now, &mut notes);
        sagas::update(&txn, order_id, row.version, &change, now).await?;
        if let Some(step) = to_send {
            send(
                &txn,
                &order,
                step,
                change.sends,
                &row.card_token,
                change.cancel_reason.as_deref(),
                meta,
            )
            .await?;
        }
        timeline::add(&txn, order_id, &notes, now).await?;
        txn.commit().await?;
        self.outbox.notify();
        record_metrics(
            &decision,
            finished_step,
            row.step_started_at,
            now,
            Placement {
                at: row.created_at,
                cancel_reason: change.cancel_reason.as_deref(),
            },
        );
        tracing::info!(
            %order_id,
            from = saga.state.as_str(),
            to = change.state.as_str(),
            step = change.step.map(|s| s.as_str()).unwrap_or(""),
            attempts = change.attempts,
            "saga moved"
        );
        Ok(Fed::Applied)
    }

    /// Work out the saga's next fields; returns the step to send, if any.
    fn advance(
        &self,
        change: &mut Change,
        decision: &Decision,
        now: DateTime<Utc>,
        notes: &mut Vec<Note>,
    ) -> Option<Step> {
        match decision.next {
            Next::Send(step) => {
                change.state = step.waiting_state();
                change.step = Some(step);
                change.attempts = 1;
                change.sends += 1;
                change.deadline_at = Some(self.timing.deadline(now, 1));
                change.step_started_at = now;
                notes.push(started(step, 1));
                Some(step)
            }
            Next::Resend => {
                change.attempts += 1;
                change.sends += 1;
                change.deadline_at = Some(self.timing.deadline(now, change.attempts));
                change.step
            }
            Next::Complete => {
                change.state = SagaState::Completed;
                change.step = None;
                change.deadline_at = None;
                None
            }
            Next::Stick => {
                change.state = SagaState::Stuck;
                change.deadline_at = None;
                None
            }
            Next::Stay => None,
        }
    }
}

fn started(step: Step, attempt: i32) -> Note {
    Note {
        step: step.as_str(),
        outcome: "started",
        detail: (attempt > 1).then(|| format!("attempt {attempt}")),
    }
}

/// The aggregate event a fact becomes, with the order's details.
fn event_for(order: &Order, fact: &Fact, reason: Option<&str>, now: DateTime<Utc>) -> OrderEvent {
    let order_id = order.id;
    match fact {
        Fact::StockReserved => OrderEvent::StockReserved(OrderStockReserved { order_id }),
        Fact::PaymentAuthorized { payment_id, amount } => {
            OrderEvent::PaymentAuthorized(OrderPaymentAuthorized {
                order_id,
                payment_id: *payment_id,
                amount: amount.clone(),
            })
        }
        Fact::PaymentCaptured { payment_id, amount } => {
            OrderEvent::PaymentCaptured(OrderPaymentCaptured {
                order_id,
                payment_id: *payment_id,
                amount: amount.clone(),
            })
        }
        Fact::CancellationRequested { by, reason: why } => {
            OrderEvent::CancellationRequested(OrderCancellationRequested {
                order_id,
                requested_by: by.clone(),
                reason: Some(reason.unwrap_or(why).to_owned()),
            })
        }
        Fact::Confirmed => order.confirmed(now),
        Fact::Cancelled { reason } => order.cancelled(reason.clone(), now),
    }
}

/// The message id of the `sends`-th command of an order's saga: derived,
/// so a decision replayed after a crash sends the same message (deduped by
/// JetStream and by the receiver's inbox), and each retry a new one.
pub fn command_id(order_id: Uuid, step: Step, sends: i32) -> String {
    Uuid::new_v5(&order_id, format!("{}:{sends}", step.as_str()).as_bytes()).to_string()
}

/// Put a step's command in the outbox.
async fn send(
    txn: &DatabaseTransaction,
    order: &Order,
    step: Step,
    sends: i32,
    card_token: &str,
    reason: Option<&str>,
    meta: &MessageMeta,
) -> Result<(), Error> {
    let order_id = order.id;
    let id = command_id(order_id, step, sends);
    let reason = reason.map(str::to_owned);
    match step {
        Step::ReserveStock => {
            let cmd = ReserveStock {
                order_id,
                lines: order
                    .lines
                    .iter()
                    .map(|l| ReservationLine {
                        product_id: l.product_id,
                        quantity: l.quantity,
                    })
                    .collect(),
            };
            outbox::enqueue_command(txn, &cmd, &id, meta).await
        }
        Step::AuthorizePayment => {
            let cmd = AuthorizePayment {
                order_id,
                amount: order.total.clone(),
                card_token: card_token.to_owned(),
            };
            outbox::enqueue_command(txn, &cmd, &id, meta).await
        }
        Step::CapturePayment => {
            outbox::enqueue_command(txn, &CapturePayment { order_id }, &id, meta).await
        }
        Step::CommitReservation => {
            outbox::enqueue_command(txn, &CommitReservation { order_id }, &id, meta).await
        }
        Step::VoidPayment => {
            outbox::enqueue_command(txn, &VoidPayment { order_id, reason }, &id, meta).await
        }
        Step::ReleaseStock => {
            outbox::enqueue_command(txn, &ReleaseStock { order_id, reason }, &id, meta).await
        }
        Step::RefundPayment => {
            outbox::enqueue_command(txn, &RefundPayment { order_id, reason }, &id, meta).await
        }
    }
    .map_err(Error::from)
}

/// What the completion metrics need of the saga: when its order was
/// placed, and why it compensates.
struct Placement<'a> {
    at: DateTime<Utc>,
    cancel_reason: Option<&'a str>,
}

fn record_metrics(
    decision: &Decision,
    finished: Option<Step>,
    started_at: DateTime<Utc>,
    now: DateTime<Utc>,
    placed: Placement<'_>,
) {
    for n in &decision.notes {
        if n.step != "order" && n.step != "cancel" {
            metrics::counter!(m::SAGA_STEPS, "step" => n.step, "outcome" => n.outcome).increment(1);
        }
        if n.step == "order" {
            let reason = m::reason_class(placed.cancel_reason);
            metrics::counter!(m::ORDERS_COMPLETED, "outcome" => n.outcome, "reason" => reason)
                .increment(1);
            let secs = (now - placed.at).to_std().unwrap_or_default().as_secs_f64();
            metrics::histogram!(m::ORDER_COMPLETION_DURATION, "outcome" => n.outcome).record(secs);
        }
    }
    if let Some(step) = finished
        && decision
            .notes
            .iter()
            .any(|n| n.step == step.as_str() && matches!(n.outcome, "succeeded" | "failed"))
    {
        let secs = (now - started_at)
            .to_std()
            .unwrap_or_default()
            .as_secs_f64();
        metrics::histogram!(m::SAGA_STEP_DURATION, "step" => step.as_str()).record(secs);
    }
}

fn rand_millis(max: u64) -> Duration {
    Duration::from_millis(rand::random_range(0..max.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(first: u64, max: u64) -> Timing {
        Timing {
            step_timeout: Duration::from_secs(first),
            step_timeout_max: Duration::from_secs(max),
            step_attempts: 6,
        }
    }

    #[test]
    fn each_resend_waits_twice_as_long_up_to_the_most() {
        let t = timing(30, 300);
        let waits: Vec<u64> = (1..=6).map(|a| t.wait_for(a).as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 300, 300]);
        // The default six sends ride out about 17 minutes.
        assert_eq!(waits.iter().sum::<u64>(), 1050);
        assert_eq!(t.wait_for(10_000), Duration::from_secs(300));
    }

    #[test]
    fn a_most_below_the_first_wait_means_fixed_waits() {
        let t = timing(5, 1);
        assert!((1..=4).all(|a| t.wait_for(a) == Duration::from_secs(5)));
        assert_eq!(t.wait_for(0), Duration::from_secs(5));
    }
}
