//! The route template a response was served by (`/v1/products/{id}`, never
//! the raw path), for metric labels and span names with bounded cardinality.

use poem::{PathPattern, Response};

/// Label for requests no route matched.
pub const UNMATCHED: &str = "unmatched";

/// The innermost matched path pattern, in OpenAPI syntax (`{id}` rather
/// than Poem's `:id`), or [`UNMATCHED`].
pub fn template(resp: &Response) -> String {
    resp.data::<PathPattern>()
        .map(|p| openapi_syntax(&p.0))
        .filter(|p| !p.is_empty())
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
    fn poem_params_become_openapi_params() {
        assert_eq!(openapi_syntax("/v1/products/:id"), "/v1/products/{id}");
        assert_eq!(openapi_syntax("/healthz"), "/healthz");
    }

    #[test]
    fn responses_without_a_pattern_are_unmatched() {
        assert_eq!(template(&Response::default()), UNMATCHED);
        let mut resp = Response::default();
        resp.set_data(PathPattern(Arc::from("/v1/products/:id")));
        assert_eq!(template(&resp), "/v1/products/{id}");
    }
}
