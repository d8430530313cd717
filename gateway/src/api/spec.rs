//! The OpenAPI 3 document: which operations exist, under which title and
//! version, and the headers every operation shares.

use poem_openapi::{ExtraHeader, OpenApiService};

use crate::api::{
    orders::OrdersApi, products::ProductsApi, users::UsersApi, webhooks::WebhooksApi,
};

/// Where Swagger UI is served.
pub const DOCS_PATH: &str = "/docs";
/// Where the JSON document is served.
pub const SPEC_PATH: &str = "/openapi.json";

const DESCRIPTION: &str = "\
The jetshop REST API. Reads are answered by the services behind the gateway \
over NATS request-reply.

Every error is an RFC 9457 `application/problem+json` document. Every \
response carries `X-Request-Id`: the caller's own when it sent a sane one \
(up to 128 visible ASCII characters), a new UUIDv7 otherwise. A 503 carries \
`Retry-After`.

Authentication is OAuth 2.0: send an access token as `Authorization: Bearer \
<token>`. Swagger UI's Authorize button signs in with the authorization code \
flow and PKCE as the public client `swagger-ui`; machines use client \
credentials at `/oauth/token`. Each operation lists the scope it needs \
(`catalog:write` for product writes, `orders:read` and `orders:write` for \
your orders and webhook, `users:admin` to see everyone's); reads of the \
catalog and registration are open to everyone. A missing or invalid token is a 401 and \
a missing scope a 403, both with an RFC 6750 `WWW-Authenticate` header.";

/// Every operation of the API.
pub type Api = (ProductsApi, UsersApi, OrdersApi, WebhooksApi);

/// The OpenAPI service: every operation of the API.
pub fn service() -> OpenApiService<Api, ()> {
    OpenApiService::new(
        (ProductsApi, UsersApi, OrdersApi, WebhooksApi),
        "jetshop",
        env!("CARGO_PKG_VERSION"),
    )
    .description(DESCRIPTION)
    .extra_request_header::<Option<String>, _>(
        ExtraHeader::new("X-Request-Id")
            .description("Correlates this request across services; echoed in the response."),
    )
    .extra_response_header::<String, _>(
        ExtraHeader::new("X-Request-Id").description("The request's id."),
    )
}

/// `GET /openapi.json`.
#[poem::handler]
pub fn serve() -> poem::Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    poem::Response::builder()
        .content_type("application/json; charset=utf-8")
        .body(DOC.get_or_init(json).clone())
}

/// The document as pretty-printed JSON.
///
/// Three things poem-openapi cannot write are added here, so that
/// generated clients and fuzzers know them:
/// - request bodies reject unknown fields (`deny_unknown_fields`): their
///   schemas get `additionalProperties: false`;
/// - the password policy's "not one character repeated", as a pattern the
///   users service enforces (poem-openapi's validators run the `regex`
///   crate, which has no back-references, so the gateway cannot);
/// - a body of changes must name at least one (`minProperties: 1`): the
///   operations taking [`CHANGE_BODIES`] refuse `{}` with a 400;
/// - an SSE response is a text stream, not the JSON array poem-openapi
///   calls it.
pub fn json() -> String {
    let mut doc: serde_json::Value =
        serde_json::from_str(&service().spec()).expect("poem-openapi writes valid JSON");
    close_request_schemas(&mut doc);
    document_password_policy(&mut doc);
    for name in CHANGE_BODIES {
        if let Some(schema) = doc.pointer_mut(&format!("/components/schemas/{name}")) {
            schema["minProperties"] = 1.into();
        }
    }
    describe_event_streams(&mut doc);
    serde_json::to_string_pretty(&doc).expect("a JSON value serializes")
}

/// Bodies of changes where absent fields stay, so `{}` would change nothing.
pub const CHANGE_BODIES: &[&str] = &["ProductChanges", "ProfileChanges"];

/// "Not one character repeated" (`aaaaaaaaaaaa`), in ECMA-262 as JSON
/// Schema patterns are: no match where one character and copies of it run
/// to the end (`(?![\s\S])`, since `$` may match before a final newline
/// in some dialects).
pub const PASSWORD_NOT_ONE_CHARACTER_REPEATED: &str = r"^(?!([\s\S])\1*(?![\s\S]))";

fn document_password_policy(doc: &mut serde_json::Value) {
    if let Some(password) = doc.pointer_mut("/components/schemas/NewUser/properties/password") {
        password["pattern"] = PASSWORD_NOT_ONE_CHARACTER_REPEATED.into();
        password["format"] = "password".into();
    }
}

/// Every `text/event-stream` response: poem-openapi writes `type: array,
/// format: event-stream`, which no stream matches. The schema of an SSE
/// response describes one event instead (as OpenAPI 3.2 and SSE-aware
/// tools such as schemathesis read it): its `event` name and its `data`, a
/// JSON document of the item schema, said with `contentMediaType` and
/// `contentSchema`.
fn describe_event_streams(doc: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for response in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|ops| ops.values_mut())
        .filter_map(|op| op.get_mut("responses").and_then(Value::as_object_mut))
        .flat_map(|responses| responses.values_mut())
    {
        let Some(media) = response.pointer_mut("/content/text~1event-stream") else {
            continue;
        };
        let Some(item) = media.pointer("/schema/items").cloned() else {
            continue;
        };
        media["schema"] = json!({
            "type": "object",
            "description": "One server-sent event.",
            "required": ["event", "data"],
            "properties": {
                "event": {"type": "string", "description": "The event's name."},
                "data": {
                    "type": "string",
                    "description": "The event's payload, a JSON document.",
                    "contentMediaType": "application/json",
                    "contentSchema": item,
                },
            },
        });
    }
}

/// Mark every object schema reachable from a request body as closed.
fn close_request_schemas(doc: &mut serde_json::Value) {
    use serde_json::Value;
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref")
                    && let Some(name) = r.strip_prefix("#/components/schemas/")
                {
                    out.push(name.to_owned());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut pending = Vec::new();
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        for op in paths
            .values()
            .filter_map(Value::as_object)
            .flat_map(|p| p.values())
        {
            if let Some(body) = op.get("requestBody") {
                refs(body, &mut pending);
            }
        }
    }
    let mut closed = std::collections::BTreeSet::new();
    while let Some(name) = pending.pop() {
        if !closed.insert(name.clone()) {
            continue;
        }
        if let Some(schema) = doc.pointer_mut(&format!("/components/schemas/{name}")) {
            refs(schema, &mut pending);
            if schema.get("type").and_then(Value::as_str) == Some("object") {
                schema["additionalProperties"] = Value::Bool(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_bodies_are_closed_and_responses_are_not() {
        let doc: serde_json::Value = serde_json::from_str(&super::json()).unwrap();
        let schemas = &doc["components"]["schemas"];
        for name in [
            "NewProduct",
            "NewMoney",
            "NewUser",
            "NewOrder",
            "NewOrderLine",
            "CancelOrder",
            "NewWebhook",
        ] {
            assert_eq!(schemas[name]["additionalProperties"], false, "{name}");
        }
        assert!(schemas["Product"].get("additionalProperties").is_none());
        assert!(schemas["Order"].get("additionalProperties").is_none());
        for name in super::CHANGE_BODIES {
            assert_eq!(schemas[name]["minProperties"], 1, "{name}");
        }
    }

    #[test]
    fn the_order_limits_published_are_the_contracts_limits() {
        use jetshop_contracts::orders::{MAX_LINES, MAX_QUANTITY};
        let doc: serde_json::Value = serde_json::from_str(&super::json()).unwrap();
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["NewOrder"]["properties"]["lines"]["maxItems"],
            MAX_LINES
        );
        assert_eq!(
            schemas["NewOrderLine"]["properties"]["quantity"]["maximum"].as_f64(),
            Some(MAX_QUANTITY as f64)
        );
    }

    #[test]
    fn the_event_stream_is_documented_as_one_event_of_order_status_json() {
        let doc: serde_json::Value = serde_json::from_str(&super::json()).unwrap();
        let schema = &doc["paths"]["/v1/orders/{id}/events"]["get"]["responses"]["200"]["content"]
            ["text/event-stream"]["schema"];
        assert_eq!(schema["type"], "object", "{schema}");
        let data = &schema["properties"]["data"];
        assert_eq!(data["type"], "string");
        assert_eq!(data["contentMediaType"], "application/json");
        assert_eq!(
            data["contentSchema"]["$ref"],
            "#/components/schemas/OrderStatusEvent"
        );
    }

    #[test]
    fn the_password_policy_pattern_is_published() {
        let doc: serde_json::Value = serde_json::from_str(&super::json()).unwrap();
        let password = &doc["components"]["schemas"]["NewUser"]["properties"]["password"];
        assert_eq!(
            password["pattern"],
            super::PASSWORD_NOT_ONE_CHARACTER_REPEATED
        );
        assert_eq!(password["minLength"], 12);
    }
}
