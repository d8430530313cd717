//! Payments as several replicas and the card processor as its own
//! component: no authorization lives in a payments process, so a capture
//! taken by another replica, or after a processor restart, finds it.
//!
//! With the in-memory simulator that used to live in each payments process,
//! the capture below was declined (`no_such_authorization`) and the order
//! was cancelled.

use std::time::Duration;

use jetshop_payments::domain::IntentState;
use jetshop_testkit::eventually;
use uuid::Uuid;

use crate::helpers::{PATIENCE, TestPayments, kinds};

#[tokio::test]
async fn a_capture_taken_by_another_replica_finds_the_authorization() {
    let mut app = TestPayments::spawn().await;
    let orders: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    // Replica A authorizes ...
    for (i, order_id) in orders.iter().enumerate() {
        app.authorize(*order_id, 1000 + i as i64, "tok_visa").await;
    }
    for order_id in &orders {
        app.wait_state(*order_id, IntentState::Authorized).await;
    }
    app.settle().await;
    app.stop().await;

    // ... and replica B, another process with its own adapter, captures.
    let (stop_b, b) = app.start_replica().await;
    for order_id in &orders {
        app.capture(*order_id).await;
    }
    for order_id in &orders {
        app.wait_state(*order_id, IntentState::Captured).await;
    }
    app.settle().await;
    for order_id in &orders {
        assert_eq!(
            kinds(&app.events_of(*order_id).await),
            ["authorized", "captured"]
        );
        let activity = app.processor.activity(*order_id).await;
        assert_eq!((activity.authorizations, activity.captures), (1, 1));
    }
    assert_eq!(app.dlq_count().await, 0, "no capture was refused");

    // Both replicas at once, sharing the command consumer: every order is
    // authorized and captured once, whichever replica takes which command.
    app.restart().await;
    let more: Vec<Uuid> = (0..20).map(|_| Uuid::now_v7()).collect();
    for order_id in &more {
        app.authorize(*order_id, 700, "tok_visa").await;
    }
    for order_id in &more {
        app.wait_state(*order_id, IntentState::Authorized).await;
        app.capture(*order_id).await;
    }
    for order_id in &more {
        app.wait_state(*order_id, IntentState::Captured).await;
    }
    app.settle().await;
    for order_id in &more {
        let activity = app.processor.activity(*order_id).await;
        assert_eq!((activity.authorizations, activity.captures), (1, 1));
    }
    assert_eq!(app.dlq_count().await, 0);
    stop_b.cancel();
    b.await.unwrap().unwrap();
    app.stop().await;
}

#[tokio::test]
async fn a_processor_restart_keeps_the_authorizations() {
    let mut app = TestPayments::spawn().await;
    let order_id = Uuid::now_v7();
    app.authorize(order_id, 4200, "tok_visa").await;
    app.wait_state(order_id, IntentState::Authorized).await;

    app.processor.restart().await;
    app.capture(order_id).await;
    app.wait_state(order_id, IntentState::Captured).await;
    app.settle().await;
    assert_eq!(
        kinds(&app.events_of(order_id).await),
        ["authorized", "captured"]
    );
    let activity = app.processor.activity(order_id).await;
    assert_eq!((activity.authorizations, activity.captures), (1, 1));
    assert_eq!(app.dlq_count().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_processor_that_is_down_delays_payments_and_never_declines_them() {
    let mut app = TestPayments::spawn_with(|s| {
        s.consumer.max_deliver = 1_000;
        s.breaker_open_duration = Duration::from_millis(500);
        s.consumer.backoff = vec![Duration::from_millis(50)];
    })
    .await;
    app.processor.stop().await;
    let order_id = Uuid::now_v7();
    app.authorize(order_id, 900, "tok_visa").await;
    // Connection refused is transient: the command waits in JetStream.
    eventually("an authorize attempt", PATIENCE, || async {
        app.intent(order_id)
            .await
            .filter(|i| i.state == IntentState::Authorizing)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.events_of(order_id).await.is_empty());

    app.processor.restart().await;
    app.wait_state(order_id, IntentState::Authorized).await;
    app.settle().await;
    assert_eq!(kinds(&app.events_of(order_id).await), ["authorized"]);
    assert_eq!(app.dlq_count().await, 0);
    app.stop().await;
}
