//! An OTLP/HTTP trace receiver: what a collector is to jetshop, reduced
//! to keeping what it is sent. It decodes each `POST /v1/traces` body as
//! the protobuf `ExportTraceServiceRequest` (the `opentelemetry-proto`
//! types, as a real collector would) and keeps every span with the
//! `service.name` of the resource it came under, so tests can check
//! service names, span kinds and parent chains of what left a process.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::{AnyValue, KeyValue, any_value},
    trace::v1::span::SpanKind,
};
use poem::{
    EndpointExt, Response, Route, Server, handler,
    http::StatusCode,
    listener::{Acceptor, Listener, TcpListener},
    post,
    web::Data,
};
use prost::Message as _;

/// One span as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSpan {
    /// `service.name` of its resource.
    pub service: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits; empty for a root.
    pub parent_span_id: String,
    /// `server`, `client`, `producer`, `consumer`, `internal` or `unspecified`.
    pub kind: &'static str,
    pub name: String,
    /// Start time, nanoseconds since the Unix epoch.
    pub start_unix_nano: u64,
    /// (trace id, span id) of each link.
    pub links: Vec<(String, String)>,
    /// Its attributes, values as text.
    pub attributes: Vec<(String, String)>,
}

impl ReceivedSpan {
    /// The value of attribute `key`, when it has one.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

type Spans = Arc<Mutex<Vec<ReceivedSpan>>>;

/// A receiver on a free loopback port, stopped on drop.
#[derive(Debug)]
pub struct OtlpReceiver {
    endpoint: String,
    spans: Spans,
    requests: Arc<Mutex<u64>>,
    server: tokio::task::JoinHandle<()>,
}

impl OtlpReceiver {
    /// Start one on the current tokio runtime.
    pub async fn start() -> Self {
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .expect("bind the OTLP receiver");
        let addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .expect("the OTLP receiver's address");
        let spans = Spans::default();
        let requests = Arc::new(Mutex::new(0));
        let app = Route::new()
            .at("/v1/traces", post(traces))
            .data(spans.clone())
            .data(requests.clone());
        let server = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(app).await;
        });
        Self {
            endpoint: format!("http://{addr}"),
            spans,
            requests,
            server,
        }
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT` (OTLP/HTTP).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many export requests came in.
    pub fn requests(&self) -> u64 {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait until `done` holds for the spans received, or panic naming `what`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "OTLP receiver: no {what} within {timeout:?} ({} spans in {} requests)",
                spans.len(),
                self.requests()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[handler]
fn traces(body: Vec<u8>, Data(spans): Data<&Spans>, Data(n): Data<&Arc<Mutex<u64>>>) -> Response {
    *n.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    let request = match ExportTraceServiceRequest::decode(body.as_slice()) {
        Ok(r) => r,
        Err(e) => {
            return Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .body(format!("not an ExportTraceServiceRequest: {e}"));
        }
    };
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .map(|kv| text(kv.value.as_ref()))
            .unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            received.push(ReceivedSpan {
                service: service.clone(),
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                kind: kind(span.kind),
                name: span.name,
                start_unix_nano: span.start_time_unix_nano,
                links: span
                    .links
                    .iter()
                    .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                    .collect(),
                attributes: span.attributes.iter().map(attribute).collect(),
            });
        }
    }
    spans
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(received);
    Response::builder()
        .content_type("application/x-protobuf")
        .body(ExportTraceServiceResponse::default().encode_to_vec())
}

fn kind(value: i32) -> &'static str {
    match SpanKind::try_from(value) {
        Ok(SpanKind::Server) => "server",
        Ok(SpanKind::Client) => "client",
        Ok(SpanKind::Producer) => "producer",
        Ok(SpanKind::Consumer) => "consumer",
        Ok(SpanKind::Internal) => "internal",
        _ => "unspecified",
    }
}

fn attribute(kv: &KeyValue) -> (String, String) {
    (kv.key.clone(), text(kv.value.as_ref()))
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
