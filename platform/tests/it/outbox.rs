//! The transactional outbox and its relay: commits survive a broker outage,
//! the relay wakes on notify, and republishing is deduplicated.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use async_nats::jetstream;
use futures::StreamExt;
use jetshop_contracts::{Encoding, Event, headers};
use jetshop_platform::{
    config::NatsSettings,
    envelope::MessageMeta,
    nats,
    outbox::{self, Relay, entity},
};
use jetshop_testkit::eventually;
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
    sea_query::Expr,
};
use tokio_util::sync::CancellationToken;

use crate::common::{self, Nats, TEST_EVENTS, Thing};

fn thing(n: u32) -> Thing {
    Thing {
        n,
        note: format!("thing {n}"),
    }
}

async fn rows(db: &DatabaseConnection) -> Vec<entity::Model> {
    entity::Entity::find()
        .order_by_asc(entity::Column::Seq)
        .all(db)
        .await
        .unwrap()
}

/// The `Nats-Msg-Id` of every message in the stream, in stream order.
async fn stream_ids(js: &jetstream::Context, count: u64) -> Vec<String> {
    let stream = js.get_stream(TEST_EVENTS).await.unwrap();
    let mut ids = Vec::new();
    for seq in 1..=count {
        let msg = stream.direct_get(seq).await.unwrap();
        ids.push(
            msg.headers
                .get(headers::MSG_ID)
                .expect("Nats-Msg-Id")
                .as_str()
                .to_owned(),
        );
    }
    ids
}

#[tokio::test]
async fn events_committed_while_nats_is_down_are_published_once_it_is_back() {
    const N: usize = 6;
    let mut nats = Nats::start().await;
    let (_test_db, db) = common::database().await;
    // The production connection (reconnects forever), with a short
    // JetStream timeout so the relay sees failed publishes during the outage.
    let client = nats::connect(&NatsSettings::for_url(nats.server.url()), "outbox-test")
        .await
        .unwrap();
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_millis(500))
        .build(client);

    nats.server.stop();
    // The database does not care that NATS is down.
    for batch in 0..3 {
        let txn = db.begin().await.unwrap();
        for i in 0..(N / 3) {
            outbox::enqueue(
                &txn,
                &thing((batch * 10 + i) as u32),
                &MessageMeta::default(),
            )
            .await
            .unwrap();
        }
        txn.commit().await.unwrap();
    }
    assert_eq!(rows(&db).await.len(), N);

    let relay = Relay::new(db.clone(), js.clone(), "test");
    let notifier = relay.notifier();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(relay.run(shutdown.clone()));
    notifier.notify();

    // The relay tries, fails, records the failure and keeps going.
    eventually("a failed publish attempt", Duration::from_secs(10), || {
        let db = db.clone();
        async move {
            let first = rows(&db).await.into_iter().next()?;
            (first.attempts >= 1 && first.last_error.is_some()).then_some(())
        }
    })
    .await;
    assert!(!task.is_finished(), "relay stopped while NATS was down");
    assert!(rows(&db).await.iter().all(|r| r.published_at.is_none()));

    nats.server.restart();

    eventually("every row published", Duration::from_secs(20), || {
        let db = db.clone();
        async move {
            rows(&db)
                .await
                .iter()
                .all(|r| r.published_at.is_some())
                .then_some(())
        }
    })
    .await;
    // Publishes queued during the outage and the relay's retries overlap;
    // JetStream drops the repeats by Nats-Msg-Id.
    let client = nats.server.client().await;
    let plain = jetstream::new(client);
    let messages = plain
        .get_stream(TEST_EVENTS)
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap()
        .state
        .messages;
    assert_eq!(messages, N as u64);
    let expected: Vec<String> = rows(&db).await.into_iter().map(|r| r.message_id).collect();
    assert_eq!(stream_ids(&plain, N as u64).await, expected);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("relay stops on shutdown")
        .unwrap();
}

#[tokio::test]
async fn relay_publishes_right_after_notify() {
    let nats = Nats::start().await;
    let (_test_db, db) = common::database().await;
    let mut sub = nats.client.subscribe(Thing::SUBJECT).await.unwrap();
    nats.client.flush().await.unwrap();

    let relay = Relay::new(db.clone(), nats.js.clone(), "test");
    let notifier = relay.notifier();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(relay.run(shutdown.clone()));
    // Let the relay find the outbox empty and go to sleep.
    tokio::time::sleep(Duration::from_millis(150)).await;

    // A relay that only polled once a second would miss this bound half of
    // the time; five rounds in a row it would not get away with it.
    for n in 0..5u32 {
        let txn = db.begin().await.unwrap();
        let id = outbox::enqueue(&txn, &thing(n), &MessageMeta::correlated("c-1"))
            .await
            .unwrap();
        txn.commit().await.unwrap();
        let committed = Instant::now();
        notifier.notify();
        let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("published")
            .unwrap();
        let latency = committed.elapsed();
        assert!(
            latency < Duration::from_millis(500),
            "event {n} published {latency:?} after notify"
        );
        let h = msg.headers.as_ref().unwrap();
        assert_eq!(h.get(headers::MSG_ID).unwrap().as_str(), id);
        let got: Thing = Encoding::MsgPack.decode(&msg.payload).unwrap();
        assert_eq!(got, thing(n));
        // Wait for the relay to mark it, so the next round starts idle.
        eventually("row marked published", Duration::from_secs(5), || {
            let db = db.clone();
            let id = id.clone();
            async move {
                entity::Entity::find()
                    .filter(entity::Column::MessageId.eq(id))
                    .one(&db)
                    .await
                    .unwrap()?
                    .published_at
            }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(rand_ms(n))).await;
    }
    assert_eq!(nats.stream_messages(TEST_EVENTS).await, 5);

    shutdown.cancel();
    task.await.unwrap();
}

/// Spread the rounds over the poll period.
fn rand_ms(n: u32) -> u64 {
    [170, 330, 90, 260, 0][n as usize % 5]
}

#[tokio::test]
async fn republishing_rows_is_deduplicated_by_the_stream() {
    let nats = Nats::start().await;
    let (_test_db, db) = common::database().await;
    let relay = Relay::new(db.clone(), nats.js.clone(), "test");

    let txn = db.begin().await.unwrap();
    let mut ids = Vec::new();
    for n in 0..3 {
        let meta = MessageMeta {
            message_id: None,
            correlation_id: Some("corr-7".into()),
            causation_id: Some("cause-7".into()),
        };
        ids.push(outbox::enqueue(&txn, &thing(n), &meta).await.unwrap());
    }
    txn.commit().await.unwrap();
    // A rolled-back transaction leaves nothing to publish.
    let txn = db.begin().await.unwrap();
    outbox::enqueue(&txn, &thing(99), &MessageMeta::default())
        .await
        .unwrap();
    txn.rollback().await.unwrap();

    assert_eq!(relay.publish_batch().await.unwrap(), 3);
    assert_eq!(relay.publish_batch().await.unwrap(), 0);
    assert_eq!(nats.stream_messages(TEST_EVENTS).await, 3);

    // As after a crash between the PubAck and the update: publish again.
    entity::Entity::update_many()
        .col_expr(
            entity::Column::PublishedAt,
            Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
        )
        .exec(&db)
        .await
        .unwrap();
    assert_eq!(relay.publish_batch().await.unwrap(), 3);
    assert_eq!(nats.stream_messages(TEST_EVENTS).await, 3);
    assert!(rows(&db).await.iter().all(|r| r.published_at.is_some()));
    assert_eq!(stream_ids(&nats.js, 3).await, ids);

    // The stored message carries the standard headers.
    let msg = nats
        .js
        .get_stream(TEST_EVENTS)
        .await
        .unwrap()
        .direct_get(1)
        .await
        .unwrap();
    let h: BTreeMap<String, String> = msg
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v[0].as_str().to_owned()))
        .collect();
    assert_eq!(h[headers::MSG_ID], ids[0]);
    assert_eq!(h[headers::CONTENT_TYPE], Encoding::MsgPack.content_type());
    assert_eq!(h[headers::TYPE], "test.thing");
    assert_eq!(h[headers::SCHEMA], "1");
    assert_eq!(h[headers::CORRELATION_ID], "corr-7");
    assert_eq!(h[headers::CAUSATION_ID], "cause-7");
    assert_eq!(msg.subject.as_str(), Thing::SUBJECT);
    let got: Thing = Encoding::MsgPack.decode(&msg.payload).unwrap();
    assert_eq!(got, thing(0));
}

#[tokio::test]
async fn relay_flushes_committed_rows_when_shutting_down() {
    let nats = Nats::start().await;
    let (_test_db, db) = common::database().await;
    let relay = Relay::new(db.clone(), nats.js.clone(), "test");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(relay.run(shutdown.clone()));
    // Idle, waiting for a notify or the next poll.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let txn = db.begin().await.unwrap();
    for n in 0..3 {
        outbox::enqueue(&txn, &thing(n), &MessageMeta::default())
            .await
            .unwrap();
    }
    txn.commit().await.unwrap();
    // No notify: only the last pass on shutdown publishes them in time.
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("relay stops")
        .unwrap();
    assert!(rows(&db).await.iter().all(|r| r.published_at.is_some()));
    assert_eq!(nats.stream_messages(TEST_EVENTS).await, 3);
}

#[tokio::test]
async fn the_backlog_metric_follows_unpublished_rows() {
    jetshop_platform::metrics::install();
    let mut nats = Nats::start().await;
    let (_test_db, db) = common::database().await;
    let client = nats::connect(&NatsSettings::for_url(nats.server.url()), "backlog-test")
        .await
        .unwrap();
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_millis(300))
        .build(client);
    let relay = Relay::new(db.clone(), js, "backlog-test");
    let backlog = || {
        let text = jetshop_platform::metrics::render();
        text.lines()
            .find(|l| l.starts_with(r#"jetshop_outbox_backlog{service="backlog-test"}"#))
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
    };

    nats.server.stop();
    let txn = db.begin().await.unwrap();
    for n in 0..3 {
        outbox::enqueue(&txn, &thing(n), &MessageMeta::default())
            .await
            .unwrap();
    }
    txn.commit().await.unwrap();
    assert!(relay.publish_batch().await.is_err());
    assert_eq!(backlog().as_deref(), Some("3"));

    nats.server.restart();
    eventually("the backlog to drain", Duration::from_secs(15), || {
        let relay = &relay;
        async move { relay.publish_batch().await.ok().filter(|n| *n > 0) }
    })
    .await;
    assert_eq!(backlog().as_deref(), Some("0"));
}
