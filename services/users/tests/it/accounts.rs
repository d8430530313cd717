//! Accounts: register, profile, credentials.

use jetshop_contracts::{
    Encoding, ErrorCode, Message, headers, subjects,
    users::{
        GetUser, ProfileChanged, RegisterUser, Role, UpdateProfile, UserRegistered,
        VerifyCredentials,
    },
};
use jetshop_platform::rpc::CallError;
use uuid::Uuid;

use crate::helpers::{EVENTS, PASSWORD, TestUsers, assert_bad_field};
use jetshop_testkit::header;

#[tokio::test]
async fn register_answers_the_account_and_emits_user_registered() {
    let app = TestUsers::spawn().await;
    let user = app
        .call(&RegisterUser {
            email: "  Ada.Lovelace@Example.COM ".into(),
            password: PASSWORD.into(),
            display_name: Some(" Ada ".into()),
        })
        .await
        .unwrap();
    assert_eq!(user.email, "ada.lovelace@example.com");
    assert_eq!(user.display_name, "Ada");
    assert_eq!(user.roles, [Role::Customer]);
    assert_eq!(user.version, 1);

    let events = app.stream_messages(EVENTS, 1).await;
    assert_eq!(events.len(), 1);
    let m = &events[0];
    assert_eq!(m.subject.as_str(), subjects::users::REGISTERED);
    assert_eq!(
        header(m, headers::TYPE).as_deref(),
        Some(UserRegistered::TYPE)
    );
    assert_eq!(header(m, headers::SCHEMA).as_deref(), Some("1"));
    assert_eq!(
        header(m, headers::CONTENT_TYPE).as_deref(),
        Some("application/msgpack")
    );
    assert_eq!(
        header(m, headers::CORRELATION_ID).as_deref(),
        Some("test-correlation")
    );
    assert!(header(m, headers::MSG_ID).is_some_and(|id| Uuid::parse_str(&id).is_ok()));
    let event: UserRegistered = Encoding::MsgPack.decode(&m.payload).unwrap();
    assert_eq!(event.user, user);

    // A display name defaults to the email's local part.
    let bob = app.register("bob@example.com").await;
    assert_eq!(bob.display_name, "bob");
}

#[tokio::test]
async fn an_email_taken_in_another_case_is_a_conflict() {
    let app = TestUsers::spawn().await;
    app.register("grace@example.com").await;
    let e = app
        .refused(&RegisterUser {
            email: "GRACE@Example.com".into(),
            password: "another-long-passphrase".into(),
            display_name: None,
        })
        .await;
    assert_eq!(e.code, ErrorCode::Conflict, "{e:?}");
    assert_eq!(app.stream_messages(EVENTS, 1).await.len(), 1);
}

#[tokio::test]
async fn weak_passwords_are_refused_naming_the_field() {
    let app = TestUsers::spawn().await;
    for (password, why) in [
        ("short-pw", "too short"),
        ("password1234", "common"),
        ("aaaaaaaaaaaaaaaa", "one character repeated"),
        ("Linus@Example.com", "equals the email"),
        (&*"x1".repeat(65), "too long"),
    ] {
        let e = app
            .refused(&RegisterUser {
                email: "linus@example.com".into(),
                password: password.into(),
                display_name: None,
            })
            .await;
        assert_bad_field(&e, "password", why);
    }
}

#[tokio::test]
async fn malformed_emails_are_refused_naming_the_field() {
    let app = TestUsers::spawn().await;
    for email in [
        "",
        "no-at-sign",
        "two@@example.com",
        "@example.com",
        "ada@localhost",
        "ada@example.",
        "ada lovelace@example.com",
        "ada@exam\nple.com",
        &format!("{}@example.com", "a".repeat(250)),
    ] {
        let e = app
            .refused(&RegisterUser {
                email: email.into(),
                password: PASSWORD.into(),
                display_name: None,
            })
            .await;
        assert_bad_field(&e, "email", email);
    }
    let e = app
        .refused(&RegisterUser {
            email: "ok@example.com".into(),
            password: PASSWORD.into(),
            display_name: Some("  ".into()),
        })
        .await;
    assert_bad_field(&e, "display_name", "blank display name");
}

#[tokio::test]
async fn of_concurrent_registrations_of_one_email_exactly_one_succeeds() {
    let app = TestUsers::spawn().await;
    let requests: Vec<RegisterUser> = (0..8)
        .map(|i| RegisterUser {
            email: if i % 2 == 0 {
                "race@example.com"
            } else {
                "RACE@example.com"
            }
            .into(),
            password: PASSWORD.into(),
            display_name: None,
        })
        .collect();
    let attempts = requests.iter().map(|r| app.call(r));
    let results = futures::future::join_all(attempts).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "{results:?}");
    for r in &results {
        if let Err(e) = r {
            match e {
                CallError::Remote(e) => assert_eq!(e.code, ErrorCode::Conflict, "{e:?}"),
                other => panic!("{other:?}"),
            }
        }
    }
    app.stream_messages(EVENTS, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.stream_count(EVENTS).await, 1, "one account, one event");
}

#[tokio::test]
async fn get_and_update_a_profile() {
    let app = TestUsers::spawn().await;
    let user = app.register("alan@example.com").await;
    assert_eq!(app.call(&GetUser { id: user.id }).await.unwrap(), user);
    let e = app.refused(&GetUser { id: Uuid::now_v7() }).await;
    assert_eq!(e.code, ErrorCode::NotFound);

    let changed = app
        .call(&UpdateProfile {
            id: user.id,
            display_name: Some("Alan Turing".into()),
        })
        .await
        .unwrap();
    assert_eq!(changed.display_name, "Alan Turing");
    assert_eq!(changed.version, 2);
    assert_eq!(changed.email, user.email);
    assert_eq!(app.call(&GetUser { id: user.id }).await.unwrap(), changed);

    let events = app.stream_messages(EVENTS, 2).await;
    let m = events
        .iter()
        .find(|m| header(m, headers::TYPE).as_deref() == Some(ProfileChanged::TYPE))
        .expect("a ProfileChanged event");
    assert_eq!(m.subject.as_str(), subjects::users::PROFILE_CHANGED);
    let event: ProfileChanged = Encoding::MsgPack.decode(&m.payload).unwrap();
    assert_eq!(event.user, changed);

    let e = app
        .refused(&UpdateProfile {
            id: user.id,
            display_name: Some("x".repeat(101)),
        })
        .await;
    assert_bad_field(&e, "display_name", "too long");
    let e = app
        .refused(&UpdateProfile {
            id: Uuid::now_v7(),
            display_name: Some("Ghost".into()),
        })
        .await;
    assert_eq!(e.code, ErrorCode::NotFound);
}

#[tokio::test]
async fn credentials_verify_and_failures_are_indistinguishable() {
    let app = TestUsers::spawn().await;
    let user = app.register("barbara@example.com").await;
    let ok = app
        .call(&VerifyCredentials {
            email: " Barbara@EXAMPLE.com".into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap();
    assert_eq!(ok, user);

    let wrong_password = app
        .refused(&VerifyCredentials {
            email: "barbara@example.com".into(),
            password: "not-the-password-at-all".into(),
        })
        .await;
    let unknown_email = app
        .refused(&VerifyCredentials {
            email: "nobody@example.com".into(),
            password: PASSWORD.into(),
        })
        .await;
    let malformed_email = app
        .refused(&VerifyCredentials {
            email: "not an email".into(),
            password: PASSWORD.into(),
        })
        .await;
    assert_eq!(wrong_password.code, ErrorCode::Unauthorized);
    assert_eq!(wrong_password, unknown_email, "same code, message, details");
    assert_eq!(wrong_password, malformed_email);
}

#[tokio::test]
async fn the_service_is_visible_to_the_micro_protocol() {
    let app = TestUsers::spawn().await;
    let info = app
        .client
        .request(
            format!("$SRV.INFO.{}", jetshop_users::SERVICE_NAME),
            "".into(),
        )
        .await
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.payload).unwrap();
    assert_eq!(info["name"], "users");
    let served: Vec<&str> = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    use subjects::users::*;
    let expected = [
        RPC_USER_REGISTER,
        RPC_USER_GET,
        RPC_USER_UPDATE,
        RPC_CREDENTIALS_VERIFY,
        RPC_CLIENT_GET,
        RPC_CLIENT_AUTHENTICATE,
        RPC_GRANT_STORE_CODE,
        RPC_GRANT_REDEEM_CODE,
        RPC_GRANT_ISSUE_REFRESH,
        RPC_GRANT_ROTATE_REFRESH,
        RPC_GRANT_REVOKE_REFRESH,
    ];
    for subject in expected {
        assert!(
            served.contains(&subject),
            "{subject} not served: {served:?}"
        );
    }
    assert_eq!(served.len(), expected.len());
}

#[tokio::test]
async fn concurrent_profile_updates_lose_nothing_silently() {
    let app = TestUsers::spawn().await;
    let user = app.register("edsger@example.com").await;
    let requests: Vec<UpdateProfile> = (0..6)
        .map(|i| UpdateProfile {
            id: user.id,
            display_name: Some(format!("Edsger {i}")),
        })
        .collect();
    let results = futures::future::join_all(requests.iter().map(|r| app.call(r))).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert!(ok >= 1, "{results:?}");
    for r in &results {
        if let Err(e) = r {
            match e {
                // Retryable: someone else's change won.
                CallError::Remote(e) => assert_eq!(e.code, ErrorCode::Conflict, "{e:?}"),
                other => panic!("{other:?}"),
            }
        }
    }
    let now = app.call(&GetUser { id: user.id }).await.unwrap();
    assert_eq!(now.version, 1 + ok as i64, "one version per applied change");
    app.stream_messages(EVENTS, 1 + ok as u64).await;
}
