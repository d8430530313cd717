//! What the service creates on start from its settings, once.

use jetshop_contracts::{
    ErrorCode,
    users::{GetClient, GrantType, Role, VerifyCredentials},
};
use jetshop_users::bootstrap::{SWAGGER_UI_CLIENT_ID, SWAGGER_UI_SCOPES};

use crate::helpers::{EVENTS, TestUsers};

const ADMIN_PASSWORD: &str = "admin-bootstrap-passphrase";

#[tokio::test]
async fn bootstrap_creates_the_admin_and_swagger_ui_client_once() {
    let configure = |s: &mut jetshop_users::UsersSettings| {
        s.admin_email = Some("Admin@Example.com".into());
        s.admin_password = Some(ADMIN_PASSWORD.into());
        s.swagger_ui_redirect_uris = vec!["http://localhost:8080/docs/oauth-receiver.html".into()];
    };
    let mut app = TestUsers::spawn_with(configure).await;
    let admin = app
        .call(&VerifyCredentials {
            email: "admin@example.com".into(),
            password: ADMIN_PASSWORD.into(),
        })
        .await
        .unwrap();
    assert_eq!(admin.roles, [Role::Admin]);
    let client = app
        .call(&GetClient {
            client_id: SWAGGER_UI_CLIENT_ID.into(),
        })
        .await
        .unwrap();
    assert!(!client.confidential);
    assert_eq!(
        client.grant_types,
        [GrantType::AuthorizationCode, GrantType::RefreshToken]
    );
    assert_eq!(client.scopes, SWAGGER_UI_SCOPES);
    assert_eq!(
        client.redirect_uris,
        ["http://localhost:8080/docs/oauth-receiver.html"]
    );
    app.stream_messages(EVENTS, 1).await;

    // A restart with the same settings creates nothing and fails nothing.
    app.stop().await;
    let mut settings = app.settings();
    configure(&mut settings);
    app.start(settings.clone()).await;
    let again = app
        .call(&VerifyCredentials {
            email: "admin@example.com".into(),
            password: ADMIN_PASSWORD.into(),
        })
        .await
        .unwrap();
    assert_eq!(again, admin, "the same account");

    // A restart with other redirect URIs updates the client.
    app.stop().await;
    settings.swagger_ui_redirect_uris = vec![
        "http://localhost:8080/docs/oauth-receiver.html".into(),
        "https://shop.example/docs/oauth-receiver.html".into(),
    ];
    app.start(settings).await;
    let client = app
        .call(&GetClient {
            client_id: SWAGGER_UI_CLIENT_ID.into(),
        })
        .await
        .unwrap();
    assert_eq!(client.redirect_uris.len(), 2);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(app.stream_count(EVENTS).await, 1, "one admin, one event");
}

#[tokio::test]
async fn a_weak_bootstrap_password_stops_the_service_with_a_clear_error() {
    let app = TestUsers::spawn().await;
    let mut settings = app.settings();
    settings.admin_email = Some("admin@example.com".into());
    settings.admin_password = Some("short".into());
    let rt = jetshop_platform::runtime::Runtime::new(app.client.clone(), 1);
    let err = jetshop_users::run(settings, rt, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("admin") && text.contains("password"),
        "{text}"
    );
    assert!(
        !text.contains("short"),
        "the password is not echoed: {text}"
    );
    let e = app
        .refused(&VerifyCredentials {
            email: "admin@example.com".into(),
            password: "short".into(),
        })
        .await;
    assert_eq!(e.code, ErrorCode::Unauthorized);
}

#[tokio::test]
async fn admin_create_user_makes_an_account_that_logs_in() {
    let app = TestUsers::spawn().await;
    let db = app.admin_db().await;
    let user = jetshop_users::admin::create_user(
        &db,
        "ops@example.com",
        ADMIN_PASSWORD,
        &[Role::Customer, Role::Admin],
    )
    .await
    .unwrap();
    assert_eq!(user.roles, [Role::Customer, Role::Admin]);
    let again =
        jetshop_users::admin::create_user(&db, "OPS@example.com", ADMIN_PASSWORD, &[Role::Admin])
            .await;
    assert!(
        matches!(again, Err(jetshop_users::Error::EmailTaken)),
        "{again:?}"
    );
    let verified = app
        .call(&VerifyCredentials {
            email: "ops@example.com".into(),
            password: ADMIN_PASSWORD.into(),
        })
        .await
        .unwrap();
    assert_eq!(verified, user);
    // The relay publishes what the CLI wrote.
    app.stream_messages(EVENTS, 1).await;
}
