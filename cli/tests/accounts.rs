//! `jetshop users create-admin` and `jetshop oauth create-client` against a
//! fresh users database; what they create is then used through the real
//! users service over NATS.

use std::{process::Command, time::Duration};

use jetshop_contracts::users::{AuthenticateClient, Role, VerifyCredentials};
use jetshop_platform::{envelope::MessageMeta, rpc::RpcClient, runtime::Runtime};
use jetshop_testkit::{NatsServer, TestDb};
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_jetshop");

fn jetshop(args: &[&str], db: &TestDb) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .args(["--users-database-url", &db.url])
        .env_remove("JETSHOP_ADMIN_PASSWORD")
        .output()
        .expect("run jetshop");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn created_admins_and_clients_work_with_the_running_service() {
    let db = TestDb::fresh().await;
    let (ok, out, err) = jetshop(
        &[
            "users",
            "create-admin",
            "--email",
            "Boss@Example.com",
            "--password",
            "correct horse battery",
        ],
        &db,
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("created admin boss@example.com"), "{out}");
    assert!(!out.contains("correct horse") && !err.contains("correct horse"));

    // Again: left alone, not an error.
    let (ok, out, _) = jetshop(
        &[
            "users",
            "create-admin",
            "--email",
            "boss@example.com",
            "--password",
            "another long password",
        ],
        &db,
    );
    assert!(ok);
    assert!(out.contains("already exists"), "{out}");

    // A weak password is refused with one line.
    let (ok, _, err) = jetshop(
        &[
            "users",
            "create-admin",
            "--email",
            "x@example.com",
            "--password",
            "short",
        ],
        &db,
    );
    assert!(!ok);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    let (ok, out, err) = jetshop(
        &[
            "oauth",
            "create-client",
            "--client-id",
            "reporting",
            "--confidential",
            "--grant",
            "client_credentials",
            "--scope",
            "orders:read",
        ],
        &db,
    );
    assert!(ok, "{out}{err}");
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .expect("the secret is printed once")
        .to_owned();

    // The running service accepts both.
    let nats = NatsServer::start();
    let client = nats.client().await;
    let stop = CancellationToken::new();
    let service = tokio::spawn(jetshop_users::run(
        jetshop_users::UsersSettings::for_database(db.url.clone()),
        Runtime::new(client.clone(), 1),
        stop.clone(),
    ));
    let rpc = RpcClient::new(client, Duration::from_secs(5), 5);
    let meta = MessageMeta::default();
    let admin = rpc
        .call(
            &VerifyCredentials {
                email: "boss@example.com".into(),
                password: "correct horse battery".into(),
            },
            &meta,
        )
        .await
        .unwrap();
    assert_eq!(admin.roles, [Role::Admin]);
    let reporting = rpc
        .call(
            &AuthenticateClient {
                client_id: "reporting".into(),
                client_secret: secret,
            },
            &meta,
        )
        .await
        .unwrap();
    assert!(reporting.confidential);
    assert_eq!(reporting.scopes, ["orders:read"]);
    stop.cancel();
    service.await.unwrap().unwrap();
}
