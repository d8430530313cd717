//! `GET /oauth/authorize` and the login page it shows; `POST
//! /oauth/authorize` with the filled-in form.
//!
//! The GET checks the request (RFC 6749 section 4.1.1, RFC 7636): the
//! client exists, the redirect URI is one of its registered URIs exactly,
//! `response_type=code`, PKCE `S256` (required for public clients, `plain`
//! refused), the scopes are the client's. Errors about the client or the
//! redirect URI are shown on the page and never redirected (section
//! 4.1.2.1: redirecting to an unchecked URI would be an open redirect);
//! the others go back to the client with `error` and `state`.
//!
//! The page's form carries the checked request signed by the issuer's key
//! (10 minutes valid), so the POST trusts nothing else the browser sends
//! besides the email and password, and no session is kept. On success the
//! browser is sent (303) to the redirect URI with a single-use code that
//! the users service keeps, by hash, for `--oauth-code-ttl`.

use jetshop_platform::html::escape;
use std::{collections::BTreeSet, sync::Arc};

use chrono::Utc;
use jetshop_contracts::users::{GetClient, GrantType, OAuthClient, StoreCode, VerifyCredentials};
use jetshop_platform::{envelope::MessageMeta, rpc::RpcClient};
use poem::{
    Body, Request, Response, handler,
    http::{HeaderValue, StatusCode, header},
    web::Data,
};
use serde::{Deserialize, Serialize};
use url::Url;

use super::{
    AUTHORIZE_PATH, Issuer, error::OAuthError, form::Params, mint, no_store, pkce, random_token,
    sha256_hex,
};
use crate::{
    auth::{
        jwt::{self, TokenError},
        scopes,
    },
    http::request_id::RequestId,
};

/// The `typ` of a signed authorization request.
const REQUEST_TYP: &str = "authz-req+jwt";
/// How long the login page stays usable.
const REQUEST_TTL_SECS: i64 = 600;
/// Longest `state` or `nonce` we carry.
const MAX_OPAQUE: usize = 512;

/// A checked authorization request, as signed into the login form.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Checked {
    iss: String,
    aud: String,
    sub: String,
    exp: i64,
    iat: i64,
    client_id: String,
    client_name: String,
    redirect_uri: String,
    scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code_challenge: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
}

/// How a request failed.
enum Refusal {
    /// Shown on the page: the client or redirect URI cannot be trusted.
    Page(StatusCode, String),
    /// Sent back to the client.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

impl Issuer {
    fn request_audience(&self) -> String {
        self.url(AUTHORIZE_PATH)
    }
}

/// `GET /oauth/authorize`.
#[handler]
pub async fn show(
    req: &Request,
    Data(issuer): Data<&Arc<Issuer>>,
    Data(rpc): Data<&RpcClient>,
    Data(request_id): Data<&RequestId>,
) -> Response {
    let meta = MessageMeta::correlated(request_id.as_str());
    match check(req, issuer, rpc, &meta).await {
        Ok(checked) => {
            let signed = mint::sign(&issuer.keys().current(), REQUEST_TYP, &checked);
            login_page(&checked, &signed, None, StatusCode::OK)
        }
        Err(refusal) => refuse(issuer, refusal),
    }
}

async fn check(
    req: &Request,
    issuer: &Issuer,
    rpc: &RpcClient,
    meta: &MessageMeta,
) -> Result<Checked, Refusal> {
    let page = |s: &str| Refusal::Page(StatusCode::BAD_REQUEST, s.to_owned());
    let params = Params::from_query(req).map_err(|e| page(&e.description))?;
    let client_id = params
        .get("client_id")
        .ok_or_else(|| page("The request names no client (client_id is missing)."))?;
    let client: OAuthClient = rpc
        .call(
            &GetClient {
                client_id: client_id.to_owned(),
            },
            meta,
        )
        .await
        .map_err(
            |e| match OAuthError::from_call(&e, OAuthError::invalid_client(false)).status {
                StatusCode::UNAUTHORIZED => {
                    page("This application is not registered (unknown client_id).")
                }
                _ => Refusal::Page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Sign-in is unavailable right now; please try again in a moment.".into(),
                ),
            },
        )?;
    let redirect_uri = match params.get("redirect_uri") {
        Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => uri.to_owned(),
        Some(_) => {
            return Err(page(
                "The redirect_uri is not registered for this application.",
            ));
        }
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => return Err(page("The request has no redirect_uri.")),
    };
    if Url::parse(&redirect_uri).is_err() {
        return Err(page("The registered redirect_uri is not an absolute URL."));
    }
    let state = params.get("state").map(str::to_owned);
    let back = |error: &'static str, description: &str| Refusal::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        error,
        description: description.to_owned(),
    };
    if state.as_ref().is_some_and(|s| s.len() > MAX_OPAQUE) {
        return Err(back("invalid_request", "state is too long"));
    }
    match params.get("response_type") {
        Some("code") => {}
        Some(_) => {
            return Err(back(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
        None => return Err(back("invalid_request", "response_type is missing")),
    }
    if !client.grant_types.contains(&GrantType::AuthorizationCode) {
        return Err(back(
            "unauthorized_client",
            "this client may not use the authorization code grant",
        ));
    }
    let code_challenge = match (
        params.get("code_challenge"),
        params.get("code_challenge_method"),
    ) {
        (Some(_), Some(m)) if m != pkce::S256 => {
            return Err(back(
                "invalid_request",
                "code_challenge_method must be S256 (plain is not accepted)",
            ));
        }
        (Some(_), None) => {
            return Err(back(
                "invalid_request",
                "code_challenge_method must be S256 (plain is not accepted)",
            ));
        }
        (Some(c), Some(_)) if pkce::is_well_formed(c) => Some(c.to_owned()),
        (Some(_), Some(_)) => return Err(back("invalid_request", "code_challenge is malformed")),
        (None, _) if !client.confidential => {
            return Err(back(
                "invalid_request",
                "PKCE is required: send code_challenge with code_challenge_method=S256",
            ));
        }
        (None, _) => None,
    };
    let allowed: BTreeSet<String> = client.scopes.iter().cloned().collect();
    let scope = match params.get("scope") {
        Some(s) => {
            let asked = scopes::parse(s);
            if let Some(bad) = asked.iter().find(|s| !allowed.contains(*s)) {
                let bad = if scopes::is_valid_token(bad) {
                    bad.as_str()
                } else {
                    "?"
                };
                return Err(back(
                    "invalid_scope",
                    &format!("the scope `{bad}` is not available to this client"),
                ));
            }
            asked
        }
        None => allowed,
    };
    let nonce = params.get("nonce").map(str::to_owned);
    if nonce.as_ref().is_some_and(|n| n.len() > MAX_OPAQUE) {
        return Err(back("invalid_request", "nonce is too long"));
    }
    let now = Utc::now().timestamp();
    Ok(Checked {
        iss: issuer.issuer().to_owned(),
        aud: issuer.request_audience(),
        sub: client.client_id.clone(),
        exp: now + REQUEST_TTL_SECS,
        iat: now,
        client_id: client.client_id,
        client_name: client.name,
        redirect_uri,
        scope: scopes::join(&scope),
        state,
        code_challenge,
        nonce,
    })
}

/// `POST /oauth/authorize`: the login form.
#[handler]
pub async fn submit(
    req: &Request,
    body: Body,
    Data(issuer): Data<&Arc<Issuer>>,
    Data(rpc): Data<&RpcClient>,
    Data(request_id): Data<&RequestId>,
) -> Response {
    let meta = MessageMeta::correlated(request_id.as_str());
    let expired = || {
        refuse(
            issuer,
            Refusal::Page(
                StatusCode::BAD_REQUEST,
                "This sign-in page has expired or was altered. Go back to the application and sign in again."
                    .into(),
            ),
        )
    };
    let Ok(params) = Params::from_form(req, body).await else {
        return expired();
    };
    let Some(signed) = params.get("request") else {
        return expired();
    };
    let checked = match verify_request(issuer, signed) {
        Ok(checked) => checked,
        Err(_) => return expired(),
    };
    let (Some(email), Some(password)) = (params.get("email"), params.get("password")) else {
        return login_page(
            &checked,
            signed,
            Some("Enter your email and password."),
            StatusCode::BAD_REQUEST,
        );
    };
    let verify = VerifyCredentials {
        email: email.to_owned(),
        password: password.to_owned(),
    };
    // Not retried: a password check is slow on purpose.
    let user = match rpc.call_once(&verify, &meta).await {
        Ok(user) => user,
        Err(err) => {
            let e = OAuthError::from_call(&err, OAuthError::invalid_client(false));
            return if e.status == StatusCode::UNAUTHORIZED {
                tracing::info!(client_id = %checked.client_id, "sign-in refused");
                login_page(
                    &checked,
                    signed,
                    Some("The email or password is incorrect."),
                    StatusCode::UNAUTHORIZED,
                )
            } else {
                login_page(
                    &checked,
                    signed,
                    Some("Sign-in is unavailable right now; please try again in a moment."),
                    e.status,
                )
            };
        }
    };
    // What the account may hold, of what the client asked for.
    let granted = scopes::allowed_for_roles(&scopes::parse(&checked.scope), &user.roles);
    let code = random_token();
    let store = StoreCode {
        code_hash: sha256_hex(&code),
        client_id: checked.client_id.clone(),
        user_id: user.id,
        redirect_uri: checked.redirect_uri.clone(),
        scope: scopes::join(&granted),
        code_challenge: checked.code_challenge.clone().unwrap_or_default(),
        code_challenge_method: if checked.code_challenge.is_some() {
            pkce::S256.to_owned()
        } else {
            String::new()
        },
        nonce: checked.nonce.clone(),
        expires_at: Utc::now()
            + chrono::Duration::from_std(issuer.code_ttl).unwrap_or(chrono::Duration::seconds(60)),
    };
    if let Err(err) = rpc.call_once(&store, &meta).await {
        tracing::warn!(error = %err, client_id = %checked.client_id, "cannot store an authorization code");
        return login_page(
            &checked,
            signed,
            Some("Sign-in is unavailable right now; please try again in a moment."),
            StatusCode::SERVICE_UNAVAILABLE,
        );
    }
    tracing::info!(client_id = %checked.client_id, user_id = %user.id, "authorization code issued");
    redirect(
        &checked.redirect_uri,
        &[
            ("code", Some(code.as_str())),
            ("state", checked.state.as_deref()),
            ("iss", Some(issuer.issuer())),
        ],
    )
}

fn verify_request(issuer: &Issuer, signed: &str) -> Result<Checked, TokenError> {
    let header = jsonwebtoken::decode_header(signed).map_err(|_| TokenError::Malformed)?;
    if !jwt::is_typ(&header, REQUEST_TYP) {
        return Err(TokenError::Type);
    }
    jwt::verify_local(
        &**issuer.keys(),
        signed,
        &[jsonwebtoken::Algorithm::EdDSA],
        issuer.issuer(),
        &issuer.request_audience(),
    )
}

fn refuse(issuer: &Issuer, refusal: Refusal) -> Response {
    match refusal {
        Refusal::Page(status, message) => error_page(status, &message),
        Refusal::Redirect {
            redirect_uri,
            state,
            error,
            description,
        } => redirect(
            &redirect_uri,
            &[
                ("error", Some(error)),
                ("error_description", Some(description.as_str())),
                ("state", state.as_deref()),
                ("iss", Some(issuer.issuer())),
            ],
        ),
    }
}

/// 303 to a registered redirect URI with parameters added to its query.
fn redirect(redirect_uri: &str, params: &[(&str, Option<&str>)]) -> Response {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return error_page(StatusCode::BAD_REQUEST, "The redirect_uri is not a URL.");
    };
    {
        let mut q = url.query_pairs_mut();
        for (name, value) in params {
            if let Some(value) = value {
                q.append_pair(name, value);
            }
        }
    }
    no_store(
        Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header(header::LOCATION, url.as_str())
            .finish(),
    )
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:#f4f5f7;margin:0;\
display:flex;min-height:100vh;align-items:center;justify-content:center;color:#1f2430}\
main{background:#fff;padding:2rem 2.25rem;border-radius:12px;box-shadow:0 4px 24px rgba(0,0,0,.08);\
width:100%;max-width:22rem}\
h1{font-size:1.25rem;margin:0 0 .25rem}p{margin:.25rem 0 1rem;color:#555;font-size:.9rem}\
label{display:block;font-size:.85rem;margin:.75rem 0 .25rem}\
input{width:100%;box-sizing:border-box;padding:.6rem .7rem;border:1px solid #c9ccd3;border-radius:8px;font-size:1rem}\
button{margin-top:1.25rem;width:100%;padding:.7rem;border:0;border-radius:8px;background:#2b59c3;\
color:#fff;font-size:1rem;cursor:pointer}button:hover{background:#2148a3}\
.error{background:#fdecea;color:#8a1c12;padding:.6rem .75rem;border-radius:8px;font-size:.9rem}\
ul{padding-left:1.1rem;margin:.25rem 0 0;font-size:.85rem;color:#555}";

fn page(status: StatusCode, title: &str, content: &str, form_target: Option<&str>) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title} · jetshop</title><style>{STYLE}</style></head>\
         <body><main>{content}</main></body></html>",
        title = escape(title),
    );
    // The form posts to us, then we redirect to the client: browsers apply
    // `form-action` to that redirect too, so the client's origin is listed.
    let form_action = match form_target {
        Some(origin) => format!("'self' {origin}"),
        None => "'self'".to_owned(),
    };
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; form-action {form_action}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    let mut resp = no_store(
        Response::builder()
            .status(status)
            .content_type("text/html; charset=utf-8")
            .body(html),
    );
    let h = resp.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

fn login_page(
    checked: &Checked,
    signed: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let scopes: String = scopes::parse(&checked.scope)
        .iter()
        .map(|s| format!("<li>{}</li>", escape(s)))
        .collect();
    let scopes = if scopes.is_empty() {
        String::new()
    } else {
        format!("<p>It asks for:</p><ul>{scopes}</ul>")
    };
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let content = format!(
        "<h1>Sign in to jetshop</h1>\
         <p><strong>{client}</strong> wants to access your account.</p>{scopes}{error}\
         <form method=\"post\" action=\"{AUTHORIZE_PATH}\">\
         <input type=\"hidden\" name=\"request\" value=\"{signed}\">\
         <label for=\"email\">Email</label>\
         <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required autofocus>\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>",
        client = escape(&checked.client_name),
        signed = escape(signed),
    );
    let origin = Url::parse(&checked.redirect_uri)
        .ok()
        .map(|u| u.origin().ascii_serialization())
        .filter(|o| o != "null");
    page(status, "Sign in", &content, origin.as_deref())
}

fn error_page(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Cannot sign in",
        &format!(
            "<h1>Cannot sign in</h1><p class=\"error\" role=\"alert\">{}</p>",
            escape(message)
        ),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn redirects_keep_the_registered_query() {
        let resp = redirect(
            "https://app.example/cb?tenant=1",
            &[
                ("code", Some("a b")),
                ("state", None),
                ("iss", Some("http://x")),
            ],
        );
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            resp.headers()[header::LOCATION],
            "https://app.example/cb?tenant=1&code=a+b&iss=http%3A%2F%2Fx"
        );
    }
}
