//! The processor's rules, with no database and no network: what each
//! operation does to a payment, and what it answers.
//!
//! A payment is named by the merchant's reference. Its states:
//!
//! ```text
//!          authorize            capture              refund (all of it)
//! (none) ------------> authorized -------> captured ------------------> refunded
//!    |                     |
//!    | void                | void
//!    v                     v
//! canceled              voided        (both refuse every later authorization)
//! ```
//!
//! The card token decides an authorization, as a real processor's test
//! cards do:
//!
//! | token | authorize |
//! |---|---|
//! | `tok_visa` | approved |
//! | `tok_chargeDeclined` | 402 `card_declined` |
//! | `tok_insufficientFunds` | 402 `insufficient_funds` |
//! | `tok_processingError` | 503 `processing_error` for the first attempts of each order, then approved |
//! | `tok_timeout` | answers (503 `timeout`) only after `late_after`, longer than a caller waits |
//! | anything else | 400 `invalid_token` |
//!
//! An authorization of a payment that already holds money answers the same
//! hold, never a second one, whatever the idempotency key; an authorization
//! of a voided or canceled payment is refused (`payment_canceled`), which is
//! what makes a void sent before an authorization of unknown outcome (a
//! "technical cancel") safe.
//!
//! The functions here return a [`Decision`]; the caller writes it in one
//! transaction (see [`crate::processor`]).

use jetshop_contracts::card_processor::{
    ApiError, Authorization, AuthorizationId, Capture, CaptureId, CreateAuthorization,
    CreateCapture, CreateRefund, CreateVoid, ErrorType, Payment, PaymentStatus, Refund, RefundId,
    Void, VoidId, codes,
};
use uuid::Uuid;

/// Approves.
pub const TOK_VISA: &str = "tok_visa";
/// Declines with `card_declined`.
pub const TOK_CHARGE_DECLINED: &str = "tok_chargeDeclined";
/// Declines with `insufficient_funds`.
pub const TOK_INSUFFICIENT_FUNDS: &str = "tok_insufficientFunds";
/// Fails transiently for the first attempts of each order, then approves.
pub const TOK_PROCESSING_ERROR: &str = "tok_processingError";
/// Answers too late.
pub const TOK_TIMEOUT: &str = "tok_timeout";

/// ISO 4217 "no currency": the currency of a payment closed before any hold.
pub const NO_CURRENCY: &str = "XXX";

/// What a card token does to an authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Card {
    /// Approve.
    Approve,
    /// Decline with this code.
    Decline(&'static str),
    /// Fail transiently for the first attempts of the order.
    ProcessingError,
    /// Answer too late.
    Late,
    /// No such token.
    Unknown,
}

impl Card {
    /// The behaviour of `token`.
    pub fn of(token: &str) -> Self {
        match token {
            TOK_VISA => Card::Approve,
            TOK_CHARGE_DECLINED => Card::Decline(codes::CARD_DECLINED),
            TOK_INSUFFICIENT_FUNDS => Card::Decline(codes::INSUFFICIENT_FUNDS),
            TOK_PROCESSING_ERROR => Card::ProcessingError,
            TOK_TIMEOUT => Card::Late,
            _ => Card::Unknown,
        }
    }
}

/// A payment as the processor keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRecord {
    /// The merchant's reference.
    pub merchant_reference: Uuid,
    /// The order.
    pub order_reference: Uuid,
    /// Where it stands.
    pub status: PaymentStatus,
    /// The hold, once placed.
    pub authorization: Option<AuthorizationId>,
    /// ISO 4217 code ([`NO_CURRENCY`] when closed before any hold).
    pub currency: String,
    /// Held.
    pub authorized_minor: i64,
    /// Taken.
    pub captured_minor: i64,
    /// Given back.
    pub refunded_minor: i64,
    /// Released by a void.
    pub released_minor: i64,
}

impl PaymentRecord {
    /// The payment on the wire.
    pub fn view(&self) -> Payment {
        Payment {
            merchant_reference: self.merchant_reference,
            order_reference: self.order_reference,
            status: self.status,
            authorization: self.authorization.clone(),
            currency: self.currency.clone(),
            authorized_minor: self.authorized_minor,
            captured_minor: self.captured_minor,
            refunded_minor: self.refunded_minor,
            released_minor: self.released_minor,
        }
    }

    fn authorization_answer(&self, id: AuthorizationId) -> Authorization {
        Authorization {
            id,
            merchant_reference: self.merchant_reference,
            order_reference: self.order_reference,
            amount_minor: self.authorized_minor,
            currency: self.currency.clone(),
            status: self.status,
        }
    }
}

/// A money movement, recorded next to the payment's change (the activity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MovementKind {
    /// A hold placed.
    Authorization,
    /// Held money taken.
    Capture,
    /// A hold released.
    Void,
    /// Taken money given back.
    Refund,
}

impl MovementKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorization => "authorization",
            Self::Capture => "capture",
            Self::Void => "void",
            Self::Refund => "refund",
        }
    }
}

/// One movement: its id (the answer's), kind and amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    /// The id the answer carries (`auth_...`, `cap_...`, ...).
    pub id: String,
    /// What moved.
    pub kind: MovementKind,
    /// How much, in minor units.
    pub amount_minor: i64,
}

/// A definitive refusal: an HTTP status (4xx) and the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 400, 402, 404, 409 or 422.
    pub status: u16,
    /// The error body.
    pub error: ApiError,
}

impl Refusal {
    fn new(status: u16, kind: ErrorType, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            error: ApiError::new(kind, code, message),
        }
    }

    /// 400 `parameter_invalid`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            400,
            ErrorType::InvalidRequestError,
            codes::PARAMETER_INVALID,
            message,
        )
    }

    fn card(code: &str, message: &str) -> Self {
        Self::new(402, ErrorType::CardError, code, message)
    }

    fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::new(409, ErrorType::InvalidRequestError, code, message)
    }

    fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(404, ErrorType::InvalidRequestError, code, message)
    }

    /// 422: an idempotency key presented with another request.
    pub fn key_reused() -> Self {
        Self::new(
            422,
            ErrorType::IdempotencyError,
            codes::IDEMPOTENCY_KEY_REUSED,
            "this idempotency key was used with another request",
        )
    }
}

/// Why an operation could not be answered now (5xx, never stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A processing error: counts one more failure for the order.
    ProcessingError,
    /// The answer comes only after `late_after`.
    Late,
}

impl Failure {
    /// The error a caller gets (if it still waits).
    pub fn error(self) -> ApiError {
        match self {
            Failure::ProcessingError => ApiError::new(
                ErrorType::ApiError,
                codes::PROCESSING_ERROR,
                "processing error, try again",
            ),
            Failure::Late => ApiError::new(
                ErrorType::ApiError,
                codes::TIMEOUT,
                "the processor answered too late",
            ),
        }
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<T> {
    /// Write the payment's new state (and the movement, if any), answer 2xx.
    Apply {
        /// The payment as it is after the operation.
        payment: PaymentRecord,
        /// The money it moved.
        movement: Option<Movement>,
        /// The answer.
        answer: T,
    },
    /// Answer 2xx; nothing changes.
    Answer(T),
    /// Answer 4xx; nothing changes.
    Refuse(Refusal),
    /// Answer 5xx; nothing changes (but a processing error is counted).
    Fail(Failure),
}

fn valid_amount(amount_minor: i64) -> Result<(), Refusal> {
    if amount_minor > 0 {
        Ok(())
    } else {
        Err(Refusal::invalid(format!(
            "amount_minor must be more than zero, got {amount_minor}"
        )))
    }
}

fn valid_currency(currency: &str) -> Result<(), Refusal> {
    if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(Refusal::invalid(format!(
            "currency must be three upper-case letters (ISO 4217), got {currency:?}"
        )))
    }
}

macro_rules! check {
    ($e:expr) => {
        if let Err(refusal) = $e {
            return Decision::Refuse(refusal);
        }
    };
}

/// Hold `req.amount_minor` on the card.
///
/// `processing_failures` is how often this order's `tok_processingError`
/// failed already, `fail_first` how often it fails before it works;
/// `new_id` is the id of the hold if one is placed.
pub fn authorize(
    req: &CreateAuthorization,
    existing: Option<&PaymentRecord>,
    processing_failures: u32,
    fail_first: u32,
    new_id: AuthorizationId,
) -> Decision<Authorization> {
    check!(valid_amount(req.amount_minor));
    check!(valid_currency(&req.currency));
    let card = Card::of(&req.card_token);
    if card == Card::Late {
        // Before anything else: the answer is late whatever it would be.
        return Decision::Fail(Failure::Late);
    }
    if let Some(p) = existing {
        return match (p.status, &p.authorization) {
            (PaymentStatus::Voided | PaymentStatus::Canceled, _) => Decision::Refuse(
                Refusal::conflict(codes::PAYMENT_CANCELED, "the payment was canceled"),
            ),
            // Authorized under another key: the same hold, never a second.
            (_, Some(id)) => Decision::Answer(p.authorization_answer(id.clone())),
            (status, None) => Decision::Refuse(Refusal::conflict(
                codes::PAYMENT_CANCELED,
                format!("the payment is {} without a hold", status.as_str()),
            )),
        };
    }
    match card {
        Card::Approve => hold(req, new_id),
        Card::ProcessingError if processing_failures < fail_first => {
            Decision::Fail(Failure::ProcessingError)
        }
        Card::ProcessingError => hold(req, new_id),
        Card::Decline(code) if code == codes::INSUFFICIENT_FUNDS => {
            Decision::Refuse(Refusal::card(code, "your card has insufficient funds"))
        }
        Card::Decline(code) => Decision::Refuse(Refusal::card(code, "your card was declined")),
        Card::Late => Decision::Fail(Failure::Late),
        Card::Unknown => Decision::Refuse(Refusal::new(
            400,
            ErrorType::InvalidRequestError,
            codes::INVALID_TOKEN,
            format!("no such card token: {}", req.card_token),
        )),
    }
}

fn hold(req: &CreateAuthorization, id: AuthorizationId) -> Decision<Authorization> {
    let payment = PaymentRecord {
        merchant_reference: req.merchant_reference,
        order_reference: req.order_reference,
        status: PaymentStatus::Authorized,
        authorization: Some(id.clone()),
        currency: req.currency.clone(),
        authorized_minor: req.amount_minor,
        captured_minor: 0,
        refunded_minor: 0,
        released_minor: 0,
    };
    Decision::Apply {
        movement: Some(Movement {
            id: id.to_string(),
            kind: MovementKind::Authorization,
            amount_minor: req.amount_minor,
        }),
        answer: payment.authorization_answer(id),
        payment,
    }
}

/// Take held money from the hold `authorization` (the payment holding it,
/// if any, is `existing`).
pub fn capture(
    authorization: &AuthorizationId,
    req: &CreateCapture,
    existing: Option<&PaymentRecord>,
    new_id: CaptureId,
) -> Decision<Capture> {
    check!(valid_amount(req.amount_minor));
    let Some(p) = existing.filter(|p| p.authorization.as_ref() == Some(authorization)) else {
        return Decision::Refuse(Refusal::not_found(
            codes::NO_SUCH_AUTHORIZATION,
            format!("no authorization {authorization}"),
        ));
    };
    match p.status {
        PaymentStatus::Authorized if req.amount_minor > p.authorized_minor => {
            Decision::Refuse(Refusal::new(
                400,
                ErrorType::InvalidRequestError,
                codes::AMOUNT_TOO_LARGE,
                format!("{} held, {} asked", p.authorized_minor, req.amount_minor),
            ))
        }
        PaymentStatus::Authorized => {
            let payment = PaymentRecord {
                status: PaymentStatus::Captured,
                captured_minor: req.amount_minor,
                ..p.clone()
            };
            Decision::Apply {
                movement: Some(Movement {
                    id: new_id.to_string(),
                    kind: MovementKind::Capture,
                    amount_minor: req.amount_minor,
                }),
                answer: Capture {
                    id: new_id,
                    authorization: authorization.clone(),
                    merchant_reference: p.merchant_reference,
                    amount_minor: req.amount_minor,
                    currency: p.currency.clone(),
                },
                payment,
            }
        }
        PaymentStatus::Captured | PaymentStatus::Refunded => Decision::Refuse(Refusal::conflict(
            codes::ALREADY_CAPTURED,
            "the authorization was captured already",
        )),
        PaymentStatus::Voided | PaymentStatus::Canceled => Decision::Refuse(Refusal::conflict(
            codes::AUTHORIZATION_VOIDED,
            "the authorization was voided",
        )),
    }
}

/// Release whatever is held under the payment, or close it before any hold.
pub fn void(req: &CreateVoid, existing: Option<&PaymentRecord>, new_id: VoidId) -> Decision<Void> {
    let answer = |released_minor| Void {
        id: new_id.clone(),
        merchant_reference: req.merchant_reference,
        released_minor,
    };
    let Some(p) = existing else {
        // A technical cancel: nothing held yet, and nothing ever will be.
        return Decision::Apply {
            payment: PaymentRecord {
                merchant_reference: req.merchant_reference,
                order_reference: req.order_reference,
                status: PaymentStatus::Canceled,
                authorization: None,
                currency: NO_CURRENCY.into(),
                authorized_minor: 0,
                captured_minor: 0,
                refunded_minor: 0,
                released_minor: 0,
            },
            movement: None,
            answer: answer(0),
        };
    };
    match p.status {
        PaymentStatus::Authorized => Decision::Apply {
            payment: PaymentRecord {
                status: PaymentStatus::Voided,
                released_minor: p.authorized_minor,
                ..p.clone()
            },
            movement: Some(Movement {
                id: new_id.to_string(),
                kind: MovementKind::Void,
                amount_minor: p.authorized_minor,
            }),
            answer: answer(p.authorized_minor),
        },
        PaymentStatus::Voided | PaymentStatus::Canceled => Decision::Answer(answer(0)),
        PaymentStatus::Captured | PaymentStatus::Refunded => Decision::Refuse(Refusal::conflict(
            codes::ALREADY_CAPTURED,
            "a captured payment cannot be voided; refund it",
        )),
    }
}

/// Give captured money back.
pub fn refund(
    req: &CreateRefund,
    existing: Option<&PaymentRecord>,
    new_id: RefundId,
) -> Decision<Refund> {
    check!(valid_amount(req.amount_minor));
    let Some(p) = existing else {
        return Decision::Refuse(Refusal::conflict(
            codes::NOT_CAPTURED,
            "nothing was captured for this payment",
        ));
    };
    match p.status {
        PaymentStatus::Captured => {
            let left = p.captured_minor - p.refunded_minor;
            if req.amount_minor > left {
                return Decision::Refuse(Refusal::new(
                    400,
                    ErrorType::InvalidRequestError,
                    codes::AMOUNT_TOO_LARGE,
                    format!("{left} left to refund, {} asked", req.amount_minor),
                ));
            }
            let refunded_minor = p.refunded_minor + req.amount_minor;
            let payment = PaymentRecord {
                status: if refunded_minor == p.captured_minor {
                    PaymentStatus::Refunded
                } else {
                    PaymentStatus::Captured
                },
                refunded_minor,
                ..p.clone()
            };
            Decision::Apply {
                movement: Some(Movement {
                    id: new_id.to_string(),
                    kind: MovementKind::Refund,
                    amount_minor: req.amount_minor,
                }),
                answer: Refund {
                    id: new_id,
                    merchant_reference: p.merchant_reference,
                    amount_minor: req.amount_minor,
                    currency: p.currency.clone(),
                },
                payment,
            }
        }
        PaymentStatus::Refunded => Decision::Refuse(Refusal::conflict(
            codes::ALREADY_REFUNDED,
            "the payment was refunded already",
        )),
        PaymentStatus::Authorized | PaymentStatus::Voided | PaymentStatus::Canceled => {
            Decision::Refuse(Refusal::conflict(
                codes::NOT_CAPTURED,
                "nothing was captured for this payment",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    //! Given a payment (or none), when an operation arrives, then this
    //! decision. No database, no clock.

    use super::*;

    const FAIL_FIRST: u32 = 2;

    fn auth_req(token: &str) -> CreateAuthorization {
        CreateAuthorization {
            merchant_reference: Uuid::new_v4(),
            order_reference: Uuid::new_v4(),
            amount_minor: 1500,
            currency: "EUR".into(),
            card_token: token.into(),
        }
    }

    /// Given an approved hold of `req`.
    fn given_authorized(req: &CreateAuthorization) -> PaymentRecord {
        match authorize(req, None, 0, FAIL_FIRST, AuthorizationId::new()) {
            Decision::Apply { payment, .. } => payment,
            other => panic!("{other:?}"),
        }
    }

    /// Given a captured payment of `req`.
    fn given_captured(req: &CreateAuthorization) -> PaymentRecord {
        let p = given_authorized(req);
        let id = p.authorization.clone().unwrap();
        match capture(
            &id,
            &CreateCapture { amount_minor: 1500 },
            Some(&p),
            CaptureId::new(),
        ) {
            Decision::Apply { payment, .. } => payment,
            other => panic!("{other:?}"),
        }
    }

    fn refused_code<T: std::fmt::Debug>(d: Decision<T>) -> (u16, String) {
        match d {
            Decision::Refuse(r) => (r.status, r.error.code),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn void_req(p: &PaymentRecord) -> CreateVoid {
        CreateVoid {
            merchant_reference: p.merchant_reference,
            order_reference: p.order_reference,
        }
    }

    #[test]
    fn given_no_payment_when_tok_visa_authorizes_then_a_hold_is_placed() {
        let req = auth_req(TOK_VISA);
        let id = AuthorizationId::new();
        match authorize(&req, None, 0, FAIL_FIRST, id.clone()) {
            Decision::Apply {
                payment,
                movement,
                answer,
            } => {
                assert_eq!(payment.status, PaymentStatus::Authorized);
                assert_eq!(payment.authorized_minor, 1500);
                assert_eq!(answer.id, id);
                assert_eq!(answer.status, PaymentStatus::Authorized);
                let m = movement.unwrap();
                assert_eq!(
                    (m.kind, m.amount_minor),
                    (MovementKind::Authorization, 1500)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn given_no_payment_when_declining_tokens_authorize_then_card_errors() {
        for (token, status, code) in [
            (TOK_CHARGE_DECLINED, 402, codes::CARD_DECLINED),
            (TOK_INSUFFICIENT_FUNDS, 402, codes::INSUFFICIENT_FUNDS),
            ("tok_nope", 400, codes::INVALID_TOKEN),
        ] {
            let d = authorize(
                &auth_req(token),
                None,
                0,
                FAIL_FIRST,
                AuthorizationId::new(),
            );
            assert_eq!(refused_code(d), (status, code.to_owned()), "{token}");
        }
        let d = authorize(
            &auth_req(TOK_CHARGE_DECLINED),
            None,
            0,
            FAIL_FIRST,
            AuthorizationId::new(),
        );
        let Decision::Refuse(r) = d else { panic!() };
        assert_eq!(r.error.kind, ErrorType::CardError);
    }

    #[test]
    fn given_processing_errors_when_authorizing_then_it_fails_the_first_attempts_then_holds() {
        let req = auth_req(TOK_PROCESSING_ERROR);
        for failures in 0..FAIL_FIRST {
            assert_eq!(
                authorize(&req, None, failures, FAIL_FIRST, AuthorizationId::new()),
                Decision::Fail(Failure::ProcessingError)
            );
        }
        assert!(matches!(
            authorize(&req, None, FAIL_FIRST, FAIL_FIRST, AuthorizationId::new()),
            Decision::Apply { .. }
        ));
    }

    #[test]
    fn given_anything_when_tok_timeout_authorizes_then_the_answer_is_late() {
        let req = auth_req(TOK_TIMEOUT);
        assert_eq!(
            authorize(&req, None, 0, FAIL_FIRST, AuthorizationId::new()),
            Decision::Fail(Failure::Late)
        );
    }

    #[test]
    fn given_a_hold_when_authorized_again_then_the_same_hold_answers() {
        let req = auth_req(TOK_VISA);
        let p = given_authorized(&req);
        match authorize(&req, Some(&p), 0, FAIL_FIRST, AuthorizationId::new()) {
            Decision::Answer(a) => assert_eq!(Some(a.id), p.authorization),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn given_bad_amount_or_currency_when_authorizing_then_invalid_request() {
        let mut req = auth_req(TOK_VISA);
        req.amount_minor = 0;
        let d = authorize(&req, None, 0, FAIL_FIRST, AuthorizationId::new());
        assert_eq!(refused_code(d), (400, codes::PARAMETER_INVALID.into()));
        let mut req = auth_req(TOK_VISA);
        req.currency = "eur".into();
        let d = authorize(&req, None, 0, FAIL_FIRST, AuthorizationId::new());
        assert_eq!(refused_code(d), (400, codes::PARAMETER_INVALID.into()));
    }

    #[test]
    fn given_a_hold_when_capturing_then_at_most_the_held_amount_is_taken() {
        let p = given_authorized(&auth_req(TOK_VISA));
        let id = p.authorization.clone().unwrap();
        let too_much = capture(
            &id,
            &CreateCapture { amount_minor: 1501 },
            Some(&p),
            CaptureId::new(),
        );
        assert_eq!(
            refused_code(too_much),
            (400, codes::AMOUNT_TOO_LARGE.into())
        );
        match capture(
            &id,
            &CreateCapture { amount_minor: 1500 },
            Some(&p),
            CaptureId::new(),
        ) {
            Decision::Apply {
                payment, answer, ..
            } => {
                assert_eq!(payment.status, PaymentStatus::Captured);
                assert_eq!(payment.captured_minor, 1500);
                assert_eq!(answer.authorization, id);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn given_a_captured_payment_when_capturing_again_then_already_captured() {
        let p = given_captured(&auth_req(TOK_VISA));
        let id = p.authorization.clone().unwrap();
        let d = capture(
            &id,
            &CreateCapture { amount_minor: 1 },
            Some(&p),
            CaptureId::new(),
        );
        assert_eq!(refused_code(d), (409, codes::ALREADY_CAPTURED.into()));
    }

    #[test]
    fn given_no_such_hold_when_capturing_then_not_found() {
        let p = given_authorized(&auth_req(TOK_VISA));
        let other = AuthorizationId::new();
        let d = capture(
            &other,
            &CreateCapture { amount_minor: 1 },
            Some(&p),
            CaptureId::new(),
        );
        assert_eq!(refused_code(d), (404, codes::NO_SUCH_AUTHORIZATION.into()));
        let d = capture(
            &other,
            &CreateCapture { amount_minor: 1 },
            None,
            CaptureId::new(),
        );
        assert_eq!(refused_code(d), (404, codes::NO_SUCH_AUTHORIZATION.into()));
    }

    #[test]
    fn given_a_hold_when_voided_then_it_is_released_and_later_captures_and_authorizations_refused()
    {
        let req = auth_req(TOK_VISA);
        let p = given_authorized(&req);
        let voided = match void(&void_req(&p), Some(&p), VoidId::new()) {
            Decision::Apply {
                payment,
                movement,
                answer,
            } => {
                assert_eq!(answer.released_minor, 1500);
                assert_eq!(movement.unwrap().kind, MovementKind::Void);
                payment
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(voided.status, PaymentStatus::Voided);
        let id = voided.authorization.clone().unwrap();
        let d = capture(
            &id,
            &CreateCapture { amount_minor: 1 },
            Some(&voided),
            CaptureId::new(),
        );
        assert_eq!(refused_code(d), (409, codes::AUTHORIZATION_VOIDED.into()));
        let d = authorize(&req, Some(&voided), 0, FAIL_FIRST, AuthorizationId::new());
        assert_eq!(refused_code(d), (409, codes::PAYMENT_CANCELED.into()));
        // A second void releases nothing more.
        match void(&void_req(&voided), Some(&voided), VoidId::new()) {
            Decision::Answer(v) => assert_eq!(v.released_minor, 0),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn given_no_payment_when_voided_then_it_is_closed_and_a_late_authorization_refused() {
        let req = auth_req(TOK_VISA);
        let cancel = CreateVoid {
            merchant_reference: req.merchant_reference,
            order_reference: req.order_reference,
        };
        let closed = match void(&cancel, None, VoidId::new()) {
            Decision::Apply {
                payment,
                movement,
                answer,
            } => {
                assert_eq!(answer.released_minor, 0);
                assert_eq!(movement, None, "nothing moved");
                payment
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(closed.status, PaymentStatus::Canceled);
        let d = authorize(&req, Some(&closed), 0, FAIL_FIRST, AuthorizationId::new());
        assert_eq!(refused_code(d), (409, codes::PAYMENT_CANCELED.into()));
    }

    #[test]
    fn given_a_captured_payment_when_voided_then_refused() {
        let p = given_captured(&auth_req(TOK_VISA));
        let d = void(&void_req(&p), Some(&p), VoidId::new());
        assert_eq!(refused_code(d), (409, codes::ALREADY_CAPTURED.into()));
    }

    #[test]
    fn given_a_captured_payment_when_refunding_then_at_most_what_was_captured() {
        let p = given_captured(&auth_req(TOK_VISA));
        let req = |amount_minor| CreateRefund {
            merchant_reference: p.merchant_reference,
            amount_minor,
        };
        let d = refund(&req(1501), Some(&p), RefundId::new());
        assert_eq!(refused_code(d), (400, codes::AMOUNT_TOO_LARGE.into()));
        let partly = match refund(&req(500), Some(&p), RefundId::new()) {
            Decision::Apply { payment, .. } => payment,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (partly.status, partly.refunded_minor),
            (PaymentStatus::Captured, 500)
        );
        let d = refund(&req(1001), Some(&partly), RefundId::new());
        assert_eq!(refused_code(d), (400, codes::AMOUNT_TOO_LARGE.into()));
        let all = match refund(&req(1000), Some(&partly), RefundId::new()) {
            Decision::Apply { payment, .. } => payment,
            other => panic!("{other:?}"),
        };
        assert_eq!(all.status, PaymentStatus::Refunded);
        let d = refund(&req(1), Some(&all), RefundId::new());
        assert_eq!(refused_code(d), (409, codes::ALREADY_REFUNDED.into()));
    }

    #[test]
    fn given_nothing_captured_when_refunding_then_not_captured() {
        let p = given_authorized(&auth_req(TOK_VISA));
        let req = CreateRefund {
            merchant_reference: p.merchant_reference,
            amount_minor: 1,
        };
        assert_eq!(
            refused_code(refund(&req, Some(&p), RefundId::new())),
            (409, codes::NOT_CAPTURED.into())
        );
        assert_eq!(
            refused_code(refund(&req, None, RefundId::new())),
            (409, codes::NOT_CAPTURED.into())
        );
    }
}
