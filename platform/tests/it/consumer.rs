//! The consumer runner: retries with backoff, dead letters, in-progress
//! acks, graceful shutdown, and the inbox making redeliveries harmless.

use std::{
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use async_nats::{HeaderMap, jetstream::message::StreamMessage};
use jetshop_contracts::{Encoding, Event, headers, streams};
use jetshop_platform::{
    config::ConsumerSettings,
    consumer::{self, ConsumerSpec, Delivery, HandlerError},
    envelope::{self, MessageMeta},
    inbox,
};
use jetshop_testkit::eventually;
use sea_orm::{ConnectionTrait, TransactionTrait, sea_query::Query};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::common::{self, Nats, TEST_EVENTS, Thing};

fn settings(max_deliver: i64, backoff_ms: &[u64], ack_wait: Duration) -> ConsumerSettings {
    ConsumerSettings {
        max_deliver,
        backoff: backoff_ms
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .collect(),
        ack_wait,
        concurrency: 4,
        ..Default::default()
    }
}

fn spec(durable: &str) -> ConsumerSpec {
    ConsumerSpec {
        stream: TEST_EVENTS.into(),
        durable: durable.into(),
        description: "integration test".into(),
        filter_subjects: vec![],
    }
}

/// Run the consumer in the background; cancel the token to stop it.
fn start<H, Fut>(
    nats: &Nats,
    durable: &str,
    settings: ConsumerSettings,
    handler: H,
) -> (
    CancellationToken,
    JoinHandle<Result<(), jetshop_platform::Error>>,
)
where
    H: Fn(Delivery) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(consumer::run(
        nats.js.clone(),
        spec(durable),
        settings,
        handler,
        shutdown.clone(),
    ));
    (shutdown, task)
}

async fn publish_thing(nats: &Nats, n: u32) -> (String, u64) {
    let id = envelope::new_message_id().to_string();
    let seq = envelope::publish(
        &nats.js,
        Thing::SUBJECT,
        &id,
        &Thing {
            n,
            note: format!("thing {n}"),
        },
        &MessageMeta::correlated("corr-1"),
    )
    .await
    .unwrap();
    (id, seq)
}

/// Every delivery the handler saw: when, and the delivery count.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<(Instant, i64, u64)>>>);

impl Log {
    fn record(&self, d: &Delivery) {
        self.0
            .lock()
            .unwrap()
            .push((Instant::now(), d.delivered, d.stream_sequence));
    }

    fn entries(&self) -> Vec<(Instant, i64, u64)> {
        self.0.lock().unwrap().clone()
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    async fn wait_for(&self, n: usize) -> Vec<(Instant, i64, u64)> {
        eventually(&format!("{n} deliveries"), Duration::from_secs(10), || {
            let entries = self.entries();
            async move { (entries.len() >= n).then_some(entries) }
        })
        .await
    }
}

/// The first dead letter of `durable`, once there is one.
async fn dead_letter(nats: &Nats, durable: &str) -> StreamMessage {
    let dlq = nats.js.get_stream(streams::DLQ).await.unwrap();
    let subject = jetshop_contracts::subjects::dlq::for_consumer(durable);
    eventually("a dead letter", Duration::from_secs(10), || {
        let dlq = dlq.clone();
        let subject = subject.clone();
        async move { dlq.direct_get_first_for_subject(subject).await.ok() }
    })
    .await
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .unwrap_or_else(|| panic!("header {name} missing in {h:?}"))
        .as_str()
}

/// Wait until the consumer has nothing pending and nothing unacknowledged,
/// with everything up to `seq` acknowledged.
async fn wait_all_acked(nats: &Nats, durable: &str, seq: u64) {
    let stream = nats.js.get_stream(TEST_EVENTS).await.unwrap();
    eventually("everything acknowledged", Duration::from_secs(10), || {
        let stream = stream.clone();
        async move {
            let info = stream.consumer_info(durable).await.ok()?;
            (info.num_ack_pending == 0
                && info.num_pending == 0
                && info.ack_floor.stream_sequence >= seq)
                .then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn transient_failures_are_retried_after_the_configured_backoff() {
    let nats = Nats::start().await;
    let log = Log::default();
    let handler = {
        let log = log.clone();
        move |d: Delivery| {
            let log = log.clone();
            async move {
                log.record(&d);
                let thing: Thing = d.decode()?;
                assert_eq!(thing.n, 7);
                if d.delivered < 3 {
                    Err(HandlerError::transient("database busy"))
                } else {
                    Ok(())
                }
            }
        }
    };
    let (shutdown, task) = start(
        &nats,
        "test-retry",
        settings(5, &[300, 600], Duration::from_secs(2)),
        handler,
    );
    let (_, seq) = publish_thing(&nats, 7).await;

    let entries = log.wait_for(3).await;
    let counts: Vec<i64> = entries.iter().map(|e| e.1).collect();
    assert_eq!(counts, [1, 2, 3]);
    let gap1 = entries[1].0 - entries[0].0;
    let gap2 = entries[2].0 - entries[1].0;
    // The configured delay plus up to 20% jitter, plus slack for a busy machine.
    assert!(
        gap1 >= Duration::from_millis(300) && gap1 < Duration::from_millis(300 + 60 + 700),
        "first retry after {gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_millis(600) && gap2 < Duration::from_millis(600 + 120 + 700),
        "second retry after {gap2:?}"
    );

    wait_all_acked(&nats, "test-retry", seq).await;
    assert_eq!(log.len(), 3, "acknowledged message delivered again");
    assert_eq!(nats.stream_messages(streams::DLQ).await, 0);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn permanent_failure_is_dead_lettered_at_once_with_its_context() {
    let nats = Nats::start().await;
    let log = Log::default();
    let handler = {
        let log = log.clone();
        move |d: Delivery| {
            let log = log.clone();
            async move {
                log.record(&d);
                Err(HandlerError::permanent("unknown product\nsku 42"))
            }
        }
    };
    let (shutdown, task) = start(
        &nats,
        "test-poison",
        settings(5, &[200, 400], Duration::from_secs(2)),
        handler,
    );

    let payload = Encoding::MsgPack
        .encode(&Thing {
            n: 1,
            note: "poison".into(),
        })
        .unwrap();
    let mut h = HeaderMap::new();
    h.insert(headers::MSG_ID, "original-id-1");
    h.insert(headers::CONTENT_TYPE, Encoding::MsgPack.content_type());
    h.insert("X-Custom", "keep me");
    let seq = nats
        .js
        .publish_with_headers(Thing::SUBJECT, h, payload.clone().into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;

    let letter = dead_letter(&nats, "test-poison").await;
    let h = &letter.headers;
    assert_eq!(letter.subject.as_str(), "dlq.test-poison");
    assert_eq!(letter.payload.as_ref(), payload.as_slice());
    assert_eq!(header(h, headers::dlq::REASON), "unknown product sku 42");
    assert_eq!(header(h, headers::dlq::CONSUMER), "test-poison");
    assert_eq!(header(h, headers::dlq::STREAM), TEST_EVENTS);
    assert_eq!(header(h, headers::dlq::STREAM_SEQUENCE), seq.to_string());
    assert_eq!(header(h, headers::dlq::DELIVERIES), "1");
    assert_eq!(header(h, headers::dlq::SUBJECT), Thing::SUBJECT);
    assert_eq!(header(h, "X-Custom"), "keep me");
    assert_eq!(
        header(h, headers::CONTENT_TYPE),
        Encoding::MsgPack.content_type()
    );
    assert_eq!(header(h, "Jetshop-Dlq-Original-Msg-Id"), "original-id-1");

    // Terminated, not retried.
    wait_all_acked(&nats, "test-poison", seq).await;
    let entries = log.entries();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].1, 1);
    assert_eq!(nats.stream_messages(streams::DLQ).await, 1);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn exhausted_retries_are_dead_lettered_with_the_delivery_count() {
    let nats = Nats::start().await;
    let log = Log::default();
    let handler = {
        let log = log.clone();
        move |d: Delivery| {
            let log = log.clone();
            async move {
                log.record(&d);
                Err(HandlerError::transient("still down"))
            }
        }
    };
    let (shutdown, task) = start(
        &nats,
        "test-exhaust",
        settings(3, &[100, 200], Duration::from_secs(2)),
        handler,
    );
    let (id, seq) = publish_thing(&nats, 3).await;

    let letter = dead_letter(&nats, "test-exhaust").await;
    let h = &letter.headers;
    assert_eq!(header(h, headers::dlq::DELIVERIES), "3");
    let reason = header(h, headers::dlq::REASON);
    assert!(
        reason.contains("gave up after 3 deliveries") && reason.contains("still down"),
        "{reason}"
    );
    assert_eq!(header(h, headers::dlq::STREAM_SEQUENCE), seq.to_string());
    assert_eq!(header(h, "Jetshop-Dlq-Original-Msg-Id"), id);
    assert_eq!(header(h, headers::CORRELATION_ID), "corr-1");
    let thing: Thing = Encoding::MsgPack.decode(&letter.payload).unwrap();
    assert_eq!(thing.n, 3);

    wait_all_acked(&nats, "test-exhaust", seq).await;
    let counts: Vec<i64> = log.entries().iter().map(|e| e.1).collect();
    assert_eq!(counts, [1, 2, 3]);
    assert_eq!(nats.stream_messages(streams::DLQ).await, 1);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn slow_handler_keeps_its_message_with_in_progress_acks() {
    let nats = Nats::start().await;
    let log = Log::default();
    let done = Arc::new(AtomicUsize::new(0));
    let handler = {
        let log = log.clone();
        let done = done.clone();
        move |d: Delivery| {
            let log = log.clone();
            let done = done.clone();
            async move {
                log.record(&d);
                tokio::time::sleep(Duration::from_secs(3)).await;
                done.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }
    };
    // Backoff steps shorter than ack_wait, as in the defaults (1s vs 30s).
    let (shutdown, task) = start(
        &nats,
        "test-slow",
        settings(5, &[200, 400], Duration::from_secs(1)),
        handler,
    );
    let (_, seq) = publish_thing(&nats, 1).await;

    eventually(
        "the slow handler to finish",
        Duration::from_secs(10),
        || {
            let done = done.clone();
            async move { (done.load(Ordering::SeqCst) >= 1).then_some(()) }
        },
    )
    .await;
    wait_all_acked(&nats, "test-slow", seq).await;
    let entries = log.entries();
    assert_eq!(
        entries.iter().map(|e| e.1).collect::<Vec<_>>(),
        [1],
        "redelivered while the handler was still running"
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(log.len(), 1);
}

#[tokio::test]
async fn shutdown_finishes_the_running_handler_and_acks_it() {
    let nats = Nats::start().await;
    let started = Arc::new(tokio::sync::Notify::new());
    let finished = Arc::new(AtomicBool::new(false));
    let handler = {
        let started = started.clone();
        let finished = finished.clone();
        move |_d: Delivery| {
            let started = started.clone();
            let finished = finished.clone();
            async move {
                started.notify_one();
                tokio::time::sleep(Duration::from_millis(1500)).await;
                finished.store(true, Ordering::SeqCst);
                Ok(())
            }
        }
    };
    let cfg = settings(5, &[200, 400], Duration::from_secs(1));
    let (shutdown, task) = start(&nats, "test-shutdown", cfg.clone(), handler);
    let (_, seq) = publish_thing(&nats, 1).await;

    tokio::time::timeout(Duration::from_secs(10), started.notified())
        .await
        .expect("handler started");
    let cancelled_at = Instant::now();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("run() returns after shutdown")
        .unwrap()
        .unwrap();
    assert!(
        finished.load(Ordering::SeqCst),
        "run() returned before the handler finished"
    );
    assert!(cancelled_at.elapsed() >= Duration::from_millis(1000));

    // Acknowledged before run() returned: nothing pending on the server.
    let stream = nats.js.get_stream(TEST_EVENTS).await.unwrap();
    let info = stream.consumer_info("test-shutdown").await.unwrap();
    assert_eq!(info.num_ack_pending, 0, "{info:?}");
    assert_eq!(info.ack_floor.stream_sequence, seq);

    // A restarted consumer does not see it again; it does see new messages.
    let log = Log::default();
    let handler = {
        let log = log.clone();
        move |d: Delivery| {
            let log = log.clone();
            async move {
                log.record(&d);
                Ok(())
            }
        }
    };
    let (shutdown, task) = start(&nats, "test-shutdown", cfg, handler);
    let (_, seq2) = publish_thing(&nats, 2).await;
    log.wait_for(1).await;
    // Longer than ack_wait, so an unacknowledged message would be back.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let seen: Vec<u64> = log.entries().iter().map(|e| e.2).collect();
    assert_eq!(seen, [seq2]);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn inbox_makes_a_redelivery_harmless() {
    let nats = Nats::start().await;
    let (_test_db, db) = common::database().await;
    let log = Log::default();
    let skipped = Arc::new(AtomicUsize::new(0));
    let handler = {
        let log = log.clone();
        let db = db.clone();
        let skipped = skipped.clone();
        move |d: Delivery| {
            let log = log.clone();
            let db = db.clone();
            let skipped = skipped.clone();
            async move {
                log.record(&d);
                let thing: Thing = d.decode()?;
                let txn = db.begin().await.map_err(HandlerError::transient)?;
                if inbox::claim(&txn, &d.consumer, &d.dedupe_id())
                    .await
                    .map_err(HandlerError::transient)?
                {
                    let insert = Query::insert()
                        .into_table("effects")
                        .columns(["id", "note"])
                        .values_panic([d.dedupe_id().into(), thing.note.into()])
                        .to_owned();
                    txn.execute(&insert)
                        .await
                        .map_err(HandlerError::transient)?;
                    txn.commit().await.map_err(HandlerError::transient)?;
                } else {
                    skipped.fetch_add(1, Ordering::SeqCst);
                    txn.rollback().await.map_err(HandlerError::transient)?;
                }
                if d.delivered == 1 {
                    // The effect is committed but the ack is "lost".
                    return Err(HandlerError::transient("ack lost"));
                }
                Ok(())
            }
        }
    };
    let (shutdown, task) = start(
        &nats,
        "test-inbox",
        settings(5, &[100, 200], Duration::from_secs(2)),
        handler,
    );
    let (id, seq) = publish_thing(&nats, 5).await;

    let entries = log.wait_for(2).await;
    assert_eq!(entries.iter().map(|e| e.1).collect::<Vec<_>>(), [1, 2]);
    wait_all_acked(&nats, "test-inbox", seq).await;
    assert_eq!(skipped.load(Ordering::SeqCst), 1);
    assert_eq!(
        common::count(&db, "SELECT COUNT(*) AS n FROM effects").await,
        1
    );
    assert_eq!(
        common::count(
            &db,
            &format!(
                "SELECT COUNT(*) AS n FROM inbox WHERE consumer = 'test-inbox' AND message_id = '{id}'"
            )
        )
        .await,
        1
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn handlers_run_in_parallel_up_to_the_concurrency_limit() {
    let nats = Nats::start().await;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let log = Log::default();
    let handler = {
        let (in_flight, peak, log) = (in_flight.clone(), peak.clone(), log.clone());
        move |d: Delivery| {
            let (in_flight, peak, log) = (in_flight.clone(), peak.clone(), log.clone());
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                log.record(&d);
                Ok(())
            }
        }
    };
    let cfg = ConsumerSettings {
        concurrency: 3,
        ..settings(5, &[200], Duration::from_secs(2))
    };
    for n in 0..9 {
        publish_thing(&nats, n).await;
    }
    let started = Instant::now();
    let (shutdown, task) = start(&nats, "test-parallel", cfg, handler);
    log.wait_for(9).await;
    let took = started.elapsed();
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    // Three rounds of three, not nine one after the other.
    assert!(took < Duration::from_millis(2400), "took {took:?}");
    wait_all_acked(&nats, "test-parallel", 9).await;
    let mut seqs: Vec<u64> = log.entries().iter().map(|e| e.2).collect();
    seqs.sort();
    assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn consumer_resumes_after_a_broker_restart() {
    let mut nats = Nats::start().await;
    // The production connection: reconnects forever.
    let client = jetshop_platform::nats::connect(
        &jetshop_platform::config::NatsSettings::for_url(nats.server.url()),
        "restart-test",
    )
    .await
    .unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let log = Log::default();
    let handler = {
        let log = log.clone();
        move |d: Delivery| {
            let log = log.clone();
            async move {
                log.record(&d);
                Ok(())
            }
        }
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(consumer::run(
        js.clone(),
        spec("test-restart"),
        settings(5, &[200], Duration::from_secs(2)),
        handler,
        shutdown.clone(),
    ));
    publish_thing(&nats, 1).await;
    log.wait_for(1).await;

    nats.server.restart();
    eventually("the client reconnects", Duration::from_secs(10), || {
        let state = client.connection_state();
        async move { (state == async_nats::connection::State::Connected).then_some(()) }
    })
    .await;
    let js2 = async_nats::jetstream::new(nats.server.client().await);
    let seq = envelope::publish(
        &js2,
        Thing::SUBJECT,
        &envelope::new_message_id().to_string(),
        &Thing {
            n: 2,
            note: "after restart".into(),
        },
        &MessageMeta::default(),
    )
    .await
    .unwrap();
    // (The first message may come again: an ack in flight when the broker
    // was killed is lost, and the inbox is there for that.)
    eventually(
        "delivery after the restart",
        Duration::from_secs(20),
        || {
            let entries = log.entries();
            async move { entries.iter().any(|e| e.2 == seq).then_some(()) }
        },
    )
    .await;
    assert!(!task.is_finished());
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_panicking_handler_is_retried_then_dead_lettered() {
    let nats = Nats::start().await;
    let log = Log::default();
    let handler = {
        let log = log.clone();
        move |d: Delivery| {
            let log = log.clone();
            async move {
                log.record(&d);
                panic!("bug in handler");
            }
        }
    };
    let (shutdown, task) = start(
        &nats,
        "test-panic",
        settings(2, &[100], Duration::from_secs(2)),
        handler,
    );
    let (_, seq) = publish_thing(&nats, 9).await;

    let letter = dead_letter(&nats, "test-panic").await;
    let reason = header(&letter.headers, headers::dlq::REASON);
    assert!(
        reason.contains("handler panicked: bug in handler"),
        "{reason}"
    );
    assert_eq!(header(&letter.headers, headers::dlq::DELIVERIES), "2");
    wait_all_acked(&nats, "test-panic", seq).await;
    assert_eq!(log.len(), 2);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn deliveries_redeliveries_and_dead_letters_are_counted_per_consumer() {
    jetshop_platform::metrics::install();
    let nats = Nats::start().await;
    let handler = |d: Delivery| async move {
        let thing: Thing = d.decode()?;
        match (thing.n, d.delivered) {
            (1, 1) => Err(HandlerError::transient("first try fails")),
            (2, _) => Err(HandlerError::permanent("never")),
            _ => Ok(()),
        }
    };
    let (shutdown, task) = start(
        &nats,
        "test-metrics",
        settings(3, &[50], Duration::from_secs(2)),
        handler,
    );
    publish_thing(&nats, 1).await;
    let (_, last) = publish_thing(&nats, 2).await;
    dead_letter(&nats, "test-metrics").await;
    wait_all_acked(&nats, "test-metrics", last).await;

    let text = jetshop_platform::metrics::render();
    for expected in [
        r#"jetshop_consumer_deliveries_total{consumer="test-metrics"} 3"#,
        r#"jetshop_consumer_redeliveries_total{consumer="test-metrics"} 1"#,
        r#"jetshop_consumer_dead_letters_total{consumer="test-metrics"} 1"#,
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(
        text.contains("jetshop_consumer_handler_duration_seconds_bucket{consumer=\"test-metrics\"")
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// A database a handler can lose and get back: on SQLite its pool is
/// swapped for a closed one; on PostgreSQL the database stops accepting
/// connections and every session on it is killed (`pg_terminate_backend`),
/// as in a server restart.
struct Outage {
    /// The pool handlers use (read on every delivery).
    slot: Arc<std::sync::RwLock<sea_orm::DatabaseConnection>>,
    live: sea_orm::DatabaseConnection,
    postgres: Option<(sea_orm::DatabaseConnection, String)>,
}

impl Outage {
    async fn new(test: &jetshop_testkit::TestDb) -> Self {
        let pool = jetshop_platform::config::DbSettings {
            max_connections: Some(2),
            acquire_timeout: Duration::from_millis(300),
        };
        let live = jetshop_platform::db::connect_with(&test.url, &pool)
            .await
            .unwrap();
        let postgres = if test.is_postgres() {
            let server = std::env::var("TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
            let admin = sea_orm::Database::connect(format!("{server}/postgres"))
                .await
                .unwrap();
            let name = test.url.rsplit('/').next().unwrap().to_owned();
            Some((admin, name))
        } else {
            None
        };
        Self {
            slot: Arc::new(std::sync::RwLock::new(live.clone())),
            live,
            postgres,
        }
    }

    fn db(&self) -> Arc<std::sync::RwLock<sea_orm::DatabaseConnection>> {
        self.slot.clone()
    }

    async fn begin(&self) {
        match &self.postgres {
            Some((admin, name)) => {
                admin
                    .execute_unprepared(&format!(
                        "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false"
                    ))
                    .await
                    .unwrap();
                admin
                    .execute_unprepared(&format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                    ))
                    .await
                    .unwrap();
            }
            None => {
                let closed = jetshop_platform::db::connect("sqlite::memory:")
                    .await
                    .unwrap();
                closed.clone().close().await.unwrap();
                *self.slot.write().unwrap() = closed;
            }
        }
    }

    async fn end(&self) {
        match &self.postgres {
            Some((admin, name)) => {
                admin
                    .execute_unprepared(&format!(
                        "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true"
                    ))
                    .await
                    .unwrap();
            }
            None => *self.slot.write().unwrap() = self.live.clone(),
        }
    }
}

/// Apply a delivery's effect once: inbox claim and effect in one transaction.
async fn apply_effect(
    db: &sea_orm::DatabaseConnection,
    d: &Delivery,
) -> Result<(), sea_orm::DbErr> {
    let txn = db.begin().await?;
    if inbox::claim(&txn, &d.consumer, &d.dedupe_id()).await? {
        let insert = Query::insert()
            .into_table(sea_orm::sea_query::Alias::new("effects"))
            .columns([
                sea_orm::sea_query::Alias::new("id"),
                sea_orm::sea_query::Alias::new("note"),
            ])
            .values_panic([d.dedupe_id().into(), d.consumer.clone().into()])
            .to_owned();
        txn.execute(&insert).await?;
    }
    txn.commit().await
}

#[tokio::test]
async fn a_database_outage_is_retried_until_it_heals_never_dead_lettered() {
    let nats = Nats::start().await;
    let (test_db, db) = common::database().await;
    let outage = Outage::new(&test_db).await;

    // Two consumers of the same message over the same database: one maps
    // database errors through the platform's classifier, the other calls
    // every one of them merely transient, as services used to.
    let classified = Log::default();
    let naive = Log::default();
    let handler = |log: Log, classify: bool| {
        let slot = outage.db();
        move |d: Delivery| {
            let log = log.clone();
            let db = slot.read().unwrap().clone();
            async move {
                log.record(&d);
                apply_effect(&db, &d).await.map_err(|e| {
                    if classify {
                        HandlerError::from(e)
                    } else {
                        HandlerError::transient(e)
                    }
                })
            }
        }
    };
    let policy = settings(2, &[100, 250], Duration::from_secs(2));
    let (stop_a, task_a) = start(
        &nats,
        "test-db-classified",
        policy.clone(),
        handler(classified.clone(), true),
    );
    let (stop_b, task_b) = start(
        &nats,
        "test-db-naive",
        policy,
        handler(naive.clone(), false),
    );

    outage.begin().await;
    let (id, seq) = publish_thing(&nats, 7).await;
    // Both use up their two deliveries while the database is down.
    let letter = dead_letter(&nats, "test-db-naive").await;
    assert_eq!(header(&letter.headers, headers::dlq::DELIVERIES), "2");
    classified.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    outage.end().await;

    // The classified consumer held its message and applied it once the
    // database was back: no dead letter, the effect recorded once.
    wait_all_acked(&nats, "test-db-classified", seq).await;
    let deliveries: Vec<i64> = classified.entries().iter().map(|e| e.1).collect();
    assert!(
        deliveries.len() >= 3 && deliveries.iter().all(|d| *d <= 2),
        "retried in place at the last delivery: {deliveries:?}"
    );
    assert_eq!(
        common::count(
            &db,
            &format!(
                "SELECT COUNT(*) AS n FROM effects WHERE id = '{id}' AND note = 'test-db-classified'"
            )
        )
        .await,
        1
    );
    assert_eq!(
        nats.stream_messages(streams::DLQ).await,
        1,
        "only the naive consumer dead-lettered"
    );
    stop_a.cancel();
    stop_b.cancel();
    task_a.await.unwrap().unwrap();
    task_b.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_message_held_for_an_unavailable_database_is_dead_lettered_on_shutdown() {
    let nats = Nats::start().await;
    let log = Log::default();
    let handler = {
        let log = log.clone();
        move |d: Delivery| {
            let log = log.clone();
            async move {
                log.record(&d);
                Err(HandlerError::from(sea_orm::DbErr::ConnectionAcquire(
                    sea_orm::ConnAcquireErr::Timeout,
                )))
            }
        }
    };
    let (shutdown, task) = start(
        &nats,
        "test-db-shutdown",
        settings(1, &[100], Duration::from_secs(2)),
        handler,
    );
    publish_thing(&nats, 8).await;
    log.wait_for(2).await;
    // Stopping must not wait for the database, nor drop the message: the
    // server would not deliver it again, so it goes to the DLQ, replayable.
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the consumer stops while its database is down")
        .unwrap()
        .unwrap();
    let letter = dead_letter(&nats, "test-db-shutdown").await;
    let reason = header(&letter.headers, headers::dlq::REASON);
    assert!(
        reason.contains("shutting down while unavailable"),
        "{reason}"
    );
}

/// A pull that finds no consumer to answer it (its leader is being
/// elected, or it is being re-created) gets "no responders"; the library's
/// pull stream then counts that request as pending and asks again only
/// when its expiry runs out (30 s + 5 s). Seen in the fault suite: a
/// replica whose first pull met an election sat idle for half a minute.
/// The runner starts a fresh pull after a short pause instead.
#[tokio::test]
async fn a_pull_that_found_no_consumer_is_made_again_at_once() {
    let nats = Nats::start().await;
    let seen = Arc::new(Mutex::new(Vec::<u32>::new()));
    let durable = "vanishing";
    let (shutdown, task) = start(
        &nats,
        durable,
        settings(5, &[100], Duration::from_secs(30)),
        {
            let seen = seen.clone();
            move |d: Delivery| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(d.decode::<Thing>()?.n);
                    Ok(())
                }
            }
        },
    );
    publish_thing(&nats, 1).await;
    eventually("the first message", Duration::from_secs(10), || async {
        (seen.lock().unwrap().len() == 1).then_some(())
    })
    .await;

    // The consumer is gone for a moment: pulls meanwhile find no responder.
    let stream = nats.js.get_stream(TEST_EVENTS).await.unwrap();
    let config = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(durable)
        .await
        .unwrap()
        .cached_info()
        .config
        .clone();
    stream.delete_consumer(durable).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stream.create_consumer(config).await.unwrap();
    let back = Instant::now();
    publish_thing(&nats, 2).await;
    eventually(
        "the message after the consumer came back",
        Duration::from_secs(60),
        // The new consumer starts from the stream's start: 1 comes again.
        || async { seen.lock().unwrap().contains(&2).then_some(()) },
    )
    .await;
    let took = back.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "pulled again after {took:?}"
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}
