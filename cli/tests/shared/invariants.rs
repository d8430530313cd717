//! What must hold after any run, however it was disturbed.

use std::collections::{HashMap, HashSet};

use jetshop_catalog::storage::{
    products,
    reservations::{self, State},
};
use jetshop_contracts::{
    Encoding, Message,
    orders::{OrderCancelled, OrderConfirmed, OrderStatus},
    streams,
};
use jetshop_notifications::audit::{self as mail, DeliveryState};
use jetshop_orders::{
    domain::order::OrderEvent,
    storage::{events, projection},
};
use jetshop_payments::{audit as money, domain::IntentState};
use uuid::Uuid;

use crate::system::System;

/// What a run came to.
#[derive(Debug, Default)]
pub struct Outcome {
    pub confirmed: usize,
    pub cancelled: usize,
}

/// Check every invariant for `orders` placed over `products` (id, initial
/// stock). Panics with the first violation.
pub async fn check(system: &System, products: &[(Uuid, i64)], orders: &[Uuid]) -> Outcome {
    let orders_db = jetshop_platform::db::connect(&system.orders_db.url)
        .await
        .unwrap();
    let mut outcome = Outcome::default();
    let mut status = HashMap::new();
    let mut sold: HashMap<Uuid, i64> = HashMap::new();
    let mut totals = HashMap::new();

    // Every accepted order reached confirmed or cancelled, exactly once,
    // and nothing happened to it afterwards.
    for &id in orders {
        let row = projection::find(&orders_db, id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("order {id} was accepted but never recorded"));
        let s = OrderStatus::parse(&row.status).unwrap();
        assert!(s.is_terminal(), "order {id} ended {s:?}");
        let stored = events::load(&orders_db, id).await.unwrap();
        let terminal: Vec<usize> = stored
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e.event, OrderEvent::Confirmed(_) | OrderEvent::Cancelled(_)))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            terminal.len(),
            1,
            "order {id} has {} terminal events",
            terminal.len()
        );
        assert_eq!(
            terminal[0],
            stored.len() - 1,
            "order {id} changed after its end"
        );
        match s {
            OrderStatus::Confirmed => {
                outcome.confirmed += 1;
                let view = projection::to_view(&row, vec![]).unwrap();
                for line in &view.lines {
                    *sold.entry(line.product_id).or_default() += line.quantity;
                }
                totals.insert(id, view.total.amount_minor);
            }
            _ => outcome.cancelled += 1,
        }
        status.insert(id, s);
    }

    // The stream carries each order's end once (what notifications hear).
    let published = terminal_events_published(system).await;
    for &id in orders {
        assert_eq!(
            published.get(&id).copied().unwrap_or(0),
            1,
            "order {id}: terminal events published"
        );
    }

    // Stock: on hand + committed + reserved = initial, never negative,
    // nothing left reserved, and committed = what confirmed orders bought.
    let catalog_db = jetshop_platform::db::connect(&system.catalog_db.url)
        .await
        .unwrap();
    for &(id, initial) in products {
        let stock = products::find(&catalog_db, id)
            .await
            .unwrap()
            .unwrap()
            .stock;
        let committed = reservations::units_in_state(&catalog_db, id, State::Committed)
            .await
            .unwrap();
        let reserved = reservations::units_in_state(&catalog_db, id, State::Reserved)
            .await
            .unwrap();
        assert!(stock >= 0, "product {id}: stock {stock}");
        assert_eq!(
            stock + committed + reserved,
            initial,
            "product {id}: stock {stock} + committed {committed} + reserved {reserved}"
        );
        assert_eq!(
            reserved, 0,
            "product {id}: stock still held by finished orders"
        );
        assert_eq!(
            committed,
            sold.get(&id).copied().unwrap_or(0),
            "product {id}: committed vs confirmed orders"
        );
    }

    // Money: one capture per confirmed order (for its total), none kept by
    // a cancelled one, nothing left held, and the ledger balances.
    let payments_db = jetshop_payments::connect(&system.payments_db.url)
        .await
        .unwrap();
    let intents: HashMap<Uuid, money::IntentSummary> = money::intents(&payments_db)
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.order_id, i))
        .collect();
    for &id in orders {
        let intent = intents.get(&id);
        match status[&id] {
            OrderStatus::Confirmed => {
                let i = intent.unwrap_or_else(|| panic!("confirmed order {id} has no payment"));
                assert_eq!(
                    (i.state, i.captures, i.refunds),
                    (IntentState::Captured, 1, 0),
                    "confirmed order {id}: {i:?}"
                );
                assert_eq!(i.amount_minor, totals[&id], "order {id}: captured amount");
            }
            _ => {
                if let Some(i) = intent {
                    assert!(
                        matches!(
                            i.state,
                            IntentState::Declined | IntentState::Voided | IntentState::Refunded
                        ),
                        "cancelled order {id} still has money {:?}: {i:?}",
                        i.state
                    );
                    assert!(i.captures == i.refunds, "cancelled order {id}: {i:?}");
                }
            }
        }
    }
    let books = money::trial_balance(&payments_db).await.unwrap();
    assert!(books.balances(), "the ledger does not balance: {books:?}");

    // One email per order, about how it ended, delivered to the real SMTP server.
    let mail_db = mail::connect(&system.notifications_db.url).await.unwrap();
    let emails = mail::emails_by_order(&mail_db).await.unwrap();
    for &id in orders {
        let sent: Vec<&(String, DeliveryState)> = emails
            .get(&id)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        assert_eq!(sent.len(), 1, "order {id}: emails {sent:?}");
        assert_eq!(sent[0].1, DeliveryState::Sent, "order {id}: {sent:?}");
        let kind = match status[&id] {
            OrderStatus::Confirmed => "order-confirmed",
            _ => "order-cancelled",
        };
        assert_eq!(sent[0].0, kind, "order {id}");
    }
    let received = system.smtp.wait_for_messages(orders.len()).await;
    let distinct: HashSet<&str> = received
        .iter()
        .filter_map(|m| {
            m.lines()
                .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
        })
        .collect();
    assert_eq!(
        received.len(),
        orders.len(),
        "the SMTP server received one message per order"
    );
    assert_eq!(distinct.len(), orders.len(), "no message was sent twice");
    outcome
}

/// How many terminal events each order has on `ORDERS_EVENTS`.
async fn terminal_events_published(system: &System) -> HashMap<Uuid, usize> {
    let n = jetshop_testkit::stream_count(&system.js, streams::ORDERS_EVENTS).await;
    let all = jetshop_testkit::stream_messages(&system.js, streams::ORDERS_EVENTS, n).await;
    let mut out = HashMap::new();
    for m in all {
        let ty = jetshop_testkit::header(&m, jetshop_contracts::headers::TYPE);
        let id = match ty.as_deref() {
            Some(OrderConfirmed::TYPE) => {
                Encoding::MsgPack
                    .decode::<OrderConfirmed>(&m.payload)
                    .unwrap()
                    .order_id
            }
            Some(OrderCancelled::TYPE) => {
                Encoding::MsgPack
                    .decode::<OrderCancelled>(&m.payload)
                    .unwrap()
                    .order_id
            }
            _ => continue,
        };
        *out.entry(id).or_default() += 1;
    }
    out
}
