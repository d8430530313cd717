//! The payment intent's rules, with no database and no network: which
//! command may do what in which state, and what each provider answer
//! changes. The handler asks [`plan`] before calling the provider and
//! [`decide`] inside the transaction that records the result, against the
//! intent as it is *then* (another delivery may have moved it meanwhile).
//!
//! One intent per order. Its states:
//!
//! ```text
//!              authorize ok          capture             refund
//! authorizing ------------> authorized -------> captured -------> refunded
//!      |  \  declined            |
//!      |   `--------> declined   | void (or refund before capture)
//!      |                 |       v
//!      `---- void -------+---> voided  <---- void/refund with no intent (tombstone)
//! ```
//!
//! - `authorizing` is committed BEFORE the provider is called, so a crash
//!   between the provider's answer and our commit leaves a trace; the next
//!   attempt calls the provider again with the same idempotency key and gets
//!   the same authorization back instead of a second one.
//! - Void and refund always answer. With nothing held or taken they close
//!   the intent (`voided`) and answer with amount zero; with no intent at
//!   all they record a tombstone, so a later authorize of that order is
//!   refused (`PaymentDeclined` code `order_closed`) and never charged.
//! - A refund before capture releases the hold and answers
//!   `PaymentRefunded` with amount zero (nothing was taken).
//! - A repeat of an operation already done changes nothing and emits nothing.
//! - Capture of a declined or voided intent and void of a captured one are
//!   refused (dead-lettered): the saga never asks for them.

use jetshop_contracts::payments::AuthorizePayment;
use sea_orm::{DeriveActiveEnum, EnumIter, sea_query::StringLen};
use uuid::Uuid;

use crate::{Error, ledger::Movement};

/// ISO 4217 "no currency": the currency of a tombstone, which never held money.
pub const NO_CURRENCY: &str = "XXX";

/// Decline code of an authorize for an order whose payment was closed first.
pub const ORDER_CLOSED: &str = "order_closed";

/// Namespace of payment ids (UUIDv5 of the order id).
const PAYMENT_NAMESPACE: &[u8] = b"jetshop.payments.intent";

/// The payment id of an order: derived, so every attempt, every replica and
/// every restart agrees on it (it is also our reference at the provider).
pub fn payment_id(order_id: Uuid) -> Uuid {
    Uuid::new_v5(&order_id, PAYMENT_NAMESPACE)
}

/// The idempotency key of one provider operation on a payment: the same for
/// every attempt at it, different for each operation.
pub fn idempotency_key(payment_id: Uuid, call: Call) -> String {
    format!("jetshop-{payment_id}-{}", call.as_str())
}

/// Where a payment intent stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum IntentState {
    /// Recorded; the provider is being (or was, before a crash) asked to hold the money.
    #[sea_orm(string_value = "authorizing")]
    Authorizing,
    /// The money is held on the card.
    #[sea_orm(string_value = "authorized")]
    Authorized,
    /// The card was declined; nothing is held.
    #[sea_orm(string_value = "declined")]
    Declined,
    /// The held money was taken.
    #[sea_orm(string_value = "captured")]
    Captured,
    /// Closed without taking anything (hold released, or never placed).
    #[sea_orm(string_value = "voided")]
    Voided,
    /// The taken money was given back.
    #[sea_orm(string_value = "refunded")]
    Refunded,
}

impl IntentState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            IntentState::Authorizing => "authorizing",
            IntentState::Authorized => "authorized",
            IntentState::Declined => "declined",
            IntentState::Captured => "captured",
            IntentState::Voided => "voided",
            IntentState::Refunded => "refunded",
        }
    }
}

impl std::fmt::Display for IntentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A command, by what it asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Hold the order's total.
    Authorize,
    /// Take the held money.
    Capture,
    /// Release the hold / close the payment.
    Void,
    /// Give the taken money back.
    Refund,
}

/// A provider operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// Hold money.
    Authorize,
    /// Take held money.
    Capture,
    /// Release a hold, or close the payment before any hold.
    Void,
    /// Give taken money back.
    Refund,
}

impl Call {
    /// The operation's name in idempotency keys and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Call::Authorize => "authorize",
            Call::Capture => "capture",
            Call::Void => "void",
            Call::Refund => "refund",
        }
    }
}

/// What the rules need to know about an intent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntentView {
    /// Where it stands.
    pub state: IntentState,
    /// Its amount in minor units (zero for a tombstone).
    pub amount_minor: i64,
    /// Whether an authorize of this order was answered already (authorized
    /// or declined, `order_closed` included).
    pub authorize_answered: bool,
}

/// What a command needs before its outcome can be recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Record the intent as `authorizing`, then call the provider.
    Open,
    /// Call the provider, then record its answer.
    Call(Call),
    /// Record without calling anyone (possibly nothing at all).
    Record,
    /// Not now: retry later.
    Retry(String),
    /// Never: the command is wrong for this intent.
    Refuse(String),
}

/// What the provider answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The hold is placed.
    Authorized {
        /// The provider's reference for it.
        provider_ref: String,
    },
    /// The card was declined.
    Declined {
        /// Machine-readable code.
        code: String,
        /// Why, for people.
        reason: String,
    },
    /// The held money was taken.
    Captured {
        /// The provider's reference for the capture.
        provider_ref: String,
    },
    /// The payment is closed at the provider; `released_minor` was held until now.
    Voided {
        /// The provider's reference for the void.
        provider_ref: String,
        /// What the void released (zero when nothing was held).
        released_minor: i64,
    },
    /// The taken money was given back.
    Refunded {
        /// The provider's reference for the refund.
        provider_ref: String,
    },
}

/// How the intent row changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Not at all.
    None,
    /// A closed intent is created for an order that had none.
    Tombstone,
    /// The intent moves from one state to another.
    Move {
        /// Expected current state (the update is conditional on it).
        from: IntentState,
        /// New state.
        to: IntentState,
        /// The provider's authorization reference, when this learns it.
        provider_ref: Option<String>,
        /// Decline code and reason, when declined.
        decline: Option<(String, String)>,
    },
    /// A closed intent records that a late authorize was refused.
    RefuseClosed,
}

/// The fact published in answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `PaymentAuthorized`.
    Authorized {
        /// The provider's reference.
        provider_ref: String,
        /// What is held.
        amount_minor: i64,
    },
    /// `PaymentDeclined`.
    Declined {
        /// Machine-readable code.
        code: String,
        /// Why.
        reason: String,
    },
    /// `PaymentCaptured`.
    Captured {
        /// What was taken.
        amount_minor: i64,
    },
    /// `PaymentVoided`.
    Voided {
        /// What was released.
        amount_minor: i64,
    },
    /// `PaymentRefunded`.
    Refunded {
        /// What was given back.
        amount_minor: i64,
    },
}

/// Everything one command records, in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The intent row's change.
    pub change: Change,
    /// Ledger movements to post.
    pub movements: Vec<Movement>,
    /// The event to publish, if any (none for a repeat).
    pub answer: Option<Answer>,
}

impl Decision {
    /// A repeat: nothing changes, nothing is said.
    pub fn nothing() -> Self {
        Self {
            change: Change::None,
            movements: vec![],
            answer: None,
        }
    }
}

/// Why a command cannot be recorded now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Try again later.
    Retry(String),
    /// Never.
    Refuse(String),
}

/// Before the provider: what does `op` need, given `intent`?
pub fn plan(op: Operation, intent: Option<&IntentView>) -> Plan {
    use IntentState::*;
    let state = intent.map(|i| i.state);
    match (op, state) {
        (Operation::Authorize, None) => Plan::Open,
        (Operation::Authorize, Some(Authorizing)) => Plan::Call(Call::Authorize),
        (Operation::Authorize, Some(_)) => Plan::Record,

        (Operation::Capture, None) => Plan::Refuse("no payment intent for this order".into()),
        (Operation::Capture, Some(Authorizing)) => {
            Plan::Retry("the authorization is still in progress".into())
        }
        (Operation::Capture, Some(Authorized)) => Plan::Call(Call::Capture),
        (Operation::Capture, Some(Captured | Refunded)) => Plan::Record,
        (Operation::Capture, Some(s @ (Declined | Voided))) => {
            Plan::Refuse(format!("cannot capture a {s} payment"))
        }

        (Operation::Void | Operation::Refund, None) => Plan::Record,
        (Operation::Void | Operation::Refund, Some(Authorizing | Authorized)) => {
            Plan::Call(Call::Void)
        }
        (Operation::Void | Operation::Refund, Some(Declined | Voided)) => Plan::Record,
        (Operation::Void, Some(s @ (Captured | Refunded))) => {
            Plan::Refuse(format!("cannot void a {s} payment; refund it instead"))
        }
        (Operation::Refund, Some(Captured)) => Plan::Call(Call::Refund),
        (Operation::Refund, Some(Refunded)) => Plan::Record,
    }
}

/// In the recording transaction: what to record, given the intent as it is
/// now and what the provider said (if it was asked).
pub fn decide(
    op: Operation,
    intent: Option<&IntentView>,
    outcome: Option<&Outcome>,
) -> Result<Decision, Verdict> {
    match op {
        Operation::Authorize => decide_authorize(intent, outcome),
        Operation::Capture => decide_capture(intent, outcome),
        Operation::Void | Operation::Refund => decide_close(op, intent, outcome),
    }
}

fn moved(from: IntentState, to: IntentState) -> Change {
    Change::Move {
        from,
        to,
        provider_ref: None,
        decline: None,
    }
}

fn decide_authorize(
    intent: Option<&IntentView>,
    outcome: Option<&Outcome>,
) -> Result<Decision, Verdict> {
    use IntentState::*;
    let Some(intent) = intent else {
        return Err(Verdict::Retry(
            "the payment intent is not recorded yet".into(),
        ));
    };
    match (intent.state, outcome) {
        (Authorizing, Some(Outcome::Authorized { provider_ref })) => Ok(Decision {
            change: Change::Move {
                from: Authorizing,
                to: Authorized,
                provider_ref: Some(provider_ref.clone()),
                decline: None,
            },
            movements: vec![Movement::authorize(
                intent.amount_minor,
                Some(provider_ref.as_str()),
            )],
            answer: Some(Answer::Authorized {
                provider_ref: provider_ref.clone(),
                amount_minor: intent.amount_minor,
            }),
        }),
        (Authorizing, Some(Outcome::Declined { code, reason })) => Ok(Decision {
            change: Change::Move {
                from: Authorizing,
                to: Declined,
                provider_ref: None,
                decline: Some((code.clone(), reason.clone())),
            },
            movements: vec![],
            answer: Some(Answer::Declined {
                code: code.clone(),
                reason: reason.clone(),
            }),
        }),
        (Authorizing, _) => Err(Verdict::Retry(
            "the authorization is still in progress".into(),
        )),
        // Closed before this authorize was answered (a void came first, or
        // won the race): refuse it, once. Whatever the provider said, the
        // void closed the payment there too, so nothing stays held.
        (Voided, _) if !intent.authorize_answered => Ok(Decision {
            change: Change::RefuseClosed,
            movements: vec![],
            answer: Some(Answer::Declined {
                code: ORDER_CLOSED.into(),
                reason: "the order's payment was closed before it was authorized".into(),
            }),
        }),
        _ => Ok(Decision::nothing()),
    }
}

fn decide_capture(
    intent: Option<&IntentView>,
    outcome: Option<&Outcome>,
) -> Result<Decision, Verdict> {
    use IntentState::*;
    let Some(intent) = intent else {
        return Err(Verdict::Refuse("no payment intent for this order".into()));
    };
    match (intent.state, outcome) {
        (Authorized, Some(Outcome::Captured { provider_ref })) => Ok(Decision {
            change: moved(Authorized, Captured),
            movements: vec![Movement::capture(
                intent.amount_minor,
                Some(provider_ref.as_str()),
            )],
            answer: Some(Answer::Captured {
                amount_minor: intent.amount_minor,
            }),
        }),
        (Captured | Refunded, _) => Ok(Decision::nothing()),
        (Authorizing | Authorized, _) => Err(Verdict::Retry(
            "the payment changed while the provider was called".into(),
        )),
        (s @ (Declined | Voided), _) => {
            Err(Verdict::Refuse(format!("cannot capture a {s} payment")))
        }
    }
}

/// Void and refund: both close what is not taken; refund also gives back
/// what is.
fn decide_close(
    op: Operation,
    intent: Option<&IntentView>,
    outcome: Option<&Outcome>,
) -> Result<Decision, Verdict> {
    use IntentState::*;
    let is_void = op == Operation::Void;
    // Nothing taken: a refund gives back zero, a void says what it released.
    let closed = |released: i64| {
        if is_void {
            Answer::Voided {
                amount_minor: released,
            }
        } else {
            Answer::Refunded { amount_minor: 0 }
        }
    };
    let Some(intent) = intent else {
        return match outcome {
            None => Ok(Decision {
                change: Change::Tombstone,
                movements: vec![],
                answer: Some(closed(0)),
            }),
            Some(_) => Err(Verdict::Retry(
                "the payment intent disappeared while the provider was called".into(),
            )),
        };
    };
    match (intent.state, outcome) {
        (
            Authorizing,
            Some(Outcome::Voided {
                provider_ref,
                released_minor,
            }),
        ) => {
            // The provider closed a payment we had not heard back about. If
            // it released a hold, that hold existed: book it and its release
            // together so the ledger tells what happened at the provider.
            let movements = if *released_minor > 0 {
                vec![
                    Movement::authorize(*released_minor, None),
                    Movement::void(*released_minor, Some(provider_ref.as_str())),
                ]
            } else {
                vec![]
            };
            Ok(Decision {
                change: moved(Authorizing, Voided),
                movements,
                answer: Some(closed(*released_minor)),
            })
        }
        (Authorized, Some(Outcome::Voided { provider_ref, .. })) => Ok(Decision {
            change: moved(Authorized, Voided),
            movements: vec![Movement::void(
                intent.amount_minor,
                Some(provider_ref.as_str()),
            )],
            answer: Some(closed(intent.amount_minor)),
        }),
        (Declined, None) => Ok(Decision {
            change: moved(Declined, Voided),
            movements: vec![],
            answer: Some(closed(0)),
        }),
        (Captured, Some(Outcome::Refunded { provider_ref })) if !is_void => Ok(Decision {
            change: moved(Captured, Refunded),
            movements: vec![Movement::refund(
                intent.amount_minor,
                Some(provider_ref.as_str()),
            )],
            answer: Some(Answer::Refunded {
                amount_minor: intent.amount_minor,
            }),
        }),
        (Voided, _) => Ok(Decision::nothing()),
        (Refunded, _) if !is_void => Ok(Decision::nothing()),
        (s @ (Captured | Refunded), _) if is_void => Err(Verdict::Refuse(format!(
            "cannot void a {s} payment; refund it instead"
        ))),
        _ => Err(Verdict::Retry(
            "the payment changed while the provider was called".into(),
        )),
    }
}

/// A validated authorize command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizeSpec {
    /// The order.
    pub order_id: Uuid,
    /// More than zero, in minor units.
    pub amount_minor: i64,
    /// Three upper-case letters.
    pub currency: String,
    /// Not empty, at most 255 characters.
    pub card_token: String,
}

impl AuthorizeSpec {
    /// Check an authorize command.
    pub fn parse(cmd: &AuthorizePayment) -> Result<Self, Error> {
        if cmd.amount.amount_minor <= 0 {
            return Err(Error::invalid("amount", "must be more than zero"));
        }
        let currency = &cmd.amount.currency;
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Error::invalid(
                "currency",
                "must be an ISO 4217 code of three upper-case letters",
            ));
        }
        if currency == NO_CURRENCY {
            return Err(Error::invalid("currency", "XXX holds no money"));
        }
        let token = cmd.card_token.trim();
        if token.is_empty() || token.len() > 255 || token != cmd.card_token {
            return Err(Error::invalid(
                "card_token",
                "must be 1 to 255 characters without surrounding spaces",
            ));
        }
        Ok(Self {
            order_id: cmd.order_id,
            amount_minor: cmd.amount.amount_minor,
            currency: currency.clone(),
            card_token: cmd.card_token.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use jetshop_contracts::catalog::Money;

    use super::*;
    use crate::ledger::MovementKind;
    use IntentState::*;

    fn intent(state: IntentState) -> IntentView {
        IntentView {
            state,
            amount_minor: 1500,
            authorize_answered: !matches!(state, Authorizing | Voided),
        }
    }

    fn kinds(d: &Decision) -> Vec<MovementKind> {
        d.movements.iter().map(|m| m.kind).collect()
    }

    fn authorized() -> Outcome {
        Outcome::Authorized {
            provider_ref: "sim_auth_1".into(),
        }
    }

    fn voided(released_minor: i64) -> Outcome {
        Outcome::Voided {
            provider_ref: "sim_void_1".into(),
            released_minor,
        }
    }

    #[test]
    fn payment_ids_and_keys_are_stable_per_order_and_distinct_per_operation() {
        let order = Uuid::new_v4();
        assert_eq!(payment_id(order), payment_id(order));
        assert_ne!(payment_id(order), payment_id(Uuid::new_v4()));
        let p = payment_id(order);
        assert_ne!(
            idempotency_key(p, Call::Authorize),
            idempotency_key(p, Call::Capture)
        );
    }

    #[test]
    fn given_no_intent_when_authorize_then_open_and_call_the_provider() {
        assert_eq!(plan(Operation::Authorize, None), Plan::Open);
        let i = intent(Authorizing);
        assert_eq!(
            plan(Operation::Authorize, Some(&i)),
            Plan::Call(Call::Authorize)
        );
        let d = decide(Operation::Authorize, Some(&i), Some(&authorized())).unwrap();
        assert_eq!(kinds(&d), vec![MovementKind::Authorize]);
        assert!(matches!(
            d.answer,
            Some(Answer::Authorized {
                amount_minor: 1500,
                ..
            })
        ));
    }

    #[test]
    fn given_authorizing_when_declined_then_declined_without_ledger() {
        let i = intent(Authorizing);
        let declined = Outcome::Declined {
            code: "card_declined".into(),
            reason: "no".into(),
        };
        let d = decide(Operation::Authorize, Some(&i), Some(&declined)).unwrap();
        assert!(d.movements.is_empty());
        assert!(matches!(d.change, Change::Move { to: Declined, .. }));
        assert!(
            matches!(d.answer, Some(Answer::Declined { ref code, .. }) if code == "card_declined")
        );
    }

    #[test]
    fn repeats_emit_nothing() {
        for (op, state) in [
            (Operation::Authorize, Authorized),
            (Operation::Authorize, Declined),
            (Operation::Authorize, Captured),
            (Operation::Capture, Captured),
            (Operation::Capture, Refunded),
            (Operation::Void, Voided),
            (Operation::Refund, Refunded),
            (Operation::Refund, Voided),
        ] {
            let i = intent(state);
            assert_eq!(plan(op, Some(&i)), Plan::Record, "{op:?} on {state}");
            assert_eq!(
                decide(op, Some(&i), None),
                Ok(Decision::nothing()),
                "{op:?} on {state}"
            );
        }
    }

    #[test]
    fn given_no_intent_when_void_then_tombstone_and_a_later_authorize_is_refused_once() {
        assert_eq!(plan(Operation::Void, None), Plan::Record);
        let d = decide(Operation::Void, None, None).unwrap();
        assert_eq!(d.change, Change::Tombstone);
        assert_eq!(d.answer, Some(Answer::Voided { amount_minor: 0 }));

        let tomb = IntentView {
            state: Voided,
            amount_minor: 0,
            authorize_answered: false,
        };
        assert_eq!(
            plan(Operation::Authorize, Some(&tomb)),
            Plan::Record,
            "never charged"
        );
        let d = decide(Operation::Authorize, Some(&tomb), None).unwrap();
        assert_eq!(d.change, Change::RefuseClosed);
        assert!(
            matches!(d.answer, Some(Answer::Declined { ref code, .. }) if code == ORDER_CLOSED)
        );
        let answered = IntentView {
            authorize_answered: true,
            ..tomb
        };
        assert_eq!(
            decide(Operation::Authorize, Some(&answered), None),
            Ok(Decision::nothing())
        );
    }

    #[test]
    fn given_no_intent_when_refund_then_tombstone_answered_with_a_zero_refund() {
        let d = decide(Operation::Refund, None, None).unwrap();
        assert_eq!(d.change, Change::Tombstone);
        assert_eq!(d.answer, Some(Answer::Refunded { amount_minor: 0 }));
    }

    #[test]
    fn given_authorized_when_void_then_the_hold_is_reversed() {
        let i = intent(Authorized);
        assert_eq!(plan(Operation::Void, Some(&i)), Plan::Call(Call::Void));
        let d = decide(Operation::Void, Some(&i), Some(&voided(1500))).unwrap();
        assert_eq!(kinds(&d), vec![MovementKind::Void]);
        assert_eq!(d.answer, Some(Answer::Voided { amount_minor: 1500 }));
    }

    #[test]
    fn given_authorizing_when_void_then_a_hold_the_provider_released_is_booked_and_reversed() {
        let i = intent(Authorizing);
        assert_eq!(plan(Operation::Void, Some(&i)), Plan::Call(Call::Void));
        let d = decide(Operation::Void, Some(&i), Some(&voided(1500))).unwrap();
        assert_eq!(kinds(&d), vec![MovementKind::Authorize, MovementKind::Void]);
        let d = decide(Operation::Void, Some(&i), Some(&voided(0))).unwrap();
        assert!(d.movements.is_empty());
        assert_eq!(d.answer, Some(Answer::Voided { amount_minor: 0 }));
        // The authorize still in flight is then refused, once.
        let closed = IntentView { state: Voided, ..i };
        let late = decide(Operation::Authorize, Some(&closed), Some(&authorized())).unwrap();
        assert_eq!(late.change, Change::RefuseClosed);
        assert!(late.movements.is_empty());
    }

    #[test]
    fn given_captured_when_refund_then_revenue_is_reversed() {
        let i = intent(Captured);
        assert_eq!(plan(Operation::Refund, Some(&i)), Plan::Call(Call::Refund));
        let refunded = Outcome::Refunded {
            provider_ref: "sim_re_1".into(),
        };
        let d = decide(Operation::Refund, Some(&i), Some(&refunded)).unwrap();
        assert_eq!(kinds(&d), vec![MovementKind::Refund]);
        assert_eq!(d.answer, Some(Answer::Refunded { amount_minor: 1500 }));
    }

    #[test]
    fn given_authorized_when_refund_then_the_hold_is_released_and_nothing_is_refunded() {
        let i = intent(Authorized);
        assert_eq!(plan(Operation::Refund, Some(&i)), Plan::Call(Call::Void));
        let d = decide(Operation::Refund, Some(&i), Some(&voided(1500))).unwrap();
        assert_eq!(kinds(&d), vec![MovementKind::Void]);
        assert_eq!(d.answer, Some(Answer::Refunded { amount_minor: 0 }));
    }

    #[test]
    fn given_declined_when_void_then_closed_with_nothing_released() {
        let i = intent(Declined);
        assert_eq!(plan(Operation::Void, Some(&i)), Plan::Record);
        let d = decide(Operation::Void, Some(&i), None).unwrap();
        assert!(matches!(
            d.change,
            Change::Move {
                from: Declined,
                to: Voided,
                ..
            }
        ));
        assert_eq!(d.answer, Some(Answer::Voided { amount_minor: 0 }));
    }

    #[test]
    fn impossible_requests_are_refused_and_early_ones_retried() {
        assert!(matches!(plan(Operation::Capture, None), Plan::Refuse(_)));
        assert!(matches!(
            plan(Operation::Capture, Some(&intent(Voided))),
            Plan::Refuse(_)
        ));
        assert!(matches!(
            plan(Operation::Capture, Some(&intent(Declined))),
            Plan::Refuse(_)
        ));
        assert!(matches!(
            plan(Operation::Void, Some(&intent(Captured))),
            Plan::Refuse(_)
        ));
        assert!(matches!(
            plan(Operation::Capture, Some(&intent(Authorizing))),
            Plan::Retry(_)
        ));
        // Moved by another delivery between the provider call and the commit.
        assert!(matches!(
            decide(Operation::Void, Some(&intent(Captured)), Some(&voided(0))),
            Err(Verdict::Refuse(_))
        ));
    }

    #[test]
    fn authorize_commands_are_validated() {
        let ok = AuthorizePayment {
            order_id: Uuid::new_v4(),
            amount: Money {
                amount_minor: 100,
                currency: "EUR".into(),
            },
            card_token: "tok_visa".into(),
        };
        assert!(AuthorizeSpec::parse(&ok).is_ok());
        let mut bad = ok.clone();
        bad.amount.amount_minor = 0;
        assert!(AuthorizeSpec::parse(&bad).is_err());
        let mut bad = ok.clone();
        bad.amount.currency = "eur".into();
        assert!(AuthorizeSpec::parse(&bad).is_err());
        let mut bad = ok.clone();
        bad.card_token = " ".into();
        assert!(AuthorizeSpec::parse(&bad).is_err());
    }
}
