//! Password and client-secret hashing with argon2id (PHC strings).
//!
//! Hashing is slow on purpose, so it runs on the blocking pool and at most
//! `concurrency` hashes run at once (each holds `memory_kib` of memory).
//! Verification against an unknown account or client still does one full
//! verification, against a dummy hash made at start with the same
//! parameters, so the answer takes about as long as for a wrong password.

use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use tokio::sync::Semaphore;

use crate::{Error, settings::Argon2Settings};

/// Hashes and verifies secrets. Cheap to clone.
#[derive(Clone)]
pub struct Hasher {
    params: Params,
    /// A hash of a random secret nobody knows, verified against when there
    /// is no real hash, to spend the same time as a real verification.
    dummy: Arc<str>,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl Hasher {
    /// A hasher with these costs; computes the dummy hash once.
    pub async fn new(settings: &Argon2Settings) -> Result<Self, Error> {
        let params = settings.params()?;
        let mut hasher = Self {
            params,
            dummy: Arc::from(""),
            permits: Arc::new(Semaphore::new(settings.concurrency.max(1))),
        };
        hasher.dummy = Arc::from(hasher.hash(&generate_secret()).await?);
        Ok(hasher)
    }

    fn argon2(params: Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    /// Hash `secret` with a fresh random salt into a PHC string.
    pub async fn hash(&self, secret: &str) -> Result<String, Error> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::Internal("hasher closed".into()))?;
        let params = self.params.clone();
        let secret = secret.to_owned();
        tokio::task::spawn_blocking(move || {
            Self::argon2(params)
                .hash_password(secret.as_bytes())
                .map(|h| h.to_string())
                // The error names the failed step, never the input.
                .map_err(|e| Error::Internal(format!("argon2 hash: {e}")))
        })
        .await
        .map_err(|e| Error::Internal(format!("argon2 hash task: {e}")))?
    }

    /// Whether `secret` matches `stored` (a PHC string). With `None`, the
    /// dummy hash is verified instead and the answer is `false`: the caller
    /// spends the same time whether or not the account exists.
    pub async fn verify(&self, secret: &str, stored: Option<&str>) -> Result<bool, Error> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::Internal("hasher closed".into()))?;
        let real = stored.is_some();
        let phc = stored.map_or_else(|| self.dummy.to_string(), str::to_owned);
        let secret = secret.to_owned();
        let params = self.params.clone();
        let matched = tokio::task::spawn_blocking(move || {
            let Ok(hash) = PasswordHash::new(&phc) else {
                tracing::warn!("a stored secret hash is not a PHC string; refusing it");
                return false;
            };
            // Verification uses the parameters in the hash, not ours.
            Self::argon2(params)
                .verify_password(secret.as_bytes(), &hash)
                .is_ok()
        })
        .await
        .map_err(|e| Error::Internal(format!("argon2 verify task: {e}")))?;
        Ok(real && matched)
    }
}

/// A new random secret (256 bits from the thread-local CSPRNG, hex), for
/// client secrets shown once.
pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Argon2Settings {
        Argon2Settings {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            concurrency: 2,
        }
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let h = Hasher::new(&cheap()).await.unwrap();
        let phc = h.hash("tr0ub4dor&3-horse").await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(h.verify("tr0ub4dor&3-horse", Some(&phc)).await.unwrap());
        assert!(!h.verify("tr0ub4dor&3-horsE", Some(&phc)).await.unwrap());
        assert!(!h.verify("anything", None).await.unwrap());
        assert!(!h.verify("anything", Some("not a hash")).await.unwrap());
    }

    #[tokio::test]
    async fn hashes_verify_with_their_own_parameters() {
        let old = Hasher::new(&cheap()).await.unwrap();
        let phc = old.hash("tr0ub4dor&3-horse").await.unwrap();
        let new = Hasher::new(&Argon2Settings {
            memory_kib: 128,
            ..cheap()
        })
        .await
        .unwrap();
        assert!(new.verify("tr0ub4dor&3-horse", Some(&phc)).await.unwrap());
    }

    /// Prints what one hash and one verification cost with the production
    /// parameters in this build (`cargo nextest run -p jetshop-users
    /// --no-capture production_cost`). A measurement, not a timed assertion.
    #[tokio::test]
    async fn production_cost() {
        let h = Hasher::new(&Argon2Settings::default()).await.unwrap();
        let started = std::time::Instant::now();
        let phc = h.hash("tr0ub4dor&3-horse").await.unwrap();
        let hashed = started.elapsed();
        let started = std::time::Instant::now();
        assert!(h.verify("tr0ub4dor&3-horse", Some(&phc)).await.unwrap());
        let verified = started.elapsed();
        let started = std::time::Instant::now();
        assert!(!h.verify("tr0ub4dor&3-horse", None).await.unwrap());
        let dummy = started.elapsed();
        eprintln!(
            "argon2id m=19456 t=2 p=1: hash {hashed:?}, verify {verified:?}, unknown-account verify {dummy:?}"
        );
    }

    #[test]
    fn secrets_are_long_and_distinct() {
        let (a, b) = (generate_secret(), generate_secret());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
