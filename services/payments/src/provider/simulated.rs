//! A card processor in test mode, in memory: it behaves like a real one
//! (holds, captures, voids, refunds, idempotency keys, declines, flaky
//! moments) with the answer chosen by the card token, as Stripe's test
//! cards do.
//!
//! | token | authorize |
//! |---|---|
//! | `tok_visa` | approved |
//! | `tok_chargeDeclined` | declined `card_declined` |
//! | `tok_insufficientFunds` | declined `insufficient_funds` |
//! | `tok_processingError` | fails transiently twice per order, then approved |
//! | `tok_timeout` | answers only after the caller's timeout (every attempt) |
//! | anything else | declined `invalid_token` |
//!
//! Completed answers (approvals and declines) are remembered per
//! idempotency key and replayed for a repeated key; transient failures are
//! not, so a retry with the same key tries again. Void works by our payment
//! id: it releases the hold, or, when there is none yet, closes the payment
//! so that a late authorization of it is refused (`payment_canceled`).
//!
//! [`SimulatedProvider::set_outage`] makes every call fail transiently, to
//! drive the circuit breaker in tests and drills; [`SimulatedProvider::activity`]
//! tells what the processor did per order (the "never charged twice" check).

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::{FutureExt, future::BoxFuture};
use uuid::Uuid;

use super::{
    Authorization, AuthorizeRequest, CaptureRequest, PaymentProvider, ProviderError, Receipt,
    RefundRequest, VoidReceipt, VoidRequest,
};

/// Approves.
pub const TOK_VISA: &str = "tok_visa";
/// Declines with `card_declined`.
pub const TOK_CHARGE_DECLINED: &str = "tok_chargeDeclined";
/// Declines with `insufficient_funds`.
pub const TOK_INSUFFICIENT_FUNDS: &str = "tok_insufficientFunds";
/// Fails transiently twice per order, then approves.
pub const TOK_PROCESSING_ERROR: &str = "tok_processingError";
/// Never answers in time.
pub const TOK_TIMEOUT: &str = "tok_timeout";

/// Transient failures of `tok_processingError` before it approves.
const PROCESSING_FAILURES: u32 = 2;

/// What the simulated processor did for one order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimActivity {
    /// Calls that reached the processor (any operation, any outcome).
    pub calls: u64,
    /// Holds placed.
    pub authorizations: u32,
    /// Captures made.
    pub captures: u32,
    /// Holds released.
    pub voids: u32,
    /// Refunds made.
    pub refunds: u32,
}

/// Where a payment stands at the processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Authorized,
    Captured,
    Voided,
    Refunded,
    /// Closed by a void before any hold: later authorizations are refused.
    Canceled,
}

#[derive(Debug)]
struct Payment {
    status: Status,
    authorization_ref: Option<String>,
    amount_minor: i64,
}

/// A remembered answer, with what it answered (a reused key with other
/// parameters is an error, as at Stripe).
#[derive(Debug, Clone)]
struct Stored {
    fingerprint: String,
    answer: Answer,
}

#[derive(Debug, Clone)]
enum Answer {
    Authorized(Authorization),
    Receipt(Receipt),
    Voided(VoidReceipt),
    Failed(ProviderError),
}

#[derive(Debug, Default)]
struct State {
    by_key: HashMap<String, Stored>,
    payments: HashMap<Uuid, Payment>,
    processing_failures: HashMap<Uuid, u32>,
    activity: HashMap<Uuid, SimActivity>,
}

/// The in-memory test-mode card processor.
#[derive(Debug)]
pub struct SimulatedProvider {
    /// How long `tok_timeout` takes to answer: longer than the caller's timeout.
    late_after: Duration,
    outage: AtomicBool,
    calls: AtomicU64,
    state: Mutex<State>,
}

impl SimulatedProvider {
    /// A processor whose `tok_timeout` answers only after `caller_timeout`
    /// (twice it, so the caller's timeout always fires first).
    pub fn new(caller_timeout: Duration) -> Self {
        Self {
            late_after: caller_timeout
                .saturating_mul(2)
                .max(Duration::from_millis(10)),
            outage: AtomicBool::new(false),
            calls: AtomicU64::new(0),
            state: Mutex::new(State::default()),
        }
    }

    /// Fault injection: while on, every call fails transiently, as during a
    /// processor outage.
    pub fn set_outage(&self, on: bool) {
        self.outage.store(on, Ordering::SeqCst);
        tracing::warn!(outage = on, "simulated provider outage switched");
    }

    /// Whether the simulated outage is on.
    pub fn outage(&self) -> bool {
        self.outage.load(Ordering::SeqCst)
    }

    /// Calls that reached the processor, over all orders.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// What the processor did for `order_id`.
    pub fn activity(&self, order_id: Uuid) -> SimActivity {
        self.lock()
            .activity
            .get(&order_id)
            .copied()
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated
        // in a way that matters more than losing the simulator.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count the call; fail it if the outage is on; replay a stored answer.
    fn arrive(&self, order_id: Uuid, key: &str, fingerprint: &str) -> Option<Answer> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut st = self.lock();
        st.activity.entry(order_id).or_default().calls += 1;
        if self.outage() {
            return Some(Answer::Failed(ProviderError::Transient(
                "simulated outage".into(),
            )));
        }
        st.by_key.get(key).map(|stored| {
            if stored.fingerprint == fingerprint {
                stored.answer.clone()
            } else {
                Answer::Failed(ProviderError::declined(
                    "idempotency_key_reused",
                    "this idempotency key was used with other parameters",
                ))
            }
        })
    }

    fn remember(st: &mut State, key: &str, fingerprint: String, answer: Answer) -> Answer {
        st.by_key.insert(
            key.to_owned(),
            Stored {
                fingerprint,
                answer: answer.clone(),
            },
        );
        answer
    }

    async fn do_authorize(&self, req: &AuthorizeRequest) -> Result<Authorization, ProviderError> {
        let fp = format!(
            "authorize:{}:{}:{}:{}",
            req.payment_id, req.amount_minor, req.currency, req.card_token
        );
        if let Some(answer) = self.arrive(req.order_id, &req.idempotency_key, &fp) {
            return answer.into_authorization();
        }
        if req.card_token == TOK_TIMEOUT {
            // Answer too late: the caller's timeout drops this future first,
            // so nothing is held and nothing remembered.
            tokio::time::sleep(self.late_after).await;
            return Err(ProviderError::Timeout);
        }
        let mut st = self.lock();
        if let Some(p) = st.payments.get(&req.payment_id) {
            let answer = match p.status {
                Status::Canceled | Status::Voided => Answer::Failed(ProviderError::declined(
                    "payment_canceled",
                    "the payment was canceled",
                )),
                // Authorized under another key: the same hold, never a second.
                _ => Answer::Authorized(Authorization {
                    provider_ref: p.authorization_ref.clone().unwrap_or_default(),
                }),
            };
            return Self::remember(&mut st, &req.idempotency_key, fp, answer).into_authorization();
        }
        let answer = match req.card_token.as_str() {
            TOK_VISA => Answer::Authorized(self.hold(&mut st, req)),
            TOK_PROCESSING_ERROR => {
                let failures = st.processing_failures.entry(req.order_id).or_default();
                if *failures < PROCESSING_FAILURES {
                    *failures += 1;
                    return Err(ProviderError::Transient(
                        "processing error, try again".into(),
                    ));
                }
                Answer::Authorized(self.hold(&mut st, req))
            }
            TOK_CHARGE_DECLINED => Answer::Failed(ProviderError::declined(
                "card_declined",
                "your card was declined",
            )),
            TOK_INSUFFICIENT_FUNDS => Answer::Failed(ProviderError::declined(
                "insufficient_funds",
                "your card has insufficient funds",
            )),
            _ => Answer::Failed(ProviderError::declined(
                "invalid_token",
                format!("no such card token: {}", req.card_token),
            )),
        };
        Self::remember(&mut st, &req.idempotency_key, fp, answer).into_authorization()
    }

    fn hold(&self, st: &mut State, req: &AuthorizeRequest) -> Authorization {
        let provider_ref = format!("sim_auth_{}", Uuid::new_v4().simple());
        st.payments.insert(
            req.payment_id,
            Payment {
                status: Status::Authorized,
                authorization_ref: Some(provider_ref.clone()),
                amount_minor: req.amount_minor,
            },
        );
        st.activity.entry(req.order_id).or_default().authorizations += 1;
        Authorization { provider_ref }
    }

    async fn do_capture(&self, req: &CaptureRequest) -> Result<Receipt, ProviderError> {
        let fp = format!(
            "capture:{}:{}:{}",
            req.payment_id, req.authorization_ref, req.amount_minor
        );
        if let Some(answer) = self.arrive(req.order_id, &req.idempotency_key, &fp) {
            return answer.into_receipt();
        }
        let mut st = self.lock();
        let answer = match st.payments.get_mut(&req.payment_id) {
            Some(p) if p.authorization_ref.as_deref() != Some(req.authorization_ref.as_str()) => {
                Answer::Failed(ProviderError::declined(
                    "no_such_authorization",
                    format!("no authorization {}", req.authorization_ref),
                ))
            }
            Some(p) => match p.status {
                Status::Authorized if req.amount_minor > p.amount_minor => {
                    Answer::Failed(ProviderError::declined(
                        "amount_too_large",
                        format!("{} held, {} asked", p.amount_minor, req.amount_minor),
                    ))
                }
                Status::Authorized => {
                    p.status = Status::Captured;
                    st.activity.entry(req.order_id).or_default().captures += 1;
                    Answer::Receipt(Receipt {
                        provider_ref: format!("sim_cap_{}", Uuid::new_v4().simple()),
                    })
                }
                Status::Captured | Status::Refunded => Answer::Failed(ProviderError::declined(
                    "already_captured",
                    "the authorization was captured already",
                )),
                Status::Voided | Status::Canceled => Answer::Failed(ProviderError::declined(
                    "authorization_voided",
                    "the authorization was voided",
                )),
            },
            None => Answer::Failed(ProviderError::declined(
                "no_such_authorization",
                format!("no authorization {}", req.authorization_ref),
            )),
        };
        Self::remember(&mut st, &req.idempotency_key, fp, answer).into_receipt()
    }

    async fn do_void(&self, req: &VoidRequest) -> Result<VoidReceipt, ProviderError> {
        let fp = format!("void:{}", req.payment_id);
        if let Some(answer) = self.arrive(req.order_id, &req.idempotency_key, &fp) {
            return answer.into_void();
        }
        let mut st = self.lock();
        let provider_ref = format!("sim_void_{}", Uuid::new_v4().simple());
        let answer = match st.payments.get_mut(&req.payment_id) {
            None => {
                // A technical cancel: nothing held yet, and nothing ever will be.
                st.payments.insert(
                    req.payment_id,
                    Payment {
                        status: Status::Canceled,
                        authorization_ref: None,
                        amount_minor: 0,
                    },
                );
                Answer::Voided(VoidReceipt {
                    provider_ref,
                    released_minor: 0,
                })
            }
            Some(p) => match p.status {
                Status::Authorized => {
                    p.status = Status::Voided;
                    let released_minor = p.amount_minor;
                    st.activity.entry(req.order_id).or_default().voids += 1;
                    Answer::Voided(VoidReceipt {
                        provider_ref,
                        released_minor,
                    })
                }
                Status::Voided | Status::Canceled => Answer::Voided(VoidReceipt {
                    provider_ref,
                    released_minor: 0,
                }),
                Status::Captured | Status::Refunded => Answer::Failed(ProviderError::declined(
                    "already_captured",
                    "a captured payment cannot be voided; refund it",
                )),
            },
        };
        Self::remember(&mut st, &req.idempotency_key, fp, answer).into_void()
    }

    async fn do_refund(&self, req: &RefundRequest) -> Result<Receipt, ProviderError> {
        let fp = format!("refund:{}:{}", req.payment_id, req.amount_minor);
        if let Some(answer) = self.arrive(req.order_id, &req.idempotency_key, &fp) {
            return answer.into_receipt();
        }
        let mut st = self.lock();
        let answer = match st.payments.get_mut(&req.payment_id) {
            Some(p) if p.status == Status::Captured && req.amount_minor <= p.amount_minor => {
                p.status = Status::Refunded;
                st.activity.entry(req.order_id).or_default().refunds += 1;
                Answer::Receipt(Receipt {
                    provider_ref: format!("sim_re_{}", Uuid::new_v4().simple()),
                })
            }
            Some(p) if p.status == Status::Captured => Answer::Failed(ProviderError::declined(
                "amount_too_large",
                format!("{} captured, {} asked", p.amount_minor, req.amount_minor),
            )),
            Some(p) if p.status == Status::Refunded => Answer::Failed(ProviderError::declined(
                "already_refunded",
                "the payment was refunded already",
            )),
            _ => Answer::Failed(ProviderError::declined(
                "not_captured",
                "nothing was captured for this payment",
            )),
        };
        Self::remember(&mut st, &req.idempotency_key, fp, answer).into_receipt()
    }
}

impl Answer {
    fn into_authorization(self) -> Result<Authorization, ProviderError> {
        match self {
            Answer::Authorized(a) => Ok(a),
            Answer::Failed(e) => Err(e),
            other => Err(mismatch(&other)),
        }
    }

    fn into_receipt(self) -> Result<Receipt, ProviderError> {
        match self {
            Answer::Receipt(r) => Ok(r),
            Answer::Failed(e) => Err(e),
            other => Err(mismatch(&other)),
        }
    }

    fn into_void(self) -> Result<VoidReceipt, ProviderError> {
        match self {
            Answer::Voided(v) => Ok(v),
            Answer::Failed(e) => Err(e),
            other => Err(mismatch(&other)),
        }
    }
}

/// A key stored for one operation and presented to another: the
/// fingerprints differ, so this is only reachable through a bug.
fn mismatch(answer: &Answer) -> ProviderError {
    ProviderError::declined(
        "idempotency_key_reused",
        format!("this idempotency key answered another operation: {answer:?}"),
    )
}

impl PaymentProvider for SimulatedProvider {
    fn name(&self) -> &'static str {
        "simulated"
    }

    fn authorize<'a>(
        &'a self,
        req: &'a AuthorizeRequest,
    ) -> BoxFuture<'a, Result<Authorization, ProviderError>> {
        self.do_authorize(req).boxed()
    }

    fn capture<'a>(
        &'a self,
        req: &'a CaptureRequest,
    ) -> BoxFuture<'a, Result<Receipt, ProviderError>> {
        self.do_capture(req).boxed()
    }

    fn void<'a>(
        &'a self,
        req: &'a VoidRequest,
    ) -> BoxFuture<'a, Result<VoidReceipt, ProviderError>> {
        self.do_void(req).boxed()
    }

    fn refund<'a>(
        &'a self,
        req: &'a RefundRequest,
    ) -> BoxFuture<'a, Result<Receipt, ProviderError>> {
        self.do_refund(req).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(order_id: Uuid, token: &str) -> AuthorizeRequest {
        let payment_id = Uuid::new_v4();
        AuthorizeRequest {
            idempotency_key: format!("{payment_id}:authorize"),
            payment_id,
            order_id,
            amount_minor: 1500,
            currency: "EUR".into(),
            card_token: token.into(),
        }
    }

    fn sim() -> SimulatedProvider {
        SimulatedProvider::new(Duration::from_millis(50))
    }

    #[tokio::test]
    async fn tokens_decide_the_answer() {
        let p = sim();
        let ok = p.authorize(&auth(Uuid::new_v4(), TOK_VISA)).await.unwrap();
        assert!(ok.provider_ref.starts_with("sim_auth_"));
        for (token, code) in [
            (TOK_CHARGE_DECLINED, "card_declined"),
            (TOK_INSUFFICIENT_FUNDS, "insufficient_funds"),
            ("tok_nope", "invalid_token"),
        ] {
            match p.authorize(&auth(Uuid::new_v4(), token)).await {
                Err(ProviderError::Declined { code: c, .. }) => assert_eq!(c, code),
                other => panic!("{token}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn processing_error_fails_twice_per_order_then_approves() {
        let p = sim();
        let order = Uuid::new_v4();
        let req = auth(order, TOK_PROCESSING_ERROR);
        assert!(matches!(
            p.authorize(&req).await,
            Err(ProviderError::Transient(_))
        ));
        assert!(matches!(
            p.authorize(&req).await,
            Err(ProviderError::Transient(_))
        ));
        assert!(p.authorize(&req).await.is_ok());
        assert_eq!(p.activity(order).calls, 3);
        assert_eq!(p.activity(order).authorizations, 1);
        // Another order starts its own count.
        assert!(
            p.authorize(&auth(Uuid::new_v4(), TOK_PROCESSING_ERROR))
                .await
                .is_err()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_card_answers_after_the_callers_timeout() {
        let p = sim();
        let req = auth(Uuid::new_v4(), TOK_TIMEOUT);
        let r = tokio::time::timeout(Duration::from_millis(50), p.authorize(&req)).await;
        assert!(r.is_err(), "the caller's timeout fires first");
        assert_eq!(p.authorize(&req).await, Err(ProviderError::Timeout));
        assert_eq!(p.activity(req.order_id).authorizations, 0);
    }

    #[tokio::test]
    async fn a_repeated_key_replays_the_first_answer_and_never_holds_twice() {
        let p = sim();
        let req = auth(Uuid::new_v4(), TOK_VISA);
        let first = p.authorize(&req).await.unwrap();
        let again = p.authorize(&req).await.unwrap();
        assert_eq!(first, again);
        assert_eq!(p.activity(req.order_id).authorizations, 1);
        let mut other = req.clone();
        other.amount_minor = 1;
        assert!(matches!(
            p.authorize(&other).await,
            Err(ProviderError::Declined { code, .. }) if code == "idempotency_key_reused"
        ));
    }

    #[tokio::test]
    async fn capture_refund_and_void_follow_the_payment() {
        let p = sim();
        let req = auth(Uuid::new_v4(), TOK_VISA);
        let a = p.authorize(&req).await.unwrap();
        let cap = CaptureRequest {
            idempotency_key: "c".into(),
            payment_id: req.payment_id,
            order_id: req.order_id,
            authorization_ref: a.provider_ref,
            amount_minor: 1500,
        };
        let c1 = p.capture(&cap).await.unwrap();
        assert_eq!(p.capture(&cap).await.unwrap(), c1);
        let void = VoidRequest {
            idempotency_key: "v".into(),
            payment_id: req.payment_id,
            order_id: req.order_id,
        };
        assert!(
            matches!(p.void(&void).await, Err(ProviderError::Declined { code, .. }) if code == "already_captured")
        );
        let refund = RefundRequest {
            idempotency_key: "r".into(),
            payment_id: req.payment_id,
            order_id: req.order_id,
            amount_minor: 1500,
        };
        p.refund(&refund).await.unwrap();
        let act = p.activity(req.order_id);
        assert_eq!(
            (act.authorizations, act.captures, act.refunds, act.voids),
            (1, 1, 1, 0)
        );
    }

    #[tokio::test]
    async fn a_void_before_the_hold_closes_the_payment() {
        let p = sim();
        let req = auth(Uuid::new_v4(), TOK_VISA);
        let void = VoidRequest {
            idempotency_key: "v".into(),
            payment_id: req.payment_id,
            order_id: req.order_id,
        };
        assert_eq!(p.void(&void).await.unwrap().released_minor, 0);
        assert!(
            matches!(p.authorize(&req).await, Err(ProviderError::Declined { code, .. }) if code == "payment_canceled")
        );
        assert_eq!(p.activity(req.order_id).authorizations, 0);
    }

    #[tokio::test]
    async fn a_void_after_the_hold_releases_it() {
        let p = sim();
        let req = auth(Uuid::new_v4(), TOK_VISA);
        p.authorize(&req).await.unwrap();
        let void = VoidRequest {
            idempotency_key: "v".into(),
            payment_id: req.payment_id,
            order_id: req.order_id,
        };
        assert_eq!(p.void(&void).await.unwrap().released_minor, 1500);
        assert_eq!(
            p.void(&void).await.unwrap().released_minor,
            1500,
            "replayed"
        );
        assert_eq!(p.activity(req.order_id).voids, 1);
    }

    #[tokio::test]
    async fn an_outage_fails_every_call_transiently_and_counts_it() {
        let p = sim();
        p.set_outage(true);
        let req = auth(Uuid::new_v4(), TOK_VISA);
        assert!(matches!(
            p.authorize(&req).await,
            Err(ProviderError::Transient(_))
        ));
        p.set_outage(false);
        assert!(p.authorize(&req).await.is_ok());
        assert_eq!(p.calls(), 2);
    }
}
