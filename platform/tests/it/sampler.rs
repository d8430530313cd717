//! The JetStream sampler against a real server: consumer lag, dead-letter
//! depth, stream gauges and the connection, read back from `/metrics` text.

use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use futures::StreamExt;
use jetshop_contracts::{Event, streams, subjects};
use jetshop_platform::{
    envelope::{self, MessageMeta},
    sampler::{SAMPLE_EVERY, Sampler},
};
use jetshop_testkit::eventually;
use tokio_util::sync::CancellationToken;

use crate::common::{Nats, TEST_EVENTS, Thing};

/// The value of `name{labels...}` in Prometheus text, when there is one.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn wait_for(name: &str, labels: &[(&str, &str)], want: f64) {
    eventually(
        &format!("{name}{labels:?} = {want}"),
        SAMPLE_EVERY * 3,
        || async {
            let text = jetshop_platform::metrics::render();
            (value(&text, name, labels) == Some(want)).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn lag_dead_letters_and_streams_are_sampled_from_the_server() {
    jetshop_platform::metrics::install();
    let nats = Nats::start().await;
    let stream = nats.js.get_stream(TEST_EVENTS).await.unwrap();
    // A durable of this service ("smp-") and one of another service.
    let ours = stream
        .create_consumer(pull::Config {
            durable_name: Some("smp-lag".into()),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    stream
        .create_consumer(pull::Config {
            durable_name: Some("elsewhere-lag".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    for n in 0..3 {
        envelope::publish(
            &nats.js,
            Thing::SUBJECT,
            &envelope::new_message_id().to_string(),
            &Thing {
                n,
                note: "lag".into(),
            },
            &MessageMeta::correlated("corr-sampler"),
        )
        .await
        .unwrap();
    }
    nats.js
        .publish(subjects::dlq::for_consumer("smp-lag"), "dead".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let stop = CancellationToken::new();
    let sampler = Sampler::new(
        "smp",
        nats.client.clone(),
        nats.js.clone(),
        vec![TEST_EVENTS, streams::DLQ],
    );
    let task = tokio::spawn(sampler.run(stop.clone()));

    let lag = [("consumer", "smp-lag"), ("stream", TEST_EVENTS)];
    wait_for("jetshop_consumer_pending_messages", &lag, 3.0).await;
    wait_for("jetshop_consumer_ack_pending_messages", &lag, 0.0).await;
    wait_for("jetshop_dlq_messages", &[("consumer", "smp-lag")], 1.0).await;
    wait_for("jetshop_stream_messages", &[("stream", TEST_EVENTS)], 3.0).await;
    wait_for(
        "jetshop_stream_replicas_current",
        &[("stream", TEST_EVENTS)],
        1.0,
    )
    .await;
    wait_for("jetshop_nats_connected", &[("service", "smp")], 1.0).await;
    let text = jetshop_platform::metrics::render();
    assert_eq!(
        value(
            &text,
            "jetshop_consumer_pending_messages",
            &[("consumer", "elsewhere-lag")]
        ),
        None,
        "another service's durable is that service's to report:\n{text}"
    );
    assert!(
        text.contains("# HELP jetshop_consumer_pending_messages "),
        "{text}"
    );

    // Take one message and hold it: the next sample moves it from pending
    // to ack-pending.
    let mut batch = ours.fetch().max_messages(1).messages().await.unwrap();
    let held = batch.next().await.unwrap().unwrap();
    wait_for("jetshop_consumer_pending_messages", &lag, 2.0).await;
    wait_for("jetshop_consumer_ack_pending_messages", &lag, 1.0).await;
    held.ack().await.unwrap();

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the sampler stops when told")
        .unwrap();
}
