//! No password, client secret or hash reaches a log line.
//!
//! A binary of its own: it installs a process-wide tracing subscriber that
//! writes every event at TRACE level (ours, the platform's, SeaORM's and
//! the NATS client's, through the platform's log filter) into a buffer,
//! drives register, verify and authenticate (successes and failures), and
//! searches the buffer.

#[path = "it/helpers.rs"]
mod helpers;

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use jetshop_contracts::users::{AuthenticateClient, GrantType, RegisterUser, VerifyCredentials};
use jetshop_users::admin::{self, NewClient};
use tracing_subscriber::fmt::MakeWriter;

use helpers::TestUsers;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let logs = Buffer::default();
    // The most verbose filter an operator can set, through the platform's
    // filter (which keeps the NATS client's payload dump out).
    tracing_subscriber::fmt()
        .with_env_filter(jetshop_platform::telemetry::log_filter("trace").unwrap())
        .with_writer(logs.clone())
        .with_ansi(false)
        .init();

    const PASSWORD: &str = "Sup3r-Secret-Passphrase-4242";
    const WRONG: &str = "Wr0ng-Passphrase-Guess-9090";
    let mut app = TestUsers::spawn().await;
    let user = app
        .call(&RegisterUser {
            email: "carol@example.com".into(),
            password: PASSWORD.into(),
            display_name: None,
        })
        .await
        .unwrap();
    // Refused registrations: a duplicate, and a password equal to the email.
    app.refused(&RegisterUser {
        email: "carol@example.com".into(),
        password: PASSWORD.into(),
        display_name: None,
    })
    .await;
    app.refused(&RegisterUser {
        email: "dave.weakling@example.com".into(),
        password: "dave.weakling@example.com".into(),
        display_name: None,
    })
    .await;
    app.call(&VerifyCredentials {
        email: "carol@example.com".into(),
        password: PASSWORD.into(),
    })
    .await
    .unwrap();
    app.refused(&VerifyCredentials {
        email: "carol@example.com".into(),
        password: WRONG.into(),
    })
    .await;

    let db = app.admin_db().await;
    let (_, secret) = admin::create_client(
        &db,
        NewClient {
            client_id: "machine".into(),
            name: "Machine".into(),
            confidential: true,
            redirect_uris: vec![],
            grant_types: vec![GrantType::ClientCredentials],
            scopes: vec!["orders:read".into()],
            service_account: Some(user.id),
        },
    )
    .await
    .unwrap();
    let secret = secret.unwrap();
    app.call(&AuthenticateClient {
        client_id: "machine".into(),
        client_secret: secret.clone(),
    })
    .await
    .unwrap();
    app.refused(&AuthenticateClient {
        client_id: "machine".into(),
        client_secret: format!("{secret}x"),
    })
    .await;
    app.stream_messages(helpers::EVENTS, 1).await;
    app.stop().await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    // The capture works: our own lines are there.
    for expected in [
        "user registered",
        "credentials refused",
        "client authentication refused",
    ] {
        assert!(
            text.contains(expected),
            "no {expected:?} in the captured logs"
        );
    }
    for (secret_name, value) in [
        ("password", PASSWORD),
        ("wrong password", WRONG),
        ("weak password", "dave.weakling@example.com"),
        ("client secret", secret.as_str()),
        ("argon2 hash", "$argon2id$"),
    ] {
        let line = text.lines().find(|l| l.contains(value));
        assert!(
            line.is_none(),
            "the {secret_name} is in a log line: {line:?}"
        );
    }
}
