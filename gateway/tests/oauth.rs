//! OAuth 2.0 over real HTTP, as clients do it: the built-in authorization
//! server in front of the real users service (and the real catalog for
//! product writes) on a real nats-server, the resource server refusing bad
//! tokens, and external issuer mode against an issuer started here.

#[path = "support/oauth.rs"]
mod support;

use std::{collections::HashMap, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use jetshop_gateway::oauth::{
    keys::{KeyPair, KeyRing},
    mint::{ACCESS_TOKEN_TYP, AccessClaims, sign},
};
use jetshop_testkit::{eventually, free_port};
use poem::{
    EndpointExt, Route, Server, get, handler,
    listener::TcpListener,
    web::{Data, Json},
};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use support::*;

#[tokio::test]
async fn authorization_code_flow_with_pkce() -> Result<()> {
    let stack = Stack::start(Options::default()).await;

    let verifier = pkce_verifier();
    let got = stack
        .login(
            ADMIN_EMAIL,
            ADMIN_PASSWORD,
            &verifier,
            Some("openid email catalog:write"),
        )
        .await?;
    assert_eq!(got["state"], "st&ate=1", "state comes back intact");
    assert_eq!(got["iss"], stack.base, "RFC 9207 issuer");
    let code = got["code"].clone();

    // A wrong verifier is refused, and burns the code.
    let resp = stack.exchange(&code, &pkce_verifier()).await;
    assert_eq!(
        oauth_error(resp).await?,
        (StatusCode::BAD_REQUEST, "invalid_grant".into())
    );
    let resp = stack.exchange(&code, &verifier).await;
    assert_eq!(oauth_error(resp).await?.1, "invalid_grant");

    // A fresh code exchanges once.
    let verifier = pkce_verifier();
    let got = stack
        .login(
            ADMIN_EMAIL,
            ADMIN_PASSWORD,
            &verifier,
            Some("openid email catalog:write"),
        )
        .await?;
    let resp = stack.exchange(&got["code"], &verifier).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
    let tokens: Value = resp.json().await?;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert_eq!(tokens["scope"], "catalog:write email openid");
    let access = tokens["access_token"].as_str().context("access_token")?;
    assert!(tokens["id_token"].is_string(), "openid asked: an ID token");
    assert!(tokens["refresh_token"].is_string());
    // Code reuse is refused.
    let resp = stack.exchange(&got["code"], &verifier).await;
    assert_eq!(oauth_error(resp).await?.1, "invalid_grant");

    // The token works on /v1 and at userinfo.
    let me: Value = stack.get_with("/v1/users/me", access).await.json().await?;
    assert_eq!(me["id"], stack.admin_id.to_string());
    assert_eq!(me["roles"], json!(["admin"]));
    let info: Value = stack
        .get_with("/oauth/userinfo", access)
        .await
        .json()
        .await?;
    assert_eq!(info["sub"], stack.admin_id.to_string());
    assert_eq!(info["email"], ADMIN_EMAIL);

    // The header of the access token names a published key.
    let header = jsonwebtoken::decode_header(access)?;
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let jwks: Value = stack
        .http
        .get(stack.url("/.well-known/jwks.json"))
        .send()
        .await?
        .json()
        .await?;
    assert!(
        jwks["keys"]
            .as_array()
            .context("keys")?
            .iter()
            .any(|k| k["kid"] == header.kid.clone().unwrap()),
        "{jwks}"
    );
    let discovery: Value = stack
        .http
        .get(stack.url("/.well-known/openid-configuration"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(discovery["issuer"], stack.base);
    assert_eq!(discovery["token_endpoint"], stack.url("/oauth/token"));
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        json!(["S256"])
    );
    Ok(())
}

#[tokio::test]
async fn authorization_requests_are_checked() -> Result<()> {
    let stack = Stack::start(Options::default()).await;

    // A redirect URI that is not registered is shown on the page, never followed.
    let query = stack
        .auth_query("web", None, None)
        .replace("%2Fcb", "%2Fevil");
    let resp = stack.authorize_page(&query).await?;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.headers().get(header::LOCATION).is_none());
    assert!(
        resp.text()
            .await?
            .contains("redirect_uri is not registered")
    );
    // So is an unknown client.
    let resp = stack
        .authorize_page(&stack.auth_query("nobody", None, None))
        .await?;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.headers().get(header::LOCATION).is_none());

    // Other errors go back to the client with `error` and `state`.
    let back = |resp: reqwest::Response| async move {
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let location = resp.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .to_owned();
        let query: HashMap<String, String> = url::Url::parse(&location)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        assert_eq!(query["state"], "st&ate=1");
        query["error"].clone()
    };
    let plain = stack
        .auth_query("web", None, None)
        .replace("code_challenge_method=S256", "code_challenge_method=plain");
    assert_eq!(
        back(stack.authorize_page(&plain).await?).await,
        "invalid_request"
    );
    let no_pkce: String = stack
        .auth_query("web", None, None)
        .split('&')
        .filter(|p| !p.starts_with("code_challenge"))
        .collect::<Vec<_>>()
        .join("&");
    assert_eq!(
        back(stack.authorize_page(&no_pkce).await?).await,
        "invalid_request"
    );
    let implicit = stack
        .auth_query("web", None, None)
        .replace("response_type=code", "response_type=token");
    assert_eq!(
        back(stack.authorize_page(&implicit).await?).await,
        "unsupported_response_type"
    );
    let scope = stack.auth_query("web", None, Some("users:admin"));
    assert_eq!(
        back(stack.authorize_page(&scope).await?).await,
        "invalid_scope"
    );

    // A wrong password shows the page again; a tampered request is refused.
    let page = stack
        .authorize_page(&stack.auth_query("web", None, None))
        .await?
        .text()
        .await?;
    let request = hidden_request(&page)?;
    let resp = stack
        .http
        .post(stack.url("/oauth/authorize"))
        .form(&[
            ("request", request.as_str()),
            ("email", ADMIN_EMAIL),
            ("password", "wrong password!!"),
        ])
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        resp.text()
            .await?
            .contains("email or password is incorrect")
    );
    let tampered = format!("{}x", &request[..request.len() - 1]);
    let resp = stack
        .http
        .post(stack.url("/oauth/authorize"))
        .form(&[
            ("request", tampered.as_str()),
            ("email", ADMIN_EMAIL),
            ("password", ADMIN_PASSWORD),
        ])
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.headers().get(header::LOCATION).is_none());

    // A customer asking for catalog:write does not get it.
    let tokens = stack
        .tokens_for(
            CUSTOMER_EMAIL,
            CUSTOMER_PASSWORD,
            Some("openid catalog:write"),
        )
        .await?;
    assert_eq!(tokens["scope"], "openid");

    // The password and implicit grants are not offered.
    let resp = stack
        .token(&[
            ("grant_type", "password"),
            ("username", ADMIN_EMAIL),
            ("password", ADMIN_PASSWORD),
            ("client_id", "web"),
        ])
        .await;
    assert_eq!(oauth_error(resp).await?.1, "unsupported_grant_type");
    Ok(())
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() -> Result<()> {
    let stack = Stack::start(Options::default()).await;
    let tokens = stack
        .tokens_for(ADMIN_EMAIL, ADMIN_PASSWORD, Some("openid catalog:write"))
        .await?;
    let first = tokens["refresh_token"]
        .as_str()
        .context("refresh_token")?
        .to_owned();

    let refresh = |token: String| {
        let stack = &stack;
        async move {
            stack
                .token(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &token),
                    ("client_id", "web"),
                ])
                .await
        }
    };
    let resp = refresh(first.clone()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let rotated: Value = resp.json().await?;
    let second = rotated["refresh_token"]
        .as_str()
        .context("rotated")?
        .to_owned();
    assert_ne!(first, second, "rotated on use");
    assert_eq!(rotated["scope"], "catalog:write openid");
    assert_eq!(
        stack
            .get_with("/v1/users/me", rotated["access_token"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK
    );

    // Presenting the first token again revokes the family: the second dies too.
    assert_eq!(oauth_error(refresh(first).await).await?.1, "invalid_grant");
    assert_eq!(oauth_error(refresh(second).await).await?.1, "invalid_grant");

    // Revocation (RFC 7009): 200, and the token is dead; unknown tokens are 200 too.
    let tokens = stack.tokens_for(ADMIN_EMAIL, ADMIN_PASSWORD, None).await?;
    let token = tokens["refresh_token"].as_str().unwrap().to_owned();
    for t in [
        token.as_str(),
        "no-such-token",
        tokens["access_token"].as_str().unwrap(),
    ] {
        let resp = stack
            .http
            .post(stack.url("/oauth/revoke"))
            .form(&[("token", t), ("client_id", "web")])
            .send()
            .await?;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(oauth_error(refresh(token).await).await?.1, "invalid_grant");
    Ok(())
}

#[tokio::test]
async fn client_credentials_and_admin_product_writes() -> Result<()> {
    let stack = Stack::start(Options {
        catalog: true,
        ..Default::default()
    })
    .await;

    // Wrong secrets and public clients are refused.
    let resp = stack
        .http
        .post(stack.url("/oauth/token"))
        .basic_auth("machine", Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?;
    assert!(resp.headers().get(header::WWW_AUTHENTICATE).is_some());
    assert_eq!(
        oauth_error(resp).await?,
        (StatusCode::UNAUTHORIZED, "invalid_client".into())
    );
    let resp = stack
        .token(&[("grant_type", "client_credentials"), ("client_id", "web")])
        .await;
    assert_eq!(oauth_error(resp).await?.1, "unauthorized_client");
    // The secret in the form works too; a scope it was not given does not.
    let resp = stack
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "machine"),
            ("client_secret", &stack.machine_secret),
            ("scope", "users:admin"),
        ])
        .await;
    assert_eq!(oauth_error(resp).await?.1, "invalid_scope");

    let machine = stack.machine_token(Some("catalog:write")).await?;
    assert!(machine.get("refresh_token").is_none());
    let token = machine["access_token"].as_str().context("access_token")?;

    // No token: 401 with a bare challenge; a token without the scope: 403.
    let body = json!({"sku": "api-1", "name": "From the API", "price": {"amount_minor": 1250, "currency": "eur"}, "stock": 3});
    let resp = stack
        .http
        .post(stack.url("/v1/products"))
        .json(&body)
        .send()
        .await?;
    let (status, www) = challenge(resp).await?;
    assert_eq!(
        (status, www.as_str()),
        (StatusCode::UNAUTHORIZED, r#"Bearer realm="jetshop""#)
    );
    let reader = stack.machine_token(Some("orders:read")).await?;
    let resp = stack
        .http
        .post(stack.url("/v1/products"))
        .bearer_auth(reader["access_token"].as_str().unwrap())
        .json(&body)
        .send()
        .await?;
    let (status, www) = challenge(resp).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        www.contains(r#"error="insufficient_scope""#) && www.contains(r#"scope="catalog:write""#),
        "{www}"
    );

    // Bad bodies are 400 problems, not dead letters.
    for bad in [
        json!({"sku": "bad sku!", "name": "x", "price": {"amount_minor": 1, "currency": "EUR"}}),
        json!({"sku": "ok", "name": "x", "price": {"amount_minor": -1, "currency": "EUR"}}),
        json!({"sku": "ok", "name": "x", "price": {"amount_minor": 1, "currency": "EUR"}, "colour": "red"}),
    ] {
        let resp = stack
            .http
            .post(stack.url("/v1/products"))
            .bearer_auth(token)
            .json(&bad)
            .send()
            .await?;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
    }

    // 202 with a Location that serves the product shortly after.
    let resp = eventually("the catalog's command stream", WAIT, || async {
        let resp = stack
            .http
            .post(stack.url("/v1/products"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .ok()?;
        (resp.status() != StatusCode::SERVICE_UNAVAILABLE).then_some(resp)
    })
    .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = resp.headers()[header::LOCATION].to_str()?.to_owned();
    let accepted: Value = resp.json().await?;
    assert_eq!(
        location,
        format!("/v1/products/{}", accepted["id"].as_str().unwrap())
    );
    let product: Value = eventually("the product to appear", WAIT, || async {
        let resp = stack.http.get(stack.url(&location)).send().await.ok()?;
        (resp.status() == StatusCode::OK).then_some(resp.json().await.ok()?)
    })
    .await;
    assert_eq!(
        (product["sku"].as_str(), product["stock"].as_i64()),
        (Some("API-1"), Some(3))
    );
    assert_eq!(product["price"]["currency"], "EUR");

    // A create that would clash is refused now rather than dead-lettered later.
    for (clash, why) in [
        (
            json!({"sku": "Api-1", "name": "Same sku", "price": {"amount_minor": 1, "currency": "EUR"}}),
            "sku",
        ),
        (
            json!({"id": accepted["id"], "sku": "API-OTHER", "name": "Same id", "price": {"amount_minor": 1, "currency": "EUR"}}),
            "id",
        ),
    ] {
        let resp = stack
            .http
            .post(stack.url("/v1/products"))
            .bearer_auth(token)
            .json(&clash)
            .send()
            .await?;
        assert_eq!(resp.status(), StatusCode::CONFLICT, "{why}");
        let problem: Value = resp.json().await?;
        assert!(
            problem["detail"].as_str().unwrap_or("").contains(why),
            "{problem}"
        );
    }
    let by_sku: Value = stack
        .http
        .get(stack.url("/v1/products?sku=api-1"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(by_sku["items"][0]["id"], accepted["id"]);

    // PATCH and PUT stock.
    let resp = stack
        .http
        .patch(stack.url(&location))
        .bearer_auth(token)
        .json(&json!({"name": "Renamed"}))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = stack
        .http
        .put(stack.url(&format!("{location}/stock")))
        .bearer_auth(token)
        .json(&json!({"stock": 10}))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    eventually("both changes to show", WAIT, || async {
        let p: Value = stack
            .http
            .get(stack.url(&location))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (p["name"] == "Renamed" && p["stock"] == 10).then_some(())
    })
    .await;
    let resp = stack
        .http
        .patch(stack.url(&location))
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = stack
        .http
        .put(stack.url(&format!("/v1/products/{}/stock", Uuid::new_v4())))
        .bearer_auth(token)
        .json(&json!({"stock": 1}))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // A client token speaks for no account.
    let resp = stack.get_with("/v1/users/me", token).await;
    assert_eq!(challenge(resp).await?.0, StatusCode::FORBIDDEN);
    Ok(())
}

fn claims(stack_base: &str, sub: Uuid) -> AccessClaims {
    let now = chrono::Utc::now().timestamp();
    AccessClaims {
        iss: stack_base.to_owned(),
        sub: sub.to_string(),
        aud: "jetshop".into(),
        exp: now + 300,
        nbf: now,
        iat: now,
        jti: Uuid::new_v4().to_string(),
        scope: "catalog:write".into(),
        client_id: "web".into(),
        roles: vec!["admin".into()],
    }
}

#[tokio::test]
async fn bad_tokens_are_refused_with_a_challenge() -> Result<()> {
    let key = KeyPair::generate();
    let pem = key.to_pem();
    let stack = Stack::start(Options {
        signing_key: Some(key),
        ..Default::default()
    })
    .await;
    let key = KeyPair::from_pem(&pem).context("key")?;
    let good = claims(&stack.base, stack.admin_id);
    let now = chrono::Utc::now().timestamp();
    let at = |c: &AccessClaims| sign(&key, ACCESS_TOKEN_TYP, c);

    // Our key, our claims: accepted (the control case).
    assert_eq!(
        stack.get_with("/v1/users/me", &at(&good)).await.status(),
        StatusCode::OK
    );

    let b64 = |v: Value| jetshop_gateway::oauth::b64url(v.to_string().as_bytes());
    let body = b64(serde_json::to_value(&good)?);
    let hs256 = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some(key.kid().to_owned());
        h.typ = Some(ACCESS_TOKEN_TYP.into());
        jsonwebtoken::encode(
            &h,
            &good,
            &jsonwebtoken::EncodingKey::from_secret(b"guessable"),
        )?
    };
    let cases = [
        (
            "forged",
            sign(&KeyPair::generate(), ACCESS_TOKEN_TYP, &good),
            "unknown key",
        ),
        (
            "expired",
            at(&AccessClaims {
                exp: now - 120,
                ..good.clone()
            }),
            "expired",
        ),
        (
            "not yet valid",
            at(&AccessClaims {
                nbf: now + 600,
                ..good.clone()
            }),
            "not valid yet",
        ),
        (
            "wrong audience",
            at(&AccessClaims {
                aud: "other-api".into(),
                ..good.clone()
            }),
            "audience",
        ),
        (
            "wrong issuer",
            at(&AccessClaims {
                iss: "http://evil.example".into(),
                ..good.clone()
            }),
            "issuer",
        ),
        (
            "alg none",
            format!(
                "{}.{body}.",
                b64(json!({"alg": "none", "typ": "at+jwt", "kid": key.kid()}))
            ),
            "algorithm",
        ),
        ("HS256", hs256, "algorithm"),
        ("garbage", "not.a.jwt".to_owned(), "malformed"),
    ];
    for (name, token, why) in cases {
        let resp = stack.get_with("/v1/users/me", &token).await;
        let (status, www) = challenge(resp).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        assert!(www.contains(r#"error="invalid_token""#), "{name}: {www}");
        assert!(www.contains(why), "{name}: {www}");
        assert!(!www.contains(&token), "{name}: the token is echoed");
    }

    // Public reads ignore tokens; the spec says so.
    let resp = stack.get_with("/v1/products", "not.a.jwt").await;
    assert_ne!(resp.status(), StatusCode::UNAUTHORIZED);
    let spec: Value = stack
        .http
        .get(stack.url("/openapi.json"))
        .send()
        .await?
        .json()
        .await?;
    let create = &spec["paths"]["/v1/products"]["post"];
    assert_eq!(
        create["security"][0]["oauth2"],
        json!(["catalog:write"]),
        "{create}"
    );
    assert!(create["responses"]["401"].is_object() && create["responses"]["403"].is_object());
    let list = &spec["paths"]["/v1/products"]["get"]["security"];
    assert!(
        list.as_array().context("security")?.contains(&json!({})),
        "{list}"
    );
    let flows = &spec["components"]["securitySchemes"]["oauth2"]["flows"];
    assert_eq!(
        flows["authorizationCode"]["authorizationUrl"],
        "/oauth/authorize"
    );

    // Swagger UI signs in with PKCE as swagger-ui.
    let docs = stack
        .http
        .get(stack.url("/docs"))
        .send()
        .await?
        .text()
        .await?;
    assert!(docs.contains("usePkceWithAuthorizationCodeGrant: true"));
    assert!(docs.contains(r#"clientId: "swagger-ui""#));
    Ok(())
}

#[tokio::test]
async fn registration_and_profile() -> Result<()> {
    let stack = Stack::start(Options::default()).await;
    let register = |body: Value| {
        let stack = &stack;
        async move {
            stack
                .http
                .post(stack.url("/v1/users"))
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let resp = register(json!({"email": "New.Person@Example.com", "password": "correct horse battery", "display_name": "New"})).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()[header::LOCATION].to_str()?.to_owned();
    let user: Value = resp.json().await?;
    assert_eq!(user["email"], "new.person@example.com");
    assert_eq!(user["roles"], json!(["customer"]));
    assert_eq!(
        location,
        format!("/v1/users/{}", user["id"].as_str().unwrap())
    );

    // The same email in another case is taken.
    let resp =
        register(json!({"email": "NEW.person@example.COM", "password": "another fine passphrase"}))
            .await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    // Weak password, malformed email, unknown field: 400 naming the field.
    for (body, field) in [
        (
            json!({"email": "weak@example.com", "password": "short"}),
            "password",
        ),
        (
            json!({"email": "weak@example.com", "password": "password1234"}),
            "password",
        ),
        (
            json!({"email": "not-an-email", "password": "a fine long passphrase"}),
            "email",
        ),
        (
            json!({"email": "x@example.com", "password": "a fine long passphrase", "role": "admin"}),
            "role",
        ),
    ] {
        let resp = register(body.clone()).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{body}");
        let problem: Value = resp.json().await?;
        assert!(problem.to_string().contains(field), "{body}: {problem}");
    }

    // The new customer signs in, sees and changes only their own account.
    let tokens = stack
        .tokens_for(
            "new.person@example.com",
            "correct horse battery",
            Some("openid"),
        )
        .await?;
    let token = tokens["access_token"].as_str().unwrap();
    assert_eq!(
        stack.get_with(&location, token).await.status(),
        StatusCode::OK
    );
    let other = stack
        .get_with(&format!("/v1/users/{}", stack.customer_id), token)
        .await;
    assert_eq!(challenge(other).await?.0, StatusCode::FORBIDDEN);
    let resp = stack
        .http
        .patch(stack.url("/v1/users/me"))
        .bearer_auth(token)
        .json(&json!({"display_name": "Renamed Person"}))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.json::<Value>().await?["display_name"],
        "Renamed Person"
    );

    // A value of another JSON type than the schema's string is refused,
    // not coerced into the name "false", and changes nothing.
    for wrong in [json!(false), json!(12), json!(null)] {
        let resp = stack
            .http
            .patch(stack.url("/v1/users/me"))
            .bearer_auth(token)
            .json(&json!({ "display_name": wrong }))
            .send()
            .await?;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{wrong}");
        let problem: Value = resp.json().await?;
        assert_eq!(problem["errors"][0]["name"], "display_name", "{problem}");
    }
    let me: Value = stack.get_with("/v1/users/me", token).await.json().await?;
    assert_eq!(me["display_name"], "Renamed Person");
    Ok(())
}

/// A minimal OpenID Connect issuer: discovery and JWKS from a key ring.
#[derive(Clone)]
struct TestIssuer {
    base: String,
    ring: Arc<KeyRing>,
}

#[handler]
fn test_discovery(Data(issuer): Data<&TestIssuer>) -> Json<Value> {
    Json(json!({"issuer": issuer.base, "jwks_uri": format!("{}/keys", issuer.base)}))
}

#[handler]
fn test_jwks(Data(issuer): Data<&TestIssuer>) -> Json<Value> {
    Json(serde_json::to_value(issuer.ring.jwks()).unwrap())
}

#[tokio::test]
async fn external_issuer_mode_follows_key_rotation() -> Result<()> {
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    // The issuer's URL must be known before it serves.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let issuer = TestIssuer {
        base: base.clone(),
        ring: Arc::new(KeyRing::ephemeral(Duration::from_secs(900))),
    };
    let app = Route::new()
        .at("/.well-known/openid-configuration", get(test_discovery))
        .at("/keys", get(test_jwks))
        .data(issuer.clone());
    let stop2 = stop.clone();
    tokio::spawn(async move {
        Server::new(TcpListener::bind(format!("127.0.0.1:{port}")))
            .run_with_graceful_shutdown(app, stop2.cancelled_owned(), None)
            .await
    });

    let stack = Stack::start(Options {
        issuer: Some(base.clone()),
        ..Default::default()
    })
    .await;
    let external_token = |ring: &KeyRing| {
        let c = AccessClaims {
            iss: base.clone(),
            ..claims(&base, stack.customer_id)
        };
        sign(&ring.current(), "JWT", &c)
    };
    let token = external_token(&issuer.ring);
    let me = eventually("the external token to be accepted", WAIT, || async {
        let resp = stack.get_with("/v1/users/me", &token).await;
        (resp.status() == StatusCode::OK).then_some(resp)
    })
    .await;
    assert_eq!(
        me.json::<Value>().await?["id"],
        stack.customer_id.to_string()
    );

    // Our own server is not mounted.
    for path in [
        "/oauth/token",
        "/.well-known/openid-configuration",
        "/.well-known/jwks.json",
    ] {
        let resp = stack.http.get(stack.url(path)).send().await?;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // A token of our kind, signed by another key, is still refused.
    let forged = sign(
        &KeyPair::generate(),
        "JWT",
        &AccessClaims {
            iss: base.clone(),
            ..claims(&base, stack.customer_id)
        },
    );
    assert_eq!(
        challenge(stack.get_with("/v1/users/me", &forged).await)
            .await?
            .0,
        StatusCode::UNAUTHORIZED
    );

    // The issuer rotates: the new kid is fetched (at most once per 10 s).
    issuer.ring.rotate()?;
    let rotated = external_token(&issuer.ring);
    eventually(
        "the rotated key to be picked up",
        Duration::from_secs(30),
        || async {
            (stack.get_with("/v1/users/me", &rotated).await.status() == StatusCode::OK)
                .then_some(())
        },
    )
    .await;
    // Tokens of the previous key still pass while it is published.
    assert_eq!(
        stack.get_with("/v1/users/me", &token).await.status(),
        StatusCode::OK
    );
    Ok(())
}

#[tokio::test]
async fn an_idempotent_product_create_acts_once() -> Result<()> {
    let stack = Stack::start(Options {
        catalog: true,
        ..Default::default()
    })
    .await;
    let token = stack.machine_token(Some("catalog:write")).await?;
    let token = token["access_token"].as_str().context("access_token")?;
    let post = |body: Value, key: &'static str| {
        stack
            .http
            .post(stack.url("/v1/products"))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let body = json!({"sku": "IDEM-1", "name": "Once", "price": {"amount_minor": 100, "currency": "EUR"}, "stock": 1});

    let first = post(body.clone(), "create-idem-1").await?;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let location = first.headers()[header::LOCATION].to_str()?.to_owned();
    let first_body = first.text().await?;

    // The client retries (a lost response, a double click): same answer, no second product.
    let again = post(body.clone(), "create-idem-1").await?;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.headers()[header::LOCATION].to_str()?, location);
    assert_eq!(again.headers()["idempotent-replayed"].to_str()?, "true");
    assert_eq!(again.text().await?, first_body);

    // The same key for another body is a client bug.
    let other = json!({"sku": "IDEM-2", "name": "Other", "price": {"amount_minor": 100, "currency": "EUR"}, "stock": 1});
    let conflict = post(other, "create-idem-1").await?;
    assert_eq!(conflict.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // The product exists once, and the catalog published exactly one event.
    eventually("the product", Duration::from_secs(10), || async {
        let r = stack.http.get(stack.url(&location)).send().await.ok()?;
        (r.status() == StatusCode::OK).then_some(())
    })
    .await;
    let client = async_nats::connect(stack.nats_url()).await?;
    let js = async_nats::jetstream::new(client);
    // Give a duplicate command time to be applied, if one had been sent.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut events = js
        .get_stream(jetshop_contracts::streams::CATALOG_EVENTS)
        .await?;
    assert_eq!(events.info().await?.state.messages, 1);
    let page: Value = stack
        .http
        .get(stack.url("/v1/products?q=IDEM"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(page["items"].as_array().context("items")?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn any_replica_redeems_what_another_issued() -> Result<()> {
    // Replicas share a signing key (here one PEM file) and a public URL;
    // codes, refresh tokens and revocations live in the users service.
    let stack = Stack::start(Options {
        signing_key: Some(KeyPair::generate()),
        ..Default::default()
    })
    .await;
    let other = stack.replica().await;
    let post = |base: &str, form: Vec<(&'static str, String)>| {
        stack
            .http
            .post(format!("{base}/oauth/token"))
            .form(&form)
            .send()
    };

    // Logged in on the first replica, the code is redeemed on the second.
    let verifier = pkce_verifier();
    let got = stack
        .login(
            ADMIN_EMAIL,
            ADMIN_PASSWORD,
            &verifier,
            Some("openid catalog:write"),
        )
        .await?;
    let resp = post(
        &other,
        vec![
            ("grant_type", "authorization_code".into()),
            ("code", got["code"].clone()),
            ("redirect_uri", stack.redirect_uri.clone()),
            ("client_id", "web".into()),
            ("code_verifier", verifier),
        ],
    )
    .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let tokens: Value = resp.json().await?;
    let access = tokens["access_token"].as_str().context("access_token")?;
    let refresh = tokens["refresh_token"]
        .as_str()
        .context("refresh_token")?
        .to_owned();

    // The access token is good on both replicas.
    for base in [stack.base.as_str(), other.as_str()] {
        let me = stack
            .http
            .get(format!("{base}/v1/users/me"))
            .bearer_auth(access)
            .send()
            .await?;
        assert_eq!(me.status(), StatusCode::OK, "{base}");
    }

    // Rotated on the first, the old refresh token replayed on the second is
    // reuse: the family is revoked everywhere.
    let rotated = post(
        &stack.base,
        vec![
            ("grant_type", "refresh_token".into()),
            ("refresh_token", refresh.clone()),
            ("client_id", "web".into()),
        ],
    )
    .await?;
    assert_eq!(rotated.status(), StatusCode::OK);
    let successor = rotated.json::<Value>().await?["refresh_token"]
        .as_str()
        .context("successor")?
        .to_owned();
    let reused = post(
        &other,
        vec![
            ("grant_type", "refresh_token".into()),
            ("refresh_token", refresh),
            ("client_id", "web".into()),
        ],
    )
    .await?;
    assert_eq!(oauth_error(reused).await?.1, "invalid_grant");
    let after = post(
        &stack.base,
        vec![
            ("grant_type", "refresh_token".into()),
            ("refresh_token", successor),
            ("client_id", "web".into()),
        ],
    )
    .await?;
    assert_eq!(oauth_error(after).await?.1, "invalid_grant");
    Ok(())
}
