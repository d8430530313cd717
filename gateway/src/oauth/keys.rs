//! The issuer's signing keys: Ed25519 key pairs with a `kid`, one current
//! (signs new tokens) and the previous ones kept for verification until the
//! tokens they signed have expired.
//!
//! Where keys come from:
//! - `--oauth-signing-key FILE`: one PKCS#8 PEM key, managed by the operator.
//! - `--oauth-key-dir DIR` (the default, `data/oauth-keys`): every `*.pem`
//!   file in the directory. The newest file (by modification time) is the
//!   current key; an older file is published in the JWKS until its
//!   successor's modification time plus the access-token lifetime, then
//!   ignored (the operator may delete it). An empty directory gets a freshly
//!   generated key, so a development setup keeps its sessions across
//!   restarts. To rotate, drop a new PEM file in (or call
//!   [`KeyRing::rotate`]); [`KeyRing::reload`] picks it up.
//! - neither (tests): one key generated in memory.
//!
//! The `kid` is the key's RFC 7638 JWK thumbprint, so replicas sharing a
//! key agree on it without coordination.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, Instant, SystemTime},
};

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
use jsonwebtoken::{
    DecodingKey, EncodingKey,
    jwk::{
        AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm,
        OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse, ThumbprintHash,
    },
};

use crate::{auth::jwt::KeySource, error::KeyError, oauth::b64url};

/// Least time between two reloads caused by an unknown `kid`.
pub const LOOKUP_RELOAD: Duration = Duration::from_secs(5);

/// One Ed25519 key pair, ready to sign and verify JWTs.
pub struct KeyPair {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Jwk,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private half.
        f.debug_struct("KeyPair")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A new random key pair.
    pub fn generate() -> Self {
        let secret: [u8; 32] = rand::random();
        Self::from_dalek(&ed25519_dalek::SigningKey::from_bytes(&secret))
    }

    /// A key pair from a PKCS#8 PEM private key.
    pub fn from_pem(pem: &str) -> Option<Self> {
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem).ok()?;
        Some(Self::from_dalek(&key))
    }

    fn from_dalek(key: &ed25519_dalek::SigningKey) -> Self {
        let der = key
            .to_pkcs8_der()
            .expect("an Ed25519 key always encodes as PKCS#8");
        let x = b64url(key.verifying_key().as_bytes());
        let mut jwk = Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(KeyAlgorithm::EdDSA),
                ..Default::default()
            },
            algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: x.clone(),
            }),
        };
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .expect("an OKP JWK has a thumbprint");
        jwk.common.key_id = Some(kid.clone());
        Self {
            kid,
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            decoding: DecodingKey::from_ed_components(&x).expect("a valid Ed25519 public key"),
            jwk,
        }
    }

    /// The private key as PKCS#8 PEM (what `--oauth-signing-key` reads).
    pub fn to_pem(&self) -> String {
        let key = ed25519_dalek::SigningKey::from_pkcs8_der(self.encoding.as_bytes())
            .expect("our own PKCS#8 DER");
        key.to_pkcs8_pem(LineEnding::LF)
            .expect("an Ed25519 key always encodes as PEM")
            .to_string()
    }

    /// The key id (RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The private half, for signing.
    pub fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    /// The public half, for verifying.
    pub fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The public half as a JWK.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }
}

/// A key that no longer signs, kept for verification until `until`.
#[derive(Debug, Clone)]
struct Retired {
    key: Arc<KeyPair>,
    until: SystemTime,
}

#[derive(Debug)]
struct Ring {
    current: Arc<KeyPair>,
    retired: Vec<Retired>,
}

/// Where the ring's keys live.
#[derive(Debug, Clone)]
enum Source {
    Memory,
    File(PathBuf),
    Dir(PathBuf),
}

/// The current signing key and the previous keys still published.
#[derive(Debug)]
pub struct KeyRing {
    ring: RwLock<Ring>,
    source: Source,
    /// How long a retired key stays published (the access-token lifetime).
    grace: Duration,
    /// When an unknown `kid` last made us re-read the source.
    last_lookup_reload: std::sync::Mutex<Option<Instant>>,
}

impl KeyRing {
    /// One key generated in memory (lost on restart).
    pub fn ephemeral(grace: Duration) -> Self {
        Self::with(KeyPair::generate(), Source::Memory, grace)
    }

    /// The key in a PEM file, managed by the operator.
    pub fn from_file(path: &Path, grace: Duration) -> Result<Self, KeyError> {
        let key = read_key(path)?;
        Ok(Self::with(key, Source::File(path.to_owned()), grace))
    }

    /// The keys in a directory (see the module docs); generates the first one.
    pub fn from_dir(dir: &Path, grace: Duration) -> Result<Self, KeyError> {
        let (current, retired) = scan_dir(dir, grace)?;
        let current = match current {
            Some(key) => key,
            None => {
                let key = Arc::new(KeyPair::generate());
                write_key(dir, &key)?;
                tracing::info!(kid = key.kid(), dir = %dir.display(), "generated an OAuth signing key");
                // Replicas started together may each have generated one:
                // read the directory again so that they agree on its newest
                // as far as each can see, and know the others' keys.
                let (current, retired) = scan_dir(dir, grace)?;
                return Ok(Self {
                    ring: RwLock::new(Ring {
                        current: current.unwrap_or(key),
                        retired,
                    }),
                    source: Source::Dir(dir.to_owned()),
                    grace,
                    last_lookup_reload: Default::default(),
                });
            }
        };
        Ok(Self {
            ring: RwLock::new(Ring { current, retired }),
            source: Source::Dir(dir.to_owned()),
            grace,
            last_lookup_reload: Default::default(),
        })
    }

    fn with(key: KeyPair, source: Source, grace: Duration) -> Self {
        Self {
            ring: RwLock::new(Ring {
                current: Arc::new(key),
                retired: Vec::new(),
            }),
            source,
            grace,
            last_lookup_reload: Default::default(),
        }
    }

    /// The key that signs new tokens.
    pub fn current(&self) -> Arc<KeyPair> {
        self.ring.read().expect("key ring lock").current.clone()
    }

    /// The published key with this id (current or retired but not expired).
    pub fn find(&self, kid: &str) -> Option<Arc<KeyPair>> {
        let ring = self.ring.read().expect("key ring lock");
        if ring.current.kid() == kid {
            return Some(ring.current.clone());
        }
        let now = SystemTime::now();
        ring.retired
            .iter()
            .find(|r| r.key.kid() == kid && r.until > now)
            .map(|r| r.key.clone())
    }

    /// [`find`](Self::find), re-reading the key source first when the `kid`
    /// is unknown (another replica may have just rotated), at most once per
    /// [`LOOKUP_RELOAD`] so that made-up `kid`s cost nothing.
    pub fn find_or_reload(&self, kid: &str) -> Option<Arc<KeyPair>> {
        if let Some(key) = self.find(kid) {
            return Some(key);
        }
        if matches!(self.source, Source::Memory) {
            return None;
        }
        {
            let mut last = self.last_lookup_reload.lock().expect("reload lock");
            if last.is_some_and(|t| t.elapsed() < LOOKUP_RELOAD) {
                return None;
            }
            *last = Some(Instant::now());
        }
        if let Err(err) = self.reload() {
            tracing::warn!(error = %err, "cannot reload the OAuth signing keys");
        }
        self.find(kid)
    }

    /// Every published public key, current first.
    pub fn jwks(&self) -> JwkSet {
        let ring = self.ring.read().expect("key ring lock");
        let now = SystemTime::now();
        let mut keys = vec![ring.current.jwk().clone()];
        keys.extend(
            ring.retired
                .iter()
                .filter(|r| r.until > now)
                .map(|r| r.key.jwk().clone()),
        );
        JwkSet { keys }
    }

    /// Make a new key current; the old one stays published for the grace
    /// period. In directory mode the new key is written there first, so
    /// other replicas (and a restart) pick it up. Returns the new `kid`.
    pub fn rotate(&self) -> Result<String, KeyError> {
        let key = Arc::new(KeyPair::generate());
        if let Source::Dir(dir) = &self.source {
            write_key(dir, &key)?;
        }
        let mut ring = self.ring.write().expect("key ring lock");
        let now = SystemTime::now();
        let old = std::mem::replace(&mut ring.current, key.clone());
        ring.retired.retain(|r| r.until > now);
        ring.retired.push(Retired {
            key: old,
            until: now + self.grace,
        });
        tracing::info!(kid = key.kid(), "rotated the OAuth signing key");
        Ok(key.kid().to_owned())
    }

    /// Re-read the directory (or file) so that a key an operator dropped in
    /// becomes current. A no-op for in-memory rings.
    pub fn reload(&self) -> Result<(), KeyError> {
        let (current, mut retired) = match &self.source {
            Source::Memory => return Ok(()),
            Source::File(path) => (Arc::new(read_key(path)?), Vec::new()),
            Source::Dir(dir) => match scan_dir(dir, self.grace)? {
                (Some(current), retired) => (current, retired),
                // Someone emptied the directory: keep what we have.
                (None, _) => return Ok(()),
            },
        };
        let mut ring = self.ring.write().expect("key ring lock");
        if ring.current.kid() != current.kid() {
            // The key we signed with until now stays verifiable for the grace period.
            let now = SystemTime::now();
            if !retired.iter().any(|r| r.key.kid() == ring.current.kid()) {
                retired.push(Retired {
                    key: ring.current.clone(),
                    until: now + self.grace,
                });
            }
            tracing::info!(kid = current.kid(), "a new OAuth signing key is current");
            ring.current = current;
        }
        // Even with the same current key: an older one another replica
        // wrote (it generated its first key at the same moment as we did)
        // signs tokens this replica must accept.
        ring.retired = retired;
        Ok(())
    }
}

/// The resource server verifies our tokens with the ring's public halves.
impl KeySource for KeyRing {
    fn verifying_key(&self, kid: &str) -> Option<DecodingKey> {
        self.find_or_reload(kid).map(|key| key.decoding().clone())
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

fn read_key(path: &Path) -> Result<KeyPair, KeyError> {
    let pem = fs::read_to_string(path).map_err(io_err(path))?;
    KeyPair::from_pem(&pem).ok_or_else(|| KeyError::Format {
        path: path.to_owned(),
    })
}

/// The newest key in `dir` and the older ones still in their grace period.
fn scan_dir(dir: &Path, grace: Duration) -> Result<(Option<Arc<KeyPair>>, Vec<Retired>), KeyError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        if path.extension().is_some_and(|e| e == "pem") {
            let modified = fs::metadata(&path)
                .and_then(|m| m.modified())
                .map_err(io_err(&path))?;
            files.push((modified, path));
        }
    }
    // Newest first; ties broken by name so every replica agrees.
    files.sort_by(|a, b| b.cmp(a));
    let now = SystemTime::now();
    let mut current = None;
    let mut retired = Vec::new();
    // A key retires when its successor appeared.
    let mut successor_since: Option<SystemTime> = None;
    for (modified, path) in files {
        match successor_since {
            None => current = Some(Arc::new(read_key(&path)?)),
            Some(since) if since + grace > now => retired.push(Retired {
                key: Arc::new(read_key(&path)?),
                until: since + grace,
            }),
            Some(_) => break,
        }
        successor_since = Some(modified);
    }
    Ok((current, retired))
}

/// Write a new key as `<unix millis>-<kid>.pem`, readable by the owner only.
fn write_key(dir: &Path, key: &KeyPair) -> Result<(), KeyError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let millis = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let path = dir.join(format!("{millis}-{}.pem", key.kid()));
    let tmp = dir.join(format!(".{millis}-{}.tmp", key.kid()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(io_err(&tmp))?;
    file.write_all(key.to_pem().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_err(&tmp))?;
    // Readers only ever see complete files.
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(900);

    #[test]
    fn pem_round_trip_keeps_the_kid() {
        let key = KeyPair::generate();
        let again = KeyPair::from_pem(&key.to_pem()).unwrap();
        assert_eq!(key.kid(), again.kid());
        assert_eq!(key.kid().len(), 43, "base64url SHA-256");
        assert!(KeyPair::from_pem("not a key").is_none());
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn rotation_keeps_the_previous_key_published() {
        let ring = KeyRing::ephemeral(GRACE);
        let old = ring.current().kid().to_owned();
        let new = ring.rotate().unwrap();
        assert_ne!(old, new);
        assert_eq!(ring.current().kid(), new);
        assert!(ring.find(&old).is_some(), "old key still verifies");
        let kids: Vec<_> = ring
            .jwks()
            .keys
            .into_iter()
            .filter_map(|k| k.common.key_id)
            .collect();
        assert_eq!(kids, vec![new, old]);
    }

    #[test]
    fn retired_keys_vanish_after_the_grace_period() {
        let ring = KeyRing::ephemeral(Duration::ZERO);
        let old = ring.current().kid().to_owned();
        ring.rotate().unwrap();
        assert!(ring.find(&old).is_none());
        assert_eq!(ring.jwks().keys.len(), 1);
    }

    #[test]
    fn a_directory_keeps_its_key_across_restarts_and_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let first = KeyRing::from_dir(dir.path(), GRACE).unwrap();
        let kid = first.current().kid().to_owned();
        let again = KeyRing::from_dir(dir.path(), GRACE).unwrap();
        assert_eq!(again.current().kid(), kid, "a restart keeps the key");

        std::thread::sleep(Duration::from_millis(20));
        let new = first.rotate().unwrap();
        // The other replica picks the new key up on reload; both verify both.
        again.reload().unwrap();
        assert_eq!(again.current().kid(), new);
        assert!(again.find(&kid).is_some());
        let restarted = KeyRing::from_dir(dir.path(), GRACE).unwrap();
        // A replica that has not reloaded yet finds the new kid on demand.
        std::thread::sleep(Duration::from_millis(20));
        let newest = restarted.rotate().unwrap();
        assert!(again.find(&newest).is_none());
        assert!(again.find_or_reload(&newest).is_some());
        let restarted = KeyRing::from_dir(dir.path(), GRACE).unwrap();
        assert_eq!(restarted.current().kid(), newest);
        assert!(restarted.find(&new).is_some());

        // With no grace left, the old file is ignored.
        let strict = KeyRing::from_dir(dir.path(), Duration::ZERO).unwrap();
        assert!(strict.find(&kid).is_none());
    }

    #[test]
    fn a_replica_learns_an_older_key_another_replica_generated_at_the_same_time() {
        let dir = tempfile::tempdir().unwrap();
        let ours = KeyRing::from_dir(dir.path(), GRACE).unwrap();
        // The other replica's first key, written a moment before ours but
        // after we looked: older, so ours stays current.
        let theirs = KeyPair::generate();
        write_key(dir.path(), &theirs).unwrap();
        let file = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().contains(theirs.kid()))
            .unwrap();
        fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(1))
            .unwrap();
        let current = ours.current().kid().to_owned();
        assert!(
            ours.find_or_reload(theirs.kid()).is_some(),
            "their tokens verify"
        );
        assert_eq!(ours.current().kid(), current, "ours stays current");
        // And a replica starting now agrees on the newest.
        let later = KeyRing::from_dir(dir.path(), GRACE).unwrap();
        assert_eq!(later.current().kid(), current);
        assert!(later.find(theirs.kid()).is_some());
    }

    #[cfg(unix)]
    #[test]
    fn generated_key_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        KeyRing::from_dir(dir.path(), GRACE).unwrap();
        let file = fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap();
        let mode = file.metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    }

    #[test]
    fn a_bad_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        fs::write(&path, "garbage").unwrap();
        let err = KeyRing::from_file(&path, GRACE).unwrap_err();
        assert!(matches!(err, KeyError::Format { .. }), "{err}");
    }
}
