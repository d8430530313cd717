//! Trace context across NATS: the receiving side's span is a child of the
//! sender's. A separate test binary, because telemetry is process-global.

#[path = "common/mod.rs"]
mod common;

use std::{sync::OnceLock, time::Duration};

use jetshop_contracts::Event;
use jetshop_platform::{
    config::{ConsumerSettings, TelemetrySettings},
    consumer::{self, ConsumerSpec, Delivery},
    envelope::{self, MessageMeta},
    outbox::{self, Relay},
    rpc::{RpcClient, RpcService},
    telemetry::{self, TelemetryGuard},
};
use jetshop_testkit::SpanCollector;
use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry_sdk::trace::SpanData;
use sea_orm::TransactionTrait;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use common::{ECHO_ENDPOINT, ECHO_GROUP, Echo, EchoReply, Nats, TEST_EVENTS, Thing};

/// Telemetry is installed once per process (nextest runs each test in its
/// own process; `cargo test` runs them side by side in one).
fn collector() -> SpanCollector {
    static TELEMETRY: OnceLock<(SpanCollector, TelemetryGuard)> = OnceLock::new();
    TELEMETRY
        .get_or_init(|| {
            let collector = SpanCollector::default();
            let guard = telemetry::init_with_exporter(
                &TelemetrySettings::default(),
                "test",
                collector.clone(),
            )
            .expect("telemetry installs once");
            (collector, guard)
        })
        .0
        .clone()
}

fn ids(span: &SpanData) -> (TraceId, SpanId) {
    (span.span_context.trace_id(), span.span_context.span_id())
}

/// The part a span was recorded as the work of.
fn service_name(span: &SpanData) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == telemetry::SERVICE_NAME_ATTRIBUTE)
        .map(|kv| kv.value.to_string())
}

/// The finished span called `name` (the tracing name, or `otel.name`).
async fn finished(collector: &SpanCollector, name: &str) -> SpanData {
    collector.wait_for(name, |s| s.name == name).await
}

/// The span starting with `prefix` in `trace`.
async fn in_trace(collector: &SpanCollector, prefix: &str, trace: TraceId) -> SpanData {
    collector
        .wait_for(&format!("{prefix}* in trace {trace}"), |s| {
            s.name.starts_with(prefix) && s.span_context.trace_id() == trace
        })
        .await
}

#[tokio::test]
async fn consume_span_is_a_child_of_the_publishing_span() {
    let collector = collector();
    let nats = Nats::start().await;
    let (_test_db, db) = common::database().await;
    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn(consumer::run(
        nats.js.clone(),
        ConsumerSpec {
            stream: TEST_EVENTS.into(),
            durable: "test-trace".into(),
            description: "trace test".into(),
            filter_subjects: vec![],
        },
        ConsumerSettings {
            ack_wait: Duration::from_secs(5),
            ..Default::default()
        },
        |d: Delivery| async move {
            d.decode::<Thing>()?;
            Ok(())
        },
        shutdown.clone(),
    ));

    // Published directly from inside a span.
    let thing = Thing {
        n: 1,
        note: "direct".into(),
    };
    envelope::publish(
        &nats.js,
        Thing::SUBJECT,
        &envelope::new_message_id().to_string(),
        &thing,
        &MessageMeta::default(),
    )
    .instrument(tracing::info_span!("test publish"))
    .await
    .unwrap();
    let (trace, publisher) = ids(&finished(&collector, "test publish").await);
    let publish = in_trace(&collector, "publish ", trace).await;
    assert_eq!(publish.name, format!("publish {}", Thing::SUBJECT));
    assert_eq!(publish.parent_span_id, publisher);
    assert_eq!(publish.span_kind, SpanKind::Producer);
    let consume = in_trace(&collector, "consume ", trace).await;
    assert_eq!(consume.name, format!("consume {}", Thing::SUBJECT));
    assert_eq!(consume.parent_span_id, publish.span_context.span_id());
    assert_eq!(consume.span_kind, SpanKind::Consumer);
    // The delivery is the work of the consumer's context (`test-trace`).
    assert_eq!(service_name(&consume).as_deref(), Some("test"));

    // Enqueued in the outbox inside a span, published later by the relay
    // outside of it: the trace context travels through the outbox row.
    async {
        let txn = db.begin().await.unwrap();
        outbox::enqueue(
            &txn,
            &Thing {
                n: 2,
                note: "outbox".into(),
            },
            &MessageMeta::default(),
        )
        .await
        .unwrap();
        txn.commit().await.unwrap();
    }
    .instrument(tracing::info_span!("test enqueue"))
    .await;
    let (trace, enqueuer) = ids(&finished(&collector, "test enqueue").await);
    let relay = Relay::new(db.clone(), nats.js.clone(), "test");
    assert_eq!(relay.publish_batch().await.unwrap(), 1);
    // The relay's publish continues the enqueuer's trace as the relay
    // service's work, and the consumer's span is its child.
    let publish = in_trace(&collector, "publish ", trace).await;
    assert_eq!(publish.parent_span_id, enqueuer);
    assert_eq!(publish.span_kind, SpanKind::Producer);
    assert_eq!(service_name(&publish).as_deref(), Some("test"));
    let consume = in_trace(&collector, "consume ", trace).await;
    assert_eq!(consume.parent_span_id, publish.span_context.span_id());

    shutdown.cancel();
    consumer.await.unwrap().unwrap();
}

#[tokio::test]
async fn rpc_server_span_is_a_child_of_the_client_span() {
    let collector = collector();
    let nats = Nats::start().await;
    let mut service = RpcService::start(&nats.client, "echo", "1.0.0", "echo")
        .await
        .unwrap();
    service
        .endpoint::<Echo, _, _>(ECHO_GROUP, ECHO_ENDPOINT, |req: Echo, _meta| async move {
            Ok(EchoReply { text: req.text })
        })
        .await
        .unwrap();
    let rpc = RpcClient::new(nats.client.clone(), Duration::from_secs(2), 0);

    let reply = rpc
        .call(
            &Echo {
                text: "traced".into(),
                delay_ms: 0,
                fail: false,
            },
            &MessageMeta::default(),
        )
        .instrument(tracing::info_span!("test caller"))
        .await
        .unwrap();
    assert_eq!(reply.text, "traced");

    let (trace, caller) = ids(&finished(&collector, "test caller").await);
    let client = in_trace(&collector, "call ", trace).await;
    assert_eq!(client.name, "call test.rpc.echo.say");
    assert_eq!(client.parent_span_id, caller);
    assert_eq!(client.span_kind, SpanKind::Client);
    let server = in_trace(&collector, "rpc ", trace).await;
    assert_eq!(server.name, "rpc test.rpc.echo.say");
    assert_eq!(server.parent_span_id, client.span_context.span_id());
    assert_eq!(server.span_kind, SpanKind::Server);
    // Answered by the service whose subject it is.
    assert_eq!(service_name(&server).as_deref(), Some("test"));
    service.stop().await;
}

/// A span entered across an `.await` stays entered on the thread while the
/// task is parked, and every other task polled there meanwhile would run
/// inside it. Spans made by an unrelated task must stay roots.
#[tokio::test]
async fn consume_and_rpc_spans_do_not_leak_into_other_tasks() {
    let collector = collector();
    let nats = Nats::start().await;
    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn(consumer::run(
        nats.js.clone(),
        ConsumerSpec {
            stream: TEST_EVENTS.into(),
            durable: "test-leak".into(),
            description: "trace test".into(),
            filter_subjects: vec![],
        },
        ConsumerSettings {
            ack_wait: Duration::from_secs(5),
            ..Default::default()
        },
        |_d: Delivery| async move { Ok(()) },
        shutdown.clone(),
    ));
    let mut service = RpcService::start(&nats.client, "echo", "1.0.0", "echo")
        .await
        .unwrap();
    service
        .endpoint::<Echo, _, _>(ECHO_GROUP, ECHO_ENDPOINT, |req: Echo, _meta| async move {
            Ok(EchoReply { text: req.text })
        })
        .await
        .unwrap();

    // A bystander task that keeps making spans while the runtime's single
    // thread also serves the consumer and the service.
    let stop = CancellationToken::new();
    let bystander = tokio::spawn({
        let stop = stop.clone();
        async move {
            while !stop.is_cancelled() {
                drop(tracing::info_span!("bystander").entered());
                tokio::task::yield_now().await;
            }
        }
    });
    let rpc = RpcClient::new(nats.client.clone(), Duration::from_secs(2), 0);
    for n in 0..30 {
        envelope::publish(
            &nats.js,
            Thing::SUBJECT,
            &envelope::new_message_id().to_string(),
            &Thing {
                n,
                note: "leak".into(),
            },
            &MessageMeta::default(),
        )
        .await
        .unwrap();
        let echo = Echo {
            text: n.to_string(),
            delay_ms: 0,
            fail: false,
        };
        rpc.call(&echo, &MessageMeta::default()).await.unwrap();
    }
    let stream = nats.js.get_stream(TEST_EVENTS).await.unwrap();
    jetshop_testkit::eventually("all consumed", Duration::from_secs(10), || {
        let stream = stream.clone();
        async move {
            let info = stream.consumer_info("test-leak").await.ok()?;
            (info.ack_floor.stream_sequence >= 30).then_some(())
        }
    })
    .await;
    stop.cancel();
    bystander.await.unwrap();

    let spans = collector.spans();
    let owners: std::collections::HashSet<SpanId> = spans
        .iter()
        .filter(|s| {
            ["consume ", "rpc ", "publish "]
                .iter()
                .any(|p| s.name.starts_with(p))
        })
        .map(|s| s.span_context.span_id())
        .collect();
    let bystanders: Vec<&SpanData> = spans.iter().filter(|s| s.name == "bystander").collect();
    assert!(bystanders.len() > 30, "the bystander ran");
    let leaked = bystanders
        .iter()
        .filter(|s| owners.contains(&s.parent_span_id))
        .count();
    assert_eq!(
        leaked,
        0,
        "{leaked} of {} bystander spans were made inside a consume, rpc or publish span",
        bystanders.len()
    );
    shutdown.cancel();
    consumer.await.unwrap().unwrap();
    service.stop().await;
}
