//! Route templates as the OpenAPI document names them (`/v1/products/{id}`,
//! never the raw path), for metric labels, span names and error messages.
//!
//! poem-openapi routes `/v1/products/{id}` internally as
//! `/v1/products/:param0`; the table here, built from the operations'
//! metadata, maps such patterns back to the documented path and parameter
//! names.

use std::sync::OnceLock;

use poem::{PathPattern, Response};
use poem_openapi::OpenApi;

/// Label for requests no route matched.
pub const UNMATCHED: &str = "unmatched";

/// One documented path and how poem-openapi routes it.
#[derive(Debug)]
struct Template {
    /// Poem's pattern: `/v1/products/:param0`.
    poem: String,
    /// The documented path: `/v1/products/{id}`.
    openapi: String,
    /// The documented names of the path parameters, in order.
    params: Vec<String>,
    /// The methods its operations answer, upper case.
    methods: Vec<String>,
}

impl Template {
    fn from_openapi(path: &str, methods: Vec<String>) -> Self {
        let mut params = Vec::new();
        let poem = path
            .split('/')
            .map(
                |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => {
                        params.push(name.to_owned());
                        format!(":param{}", params.len() - 1)
                    }
                    None => seg.to_owned(),
                },
            )
            .collect::<Vec<_>>()
            .join("/");
        Self {
            poem,
            openapi: path.to_owned(),
            params,
            methods,
        }
    }

    /// Whether a request path fits this template.
    fn fits(&self, path: &str) -> bool {
        let mut want = self.openapi.split('/');
        let mut got = path.split('/');
        loop {
            match (want.next(), got.next()) {
                (None, None) => return true,
                (Some(w), Some(g)) if w.starts_with('{') || w == g => {}
                _ => return false,
            }
        }
    }
}

fn templates() -> &'static [Template] {
    static TABLE: OnceLock<Vec<Template>> = OnceLock::new();
    TABLE.get_or_init(|| {
        <crate::spec::Api as OpenApi>::meta()
            .into_iter()
            .flat_map(|api| api.paths)
            .map(|p| {
                let methods = p
                    .operations
                    .iter()
                    .map(|op| op.method.as_str().to_ascii_uppercase())
                    .collect();
                Template::from_openapi(&p.path, methods)
            })
            .collect()
    })
}

fn find(pattern: &str) -> Option<&'static Template> {
    templates().iter().find(|t| t.poem == pattern)
}

/// The documented route of a matched Poem pattern; other patterns in
/// OpenAPI syntax (`:x` becomes `{x}`).
pub fn documented(pattern: &str) -> String {
    match find(pattern) {
        Some(t) => t.openapi.clone(),
        None => openapi_syntax(pattern),
    }
}

/// The documented name of poem-openapi's internal path parameter
/// `internal` (`param0`) in the route matched by `pattern`.
pub fn param_name(pattern: &str, internal: &str) -> Option<&'static str> {
    let index: usize = internal.strip_prefix("param")?.parse().ok()?;
    find(pattern)?.params.get(index).map(String::as_str)
}

/// The methods a documented route answers, for a 405's `Allow` header
/// (RFC 9110 requires it); `None` when no documented route fits `path`.
pub fn allowed_methods(path: &str) -> Option<String> {
    // Plain routes outside the OpenAPI document that answer GET only.
    const GET_ONLY: [&str; 6] = [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/.well-known/openid-configuration",
        "/.well-known/jwks.json",
    ];
    if GET_ONLY.contains(&path) {
        return Some("GET".into());
    }
    let mut methods: Vec<&str> = templates()
        .iter()
        .filter(|t| t.fits(path))
        .flat_map(|t| t.methods.iter().map(String::as_str))
        .collect();
    if methods.is_empty() {
        return None;
    }
    methods.sort_unstable();
    methods.dedup();
    Some(methods.join(", "))
}

/// The route a response was served by, or [`UNMATCHED`].
pub fn template(resp: &Response) -> String {
    resp.data::<PathPattern>()
        .filter(|p| !p.0.is_empty())
        .map(|p| documented(&p.0))
        .unwrap_or_else(|| UNMATCHED.to_owned())
}

fn openapi_syntax(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|seg| match seg.strip_prefix(':') {
            Some(name) => format!("{{{name}}}"),
            None => seg.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn internal_patterns_map_to_documented_paths() {
        assert_eq!(documented("/v1/products/:param0"), "/v1/products/{id}");
        assert_eq!(documented("/v1/products"), "/v1/products");
        assert_eq!(documented("/other/:x"), "/other/{x}");
        assert_eq!(param_name("/v1/products/:param0", "param0"), Some("id"));
        assert_eq!(param_name("/v1/products/:param0", "param1"), None);
        assert_eq!(param_name("/v1/products", "limit"), None);
    }

    #[test]
    fn a_405_can_name_the_allowed_methods() {
        let id = "0191e2b0-0000-7000-8000-000000000000";
        assert_eq!(
            allowed_methods(&format!("/v1/products/{id}")).as_deref(),
            Some("GET, PATCH")
        );
        assert_eq!(
            allowed_methods("/v1/products").as_deref(),
            Some("GET, POST")
        );
        assert_eq!(allowed_methods("/v1/nothing"), None);
    }

    #[test]
    fn responses_without_a_pattern_are_unmatched() {
        assert_eq!(template(&Response::default()), UNMATCHED);
        let mut resp = Response::default();
        resp.set_data(PathPattern(Arc::from("/v1/products/:param0")));
        assert_eq!(template(&resp), "/v1/products/{id}");
    }
}
