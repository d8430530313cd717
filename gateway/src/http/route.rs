//! Route templates as the OpenAPI document names them (`/v1/products/{id}`,
//! never the raw path), for metric labels, span names and error messages.
//!
//! poem-openapi routes `/v1/products/{id}` internally as
//! `/v1/products/:param0`; the [`RouteTable`], built by the app from the
//! operations' metadata and handed to every request as data, maps such
//! patterns back to the documented path and parameter names.

use std::sync::Arc;

use poem::{PathPattern, Request, Response};
use poem_openapi::registry::MetaApi;

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

/// Every documented route, and the plain routes outside the document.
#[derive(Debug, Default)]
pub struct RouteTable {
    templates: Vec<Template>,
    /// Plain routes outside the OpenAPI document that answer GET only.
    get_only: Vec<String>,
}

impl RouteTable {
    /// The table of the operations `apis` describe.
    pub fn from_meta(apis: Vec<MetaApi>) -> Self {
        let templates = apis
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
            .collect();
        Self {
            templates,
            get_only: Vec::new(),
        }
    }

    /// The same table, knowing plain routes that answer GET only.
    pub fn with_get_only<S: Into<String>>(mut self, paths: impl IntoIterator<Item = S>) -> Self {
        self.get_only.extend(paths.into_iter().map(Into::into));
        self
    }

    /// The table the app installed in `req`'s data (an empty one outside it,
    /// which names routes in OpenAPI syntax only).
    pub fn of(req: &Request) -> Arc<Self> {
        req.data::<Arc<Self>>().cloned().unwrap_or_default()
    }

    fn find(&self, pattern: &str) -> Option<&Template> {
        self.templates.iter().find(|t| t.poem == pattern)
    }

    /// The documented route of a matched Poem pattern; other patterns in
    /// OpenAPI syntax (`:x` becomes `{x}`).
    pub fn documented(&self, pattern: &str) -> String {
        match self.find(pattern) {
            Some(t) => t.openapi.clone(),
            None => openapi_syntax(pattern),
        }
    }

    /// The documented name of poem-openapi's internal path parameter
    /// `internal` (`param0`) in the route matched by `pattern`.
    pub fn param_name(&self, pattern: &str, internal: &str) -> Option<&str> {
        let index: usize = internal.strip_prefix("param")?.parse().ok()?;
        self.find(pattern)?.params.get(index).map(String::as_str)
    }

    /// The methods a documented route answers, for a 405's `Allow` header
    /// (RFC 9110 requires it); `None` when no documented route fits `path`.
    pub fn allowed_methods(&self, path: &str) -> Option<String> {
        if self.get_only.iter().any(|p| p == path) {
            return Some("GET".into());
        }
        let mut methods: Vec<&str> = self
            .templates
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
    pub fn template(&self, resp: &Response) -> String {
        resp.data::<PathPattern>()
            .filter(|p| !p.0.is_empty())
            .map(|p| self.documented(&p.0))
            .unwrap_or_else(|| UNMATCHED.to_owned())
    }
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
    use poem_openapi::{OpenApi, param::Path, payload::PlainText};

    use super::*;

    struct Things;

    #[OpenApi]
    impl Things {
        #[oai(path = "/v1/things", method = "get")]
        async fn list(&self) -> PlainText<&'static str> {
            PlainText("")
        }

        #[oai(path = "/v1/things", method = "post")]
        async fn create(&self) -> PlainText<&'static str> {
            PlainText("")
        }

        #[oai(path = "/v1/things/:id", method = "get")]
        async fn get(&self, id: Path<String>) -> PlainText<String> {
            PlainText(id.0)
        }

        #[oai(path = "/v1/things/:id", method = "patch")]
        async fn patch(&self, id: Path<String>) -> PlainText<String> {
            PlainText(id.0)
        }
    }

    fn table() -> RouteTable {
        RouteTable::from_meta(Things::meta()).with_get_only(["/healthz"])
    }

    #[test]
    fn internal_patterns_map_to_documented_paths() {
        let t = table();
        assert_eq!(t.documented("/v1/things/:param0"), "/v1/things/{id}");
        assert_eq!(t.documented("/v1/things"), "/v1/things");
        assert_eq!(t.documented("/other/:x"), "/other/{x}");
        assert_eq!(t.param_name("/v1/things/:param0", "param0"), Some("id"));
        assert_eq!(t.param_name("/v1/things/:param0", "param1"), None);
        assert_eq!(t.param_name("/v1/things", "limit"), None);
    }

    #[test]
    fn a_405_can_name_the_allowed_methods() {
        let t = table();
        assert_eq!(
            t.allowed_methods("/v1/things/x").as_deref(),
            Some("GET, PATCH")
        );
        assert_eq!(
            t.allowed_methods("/v1/things").as_deref(),
            Some("GET, POST")
        );
        assert_eq!(t.allowed_methods("/healthz").as_deref(), Some("GET"));
        assert_eq!(t.allowed_methods("/v1/nothing"), None);
    }

    #[test]
    fn responses_without_a_pattern_are_unmatched() {
        let t = table();
        assert_eq!(t.template(&Response::default()), UNMATCHED);
        let mut resp = Response::default();
        resp.set_data(PathPattern(Arc::from("/v1/things/:param0")));
        assert_eq!(t.template(&resp), "/v1/things/{id}");
    }

    #[test]
    fn outside_the_app_routes_are_named_in_openapi_syntax() {
        let req = Request::builder().finish();
        let t = RouteTable::of(&req);
        assert_eq!(t.documented("/v1/things/:id"), "/v1/things/{id}");
        assert_eq!(t.allowed_methods("/v1/things"), None);
    }
}
