//! Connecting, the server version check, and stream provisioning.

use std::time::Duration;

use async_nats::jetstream::{self, stream::RetentionPolicy};
use jetshop_contracts::streams;
use jetshop_platform::{Error, config::NatsSettings, nats};
use jetshop_testkit::NatsServer;

use crate::common::test_events;

#[tokio::test]
async fn connect_accepts_the_test_server_and_check_version_refuses_old_ones() {
    let server = NatsServer::start();
    let client = nats::connect(&NatsSettings::for_url(server.url()), "version-test")
        .await
        .unwrap();
    let version = client.server_info().version;
    nats::check_version(&version).unwrap();
    assert!(matches!(
        nats::check_version("2.9.10"),
        Err(Error::ServerTooOld { .. })
    ));
}

#[tokio::test]
async fn connect_gives_up_after_its_timeout() {
    let port = jetshop_testkit::free_port();
    let settings = NatsSettings {
        connect_timeout: Duration::from_millis(600),
        ..NatsSettings::for_url(format!("nats://127.0.0.1:{port}"))
    };
    let started = std::time::Instant::now();
    let err = nats::connect(&settings, "nobody-home").await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn provisioning_is_idempotent_and_applies_spec_changes() {
    let server = NatsServer::start();
    let js = jetstream::new(server.client().await);
    let mut specs = streams::all();
    specs.push(test_events());

    nats::provision_streams(&js, &specs, 1).await.unwrap();
    nats::provision_streams(&js, &specs, 1).await.unwrap();
    for spec in &specs {
        let info = js
            .get_stream(spec.name)
            .await
            .unwrap()
            .get_info()
            .await
            .unwrap();
        let cfg = &info.config;
        assert_eq!(cfg.subjects, spec.subjects, "{}", spec.name);
        assert_eq!(cfg.max_age, spec.max_age, "{}", spec.name);
        assert_eq!(cfg.duplicate_window, spec.duplicate_window, "{}", spec.name);
        assert!(cfg.allow_direct);
    }
    let commands = js
        .get_stream(streams::CATALOG_COMMANDS)
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(commands.config.retention, RetentionPolicy::WorkQueue);

    // Keeps the messages it has when the spec changes.
    js.publish("test.events.kept", "x".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let mut changed = test_events();
    changed.max_age = Duration::from_secs(7200);
    changed.description = "Test events, kept longer";
    nats::provision_streams(&js, &[changed.clone()], 1)
        .await
        .unwrap();
    let info = js
        .get_stream(changed.name)
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(info.config.max_age, Duration::from_secs(7200));
    assert_eq!(
        info.config.description.as_deref(),
        Some("Test events, kept longer")
    );
    assert_eq!(info.state.messages, 1);
    nats::provision_streams(&js, &[changed], 1).await.unwrap();
}

#[tokio::test]
async fn a_list_of_servers_connects_to_one_that_is_up() {
    let server = NatsServer::start();
    let dead = format!("nats://127.0.0.1:{}", jetshop_testkit::free_port());
    let settings = NatsSettings::for_url(format!("{dead}, {}", server.url()));
    let client = nats::connect(&settings, "list-test").await.unwrap();
    client.flush().await.unwrap();
    assert_eq!(
        client.connection_state(),
        async_nats::connection::State::Connected
    );
}

#[tokio::test]
async fn a_malformed_url_is_a_configuration_error_at_once() {
    let started = std::time::Instant::now();
    let err = nats::connect(&NatsSettings::for_url("nats://host:port"), "bad-url")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// A process starting while the cluster has no quorum (its nodes are still
/// starting, or electing) waits for it instead of failing its start.
#[tokio::test]
async fn provisioning_waits_for_a_cluster_without_quorum() {
    let mut cluster = jetshop_testkit::NatsCluster::start(3);
    let client = cluster.client().await;
    cluster.kill(1);
    cluster.kill(2);
    let js = jetstream::new(client);
    let provisioning = tokio::spawn({
        let js = js.clone();
        async move { nats::provision_streams(&js, &[test_events()], 3).await }
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        !provisioning.is_finished(),
        "provisioning gave up (or succeeded) without quorum: {:?}",
        provisioning.await
    );
    cluster.restart(1);
    cluster.restart(2);
    tokio::time::timeout(Duration::from_secs(90), provisioning)
        .await
        .expect("provisioning ends once the cluster has quorum")
        .unwrap()
        .unwrap();
    let info = js
        .get_stream(test_events().name)
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(info.config.num_replicas, 3);
}
