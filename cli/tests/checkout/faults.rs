//! Faults injected while orders are in flight: the orders process killed
//! (SIGKILL) and restarted, the NATS server stopped and started again on
//! the same store, a message that cannot be handled dead-lettered and
//! replayed with `jetshop dlq replay`, and a card processor outage that
//! opens the circuit breaker.

use std::{process::Command, time::Duration};

use jetshop_contracts::{headers, orders::OrderStatus, streams};
use jetshop_payments::BreakerState;
use jetshop_testkit::eventually;

use crate::{
    invariants,
    system::{BIN, Options, System},
};

#[tokio::test]
async fn killing_the_orders_process_mid_saga_loses_and_doubles_nothing() {
    let mut system = System::start(Options {
        orders_as_process: true,
        ..Options::default()
    })
    .await;
    let products = system.products(&[25, 25]).await;
    let orders = system.place_many(100, &products).await;
    for _ in 0..2 {
        // Let some sagas get going, then pull the plug.
        tokio::time::sleep(Duration::from_millis(700)).await;
        system.kill_orders_process();
        tokio::time::sleep(Duration::from_millis(300)).await;
        system.start_orders().await;
    }
    system
        .wait_terminal(&orders, Duration::from_secs(180))
        .await;
    invariants::check(&system.stores(), &products, &orders).await;
    system.shutdown().await;
}

#[tokio::test]
async fn a_nats_restart_mid_run_keeps_every_order() {
    let mut system = System::start(Options::default()).await;
    let products = system.products(&[25, 25]).await;
    let orders = system.place_many(100, &products).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    system.nats.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    system.nats.restart();
    system
        .wait_terminal(&orders, Duration::from_secs(240))
        .await;
    invariants::check(&system.stores(), &products, &orders).await;
    system.shutdown().await;
}

#[tokio::test]
async fn a_dead_lettered_placement_completes_after_replay() {
    let mut options = Options::default();
    options.consumer.max_deliver = 3;
    let mut system = System::start(options).await;
    let products = system.products(&[5]).await;
    // The catalog is down: placements cannot be priced, are retried, then
    // dead-lettered with the reason.
    system.stop_service("catalog").await;
    let order = system.place(vec![(products[0].0, 1)], "tok_visa", 0).await;
    let dead = jetshop_testkit::stream_messages(&system.js, streams::DLQ, 1).await;
    let reason = jetshop_testkit::header(&dead[0], headers::dlq::REASON).unwrap();
    assert!(reason.contains("catalog unavailable"), "{reason}");
    assert_eq!(
        jetshop_testkit::header(&dead[0], headers::dlq::CONSUMER).as_deref(),
        Some("orders-commands")
    );
    assert!(system.order(order).await.is_none(), "nothing recorded yet");

    // The operator sees it, fixes the cause and replays it.
    let ls = jetshop(&system, &["dlq", "ls"]);
    assert!(
        ls.contains("orders-commands") && ls.contains("catalog unavailable"),
        "{ls}"
    );
    system.start_catalog().await;
    let replay = jetshop(&system, &["dlq", "replay", "--all"]);
    assert!(replay.contains("replayed"), "{replay}");
    system
        .wait_terminal(&[order], Duration::from_secs(60))
        .await;
    assert_eq!(
        system.order(order).await.unwrap().status,
        OrderStatus::Confirmed
    );
    invariants::check(&system.stores(), &products, &[order]).await;
    system.shutdown().await;
}

#[tokio::test]
async fn an_open_breaker_fails_fast_and_orders_complete_after_recovery() {
    let mut options = Options::default();
    // Long enough for the saga to wait out the outage.
    options.orders.step_timeout = Duration::from_secs(10);
    options.orders.step_timeout_max = Duration::from_secs(10);
    options.payments.breaker_open_duration = Duration::from_millis(500);
    let system = System::start(options).await;
    let products = system.products(&[50]).await;
    system.processor.set_outage(true).await;
    let orders = system.place_many(20, &products).await;
    let guarded = system.guarded.clone().unwrap();
    eventually("the breaker to open", Duration::from_secs(30), || async {
        (guarded.breaker().times_opened > 0).then_some(())
    })
    .await;
    // Open: calls are refused without reaching the processor.
    eventually(
        "calls refused while open",
        Duration::from_secs(30),
        || async { (guarded.breaker().rejected > 0).then_some(()) },
    )
    .await;
    system.processor.set_outage(false).await;
    system
        .wait_terminal(&orders, Duration::from_secs(180))
        .await;
    assert_eq!(guarded.breaker_state(), BreakerState::Closed);
    let outcome = invariants::check(&system.stores(), &products, &orders).await;
    assert!(outcome.confirmed > 0, "{outcome:?}");
    system.shutdown().await;
}

fn jetshop(system: &System, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env("NATS_URL", system.nats.url())
        .env("NATS_CONNECT_TIMEOUT", "5s")
        .output()
        .expect("run jetshop");
    assert!(
        out.status.success(),
        "jetshop {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
