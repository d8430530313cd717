//! Dead-letter operations over messages dead-lettered by the real consumer
//! runner: counts, show, replay (one, per consumer, all) and purge.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use jetshop_contracts::{Event, headers, streams, subjects};
use jetshop_platform::{
    config::ConsumerSettings,
    consumer::{self, ConsumerSpec, Delivery, HandlerError},
    dlq::{self, PayloadEncoding, ReasonCount, Selection},
    envelope::{self, MessageMeta},
};
use jetshop_testkit::eventually;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::common::{Nats, OTHER_THING_SUBJECT, TEST_EVENTS, Thing};

/// Takes `Thing`s on [`Thing::SUBJECT`]; odd ones and 4 are refused.
const ODD: &str = "test-dlq-odd";
/// Takes `Thing`s on the other subject; 2 is refused.
const TWO: &str = "test-dlq-two";

fn spec(durable: &str, subject: &str) -> ConsumerSpec {
    ConsumerSpec {
        stream: TEST_EVENTS.into(),
        durable: durable.into(),
        description: "dlq test".into(),
        filter_subjects: vec![subject.into()],
    }
}

fn settings() -> ConsumerSettings {
    ConsumerSettings {
        max_deliver: 3,
        backoff: vec![Duration::from_millis(100)],
        ack_wait: Duration::from_secs(5),
        concurrency: 2,
        ..Default::default()
    }
}

/// What a running consumer handled: (n, delivery).
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(u32, Delivery)>>>);

impl Seen {
    fn all(&self) -> Vec<(u32, Delivery)> {
        self.0.lock().unwrap().clone()
    }
}

struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), jetshop_platform::Error>>,
    seen: Seen,
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// Run `durable` on `subject`; `refuse(n)` gives the permanent error, if any.
fn start(nats: &Nats, durable: &str, subject: &str, refuse: fn(u32) -> Option<String>) -> Running {
    let seen = Seen::default();
    let handler = {
        let seen = seen.clone();
        move |d: Delivery| {
            let seen = seen.clone();
            async move {
                let thing: Thing = d.decode()?;
                if let Some(reason) = refuse(thing.n) {
                    return Err(HandlerError::Permanent(reason));
                }
                seen.0.lock().unwrap().push((thing.n, d));
                Ok(())
            }
        }
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(consumer::run(
        nats.js.clone(),
        spec(durable, subject),
        settings(),
        handler,
        shutdown.clone(),
    ));
    Running {
        shutdown,
        task,
        seen,
    }
}

async fn publish(nats: &Nats, subject: &str, n: u32) -> (String, u64) {
    let id = envelope::new_message_id().to_string();
    let seq = envelope::publish(
        &nats.js,
        subject,
        &id,
        &Thing {
            n,
            note: format!("thing {n}"),
        },
        &MessageMeta::correlated("corr-dlq"),
    )
    .await
    .unwrap();
    (id, seq)
}

async fn wait_dlq(nats: &Nats, n: u64) {
    eventually(
        &format!("{n} dead letters"),
        Duration::from_secs(10),
        || async { (nats.stream_messages(streams::DLQ).await == n).then_some(()) },
    )
    .await;
}

fn refuse_odd(n: u32) -> Option<String> {
    if n % 2 == 1 {
        Some("odd".into())
    } else if n == 4 {
        Some("four".into())
    } else {
        None
    }
}

fn refuse_two(n: u32) -> Option<String> {
    (n == 2).then(|| "two".into())
}

fn accept(_: u32) -> Option<String> {
    None
}

/// Things 1..=4 on both subjects: ODD dead-letters 1, 3 (odd) and 4 (four),
/// TWO dead-letters 2 (two). Returns the original ids and sequences, by n,
/// of the things on the other subject.
async fn dead_letter_some(nats: &Nats) -> Vec<(String, u64)> {
    let odd = start(nats, ODD, Thing::SUBJECT, refuse_odd);
    let two = start(nats, TWO, OTHER_THING_SUBJECT, refuse_two);
    let mut other = Vec::new();
    for n in 1..=4 {
        publish(nats, Thing::SUBJECT, n).await;
        other.push(publish(nats, OTHER_THING_SUBJECT, n).await);
    }
    wait_dlq(nats, 4).await;
    odd.stop().await;
    two.stop().await;
    other
}

#[tokio::test]
async fn dead_letters_are_counted_shown_replayed_and_purged() {
    let nats = Nats::start().await;
    let other = dead_letter_some(&nats).await;

    // ls: counts per consumer and reason.
    let summary = dlq::summary(&nats.js, &Selection::All).await.unwrap();
    assert_eq!(summary.total, 4);
    let count = |consumer: &str, reason: &str, count| ReasonCount {
        consumer: consumer.into(),
        reason: reason.into(),
        count,
    };
    assert_eq!(
        summary.counts,
        [
            count(ODD, "odd", 2),
            count(ODD, "four", 1),
            count(TWO, "two", 1)
        ]
    );
    let only_two = dlq::summary(&nats.js, &Selection::Consumer(TWO.into()))
        .await
        .unwrap();
    assert_eq!(only_two.total, 1);

    // show: headers and payload decoded.
    let seqs_two = dlq::sequences(&nats.js, &Selection::Consumer(TWO.into()))
        .await
        .unwrap();
    assert_eq!(seqs_two.len(), 1);
    let dead = dlq::show(&nats.js, seqs_two[0]).await.unwrap();
    let (original_id, original_seq) = &other[1];
    assert_eq!(dead.sequence, seqs_two[0]);
    assert_eq!(dead.dlq_subject, subjects::dlq::for_consumer(TWO));
    assert_eq!(dead.subject.as_deref(), Some(OTHER_THING_SUBJECT));
    assert_eq!(dead.consumer.as_deref(), Some(TWO));
    assert_eq!(dead.reason.as_deref(), Some("two"));
    assert_eq!(dead.stream.as_deref(), Some(TEST_EVENTS));
    assert_eq!(dead.stream_sequence, Some(*original_seq));
    assert_eq!(dead.deliveries, Some(1));
    assert_eq!(dead.payload_encoding, PayloadEncoding::Msgpack);
    assert_eq!(dead.payload, serde_json::json!({"n": 2, "note": "thing 2"}));
    assert_eq!(dead.headers[headers::TYPE], ["test.thing"]);
    assert_eq!(dead.headers[headers::CORRELATION_ID], ["corr-dlq"]);
    assert_eq!(
        dead.headers[headers::dlq::ORIGINAL_MSG_ID],
        [original_id.as_str()]
    );
    let json = serde_json::to_value(&dead).unwrap();
    assert_eq!(json["payload"]["note"], "thing 2");
    assert!(matches!(
        dlq::show(&nats.js, 9999).await,
        Err(dlq::DlqError::NotFound(9999))
    ));

    // replay one: the fixed consumer gets it, under a new id, and the DLQ lets go.
    let two = start(&nats, TWO, OTHER_THING_SUBJECT, accept);
    let replayed = dlq::replay(&nats.js, seqs_two[0]).await.unwrap();
    assert_eq!(replayed.subject, OTHER_THING_SUBJECT);
    assert_eq!(replayed.consumer.as_deref(), Some(TWO));
    assert_eq!(replayed.stream, TEST_EVENTS);
    assert_ne!(&replayed.message_id, original_id);
    let seen = eventually("the replay handled", Duration::from_secs(10), || {
        let all = two.seen.all();
        async move { (!all.is_empty()).then_some(all) }
    })
    .await;
    assert_eq!(seen.len(), 1);
    let (n, d) = &seen[0];
    assert_eq!(*n, 2);
    assert_eq!(d.stream_sequence, replayed.stream_sequence);
    let h = d.headers.as_ref().unwrap();
    assert_eq!(
        h.get(headers::MSG_ID).unwrap().as_str(),
        replayed.message_id
    );
    assert_eq!(
        h.get(headers::REPLAY_OF).unwrap().as_str(),
        seqs_two[0].to_string()
    );
    assert_eq!(h.get(headers::CORRELATION_ID).unwrap().as_str(), "corr-dlq");
    assert!(
        h.iter()
            .all(|(n, _)| !headers::dlq::is_dlq_header(n.as_ref())),
        "{h:?}"
    );
    // Deduplicated as the message it was first published as.
    assert_eq!(d.dedupe_id(), *original_id);
    two.stop().await;
    assert!(matches!(
        dlq::show(&nats.js, seqs_two[0]).await,
        Err(dlq::DlqError::NotFound(_))
    ));
    assert_eq!(nats.stream_messages(streams::DLQ).await, 3);
    assert!(dlq::replay(&nats.js, seqs_two[0]).await.is_err());

    // purge one consumer's: only those go.
    let purged = dlq::purge(&nats.js, &Selection::Consumer(TWO.into()))
        .await
        .unwrap();
    assert_eq!(purged, 0, "TWO has nothing left");
    let purged = dlq::purge(&nats.js, &Selection::Consumer(ODD.into()))
        .await
        .unwrap();
    assert_eq!(purged, 3);
    assert_eq!(nats.stream_messages(streams::DLQ).await, 0);
}

#[tokio::test]
async fn replay_by_consumer_takes_only_that_consumers_dead_letters() {
    let nats = Nats::start().await;
    dead_letter_some(&nats).await;

    let odd = start(&nats, ODD, Thing::SUBJECT, accept);
    let report = dlq::replay_all(&nats.js, &Selection::Consumer(ODD.into()))
        .await
        .unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.replayed.len(), 3);
    assert!(
        report
            .replayed
            .iter()
            .all(|r| r.consumer.as_deref() == Some(ODD) && r.subject == Thing::SUBJECT)
    );
    let seen = eventually("the replays handled", Duration::from_secs(10), || {
        let all = odd.seen.all();
        async move { (all.len() >= 3).then_some(all) }
    })
    .await;
    let mut ns: Vec<u32> = seen.iter().map(|(n, _)| *n).collect();
    ns.sort();
    assert_eq!(ns, [1, 3, 4]);
    odd.stop().await;

    let left = dlq::summary(&nats.js, &Selection::All).await.unwrap();
    assert_eq!(left.total, 1);
    assert_eq!(left.counts[0].consumer, TWO);

    // --all replays the rest; purge of everything finds nothing left.
    let report = dlq::replay_all(&nats.js, &Selection::All).await.unwrap();
    assert_eq!(report.replayed.len(), 1);
    assert_eq!(report.replayed[0].subject, OTHER_THING_SUBJECT);
    assert_eq!(dlq::purge(&nats.js, &Selection::All).await.unwrap(), 0);
}
