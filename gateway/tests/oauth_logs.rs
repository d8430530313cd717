//! No credential of a real OAuth session reaches a log line: the password,
//! the authorization code and its PKCE verifier, the access, refresh and ID
//! tokens, the client secret, and the SHA-256 hashes the users service
//! stores, while every log line (DEBUG and up, every crate, the users
//! service included) is captured. Its own binary: the subscriber is global.

#[path = "support/oauth.rs"]
mod support;

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use anyhow::{Context, Result};
use jetshop_gateway::oauth::sha256_hex;
use reqwest::StatusCode;
use serde_json::Value;

use support::*;

/// Everything written to the log, shared with the subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_oauth_credential_reaches_a_log_line() -> Result<()> {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let stack = Stack::start(Options::default()).await;
    let mut secrets = vec![ADMIN_PASSWORD.to_owned(), stack.machine_secret.clone()];

    // The code flow, a wrong password first.
    let page = stack
        .authorize_page(&stack.auth_query("web", None, None))
        .await?
        .text()
        .await?;
    let request = hidden_request(&page)?;
    let wrong = "MARKER-WRONG-PASSWORD-5e1d";
    secrets.push(wrong.to_owned());
    let resp = stack
        .http
        .post(stack.url("/oauth/authorize"))
        .form(&[
            ("request", request.as_str()),
            ("email", ADMIN_EMAIL),
            ("password", wrong),
        ])
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let verifier = pkce_verifier();
    let got = stack
        .login(ADMIN_EMAIL, ADMIN_PASSWORD, &verifier, Some("openid email"))
        .await?;
    let code = got["code"].clone();
    let tokens: Value = stack.exchange(&code, &verifier).await.json().await?;
    // Code reuse and a refresh, then a reuse of the rotated refresh token.
    stack.exchange(&code, &verifier).await;
    let refresh = tokens["refresh_token"]
        .as_str()
        .context("refresh")?
        .to_owned();
    let rotated: Value = stack
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", "web"),
        ])
        .await
        .json()
        .await?;
    stack
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", "web"),
        ])
        .await;
    let access = tokens["access_token"]
        .as_str()
        .context("access")?
        .to_owned();
    stack.get_with("/v1/users/me", &access).await;
    stack.get_with("/oauth/userinfo", &access).await;
    let machine = stack.machine_token(None).await?;
    stack
        .http
        .post(stack.url("/oauth/revoke"))
        .basic_auth("machine", Some(&stack.machine_secret))
        .form(&[("token", refresh.as_str())])
        .send()
        .await?;

    for value in [
        code.clone(),
        verifier,
        request,
        access,
        refresh,
        tokens["id_token"].as_str().context("id_token")?.to_owned(),
        rotated["access_token"]
            .as_str()
            .context("rotated access")?
            .to_owned(),
        rotated["refresh_token"]
            .as_str()
            .context("rotated refresh")?
            .to_owned(),
        machine["access_token"]
            .as_str()
            .context("machine access")?
            .to_owned(),
    ] {
        secrets.push(sha256_hex(&value));
        secrets.push(value);
    }
    let text = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        text.contains("authorization code issued"),
        "the log was captured"
    );
    for secret in &secrets {
        // JWTs: their signature part is enough to leak nothing else either.
        let needle = secret.rsplit('.').next().unwrap_or(secret);
        assert!(!text.contains(needle), "a credential reached the log");
    }
    Ok(())
}
