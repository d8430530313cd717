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
/// Request bodies reject unknown fields (`deny_unknown_fields`), which
/// poem-openapi does not write into the schemas; they get
/// `additionalProperties: false` here so that generated clients and
/// fuzzers know it.
pub fn json() -> String {
    let mut doc: serde_json::Value =
        serde_json::from_str(&service().spec()).expect("poem-openapi writes valid JSON");
    close_request_schemas(&mut doc);
    serde_json::to_string_pretty(&doc).expect("a JSON value serializes")
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
    }
}
