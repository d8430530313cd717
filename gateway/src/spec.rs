//! The OpenAPI 3 document: which operations exist, under which title and
//! version, and the headers every operation shares.

use poem_openapi::{ExtraHeader, OpenApiService};

use crate::{products::ProductsApi, users::UsersApi};

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
(`catalog:write` for product writes); reads of the catalog and \
registration are open to everyone. A missing or invalid token is a 401 and \
a missing scope a 403, both with an RFC 6750 `WWW-Authenticate` header.";

/// Every operation of the API.
pub type Api = (ProductsApi, UsersApi);

/// The OpenAPI service: every operation of the API.
pub fn service() -> OpenApiService<Api, ()> {
    OpenApiService::new(
        (ProductsApi, UsersApi),
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

/// The document as pretty-printed JSON.
pub fn json() -> String {
    service().spec()
}
