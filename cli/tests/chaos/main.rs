//! The fault suite (`make chaos`): the scaled deployment of
//! [`deployment`] (3-node JetStream cluster, streams at 3 replicas, every
//! part its own `jetshop run` process, two replicas of orders, payments,
//! notifications and the gateway, PostgreSQL, Redis, SMTP) takes orders
//! from 16 customers over REST ([`shop`]) while [`faults`] hurts one part
//! at a time and lets it heal. Afterwards every order must have ended, and
//! the checkout invariants ([`invariants`], shared with `tests/checkout`)
//! must hold, plus: no in-stock `tok_visa` order was cancelled, no saga is
//! stuck or open, nothing was dead-lettered, no order exists that the
//! customers were not told about, and the mailbox holds each email once.
//!
//! `CHAOS_MIN_ORDERS` (default [`DEFAULT_MIN_ORDERS`]) sets how many orders
//! to place at least: the fault schedule repeats until that many were
//! accepted. `KEEP_LOGS=1` keeps every process's log. The figures (orders,
//! orders/s under faults, the longest time an order took to end, and per
//! fault how long until throughput recovered) are printed: run with
//! `--no-capture` to see them.

mod deployment;
mod faults;
#[path = "../shared/invariants.rs"]
mod invariants;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use jetshop_contracts::catalog::{CreateProduct, Money};
use jetshop_loadtests::shop::{Customer, Retries, Shop};
use jetshop_orders::{
    domain::saga::SagaState,
    storage::{entity::order, sagas},
};
use jetshop_platform::envelope::{self, MessageMeta};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::deployment::Deployment;

/// Orders placed at least when `CHAOS_MIN_ORDERS` is not set: one pass of
/// the fault schedule takes more than this anyway, so CI runs one pass.
pub const DEFAULT_MIN_ORDERS: usize = 200;
const CUSTOMERS: usize = 16;
/// Orders each customer keeps open at once (closed loop: throughput
/// follows the system's pace, so a fault shows as a dip).
const OPEN_PER_CUSTOMER: usize = 3;
/// Units of each plentiful product: never runs out.
const PLENTY: i64 = 1_000_000;
/// Units of the scarce product: sold out early in the run.
const SCARCE: i64 = 40;
/// How long the suite waits for every order to end after the last fault.
const SETTLE: Duration = Duration::from_secs(300);

/// What the test knows of one order.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub card: &'static str,
    /// Whether a line is of the scarce product (may be cancelled for stock).
    pub scarce: bool,
    pub accepted: Instant,
    pub ended: Option<Instant>,
    pub status: Option<String>,
    pub reason: Option<String>,
}

/// Every accepted order, and the customers' open-order permits.
#[derive(Default)]
pub struct Tracker {
    pub orders: Mutex<HashMap<Uuid, Tracked>>,
    permits: Mutex<HashMap<Uuid, OwnedSemaphorePermit>>,
    pub retries: Mutex<Retries>,
}

impl Tracker {
    pub fn placed(&self) -> usize {
        self.orders.lock().unwrap().len()
    }

    pub fn open(&self) -> Vec<Uuid> {
        let orders = self.orders.lock().unwrap();
        orders
            .iter()
            .filter(|(_, t)| t.ended.is_none())
            .map(|(id, _)| *id)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_stays_exact_while_any_one_part_dies() {
    let min_orders: usize = std::env::var("CHAOS_MIN_ORDERS")
        .ok()
        .map(|v| v.parse().expect("CHAOS_MIN_ORDERS is a number"))
        .unwrap_or(DEFAULT_MIN_ORDERS);
    let run_started = Instant::now();
    let mut d = Deployment::start().await;
    println!(
        "chaos: deployment up in {:.1} s",
        run_started.elapsed().as_secs_f64()
    );
    let plenty = products(&d, &[PLENTY, PLENTY, PLENTY]).await;
    let scarce = products(&d, &[SCARCE]).await[0];
    let shop = Shop::new(&d.gateways);
    let customers: Vec<Customer> = futures::future::join_all((0..CUSTOMERS).map(|n| {
        let shop = &shop;
        async move {
            shop.sign_up(n, "orders:read orders:write")
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    }))
    .await;

    let tracker = Arc::new(Tracker::default());
    let stop = Arc::new(AtomicBool::new(false));
    let poller = tokio::spawn(poll_ends(
        d.orders_db.url.clone(),
        tracker.clone(),
        stop.clone(),
    ));
    let load_started = Instant::now();
    let placing: Vec<_> = customers
        .into_iter()
        .enumerate()
        .map(|(n, customer)| {
            let (shop, tracker, stop) = (shop.clone(), tracker.clone(), stop.clone());
            let products = (plenty.clone(), scarce.0);
            tokio::spawn(
                async move { customer_loop(n, customer, shop, tracker, stop, products).await },
            )
        })
        .collect();

    // Faults, one at a time, each healed before the next; the schedule
    // repeats until enough orders were placed.
    let mut log = Vec::new();
    let mut pass = 0;
    while pass == 0 || tracker.placed() < min_orders {
        faults::run_pass(&mut d, pass, &tracker, &mut log).await;
        pass += 1;
    }
    let faults_ended = Instant::now();
    // Enough: stop placing (orders in progress are still accepted).
    stop.store(true, Ordering::SeqCst);
    for p in placing {
        p.await.unwrap();
    }
    let placed = tracker.placed();

    let settle_started = Instant::now();
    loop {
        let open = tracker.open();
        if open.is_empty() {
            break;
        }
        if settle_started.elapsed() > SETTLE {
            report_open(&d, &open).await;
            panic!(
                "{} of {placed} orders still open after {SETTLE:?}",
                open.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::SeqCst);
    poller.await.unwrap();
    let all_ended = Instant::now();

    let orders: Vec<Uuid> = tracker.orders.lock().unwrap().keys().copied().collect();
    let tracked = tracker.orders.lock().unwrap().clone();
    check_outcomes(&d, &tracked).await;
    let mails_settled = wait_for_emails(&d, &orders).await;
    let mut all_products = plenty.clone();
    all_products.push(scarce);
    let outcome = invariants::check(&d.stores(), &all_products, &orders).await;
    let resent = explain_resends(&d, &outcome.resent, &log).await;
    // Each customer, and the bootstrap admin, got one welcome email (the
    // invariants checked the mailbox holds every sent one).
    let mail = jetshop_notifications::audit::connect(&d.notifications_db.url)
        .await
        .unwrap();
    let welcomes = jetshop_notifications::audit::welcomes_by_user(&mail)
        .await
        .unwrap();
    assert_eq!(
        welcomes.len(),
        CUSTOMERS + 1,
        "welcome emails: {welcomes:?}"
    );

    let figures = faults::figures(&tracked, &log, load_started, faults_ended);
    println!(
        "chaos: {placed} orders placed over {pass} fault pass(es), {} confirmed, {} cancelled",
        outcome.confirmed, outcome.cancelled
    );
    println!(
        "chaos: {} emails in the mailbox: one per ended order and per customer, {resent}",
        d.smtp.messages().len()
    );
    println!(
        "chaos: placements retried: {:?}",
        tracker.retries.lock().unwrap().clone()
    );
    println!("{figures}");
    println!(
        "chaos: faults {:.1} s, orders settling {:.1} s, emails settling {:.1} s more, whole test {:.1} s",
        (faults_ended - load_started).as_secs_f64(),
        (all_ended - faults_ended).as_secs_f64(),
        (mails_settled - all_ended).as_secs_f64(),
        run_started.elapsed().as_secs_f64()
    );
    let redelivered = d.grep_logs("duplicate message id is in process");
    println!("chaos: outbox duplicate publishes seen in logs: {redelivered:?}");
    d.stop();
}

/// One customer: keep [`OPEN_PER_CUSTOMER`] orders open, placing the
/// next as soon as one ends, until told to stop.
async fn customer_loop(
    n: usize,
    customer: Customer,
    shop: Shop,
    tracker: Arc<Tracker>,
    stop: Arc<AtomicBool>,
    (plenty, scarce): (Vec<(Uuid, i64)>, Uuid),
) {
    let permits = Arc::new(Semaphore::new(OPEN_PER_CUSTOMER));
    let mut i = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let permit = permits.clone().acquire_owned().await.unwrap();
        if stop.load(Ordering::SeqCst) {
            break;
        }
        // Mostly tok_visa for plentiful products; some declined cards;
        // some lines of the scarce product.
        let k = n * 7919 + i;
        let card = if k % 10 == 3 {
            "tok_chargeDeclined"
        } else {
            "tok_visa"
        };
        let mut lines = vec![(plenty[k % plenty.len()].0, 1 + (k % 2) as i64)];
        let with_scarce = k % 8 == 5;
        if with_scarce {
            lines.push((scarce, 1));
        }
        let order_id = shop
            .place(&customer, &lines, card, &tracker.retries)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tracker.orders.lock().unwrap().insert(
            order_id,
            Tracked {
                card,
                scarce: with_scarce,
                accepted: Instant::now(),
                ended: None,
                status: None,
                reason: None,
            },
        );
        tracker.permits.lock().unwrap().insert(order_id, permit);
        i += 1;
    }
}

/// Watch the orders database for orders that ended; note when, and give
/// their customer's permit back. Errors (PostgreSQL down) just skip a turn.
async fn poll_ends(orders_db: String, tracker: Arc<Tracker>, stop: Arc<AtomicBool>) {
    let db = jetshop_platform::db::connect(&orders_db).await.unwrap();
    loop {
        let done = stop.load(Ordering::SeqCst) && tracker.open().is_empty();
        let rows: Result<Vec<(String, String, Option<String>)>, _> = order::Entity::find()
            .select_only()
            .column(order::Column::Id)
            .column(order::Column::Status)
            .column(order::Column::CancelReason)
            .filter(order::Column::Status.is_in(["confirmed", "cancelled"]))
            .into_tuple()
            .all(&db)
            .await;
        if let Ok(rows) = rows {
            let now = Instant::now();
            let mut orders = tracker.orders.lock().unwrap();
            let mut permits = tracker.permits.lock().unwrap();
            for (id, status, reason) in rows {
                let Ok(id) = id.parse::<Uuid>() else { continue };
                if let Some(t) = orders.get_mut(&id)
                    && t.ended.is_none()
                {
                    t.ended = Some(now);
                    t.status = Some(status);
                    t.reason = reason;
                    permits.remove(&id);
                }
            }
        }
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Create products with these stocks (a setup step: straight to the
/// catalog's command stream); returns (id, stock).
async fn products(d: &Deployment, stocks: &[i64]) -> Vec<(Uuid, i64)> {
    let mut out = Vec::new();
    for (i, &stock) in stocks.iter().enumerate() {
        let cmd = CreateProduct {
            id: Uuid::now_v7(),
            sku: format!("CHAOS-{i}-{}", &Uuid::now_v7().simple().to_string()[20..]),
            name: format!("Chaos product {i}"),
            description: String::new(),
            price: Money {
                amount_minor: 1500 + 100 * i as i64,
                currency: "EUR".into(),
            },
            stock,
        };
        envelope::send_command(
            &d.js,
            &Uuid::now_v7().to_string(),
            &cmd,
            &MessageMeta::default(),
        )
        .await
        .unwrap();
        out.push((cmd.id, stock));
    }
    // Wait until the catalog has them all.
    let db = jetshop_platform::db::connect(&d.catalog_db.url)
        .await
        .unwrap();
    for &(id, _) in &out {
        jetshop_testkit::eventually("a product", Duration::from_secs(30), || {
            let db = db.clone();
            async move {
                jetshop_catalog::storage::products::find(&db, id)
                    .await
                    .ok()
                    .flatten()
            }
        })
        .await;
    }
    out
}

/// The suite's own rules on how orders ended, beyond the invariants.
async fn check_outcomes(d: &Deployment, tracked: &HashMap<Uuid, Tracked>) {
    let mut wrong = Vec::new();
    for (id, t) in tracked {
        let status = t.status.as_deref().unwrap_or("open");
        let reason = t.reason.as_deref().unwrap_or("");
        let ok = match (t.card, t.scarce, status) {
            ("tok_visa", _, "confirmed") => true,
            // In stock and payable: nothing may cancel it.
            ("tok_visa", false, _) => false,
            ("tok_visa", true, "cancelled") => reason.contains("stock unavailable"),
            ("tok_chargeDeclined", _, "cancelled") => {
                reason.contains("payment declined")
                    || (t.scarce && reason.contains("stock unavailable"))
            }
            _ => false,
        };
        if !ok {
            wrong.push(format!(
                "{id} ({}, scarce: {}): {status} {reason}",
                t.card, t.scarce
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} orders ended the wrong way, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );

    // No saga is stuck or still open.
    let orders_db = jetshop_platform::db::connect(&d.orders_db.url)
        .await
        .unwrap();
    let stuck = sagas::count(&orders_db, SagaState::Stuck).await.unwrap();
    let open = sagas::count_open(&orders_db).await.unwrap();
    assert_eq!((stuck, open), (0, 0), "sagas stuck, open");

    // Every order in the database is one a customer was told about: a
    // retried placement never made a second order.
    let ids: Vec<String> = order::Entity::find()
        .select_only()
        .column(order::Column::Id)
        .into_tuple()
        .all(&orders_db)
        .await
        .unwrap();
    let unknown: Vec<&String> = ids
        .iter()
        .filter(|id| id.parse().is_ok_and(|id: Uuid| !tracked.contains_key(&id)))
        .collect();
    assert!(
        unknown.is_empty(),
        "{} orders no customer was told about (a retried placement placed twice?): {:?}",
        unknown.len(),
        &unknown[..unknown.len().min(10)]
    );

    // Nothing was given up on.
    let dead = jetshop_testkit::stream_count(&d.js, jetshop_contracts::streams::DLQ).await;
    if dead > 0 {
        let all =
            jetshop_testkit::stream_messages(&d.js, jetshop_contracts::streams::DLQ, dead).await;
        let reasons: Vec<String> = all
            .iter()
            .take(10)
            .map(|m| {
                format!(
                    "{:?}: {:?}",
                    jetshop_testkit::header(m, jetshop_contracts::headers::dlq::CONSUMER),
                    jetshop_testkit::header(m, jetshop_contracts::headers::dlq::REASON)
                )
            })
            .collect();
        panic!("{dead} dead letters, e.g. {reasons:#?}");
    }
}

/// Wait until every order's email is settled (sent, or skipped for want
/// of an address): after an order ends, its email is still on its way.
async fn wait_for_emails(d: &Deployment, orders: &[Uuid]) -> Instant {
    use jetshop_notifications::audit::{self, DeliveryState};
    let db = audit::connect(&d.notifications_db.url).await.unwrap();
    let started = Instant::now();
    loop {
        let emails = audit::emails_by_order(&db).await.unwrap_or_default();
        let settled = |id: &Uuid| {
            emails.get(id).is_some_and(|e| {
                e.iter()
                    .all(|(_, s): &(String, DeliveryState)| s.is_settled())
            })
        };
        let waiting: Vec<String> = orders
            .iter()
            .filter(|id| !settled(id))
            .map(|id| format!("{id}: {:?}", emails.get(id)))
            .collect();
        if waiting.is_empty() {
            return Instant::now();
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "{} orders' emails not settled after 180 s, e.g. {:?}",
            waiting.len(),
            &waiting[..waiting.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A message the mailbox holds twice is acceptable only as the known gap:
/// the notifications replica that claimed it was SIGKILLed after the SMTP
/// server took it and before `sent` was committed, and another replica
/// sent it again once the claim ran out. So: claimed more than once, the
/// second send no sooner than the claim's lease after the delivery was
/// created (two replicas never held it at once), and a notifications
/// replica killed within seconds of its creation. Returns a line for the
/// report.
async fn explain_resends(
    d: &Deployment,
    resent: &[(Uuid, usize)],
    log: &[faults::Fault],
) -> String {
    if resent.is_empty() {
        return "none twice".into();
    }
    let db = jetshop_notifications::audit::connect(&d.notifications_db.url)
        .await
        .unwrap();
    let kills: Vec<_> = log
        .iter()
        .filter(|f| f.name.starts_with("SIGKILL notifications"))
        .map(|f| f.wall)
        .collect();
    for &(id, times) in resent {
        let row = jetshop_notifications::storage::deliveries::find(&db, id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("resent delivery {id} has no row"));
        let lines: Vec<String> = d.parts["notifications"]
            .replicas
            .iter()
            .flat_map(|p| {
                std::fs::read_to_string(p.log())
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains(&id.to_string()) && !l.contains("being sent by another"))
                    .map(|l| format!("{}: {}", p.name(), &l[..l.len().min(300)]))
                    .collect::<Vec<_>>()
            })
            .collect();
        let sent_after = row
            .sent_at
            .map(|t| (t - row.created_at).to_std().unwrap_or_default());
        let killed = kills.iter().any(|k| {
            let since = *k - row.created_at;
            since >= chrono::TimeDelta::zero() && since <= chrono::TimeDelta::seconds(10)
        });
        let explained = times == 2
            && row.attempts >= 2
            && sent_after.is_some_and(|t| t + Duration::from_secs(5) >= deployment::DELIVERY_LEASE)
            && killed;
        assert!(
            explained,
            "delivery {id} reached the mailbox {times} times, and not because its replica was killed mid-send: {row:?} (sent {sent_after:?} after creation; notifications kills at {kills:?}); its log lines: {lines:#?}"
        );
    }
    format!(
        "{} of them twice: sent, then its replica SIGKILLed before `sent` was committed (the known gap)",
        resent.len()
    )
}

/// Print what the open orders' sagas say.
async fn report_open(d: &Deployment, open: &[Uuid]) {
    let Ok(db) = jetshop_platform::db::connect(&d.orders_db.url).await else {
        return;
    };
    for id in open.iter().take(10) {
        let saga = sagas::find(&db, *id).await.ok().flatten();
        println!("chaos: open order {id}: saga {saga:?}");
    }
}
