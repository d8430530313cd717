//! OAuth clients, authorization codes and refresh tokens.

use chrono::{TimeDelta, Utc};
use jetshop_contracts::{
    ErrorCode,
    users::{
        AuthenticateClient, GetClient, GrantType, IssueRefresh, RedeemCode, RevokeRefresh,
        RotateRefresh, StoreCode,
    },
};
use jetshop_users::admin::{self, NewClient};
use uuid::Uuid;

use crate::helpers::{TestUsers, fake_hash};

fn machine_client(id: &str) -> NewClient {
    NewClient {
        client_id: id.into(),
        name: "Nightly reports".into(),
        confidential: true,
        redirect_uris: vec![],
        grant_types: vec![GrantType::ClientCredentials],
        scopes: vec!["orders:read".into()],
        service_account: None,
    }
}

fn web_client(id: &str) -> NewClient {
    NewClient {
        client_id: id.into(),
        name: "Web shop".into(),
        confidential: false,
        redirect_uris: vec!["https://shop.example/callback".into()],
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        scopes: vec!["openid".into(), "orders:read".into()],
        service_account: None,
    }
}

#[tokio::test]
async fn clients_authenticate_with_their_secret_only() {
    let app = TestUsers::spawn().await;
    let db = app.admin_db().await;
    let (created, secret) = admin::create_client(&db, machine_client("reports"))
        .await
        .unwrap();
    let secret = secret.expect("a confidential client gets a secret");
    assert!(created.confidential);
    let (public, none) = admin::create_client(&db, web_client("web")).await.unwrap();
    assert!(none.is_none() && !public.confidential);
    let again = admin::create_client(&db, machine_client("reports")).await;
    assert!(
        matches!(again, Err(jetshop_users::Error::ClientExists(_))),
        "{again:?}"
    );

    let got = app
        .call(&GetClient {
            client_id: "reports".into(),
        })
        .await
        .unwrap();
    assert_eq!(got, created);
    let e = app
        .refused(&GetClient {
            client_id: "nope".into(),
        })
        .await;
    assert_eq!(e.code, ErrorCode::NotFound);

    let ok = app
        .call(&AuthenticateClient {
            client_id: "reports".into(),
            client_secret: secret.clone(),
        })
        .await
        .unwrap();
    assert_eq!(ok, created);

    let refused = [
        ("reports", "wrong-secret".to_owned()),
        ("reports", String::new()),
        ("unknown", secret.clone()),
        // A public client has no secret: nothing it presents authenticates it.
        ("web", secret.clone()),
        ("web", String::new()),
    ];
    let mut errors = Vec::new();
    for (client_id, client_secret) in refused {
        let e = app
            .refused(&AuthenticateClient {
                client_id: client_id.into(),
                client_secret,
            })
            .await;
        assert_eq!(e.code, ErrorCode::Unauthorized, "{client_id}: {e:?}");
        errors.push(e);
    }
    assert!(
        errors.windows(2).all(|w| w[0] == w[1]),
        "every refusal reads the same: {errors:?}"
    );
}

fn store(code_hash: &str, client_id: &str, expires_in: TimeDelta) -> StoreCode {
    StoreCode {
        code_hash: code_hash.into(),
        client_id: client_id.into(),
        user_id: Uuid::now_v7(),
        redirect_uri: "https://shop.example/callback".into(),
        scope: "openid orders:read".into(),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        code_challenge_method: "S256".into(),
        nonce: Some("n-0S6_WzA2Mj".into()),
        expires_at: Utc::now() + expires_in,
    }
}

#[tokio::test]
async fn an_authorization_code_is_redeemed_exactly_once() {
    let app = TestUsers::spawn().await;
    let code = fake_hash();
    let stored = store(&code, "web", TimeDelta::minutes(1));
    app.call(&stored).await.unwrap();
    let e = app.refused(&stored).await;
    assert_eq!(e.code, ErrorCode::Conflict, "the same hash twice");

    // Another client cannot redeem it, and trying does not use it up.
    let e = app
        .refused(&RedeemCode {
            code_hash: code.clone(),
            client_id: "other".into(),
        })
        .await;
    assert_eq!(e.code, ErrorCode::NotFound);

    let redeem = RedeemCode {
        code_hash: code.clone(),
        client_id: "web".into(),
    };
    let grant = app.call(&redeem).await.unwrap();
    assert_eq!(grant.user_id, stored.user_id);
    assert_eq!(grant.redirect_uri, stored.redirect_uri);
    assert_eq!(grant.scope, stored.scope);
    assert_eq!(grant.code_challenge, stored.code_challenge);
    assert_eq!(grant.code_challenge_method, "S256");
    assert_eq!(grant.nonce, stored.nonce);
    let e = app.refused(&redeem).await;
    assert_eq!(e.code, ErrorCode::NotFound, "second redemption");

    let expired = fake_hash();
    app.call(&store(&expired, "web", TimeDelta::seconds(-1)))
        .await
        .unwrap();
    let e = app
        .refused(&RedeemCode {
            code_hash: expired,
            client_id: "web".into(),
        })
        .await;
    assert_eq!(e.code, ErrorCode::NotFound, "expired");

    let e = app
        .refused(&RedeemCode {
            code_hash: fake_hash(),
            client_id: "web".into(),
        })
        .await;
    assert_eq!(e.code, ErrorCode::NotFound, "unknown");
}

#[tokio::test]
async fn concurrent_redemptions_of_one_code_give_one_grant() {
    let app = TestUsers::spawn().await;
    let code = fake_hash();
    app.call(&store(&code, "web", TimeDelta::minutes(1)))
        .await
        .unwrap();
    let redeem = RedeemCode {
        code_hash: code,
        client_id: "web".into(),
    };
    let results = futures::future::join_all((0..8).map(|_| app.call(&redeem))).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
}

fn issue(token_hash: &str, client_id: &str) -> IssueRefresh {
    IssueRefresh {
        token_hash: token_hash.into(),
        family_id: Uuid::now_v7(),
        client_id: client_id.into(),
        user_id: Uuid::now_v7(),
        scope: "openid orders:read".into(),
        expires_at: Utc::now() + TimeDelta::days(30),
    }
}

fn rotate(from: &str, to: &str, client_id: &str) -> RotateRefresh {
    RotateRefresh {
        token_hash: from.into(),
        new_token_hash: to.into(),
        client_id: client_id.into(),
        expires_at: Utc::now() + TimeDelta::days(30),
    }
}

#[tokio::test]
async fn refresh_rotation_and_reuse_revokes_the_family() {
    let app = TestUsers::spawn().await;
    let (first, second, third) = (fake_hash(), fake_hash(), fake_hash());
    let issued = issue(&first, "web");
    app.call(&issued).await.unwrap();

    let grant = app.call(&rotate(&first, &second, "web")).await.unwrap();
    assert_eq!(grant.family_id, issued.family_id);
    assert_eq!(grant.user_id, issued.user_id);
    assert_eq!(grant.scope, issued.scope);

    // Another client presenting the successor gets nothing and changes nothing.
    let e = app.refused(&rotate(&second, &third, "other")).await;
    assert_eq!(e.code, ErrorCode::Unauthorized);

    // The rotated token comes back: someone holds a copy. Revoke everything.
    let reuse = app.refused(&rotate(&first, &fake_hash(), "web")).await;
    assert_eq!(reuse.code, ErrorCode::Unauthorized);
    assert!(reuse.message.contains("reuse"), "{reuse:?}");

    // The legitimate successor is revoked with its family.
    let e = app.refused(&rotate(&second, &third, "web")).await;
    assert_eq!(e.code, ErrorCode::Unauthorized);
    assert!(!e.message.contains("reuse"), "{e:?}");

    // Unknown and expired tokens are refused too.
    let e = app
        .refused(&rotate(&fake_hash(), &fake_hash(), "web"))
        .await;
    assert_eq!(e.code, ErrorCode::Unauthorized);
    let old = fake_hash();
    app.call(&IssueRefresh {
        expires_at: Utc::now() - TimeDelta::seconds(1),
        ..issue(&old, "web")
    })
    .await
    .unwrap();
    let e = app.refused(&rotate(&old, &fake_hash(), "web")).await;
    assert_eq!(e.code, ErrorCode::Unauthorized);
}

#[tokio::test]
async fn revocation_ends_the_family_and_unknown_tokens_are_acknowledged() {
    let app = TestUsers::spawn().await;
    let (first, second) = (fake_hash(), fake_hash());
    app.call(&issue(&first, "web")).await.unwrap();
    app.call(&rotate(&first, &second, "web")).await.unwrap();

    // Revoking the old token revokes its successor too.
    app.call(&RevokeRefresh {
        token_hash: first.clone(),
        client_id: "web".into(),
    })
    .await
    .unwrap();
    let e = app.refused(&rotate(&second, &fake_hash(), "web")).await;
    assert_eq!(e.code, ErrorCode::Unauthorized);

    // RFC 7009: unknown tokens, and tokens of other clients, are not an error
    // (and another client's revocation changes nothing).
    let third = fake_hash();
    app.call(&issue(&third, "web")).await.unwrap();
    for (token_hash, client_id) in [(fake_hash(), "web"), (third.clone(), "other")] {
        app.call(&RevokeRefresh {
            token_hash,
            client_id: client_id.into(),
        })
        .await
        .unwrap();
    }
    app.call(&rotate(&third, &fake_hash(), "web"))
        .await
        .unwrap();
}
