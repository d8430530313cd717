//! The orders context's messages: the aggregate's events, the commands that
//! place and cancel orders, and the reads (orders, history, sagas).
//!
//! Every event carries `order_id` first, so a reader that only routes by
//! order (the gateway's SSE hub) can decode [`OrderRef`] from any of them.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{catalog::Money, message::wire, subjects::orders as subj};

/// One line as the customer asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LineRequest {
    /// The product.
    pub product_id: Uuid,
    /// Units, 1..=[`MAX_QUANTITY`].
    pub quantity: i64,
}

/// One line of a placed order, with the price frozen at placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderLine {
    /// The product.
    pub product_id: Uuid,
    /// Its sku when the order was placed.
    pub sku: String,
    /// Its name when the order was placed.
    pub name: String,
    /// Units.
    pub quantity: i64,
    /// Unit price when the order was placed.
    pub unit_price: Money,
    /// `unit_price * quantity`.
    pub line_total: Money,
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Accepted, prices frozen; stock not yet held.
    Placed,
    /// Stock held; payment not yet authorized.
    StockReserved,
    /// Money held on the card; being confirmed.
    PaymentAuthorized,
    /// Money taken; the reservation is being committed.
    Paid,
    /// Done: stock committed, money captured.
    Confirmed,
    /// Being unwound: holds are being released.
    Cancelling,
    /// Done: nothing held or charged.
    Cancelled,
}

impl OrderStatus {
    /// Whether the order will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Confirmed | Self::Cancelled)
    }

    /// The wire name (`payment_authorized`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::StockReserved => "stock_reserved",
            Self::PaymentAuthorized => "payment_authorized",
            Self::Paid => "paid",
            Self::Confirmed => "confirmed",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Placed,
            Self::StockReserved,
            Self::PaymentAuthorized,
            Self::Paid,
            Self::Confirmed,
            Self::Cancelling,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// Command: place an order. The gateway chooses `order_id`, so the client
/// can poll it and a retried request is recognised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    /// Id of the new order.
    pub order_id: Uuid,
    /// The user placing it.
    pub customer_id: Uuid,
    /// Where to send the confirmation, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_email: Option<String>,
    /// What to buy, 1..=[`MAX_LINES`] lines.
    pub lines: Vec<LineRequest>,
    /// The payment method (a card token such as `tok_visa`).
    pub card_token: String,
}

/// Command: cancel an order. Refused (recorded, no effect) once capture began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelOrder {
    /// The order.
    pub order_id: Uuid,
    /// Who asked (a user id, or `admin:<id>`).
    pub requested_by: String,
    /// Why, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The order id of any orders event, for readers that only route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderRef {
    /// The order.
    pub order_id: Uuid,
}

/// Event: an order was placed; its prices are frozen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderPlaced {
    /// The order.
    pub order_id: Uuid,
    /// Who placed it.
    pub customer_id: Uuid,
    /// Where to write to, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_email: Option<String>,
    /// The lines with frozen prices.
    pub lines: Vec<OrderLine>,
    /// Sum of the line totals.
    pub total: Money,
    /// When.
    pub placed_at: DateTime<Utc>,
}

/// Event: the order's stock is held by the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderStockReserved {
    /// The order.
    pub order_id: Uuid,
}

/// Event: the order's total is held on the card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderPaymentAuthorized {
    /// The order.
    pub order_id: Uuid,
    /// The payment intent.
    pub payment_id: Uuid,
    /// What is held.
    pub amount: Money,
}

/// Event: the order's money was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderPaymentCaptured {
    /// The order.
    pub order_id: Uuid,
    /// The payment intent.
    pub payment_id: Uuid,
    /// What was taken.
    pub amount: Money,
}

/// Event: the order is confirmed (terminal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderConfirmed {
    /// The order.
    pub order_id: Uuid,
    /// Who placed it.
    pub customer_id: Uuid,
    /// Where to write to, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_email: Option<String>,
    /// The lines.
    pub lines: Vec<OrderLine>,
    /// What was charged.
    pub total: Money,
    /// When.
    pub confirmed_at: DateTime<Utc>,
}

/// Event: someone asked to cancel the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderCancellationRequested {
    /// The order.
    pub order_id: Uuid,
    /// Who asked.
    pub requested_by: String,
    /// Why, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Event: the order is cancelled (terminal); nothing is held or charged.
/// An order that could not even be placed (unknown product) has this as its
/// only event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderCancelled {
    /// The order.
    pub order_id: Uuid,
    /// Who placed it.
    pub customer_id: Uuid,
    /// Where to write to, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_email: Option<String>,
    /// Why, for people (`stock unavailable`, `card declined`, ...).
    pub reason: String,
    /// When.
    pub cancelled_at: DateTime<Utc>,
}

/// One step of an order's saga as shown to people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TimelineEntry {
    /// `reserve_stock`, `authorize_payment`, `capture_payment`,
    /// `commit_reservation`, `void_payment`, `release_stock`, `refund_payment`, ...
    pub step: String,
    /// `started`, `retried`, `succeeded`, `failed`, `stuck`.
    pub outcome: String,
    /// Details (a decline reason, the attempt number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// An order as the orders service serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderView {
    /// The order.
    pub id: Uuid,
    /// Who placed it.
    pub customer_id: Uuid,
    /// Where it stands.
    pub status: OrderStatus,
    /// The lines with frozen prices (empty when it could not be placed).
    pub lines: Vec<OrderLine>,
    /// Sum of the line totals.
    pub total: Money,
    /// Why it was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    /// The saga's steps, oldest first.
    pub timeline: Vec<TimelineEntry>,
    /// Number of aggregate events.
    pub version: i64,
    /// When it was placed.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// RPC: fetch one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GetOrder {
    /// The order.
    pub order_id: Uuid,
}

/// RPC: one page of orders, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListOrders {
    /// Only this customer's orders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<Uuid>,
    /// Only orders in this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<OrderStatus>,
    /// Opaque cursor from a previous page's `next_cursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Page size, 1..=100 (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// RPC reply: a page of orders (without timelines).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderPage {
    /// The orders on this page.
    pub items: Vec<OrderView>,
    /// Cursor for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// RPC: the aggregate's events of one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GetOrderHistory {
    /// The order.
    pub order_id: Uuid,
}

/// One stored event of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HistoryEntry {
    /// 1 for the first event of the order, then 2, 3, ...
    pub sequence: i64,
    /// The event's type (`orders.placed`).
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event id (its `Nats-Msg-Id` when published).
    pub event_id: Uuid,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// The event itself.
    pub data: serde_json::Value,
}

/// RPC reply: an order's events, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderHistory {
    /// The order.
    pub order_id: Uuid,
    /// Its events.
    pub events: Vec<HistoryEntry>,
}

/// A saga as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SagaView {
    /// The order it drives.
    pub order_id: Uuid,
    /// `reserving_stock`, `authorizing_payment`, `capturing_payment`,
    /// `committing_stock`, `compensating`, `stuck`, `completed`, ...
    pub state: String,
    /// The step it waits for.
    pub step: String,
    /// Attempts of the current step so far.
    pub attempts: i32,
    /// When the current step times out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_at: Option<DateTime<Utc>>,
    /// The last failure, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// RPC: list sagas.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListSagas {
    /// Only sagas in this state (`stuck`); all open ones when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// At most this many (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// RPC reply: sagas, oldest change first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SagaList {
    /// The sagas.
    pub items: Vec<SagaView>,
}

/// RPC: give a stuck saga's pending step a fresh set of attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RetrySaga {
    /// The order whose saga to retry.
    pub order_id: Uuid,
}

wire!(LineRequest, "orders.line-request");
wire!(OrderLine, "orders.order-line");
wire!(OrderRef, "orders.order-ref");
wire!(PlaceOrder, "orders.place-order", command subj::PLACE_ORDER, per order);
wire!(CancelOrder, "orders.cancel-order", command subj::CANCEL_ORDER, per order);
wire!(OrderPlaced, "orders.placed", event subj::PLACED, per order);
wire!(OrderStockReserved, "orders.stock-reserved", event subj::STOCK_RESERVED, per order);
wire!(OrderPaymentAuthorized, "orders.payment-authorized", event subj::PAYMENT_AUTHORIZED, per order);
wire!(OrderPaymentCaptured, "orders.payment-captured", event subj::PAYMENT_CAPTURED, per order);
wire!(OrderConfirmed, "orders.confirmed", event subj::CONFIRMED, per order);
wire!(
    OrderCancellationRequested,
    "orders.cancellation-requested",
    event subj::CANCELLATION_REQUESTED,
    per order
);
wire!(OrderCancelled, "orders.cancelled", event subj::CANCELLED, per order);
wire!(OrderView, "orders.order");
wire!(GetOrder, "orders.get-order", rpc subj::RPC_ORDER_GET => OrderView);
wire!(OrderPage, "orders.order-page");
wire!(ListOrders, "orders.list-orders", rpc subj::RPC_ORDER_LIST => OrderPage);
wire!(OrderHistory, "orders.order-history");
wire!(GetOrderHistory, "orders.get-order-history", rpc subj::RPC_ORDER_HISTORY => OrderHistory);
wire!(SagaView, "orders.saga");
wire!(SagaList, "orders.saga-list");
wire!(ListSagas, "orders.list-sagas", rpc subj::RPC_SAGA_LIST => SagaList);
wire!(RetrySaga, "orders.retry-saga", rpc subj::RPC_SAGA_RETRY => SagaView);

/// Most lines a [`PlaceOrder`] may have. The gateway's schema says the same
/// (`NewOrder.lines`); its tests compare the two.
pub const MAX_LINES: usize = 50;
/// Most units of one product an order may ask for, over all its lines of
/// that product (and so also the most one line may ask for).
pub const MAX_QUANTITY: i64 = 1000;

/// Largest page [`ListOrders`] serves.
pub const MAX_PAGE_SIZE: u32 = 100;
/// Page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: u32 = 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_round_trip() {
        for s in [
            OrderStatus::Placed,
            OrderStatus::StockReserved,
            OrderStatus::PaymentAuthorized,
            OrderStatus::Paid,
            OrderStatus::Confirmed,
            OrderStatus::Cancelling,
            OrderStatus::Cancelled,
        ] {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(OrderStatus::parse("nope"), None);
    }

    #[test]
    fn any_event_decodes_as_an_order_ref() {
        let placed = OrderStockReserved {
            order_id: Uuid::now_v7(),
        };
        let bytes = rmp_serde::to_vec_named(&placed).unwrap();
        let r: OrderRef = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(r.order_id, placed.order_id);
    }
}
