//! A real card processor (`jetshop-card-processor`) for one test, in this
//! process, on a free port with its own fresh database.

use std::time::Duration;

use jetshop_card_processor::CardProcessorSettings;
use jetshop_contracts::card_processor::{Activity, ActivityQuery, Outage, Payment, paths};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::TestDb;

/// How long `tok_timeout` takes to answer here: longer than any test's
/// provider timeout, short enough not to hold a test up.
pub const LATE_AFTER: Duration = Duration::from_secs(5);

type Running = (
    CancellationToken,
    JoinHandle<Result<(), jetshop_card_processor::Error>>,
);

/// A running card processor. It can be stopped and started again on the
/// same port and database (a processor restart); it stops on drop.
#[derive(Debug)]
pub struct CardProcessor {
    port: u16,
    settings: CardProcessorSettings,
    db: TestDb,
    running: Option<Running>,
    http: reqwest::Client,
}

impl CardProcessor {
    /// Start one on a free port and a fresh database ([`TestDb::fresh`]).
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Start one with adjusted settings (the database and address are the
    /// harness's).
    pub async fn start_with(tweak: impl FnOnce(&mut CardProcessorSettings)) -> Self {
        let db = TestDb::fresh().await;
        let mut settings = CardProcessorSettings::for_database(db.url.clone());
        settings.late_after = LATE_AFTER;
        tweak(&mut settings);
        settings.database_url = db.url.clone();
        let mut processor = Self {
            port: 0,
            settings,
            db,
            running: None,
            http: reqwest::Client::new(),
        };
        processor.spawn().await;
        processor
    }

    async fn spawn(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap_or_else(|e| panic!("bind the card processor on port {}: {e}", self.port));
        self.port = listener.local_addr().unwrap().port();
        let stop = CancellationToken::new();
        let task = tokio::spawn(jetshop_card_processor::serve(
            self.settings.clone(),
            listener,
            stop.clone(),
        ));
        self.running = Some((stop, task));
        let health = format!("{}{}", self.url(), paths::HEALTHZ);
        crate::eventually(
            "the card processor to answer",
            Duration::from_secs(30),
            || {
                let http = self.http.clone();
                let health = health.clone();
                async move {
                    http.get(&health)
                        .send()
                        .await
                        .ok()?
                        .status()
                        .is_success()
                        .then_some(())
                }
            },
        )
        .await;
    }

    /// `http://127.0.0.1:<port>`: what payments' `provider_url` is set to.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its database (to share with a second instance, or to inspect).
    pub fn database_url(&self) -> &str {
        &self.db.url
    }

    /// Stop it (gracefully: open requests end). Its database survives.
    pub async fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            stop.cancel();
            task.await
                .expect("card processor task")
                .expect("card processor stopped cleanly");
        }
    }

    /// Stop it and start it again on the same port and database.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    async fn activity_of(&self, query: &ActivityQuery) -> Activity {
        let path = match query.order_reference {
            Some(order) => format!("{}?order_reference={order}", paths::ACTIVITY),
            None => paths::ACTIVITY.to_owned(),
        };
        let resp = self
            .http
            .get(format!("{}{path}", self.url()))
            .send()
            .await
            .expect("card processor answers");
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.json().await.expect("card processor JSON")
    }

    /// What it did for `order_id`.
    pub async fn activity(&self, order_id: Uuid) -> Activity {
        self.activity_of(&ActivityQuery {
            order_reference: Some(order_id),
        })
        .await
    }

    /// What it did, over all orders.
    pub async fn total(&self) -> Activity {
        self.activity_of(&ActivityQuery::default()).await
    }

    /// Requests that reached it, over all orders.
    pub async fn calls(&self) -> u64 {
        self.total().await.calls
    }

    /// A payment as it sees it.
    pub async fn payment(&self, merchant_reference: Uuid) -> Option<Payment> {
        let resp = self
            .http
            .get(format!(
                "{}{}",
                self.url(),
                paths::payment(merchant_reference)
            ))
            .send()
            .await
            .expect("card processor answers");
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        Some(resp.json().await.expect("card processor JSON"))
    }

    /// Fault injection: while on, every operation answers 503.
    pub async fn set_outage(&self, on: bool) {
        let resp = self
            .http
            .put(format!("{}{}", self.url(), paths::OUTAGE))
            .json(&Outage { on })
            .send()
            .await
            .expect("card processor answers");
        assert!(resp.status().is_success(), "PUT outage: {}", resp.status());
    }
}

impl Drop for CardProcessor {
    fn drop(&mut self) {
        if let Some((stop, _)) = &self.running {
            stop.cancel();
        }
    }
}
