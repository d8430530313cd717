//! The cluster harness itself: a stream at three replicas keeps taking
//! writes while its leader is killed, and while its next leader is frozen.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use jetshop_testkit::{NatsCluster, eventually};

const STREAM: &str = "HARNESS";
const WAIT: Duration = Duration::from_secs(60);

/// Publish and wait for the ack, retrying through leader elections.
async fn publish(js: &jetstream::Context, n: u64) {
    eventually("a publish to be acknowledged", WAIT, || async move {
        let ack = js.publish("harness.x", n.to_string().into()).await.ok()?;
        ack.await.ok().map(|_| ())
    })
    .await;
}

async fn leader_other_than(cluster: &NatsCluster, js: &jetstream::Context, old: usize) -> usize {
    eventually("a new stream leader", WAIT, || async move {
        cluster
            .stream_leader(js, STREAM)
            .await
            .filter(|&l| l != old)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_stream_outlives_a_killed_and_a_frozen_leader() {
    let mut cluster = NatsCluster::start(3);
    assert!(cluster.meta_leader().is_some());
    let client = cluster.client().await;
    let js = jetstream::new(client);
    eventually("the stream to be created", WAIT, || {
        let js = js.clone();
        async move {
            js.get_or_create_stream(stream::Config {
                name: STREAM.into(),
                subjects: vec!["harness.>".into()],
                num_replicas: 3,
                ..Default::default()
            })
            .await
            .ok()
            .map(|_| ())
        }
    })
    .await;
    for n in 0..10 {
        publish(&js, n).await;
    }

    let first = eventually("a stream leader", WAIT, || {
        let (cluster, js) = (&cluster, &js);
        async move { cluster.stream_leader(js, STREAM).await }
    })
    .await;
    cluster.kill(first);
    assert!(!cluster.is_running(first));
    let second = leader_other_than(&cluster, &js, first).await;
    for n in 10..20 {
        publish(&js, n).await;
    }
    cluster.restart(first);

    cluster.pause(second);
    let third = leader_other_than(&cluster, &js, second).await;
    assert_ne!(third, second);
    for n in 20..30 {
        publish(&js, n).await;
    }
    cluster.resume(second);

    eventually("all 30 messages in the stream", WAIT, || {
        let js = js.clone();
        async move {
            // Asked while the cluster settles: a failed info is "not yet".
            let mut s = js.get_stream(STREAM).await.ok()?;
            (s.info().await.ok()?.state.messages == 30).then_some(())
        }
    })
    .await;
}
