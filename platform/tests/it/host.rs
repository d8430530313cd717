//! The one service lifecycle: readiness only once serving, the drain order
//! (what a consumer commits while draining is still published, because
//! the relay stops after it), and a consumer that ends on its own stopping
//! the service with its error.

use std::time::Duration;

use jetshop_platform::{
    Error,
    config::DbSettings,
    envelope::MessageMeta,
    host::{Database, ServiceHost},
    outbox,
    runtime::Runtime,
};
use jetshop_testkit::{TestDb, eventually};
use tokio_util::sync::CancellationToken;

use crate::common::{Migrator, Nats, TEST_EVENTS, Thing, test_events};

async fn host(
    nats: &Nats,
    db: &TestDb,
    shutdown: CancellationToken,
) -> (ServiceHost<Error>, Runtime) {
    let rt = Runtime::new(nats.client.clone(), 1);
    rt.health.expect("things").await;
    let host = ServiceHost::<Error>::start::<Migrator>(
        "things",
        rt.clone(),
        Database {
            url: &db.url,
            settings: &DbSettings::default(),
        },
        &[test_events()],
        shutdown,
    )
    .await
    .expect("the host starts");
    (host, rt)
}

async fn ready(rt: &Runtime) -> bool {
    rt.health.check().await.iter().all(|c| c.ok)
}

#[tokio::test]
async fn what_a_consumer_commits_while_draining_is_still_published() {
    let nats = Nats::start().await;
    let db = TestDb::fresh().await;
    let shutdown = CancellationToken::new();
    let (mut host, rt) = host(&nats, &db, shutdown.clone()).await;
    assert!(!ready(&rt).await, "not ready before serve");

    let (conn, notify) = (host.db().clone(), host.outbox());
    host.consumer("things", move |stop| async move {
        stop.cancelled().await;
        // The last message in hand, finished after shutdown began.
        tokio::time::sleep(Duration::from_millis(200)).await;
        outbox::enqueue(
            &conn,
            &Thing {
                n: 1,
                note: "committed while draining".into(),
            },
            &MessageMeta::default(),
        )
        .await?;
        notify.notify();
        Ok::<_, Error>(())
    });
    let served = tokio::spawn(host.serve());
    eventually("the service to be ready", Duration::from_secs(10), || {
        let rt = rt.clone();
        async move { ready(&rt).await.then_some(()) }
    })
    .await;

    shutdown.cancel();
    served.await.unwrap().expect("a clean drain");
    assert_eq!(
        nats.stream_messages(TEST_EVENTS).await,
        1,
        "the relay published the consumer's last commit before stopping"
    );
}

#[tokio::test]
async fn a_consumer_that_ends_on_its_own_stops_the_service_with_its_error() {
    let nats = Nats::start().await;
    let db = TestDb::fresh().await;
    let shutdown = CancellationToken::new();
    let (mut host, _rt) = host(&nats, &db, shutdown.clone()).await;
    let drained = CancellationToken::new();
    host.consumer("healthy", {
        let drained = drained.clone();
        move |stop| async move {
            stop.cancelled().await;
            drained.cancel();
            Ok::<_, Error>(())
        }
    });
    host.consumer("broken", |_stop| async {
        Err::<(), _>(Error::Config("the stream is gone".into()))
    });
    let outcome = tokio::time::timeout(Duration::from_secs(10), host.serve())
        .await
        .expect("the service stops without a shutdown");
    assert!(
        matches!(&outcome, Err(Error::Config(why)) if why == "the stream is gone"),
        "{outcome:?}"
    );
    assert!(drained.is_cancelled(), "the other consumer was drained");
    assert!(
        !shutdown.is_cancelled(),
        "the caller's token is the caller's"
    );
}

#[tokio::test]
async fn replicas_starting_at_once_on_one_fresh_database_both_start() {
    let nats = Nats::start().await;
    let db = TestDb::fresh().await;
    let start = || async {
        ServiceHost::<Error>::start::<Migrator>(
            "things",
            Runtime::new(nats.client.clone(), 1),
            Database {
                url: &db.url,
                settings: &DbSettings::default(),
            },
            &[test_events()],
            CancellationToken::new(),
        )
        .await
    };
    let (a, b) = tokio::join!(start(), start());
    a.expect("the first replica starts");
    b.expect("the second replica starts");
}

#[tokio::test]
async fn a_panicking_consumer_is_named_in_the_error() {
    let nats = Nats::start().await;
    let db = TestDb::fresh().await;
    let (mut host, _rt) = host(&nats, &db, CancellationToken::new()).await;
    host.consumer("fragile", |_stop| async {
        if true {
            panic!("a bug");
        }
        Ok::<(), Error>(())
    });
    let outcome = tokio::time::timeout(Duration::from_secs(10), host.serve())
        .await
        .expect("the service stops");
    assert!(
        matches!(
            &outcome,
            Err(Error::Panicked {
                task: "fragile",
                ..
            })
        ),
        "{outcome:?}"
    );
}
