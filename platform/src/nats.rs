//! Connecting to NATS and provisioning JetStream.
//!
//! The connection retries at start until `connect_timeout`, then reconnects
//! forever with capped exponential backoff: a broker restart must not kill a
//! service. Streams are created or updated from their specs in `contracts`
//! at every start, so deployments never need a manual `nats stream add`.

use std::time::Duration;

use async_nats::{
    Client, ConnectOptions, ServerAddr,
    jetstream::{
        self,
        stream::{Config as StreamConfig, RetentionPolicy, StorageType, SubjectTransform},
    },
};
use jetshop_contracts::streams::{Retention, StreamSpec};

use crate::{Error, config::NatsSettings};

/// Oldest server with what we rely on (multi-filter consumers, consumer backoff).
const MIN_VERSION: (u64, u64) = (2, 10);

/// How often the client pings its server (see [`connect`]).
pub const PING_INTERVAL: Duration = Duration::from_secs(2);

/// Connect, retrying until the configured timeout, and refuse an old server.
pub async fn connect(settings: &NatsSettings, client_name: &str) -> Result<Client, Error> {
    let servers = server_addrs(&settings.url)?;
    let security = Security::load(settings)?;
    let deadline = tokio::time::Instant::now() + settings.connect_timeout;
    let mut delay = Duration::from_millis(100);
    let client = loop {
        let options = security
            .apply(ConnectOptions::new())
            .name(client_name)
            .connection_timeout(Duration::from_secs(3))
            // A server that stalls (frozen, partitioned away) keeps its TCP
            // connection open: only missed PONGs reveal it. The default
            // 60 s ping would leave us stuck on it for two minutes; at 2 s
            // we move to another cluster node within a few seconds.
            .ping_interval(PING_INTERVAL)
            .max_reconnects(None)
            .reconnect_delay_callback(reconnect_delay)
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Disconnected => {
                        tracing::warn!("NATS disconnected; reconnecting")
                    }
                    async_nats::Event::Connected => tracing::info!("NATS connected"),
                    // A permissions violation arrives only this way: the
                    // publish itself returned Ok. Loud, so a missing grant
                    // in the generated permissions is seen at once.
                    async_nats::Event::ServerError(err) => {
                        tracing::error!(error = %err, "NATS server refused an operation")
                    }
                    other => tracing::debug!(event = %other, "NATS event"),
                }
            });
        match options.connect(servers.clone()).await {
            Ok(client) => break client,
            Err(source) if tokio::time::Instant::now() + delay >= deadline => {
                return Err(Error::Connect {
                    url: crate::config::redact_url(&settings.url),
                    timeout: settings.connect_timeout,
                    source,
                });
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?delay, "NATS not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    };
    check_version(&client.server_info().version)?;
    Ok(client)
}

/// Credentials and TLS material, read and checked once before the first
/// attempt: a missing file is a configuration error, never retried.
struct Security {
    seed: Option<String>,
    tls_required: bool,
    ca: Option<std::path::PathBuf>,
    client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
    inbox_prefix: String,
}

impl Security {
    fn load(settings: &NatsSettings) -> Result<Self, Error> {
        let tls_required = settings.tls_required();
        let settings = &settings.security;
        let readable = |flag: &str, path: &std::path::Path| -> Result<String, Error> {
            std::fs::read_to_string(path)
                .map_err(|e| Error::Config(format!("{flag} {}: {e}", path.display())))
        };
        let seed = match &settings.nkey_file {
            Some(path) => {
                let seed = readable("--nats-nkey-file", path)?.trim().to_owned();
                // A user seed starts `SU`; anything else would only fail
                // later as an opaque authorization error.
                if !seed.starts_with("SU") {
                    return Err(Error::Config(format!(
                        "--nats-nkey-file {}: not an nkey user seed (SU...)",
                        path.display()
                    )));
                }
                Some(seed)
            }
            None => None,
        };
        for (flag, path) in [
            ("--nats-tls-ca", &settings.tls_ca),
            ("--nats-tls-cert", &settings.tls_cert),
            ("--nats-tls-key", &settings.tls_key),
        ] {
            if let Some(path) = path {
                readable(flag, path)?;
            }
        }
        let client_cert = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            _ => {
                return Err(Error::Config(
                    "--nats-tls-cert and --nats-tls-key go together".into(),
                ));
            }
        };
        if settings.inbox_prefix.is_empty() || settings.inbox_prefix.contains(['.', '*', '>', ' '])
        {
            return Err(Error::Config(format!(
                "--nats-inbox-prefix {:?}: one subject token, no wildcards",
                settings.inbox_prefix
            )));
        }
        Ok(Self {
            seed,
            tls_required,
            ca: settings.tls_ca.clone(),
            client_cert,
            inbox_prefix: settings.inbox_prefix.clone(),
        })
    }

    fn apply(&self, mut options: ConnectOptions) -> ConnectOptions {
        if let Some(seed) = &self.seed {
            options = options.nkey(seed.clone());
        }
        if let Some(ca) = &self.ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.client_cert {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        options
            .require_tls(self.tls_required)
            .custom_inbox_prefix(&self.inbox_prefix)
    }
}

/// Parse a comma-separated list of server URLs. A malformed URL is a
/// configuration error, reported at once rather than retried.
pub fn server_addrs(urls: &str) -> Result<Vec<ServerAddr>, Error> {
    let addrs = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<ServerAddr>().map_err(|e| {
                Error::Config(format!(
                    "--nats-url {:?}: {e}",
                    crate::config::redact_url(u)
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err(Error::Config("--nats-url names no server".into()));
    }
    Ok(addrs)
}

/// Capped exponential backoff with a little jitter so replicas do not
/// reconnect in lockstep.
fn reconnect_delay(attempts: usize) -> Duration {
    let base = Duration::from_millis(100u64.saturating_mul(1 << attempts.min(6)));
    let jitter = Duration::from_millis(rand::random_range(0..100));
    base.min(Duration::from_secs(5)) + jitter
}

/// Refuse servers older than [`MIN_VERSION`].
pub fn check_version(version: &str) -> Result<(), Error> {
    let mut parts = version
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found < MIN_VERSION {
        return Err(Error::ServerTooOld {
            version: version.to_owned(),
        });
    }
    Ok(())
}

/// The server configuration for a spec.
pub fn stream_config(spec: &StreamSpec, replicas: u8) -> StreamConfig {
    StreamConfig {
        name: spec.name.to_owned(),
        description: Some(spec.description.to_owned()),
        subjects: spec.subjects.clone(),
        retention: match spec.retention {
            Retention::Limits => RetentionPolicy::Limits,
            Retention::WorkQueue => RetentionPolicy::WorkQueue,
        },
        storage: StorageType::File,
        max_age: spec.max_age,
        duplicate_window: spec.duplicate_window,
        num_replicas: usize::from(replicas),
        allow_direct: true,
        subject_transform: spec.partition_transform().map(|(source, destination)| {
            SubjectTransform {
                source,
                destination,
            }
        }),
        ..Default::default()
    }
}

/// How long a starting process waits for JetStream to take its streams:
/// on a fresh cluster every process provisions at once while the nodes
/// still elect their leaders, and a replica that gave up then would not
/// start at all.
const PROVISION_PATIENCE: Duration = Duration::from_secs(120);

/// Create each stream, or update it when its spec changed. Safe to run from
/// every replica at every start. A failure that passes by itself (a timed
/// out request, the cluster electing a leader or short of a peer) is
/// retried with backoff for up to [`PROVISION_PATIENCE`]; anything else
/// (a spec the server refuses) fails at once.
pub async fn provision_streams(
    js: &jetstream::Context,
    specs: &[StreamSpec],
    replicas: u8,
) -> Result<(), Error> {
    for spec in specs {
        let deadline = tokio::time::Instant::now() + PROVISION_PATIENCE;
        let mut delay = Duration::from_millis(250);
        loop {
            match provision_stream(js, spec, replicas).await {
                Ok(()) => break,
                Err(Failed { error, settling }) => {
                    if !settling || tokio::time::Instant::now() + delay > deadline {
                        return Err(error);
                    }
                    tracing::warn!(stream = spec.name, error = %error, retry_in = ?delay, "JetStream is not ready for the stream yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
    Ok(())
}

/// A provisioning step that failed, and whether it may pass by itself.
struct Failed {
    error: Error,
    settling: bool,
}

impl Failed {
    fn new(what: String, source: impl Into<async_nats::Error>, settling: bool) -> Self {
        Self {
            error: Error::jetstream(what, source),
            settling,
        }
    }
}

/// Whether a JetStream API error is the cluster settling (electing a
/// leader, a peer missing or starting) rather than a refusal of the spec.
fn cluster_settling(code: jetstream::ErrorCode) -> bool {
    use jetstream::ErrorCode as C;
    [
        C::CLUSTER_NOT_AVAILABLE,
        C::CLUSTER_NOT_ACTIVE,
        C::CLUSTER_NOT_LEADER,
        C::CLUSTER_NOT_ASSIGNED,
        C::CLUSTER_INCOMPLETE,
        C::CLUSTER_NO_PEERS,
        C::INSUFFICIENT_RESOURCES,
        // Another replica created it between our lookup and our create;
        // the next attempt finds it.
        C::STREAM_NAME_EXIST,
    ]
    .contains(&code)
}

async fn provision_stream(
    js: &jetstream::Context,
    spec: &StreamSpec,
    replicas: u8,
) -> Result<(), Failed> {
    use jetstream::context::{CreateStreamErrorKind as Create, GetStreamErrorKind as Get};
    let create_settling = |kind: Create| match kind {
        Create::TimedOut | Create::Response | Create::JetStreamUnavailable => true,
        Create::JetStream(e) => cluster_settling(e.error_code()),
        _ => false,
    };
    let wanted = stream_config(spec, replicas);
    match js.get_stream(spec.name).await {
        Ok(mut stream) => {
            let info = stream
                .info()
                .await
                .map_err(|e| Failed::new(format!("info {}", spec.name), e, true))?;
            let current = &info.config;
            let changed = current.subjects != wanted.subjects
                || current.max_age != wanted.max_age
                || current.duplicate_window != wanted.duplicate_window
                || current.num_replicas != wanted.num_replicas
                || current.subject_transform != wanted.subject_transform
                || current.description != wanted.description;
            if changed {
                js.update_stream(&wanted).await.map_err(|e| {
                    let settling = create_settling(e.kind());
                    Failed::new(format!("update stream {}", spec.name), e, settling)
                })?;
                tracing::info!(stream = spec.name, "stream updated to its current spec");
            }
            Ok(())
        }
        Err(err)
            if matches!(err.kind(), Get::JetStream(e)
                if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            js.create_stream(wanted).await.map_err(|e| {
                let settling = create_settling(e.kind());
                Failed::new(format!("create stream {}", spec.name), e, settling)
            })?;
            tracing::info!(stream = spec.name, "stream created");
            Ok(())
        }
        Err(err) => {
            let settling = match err.kind() {
                Get::Request => true,
                Get::JetStream(e) => cluster_settling(e.error_code()),
                _ => false,
            };
            Err(Failed::new(
                format!("look up stream {}", spec.name),
                err,
                settling,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lists_are_parsed_and_bad_urls_refused_at_once() {
        assert_eq!(
            server_addrs("nats://a:4222, nats://b:4223,nats://c:4224")
                .unwrap()
                .len(),
            3
        );
        assert!(matches!(
            server_addrs("nats://a:notaport"),
            Err(Error::Config(_))
        ));
        assert!(matches!(server_addrs(" , "), Err(Error::Config(_))));
    }

    #[test]
    fn inbox_prefixes_must_be_one_token_and_a_cert_needs_its_key() {
        let mut settings = NatsSettings::for_url("nats://a:4222");
        for bad in ["", "_INBOX.x", "_INBOX_*", "a b"] {
            settings.security.inbox_prefix = bad.into();
            assert!(
                matches!(Security::load(&settings), Err(Error::Config(_))),
                "{bad:?}"
            );
        }
        settings.security.inbox_prefix = "_INBOX_orders".into();
        assert!(Security::load(&settings).is_ok());
        let file = std::env::temp_dir().join("jetshop-nats-test-cert.pem");
        std::fs::write(&file, "pem").unwrap();
        settings.security.tls_cert = Some(file.clone());
        assert!(
            matches!(Security::load(&settings), Err(Error::Config(m)) if m.contains("go together"))
        );
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn versions_older_than_2_10_are_refused() {
        assert!(check_version("2.9.10").is_err());
        assert!(check_version("1.4.0").is_err());
        assert!(check_version("2.10.0").is_ok());
        assert!(check_version("2.15.1").is_ok());
        assert!(check_version("3.0.0-beta").is_ok());
    }
}
