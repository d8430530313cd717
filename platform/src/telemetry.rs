//! Logs and traces, set up once per process.
//!
//! `tracing` is the API everywhere; an OpenTelemetry layer gives every span a
//! W3C trace context. [`inject_current`] writes the current span's context
//! into NATS headers on every publish and request; [`set_parent`] makes the
//! receiving side's span its child. Spans are exported over OTLP when an
//! endpoint is configured, and kept in-process only otherwise.
//!
//! Under `jetshop up` every part shares this process and its one tracer, yet
//! a trace must still say which part did what. The spans that start a unit
//! of work (an HTTP request, a delivery, an RPC, an outbox publish) name
//! their part when they take their parent ([`set_parent`]); the name rides
//! in the OpenTelemetry context to every span below them, [`PartProcessor`]
//! records it on each span as `service.name`, and the exporter sends each
//! part's spans under a resource of that name ([`parts`]), so Jaeger shows
//! `gateway`, `orders`, `payments`, ... rather than one `jetshop`.

use async_nats::HeaderMap;
use opentelemetry::{
    Context, global,
    propagation::{Extractor, Injector},
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{SdkTracerProvider, SpanExporter, TracerProviderBuilder},
};
use std::sync::{Arc, OnceLock};

pub mod parts;

pub use parts::{PartExporter, PartProcessor, SERVICE_NAME_ATTRIBUTE};

use tracing::{Dispatch, dispatcher::WeakDispatch};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use tracing_subscriber::{
    EnvFilter, Layer,
    filter::LevelFilter,
    fmt::{
        FmtContext, FormatEvent, FormatFields, MakeWriter,
        format::{JsonFields, Writer},
    },
    layer::SubscriberExt,
    registry::LookupSpan,
    util::SubscriberInitExt,
};

use crate::{
    Error,
    config::{LogFormat, TelemetrySettings},
};

/// Keeps the tracer provider alive; dropping it flushes pending spans.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(err) = self.provider.shutdown() {
            eprintln!("telemetry shutdown: {err}");
        }
    }
}

fn provider_builder(service_name: &str) -> TracerProviderBuilder {
    SdkTracerProvider::builder()
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .with_span_processor(PartProcessor)
}

/// Install logging and tracing for this process: logs per the settings,
/// spans exported over OTLP when an endpoint is set, under `service_name`,
/// or under the name of their part when it is one of `parts` (the parts
/// `jetshop up` runs side by side). The batch exporter takes the standard
/// `OTEL_BSP_*` variables (`OTEL_BSP_SCHEDULE_DELAY`, in milliseconds, is
/// how long a finished span may wait; 5 s by default).
pub fn init(
    settings: &TelemetrySettings,
    service_name: &str,
    parts: &[&str],
) -> Result<TelemetryGuard, Error> {
    let mut builder = provider_builder(service_name);
    if let Some(endpoint) = &settings.otlp_endpoint {
        let exporter = PartExporter::new(
            otlp_exporter(settings, endpoint)?,
            parts
                .iter()
                .filter(|p| **p != service_name)
                .map(|p| Ok(((*p).to_owned(), otlp_exporter(settings, endpoint)?)))
                .collect::<Result<Vec<_>, Error>>()?,
        );
        builder = builder.with_batch_exporter(exporter);
    }
    install(settings, builder.build())
}

/// One OTLP exporter to `endpoint` (each part gets its own: an exporter
/// sends every span under one resource).
fn otlp_exporter(
    settings: &TelemetrySettings,
    endpoint: &str,
) -> Result<opentelemetry_otlp::SpanExporter, Error> {
    use opentelemetry_otlp::{SpanExporter as Otlp, WithExportConfig};
    if settings.otlp_protocol == "grpc" {
        Otlp::builder()
            .with_tonic()
            .with_endpoint(endpoint.to_owned())
            .build()
    } else {
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        Otlp::builder().with_http().with_endpoint(url).build()
    }
    .map_err(|e| Error::Telemetry(format!("OTLP exporter for {endpoint}: {e}")))
}

/// Like [`init`], with spans handed synchronously to `exporter` (tests
/// assert on the spans this collects).
pub fn init_with_exporter<E: SpanExporter + 'static>(
    settings: &TelemetrySettings,
    service_name: &str,
    exporter: E,
) -> Result<TelemetryGuard, Error> {
    install(
        settings,
        provider_builder(service_name)
            .with_simple_exporter(exporter)
            .build(),
    )
}

fn install(
    settings: &TelemetrySettings,
    provider: SdkTracerProvider,
) -> Result<TelemetryGuard, Error> {
    global::set_text_map_propagator(TraceContextPropagator::new());
    global::set_tracer_provider(provider.clone());
    let filter = log_filter(&settings.log_filter)?;
    // The OTel layer has its own filter: a span hidden from the logs must
    // still carry trace context across NATS.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("jetshop"))
        .with_filter(LevelFilter::INFO);
    let fmt = match settings.log_format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .compact()
            .with_target(false)
            // Colours for a terminal only: a log file or pipe gets plain text.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => json_layer(std::io::stdout).boxed(),
    }
    .with_filter(filter);
    tracing_subscriber::registry()
        .with(otel)
        .with(fmt)
        .try_init()
        .map_err(|e| Error::Telemetry(e.to_string()))?;
    Ok(TelemetryGuard { provider })
}

/// The JSON log layer: one object a line, the current span's fields
/// under `span`, and the OpenTelemetry `trace_id` and `span_id` of the
/// span the line was written in at the top level, so that a log search
/// by trace id finds every line of a request or a message across services.
fn json_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let dispatch = Arc::new(OnceLock::new());
    tracing_subscriber::fmt::layer()
        .fmt_fields(JsonFields::new())
        .event_format(WithTraceIds {
            inner: tracing_subscriber::fmt::format()
                .json()
                .with_current_span(true)
                .with_span_list(false),
            dispatch: dispatch.clone(),
        })
        .with_writer(writer)
        .and_then(KeepDispatch(dispatch))
}

/// The subscriber a layer was registered with, for looking up a span's
/// OpenTelemetry context while an event is formatted (when the default
/// dispatcher is not reachable: tracing hides it from re-entrant calls).
type DispatchSlot = Arc<OnceLock<WeakDispatch>>;

/// Fills a [`DispatchSlot`] when the subscriber is built.
struct KeepDispatch(DispatchSlot);

impl<S: tracing::Subscriber> Layer<S> for KeepDispatch {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.0.set(subscriber.downgrade());
    }
}

/// A JSON event format with `trace_id` and `span_id` added in front.
struct WithTraceIds<F> {
    inner: F,
    dispatch: DispatchSlot,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let span_context = ctx.lookup_current().and_then(|span| {
            let dispatch = self.dispatch.get()?.upgrade()?;
            let cx = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)?;
            let sc = cx.span().span_context().clone();
            sc.is_valid().then_some(sc)
        });
        match (span_context, line.strip_prefix('{')) {
            (Some(sc), Some(rest)) if !rest.starts_with('}') => write!(
                writer,
                "{{\"trace_id\":\"{}\",\"span_id\":\"{}\",{rest}",
                sc.trace_id(),
                sc.span_id()
            ),
            _ => writer.write_str(&line),
        }
    }
}

/// The NATS client module that, at TRACE, logs every message it reads with
/// its whole payload (passwords and client secrets sent to the users
/// service, for one) and the CONNECT line with its credentials.
const NATS_WIRE_TARGET: &str = "async_nats::connection";

/// The log filter for `spec` (EnvFilter syntax). Whatever `spec` asks,
/// the NATS client's wire dump is capped at DEBUG so that a `RUST_LOG=trace`
/// cannot put secrets in the logs.
pub fn log_filter(spec: &str) -> Result<EnvFilter, Error> {
    let filter =
        EnvFilter::try_new(spec).map_err(|e| Error::Config(format!("--log {spec:?}: {e}")))?;
    // Only when something may log at TRACE: adding a DEBUG directive to a
    // quieter filter would raise its level hint for nothing.
    if filter
        .max_level_hint()
        .is_none_or(|l| l >= LevelFilter::TRACE)
    {
        let cap = format!("{NATS_WIRE_TARGET}=debug")
            .parse()
            .map_err(|e| Error::Config(format!("log cap: {e}")))?;
        // Added last: it replaces a directive for the same target in `spec`.
        return Ok(filter.add_directive(cap));
    }
    Ok(filter)
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

/// Write the current span's trace context into outgoing NATS headers.
pub fn inject_current(headers: &mut HeaderMap) {
    inject(&tracing::Span::current(), headers);
}

/// Write `span`'s trace context into outgoing NATS headers, replacing any
/// there (the outbox relay's publish span takes over from the context the
/// row was written under).
pub fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        global::get_text_map_propagator(|p| p.inject_context(&cx, &mut HeaderInjector(headers)));
    }
}

/// Start `span` as the work of `part` (a service, or `gateway`): a child
/// of the trace context found in incoming NATS headers, else a new trace.
/// Records its trace id in the span's `trace_id` field (if declared) so
/// JSON logs carry it.
pub fn set_parent(span: &tracing::Span, part: &str, headers: Option<&HeaderMap>) {
    match headers {
        Some(headers) => set_parent_from(span, part, &HeaderExtractor(headers)),
        None => set_parent_from(span, part, &NoHeaders),
    }
}

/// Like [`set_parent`], with the trace context an extractor finds (HTTP
/// headers, ...).
pub fn set_parent_from(span: &tracing::Span, part: &str, extractor: &dyn Extractor) {
    // Extracted into an empty context, not the current one: without a
    // trace context in the headers this span starts a trace of its own.
    let cx =
        global::get_text_map_propagator(|p| p.extract_with_context(&Context::new(), extractor))
            .with_value(parts::Part::new(part));
    // Fails only when the span is disabled; then there is nothing to link.
    let _ = span.set_parent(cx);
    record_trace_id(span);
}

/// No headers at all.
struct NoHeaders;

impl Extractor for NoHeaders {
    fn get(&self, _key: &str) -> Option<&str> {
        None
    }

    fn keys(&self) -> Vec<&str> {
        Vec::new()
    }
}

/// Fill a declared `trace_id` field with the span's trace id.
pub fn record_trace_id(span: &tracing::Span) {
    if let Some(id) = trace_id(span) {
        span.record("trace_id", id.as_str());
    }
}

/// The trace id of `span`, as 32 hex digits, when it has one.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::{Layer, fmt::MakeWriter, layer::SubscriberExt};

    use super::json_layer;

    /// Log lines written into memory.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Lines {
        type Writer = Lines;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn json_lines_in_a_span_carry_its_trace_and_span_id() {
        let provider = SdkTracerProvider::builder().build();
        let lines = Lines::default();
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("test"))
                    .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
            )
            .with(json_layer(lines.clone()));
        let (trace_id, span_id) = tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside any span");
            let span = tracing::info_span!("handle", order_id = "o-1");
            let _entered = span.enter();
            tracing::info!(step = "reserve", "inside");
            let cx = opentelemetry::trace::TraceContextExt::span(
                &tracing_opentelemetry::OpenTelemetrySpanExt::context(&span),
            )
            .span_context()
            .clone();
            (cx.trace_id().to_string(), cx.span_id().to_string())
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let parsed: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(parsed.len(), 2, "{text}");
        assert!(parsed[0].get("trace_id").is_none(), "{text}");
        assert_eq!(parsed[1]["trace_id"], trace_id.as_str(), "{text}");
        assert_eq!(parsed[1]["span_id"], span_id.as_str(), "{text}");
        assert_eq!(trace_id.len(), 32);
        assert_eq!(parsed[1]["fields"]["step"], "reserve");
        assert_eq!(parsed[1]["span"]["order_id"], "o-1");
    }
}
