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
    outbox::{self, LeaseSettings, LeaseStatus, Relay, entity, try_lease},
};
use jetshop_testkit::eventually;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait, sea_query::Expr,
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

/// Lease terms short enough for tests: a dead holder is replaced in about
/// a second and a half.
fn quick_lease() -> LeaseSettings {
    LeaseSettings {
        ttl: Duration::from_millis(1200),
        renew_every: Duration::from_millis(200),
    }
}

/// Every publish attempt on the test subject, duplicates included: a core
/// subscriber sees each publish, whether or not the stream keeps it.
struct Attempts {
    ids: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Attempts {
    async fn watch(client: &async_nats::Client) -> Self {
        let mut sub = client.subscribe(Thing::SUBJECT).await.unwrap();
        client.flush().await.unwrap();
        let ids = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = ids.clone();
        let task = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let id = msg
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(headers::MSG_ID))
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default();
                seen.lock().unwrap().push(id);
            }
        });
        Self { ids, task }
    }

    fn ids(&self) -> Vec<String> {
        self.ids.lock().unwrap().clone()
    }
}

impl Drop for Attempts {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn enqueue_things(db: &DatabaseConnection, from: u32, count: u32) {
    let txn = db.begin().await.unwrap();
    for n in from..from + count {
        outbox::enqueue(&txn, &thing(n), &MessageMeta::default())
            .await
            .unwrap();
    }
    txn.commit().await.unwrap();
}

async fn all_published(db: &DatabaseConnection, what: &str, timeout: Duration) {
    eventually(what, timeout, || {
        let db = db.clone();
        async move {
            let rows = rows(&db).await;
            (!rows.is_empty() && rows.iter().all(|r| r.published_at.is_some())).then_some(())
        }
    })
    .await;
}

fn metric(name_and_labels: &str) -> Option<f64> {
    jetshop_platform::metrics::render()
        .lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn two_relays_over_one_outbox_publish_every_row_once_and_in_order() {
    jetshop_platform::metrics::install();
    const WRITERS: u32 = 2;
    const BATCHES: u32 = 20;
    const PER_BATCH: u32 = 15;
    let nats = Nats::start().await;
    let (test_db, db) = common::database().await;
    let attempts = Attempts::watch(&nats.client).await;

    // Two replicas of one service: the same table, the same lease name.
    // Small batches, so that many rounds of publishing overlap the writes.
    let service = "two-relays";
    let a = Relay::new(db.clone(), nats.js.clone(), service)
        .with_lease(quick_lease())
        .with_batch(7);
    let b = Relay::new(db.clone(), nats.js.clone(), service)
        .with_lease(quick_lease())
        .with_batch(7);
    assert_ne!(a.holder(), b.holder());
    let notifiers = [a.notifier(), b.notifier()];
    let status = [a.lease_status(), b.lease_status()];
    let shutdown = CancellationToken::new();
    let tasks = [
        tokio::spawn(a.run(shutdown.clone())),
        tokio::spawn(b.run(shutdown.clone())),
    ];

    // Each replica's handlers commit and wake their own relay, as in a
    // service, while both relays run.
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let db = db.clone();
        let notifier = notifiers[w as usize].clone();
        writers.push(tokio::spawn(async move {
            for batch in 0..BATCHES {
                enqueue_things(&db, (w * BATCHES + batch) * PER_BATCH, PER_BATCH).await;
                notifier.notify();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let total = u64::from(WRITERS * BATCHES * PER_BATCH);
    all_published(&db, "every row published", Duration::from_secs(30)).await;

    // Exactly one relay holds the lease.
    let held: Vec<bool> = status.iter().map(|s| s.is_held()).collect();
    assert_eq!(held.iter().filter(|h| **h).count(), 1, "{held:?}");

    // In the stream: each row once.
    assert_eq!(nats.stream_messages(TEST_EVENTS).await, total);
    let stored = rows(&db).await;
    let in_stream = stream_ids(&nats.js, total).await;
    let mut sorted = in_stream.clone();
    sorted.sort();
    let mut expected: Vec<String> = stored.iter().map(|r| r.message_id.clone()).collect();
    expected.sort();
    assert_eq!(sorted, expected, "each row once in the stream");
    // In order: each writer's rows (as one aggregate's events, whose
    // transactions follow one another) leave in the order they were
    // committed. Across writers, PostgreSQL may commit a later `seq` first
    // (sequences are handed out before commit), and then it leaves first.
    let n_of: std::collections::HashMap<&str, u32> = stored
        .iter()
        .map(|r| {
            let t: Thing = Encoding::MsgPack.decode(&r.payload).unwrap();
            (r.message_id.as_str(), t.n)
        })
        .collect();
    for w in 0..WRITERS {
        let range = (w * BATCHES * PER_BATCH)..((w + 1) * BATCHES * PER_BATCH);
        let ns: Vec<u32> = in_stream
            .iter()
            .map(|id| n_of[id.as_str()])
            .filter(|n| range.contains(n))
            .collect();
        let mut ordered = ns.clone();
        ordered.sort();
        assert_eq!(ns, ordered, "writer {w}'s rows out of order");
    }
    if !test_db.is_postgres() {
        // SQLite commits one writer at a time: commit order is seq order.
        let by_seq: Vec<String> = stored.iter().map(|r| r.message_id.clone()).collect();
        assert_eq!(in_stream, by_seq);
    }
    // On the wire: no row was even sent twice (so no `duplicate message id
    // is in process` either), and no publish failed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(attempts.ids(), in_stream, "publish attempts, in order");
    assert!(
        rows(&db)
            .await
            .iter()
            .all(|r| r.attempts == 0 && r.last_error.is_none())
    );
    assert_eq!(
        metric(&format!(
            r#"jetshop_outbox_duplicates_total{{service="{service}"}}"#
        ))
        .unwrap_or(0.0),
        0.0
    );

    shutdown.cancel();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("relay stops on shutdown")
            .unwrap();
    }
}

/// Start two relays and wait until one holds the lease; returns them as
/// (holder, standby).
async fn holder_and_standby(
    db: &DatabaseConnection,
    js: &jetstream::Context,
    service: &str,
) -> [(LeaseStatus, CancellationToken, tokio::task::JoinHandle<()>); 2] {
    let mut relays = Vec::new();
    for _ in 0..2 {
        let relay = Relay::new(db.clone(), js.clone(), service).with_lease(quick_lease());
        let status = relay.lease_status();
        let stop = CancellationToken::new();
        let task = tokio::spawn(relay.run(stop.clone()));
        relays.push((status, stop, task));
    }
    let first = eventually(
        "one relay to take the lease",
        Duration::from_secs(5),
        || {
            let held: Vec<bool> = relays.iter().map(|r| r.0.is_held()).collect();
            async move { held.iter().position(|h| *h) }
        },
    )
    .await;
    let second = relays.remove(1 - first);
    let first = relays.remove(0);
    assert!(!second.0.is_held());
    [first, second]
}

#[tokio::test]
async fn a_standby_relay_takes_over_when_the_holder_dies() {
    let nats = Nats::start().await;
    let (_test_db, db) = common::database().await;
    let attempts = Attempts::watch(&nats.client).await;
    let [holder, standby] = holder_and_standby(&db, &nats.js, "takeover-crash").await;

    enqueue_things(&db, 0, 5).await;
    all_published(&db, "the first rows", Duration::from_secs(5)).await;

    // A crash: the task is gone without releasing its lease.
    holder.2.abort();
    let _ = holder.2.await;
    let died = Instant::now();
    enqueue_things(&db, 5, 5).await;

    all_published(
        &db,
        "the rows written after the crash",
        Duration::from_secs(10),
    )
    .await;
    let took = died.elapsed();
    assert!(standby.0.is_held());
    let ttl = quick_lease().ttl;
    assert!(
        took + Duration::from_millis(100) >= ttl / 2,
        "the standby took over after {took:?}, before the holder's lease could run out"
    );
    assert!(took < ttl * 4, "takeover took {took:?}");
    let expected: Vec<String> = rows(&db).await.into_iter().map(|r| r.message_id).collect();
    assert_eq!(nats.stream_messages(TEST_EVENTS).await, 10);
    assert_eq!(stream_ids(&nats.js, 10).await, expected);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(attempts.ids(), expected);

    standby.1.cancel();
    standby.2.await.unwrap();
}

#[tokio::test]
async fn a_holder_that_stops_cleanly_hands_over_at_once() {
    let nats = Nats::start().await;
    let (_test_db, db) = common::database().await;
    let [holder, standby] = holder_and_standby(&db, &nats.js, "takeover-clean").await;

    holder.1.cancel();
    holder.2.await.unwrap();
    let stopped = Instant::now();
    eventually(
        "the standby to take the lease",
        Duration::from_secs(5),
        || {
            let held = standby.0.is_held();
            async move { held.then_some(()) }
        },
    )
    .await;
    let took = stopped.elapsed();
    assert!(
        took < quick_lease().ttl,
        "a released lease was taken after {took:?}, as if it had to expire"
    );
    enqueue_things(&db, 0, 3).await;
    all_published(&db, "rows after the hand-over", Duration::from_secs(5)).await;
    assert_eq!(nats.stream_messages(TEST_EVENTS).await, 3);

    standby.1.cancel();
    standby.2.await.unwrap();
}

#[tokio::test]
async fn a_holder_that_lost_its_lease_publishes_nothing_more() {
    let nats = Nats::start().await;
    let (_test_db, db) = common::database().await;
    let attempts = Attempts::watch(&nats.client).await;
    let relay = Relay::new(db.clone(), nats.js.clone(), "lease-lost").with_lease(quick_lease());
    let status = relay.lease_status();
    let stop = CancellationToken::new();
    let task = tokio::spawn(relay.run(stop.clone()));
    eventually("the lease", Duration::from_secs(5), || {
        let held = status.is_held();
        async move { held.then_some(()) }
    })
    .await;

    // Another replica holds it now (as after this one froze past its
    // lease and a standby took over).
    db.execute_unprepared(
        "UPDATE outbox_lease SET holder = 'another-replica', expires_at_ms = 9000000000000",
    )
    .await
    .unwrap();
    eventually("the relay to notice", Duration::from_secs(5), || {
        let held = status.is_held();
        async move { (!held).then_some(()) }
    })
    .await;
    enqueue_things(&db, 0, 4).await;
    tokio::time::sleep(quick_lease().ttl).await;
    assert!(attempts.ids().is_empty(), "published without the lease");
    assert!(rows(&db).await.iter().all(|r| r.published_at.is_none()));

    // The other replica goes away: this one takes over and catches up.
    assert!(
        try_lease(&db, "lease-lost", "another-replica", Duration::ZERO)
            .await
            .unwrap()
    );
    all_published(
        &db,
        "rows after taking the lease back",
        Duration::from_secs(5),
    )
    .await;
    assert!(status.is_held());
    assert_eq!(nats.stream_messages(TEST_EVENTS).await, 4);

    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn the_lease_is_taken_when_free_or_expired_and_kept_by_its_holder() {
    let (_test_db, db) = common::database().await;
    let ttl = Duration::from_millis(400);
    assert!(try_lease(&db, "svc", "a", ttl).await.unwrap(), "free");
    assert!(try_lease(&db, "svc", "a", ttl).await.unwrap(), "renewed");
    assert!(!try_lease(&db, "svc", "b", ttl).await.unwrap(), "held by a");
    // Another outbox's lease is another row.
    assert!(try_lease(&db, "other", "b", ttl).await.unwrap());
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert!(try_lease(&db, "svc", "b", ttl).await.unwrap(), "expired");
    assert!(!try_lease(&db, "svc", "a", ttl).await.unwrap(), "now b's");
}

#[tokio::test]
async fn lease_and_age_metrics_say_who_publishes_and_how_late() {
    jetshop_platform::metrics::install();
    let mut nats = Nats::start().await;
    let (_test_db, db) = common::database().await;
    let client = nats::connect(&NatsSettings::for_url(nats.server.url()), "age-test")
        .await
        .unwrap();
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_millis(300))
        .build(client);
    let relay = Relay::new(db.clone(), js, "age-test").with_lease(quick_lease());
    let status = relay.lease_status();
    let stop = CancellationToken::new();
    let task = tokio::spawn(relay.run(stop.clone()));
    eventually("the lease", Duration::from_secs(5), || {
        let held = status.is_held();
        async move { held.then_some(()) }
    })
    .await;
    assert_eq!(
        metric(r#"jetshop_outbox_lease_held{service="age-test"}"#),
        Some(1.0)
    );

    nats.server.stop();
    enqueue_things(&db, 0, 2).await;
    eventually("the oldest row to age", Duration::from_secs(10), || async {
        metric(r#"jetshop_outbox_oldest_unpublished_age_seconds{service="age-test"}"#)
            .filter(|age| *age >= 1.0)
    })
    .await;
    assert_eq!(
        metric(r#"jetshop_outbox_backlog{service="age-test"}"#),
        Some(2.0)
    );
    // While NATS is down the holder keeps its lease: a standby would fail alike.
    assert!(status.is_held());

    nats.server.restart();
    all_published(&db, "the backlog to drain", Duration::from_secs(20)).await;
    eventually("the age to fall to 0", Duration::from_secs(5), || async {
        metric(r#"jetshop_outbox_oldest_unpublished_age_seconds{service="age-test"}"#)
            .filter(|age| *age == 0.0)
    })
    .await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(
        metric(r#"jetshop_outbox_lease_held{service="age-test"}"#),
        Some(0.0),
        "released on shutdown"
    );
    let text = jetshop_platform::metrics::render();
    for help in [
        "# HELP jetshop_outbox_backlog ",
        "# HELP jetshop_outbox_oldest_unpublished_age_seconds ",
        "# HELP jetshop_outbox_lease_held ",
    ] {
        assert!(text.contains(help), "no {help:?} in\n{text}");
    }
}
