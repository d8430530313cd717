//! The books after a mixed run: every transaction balances, revenue is
//! exactly what was captured and not refunded, no hold is left behind, and
//! no order was authorized, captured or refunded twice.

use std::collections::HashMap;

use jetshop_payments::{audit, domain::IntentState, ledger::Account};
use uuid::Uuid;

use crate::helpers::{TestPayments, authorize_cmd};

const ORDERS: usize = 50;
const TOKENS: [&str; 6] = [
    "tok_visa",
    "tok_visa",
    "tok_processingError",
    "tok_chargeDeclined",
    "tok_visa",
    "tok_insufficientFunds",
];

/// What the test does with an authorized order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Capture,
    Void,
    Refund,
}

#[tokio::test]
async fn the_ledger_balances_after_a_mixed_run() {
    // Processing errors must not open the breaker in this run.
    let app = TestPayments::spawn_with(|s| s.breaker_failure_threshold = 10_000).await;
    let app = &app;
    let orders: Vec<(Uuid, i64, &str)> = (0..ORDERS)
        .map(|i| {
            (
                Uuid::now_v7(),
                100 + 37 * i as i64,
                TOKENS[i % TOKENS.len()],
            )
        })
        .collect();
    // Every authorize twice, under different ids, all at once.
    let sends = orders.iter().flat_map(|(order_id, amount, token)| {
        let cmd = authorize_cmd(*order_id, *amount, token);
        [cmd.clone(), cmd]
    });
    futures::future::join_all(sends.map(|cmd| async move { app.send(&cmd).await })).await;
    app.settle().await;

    let mut fates = HashMap::new();
    let mut n = 0;
    for (order_id, _, token) in &orders {
        let intent = app.intent(*order_id).await.unwrap();
        let approves = matches!(*token, "tok_visa" | "tok_processingError");
        let expected = if approves {
            IntentState::Authorized
        } else {
            IntentState::Declined
        };
        assert_eq!(intent.state, expected, "{token}");
        if approves {
            let fate = [Fate::Capture, Fate::Void, Fate::Refund][n % 3];
            n += 1;
            fates.insert(*order_id, fate);
        }
    }
    // Second step, with duplicates again.
    futures::future::join_all(fates.iter().map(|(order_id, fate)| async move {
        match fate {
            Fate::Capture | Fate::Refund => {
                app.capture(*order_id).await;
                app.capture(*order_id).await;
            }
            Fate::Void => {
                app.void(*order_id).await;
                app.void(*order_id).await;
            }
        }
    }))
    .await;
    app.settle().await;
    futures::future::join_all(fates.iter().filter(|(_, f)| **f == Fate::Refund).map(
        |(order_id, _)| async move {
            app.refund(*order_id).await;
            app.refund(*order_id).await;
        },
    ))
    .await;
    app.settle().await;

    let mut expected_revenue = 0;
    for (order_id, amount, token) in &orders {
        let intent = app.intent(*order_id).await.unwrap();
        let activity = app.processor.activity(*order_id).await;
        let events = app.events_of(*order_id).await;
        let counts = (
            intent.authorizations,
            intent.captures,
            intent.voids,
            intent.refunds,
        );
        match fates.get(order_id) {
            None => {
                assert_eq!(intent.state, IntentState::Declined, "{token}");
                assert_eq!(counts, (0, 0, 0, 0));
                assert_eq!(events.len(), 1);
            }
            Some(Fate::Capture) => {
                assert_eq!(intent.state, IntentState::Captured);
                assert_eq!(counts, (1, 1, 0, 0));
                assert_eq!(events.len(), 2);
                expected_revenue += amount;
            }
            Some(Fate::Void) => {
                assert_eq!(intent.state, IntentState::Voided);
                assert_eq!(counts, (1, 0, 1, 0));
                assert_eq!(events.len(), 2);
            }
            Some(Fate::Refund) => {
                assert_eq!(intent.state, IntentState::Refunded);
                assert_eq!(counts, (1, 1, 0, 1));
                assert_eq!(events.len(), 3);
            }
        }
        // The provider agrees: one of each at most.
        assert!(activity.authorizations <= 1, "{order_id}: {activity:?}");
        assert_eq!(activity.captures, intent.captures, "{order_id}");
        assert_eq!(activity.voids, intent.voids, "{order_id}");
        assert_eq!(activity.refunds, intent.refunds, "{order_id}");
    }

    let tb = audit::trial_balance(&app.books).await.unwrap();
    assert!(tb.balances(), "{tb:?}");
    assert_eq!(tb.total_debits, tb.total_credits);
    assert_eq!(tb.balance(Account::Revenue, "EUR"), expected_revenue);
    assert_eq!(
        tb.balance(Account::ProviderReceivable, "EUR"),
        expected_revenue
    );
    assert_eq!(tb.balance(Account::CustomerHolds, "EUR"), 0, "no hold left");
    assert_eq!(tb.balance(Account::AuthorizationsPending, "EUR"), 0);
    assert_eq!(audit::intents(&app.books).await.unwrap().len(), ORDERS);
    assert_eq!(app.dlq_count().await, 0);
}
