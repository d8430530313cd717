//! A caller's W3C trace continues through the gateway into the catalog's
//! RPC handler. Its own binary: telemetry is installed once per process.

use std::{net::SocketAddr, time::Duration};

use jetshop_catalog::CatalogSettings;
use jetshop_gateway::{GatewaySettings, run};
use jetshop_platform::{
    config::{NatsSettings, TelemetrySettings},
    runtime::Runtime,
};
use jetshop_testkit::{NatsServer, SpanCollector, TestDb, eventually, free_port};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[tokio::test]
async fn traceparent_reaches_the_catalog_rpc_span() {
    let collector = SpanCollector::default();
    let _telemetry = jetshop_platform::telemetry::init_with_exporter(
        &TelemetrySettings::default(),
        "test",
        collector.clone(),
    )
    .expect("telemetry");

    let nats = NatsServer::start();
    let client = jetshop_platform::nats::connect(&NatsSettings::for_url(nats.url()), "test")
        .await
        .expect("connect to nats");
    let rt = Runtime::new(client, 1);
    let db = TestDb::fresh().await;
    let stop = CancellationToken::new();
    let _stop_on_drop = stop.clone().drop_guard();
    tokio::spawn(jetshop_catalog::run(
        CatalogSettings::for_database(db.url.clone()),
        rt.clone(),
        stop.clone(),
    ));
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    tokio::spawn(run(GatewaySettings::for_addr(addr), rt, stop.clone()));

    let trace_id = format!("{:032x}", Uuid::new_v4().as_u128());
    let parent_span_id = format!("{:016x}", rand_u64());
    let traceparent = format!("00-{trace_id}-{parent_span_id}-01");
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/v1/products/{}", Uuid::new_v4());
    // Retry until the catalog answers (404: it looked and found nothing).
    eventually(
        "the catalog to answer through the gateway",
        Duration::from_secs(20),
        || {
            let req = http.get(&url).header("traceparent", &traceparent);
            async move { req.send().await.ok().filter(|r| r.status() == 404) }
        },
    )
    .await;

    let rpc = collector
        .wait_for("rpc catalog.rpc.product.get in the caller's trace", |s| {
            s.name.starts_with("rpc catalog.rpc.product.get")
                && s.span_context.trace_id().to_string() == trace_id
        })
        .await;
    assert_eq!(rpc.span_context.trace_id().to_string(), trace_id);

    let http_span = collector
        .wait_for("the gateway's http span", |s| {
            s.name == "GET /v1/products/{id}" && s.span_context.trace_id().to_string() == trace_id
        })
        .await;
    assert_eq!(http_span.parent_span_id.to_string(), parent_span_id);
}

fn rand_u64() -> u64 {
    // Any non-zero span id will do; derive one from a random UUID.
    (Uuid::new_v4().as_u128() as u64) | 1
}
