//! The card processor's HTTP API: what the payments' provider adapter sends
//! and what the processor (`jetshop-card-processor`) answers, as JSON.
//!
//! It is shaped like a real processor's (Stripe's, mostly), so that an
//! adapter for a real one is a second implementation of the same idea:
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/authorizations` + `Idempotency-Key` ([`CreateAuthorization`]) | [`Authorization`] |
//! | `POST /v1/authorizations/{id}/capture` ([`CreateCapture`]) | [`Capture`] |
//! | `POST /v1/voids` ([`CreateVoid`]) | [`Void`] |
//! | `POST /v1/refunds` ([`CreateRefund`]) | [`Refund`] |
//! | `GET /v1/payments/{merchant_reference}` | [`Payment`] |
//! | `GET /v1/test_helpers/activity?order_reference=` | [`Activity`] |
//! | `PUT /v1/test_helpers/outage` ([`Outage`]) | [`Outage`] |
//!
//! Every `POST` takes an `Idempotency-Key`: a repeated key with the same
//! request gets the first answer again (with `Idempotent-Replayed: true`),
//! a repeated key with another request is refused (422
//! `idempotency_error`). Only definitive answers (2xx, 4xx) are kept for
//! replay; a 5xx is never stored, so a retry with the same key tries again.
//!
//! A payment is named by the merchant's own reference (our payment id),
//! so a void works even when the merchant never learnt the authorization's
//! id: it releases whatever is held under that reference, or closes the
//! reference so that a later authorization of it is refused.
//!
//! Failures answer [`ErrorBody`] with a status that says who must act:
//! 402 `card_error` (the card said no), 400/404/409 `invalid_request_error`
//! (the request can never work as sent), 422 `idempotency_error`, 503
//! `api_error` (try again later).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Request header carrying the idempotency key of a `POST`.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// Response header set to `true` when the answer is a stored one, replayed.
pub const IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";

/// The API's paths, written once.
pub mod paths {
    use uuid::Uuid;

    use super::AuthorizationId;

    /// `POST`: hold money on a card.
    pub const AUTHORIZATIONS: &str = "/v1/authorizations";
    /// `POST`: release a hold, or close a payment before any hold.
    pub const VOIDS: &str = "/v1/voids";
    /// `POST`: give captured money back.
    pub const REFUNDS: &str = "/v1/refunds";
    /// `GET` (`?order_reference=`): what the processor did (test mode only).
    pub const ACTIVITY: &str = "/v1/test_helpers/activity";
    /// `PUT`: switch the simulated outage on or off (test mode only).
    pub const OUTAGE: &str = "/v1/test_helpers/outage";
    /// `GET`: the process is alive.
    pub const HEALTHZ: &str = "/healthz";

    /// `POST`: take held money.
    pub fn capture(authorization: &AuthorizationId) -> String {
        format!("{AUTHORIZATIONS}/{authorization}/capture")
    }

    /// `GET`: where a payment stands.
    pub fn payment(merchant_reference: Uuid) -> String {
        format!("/v1/payments/{merchant_reference}")
    }
}

/// Error codes the processor answers with (`error.code`).
pub mod codes {
    /// 402: the issuer declined.
    pub const CARD_DECLINED: &str = "card_declined";
    /// 402: not enough money on the card.
    pub const INSUFFICIENT_FUNDS: &str = "insufficient_funds";
    /// 400: no such card token.
    pub const INVALID_TOKEN: &str = "invalid_token";
    /// 400: a field is missing or wrong.
    pub const PARAMETER_INVALID: &str = "parameter_invalid";
    /// 404: no such authorization.
    pub const NO_SUCH_AUTHORIZATION: &str = "no_such_authorization";
    /// 404: no such payment.
    pub const NO_SUCH_PAYMENT: &str = "no_such_payment";
    /// 400: more than is held (capture) or captured (refund).
    pub const AMOUNT_TOO_LARGE: &str = "amount_too_large";
    /// 409: the authorization was captured already.
    pub const ALREADY_CAPTURED: &str = "already_captured";
    /// 409: the authorization was voided.
    pub const AUTHORIZATION_VOIDED: &str = "authorization_voided";
    /// 409: the payment was voided (or closed) before this authorization.
    pub const PAYMENT_CANCELED: &str = "payment_canceled";
    /// 409: nothing was captured to refund.
    pub const NOT_CAPTURED: &str = "not_captured";
    /// 409: everything captured was refunded already.
    pub const ALREADY_REFUNDED: &str = "already_refunded";
    /// 422: the idempotency key was used with another request.
    pub const IDEMPOTENCY_KEY_REUSED: &str = "idempotency_key_reused";
    /// 503: the processor is down (simulated outage).
    pub const PROCESSOR_OUTAGE: &str = "processor_outage";
    /// 503: a processing error; try again.
    pub const PROCESSING_ERROR: &str = "processing_error";
    /// 503: the answer came too late to be of use.
    pub const TIMEOUT: &str = "timeout";
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The wire prefix.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id (time-ordered).
            pub fn new() -> Self {
                Self(format!("{}{}", $prefix, Uuid::now_v7().simple()))
            }

            /// Parse an id: the prefix, then 32 lower-case hex digits.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                let hex = s.strip_prefix($prefix).ok_or_else(|| IdError {
                    kind: stringify!($name),
                    value: s.to_owned(),
                })?;
                if hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(IdError {
                        kind: stringify!($name),
                        value: s.to_owned(),
                    })
                }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

prefixed_id!(
    /// The processor's id of a hold (`auth_...`).
    AuthorizationId,
    "auth_"
);
prefixed_id!(
    /// The processor's id of a capture (`cap_...`).
    CaptureId,
    "cap_"
);
prefixed_id!(
    /// The processor's id of a void (`void_...`).
    VoidId,
    "void_"
);
prefixed_id!(
    /// The processor's id of a refund (`re_...`).
    RefundId,
    "re_"
);

/// Text that is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {kind}: {value:?}")]
pub struct IdError {
    kind: &'static str,
    value: String,
}

/// Where a payment stands at the processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Money is held on the card.
    Authorized,
    /// The held money was taken (and not all of it given back).
    Captured,
    /// Everything taken was given back.
    Refunded,
    /// The hold was released.
    Voided,
    /// Closed before any hold: every later authorization is refused.
    Canceled,
}

impl PaymentStatus {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorized => "authorized",
            Self::Captured => "captured",
            Self::Refunded => "refunded",
            Self::Voided => "voided",
            Self::Canceled => "canceled",
        }
    }

    /// The status named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Authorized,
            Self::Captured,
            Self::Refunded,
            Self::Voided,
            Self::Canceled,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// `POST /v1/authorizations`: hold an amount on a card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateAuthorization {
    /// The merchant's reference of the payment (our payment id).
    pub merchant_reference: Uuid,
    /// The order paid for (for the merchant's books and the activity).
    pub order_reference: Uuid,
    /// Amount in minor units, more than zero.
    pub amount_minor: i64,
    /// ISO 4217 code, three upper-case letters.
    pub currency: String,
    /// The card token (test mode: `tok_visa`, `tok_chargeDeclined`, ...).
    pub card_token: String,
}

/// An approved hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    /// The processor's id of the hold.
    pub id: AuthorizationId,
    /// The merchant's reference of the payment.
    pub merchant_reference: Uuid,
    /// The order.
    pub order_reference: Uuid,
    /// Amount held, in minor units.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Where the payment stands now.
    pub status: PaymentStatus,
}

/// `POST /v1/authorizations/{id}/capture`: take held money.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateCapture {
    /// Amount to take, in minor units: more than zero, at most what is held.
    pub amount_minor: i64,
}

/// A capture made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capture {
    /// The processor's id of the capture.
    pub id: CaptureId,
    /// The hold it took from.
    pub authorization: AuthorizationId,
    /// The merchant's reference of the payment.
    pub merchant_reference: Uuid,
    /// Amount taken, in minor units.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
}

/// `POST /v1/voids`: release the hold of a payment, or close it before any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateVoid {
    /// The merchant's reference of the payment.
    pub merchant_reference: Uuid,
    /// The order (kept when the payment was never authorized).
    pub order_reference: Uuid,
}

/// A void made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Void {
    /// The processor's id of the void.
    pub id: VoidId,
    /// The merchant's reference of the payment.
    pub merchant_reference: Uuid,
    /// Minor units released; zero when nothing was held (the payment is
    /// closed all the same).
    pub released_minor: i64,
}

/// `POST /v1/refunds`: give captured money back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRefund {
    /// The merchant's reference of the payment.
    pub merchant_reference: Uuid,
    /// Amount to give back, in minor units: more than zero, at most what
    /// was captured and not yet refunded.
    pub amount_minor: i64,
}

/// A refund made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// The processor's id of the refund.
    pub id: RefundId,
    /// The merchant's reference of the payment.
    pub merchant_reference: Uuid,
    /// Amount given back, in minor units.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
}

/// `GET /v1/payments/{merchant_reference}`: a payment as the processor sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// The merchant's reference.
    pub merchant_reference: Uuid,
    /// The order.
    pub order_reference: Uuid,
    /// Where it stands.
    pub status: PaymentStatus,
    /// The hold's id, once authorized.
    pub authorization: Option<AuthorizationId>,
    /// ISO 4217 code (`XXX` for a payment closed before any hold).
    pub currency: String,
    /// Held, in minor units.
    pub authorized_minor: i64,
    /// Taken.
    pub captured_minor: i64,
    /// Given back.
    pub refunded_minor: i64,
    /// Released by a void.
    pub released_minor: i64,
}

/// `GET /v1/test_helpers/activity` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityQuery {
    /// One order's activity; every order's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_reference: Option<Uuid>,
}

/// What the processor did, for one order or for all: the "never charged
/// twice" check of the tests and drills.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// Requests that reached the processor (any operation, any outcome,
    /// replays and outages included).
    pub calls: u64,
    /// Holds placed.
    pub authorizations: u32,
    /// Captures made.
    pub captures: u32,
    /// Holds released.
    pub voids: u32,
    /// Refunds made.
    pub refunds: u32,
    /// Minor units held.
    pub authorized_minor: i64,
    /// Minor units taken.
    pub captured_minor: i64,
    /// Minor units released.
    pub voided_minor: i64,
    /// Minor units given back.
    pub refunded_minor: i64,
}

/// `PUT /v1/test_helpers/outage` body and answer: while on, every
/// operation answers 503 `api_error` (`processor_outage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outage {
    /// Whether the simulated outage is on.
    pub on: bool,
}

/// Who must act on an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    /// 402: the card was declined; asking again gives the same answer.
    CardError,
    /// 400/404/409: the request can never work as sent.
    InvalidRequestError,
    /// 422: the idempotency key was used with another request.
    IdempotencyError,
    /// 5xx: the processor could not answer now; try again.
    ApiError,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ApiError,
}

/// An error, as the processor reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Who must act.
    #[serde(rename = "type")]
    pub kind: ErrorType,
    /// Machine-readable code (see [`codes`]).
    pub code: String,
    /// For people.
    pub message: String,
}

impl ApiError {
    /// An error of `kind` with a code and a message.
    pub fn new(kind: ErrorType, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind,
            code: code.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The wire shapes, pinned: a renamed or retyped field fails here
    //! before it fails a payments replica talking to an older processor.

    use serde_json::json;

    use super::*;

    const MERCHANT: &str = "0190a5f0-0000-7000-8000-000000000001";
    const ORDER: &str = "0190a5f0-0000-7000-8000-000000000002";
    const AUTH: &str = "auth_0190a5f000007000800000000000000a";

    fn uuid(s: &str) -> Uuid {
        s.parse().unwrap()
    }

    fn roundtrip<T>(value: &T, expected: serde_json::Value)
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
    {
        assert_eq!(serde_json::to_value(value).unwrap(), expected);
        let back: T = serde_json::from_value(expected).unwrap();
        assert_eq!(&back, value);
    }

    #[test]
    fn authorization_request_and_answer() {
        roundtrip(
            &CreateAuthorization {
                merchant_reference: uuid(MERCHANT),
                order_reference: uuid(ORDER),
                amount_minor: 1500,
                currency: "EUR".into(),
                card_token: "tok_visa".into(),
            },
            json!({
                "merchant_reference": MERCHANT,
                "order_reference": ORDER,
                "amount_minor": 1500,
                "currency": "EUR",
                "card_token": "tok_visa",
            }),
        );
        roundtrip(
            &Authorization {
                id: AuthorizationId::parse(AUTH).unwrap(),
                merchant_reference: uuid(MERCHANT),
                order_reference: uuid(ORDER),
                amount_minor: 1500,
                currency: "EUR".into(),
                status: PaymentStatus::Authorized,
            },
            json!({
                "id": AUTH,
                "merchant_reference": MERCHANT,
                "order_reference": ORDER,
                "amount_minor": 1500,
                "currency": "EUR",
                "status": "authorized",
            }),
        );
    }

    #[test]
    fn capture_void_and_refund() {
        let cap = CaptureId::new();
        roundtrip(
            &CreateCapture { amount_minor: 10 },
            json!({"amount_minor": 10}),
        );
        roundtrip(
            &Capture {
                id: cap.clone(),
                authorization: AuthorizationId::parse(AUTH).unwrap(),
                merchant_reference: uuid(MERCHANT),
                amount_minor: 10,
                currency: "EUR".into(),
            },
            json!({
                "id": cap.as_str(),
                "authorization": AUTH,
                "merchant_reference": MERCHANT,
                "amount_minor": 10,
                "currency": "EUR",
            }),
        );
        roundtrip(
            &CreateVoid {
                merchant_reference: uuid(MERCHANT),
                order_reference: uuid(ORDER),
            },
            json!({"merchant_reference": MERCHANT, "order_reference": ORDER}),
        );
        let void = VoidId::new();
        roundtrip(
            &Void {
                id: void.clone(),
                merchant_reference: uuid(MERCHANT),
                released_minor: 0,
            },
            json!({"id": void.as_str(), "merchant_reference": MERCHANT, "released_minor": 0}),
        );
        roundtrip(
            &CreateRefund {
                merchant_reference: uuid(MERCHANT),
                amount_minor: 5,
            },
            json!({"merchant_reference": MERCHANT, "amount_minor": 5}),
        );
        let re = RefundId::new();
        roundtrip(
            &Refund {
                id: re.clone(),
                merchant_reference: uuid(MERCHANT),
                amount_minor: 5,
                currency: "EUR".into(),
            },
            json!({"id": re.as_str(), "merchant_reference": MERCHANT, "amount_minor": 5, "currency": "EUR"}),
        );
    }

    #[test]
    fn payment_activity_outage_and_errors() {
        roundtrip(
            &Payment {
                merchant_reference: uuid(MERCHANT),
                order_reference: uuid(ORDER),
                status: PaymentStatus::Canceled,
                authorization: None,
                currency: "XXX".into(),
                authorized_minor: 0,
                captured_minor: 0,
                refunded_minor: 0,
                released_minor: 0,
            },
            json!({
                "merchant_reference": MERCHANT,
                "order_reference": ORDER,
                "status": "canceled",
                "authorization": null,
                "currency": "XXX",
                "authorized_minor": 0,
                "captured_minor": 0,
                "refunded_minor": 0,
                "released_minor": 0,
            }),
        );
        roundtrip(
            &Activity {
                calls: 3,
                authorizations: 1,
                captures: 1,
                voids: 0,
                refunds: 0,
                authorized_minor: 100,
                captured_minor: 100,
                voided_minor: 0,
                refunded_minor: 0,
            },
            json!({
                "calls": 3, "authorizations": 1, "captures": 1, "voids": 0, "refunds": 0,
                "authorized_minor": 100, "captured_minor": 100, "voided_minor": 0, "refunded_minor": 0,
            }),
        );
        roundtrip(&Outage { on: true }, json!({"on": true}));
        roundtrip(
            &ErrorBody {
                error: ApiError::new(ErrorType::CardError, codes::CARD_DECLINED, "no"),
            },
            json!({"error": {"type": "card_error", "code": "card_declined", "message": "no"}}),
        );
        for (kind, name) in [
            (ErrorType::InvalidRequestError, "invalid_request_error"),
            (ErrorType::IdempotencyError, "idempotency_error"),
            (ErrorType::ApiError, "api_error"),
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), json!(name));
        }
    }

    #[test]
    fn ids_carry_their_prefix_and_refuse_others() {
        let id = AuthorizationId::new();
        assert!(id.as_str().starts_with("auth_"), "{id}");
        assert_eq!(AuthorizationId::parse(id.as_str()).unwrap(), id);
        assert!(AuthorizationId::parse("cap_0190a5f000007000800000000000000a").is_err());
        assert!(AuthorizationId::parse("auth_short").is_err());
        assert!(AuthorizationId::parse("auth_0190A5F000007000800000000000000A").is_err());
        assert!(serde_json::from_value::<CaptureId>(json!("auth_x")).is_err());
        assert!(RefundId::new().as_str().starts_with("re_"));
        assert!(VoidId::new().as_str().starts_with("void_"));
    }

    #[test]
    fn paths_are_built_in_one_place() {
        let id = AuthorizationId::parse(AUTH).unwrap();
        assert_eq!(
            paths::capture(&id),
            format!("/v1/authorizations/{AUTH}/capture")
        );
        assert_eq!(
            paths::payment(uuid(MERCHANT)),
            format!("/v1/payments/{MERCHANT}")
        );
        for status in [
            PaymentStatus::Authorized,
            PaymentStatus::Captured,
            PaymentStatus::Refunded,
            PaymentStatus::Voided,
            PaymentStatus::Canceled,
        ] {
            assert_eq!(PaymentStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                json!(status.as_str())
            );
        }
    }
}
