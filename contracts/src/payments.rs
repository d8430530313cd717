//! The payments context's messages: commands from the order saga and the
//! facts payments publishes in answer.
//!
//! Every operation is idempotent per `order_id`: one payment intent per
//! order, and an operation already done is not done again. A void or a
//! refund of an order with no intent still answers (`PaymentVoided` with a
//! zero amount), so a compensating saga always hears back, and a later
//! authorize of that order is refused.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{catalog::Money, message::wire, subjects::payments as subj};

/// Command: hold an order's total on a card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizePayment {
    /// The order paid for (one intent per order).
    pub order_id: Uuid,
    /// What to hold, more than zero.
    pub amount: Money,
    /// The card token (`tok_visa`, `tok_chargeDeclined`, ...).
    pub card_token: String,
}

/// Command: take the held money.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CapturePayment {
    /// The order.
    pub order_id: Uuid,
}

/// Command: release the hold (or close the order's payment before it began).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VoidPayment {
    /// The order.
    pub order_id: Uuid,
    /// Why, for the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Command: give captured money back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundPayment {
    /// The order.
    pub order_id: Uuid,
    /// Why, for the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Event: the order's total is held on the card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentAuthorized {
    /// The order.
    pub order_id: Uuid,
    /// The payment intent.
    pub payment_id: Uuid,
    /// What is held.
    pub amount: Money,
    /// The provider's reference for the hold.
    pub provider_ref: String,
}

/// Event: the card was declined; nothing is held. Permanent for this order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentDeclined {
    /// The order.
    pub order_id: Uuid,
    /// The payment intent.
    pub payment_id: Uuid,
    /// Machine-readable code (`card_declined`, `insufficient_funds`, `order_closed`).
    pub code: String,
    /// Why, for people.
    pub reason: String,
}

/// Event: held money was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentCaptured {
    /// The order.
    pub order_id: Uuid,
    /// The payment intent.
    pub payment_id: Uuid,
    /// What was taken.
    pub amount: Money,
}

/// Event: the hold was released; `amount` is zero when nothing was held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentVoided {
    /// The order.
    pub order_id: Uuid,
    /// The payment intent.
    pub payment_id: Uuid,
    /// What was released.
    pub amount: Money,
}

/// Event: captured money was given back; `amount` is zero when nothing was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentRefunded {
    /// The order.
    pub order_id: Uuid,
    /// The payment intent.
    pub payment_id: Uuid,
    /// What was given back.
    pub amount: Money,
}

wire!(AuthorizePayment, "payments.authorize", command subj::AUTHORIZE, per order);
wire!(CapturePayment, "payments.capture", command subj::CAPTURE, per order);
wire!(VoidPayment, "payments.void", command subj::VOID, per order);
wire!(RefundPayment, "payments.refund", command subj::REFUND, per order);
wire!(PaymentAuthorized, "payments.authorized", event subj::AUTHORIZED, per order);
wire!(PaymentDeclined, "payments.declined", event subj::DECLINED, per order);
wire!(PaymentCaptured, "payments.captured", event subj::CAPTURED, per order);
wire!(PaymentVoided, "payments.voided", event subj::VOIDED, per order);
wire!(PaymentRefunded, "payments.refunded", event subj::REFUNDED, per order);
