//! The webhook registry over NATS micro RPC.

use jetshop_contracts::{
    ErrorCode,
    notifications::{DeleteWebhook, GetWebhook, SetWebhook},
};
use jetshop_platform::{envelope::MessageMeta, rpc::CallError};
use uuid::Uuid;

use crate::helpers::TestApp;

fn code(err: CallError) -> (ErrorCode, Option<serde_json::Value>) {
    match err {
        CallError::Remote(e) => (e.code, e.details),
        other => panic!("expected an error reply, got {other}"),
    }
}

#[tokio::test]
async fn set_get_and_delete_a_webhook() {
    let app = TestApp::spawn().await;
    let meta = MessageMeta::default();
    let user_id = Uuid::now_v7();

    let err = app
        .rpc
        .call(&GetWebhook { user_id }, &meta)
        .await
        .unwrap_err();
    assert_eq!(code(err).0, ErrorCode::NotFound);

    let set = app
        .rpc
        .call_once(
            &SetWebhook {
                user_id,
                url: "https://hooks.example.com/jetshop".into(),
            },
            &meta,
        )
        .await
        .unwrap();
    assert_eq!(set.user_id, user_id);
    assert_eq!(set.url, "https://hooks.example.com/jetshop");
    let secret = set.secret.unwrap();
    assert_eq!(secret.len(), 64);
    assert!(secret.chars().all(|c| c.is_ascii_hexdigit()));

    // Reads never show the secret.
    let got = app.rpc.call(&GetWebhook { user_id }, &meta).await.unwrap();
    assert_eq!(got.url, set.url);
    assert_eq!(got.secret, None);

    // Setting again replaces the URL and the secret.
    let again = app
        .rpc
        .call_once(
            &SetWebhook {
                user_id,
                url: "http://localhost:9000/hook".into(),
            },
            &meta,
        )
        .await
        .unwrap();
    assert_ne!(again.secret.unwrap(), secret);
    let got = app.rpc.call(&GetWebhook { user_id }, &meta).await.unwrap();
    assert_eq!(got.url, "http://localhost:9000/hook");

    let deleted = app
        .rpc
        .call_once(&DeleteWebhook { user_id }, &meta)
        .await
        .unwrap();
    assert!(deleted.deleted);
    let deleted = app
        .rpc
        .call_once(&DeleteWebhook { user_id }, &meta)
        .await
        .unwrap();
    assert!(!deleted.deleted);
    let err = app
        .rpc
        .call(&GetWebhook { user_id }, &meta)
        .await
        .unwrap_err();
    assert_eq!(code(err).0, ErrorCode::NotFound);
}

#[tokio::test]
async fn unsafe_or_malformed_urls_are_refused() {
    let app = TestApp::spawn().await;
    let meta = MessageMeta::default();
    let user_id = Uuid::now_v7();
    for url in [
        "http://hooks.example.com/jetshop",
        "ftp://hooks.example.com/",
        "https://user:pw@hooks.example.com/",
        "not a url",
        "",
    ] {
        let err = app
            .rpc
            .call_once(
                &SetWebhook {
                    user_id,
                    url: url.into(),
                },
                &meta,
            )
            .await
            .unwrap_err();
        let (code, details) = code(err);
        assert_eq!(code, ErrorCode::BadRequest, "{url}");
        assert_eq!(details.unwrap()["field"], "url", "{url}");
    }
    // Nothing was stored.
    let err = app
        .rpc
        .call(&GetWebhook { user_id }, &meta)
        .await
        .unwrap_err();
    assert_eq!(code(err).0, ErrorCode::NotFound);
}
