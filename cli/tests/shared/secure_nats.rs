//! A real `nats-server` secured with what `jetshop nats-config` writes:
//! one nkey user per part with the permissions derived from the
//! contracts, TLS required and client certificates verified.

use std::{path::PathBuf, process::Command, time::Duration};

use jetshop_platform::config::NatsSettings;
use jetshop_testkit::NatsServer;

/// Run `jetshop nats-config` into a fresh directory and start a server
/// with its `auth.conf`; the server, and the credentials to reach it.
pub fn start(bin: &str) -> (NatsServer, Credentials) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin)
        .args(["nats-config", "--out"])
        .arg(dir.path())
        .output()
        .expect("run jetshop nats-config");
    assert!(
        out.status.success(),
        "jetshop nats-config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Inline rather than `include`d: the server resolves an include
    // relative to the including file, which lives in the store.
    let auth = std::fs::read_to_string(dir.path().join("auth.conf")).unwrap();
    let server = NatsServer::start_with_config(&auth);
    let url = server.url().replace("nats://", "tls://");
    (server, Credentials { dir, url })
}

/// What `jetshop nats-config` wrote, and the server's `tls://` URL.
pub struct Credentials {
    pub dir: tempfile::TempDir,
    url: String,
}

impl Credentials {
    /// `tls://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The directory of one part's credentials.
    pub fn part_dir(&self, part: &str) -> PathBuf {
        self.dir.path().join(part)
    }

    /// Settings that connect as `part` with its nkey, certificate and inbox.
    pub fn settings(&self, part: &str) -> NatsSettings {
        let mut settings = NatsSettings::for_url(self.url());
        settings.connect_timeout = Duration::from_secs(10);
        settings.with_part_credentials(&self.part_dir(part), part)
    }

    /// The `jetshop run <part>` flags that give it `part`'s credentials.
    pub fn flags(&self, part: &str) -> Vec<String> {
        let s = self.settings(part);
        let path = |p: &Option<PathBuf>| p.as_ref().unwrap().display().to_string();
        vec![
            "--nats-url".into(),
            s.url.clone(),
            "--nats-nkey-file".into(),
            path(&s.security.nkey_file),
            "--nats-tls-ca".into(),
            path(&s.security.tls_ca),
            "--nats-tls-cert".into(),
            path(&s.security.tls_cert),
            "--nats-tls-key".into(),
            path(&s.security.tls_key),
            "--nats-inbox-prefix".into(),
            s.security.inbox_prefix.clone(),
        ]
    }

    /// A client for the test itself, as the unrestricted `ops` user.
    pub async fn ops(&self) -> async_nats::Client {
        jetshop_platform::nats::connect(&self.settings("ops"), "test-ops")
            .await
            .expect("ops connects")
    }
}
