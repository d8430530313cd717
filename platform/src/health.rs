//! Readiness checks, collected from every part of the process.
//!
//! Each service registers what it depends on (its NATS connection, its
//! database); `/readyz` is ready only when every check passes. Liveness is
//! separate and trivial: the process answers.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use sea_orm::DatabaseConnection;
use tokio::sync::RwLock;

type CheckFn =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// A set of named readiness checks, shared by clone.
#[derive(Clone, Default)]
pub struct Health {
    checks: Arc<RwLock<Vec<(String, CheckFn)>>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").finish_non_exhaustive()
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckResult {
    /// The check's name (`nats`, `catalog-db`).
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// Why not, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Health {
    /// Register a check.
    pub async fn add<F, Fut>(&self, name: impl Into<String>, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let f: CheckFn = Arc::new(move || Box::pin(check()));
        self.checks.write().await.push((name.into(), f));
    }

    /// Register a check that the NATS connection is up.
    pub async fn add_nats(&self, name: impl Into<String>, client: async_nats::Client) {
        self.add(name, move || {
            let state = client.connection_state();
            async move {
                match state {
                    async_nats::connection::State::Connected => Ok(()),
                    other => Err(format!("NATS connection is {other:?}")),
                }
            }
        })
        .await;
    }

    /// Register a check that the database answers.
    pub async fn add_db(&self, name: impl Into<String>, db: DatabaseConnection) {
        self.add(name, move || {
            let db = db.clone();
            async move { db.ping().await.map_err(|e| e.to_string()) }
        })
        .await;
    }

    /// Run every check, each bounded by a short timeout.
    pub async fn check(&self) -> Vec<CheckResult> {
        let checks = self.checks.read().await.clone();
        let mut out = Vec::with_capacity(checks.len());
        for (name, f) in checks {
            let result = match tokio::time::timeout(Duration::from_secs(2), f()).await {
                Ok(r) => r,
                Err(_) => Err("timed out after 2s".into()),
            };
            out.push(CheckResult {
                name,
                ok: result.is_ok(),
                error: result.err(),
            });
        }
        out
    }
}
