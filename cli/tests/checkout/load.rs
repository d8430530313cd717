//! Hundreds of concurrent orders over a few scarce products, and the
//! same again with every saga answer delivered twice and every consumer
//! replaying its stream from the start.

use std::time::Duration;

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use async_nats::jetstream::{AckKind, consumer::PullConsumer};
use futures::StreamExt;
use jetshop_contracts::streams;
use jetshop_platform::{consumer, envelope::new_message_id};

use crate::{
    invariants,
    system::{Options, System, token_for},
};

/// Marks the duplicator's copies.
const COPY: &str = "Test-Duplicate";

/// Orders in the load run.
const ORDERS: usize = 300;

#[tokio::test]
async fn hundreds_of_concurrent_orders_end_consistent() {
    let system = System::start(Options::default()).await;
    let products = system.products(&[120, 100, 80]).await;
    let started = std::time::Instant::now();
    let orders = system.place_many(ORDERS, &products).await;
    // Orders paid with tok_timeout end only once their saga has waited out
    // its deadlines; the others show the pipeline's own pace.
    let prompt: Vec<_> = orders
        .iter()
        .enumerate()
        .filter(|(i, _)| token_for(*i) != "tok_timeout")
        .map(|(_, id)| *id)
        .collect();
    system
        .wait_terminal(&prompt, Duration::from_secs(240))
        .await;
    let prompt_took = started.elapsed();
    system
        .wait_terminal(&orders, Duration::from_secs(240))
        .await;
    let took = started.elapsed();
    let outcome = invariants::check(&system.stores(), &products, &orders).await;
    // Figures, not assertions: see loadtests/ for benchmarks.
    println!(
        "checkout: {ORDERS} orders ({} confirmed, {} cancelled) terminal in {:.1}s: {:.1} orders/s; \
         the {} not paid with tok_timeout in {:.1}s: {:.1} orders/s (db: {})",
        outcome.confirmed,
        outcome.cancelled,
        took.as_secs_f64(),
        ORDERS as f64 / took.as_secs_f64(),
        prompt.len(),
        prompt_took.as_secs_f64(),
        prompt.len() as f64 / prompt_took.as_secs_f64(),
        if system.orders_db.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        },
    );
    assert!(
        outcome.confirmed > 0 && outcome.cancelled > 0,
        "{outcome:?}"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn duplicated_and_redelivered_answers_change_nothing() {
    let mut system = System::start(Options::default()).await;
    let products = system.products(&[15, 15]).await;

    // Every catalog and payments event is published a second time under a
    // new message id (past JetStream's dedupe), as a misbehaving producer
    // or a replay would.
    let client = system.js.client();
    let mut sub = client.subscribe("*.events.>").await.unwrap();
    let js = system.js.clone();
    let copied = Arc::new(AtomicUsize::new(0));
    let count = copied.clone();
    let duplicator = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            let subject = m.subject.as_str();
            if !(subject.starts_with("catalog.events.") || subject.starts_with("payments.events."))
            {
                continue;
            }
            let mut headers = m.headers.clone().unwrap_or_default();
            // Copies pass through this subscription too: copy each original once.
            if headers.get(COPY).is_some() {
                continue;
            }
            headers.insert(COPY, "1");
            headers.insert(
                jetshop_contracts::headers::MSG_ID,
                new_message_id().to_string().as_str(),
            );
            if js
                .publish_with_headers(m.subject.clone(), headers, m.payload.clone())
                .await
                .is_ok()
            {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    });

    // And some deliveries are taken by another puller of the saga's own
    // durable consumers and nak'd, so the service gets them redelivered.
    // The saga's consumers are per key: the puller stands by in each
    // partition's pinned group, and the pins are released now and then so
    // the server hands partitions back and forth between it and the service.
    let nakked = Arc::new(AtomicUsize::new(0));
    let mut nakkers = Vec::new();
    for (stream, durable) in [
        (streams::PAYMENTS_EVENTS, "orders-saga-payments"),
        (streams::CATALOG_EVENTS, "orders-saga-stock"),
    ] {
        let stream = system.js.get_stream(stream).await.unwrap();
        for partition in partitions(durable) {
            let consumer: PullConsumer = stream.get_consumer(&partition).await.unwrap();
            nakkers.push(tokio::spawn(nak_some(
                stream.clone(),
                consumer,
                nakked.clone(),
            )));
        }
        nakkers.push(tokio::spawn(move_pins(stream, durable)));
    }

    let orders = system.place_many(60, &products).await;
    // Placements twice too, under new message ids.
    for &id in &orders[..20] {
        system.place_again(id, products[0].0).await;
    }
    system
        .wait_terminal(&orders, Duration::from_secs(180))
        .await;
    duplicator.abort();
    for n in nakkers {
        n.abort();
    }
    let nakked = nakked.load(Ordering::Relaxed);
    assert!(nakked > 0, "no delivery was nak'd");
    let copied = copied.load(Ordering::Relaxed);
    assert!(
        copied >= orders.len(),
        "only {copied} events were duplicated"
    );
    invariants::check(&system.stores(), &products, &orders).await;

    // Redelivery of everything: the saga's and notifications' durable
    // consumers are dropped and recreated from the start of their streams,
    // so every message they already handled comes again.
    system.stop_service("orders").await;
    system.stop_service("notifications").await;
    for (stream, durable) in [
        (streams::CATALOG_EVENTS, "orders-saga-stock"),
        (streams::PAYMENTS_EVENTS, "orders-saga-payments"),
        (streams::ORDERS_EVENTS, "notifications-orders"),
    ] {
        let s = system.js.get_stream(stream).await.unwrap();
        for durable in durables_of(durable) {
            s.delete_consumer(&durable).await.unwrap();
        }
    }
    system.start_orders().await;
    system.start_notifications().await;
    // Let them work through their streams, then check nothing moved.
    for (stream, durable) in [
        (streams::CATALOG_EVENTS, "orders-saga-stock"),
        (streams::PAYMENTS_EVENTS, "orders-saga-payments"),
        (streams::ORDERS_EVENTS, "notifications-orders"),
    ] {
        for durable in durables_of(durable) {
            system.wait_consumed(stream, &durable).await;
        }
    }
    invariants::check(&system.stores(), &products, &orders).await;
    system.shutdown().await;
}

/// The partitions' durables of a per-key consumer.
fn partitions(durable: &str) -> Vec<String> {
    (0..streams::KEY_PARTITIONS)
        .map(|p| format!("{durable}-p{p}"))
        .collect()
}

/// The server-side durables of a service's consumer: per key for the
/// saga's, one for the others.
fn durables_of(durable: &str) -> Vec<String> {
    if durable.starts_with("orders-saga-") {
        partitions(durable)
    } else {
        vec![durable.to_owned()]
    }
}

/// Stand by in a partition's pinned group; when the server pins this
/// puller, nak the one message it hands over and give the pin back at once,
/// so the server redelivers that message, most likely to the service. One
/// message per pin keeps every message far from its last delivery.
async fn nak_some(
    stream: async_nats::jetstream::stream::Stream,
    consumer: PullConsumer,
    nakked: Arc<AtomicUsize>,
) {
    let name = consumer.cached_info().name.clone();
    loop {
        let pull = consumer
            .stream()
            .group(consumer::PINNED_GROUP)
            .max_messages_per_batch(1)
            .expires(Duration::from_millis(500))
            .messages()
            .await;
        if let Ok(mut messages) = pull
            && let Some(Ok(m)) = messages.next().await
        {
            drop(messages);
            if m.ack_with(AckKind::Nak(None)).await.is_ok() {
                nakked.fetch_add(1, Ordering::Relaxed);
            }
            let _ = stream.unpin_consumer(&name, consumer::PINNED_GROUP).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Release the pins of a per-key consumer's partitions now and then, so
/// the server pins one of the waiting pullers again (the service's, or a
/// nakker's).
async fn move_pins(stream: async_nats::jetstream::stream::Stream, durable: &'static str) {
    loop {
        tokio::time::sleep(Duration::from_millis(700)).await;
        for partition in partitions(durable) {
            let _ = stream
                .unpin_consumer(&partition, consumer::PINNED_GROUP)
                .await;
        }
    }
}
