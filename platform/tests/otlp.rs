//! With an OTLP endpoint configured, spans leave the process over OTLP/HTTP
//! as protobuf, each under the service name of the part that made it. A
//! receiver that decodes `ExportTraceServiceRequest` stands in for the
//! collector. A separate test binary, because telemetry is process-global.

use jetshop_platform::{config::TelemetrySettings, telemetry};
use jetshop_testkit::OtlpReceiver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_leave_over_otlp_under_the_name_of_their_part() {
    let receiver = OtlpReceiver::start().await;
    let settings = TelemetrySettings {
        otlp_endpoint: Some(receiver.endpoint().to_owned()),
        ..TelemetrySettings::default()
    };
    // As under `jetshop up`: one process, parts named.
    let guard = telemetry::init(&settings, "jetshop", &["orders", "catalog"]).unwrap();
    let consume = tracing::info_span!("consume", otel.kind = "consumer");
    telemetry::set_parent(&consume, "orders", None);
    consume.in_scope(|| {
        // A child is its parent's part's work without saying so.
        tracing::info_span!("call", otel.kind = "client").in_scope(|| {
            tracing::info!("inside a span that must be exported");
        });
    });
    drop(consume);
    // Outside any part: the process's own name.
    tracing::info_span!("seed").in_scope(|| {});
    // Dropping the guard flushes the batch exporter, which posts with a
    // blocking client: keep it off the runtime's threads.
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .unwrap();

    let spans = receiver.spans();
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
    };
    let (consume, call, seed) = (find("consume"), find("call"), find("seed"));
    assert_eq!(
        (
            consume.service.as_str(),
            consume.kind,
            consume.parent_span_id.as_str()
        ),
        ("orders", "consumer", "")
    );
    assert_eq!((call.service.as_str(), call.kind), ("orders", "client"));
    assert_eq!(call.parent_span_id, consume.span_id);
    assert_eq!(call.trace_id, consume.trace_id);
    // The resource names the part; the span no longer repeats it.
    assert_eq!(call.attribute("service.name"), None, "{call:?}");
    assert_eq!((seed.service.as_str(), seed.kind), ("jetshop", "internal"));
}
