//! The circuit breaker over a failing provider: it opens, calls fail fast
//! without reaching the provider, and after the outage a probe closes it
//! and the pending authorizations complete.

use std::time::Duration;

use jetshop_payments::{BreakerState, domain::IntentState};
use jetshop_testkit::eventually;
use uuid::Uuid;

use crate::helpers::{PATIENCE, PaymentEvent, TestPayments};

const THRESHOLD: u32 = 3;

#[tokio::test]
async fn an_open_breaker_fails_fast_and_a_probe_closes_it_after_the_outage() {
    let app = TestPayments::spawn_with(|s| {
        s.breaker_failure_threshold = THRESHOLD;
        s.provider_retries = 2;
        s.breaker_open_duration = Duration::from_secs(1);
        // Keep redelivering for the whole outage.
        s.consumer.max_deliver = 10_000;
        s.consumer.backoff = vec![Duration::from_millis(50)];
    })
    .await;
    app.processor.set_outage(true).await;

    // One order's three attempts (first try and two retries) open it.
    let first = Uuid::now_v7();
    app.authorize(first, 1000, "tok_visa").await;
    eventually("the breaker to open", PATIENCE, || async {
        (app.guarded.breaker().times_opened >= 1).then_some(())
    })
    .await;

    // More orders arrive; the redeliveries keep coming.
    let mut orders = vec![first];
    for i in 0..4 {
        let order_id = Uuid::now_v7();
        app.authorize(order_id, 1001 + i, "tok_visa").await;
        orders.push(order_id);
    }
    // Many calls failed fast, and the provider saw only the threshold's
    // calls plus one per half-open probe (each failed, reopening it).
    eventually("calls to fail fast", PATIENCE, || async {
        let b = app.guarded.breaker();
        (b.rejected >= 20).then_some(())
    })
    .await;
    eventually("a quiet moment between probes", PATIENCE, || async {
        let before = app.guarded.breaker().probes;
        let calls = app.processor.calls().await;
        let after = app.guarded.breaker().probes;
        (before == after && calls == u64::from(THRESHOLD) + before).then_some(())
    })
    .await;
    let snapshot = app.guarded.breaker();
    assert!(
        snapshot.rejected > 5 * snapshot.probes.max(1),
        "{snapshot:?}"
    );
    for order_id in &orders {
        assert!(app.events_of(*order_id).await.is_empty());
        // The handler ran (the intent is recorded) but the provider never
        // held anything.
        let intent = app.intent(*order_id).await.unwrap();
        assert_eq!(intent.state, IntentState::Authorizing);
        assert_eq!(app.processor.activity(*order_id).await.authorizations, 0);
    }

    // The provider recovers: after the open period a probe succeeds, the
    // breaker closes, and every pending authorization completes, once.
    app.processor.set_outage(false).await;
    for order_id in &orders {
        let events = app.wait_events_of(*order_id, 1).await;
        assert!(
            matches!(events[0], PaymentEvent::Authorized(_)),
            "{events:?}"
        );
    }
    assert_eq!(app.guarded.breaker_state(), BreakerState::Closed);
    app.settle().await;
    for order_id in &orders {
        assert_eq!(app.events_of(*order_id).await.len(), 1);
        assert_eq!(app.processor.activity(*order_id).await.authorizations, 1);
    }
    assert_eq!(app.dlq_count().await, 0);
}
