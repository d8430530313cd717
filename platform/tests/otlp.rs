//! With an OTLP endpoint configured, spans leave the process over OTLP/HTTP.
//! A small HTTP server stands in for the collector and records what it is
//! sent. A separate test binary, because telemetry is process-global.

use std::sync::{Arc, Mutex};

use jetshop_platform::{config::TelemetrySettings, telemetry};
use poem::{
    EndpointExt, Route, Server, handler, http::HeaderMap, listener::TcpListener, post, web::Data,
};

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, usize)>>>);

#[handler]
fn traces(headers: &HeaderMap, body: Vec<u8>, Data(received): Data<&Received>) -> &'static str {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    received.0.lock().unwrap().push((content_type, body.len()));
    ""
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_to_the_configured_otlp_endpoint() {
    let port = jetshop_testkit::free_port();
    let received = Received::default();
    let app = Route::new()
        .at("/v1/traces", post(traces))
        .data(received.clone());
    tokio::spawn(Server::new(TcpListener::bind(("127.0.0.1", port))).run(app));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    let settings = TelemetrySettings {
        otlp_endpoint: Some(format!("http://127.0.0.1:{port}")),
        ..TelemetrySettings::default()
    };
    let guard = telemetry::init(&settings, "otlp-test").unwrap();
    tracing::info_span!("checkout", order_id = "o-1").in_scope(|| {
        tracing::info!("inside a span that must be exported");
    });
    // Dropping the guard flushes the batch exporter, which posts with a
    // blocking client: keep it off the runtime's threads.
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .unwrap();

    let got = received.0.lock().unwrap().clone();
    assert!(!got.is_empty(), "the collector received nothing");
    assert!(
        got.iter()
            .any(|(ct, len)| ct == "application/x-protobuf" && *len > 0),
        "{got:?}"
    );
}
