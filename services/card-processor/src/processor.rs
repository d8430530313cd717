//! One request, one transaction: the log line, the outage check, the
//! idempotency lookup, the operation's effect and the stored answer are
//! written together or not at all.
//!
//! A request runs as:
//!
//! 1. Log it (the transaction's first statement is a write, see
//!    [`storage::log_request`]). Every request that reaches an operation
//!    counts as a call, whatever it is answered.
//! 2. While the simulated outage is on, answer 503 (nothing else happens).
//! 3. With an idempotency key seen before: the same request (same method,
//!    path and body) gets the stored answer again, another request is
//!    refused with 422.
//! 4. Otherwise ask [`domain`] against the payment as stored, write its
//!    decision (conditional on the payment's version), and keep a definitive
//!    answer (2xx or 4xx) under the key. A 5xx is never kept: a retry with
//!    the same key tries again.
//!
//! A conflict (another request wrote the same payment or key first) or a
//! busy database rolls the transaction back and runs it again, a few times,
//! so two payments replicas sending the same key at once get one effect
//! and the same answer. Nothing is kept in memory between requests: any
//! number of processor instances can share the database.

use std::time::Duration;

use jetshop_contracts::card_processor::{
    Activity, ApiError, AuthorizationId, CaptureId, CreateAuthorization, CreateCapture,
    CreateRefund, CreateVoid, ErrorBody, ErrorType, Payment, RefundId, VoidId, codes,
};
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    Error,
    domain::{self, Card, Decision, Failure, Refusal},
    storage::{self, Stored},
};

/// How often a transaction is run again after a conflict.
const MAX_ATTEMPTS: u32 = 12;

/// An operation's request, as parsed from HTTP.
#[derive(Debug, Clone)]
pub enum Request {
    /// `POST /v1/authorizations`.
    Authorize(CreateAuthorization),
    /// `POST /v1/authorizations/{id}/capture` (the id as it came).
    Capture(String, CreateCapture),
    /// `POST /v1/voids`.
    Void(CreateVoid),
    /// `POST /v1/refunds`.
    Refund(CreateRefund),
}

impl Request {
    /// The operation's name, in the request log.
    pub fn operation(&self) -> &'static str {
        match self {
            Request::Authorize(_) => "authorize",
            Request::Capture(..) => "capture",
            Request::Void(_) => "void",
            Request::Refund(_) => "refund",
        }
    }

    /// What the request names itself: (order, payment).
    fn refs(&self) -> (Option<Uuid>, Option<Uuid>) {
        match self {
            Request::Authorize(r) => (Some(r.order_reference), Some(r.merchant_reference)),
            Request::Capture(..) => (None, None),
            Request::Void(r) => (Some(r.order_reference), Some(r.merchant_reference)),
            Request::Refund(r) => (None, Some(r.merchant_reference)),
        }
    }

    /// What a repeated idempotency key is compared with: the method, the
    /// path and the body, re-serialized so that formatting does not count.
    pub fn fingerprint(&self) -> String {
        fn canonical<T: Serialize>(path: &str, body: &T) -> String {
            format!(
                "POST {path}\n{}",
                serde_json::to_string(body).unwrap_or_default()
            )
        }
        let text = match self {
            Request::Authorize(r) => canonical("/v1/authorizations", r),
            Request::Capture(id, r) => canonical(&format!("/v1/authorizations/{id}/capture"), r),
            Request::Void(r) => canonical("/v1/voids", r),
            Request::Refund(r) => canonical("/v1/refunds", r),
        };
        hex::encode(Sha256::digest(text.as_bytes()))
    }
}

/// An HTTP answer: status, JSON body, and whether it is a stored one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// JSON body, exactly as sent the first time for a replay.
    pub body: String,
    /// Whether this is a stored answer replayed.
    pub replayed: bool,
}

impl Reply {
    fn json<T: Serialize>(status: u16, body: &T) -> Result<Self, Error> {
        Ok(Self {
            status,
            body: serde_json::to_string(body)
                .map_err(|e| Error::Internal(format!("encode answer: {e}")))?,
            replayed: false,
        })
    }

    /// An error answer.
    pub fn error(status: u16, error: ApiError) -> Self {
        Self::json(status, &ErrorBody { error }).unwrap_or_else(|_| Self {
            status,
            body: String::new(),
            replayed: false,
        })
    }

    fn refused(r: Refusal) -> Self {
        Self::error(r.status, r.error)
    }

    /// Whether the answer is definitive (kept for the key): 2xx or 4xx.
    fn definitive(&self) -> bool {
        self.status < 500
    }
}

/// What an operation decided, before it is committed.
struct Outcome {
    reply: Reply,
    /// The order and payment, as learnt from the stored payment.
    order: Option<Uuid>,
    merchant: Option<Uuid>,
    /// Answer only after `late_after`.
    late: bool,
}

/// The processor: its database and its test-mode knobs.
#[derive(Debug, Clone)]
pub struct Processor {
    db: DatabaseConnection,
    /// How long `tok_timeout` takes to answer.
    late_after: Duration,
    /// How many first attempts of an order's `tok_processingError` fail.
    processing_failures: u32,
    /// A late answer is cut short at shutdown.
    shutdown: CancellationToken,
}

impl Processor {
    /// A processor over `db` (migrated).
    pub fn new(
        db: DatabaseConnection,
        late_after: Duration,
        processing_failures: u32,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            db,
            late_after,
            processing_failures,
            shutdown,
        }
    }

    /// The database (health checks).
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Run `req` under `key` in one transaction (again after a conflict).
    pub async fn execute(&self, key: Option<&str>, req: &Request) -> Result<Reply, Error> {
        let fingerprint = req.fingerprint();
        let mut attempt = 1;
        loop {
            match self.attempt(key, &fingerprint, req).await {
                Ok((reply, late)) => {
                    if late {
                        // Answer too late: the caller gave up long ago, and
                        // nothing was held or stored for this attempt.
                        tokio::select! {
                            _ = tokio::time::sleep(self.late_after) => {}
                            _ = self.shutdown.cancelled() => {}
                        }
                    }
                    return Ok(reply);
                }
                Err(err) if err.is_retryable() && attempt < MAX_ATTEMPTS => {
                    tracing::debug!(error = %err, attempt, "conflict; running the request again");
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    async fn attempt(
        &self,
        key: Option<&str>,
        fingerprint: &str,
        req: &Request,
    ) -> Result<(Reply, bool), Error> {
        let txn = self.db.begin().await?;
        let (order, merchant) = req.refs();
        let log = storage::log_request(&txn, req.operation(), order, merchant, key).await?;

        if storage::outage(&txn).await? {
            let reply = Reply::error(
                503,
                ApiError::new(
                    ErrorType::ApiError,
                    codes::PROCESSOR_OUTAGE,
                    "the processor is down (simulated outage)",
                ),
            );
            let (order, merchant) = self.attribute(&txn, req).await?;
            storage::finish_request(&txn, log, order, merchant, reply.status).await?;
            txn.commit().await?;
            return Ok((reply, false));
        }

        if let Some(key) = key
            && let Some(stored) = storage::stored_answer(&txn, key).await?
        {
            let reply = if stored.fingerprint == fingerprint {
                Reply {
                    status: u16::try_from(stored.status_code).unwrap_or(500),
                    body: stored.response,
                    replayed: true,
                }
            } else {
                Reply::refused(Refusal::key_reused())
            };
            let (order, merchant) = self.attribute(&txn, req).await?;
            storage::finish_request(&txn, log, order, merchant, reply.status).await?;
            txn.commit().await?;
            return Ok((reply, false));
        }

        let outcome = self.decide(&txn, req).await?;
        if let Some(key) = key
            && outcome.reply.definitive()
        {
            storage::store_answer(
                &txn,
                key,
                fingerprint,
                outcome.reply.status,
                &outcome.reply.body,
            )
            .await?;
        }
        storage::finish_request(
            &txn,
            log,
            outcome.order,
            outcome.merchant,
            outcome.reply.status,
        )
        .await?;
        txn.commit().await?;
        Ok((outcome.reply, outcome.late))
    }

    /// The order and payment a request is about, for the log.
    async fn attribute(
        &self,
        txn: &DatabaseTransaction,
        req: &Request,
    ) -> Result<(Option<Uuid>, Option<Uuid>), Error> {
        let found = match req {
            Request::Capture(id, _) => match AuthorizationId::parse(id) {
                Ok(id) => storage::payment_by_authorization(txn, &id).await?,
                Err(_) => None,
            },
            Request::Refund(r) => storage::payment(txn, r.merchant_reference).await?,
            Request::Authorize(_) | Request::Void(_) => None,
        };
        Ok(match found {
            Some(p) => (
                Some(p.record.order_reference),
                Some(p.record.merchant_reference),
            ),
            None => req.refs(),
        })
    }

    async fn decide(&self, txn: &DatabaseTransaction, req: &Request) -> Result<Outcome, Error> {
        match req {
            Request::Authorize(r) => {
                let existing = storage::payment(txn, r.merchant_reference).await?;
                let failures = if Card::of(&r.card_token) == Card::ProcessingError {
                    storage::processing_failures(txn, r.order_reference).await?
                } else {
                    0
                };
                let decision = domain::authorize(
                    r,
                    existing.as_ref().map(|s| &s.record),
                    failures,
                    self.processing_failures,
                    AuthorizationId::new(),
                );
                if decision == Decision::Fail(Failure::ProcessingError) {
                    storage::count_processing_failure(txn, r.order_reference).await?;
                }
                let refs = (Some(r.order_reference), Some(r.merchant_reference));
                apply(txn, existing.as_ref(), decision, refs).await
            }
            Request::Capture(id, r) => {
                let Ok(id) = AuthorizationId::parse(id) else {
                    let decision =
                        domain::capture(&AuthorizationId::new(), r, None, CaptureId::new());
                    return apply(txn, None, decision, (None, None)).await;
                };
                let existing = storage::payment_by_authorization(txn, &id).await?;
                let decision = domain::capture(
                    &id,
                    r,
                    existing.as_ref().map(|s| &s.record),
                    CaptureId::new(),
                );
                let refs = refs_of(existing.as_ref(), (None, None));
                apply(txn, existing.as_ref(), decision, refs).await
            }
            Request::Void(r) => {
                let existing = storage::payment(txn, r.merchant_reference).await?;
                let decision = domain::void(r, existing.as_ref().map(|s| &s.record), VoidId::new());
                let refs = (Some(r.order_reference), Some(r.merchant_reference));
                let refs = refs_of(existing.as_ref(), refs);
                apply(txn, existing.as_ref(), decision, refs).await
            }
            Request::Refund(r) => {
                let existing = storage::payment(txn, r.merchant_reference).await?;
                let decision =
                    domain::refund(r, existing.as_ref().map(|s| &s.record), RefundId::new());
                let refs = refs_of(existing.as_ref(), (None, Some(r.merchant_reference)));
                apply(txn, existing.as_ref(), decision, refs).await
            }
        }
    }

    /// A payment as the processor sees it.
    pub async fn payment(&self, merchant_reference: Uuid) -> Result<Option<Payment>, Error> {
        Ok(storage::payment(&self.db, merchant_reference)
            .await?
            .map(|s| s.record.view()))
    }

    /// What the processor did for one order, or for all.
    pub async fn activity(&self, order_reference: Option<Uuid>) -> Result<Activity, Error> {
        storage::activity(&self.db, order_reference).await
    }

    /// Switch the simulated outage.
    pub async fn set_outage(&self, on: bool) -> Result<(), Error> {
        storage::set_outage(&self.db, on).await?;
        tracing::warn!(outage = on, "simulated outage switched");
        Ok(())
    }

    /// Whether the simulated outage is on.
    pub async fn outage(&self) -> Result<bool, Error> {
        storage::outage(&self.db).await
    }
}

fn refs_of(
    stored: Option<&Stored>,
    or: (Option<Uuid>, Option<Uuid>),
) -> (Option<Uuid>, Option<Uuid>) {
    stored.map_or(or, |s| {
        (
            Some(s.record.order_reference),
            Some(s.record.merchant_reference),
        )
    })
}

/// Write a decision and turn it into the answer.
async fn apply<T: Serialize>(
    txn: &DatabaseTransaction,
    existing: Option<&Stored>,
    decision: Decision<T>,
    (order, merchant): (Option<Uuid>, Option<Uuid>),
) -> Result<Outcome, Error> {
    let outcome = |reply, late| Outcome {
        reply,
        order,
        merchant,
        late,
    };
    Ok(match decision {
        Decision::Apply {
            payment,
            movement,
            answer,
        } => {
            storage::save_payment(txn, existing, &payment).await?;
            if let Some(m) = &movement {
                storage::add_movement(txn, &payment, m).await?;
            }
            outcome(Reply::json(200, &answer)?, false)
        }
        Decision::Answer(answer) => outcome(Reply::json(200, &answer)?, false),
        Decision::Refuse(r) => outcome(Reply::refused(r), false),
        Decision::Fail(f) => outcome(Reply::error(503, f.error()), f == Failure::Late),
    })
}
