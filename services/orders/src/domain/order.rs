//! The order aggregate, event-sourced: its events are the source of truth
//! and [`Order`] is what folding them gives. The `orders` table is this fold
//! stored for reads; it can always be rebuilt from the events.

use chrono::{DateTime, Utc};
use jetshop_contracts::{
    Message,
    catalog::Money,
    orders::{
        OrderCancellationRequested, OrderCancelled, OrderConfirmed, OrderLine,
        OrderPaymentAuthorized, OrderPaymentCaptured, OrderPlaced, OrderStatus, OrderStockReserved,
    },
};
use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;

use crate::Error;

/// One event of the aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderEvent {
    /// Placed with frozen prices.
    Placed(OrderPlaced),
    /// Stock held.
    StockReserved(OrderStockReserved),
    /// Money held.
    PaymentAuthorized(OrderPaymentAuthorized),
    /// Money taken.
    PaymentCaptured(OrderPaymentCaptured),
    /// Done, sold.
    Confirmed(OrderConfirmed),
    /// Unwinding asked for (by the customer, an admin or the saga).
    CancellationRequested(OrderCancellationRequested),
    /// Done, nothing held or charged.
    Cancelled(OrderCancelled),
}

impl OrderEvent {
    /// The stored and published type name (`orders.placed`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Placed(_) => OrderPlaced::TYPE,
            Self::StockReserved(_) => OrderStockReserved::TYPE,
            Self::PaymentAuthorized(_) => OrderPaymentAuthorized::TYPE,
            Self::PaymentCaptured(_) => OrderPaymentCaptured::TYPE,
            Self::Confirmed(_) => OrderConfirmed::TYPE,
            Self::CancellationRequested(_) => OrderCancellationRequested::TYPE,
            Self::Cancelled(_) => OrderCancelled::TYPE,
        }
    }

    /// The event as JSON, for the event store.
    pub fn to_json(&self) -> serde_json::Value {
        fn j<T: Serialize>(v: &T) -> serde_json::Value {
            serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
        }
        match self {
            Self::Placed(e) => j(e),
            Self::StockReserved(e) => j(e),
            Self::PaymentAuthorized(e) => j(e),
            Self::PaymentCaptured(e) => j(e),
            Self::Confirmed(e) => j(e),
            Self::CancellationRequested(e) => j(e),
            Self::Cancelled(e) => j(e),
        }
    }

    /// Read a stored event back.
    pub fn from_json(type_name: &str, data: &str) -> Result<Self, Error> {
        fn d<T: DeserializeOwned>(data: &str) -> Result<T, Error> {
            serde_json::from_str(data).map_err(|e| Error::Corrupt(format!("stored event: {e}")))
        }
        Ok(match type_name {
            OrderPlaced::TYPE => Self::Placed(d(data)?),
            OrderStockReserved::TYPE => Self::StockReserved(d(data)?),
            OrderPaymentAuthorized::TYPE => Self::PaymentAuthorized(d(data)?),
            OrderPaymentCaptured::TYPE => Self::PaymentCaptured(d(data)?),
            OrderConfirmed::TYPE => Self::Confirmed(d(data)?),
            OrderCancellationRequested::TYPE => Self::CancellationRequested(d(data)?),
            OrderCancelled::TYPE => Self::Cancelled(d(data)?),
            other => return Err(Error::Corrupt(format!("unknown event type {other}"))),
        })
    }
}

/// The state an order's events fold into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// The order.
    pub id: Uuid,
    /// Who placed it.
    pub customer_id: Uuid,
    /// Where to write to.
    pub customer_email: Option<String>,
    /// Where it stands.
    pub status: OrderStatus,
    /// Lines with frozen prices.
    pub lines: Vec<OrderLine>,
    /// Their sum.
    pub total: Money,
    /// The payment intent, once authorized.
    pub payment_id: Option<Uuid>,
    /// Why it was (or is being) cancelled.
    pub cancel_reason: Option<String>,
    /// Events applied.
    pub version: i64,
    /// When it was placed.
    pub created_at: DateTime<Utc>,
    /// When its last event happened.
    pub updated_at: DateTime<Utc>,
}

impl Order {
    /// Fold events, oldest first. `None` for no events; the first must
    /// start an order (placed, or cancelled when it could not be placed).
    pub fn replay<'a>(
        events: impl IntoIterator<Item = (&'a OrderEvent, DateTime<Utc>)>,
    ) -> Result<Option<Self>, Error> {
        let mut order: Option<Self> = None;
        for (event, at) in events {
            order = Some(match order {
                None => Self::start(event, at)?,
                Some(mut o) => {
                    o.apply(event, at);
                    o
                }
            });
        }
        Ok(order)
    }

    fn start(event: &OrderEvent, at: DateTime<Utc>) -> Result<Self, Error> {
        match event {
            OrderEvent::Placed(e) => Ok(Self {
                id: e.order_id,
                customer_id: e.customer_id,
                customer_email: e.customer_email.clone(),
                status: OrderStatus::Placed,
                lines: e.lines.clone(),
                total: e.total.clone(),
                payment_id: None,
                cancel_reason: None,
                version: 1,
                created_at: e.placed_at,
                updated_at: e.placed_at,
            }),
            OrderEvent::Cancelled(e) => Ok(Self {
                id: e.order_id,
                customer_id: e.customer_id,
                customer_email: e.customer_email.clone(),
                status: OrderStatus::Cancelled,
                lines: vec![],
                total: Money {
                    amount_minor: 0,
                    currency: String::new(),
                },
                payment_id: None,
                cancel_reason: Some(e.reason.clone()),
                version: 1,
                created_at: at,
                updated_at: at,
            }),
            other => Err(Error::Corrupt(format!(
                "an order cannot start with {}",
                other.type_name()
            ))),
        }
    }

    /// Apply one more event.
    pub fn apply(&mut self, event: &OrderEvent, at: DateTime<Utc>) {
        match event {
            OrderEvent::Placed(_) => {}
            OrderEvent::StockReserved(_) => self.status = OrderStatus::StockReserved,
            OrderEvent::PaymentAuthorized(e) => {
                self.status = OrderStatus::PaymentAuthorized;
                self.payment_id = Some(e.payment_id);
            }
            OrderEvent::PaymentCaptured(e) => {
                self.status = OrderStatus::Paid;
                self.payment_id = Some(e.payment_id);
            }
            OrderEvent::Confirmed(_) => self.status = OrderStatus::Confirmed,
            OrderEvent::CancellationRequested(e) => {
                self.status = OrderStatus::Cancelling;
                self.cancel_reason = e.reason.clone().or(Some("cancelled".into()));
            }
            OrderEvent::Cancelled(e) => {
                self.status = OrderStatus::Cancelled;
                self.cancel_reason = Some(e.reason.clone());
            }
        }
        self.version += 1;
        self.updated_at = at;
    }

    /// The terminal `Confirmed` event for this order.
    pub fn confirmed(&self, at: DateTime<Utc>) -> OrderEvent {
        OrderEvent::Confirmed(OrderConfirmed {
            order_id: self.id,
            customer_id: self.customer_id,
            customer_email: self.customer_email.clone(),
            lines: self.lines.clone(),
            total: self.total.clone(),
            confirmed_at: at,
        })
    }

    /// The terminal `Cancelled` event for this order.
    pub fn cancelled(&self, reason: impl Into<String>, at: DateTime<Utc>) -> OrderEvent {
        OrderEvent::Cancelled(OrderCancelled {
            order_id: self.id,
            customer_id: self.customer_id,
            customer_email: self.customer_email.clone(),
            reason: reason.into(),
            cancelled_at: at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur(amount_minor: i64) -> Money {
        Money {
            amount_minor,
            currency: "EUR".into(),
        }
    }

    fn placed(id: Uuid) -> OrderEvent {
        OrderEvent::Placed(OrderPlaced {
            order_id: id,
            customer_id: Uuid::nil(),
            customer_email: Some("a@b.c".into()),
            lines: vec![],
            total: eur(500),
            placed_at: Utc::now(),
        })
    }

    #[test]
    fn folding_follows_the_happy_path() {
        let id = Uuid::now_v7();
        let pay = Uuid::now_v7();
        let now = Utc::now();
        let events = [
            placed(id),
            OrderEvent::StockReserved(OrderStockReserved { order_id: id }),
            OrderEvent::PaymentAuthorized(OrderPaymentAuthorized {
                order_id: id,
                payment_id: pay,
                amount: eur(500),
            }),
            OrderEvent::PaymentCaptured(OrderPaymentCaptured {
                order_id: id,
                payment_id: pay,
                amount: eur(500),
            }),
        ];
        let mut order = Order::replay(events.iter().map(|e| (e, now)))
            .unwrap()
            .unwrap();
        assert_eq!(order.status, OrderStatus::Paid);
        assert_eq!(order.payment_id, Some(pay));
        let confirmed = order.confirmed(now);
        order.apply(&confirmed, now);
        assert_eq!(order.status, OrderStatus::Confirmed);
        assert_eq!(order.version, 5);
    }

    #[test]
    fn an_order_that_could_not_be_placed_starts_cancelled() {
        let id = Uuid::now_v7();
        let cancelled = OrderEvent::Cancelled(OrderCancelled {
            order_id: id,
            customer_id: Uuid::nil(),
            customer_email: None,
            reason: "product x is not in the catalog".into(),
            cancelled_at: Utc::now(),
        });
        let order = Order::replay([(&cancelled, Utc::now())]).unwrap().unwrap();
        assert_eq!(order.status, OrderStatus::Cancelled);
        assert!(order.lines.is_empty());
    }

    #[test]
    fn events_round_trip_through_the_store_format() {
        let e = placed(Uuid::now_v7());
        let back = OrderEvent::from_json(e.type_name(), &e.to_json().to_string()).unwrap();
        assert_eq!(back, e);
        assert!(OrderEvent::from_json("orders.nope", "{}").is_err());
        let orphan = OrderEvent::StockReserved(OrderStockReserved {
            order_id: Uuid::nil(),
        });
        assert!(Order::replay([(&orphan, Utc::now())]).is_err());
    }
}
