//! Never twice: duplicate commands, redeliveries, restarts and a crash
//! between the provider's answer and our commit authorize, capture and
//! refund once; a void that comes first closes the order for good.

use jetshop_contracts::{
    headers,
    payments::{CapturePayment, VoidPayment},
};
use jetshop_payments::{
    audit,
    domain::{self, Call, IntentState},
    ledger::Account,
    provider::{AuthorizeRequest, PaymentProvider},
};
use jetshop_testkit::header;
use uuid::Uuid;

use crate::helpers::{PaymentEvent, TestPayments, authorize_cmd, eur, kinds};

#[tokio::test]
async fn the_same_command_under_different_ids_authorizes_and_captures_once() {
    let app = TestPayments::spawn().await;
    let order_id = Uuid::now_v7();
    let cmd = authorize_cmd(order_id, 4200, "tok_visa");
    // Concurrently: both deliveries may reach the provider, with one key.
    tokio::join!(app.send(&cmd), app.send(&cmd), app.send(&cmd));
    app.wait_state(order_id, IntentState::Authorized).await;
    app.settle().await;
    assert_eq!(kinds(&app.events_of(order_id).await), ["authorized"]);

    let capture = CapturePayment { order_id };
    tokio::join!(app.send(&capture), app.send(&capture));
    app.wait_state(order_id, IntentState::Captured).await;
    app.settle().await;
    assert_eq!(
        kinds(&app.events_of(order_id).await),
        ["authorized", "captured"]
    );

    let activity = app.processor.activity(order_id).await;
    assert_eq!((activity.authorizations, activity.captures), (1, 1));
    let intent = app.intent(order_id).await.unwrap();
    assert_eq!((intent.authorizations, intent.captures), (1, 1));
    assert_eq!(app.dlq_count().await, 0);
}

#[tokio::test]
async fn a_redelivered_command_is_skipped_without_calling_the_provider() {
    let app = TestPayments::spawn().await;
    let order_id = Uuid::now_v7();
    let cmd = authorize_cmd(order_id, 1500, "tok_visa");
    let id = app.send(&cmd).await;
    app.wait_events_of(order_id, 1).await;
    app.settle().await;
    let calls = app.processor.activity(order_id).await.calls;

    app.redeliver(&id, &cmd).await;
    let capture = CapturePayment { order_id };
    let capture_id = app.send(&capture).await;
    app.wait_events_of(order_id, 2).await;
    app.redeliver(&capture_id, &capture).await;
    app.settle().await;

    assert_eq!(
        kinds(&app.events_of(order_id).await),
        ["authorized", "captured"]
    );
    assert_eq!(
        app.processor.activity(order_id).await.calls,
        calls + 1,
        "only the capture reached the provider"
    );
}

#[tokio::test]
async fn a_crash_after_the_provider_authorized_does_not_authorize_twice() {
    let app = TestPayments::spawn().await;
    let order_id = Uuid::now_v7();
    // A previous process asked the provider, which authorized, and died
    // before committing: the provider has the hold, we have no record.
    let payment_id = domain::payment_id(order_id);
    let earlier = app
        .provider
        .authorize(&AuthorizeRequest {
            idempotency_key: domain::idempotency_key(payment_id, Call::Authorize),
            payment_id,
            order_id,
            amount_minor: 3100,
            currency: "EUR".into(),
            card_token: "tok_visa".into(),
        })
        .await
        .unwrap();

    // The command is redelivered to the restarted service.
    app.authorize(order_id, 3100, "tok_visa").await;
    let events = app.wait_events_of(order_id, 1).await;
    match &events[0] {
        PaymentEvent::Authorized(a) => {
            assert_eq!(
                a.provider_ref, earlier.provider_ref,
                "the same hold, not a new one"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(app.processor.activity(order_id).await.authorizations, 1);
}

#[tokio::test]
async fn a_restart_changes_nothing_already_done() {
    let mut app = TestPayments::spawn().await;
    let order_id = Uuid::now_v7();
    let cmd = authorize_cmd(order_id, 800, "tok_visa");
    let id = app.send(&cmd).await;
    app.wait_events_of(order_id, 1).await;
    app.settle().await;

    app.restart().await;
    app.redeliver(&id, &cmd).await;
    app.send(&cmd).await;
    app.capture(order_id).await;
    app.wait_events_of(order_id, 2).await;
    app.settle().await;
    assert_eq!(
        kinds(&app.events_of(order_id).await),
        ["authorized", "captured"]
    );
    assert_eq!(app.processor.activity(order_id).await.authorizations, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_void_before_the_authorize_leaves_a_tombstone_and_the_order_is_never_charged() {
    let app = TestPayments::spawn().await;
    let order_id = Uuid::now_v7();
    app.void(order_id).await;
    let events = app.wait_events_of(order_id, 1).await;
    match &events[0] {
        PaymentEvent::Voided(v) => {
            assert_eq!(v.amount.amount_minor, 0);
            assert_eq!(v.payment_id, domain::payment_id(order_id));
        }
        other => panic!("{other:?}"),
    }
    let tomb = app.intent(order_id).await.unwrap();
    assert_eq!(tomb.state, IntentState::Voided);

    app.authorize(order_id, 5000, "tok_visa").await;
    let events = app.wait_events_of(order_id, 2).await;
    match &events[1] {
        PaymentEvent::Declined(d) => assert_eq!(d.code, "order_closed"),
        other => panic!("{other:?}"),
    }
    // Repeats of either say nothing more.
    app.authorize(order_id, 5000, "tok_visa").await;
    app.send(&VoidPayment {
        order_id,
        reason: None,
    })
    .await;
    app.settle().await;
    assert_eq!(
        kinds(&app.events_of(order_id).await),
        ["voided", "declined"]
    );
    assert_eq!(
        app.processor.activity(order_id).await.calls,
        0,
        "the provider never heard of it"
    );
    let intent = app.intent(order_id).await.unwrap();
    assert_eq!((intent.authorizations, intent.voids), (0, 0));
}

#[tokio::test]
async fn a_refund_with_no_intent_answers_zero() {
    let app = TestPayments::spawn().await;
    let order_id = Uuid::now_v7();
    app.refund(order_id).await;
    let events = app.wait_events_of(order_id, 1).await;
    assert!(
        matches!(&events[0], PaymentEvent::Refunded(r) if r.amount.amount_minor == 0),
        "{events:?}"
    );
}

#[tokio::test]
async fn capture_then_refund_gives_the_money_back_once() {
    let app = TestPayments::spawn().await;
    let order_id = Uuid::now_v7();
    app.authorize(order_id, 12_345, "tok_visa").await;
    app.wait_events_of(order_id, 1).await;
    app.capture(order_id).await;
    let events = app.wait_events_of(order_id, 2).await;
    assert!(
        matches!(&events[1], PaymentEvent::Captured(c) if c.amount == eur(12_345)),
        "{events:?}"
    );
    let tb = audit::trial_balance(&app.books).await.unwrap();
    assert_eq!(tb.balance(Account::Revenue, "EUR"), 12_345);

    app.refund(order_id).await;
    app.refund(order_id).await;
    let events = app.wait_events_of(order_id, 3).await;
    assert!(
        matches!(&events[2], PaymentEvent::Refunded(r) if r.amount == eur(12_345)),
        "{events:?}"
    );
    app.settle().await;
    assert_eq!(
        kinds(&app.events_of(order_id).await),
        ["authorized", "captured", "refunded"]
    );

    let intent = app.intent(order_id).await.unwrap();
    assert_eq!(intent.state, IntentState::Refunded);
    assert_eq!(
        (
            intent.authorizations,
            intent.captures,
            intent.voids,
            intent.refunds
        ),
        (1, 1, 0, 1)
    );
    let tb = audit::trial_balance(&app.books).await.unwrap();
    assert!(tb.balances(), "{tb:?}");
    assert_eq!(tb.balance(Account::Revenue, "EUR"), 0);
    assert_eq!(tb.balance(Account::ProviderReceivable, "EUR"), 0);
    assert_eq!(app.processor.activity(order_id).await.refunds, 1);
}

#[tokio::test]
async fn impossible_commands_are_dead_lettered_with_the_reason() {
    let app = TestPayments::spawn().await;
    // Capture of a voided payment.
    let voided = Uuid::now_v7();
    app.authorize(voided, 900, "tok_visa").await;
    app.wait_events_of(voided, 1).await;
    app.void(voided).await;
    let events = app.wait_events_of(voided, 2).await;
    assert!(
        matches!(&events[1], PaymentEvent::Voided(v) if v.amount == eur(900)),
        "{events:?}"
    );
    app.capture(voided).await;
    // Void of a captured payment.
    let captured = Uuid::now_v7();
    app.authorize(captured, 900, "tok_visa").await;
    app.wait_events_of(captured, 1).await;
    app.capture(captured).await;
    app.wait_events_of(captured, 2).await;
    app.void(captured).await;
    // An authorize of nothing.
    app.authorize(Uuid::now_v7(), 0, "tok_visa").await;

    let dead = app.dead_letters(3).await;
    let reasons: Vec<String> = dead
        .iter()
        .map(|m| header(m, headers::dlq::REASON).unwrap())
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("cannot capture a voided payment")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("cannot void a captured payment")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("invalid amount")),
        "{reasons:?}"
    );
    app.settle().await;
    assert_eq!(app.processor.activity(voided).await.captures, 0);
    assert_eq!(app.processor.activity(captured).await.voids, 0);
    let tb = audit::trial_balance(&app.books).await.unwrap();
    assert!(tb.balances(), "{tb:?}");
    assert_eq!(tb.balance(Account::Revenue, "EUR"), 900);
}
