//! Swagger UI with a working Authorize button: poem-openapi's page knows
//! no option for PKCE, so [`with_pkce`] rewrites the page as it is served
//! to call `initOAuth` with PKCE on and the public client `swagger-ui`
//! filled in, and to make the OAuth URLs of the document absolute against
//! the page (they are relative in the document, which is static).
//!
//! After signing in, Swagger UI's `/docs/oauth-receiver.html` gets the
//! code: the `swagger-ui` client must have `<public url>/docs/oauth-receiver.html`
//! as its redirect URI, exactly.

use poem::{Endpoint, EndpointExt, IntoResponse, Response, http::header};

/// The public OAuth client Swagger UI signs in as.
pub const SWAGGER_CLIENT_ID: &str = "swagger-ui";

/// What poem-openapi's page calls; we keep the returned UI object.
const BUNDLE_CALL: &str = "SwaggerUIBundle({";
/// How poem-openapi's page ends the call.
const BUNDLE_END: &str = "    })\n</script>";

/// Rewrite the page's HTML: PKCE on, client id filled in, absolute OAuth URLs.
pub fn rewrite(html: &str, client_id: &str) -> Option<String> {
    if !html.contains(BUNDLE_CALL) || !html.contains(BUNDLE_END) {
        return None;
    }
    let client_id = serde_json::to_string(client_id).ok()?;
    let prologue = "\
    for (const scheme of Object.values((spec.components || {}).securitySchemes || {})) {\n\
        for (const flow of Object.values(scheme.flows || {})) {\n\
            for (const key of ['authorizationUrl', 'tokenUrl', 'refreshUrl']) {\n\
                if (flow[key]) flow[key] = new URL(flow[key], window.location.href).href;\n\
            }\n\
        }\n\
    }\n    const ui = ";
    let epilogue = format!(
        "    }});\n    ui.initOAuth({{\n        clientId: {client_id},\n        \
         usePkceWithAuthorizationCodeGrant: true,\n    }});\n</script>"
    );
    Some(
        html.replacen(BUNDLE_CALL, &format!("{prologue}{BUNDLE_CALL}"), 1)
            .replacen(BUNDLE_END, &epilogue, 1),
    )
}

/// Wrap the Swagger UI endpoint so its page is rewritten by [`rewrite`].
pub fn with_pkce<E: Endpoint + 'static>(docs: E, client_id: &'static str) -> impl Endpoint {
    docs.after(move |result| async move {
        let resp = result?.into_response();
        let is_html = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/html"));
        if !is_html || !resp.status().is_success() {
            return Ok(resp);
        }
        let (parts, body) = resp.into_parts();
        let html = body.into_string().await?;
        let html = match rewrite(&html, client_id) {
            Some(new) => new,
            // The receiver page, or a page we do not recognise: unchanged.
            None => html,
        };
        let mut resp = Response::from_parts(parts, html.into());
        resp.headers_mut().remove(header::CONTENT_LENGTH);
        Ok(resp)
    })
}

#[cfg(test)]
mod tests {
    use poem::IntoResponse;

    use super::*;

    #[test]
    fn poem_openapi_page_is_recognised_and_rewritten() {
        let api = crate::api::spec::service();
        let ui = api.swagger_ui();
        let html = futures::executor::block_on(async {
            let resp = poem::Endpoint::call(&ui, poem::Request::builder().uri_str("/").finish());
            resp.await
                .unwrap()
                .into_response()
                .into_body()
                .into_string()
                .await
                .unwrap()
        });
        let new = rewrite(&html, "swagger-ui").expect("poem-openapi's page changed");
        assert!(new.contains("usePkceWithAuthorizationCodeGrant: true"));
        assert!(new.contains("clientId: \"swagger-ui\""));
        assert!(new.contains("const ui = SwaggerUIBundle({"));
        assert_eq!(rewrite("<html>other</html>", "x"), None);
    }
}
