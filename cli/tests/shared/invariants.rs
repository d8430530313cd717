//! What must hold after any checkout run, however it was disturbed:
//! shared by the single-process suite (`tests/checkout`) and the cluster
//! fault suite (`tests/chaos`), which both include this file. It reads
//! only the stores (each service's database, the `ORDERS_EVENTS` stream,
//! the SMTP server's mailbox), so it does not care how the services ran.

use std::collections::{HashMap, HashSet};

use jetshop_catalog::storage::{
    products,
    reservations::{self, State},
};
use jetshop_contracts::{
    Encoding, Message,
    notifications::Channel,
    orders::{OrderCancelled, OrderConfirmed, OrderStatus},
    streams,
};
use jetshop_notifications::{
    audit::{self as mail, DeliveryState},
    email::KIND_WELCOME,
    storage::deliveries::delivery_id,
};
use jetshop_orders::{
    domain::order::OrderEvent,
    storage::{events, projection},
};
use jetshop_payments::{audit as money, domain::IntentState};
use uuid::Uuid;

/// Where a run left its state.
pub struct Stores<'a> {
    pub catalog_db: &'a str,
    pub orders_db: &'a str,
    pub payments_db: &'a str,
    pub notifications_db: &'a str,
    /// JetStream of the run's NATS (server or cluster).
    pub js: &'a async_nats::jetstream::Context,
    /// The SMTP server every notifications replica delivered to.
    pub smtp: &'a jetshop_testkit::SmtpServer,
    /// Whether a message may have reached the mailbox more than once: only
    /// when a notifications process was killed (SIGKILL) between the SMTP
    /// server's acceptance and the commit of `sent`, the one window no
    /// service can close (see `jetshop_notifications::delivery`). Such
    /// messages are returned in [`Outcome::resent`] for the caller to
    /// explain; otherwise a second copy fails the check.
    pub resends_possible: bool,
}

/// What a run came to.
#[derive(Debug, Default)]
pub struct Outcome {
    pub confirmed: usize,
    pub cancelled: usize,
    /// Deliveries (ids) whose message the mailbox holds more than once,
    /// with how many times (only with [`Stores::resends_possible`]).
    pub resent: Vec<(Uuid, usize)>,
}

/// Check every invariant for `orders` placed over `products` (id, initial
/// stock). Panics with the first violation.
pub async fn check(system: &Stores<'_>, products: &[(Uuid, i64)], orders: &[Uuid]) -> Outcome {
    let orders_db = jetshop_platform::db::connect(system.orders_db)
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
    let catalog_db = jetshop_platform::db::connect(system.catalog_db)
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
    let payments_db = jetshop_payments::connect(system.payments_db).await.unwrap();
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
    // An order's end reaches the database before notifications hears of it,
    // so its email may still be on its way (pending) when this check starts:
    // wait, bounded, until each order's email left that state.
    let mail_db = mail::connect(system.notifications_db).await.unwrap();
    let settled = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let emails = loop {
        let emails = mail::emails_by_order(&mail_db).await.unwrap();
        let in_flight = orders.iter().any(|id| {
            emails.get(id).is_none_or(|sent| {
                sent.is_empty() || sent.iter().any(|(_, s)| *s == DeliveryState::Pending)
            })
        });
        if !in_flight || std::time::Instant::now() > settled {
            break emails;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
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
    // The mailbox holds exactly the sent deliveries (these orders' emails
    // and any welcome emails), each once: one message per Message-ID,
    // which is derived from the delivery id.
    let welcomes: Vec<Uuid> = mail::welcomes_by_user(&mail_db)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, state)| *state == DeliveryState::Sent)
        .map(|(user, _)| delivery_id(Channel::Email, &format!("{KIND_WELCOME}:{user}")))
        .collect();
    let mut expected: HashSet<Uuid> = welcomes.into_iter().collect();
    for &id in orders {
        let kind = match status[&id] {
            OrderStatus::Confirmed => "order-confirmed",
            _ => "order-cancelled",
        };
        expected.insert(delivery_id(Channel::Email, &format!("{kind}:{id}")));
    }
    let received = system.smtp.wait_for_messages(expected.len()).await;
    let mut ids: HashMap<String, usize> = HashMap::new();
    for m in &received {
        let header = m
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
            .unwrap_or_else(|| panic!("a message without a Message-ID: {m}"));
        *ids.entry(header[11..].trim().to_owned()).or_default() += 1;
    }
    // `<delivery id@sender's domain>`
    let delivery_of = |mid: &str| {
        let local = mid.trim_start_matches('<').split('@').next()?;
        Uuid::parse_str(local).ok()
    };
    let twice: Vec<(&String, &usize)> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty() || system.resends_possible,
        "{} messages sent more than once (Message-ID, times): {twice:?}",
        twice.len()
    );
    outcome.resent = twice
        .iter()
        .filter_map(|(mid, n)| Some((delivery_of(mid)?, **n)))
        .collect();
    let stray: Vec<&String> = ids
        .keys()
        .filter(|mid| delivery_of(mid).is_none_or(|d| !expected.contains(&d)))
        .collect();
    assert!(stray.is_empty(), "messages for no sent delivery: {stray:?}");
    assert_eq!(
        ids.len(),
        expected.len(),
        "the SMTP server received one message per sent delivery"
    );
    let copies: usize = outcome.resent.iter().map(|(_, n)| n - 1).sum();
    assert_eq!(
        received.len(),
        expected.len() + copies,
        "every message the mailbox holds is one of the sent deliveries"
    );
    outcome
}

/// How many terminal events each order has on `ORDERS_EVENTS`.
async fn terminal_events_published(system: &Stores<'_>) -> HashMap<Uuid, usize> {
    let n = jetshop_testkit::stream_count(system.js, streams::ORDERS_EVENTS).await;
    let all = jetshop_testkit::stream_messages(system.js, streams::ORDERS_EVENTS, n).await;
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
