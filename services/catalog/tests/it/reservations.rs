//! Reservations for the order saga: all lines or none, release, commit,
//! idempotency per order, and no overselling under concurrent orders.

use std::time::Duration;

use async_nats::jetstream::message::StreamMessage;
use jetshop_catalog::{
    handlers::commands::CONSUMER,
    storage::{
        products,
        reservations::{self, State},
    },
};
use jetshop_contracts::{
    Encoding, Message,
    catalog::{
        AdjustStock, CommitReservation, GetProduct, ReleaseStock, ReservationCommitted,
        ReservationLine, ReserveStock, StockRejected, StockReleased, StockReserved,
    },
    headers, streams,
};
use jetshop_platform::{envelope::MessageMeta, outbox};
use jetshop_testkit::eventually;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};
use uuid::Uuid;

use crate::helpers::{DLQ, EVENTS, TestCatalog};
use jetshop_testkit::header;

fn line(product_id: Uuid, quantity: i64) -> ReservationLine {
    ReservationLine {
        product_id,
        quantity,
    }
}

fn reserve(order_id: Uuid, lines: Vec<ReservationLine>) -> ReserveStock {
    ReserveStock { order_id, lines }
}

/// The events of type `M` among `events`.
fn of_type<M: Message + serde::de::DeserializeOwned>(events: &[StreamMessage]) -> Vec<M> {
    events
        .iter()
        .filter(|m| header(m, headers::TYPE).as_deref() == Some(M::TYPE))
        .map(|m| Encoding::MsgPack.decode(&m.payload).unwrap())
        .collect()
}

/// Wait until the command consumer has acknowledged everything sent so far
/// and the relay has published every event it caused, so that counts of
/// events are final.
async fn settle(app: &TestCatalog, db: &DatabaseConnection) {
    let stream = app.js.get_stream(streams::CATALOG_COMMANDS).await.unwrap();
    eventually(
        "the command consumer to settle",
        Duration::from_secs(20),
        || {
            let stream = stream.clone();
            async move {
                let mut c: async_nats::jetstream::consumer::PullConsumer =
                    stream.get_consumer(CONSUMER).await.ok()?;
                let info = c.info().await.ok()?;
                (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
            }
        },
    )
    .await;
    eventually("the outbox to drain", Duration::from_secs(20), || async {
        let pending = outbox::entity::Entity::find()
            .filter(outbox::entity::Column::PublishedAt.is_null())
            .count(db)
            .await
            .ok()?;
        (pending == 0).then_some(())
    })
    .await;
}

async fn db(app: &TestCatalog) -> DatabaseConnection {
    jetshop_platform::db::connect(&app._db.url).await.unwrap()
}

async fn stock(db: &DatabaseConnection, id: Uuid) -> i64 {
    products::find(db, id).await.unwrap().unwrap().stock
}

async fn held(db: &DatabaseConnection, id: Uuid, state: State) -> i64 {
    reservations::units_in_state(db, id, state).await.unwrap()
}

async fn assert_no_dead_letters(app: &TestCatalog) {
    let dead = app.stream_count(DLQ).await;
    if dead > 0 {
        let reasons: Vec<_> = app
            .stream_messages(DLQ, dead)
            .await
            .iter()
            .map(|m| header(m, headers::dlq::REASON))
            .collect();
        panic!("nothing should be dead-lettered: {reasons:?}");
    }
}

#[tokio::test]
async fn a_reservation_takes_every_line_or_none() {
    let app = TestCatalog::spawn().await;
    let db = db(&app).await;
    let a = app.create("RES-A", "Plenty", 5).await.id;
    let b = app.create("RES-B", "Scarce", 2).await.id;
    let ghost = Uuid::now_v7();

    // One line short: nothing is taken, and the rejection says what is missing.
    let short = Uuid::now_v7();
    app.send(&reserve(short, vec![line(a, 3), line(b, 3)]))
        .await;
    // A product the catalog does not know.
    let unknown = Uuid::now_v7();
    app.send(&reserve(unknown, vec![line(a, 1), line(ghost, 1)]))
        .await;
    let events = app.stream_messages(EVENTS, 4).await;
    let rejected: Vec<StockRejected> = of_type(&events);
    assert_eq!(rejected.len(), 2, "two rejections");
    let of = |order| rejected.iter().find(|r| r.order_id == order).unwrap();
    let r = of(short);
    assert_eq!(r.unavailable.len(), 1, "{r:?}");
    assert_eq!(
        (
            r.unavailable[0].product_id,
            r.unavailable[0].requested,
            r.unavailable[0].available
        ),
        (b, 3, 2)
    );
    assert!(r.reason.contains("insufficient stock"), "{}", r.reason);
    let r = of(unknown);
    assert_eq!(r.unavailable.len(), 1, "{r:?}");
    assert_eq!(
        (r.unavailable[0].product_id, r.unavailable[0].available),
        (ghost, 0)
    );
    settle(&app, &db).await;
    assert_eq!((stock(&db, a).await, stock(&db, b).await), (5, 2));
    // Only the order's marker, settled as released: a resend holds nothing.
    let rows = reservations::of_order(&db, short).await.unwrap();
    assert!(
        rows.iter()
            .all(|r| r.product_id == reservations::ORDER_MARKER.to_string()
                && r.state == State::Released),
        "{rows:?}"
    );

    // Every line available, one product named twice: merged into one line.
    let ok = Uuid::now_v7();
    app.send(&reserve(ok, vec![line(a, 2), line(b, 2), line(a, 1)]))
        .await;
    let events = app.stream_messages(EVENTS, 5).await;
    let reserved: Vec<StockReserved> = of_type(&events);
    assert_eq!(reserved.len(), 1);
    assert_eq!(reserved[0].order_id, ok);
    let mut lines = reserved[0].lines.clone();
    lines.sort_by_key(|l| l.product_id);
    let mut expected = vec![line(a, 3), line(b, 2)];
    expected.sort_by_key(|l| l.product_id);
    assert_eq!(lines, expected);
    settle(&app, &db).await;
    assert_eq!((stock(&db, a).await, stock(&db, b).await), (2, 0));

    // Readers see the new stock (the cache was dropped), and the version moved.
    let p = eventually("product a at stock 2", Duration::from_secs(5), || {
        let rpc = app.rpc.clone();
        async move {
            let p = rpc
                .call(&GetProduct { id: a }, &MessageMeta::default())
                .await
                .ok()?;
            (p.stock == 2).then_some(p)
        }
    })
    .await;
    assert!(p.version > 1);
    assert_no_dead_letters(&app).await;
}

#[tokio::test]
async fn release_gives_stock_back_and_commit_keeps_it() {
    let app = TestCatalog::spawn().await;
    let db = db(&app).await;
    let p = app.create("RES-REL", "Released", 10).await.id;
    let (o1, o2) = (Uuid::now_v7(), Uuid::now_v7());
    app.send(&reserve(o1, vec![line(p, 3)])).await;
    app.send(&reserve(o2, vec![line(p, 2)])).await;
    app.stream_messages(EVENTS, 3).await;
    settle(&app, &db).await;
    assert_eq!(stock(&db, p).await, 5);

    app.send(&ReleaseStock {
        order_id: o1,
        reason: Some("payment declined".into()),
    })
    .await;
    app.send(&CommitReservation { order_id: o2 }).await;
    let events = app.stream_messages(EVENTS, 5).await;
    settle(&app, &db).await;
    let released: Vec<StockReleased> = of_type(&events);
    assert_eq!(released.len(), 1);
    assert_eq!(
        (released[0].order_id, released[0].lines.clone()),
        (o1, vec![line(p, 3)])
    );
    let committed: Vec<ReservationCommitted> = of_type(&events);
    assert_eq!(committed.len(), 1);
    assert_eq!(
        (committed[0].order_id, committed[0].lines.clone()),
        (o2, vec![line(p, 2)])
    );
    assert_eq!(stock(&db, p).await, 8);
    assert_eq!(held(&db, p, State::Committed).await, 2);

    // No-ops: releasing a committed or a released order, and committing
    // again. None of them moves stock or emits anything. Releasing an
    // unknown order moves nothing either, but answers (below).
    app.send(&ReleaseStock {
        order_id: o2,
        reason: None,
    })
    .await;
    app.send(&ReleaseStock {
        order_id: o1,
        reason: None,
    })
    .await;
    let unknown = Uuid::now_v7();
    app.send(&ReleaseStock {
        order_id: unknown,
        reason: None,
    })
    .await;
    app.send(&CommitReservation { order_id: o2 }).await;
    settle(&app, &db).await;
    assert_eq!(stock(&db, p).await, 8, "committed stock never comes back");
    let events = app.stream_messages(EVENTS, 6).await;
    assert_eq!(events.len(), 6);
    let released: Vec<StockReleased> = of_type(&events);
    assert_eq!(
        released.last().map(|r| (r.order_id, r.lines.len())),
        Some((unknown, 0)),
        "a compensating saga hears back even for an order never reserved"
    );
    assert_no_dead_letters(&app).await;

    // Committing a released or an unknown order is a permanent error.
    app.send(&CommitReservation { order_id: o1 }).await;
    app.send(&CommitReservation {
        order_id: Uuid::now_v7(),
    })
    .await;
    let dead = app.stream_messages(DLQ, 2).await;
    let reasons: Vec<String> = dead
        .iter()
        .map(|m| header(m, headers::dlq::REASON).unwrap())
        .collect();
    for needle in ["was released", "no reservation"] {
        assert!(
            reasons.iter().any(|r| r.contains(needle)),
            "no DLQ reason mentions {needle:?}: {reasons:?}"
        );
    }
    for m in &dead {
        assert_eq!(header(m, headers::dlq::DELIVERIES).as_deref(), Some("1"));
    }
    settle(&app, &db).await;
    assert_eq!(stock(&db, p).await, 8);
    assert_eq!(held(&db, p, State::Reserved).await, 0);
    assert_eq!(held(&db, p, State::Committed).await, 2);
    assert_eq!(app.stream_count(EVENTS).await, 6);
}

#[tokio::test]
async fn a_reserve_arriving_after_its_release_holds_nothing() {
    let app = TestCatalog::spawn().await;
    let db = db(&app).await;
    let p = app.create("RES-LATE", "Late", 4).await.id;
    let order = Uuid::now_v7();
    // The saga gave up waiting and compensated before its reserve got here.
    app.send(&ReleaseStock {
        order_id: order,
        reason: Some("reservation timed out".into()),
    })
    .await;
    app.stream_messages(EVENTS, 2).await;
    app.send(&reserve(order, vec![line(p, 3)])).await;
    settle(&app, &db).await;
    assert_eq!(stock(&db, p).await, 4, "the late reserve took nothing");
    assert_eq!(held(&db, p, State::Reserved).await, 0);
    assert_eq!(app.stream_count(EVENTS).await, 2, "one create, one release");
    assert_no_dead_letters(&app).await;
}

#[tokio::test]
async fn a_reserve_resent_after_its_rejection_holds_nothing() {
    let app = TestCatalog::spawn().await;
    let db = db(&app).await;
    let p = app.create("RES-REFUSED", "Refused", 2).await.id;
    let order = Uuid::now_v7();
    let cmd = reserve(order, vec![line(p, 3)]);
    app.send(&cmd).await;
    app.stream_messages(EVENTS, 2).await;
    // The saga cancels the order on the rejection. Stock comes back (a
    // restock, other orders released), and the saga's resend of the
    // reserve, sent before the rejection reached it, arrives now.
    app.send(&AdjustStock {
        id: p,
        delta: 5,
        reason: Some("restock".into()),
    })
    .await;
    app.stream_messages(EVENTS, 3).await;
    app.send(&cmd).await;
    settle(&app, &db).await;
    assert_eq!(stock(&db, p).await, 7, "the cancelled order holds nothing");
    assert_eq!(held(&db, p, State::Reserved).await, 0);
    assert_eq!(
        app.stream_count(EVENTS).await,
        3,
        "create, rejection, restock"
    );
    assert_no_dead_letters(&app).await;
}

#[tokio::test]
async fn a_repeated_reserve_changes_nothing() {
    let app = TestCatalog::spawn().await;
    let db = db(&app).await;
    let p = app.create("RES-TWICE", "Twice", 5).await.id;
    let order = Uuid::now_v7();
    let cmd = reserve(order, vec![line(p, 2)]);
    // Different message ids get past JetStream's dedupe; the order id does not.
    app.send(&cmd).await;
    app.send(&cmd).await;
    app.stream_messages(EVENTS, 2).await;
    settle(&app, &db).await;
    assert_eq!(stock(&db, p).await, 3);
    assert_eq!(app.stream_count(EVENTS).await, 2, "one create, one reserve");

    // Once released, the order's reservation still exists: no second take.
    app.send(&ReleaseStock {
        order_id: order,
        reason: None,
    })
    .await;
    app.stream_messages(EVENTS, 3).await;
    app.send(&cmd).await;
    settle(&app, &db).await;
    assert_eq!(stock(&db, p).await, 5);
    assert_eq!(app.stream_count(EVENTS).await, 3);
    assert_no_dead_letters(&app).await;
}

#[tokio::test]
async fn concurrent_orders_never_oversell() {
    let app = TestCatalog::spawn().await;
    let db = db(&app).await;
    let p = app.create("RES-HOT", "Hot", 10).await.id;
    let orders: Vec<Uuid> = (0..40).map(|_| Uuid::now_v7()).collect();
    let cmds: Vec<ReserveStock> = orders
        .iter()
        .map(|o| reserve(*o, vec![line(p, 1)]))
        .collect();
    futures::future::join_all(cmds.iter().map(|c| app.send(c))).await;

    let events = app.stream_messages(EVENTS, 41).await;
    assert_eq!(events.len(), 41);
    let reserved: Vec<StockReserved> = of_type(&events);
    let rejected: Vec<StockRejected> = of_type(&events);
    assert_eq!((reserved.len(), rejected.len()), (10, 30));
    settle(&app, &db).await;
    assert_eq!(app.stream_count(EVENTS).await, 41, "one outcome per order");
    assert_eq!(stock(&db, p).await, 0);
    assert_eq!(held(&db, p, State::Reserved).await, 10);

    // Release some, commit the rest: stock + reserved + committed stays 10.
    for (i, r) in reserved.iter().enumerate() {
        if i % 3 == 0 {
            app.send(&ReleaseStock {
                order_id: r.order_id,
                reason: None,
            })
            .await;
        } else {
            app.send(&CommitReservation {
                order_id: r.order_id,
            })
            .await;
        }
    }
    app.stream_messages(EVENTS, 51).await;
    settle(&app, &db).await;
    let (s, r, c) = (
        stock(&db, p).await,
        held(&db, p, State::Reserved).await,
        held(&db, p, State::Committed).await,
    );
    assert_eq!((s, r, c), (4, 0, 6));
    assert_eq!(s + r + c, 10);
    assert_no_dead_letters(&app).await;
}

#[tokio::test]
async fn concurrent_orders_over_two_products_neither_oversell_nor_deadlock() {
    let app = TestCatalog::spawn().await;
    let db = db(&app).await;
    let a = app.create("RES-A2", "A", 10).await.id;
    let b = app.create("RES-B2", "B", 7).await.id;
    // Half the orders name the products in the other order.
    let cmds: Vec<ReserveStock> = (0..40)
        .map(|i| {
            let lines = if i % 2 == 0 {
                vec![line(a, 1), line(b, 1)]
            } else {
                vec![line(b, 1), line(a, 1)]
            };
            reserve(Uuid::now_v7(), lines)
        })
        .collect();
    futures::future::join_all(cmds.iter().map(|c| app.send(c))).await;
    let events = app.stream_messages(EVENTS, 42).await;
    let reserved: Vec<StockReserved> = of_type(&events);
    let rejected: Vec<StockRejected> = of_type(&events);
    assert_eq!((reserved.len(), rejected.len()), (7, 33));
    settle(&app, &db).await;
    assert_eq!(app.stream_count(EVENTS).await, 42, "one outcome per order");
    for (id, initial) in [(a, 10), (b, 7)] {
        let s = stock(&db, id).await;
        assert!(s >= 0);
        assert_eq!(s + held(&db, id, State::Reserved).await, initial);
    }
    assert_eq!(stock(&db, b).await, 0);
    assert_no_dead_letters(&app).await;
}

#[tokio::test]
async fn an_invalid_reservation_goes_to_the_dlq_with_a_reason() {
    let app = TestCatalog::spawn().await;
    let db = db(&app).await;
    let p = app.create("RES-BAD", "Bad", 5).await.id;
    app.send(&reserve(Uuid::now_v7(), vec![line(p, 1), line(p, 0)]))
        .await;
    app.send(&reserve(Uuid::now_v7(), vec![line(p, -2)])).await;
    app.send(&reserve(Uuid::now_v7(), vec![])).await;
    let dead = app.stream_messages(DLQ, 3).await;
    let reasons: Vec<String> = dead
        .iter()
        .map(|m| header(m, headers::dlq::REASON).unwrap())
        .collect();
    assert_eq!(
        reasons
            .iter()
            .filter(|r| r.contains("quantity") && r.contains("at least 1"))
            .count(),
        2,
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("lines")), "{reasons:?}");
    for m in &dead {
        assert_eq!(
            header(m, headers::dlq::CONSUMER).as_deref(),
            Some("catalog-commands")
        );
        assert_eq!(header(m, headers::dlq::DELIVERIES).as_deref(), Some("1"));
    }
    settle(&app, &db).await;
    assert_eq!(stock(&db, p).await, 5);
    assert_eq!(app.stream_count(EVENTS).await, 1, "only the create");
}
