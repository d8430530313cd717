//! Which part of the system a span belongs to, when several share a process.
//!
//! A resource names one service, and a tracer provider has one resource;
//! `jetshop up` runs the gateway and every service on one provider. So the
//! part travels instead as a value in the OpenTelemetry context: the span
//! that starts a unit of work puts it there ([`super::set_parent`]), every
//! span below inherits the context, [`PartProcessor`] copies the value onto
//! each span as the `service.name` attribute when it starts, and
//! [`PartExporter`] exports each part's spans through an exporter of its
//! own whose resource carries that name.

use std::time::Duration;

use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    trace::{Span, SpanData, SpanExporter, SpanProcessor},
};

/// The span attribute naming the span's part (moved into the resource on export).
pub const SERVICE_NAME_ATTRIBUTE: &str = "service.name";

/// The part doing the work, as a context value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part(String);

impl Part {
    pub(crate) fn new(name: &str) -> Self {
        Self(name.to_owned())
    }
}

/// Records the context's part on every span as it starts.
#[derive(Debug, Default, Clone, Copy)]
pub struct PartProcessor;

impl SpanProcessor for PartProcessor {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        if let Some(Part(name)) = cx.get::<Part>() {
            opentelemetry::trace::Span::set_attribute(
                span,
                KeyValue::new(SERVICE_NAME_ATTRIBUTE, name.clone()),
            );
        }
    }

    fn on_end(&self, _span: SpanData) {}

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Sends each part's spans through its own exporter, under a resource named
/// after the part; spans of no known part go through `default`, under the
/// process's resource.
#[derive(Debug)]
pub struct PartExporter<E> {
    default: E,
    parts: Vec<(String, E)>,
}

impl<E: SpanExporter> PartExporter<E> {
    /// `default` for the process's own spans, one exporter per named part.
    pub fn new(default: E, parts: Vec<(String, E)>) -> Self {
        Self { default, parts }
    }

    /// Which of `parts` a span belongs to, if any.
    fn part_of(&self, span: &SpanData) -> Option<usize> {
        let name = span
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == SERVICE_NAME_ATTRIBUTE)?
            .value
            .as_str();
        self.parts.iter().position(|(p, _)| *p == name)
    }
}

impl<E: SpanExporter> SpanExporter for PartExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut own = Vec::new();
        let mut by_part: Vec<Vec<SpanData>> = self.parts.iter().map(|_| Vec::new()).collect();
        for mut span in batch {
            match self.part_of(&span) {
                Some(i) => {
                    // The resource says it now.
                    span.attributes
                        .retain(|kv| kv.key.as_str() != SERVICE_NAME_ATTRIBUTE);
                    by_part[i].push(span);
                }
                None => own.push(span),
            }
        }
        let mut result = Ok(());
        if !own.is_empty() {
            result = self.default.export(own).await;
        }
        for ((_, exporter), spans) in self.parts.iter().zip(by_part) {
            if !spans.is_empty() {
                let sent = exporter.export(spans).await;
                // One part's failure does not keep the others' spans back.
                result = result.and(sent);
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let mut result = self.default.shutdown_with_timeout(timeout);
        for (_, exporter) in &self.parts {
            result = result.and(exporter.shutdown_with_timeout(timeout));
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        let mut result = self.default.force_flush();
        for (_, exporter) in &self.parts {
            result = result.and(exporter.force_flush());
        }
        result
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.default.set_resource(resource);
        for (name, exporter) in &mut self.parts {
            let own = Resource::builder_empty()
                .with_attributes(
                    resource
                        .iter()
                        .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
                )
                .with_service_name(name.clone())
                .build();
            exporter.set_resource(&own);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::{Span as _, TraceContextExt, Tracer, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::*;

    /// Keeps what it is sent, with the service name of its resource.
    #[derive(Debug, Clone, Default)]
    struct Keep {
        service: Arc<Mutex<String>>,
        spans: Arc<Mutex<Vec<(String, String)>>>,
    }

    impl SpanExporter for Keep {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            let service = self.service.lock().unwrap().clone();
            for span in batch {
                let attribute = span
                    .attributes
                    .iter()
                    .find(|kv| kv.key.as_str() == SERVICE_NAME_ATTRIBUTE)
                    .map(|kv| kv.value.to_string())
                    .unwrap_or_default();
                self.spans
                    .lock()
                    .unwrap()
                    .push((service.clone(), format!("{} {attribute}", span.name)));
            }
            Ok(())
        }

        fn set_resource(&mut self, resource: &Resource) {
            *self.service.lock().unwrap() = resource
                .get(&opentelemetry::Key::new("service.name"))
                .map(|v| v.to_string())
                .unwrap_or_default();
        }
    }

    #[test]
    fn each_parts_spans_leave_under_its_own_service_name() {
        let (process, orders) = (Keep::default(), Keep::default());
        let provider = SdkTracerProvider::builder()
            .with_resource(Resource::builder().with_service_name("jetshop").build())
            .with_span_processor(PartProcessor)
            .with_simple_exporter(PartExporter::new(
                process.clone(),
                vec![("orders".into(), orders.clone())],
            ))
            .build();
        let tracer = provider.tracer("test");
        let in_orders = Context::new().with_value(Part::new("orders"));
        let consume = in_orders.with_span(tracer.start_with_context("consume", &in_orders));
        // A child inherits its parent's part.
        tracer.start_with_context("call", &consume).end();
        consume.span().end();
        tracer
            .start_with_context("feedback", &Context::new().with_value(Part::new("x")))
            .end();
        tracer.start("seed").end();
        provider.shutdown().unwrap();
        let mut got_orders = orders.spans.lock().unwrap().clone();
        got_orders.sort();
        assert_eq!(
            got_orders,
            [
                ("orders".to_owned(), "call ".to_owned()),
                ("orders".to_owned(), "consume ".to_owned())
            ]
        );
        let mut got_process = process.spans.lock().unwrap().clone();
        got_process.sort();
        assert_eq!(
            got_process,
            [
                ("jetshop".to_owned(), "feedback x".to_owned()),
                ("jetshop".to_owned(), "seed ".to_owned())
            ]
        );
    }
}
