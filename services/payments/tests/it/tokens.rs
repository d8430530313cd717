//! Each test card token gets its answer; flaky and slow cards are retried
//! as they should be, and never charged twice.

use std::time::Duration;

use jetshop_contracts::{Message, headers, payments::PaymentAuthorized};
use jetshop_payments::{domain::IntentState, handlers::commands::CONSUMER};
use jetshop_testkit::header;
use uuid::Uuid;

use crate::helpers::{CORRELATION, PaymentEvent, TestPayments, eur, kinds};

#[tokio::test]
async fn each_card_token_gets_its_answer() {
    let app = TestPayments::spawn().await;
    let cases = [
        ("tok_visa", None),
        ("tok_chargeDeclined", Some("card_declined")),
        ("tok_insufficientFunds", Some("insufficient_funds")),
        ("tok_doesNotExist", Some("invalid_token")),
    ];
    let mut orders = Vec::new();
    for (i, (token, _)) in cases.iter().enumerate() {
        let order_id = Uuid::now_v7();
        let command_id = app.authorize(order_id, 1000 + i as i64, token).await;
        orders.push((order_id, command_id));
    }
    app.settle().await;

    for ((token, declined), (order_id, _)) in cases.iter().zip(&orders) {
        let events = app.events_of(*order_id).await;
        assert_eq!(events.len(), 1, "{token}: {events:?}");
        let intent = app.intent(*order_id).await.unwrap();
        match (declined, &events[0]) {
            (None, PaymentEvent::Authorized(e)) => {
                assert!(e.provider_ref.starts_with("auth_"), "{e:?}");
                assert_eq!(e.amount, eur(intent.amount_minor));
                assert_eq!(
                    e.payment_id,
                    jetshop_payments::domain::payment_id(*order_id)
                );
                assert_eq!(intent.state, IntentState::Authorized);
                assert_eq!(intent.authorizations, 1);
            }
            (Some(code), PaymentEvent::Declined(e)) => {
                assert_eq!(e.code, *code, "{token}");
                assert!(!e.reason.is_empty());
                assert_eq!(intent.state, IntentState::Declined);
                assert_eq!(intent.decline_code.as_deref(), Some(*code));
                assert_eq!(intent.authorizations, 0, "a decline books nothing");
            }
            (expected, got) => panic!("{token}: expected {expected:?}, got {got:?}"),
        }
        let activity = app.processor.activity(*order_id).await;
        assert_eq!(
            activity.calls, 1,
            "{token}: one call, no retry of a decline"
        );
    }
    // Declines are business outcomes: acknowledged, not dead-lettered.
    assert_eq!(app.dlq_count().await, 0);

    // The answer carries the standard headers, caused by the command.
    let stored =
        jetshop_testkit::stream_messages(&app.js, jetshop_contracts::streams::PAYMENTS_EVENTS, 4)
            .await;
    let authorized = stored
        .iter()
        .find(|m| header(m, headers::TYPE).as_deref() == Some(PaymentAuthorized::TYPE))
        .unwrap();
    assert_eq!(
        header(authorized, headers::CORRELATION_ID).as_deref(),
        Some(CORRELATION)
    );
    assert_eq!(
        header(authorized, headers::CAUSATION_ID).as_deref(),
        Some(orders[0].1.as_str())
    );
    assert_eq!(
        header(authorized, headers::CONTENT_TYPE).as_deref(),
        Some("application/msgpack")
    );
}

#[tokio::test]
async fn processing_error_succeeds_on_the_third_provider_attempt() {
    let app = TestPayments::spawn().await;
    assert_eq!(app.settings.provider_retries, 2);
    let order_id = Uuid::now_v7();
    app.authorize(order_id, 2500, "tok_processingError").await;
    let events = app.wait_events_of(order_id, 1).await;
    assert!(
        matches!(events[0], PaymentEvent::Authorized(_)),
        "{events:?}"
    );
    app.settle().await;

    let activity = app.processor.activity(order_id).await;
    assert_eq!(
        activity.calls, 3,
        "two transient failures, then the approval"
    );
    assert_eq!(activity.authorizations, 1);
    assert_eq!(app.events_of(order_id).await.len(), 1);
    assert_eq!(app.intent(order_id).await.unwrap().authorizations, 1);
}

#[tokio::test]
async fn processing_error_without_retries_is_redelivered_until_it_succeeds() {
    // No retries in the call: each failure goes back to JetStream (nak with
    // backoff) and the command is redelivered, to the same intent and key.
    let app = TestPayments::spawn_with(|s| s.provider_retries = 0).await;
    let order_id = Uuid::now_v7();
    app.authorize(order_id, 700, "tok_processingError").await;
    let events = app.wait_events_of(order_id, 1).await;
    assert!(
        matches!(events[0], PaymentEvent::Authorized(_)),
        "{events:?}"
    );
    app.settle().await;

    let activity = app.processor.activity(order_id).await;
    assert_eq!(activity.calls, 3, "one call per delivery");
    assert_eq!(activity.authorizations, 1);
    assert_eq!(kinds(&app.events_of(order_id).await), ["authorized"]);
}

#[tokio::test]
async fn a_timeout_card_is_retried_then_dead_lettered_and_can_still_be_voided() {
    let app = TestPayments::spawn_with(|s| {
        s.provider_timeout = Duration::from_millis(100);
        s.provider_retries = 1;
        s.consumer.max_deliver = 2;
        s.consumer.backoff = vec![Duration::from_millis(50)];
    })
    .await;
    let order_id = Uuid::now_v7();
    app.authorize(order_id, 1999, "tok_timeout").await;

    let dead = app.dead_letters(1).await;
    assert_eq!(dead.len(), 1);
    let reason = header(&dead[0], headers::dlq::REASON).unwrap();
    assert!(reason.contains("gave up after 2 deliveries"), "{reason}");
    assert!(reason.contains("timed out"), "{reason}");
    assert_eq!(
        header(&dead[0], headers::dlq::CONSUMER).as_deref(),
        Some(CONSUMER)
    );
    app.settle().await;

    let activity = app.processor.activity(order_id).await;
    assert_eq!(activity.calls, 4, "two deliveries of two attempts each");
    assert_eq!(activity.authorizations, 0, "nothing held");
    assert!(app.events_of(order_id).await.is_empty());
    let intent = app.intent(order_id).await.unwrap();
    assert_eq!(
        intent.state,
        IntentState::Authorizing,
        "left visible for the saga and operators"
    );
    assert_eq!(intent.authorizations, 0);

    // The saga compensates: the void closes the payment at the provider
    // even though its authorization never answered.
    app.void(order_id).await;
    let events = app.wait_events_of(order_id, 1).await;
    match &events[0] {
        PaymentEvent::Voided(v) => assert_eq!(v.amount, eur(0)),
        other => panic!("{other:?}"),
    }
    app.wait_state(order_id, IntentState::Voided).await;

    // A late re-send of the authorize is refused, never charged.
    app.authorize(order_id, 1999, "tok_timeout").await;
    let events = app.wait_events_of(order_id, 2).await;
    assert!(
        matches!(&events[1], PaymentEvent::Declined(d) if d.code == "order_closed"),
        "{events:?}"
    );
    app.settle().await;
    assert_eq!(app.processor.activity(order_id).await.authorizations, 0);
    assert_eq!(app.events_of(order_id).await.len(), 2);
}
