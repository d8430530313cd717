//! The cluster harness itself: a stream at three replicas keeps taking
//! writes while its leader is killed, while its next leader is frozen, and
//! while its leader is partitioned away (a node in a network namespace).

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use jetshop_testkit::{NatsCluster, NetNamespace, eventually};

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

async fn create_stream(js: &jetstream::Context) {
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
}

/// How many messages of the stream node `i` holds in its own store.
fn messages_on(cluster: &NatsCluster, i: usize) -> Option<u64> {
    let jsz = cluster.monitor(i, "/jsz?accounts=true&streams=true")?;
    jsz.get("account_details")?
        .as_array()?
        .iter()
        .flat_map(|a| a.get("stream_detail").and_then(|s| s.as_array()))
        .flatten()
        .find(|s| s.get("name").and_then(|n| n.as_str()) == Some(STREAM))?
        .get("state")?
        .get("messages")?
        .as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_stream_outlives_a_killed_and_a_frozen_leader() {
    let mut cluster = NatsCluster::start(3);
    assert!(cluster.meta_leader().is_some());
    let client = cluster.client().await;
    let js = jetstream::new(client);
    create_stream(&js).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_stream_leader_is_replaced_and_catches_up_once_healed() {
    if !NetNamespace::supported() {
        println!("skipped: network namespaces need root and iproute2");
        return;
    }
    let isolated = 2;
    let mut cluster = NatsCluster::start_with_netns(3, isolated);
    assert_eq!(cluster.isolated(), Some(isolated));
    // The writer knows only the two nodes that stay connected, so every
    // publish below goes through them.
    let others: Vec<async_nats::ServerAddr> = (0..3)
        .filter(|&i| i != isolated)
        .map(|i| cluster.url(i).parse().unwrap())
        .collect();
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(others)
        .await
        .unwrap();
    let js = jetstream::new(client);
    create_stream(&js).await;
    for n in 0..10 {
        publish(&js, n).await;
    }

    // Leadership onto the node about to be cut off, so the partition takes
    // the leader away.
    assert!(
        cluster
            .move_stream_leader(&js, STREAM, isolated, WAIT)
            .await,
        "{} did not become the stream leader",
        cluster.name(isolated)
    );
    cluster.partition(isolated);
    assert!(cluster.is_partitioned(isolated));
    let next = leader_other_than(&cluster, &js, isolated).await;
    for n in 10..40 {
        publish(&js, n).await;
    }
    assert_eq!(messages_on(&cluster, next), Some(40));
    // Cut off, it answers nothing (not even its monitoring port).
    assert_eq!(messages_on(&cluster, isolated), None);

    cluster.heal(isolated);
    assert!(!cluster.is_partitioned(isolated));
    eventually("the healed node to hold all 40 messages", WAIT, || {
        let cluster = &cluster;
        async move { (messages_on(cluster, isolated) == Some(40)).then_some(()) }
    })
    .await;
    eventually("the healed node to be a current replica", WAIT, || {
        let (cluster, js) = (&cluster, &js);
        async move { cluster.is_current(js, STREAM, isolated).await.then_some(()) }
    })
    .await;
    // The meta group is whole: all three nodes name the same leader, and
    // the leader (only it lists the replicas) sees both others current.
    eventually("all three nodes to agree on the meta leader", WAIT, || {
        let cluster = &cluster;
        async move {
            let metas: Vec<serde_json::Value> = (0..3)
                .map(|i| cluster.monitor(i, "/jsz")?.get("meta_cluster").cloned())
                .collect::<Option<_>>()?;
            let leader = metas[0].get("leader")?.as_str()?;
            let agreed = metas
                .iter()
                .all(|m| m.get("leader").and_then(|l| l.as_str()) == Some(leader));
            let replicas = metas[cluster.index_of(leader)?]
                .get("replicas")?
                .as_array()?
                .clone();
            let current = replicas.len() == 2
                && replicas
                    .iter()
                    .all(|r| r.get("current").and_then(|c| c.as_bool()) == Some(true));
            (agreed && current).then_some(())
        }
    })
    .await;
    assert!(cluster.meta_leader().is_some());
}
