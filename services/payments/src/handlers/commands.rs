//! The command consumer `payments-commands`: authorize, capture, void and
//! refund, answered with one event each on `PAYMENTS_EVENTS`.
//!
//! A command runs in up to three steps, because the provider is called over
//! the network and must never be called inside a database transaction:
//!
//! 1. **Plan** (no transaction): read the order's intent and ask
//!    [`domain::plan`] what the command needs. An authorize of an order
//!    with no intent first commits the intent as `authorizing`, so a crash
//!    after the provider's answer leaves a trace.
//! 2. **Call** the provider through the resilience layer, with the
//!    idempotency key of this payment and operation. A crash here, or a
//!    redelivery later, calls again with the same key and gets the same
//!    answer: never a second charge.
//! 3. **Record**, in ONE transaction: the inbox claim, the intent's move
//!    (conditional on its state and version), the ledger postings and the
//!    outbox event, decided by [`domain::decide`] against the intent as it
//!    is now. A repeat records only the claim and says nothing.
//!
//! How failures end: a decline of an authorize is a business outcome
//! (`PaymentDeclined`, acknowledged). A provider that fails transiently,
//! times out, or is behind an open breaker makes the command transient
//! (nak with backoff; the saga also re-sends after its deadline). A command
//! that can never apply (capture of a voided payment, invalid amount) or an
//! operation the provider refuses goes to the DLQ with the reason.

use std::sync::Arc;

use jetshop_contracts::{
    catalog::Money,
    payments::{
        AuthorizePayment, CapturePayment, PaymentAuthorized, PaymentCaptured, PaymentDeclined,
        PaymentRefunded, PaymentVoided, RefundPayment, VoidPayment,
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
use sea_orm::{DatabaseConnection, DatabaseTransaction, EntityTrait, TransactionTrait};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    Error,
    domain::{
        self, Answer, AuthorizeSpec, Call, Change, Decision, Operation, Outcome, Plan, Verdict,
    },
    metrics as m,
    provider::{
        AuthorizeRequest, CaptureRequest, PaymentProvider, ProviderError, RefundRequest,
        VoidRequest,
    },
    storage::{entries, intents},
};

/// Durable name of the command consumer.
pub const CONSUMER: &str = "payments-commands";

/// Consume the payments' commands until `shutdown`.
pub async fn run(
    js: async_nats::jetstream::Context,
    db: DatabaseConnection,
    outbox: OutboxNotifier,
    provider: Arc<dyn PaymentProvider>,
    settings: ConsumerSettings,
    shutdown: CancellationToken,
) -> Result<(), jetshop_platform::Error> {
    let spec = ConsumerSpec {
        stream: streams::PAYMENTS_COMMANDS.into(),
        durable: CONSUMER.into(),
        description: "Authorizes, captures, voids and refunds payments".into(),
        filter_subjects: vec![],
    };
    let handler = move |d: Delivery| {
        let db = db.clone();
        let outbox = outbox.clone();
        let provider = provider.clone();
        async move {
            if handle(&db, provider.as_ref(), &d).await? {
                outbox.notify();
            }
            Ok(())
        }
    };
    consumer::run(js, spec, settings, handler, shutdown).await
}

/// A decoded command.
#[derive(Debug)]
enum Command {
    Authorize(AuthorizeSpec),
    Capture(CapturePayment),
    Void(VoidPayment),
    Refund(RefundPayment),
}

impl Command {
    fn decode(d: &Delivery) -> Result<Self, HandlerError> {
        Ok(match subjects::keyed::base(&d.subject) {
            subjects::payments::AUTHORIZE => {
                let cmd: AuthorizePayment = d.decode()?;
                Command::Authorize(AuthorizeSpec::parse(&cmd)?)
            }
            subjects::payments::CAPTURE => Command::Capture(d.decode()?),
            subjects::payments::VOID => Command::Void(d.decode()?),
            subjects::payments::REFUND => Command::Refund(d.decode()?),
            other => {
                return Err(HandlerError::Permanent(format!(
                    "the payments service has no command {other}"
                )));
            }
        })
    }

    fn order_id(&self) -> Uuid {
        match self {
            Command::Authorize(a) => a.order_id,
            Command::Capture(c) => c.order_id,
            Command::Void(v) => v.order_id,
            Command::Refund(r) => r.order_id,
        }
    }

    fn operation(&self) -> Operation {
        match self {
            Command::Authorize(_) => Operation::Authorize,
            Command::Capture(_) => Operation::Capture,
            Command::Void(_) => Operation::Void,
            Command::Refund(_) => Operation::Refund,
        }
    }
}

/// Apply one command. Returns whether it published an event (to wake the
/// outbox relay).
pub async fn handle(
    db: &DatabaseConnection,
    provider: &dyn PaymentProvider,
    d: &Delivery,
) -> Result<bool, HandlerError> {
    let cmd = Command::decode(d)?;
    let order_id = cmd.order_id();
    let op = cmd.operation();
    let dedupe_id = d.dedupe_id();
    // A message applied before (a redelivery whose ack was lost, a replay)
    // is skipped here without calling the provider; the claim in step 3 is
    // what guarantees it, this only spares the provider.
    if already_applied(db, &dedupe_id).await? {
        tracing::info!(message_id = %dedupe_id, %order_id, "command already applied; skipping");
        return Ok(false);
    }

    // 1. Plan.
    let mut intent = intents::find(db, order_id)
        .await
        .map_err(HandlerError::from)?;
    let mut plan = domain::plan(op, intent.as_ref().map(intents::Model::view).as_ref());
    if plan == Plan::Open {
        let Command::Authorize(spec) = &cmd else {
            return Err(HandlerError::Permanent(format!(
                "plan {plan:?} for a {op:?} command"
            )));
        };
        intents::open(db, spec).await.map_err(HandlerError::from)?;
        intent = intents::find(db, order_id)
            .await
            .map_err(HandlerError::from)?;
        plan = domain::plan(op, intent.as_ref().map(intents::Model::view).as_ref());
    }

    // 2. Call.
    let outcome = match plan {
        Plan::Call(call) => {
            let Some(current) = intent.as_ref() else {
                return Err(HandlerError::Transient(format!(
                    "no payment intent for order {order_id} yet"
                )));
            };
            if let Command::Authorize(spec) = &cmd
                && !current.matches(spec)
            {
                return Err(Error::Refused {
                    order_id,
                    reason:
                        "an authorization of this order with another amount or card is in progress"
                            .into(),
                }
                .into());
            }
            Some(call_provider(provider, call, current).await?)
        }
        Plan::Record => None,
        Plan::Retry(reason) => return Err(Error::NotYet { order_id, reason }.into()),
        Plan::Refuse(reason) => return Err(Error::Refused { order_id, reason }.into()),
        Plan::Open => {
            return Err(HandlerError::Transient(format!(
                "the payment intent of order {order_id} could not be opened"
            )));
        }
    };

    // 3. Record.
    let meta = d.meta.caused_by();
    let txn = db.begin().await.map_err(HandlerError::from)?;
    // The claim first: it is a write, so on SQLite the transaction takes the
    // write lock before it reads (no stale-snapshot upgrade failures).
    if !inbox::claim(&txn, CONSUMER, &dedupe_id)
        .await
        .map_err(HandlerError::from)?
    {
        tracing::info!(message_id = %dedupe_id, %order_id, "command already applied; skipping");
        return Ok(false);
    }
    let current = intents::find(&txn, order_id)
        .await
        .map_err(HandlerError::from)?;
    let decision = domain::decide(
        op,
        current.as_ref().map(intents::Model::view).as_ref(),
        outcome.as_ref(),
    )
    .map_err(|verdict| match verdict {
        Verdict::Retry(reason) => HandlerError::from(Error::NotYet { order_id, reason }),
        Verdict::Refuse(reason) => HandlerError::from(Error::Refused { order_id, reason }),
    })?;
    let said = record(&txn, order_id, current, &decision, &meta)
        .await
        .map_err(HandlerError::from)?;
    txn.commit().await.map_err(HandlerError::from)?;
    log_decision(order_id, op, &decision);
    Ok(said)
}

/// Whether this consumer recorded `message_id` already.
async fn already_applied(db: &DatabaseConnection, message_id: &str) -> Result<bool, HandlerError> {
    Ok(
        inbox::entity::Entity::find_by_id((CONSUMER.to_owned(), message_id.to_owned()))
            .one(db)
            .await
            .map_err(HandlerError::from)?
            .is_some(),
    )
}

/// Ask the provider; translate its answer into an [`Outcome`], or into the
/// handler's failure when it is not one the intent can record.
async fn call_provider(
    provider: &dyn PaymentProvider,
    call: Call,
    intent: &intents::Model,
) -> Result<Outcome, HandlerError> {
    let order_id = intent.order_uuid().map_err(HandlerError::from)?;
    let payment_id = intent.payment_uuid().map_err(HandlerError::from)?;
    let idempotency_key = domain::idempotency_key(payment_id, call);
    let result = match call {
        Call::Authorize => {
            let req = AuthorizeRequest {
                idempotency_key,
                payment_id,
                order_id,
                amount_minor: intent.amount_minor,
                currency: intent.currency.clone(),
                card_token: intent.card_token.clone(),
            };
            match provider.authorize(&req).await {
                Ok(a) => Ok(Outcome::Authorized {
                    provider_ref: a.provider_ref,
                }),
                // A decline is the answer, not a failure.
                Err(ProviderError::Declined { code, reason }) => {
                    Ok(Outcome::Declined { code, reason })
                }
                Err(e) => Err(e),
            }
        }
        Call::Capture => {
            let req = CaptureRequest {
                idempotency_key,
                payment_id,
                order_id,
                authorization_ref: intent.provider_ref.clone().unwrap_or_default(),
                amount_minor: intent.amount_minor,
            };
            provider.capture(&req).await.map(|r| Outcome::Captured {
                provider_ref: r.provider_ref,
            })
        }
        Call::Void => {
            let req = VoidRequest {
                idempotency_key,
                payment_id,
                order_id,
            };
            provider.void(&req).await.map(|r| Outcome::Voided {
                provider_ref: r.provider_ref,
                released_minor: r.released_minor,
            })
        }
        Call::Refund => {
            let req = RefundRequest {
                idempotency_key,
                payment_id,
                order_id,
                amount_minor: intent.amount_minor,
            };
            provider.refund(&req).await.map(|r| Outcome::Refunded {
                provider_ref: r.provider_ref,
            })
        }
    };
    result.map_err(|e| {
        tracing::warn!(%order_id, operation = call.as_str(), error = %e, "provider call failed");
        // Transient (retry later) or a refusal of a capture/void/refund
        // (dead-letter): see `From<Error> for HandlerError`.
        HandlerError::from(Error::Provider(e))
    })
}

/// Write a decision: the intent's change, the ledger, the event. Returns
/// whether an event was enqueued.
async fn record(
    txn: &DatabaseTransaction,
    order_id: Uuid,
    current: Option<intents::Model>,
    decision: &Decision,
    meta: &MessageMeta,
) -> Result<bool, Error> {
    let intent = match (&decision.change, current) {
        (Change::None, Some(row)) => row,
        (Change::None, None) => return Ok(false),
        (Change::Tombstone, _) => intents::insert_tombstone(txn, order_id).await?,
        (
            Change::Move {
                from,
                to,
                provider_ref,
                decline,
            },
            Some(row),
        ) => {
            intents::transition(
                txn,
                &row,
                *from,
                *to,
                provider_ref.as_deref(),
                decline.as_ref().map(|(c, r)| (c.as_str(), r.as_str())),
            )
            .await?
        }
        (Change::RefuseClosed, Some(row)) => {
            let reason = match &decision.answer {
                Some(Answer::Declined { reason, .. }) => reason.as_str(),
                _ => "closed",
            };
            intents::refuse_closed(txn, &row, reason).await?;
            row
        }
        (change, None) => {
            return Err(Error::Internal(format!(
                "{change:?} without a payment intent for order {order_id}"
            )));
        }
    };
    let payment_id = intent.payment_uuid()?;
    for movement in &decision.movements {
        entries::post(txn, order_id, payment_id, &intent.currency, movement).await?;
        metrics::counter!(m::MOVEMENTS, "movement" => movement.kind.as_str()).increment(1);
    }
    let Some(answer) = &decision.answer else {
        return Ok(false);
    };
    let money = |amount_minor: i64| Money {
        amount_minor,
        currency: intent.currency.clone(),
    };
    match answer.clone() {
        Answer::Authorized {
            provider_ref,
            amount_minor,
        } => {
            let e = PaymentAuthorized {
                order_id,
                payment_id,
                amount: money(amount_minor),
                provider_ref,
            };
            outbox::enqueue(txn, &e, meta).await?;
        }
        Answer::Declined { code, reason } => {
            metrics::counter!(m::DECLINES, "code" => code.clone()).increment(1);
            let e = PaymentDeclined {
                order_id,
                payment_id,
                code,
                reason,
            };
            outbox::enqueue(txn, &e, meta).await?;
        }
        Answer::Captured { amount_minor } => {
            let e = PaymentCaptured {
                order_id,
                payment_id,
                amount: money(amount_minor),
            };
            outbox::enqueue(txn, &e, meta).await?;
        }
        Answer::Voided { amount_minor } => {
            let e = PaymentVoided {
                order_id,
                payment_id,
                amount: money(amount_minor),
            };
            outbox::enqueue(txn, &e, meta).await?;
        }
        Answer::Refunded { amount_minor } => {
            let e = PaymentRefunded {
                order_id,
                payment_id,
                amount: money(amount_minor),
            };
            outbox::enqueue(txn, &e, meta).await?;
        }
    }
    Ok(true)
}

fn log_decision(order_id: Uuid, op: Operation, decision: &Decision) {
    match (&decision.change, &decision.answer) {
        (_, None) => {
            tracing::info!(%order_id, operation = ?op, "already done; nothing to say");
        }
        (change, Some(answer)) => {
            tracing::info!(%order_id, operation = ?op, ?change, ?answer, "payment recorded");
        }
    }
}
