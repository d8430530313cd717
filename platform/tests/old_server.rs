//! jetshop refuses a NATS server older than 2.10 with a clear message.
//! Debian's own package (2.9.x at /usr/sbin/nats-server) is such a server;
//! `OLD_NATS_SERVER_BIN` points elsewhere.

use jetshop_platform::{Error, config::NatsSettings, nats};
use jetshop_testkit::NatsServer;

#[tokio::test]
async fn a_server_older_than_2_10_is_refused() {
    let bin =
        std::env::var("OLD_NATS_SERVER_BIN").unwrap_or_else(|_| "/usr/sbin/nats-server".into());
    let version = std::process::Command::new(&bin)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| {
            panic!("{bin} is needed for this test (Debian package nats-server): {e}")
        });
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    assert!(
        version.contains("v2.9") || version.contains("v2.8"),
        "{bin} is not an old server: {version}"
    );

    let server = NatsServer::start_bin(&bin);
    let err = nats::connect(&NatsSettings::for_url(server.url()), "old-server-test")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ServerTooOld { .. }), "{err:?}");
    assert!(
        err.to_string().contains("2.10"),
        "the message says what is needed: {err}"
    );
}
