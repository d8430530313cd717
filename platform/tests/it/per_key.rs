//! Per-key order across replicas: a partitioned stream and
//! `consumer::run_per_key` on two "replicas" (two connections), one of
//! which dies mid-run; messages of one key must be applied in the order
//! they were published, including across a transient failure and the
//! takeover.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::jetstream;
use jetshop_contracts::{
    streams::{self, Retention, StreamSpec},
    subjects,
};
use jetshop_platform::{
    config::ConsumerSettings,
    consumer::{self, ConsumerSpec, Delivery, HandlerError},
    envelope::{self, MessageMeta},
    nats,
};
use jetshop_testkit::eventually;
use tokio_util::sync::CancellationToken;

use crate::common::{Nats, Thing};

const KEYED: &str = "TEST_KEYED";
const BASE: &str = "test.keyed.thing";
const PARTITIONS: u32 = streams::KEY_PARTITIONS;
const KEYS: u32 = 12;
const PER_KEY: u32 = 25;

fn keyed_stream() -> StreamSpec {
    StreamSpec {
        name: KEYED,
        subjects: vec!["test.keyed.>".into()],
        retention: Retention::Limits,
        max_age: Duration::from_secs(3600),
        duplicate_window: streams::DUPLICATE_WINDOW,
        description: "Keyed test events",
        partitioned: true,
    }
}

/// What a replica applied: (replica, key, n), in the order applied.
type Applied = Arc<Mutex<Vec<(&'static str, String, u32)>>>;

fn replica(
    js: jetstream::Context,
    name: &'static str,
    applied: Applied,
    failed_once: Arc<Mutex<HashMap<(String, u32), bool>>>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<Result<(), jetshop_platform::Error>> {
    let settings = ConsumerSettings {
        max_deliver: 5,
        backoff: vec![Duration::from_millis(50)],
        ack_wait: Duration::from_secs(3),
        concurrency: 8,
        pin_timeout: Duration::from_secs(2),
    };
    let spec = ConsumerSpec {
        stream: KEYED.into(),
        durable: "keyed".into(),
        description: "per-key order test".into(),
        filter_subjects: vec![BASE.into()],
    };
    tokio::spawn(consumer::run_per_key(
        js,
        spec,
        settings,
        move |d: Delivery| {
            let applied = applied.clone();
            let failed_once = failed_once.clone();
            async move {
                let thing = d.decode::<Thing>()?;
                let key = subjects::keyed::key(&d.subject)
                    .ok_or_else(|| HandlerError::permanent("no key"))?
                    .to_owned();
                // Every seventh message fails once: its retry must come
                // before the next message of its key.
                if thing.n % 7 == 3 {
                    let mut failed = failed_once.lock().unwrap();
                    if !failed.contains_key(&(key.clone(), thing.n)) {
                        failed.insert((key, thing.n), true);
                        return Err(HandlerError::transient("first try fails"));
                    }
                }
                // Slow enough that the takeover happens mid-run.
                tokio::time::sleep(Duration::from_millis(2)).await;
                applied.lock().unwrap().push((name, key, thing.n));
                Ok(())
            }
        },
        shutdown,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_keys_messages_are_applied_in_order_across_replicas_and_a_takeover() {
    let nats = Nats::start().await;
    nats::provision_streams(&nats.js, &[keyed_stream()], 1)
        .await
        .unwrap();
    for n in 0..PER_KEY {
        for k in 0..KEYS {
            let id = envelope::new_message_id().to_string();
            let thing = Thing {
                n,
                note: String::new(),
            };
            let subject = subjects::keyed::subject(BASE, format!("key-{k}"));
            envelope::publish(&nats.js, &subject, &id, &thing, &MessageMeta::default())
                .await
                .unwrap();
        }
    }
    // The server stored each with its key's partition as a fifth token.
    let stored = jetshop_testkit::stream_messages(&nats.js, KEYED, 1).await;
    let first = &stored[0].subject;
    assert!(
        first.starts_with("test.keyed.thing.key-0.")
            && first.rsplit('.').next().unwrap().parse::<u32>().unwrap() < PARTITIONS,
        "{first}"
    );

    // A durable from before per-key order, under the consumer's plain name.
    let stream = nats.js.get_stream(KEYED).await.unwrap();
    stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("keyed".into()),
            filter_subject: "test.keyed.>".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    let applied: Applied = Arc::default();
    let failed_once = Arc::default();
    // Replica A starts first and takes every pin; B stands by.
    let a_client = nats.server.client().await;
    let a = replica(
        jetstream::new(a_client.clone()),
        "a",
        applied.clone(),
        Arc::clone(&failed_once),
        CancellationToken::new(),
    );
    eventually(
        "replica a applies messages",
        Duration::from_secs(15),
        || {
            let applied = applied.clone();
            async move { (applied.lock().unwrap().len() > 40).then_some(()) }
        },
    )
    .await;
    let b_stop = CancellationToken::new();
    let b = replica(
        nats.js.clone(),
        "b",
        applied.clone(),
        Arc::clone(&failed_once),
        b_stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A dies: no drain, its connection goes away with what it held.
    a.abort();
    drop(a_client);

    let total = KEYS * PER_KEY;
    eventually(
        "replica b takes over and every message is applied",
        Duration::from_secs(60),
        || {
            let applied = applied.clone();
            async move {
                let distinct: std::collections::HashSet<(String, u32)> = applied
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(_, k, n)| (k.clone(), *n))
                    .collect();
                (distinct.len() == total as usize).then_some(())
            }
        },
    )
    .await;
    b_stop.cancel();
    b.await.unwrap().unwrap();

    assert!(
        stream
            .get_consumer::<jetstream::consumer::pull::Config>("keyed")
            .await
            .is_err(),
        "the partitions replaced the old durable"
    );
    let applied = applied.lock().unwrap().clone();
    let mut by_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (_, key, n) in &applied {
        by_key.entry(key.clone()).or_default().push(*n);
    }
    for (key, ns) in &by_key {
        // A message A applied but could not acknowledge before it died is
        // applied again by B (the inbox would drop that duplicate): the
        // same number twice in a row. Anything else out of order is a bug.
        assert!(
            ns.windows(2).all(|w| w[0] <= w[1]),
            "{key} applied out of order: {ns:?}"
        );
    }
    let by_a = applied.iter().filter(|(r, ..)| *r == "a").count();
    let by_b = applied.iter().filter(|(r, ..)| *r == "b").count();
    assert!(
        by_a > 0 && by_b > 0,
        "both replicas worked: a {by_a}, b {by_b}"
    );
}
