//! Readiness checks, collected from every part of the process.
//!
//! Each service registers what it depends on (its NATS connection, its
//! database); `/readyz` is ready only when every check passes. Liveness is
//! separate and trivial: the process answers.
//!
//! A service is also not ready before it serves: a process that runs
//! several (`jetshop up`) declares them with [`Health::expect`] before any
//! starts, and each says [`Health::started`] once its RPC endpoints and
//! consumers run. Without that, `/readyz` answered 200 while the users
//! service was still migrating, and the first registration got a 503.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sea_orm::DatabaseConnection;
use tokio::sync::RwLock;

type CheckFn =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Whether one declared service serves yet.
type StartedFlag = Arc<AtomicBool>;

/// A set of named readiness checks, shared by clone.
#[derive(Clone, Default)]
pub struct Health {
    checks: Arc<RwLock<Vec<(String, CheckFn)>>>,
    started: Arc<RwLock<Vec<(String, StartedFlag)>>>,
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

    /// Declare that `service` runs in this process: `/readyz` fails with
    /// "starting" until it calls [`Health::started`].
    pub async fn expect(&self, service: &str) {
        let flag = self.flag(service).await;
        let name = format!("{service}-started");
        self.add(name, move || {
            let up = flag.load(Ordering::Acquire);
            async move { if up { Ok(()) } else { Err("starting".into()) } }
        })
        .await;
    }

    /// `service` serves now (a no-op for a service nobody declared).
    pub async fn started(&self, service: &str) {
        self.flag(service).await.store(true, Ordering::Release);
    }

    async fn flag(&self, service: &str) -> Arc<AtomicBool> {
        let mut started = self.started.write().await;
        if let Some((_, flag)) = started.iter().find(|(name, _)| name == service) {
            return flag.clone();
        }
        let flag = Arc::new(AtomicBool::new(false));
        started.push((service.to_owned(), flag.clone()));
        flag
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

#[cfg(test)]
mod tests {
    use super::*;

    fn failing(results: &[CheckResult]) -> Vec<&str> {
        results
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name.as_str())
            .collect()
    }

    #[tokio::test]
    async fn an_expected_service_is_not_ready_until_it_has_started() {
        let health = Health::default();
        health.expect("users").await;
        health.expect("orders").await;
        assert_eq!(
            failing(&health.check().await),
            ["users-started", "orders-started"]
        );

        health.started("users").await;
        assert_eq!(failing(&health.check().await), ["orders-started"]);

        health.started("orders").await;
        assert!(failing(&health.check().await).is_empty());
    }

    #[tokio::test]
    async fn a_service_nobody_expected_adds_no_check() {
        let health = Health::default();
        health.started("users").await;
        assert!(health.check().await.is_empty());
    }
}
