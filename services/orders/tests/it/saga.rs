//! The order saga end to end with the real catalog: the happy path,
//! compensations, deadlines, stuck sagas and the operator's retry,
//! duplicates, cancellation and a crash mid-saga.

use std::time::Duration;

use jetshop_contracts::{
    catalog::Money,
    orders::{CancelOrder, GetOrderHistory, ListOrders, ListSagas, OrderStatus, RetrySaga},
    payments::{
        AuthorizePayment, CapturePayment, PaymentAuthorized, PaymentCaptured, PaymentDeclined,
        PaymentVoided, VoidPayment,
    },
    streams::{ORDERS_EVENTS, PAYMENTS_COMMANDS},
};
use jetshop_orders::storage::{projection, sagas};
use jetshop_platform::envelope::MessageMeta;
use jetshop_testkit::eventually;
use uuid::Uuid;

use crate::helpers::{Shop, place_order};

fn eur(amount_minor: i64) -> Money {
    Money {
        amount_minor,
        currency: "EUR".into(),
    }
}

/// Play payments: authorize and capture whatever the saga asks for.
async fn approve(shop: &Shop, order_id: Uuid, amount: i64) -> Uuid {
    let payment_id = Uuid::now_v7();
    shop.publish(&PaymentAuthorized {
        order_id,
        payment_id,
        amount: eur(amount),
        provider_ref: "sim_test".into(),
    })
    .await;
    payment_id
}

#[tokio::test]
async fn an_order_goes_from_placed_to_confirmed_with_prices_frozen() {
    let shop = Shop::start(|_| {}).await;
    let p = shop.product("SAGA-OK", 1250, 5).await;
    let order_id = shop.place(&[(p, 2)], "tok_visa").await;

    let auth = shop
        .wait_messages::<AuthorizePayment>(PAYMENTS_COMMANDS, 1)
        .await;
    assert_eq!(auth[0].order_id, order_id);
    assert_eq!(auth[0].amount, eur(2500), "price read from the catalog");
    assert_eq!(auth[0].card_token, "tok_visa");
    let view = shop.wait_status(order_id, OrderStatus::StockReserved).await;
    assert_eq!(view.lines[0].unit_price, eur(1250));
    assert_eq!(shop.stock(p).await, 3, "two units held");

    let payment_id = approve(&shop, order_id, 2500).await;
    shop.wait_messages::<CapturePayment>(PAYMENTS_COMMANDS, 1)
        .await;
    shop.publish(&PaymentCaptured {
        order_id,
        payment_id,
        amount: eur(2500),
    })
    .await;
    let view = shop.wait_status(order_id, OrderStatus::Confirmed).await;
    assert_eq!(view.total, eur(2500));
    let steps: Vec<(String, String)> = view
        .timeline
        .iter()
        .map(|t| (t.step.clone(), t.outcome.clone()))
        .collect();
    for expected in [
        ("reserve_stock", "succeeded"),
        ("authorize_payment", "succeeded"),
        ("capture_payment", "succeeded"),
        ("commit_reservation", "succeeded"),
        ("order", "confirmed"),
    ] {
        assert!(
            steps.contains(&(expected.0.into(), expected.1.into())),
            "{expected:?} missing from {steps:?}"
        );
    }

    // The aggregate's events are the history, and they were published.
    let history = shop
        .rpc
        .call(&GetOrderHistory { order_id }, &MessageMeta::default())
        .await
        .unwrap();
    let types: Vec<&str> = history
        .events
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "orders.placed",
            "orders.stock-reserved",
            "orders.payment-authorized",
            "orders.payment-captured",
            "orders.confirmed"
        ]
    );
    let published = jetshop_testkit::stream_messages(&shop.js, ORDERS_EVENTS, 5).await;
    let ids: Vec<String> = published
        .iter()
        .map(|m| jetshop_testkit::header(m, "Nats-Msg-Id").unwrap())
        .collect();
    for e in &history.events {
        assert!(
            ids.contains(&e.event_id.to_string()),
            "event {} not published",
            e.event_type
        );
    }

    // The projection is the fold of the events.
    let db = jetshop_platform::db::connect(&shop.orders_db.url)
        .await
        .unwrap();
    let stored = jetshop_orders::storage::events::load(&db, order_id)
        .await
        .unwrap();
    let fold = jetshop_orders::domain::order::Order::replay(
        stored.iter().map(|s| (&s.event, s.recorded_at)),
    )
    .unwrap()
    .unwrap();
    let row = projection::find(&db, order_id).await.unwrap().unwrap();
    assert_eq!(row.status, fold.status.as_str());
    assert_eq!(row.version, fold.version);

    // Listing: the customer's orders.
    let page = shop
        .rpc
        .call(
            &ListOrders {
                customer_id: Some(view.customer_id),
                ..Default::default()
            },
            &MessageMeta::default(),
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    shop.stop().await;
}

#[tokio::test]
async fn no_stock_cancels_and_a_declined_card_gives_the_stock_back() {
    let shop = Shop::start(|_| {}).await;
    let p = shop.product("SAGA-FEW", 500, 1).await;
    let too_many = shop.place(&[(p, 2)], "tok_visa").await;
    let view = shop.wait_status(too_many, OrderStatus::Cancelled).await;
    assert!(view.cancel_reason.unwrap().contains("stock unavailable"));

    let declined = shop.place(&[(p, 1)], "tok_chargeDeclined").await;
    shop.wait_messages::<AuthorizePayment>(PAYMENTS_COMMANDS, 1)
        .await;
    assert_eq!(shop.stock(p).await, 0);
    shop.publish(&PaymentDeclined {
        order_id: declined,
        payment_id: Uuid::now_v7(),
        code: "card_declined".into(),
        reason: "Your card was declined.".into(),
    })
    .await;
    let view = shop.wait_status(declined, OrderStatus::Cancelled).await;
    assert!(view.cancel_reason.unwrap().contains("payment declined"));
    assert_eq!(shop.stock(p).await, 1, "the stock is back");
    assert_eq!(
        shop.count::<VoidPayment>(PAYMENTS_COMMANDS).await,
        0,
        "nothing held, nothing to void"
    );

    let unknown = shop.place(&[(Uuid::now_v7(), 1)], "tok_visa").await;
    let view = shop.wait_status(unknown, OrderStatus::Cancelled).await;
    assert!(view.cancel_reason.unwrap().contains("not in the catalog"));
    assert!(view.lines.is_empty());
    shop.stop().await;
}

#[tokio::test]
async fn a_cancel_before_capture_voids_and_releases() {
    let shop = Shop::start(|_| {}).await;
    let p = shop.product("SAGA-CANCEL", 700, 3).await;
    let order_id = shop.place(&[(p, 1)], "tok_visa").await;
    shop.wait_messages::<AuthorizePayment>(PAYMENTS_COMMANDS, 1)
        .await;
    shop.send(&CancelOrder {
        order_id,
        requested_by: "customer".into(),
        reason: Some("changed my mind".into()),
    })
    .await;
    shop.wait_status(order_id, OrderStatus::Cancelling).await;
    let voids = shop
        .wait_messages::<VoidPayment>(PAYMENTS_COMMANDS, 1)
        .await;
    assert_eq!(voids[0].order_id, order_id);
    shop.publish(&PaymentVoided {
        order_id,
        payment_id: Uuid::now_v7(),
        amount: eur(0),
    })
    .await;
    let view = shop.wait_status(order_id, OrderStatus::Cancelled).await;
    assert_eq!(view.cancel_reason.as_deref(), Some("changed my mind"));
    assert_eq!(shop.stock(p).await, 3);

    // After capture began, a cancel is refused and the order completes.
    let late = shop.place(&[(p, 1)], "tok_visa").await;
    shop.wait_status(late, OrderStatus::StockReserved).await;
    let payment_id = approve(&shop, late, 700).await;
    shop.wait_status(late, OrderStatus::PaymentAuthorized).await;
    shop.send(&CancelOrder {
        order_id: late,
        requested_by: "customer".into(),
        reason: None,
    })
    .await;
    let view = eventually("the refusal", Duration::from_secs(15), || async {
        shop.order(late)
            .await
            .filter(|o| o.timeline.iter().any(|t| t.outcome == "refused"))
    })
    .await;
    assert_eq!(view.status, OrderStatus::PaymentAuthorized);
    shop.publish(&PaymentCaptured {
        order_id: late,
        payment_id,
        amount: eur(700),
    })
    .await;
    shop.wait_status(late, OrderStatus::Confirmed).await;
    assert_eq!(shop.stock(p).await, 2);
    shop.stop().await;
}

#[tokio::test]
async fn duplicate_answers_change_nothing() {
    let shop = Shop::start(|_| {}).await;
    let p = shop.product("SAGA-DUP", 300, 2).await;
    let order_id = shop.place(&[(p, 1)], "tok_visa").await;
    shop.wait_status(order_id, OrderStatus::StockReserved).await;
    // The same authorization twice under different message ids.
    let payment_id = approve(&shop, order_id, 300).await;
    shop.publish(&PaymentAuthorized {
        order_id,
        payment_id,
        amount: eur(300),
        provider_ref: "sim_test".into(),
    })
    .await;
    // And the placement again (a client retry past the dedupe window).
    let mut again = place_order(order_id, &[(p, 1)], "tok_visa");
    again.customer_id = Uuid::now_v7();
    shop.send(&again).await;
    shop.wait_status(order_id, OrderStatus::PaymentAuthorized)
        .await;
    shop.publish(&PaymentCaptured {
        order_id,
        payment_id,
        amount: eur(300),
    })
    .await;
    shop.wait_status(order_id, OrderStatus::Confirmed).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(shop.count::<CapturePayment>(PAYMENTS_COMMANDS).await, 1);
    assert_eq!(shop.count::<AuthorizePayment>(PAYMENTS_COMMANDS).await, 1);
    let history = shop
        .rpc
        .call(&GetOrderHistory { order_id }, &MessageMeta::default())
        .await
        .unwrap();
    assert_eq!(history.events.len(), 5, "each fact once");
    assert_eq!(shop.stock(p).await, 1);
    shop.stop().await;
}

#[tokio::test]
async fn missed_deadlines_retry_then_compensate_then_park_for_an_operator() {
    let shop = Shop::start(|s| {
        s.step_timeout = Duration::from_millis(300);
        s.step_attempts = 2;
    })
    .await;
    let p = shop.product("SAGA-SLOW", 900, 4).await;
    let order_id = shop.place(&[(p, 1)], "tok_timeout").await;
    // Nobody answers: two authorizations (distinct message ids), then a void,
    // sent twice, then the saga is stuck.
    shop.wait_messages::<VoidPayment>(PAYMENTS_COMMANDS, 2)
        .await;
    assert_eq!(shop.count::<AuthorizePayment>(PAYMENTS_COMMANDS).await, 2);
    let stuck = eventually("a stuck saga", Duration::from_secs(15), || async {
        let list = shop
            .rpc
            .call(
                &ListSagas {
                    state: Some("stuck".into()),
                    limit: None,
                },
                &MessageMeta::default(),
            )
            .await
            .ok()?;
        list.items.into_iter().find(|s| s.order_id == order_id)
    })
    .await;
    assert_eq!(stuck.step, "void_payment");
    assert!(stuck.last_error.unwrap().contains("no answer"));
    let view = shop.order(order_id).await.unwrap();
    assert_eq!(view.status, OrderStatus::Cancelling);
    assert!(view.timeline.iter().any(|t| t.outcome == "stuck"));
    // Parked, not looping.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(shop.count::<VoidPayment>(PAYMENTS_COMMANDS).await, 2);

    // The operator retries: a fresh void goes out; payments answers; the
    // stock comes back and the order ends cancelled.
    let retried = shop
        .rpc
        .call(&RetrySaga { order_id }, &MessageMeta::default())
        .await
        .unwrap();
    assert_eq!(retried.state, "voiding_payment");
    shop.wait_messages::<VoidPayment>(PAYMENTS_COMMANDS, 3)
        .await;
    shop.publish(&PaymentVoided {
        order_id,
        payment_id: Uuid::now_v7(),
        amount: eur(0),
    })
    .await;
    let view = shop.wait_status(order_id, OrderStatus::Cancelled).await;
    assert!(view.cancel_reason.unwrap().contains("timed out"));
    assert_eq!(shop.stock(p).await, 4);
    // Retrying a saga that is not stuck is refused.
    let err = shop
        .rpc
        .call(&RetrySaga { order_id }, &MessageMeta::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("only a stuck saga"), "{err}");
    shop.stop().await;
}

#[tokio::test]
async fn a_crash_mid_saga_resumes_on_restart() {
    let mut shop = Shop::start(|s| {
        s.step_timeout = Duration::from_secs(1);
        s.step_timeout_max = Duration::from_secs(1);
        s.step_attempts = 30;
    })
    .await;
    let p = shop.product("SAGA-CRASH", 100, 50).await;
    let mut orders = Vec::new();
    for _ in 0..20 {
        orders.push(shop.place(&[(p, 1)], "tok_visa").await);
    }
    // Killed with placements, reservations and authorizations in flight.
    shop.wait_messages::<AuthorizePayment>(PAYMENTS_COMMANDS, 3)
        .await;
    shop.kill_orders().await;
    shop.start_orders().await;
    // Payments answers each order once, whatever was resent.
    let asked = eventually(
        "an authorization for every order",
        Duration::from_secs(60),
        || async {
            let asked: std::collections::HashSet<Uuid> =
                crate::helpers::messages_of::<AuthorizePayment>(&shop.js, PAYMENTS_COMMANDS)
                    .await
                    .into_iter()
                    .map(|a| a.order_id)
                    .collect();
            (asked.len() == orders.len()).then_some(asked)
        },
    )
    .await;
    for o in asked {
        approve(&shop, o, 100).await;
    }
    let db = jetshop_platform::db::connect(&shop.orders_db.url)
        .await
        .unwrap();
    eventually(
        "every saga to ask for its capture",
        Duration::from_secs(60),
        || async {
            let mut all = true;
            for &o in &orders {
                let row = sagas::find(&db, o).await.ok()??;
                all &= row.state == "capturing_payment";
            }
            all.then_some(())
        },
    )
    .await;
    for &o in &orders {
        shop.publish(&PaymentCaptured {
            order_id: o,
            payment_id: Uuid::now_v7(),
            amount: eur(100),
        })
        .await;
    }
    for &o in &orders {
        shop.wait_status(o, OrderStatus::Confirmed).await;
    }
    assert_eq!(shop.stock(p).await, 30);
    shop.stop().await;
}
