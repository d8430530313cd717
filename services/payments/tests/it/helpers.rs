//! Spawning the payments service for one test, driving it with commands
//! and reading what it said and booked.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{self, message::StreamMessage};
use jetshop_contracts::{
    Command, Encoding, Message,
    catalog::Money,
    headers,
    payments::{
        AuthorizePayment, CapturePayment, PaymentAuthorized, PaymentCaptured, PaymentDeclined,
        PaymentRefunded, PaymentVoided, RefundPayment, VoidPayment,
    },
    streams,
};
use jetshop_payments::{
    CardProcessorClient, PaymentsSettings, ResilientProvider,
    audit::{self, IntentSummary},
    domain::IntentState,
    handlers::commands::CONSUMER,
};
use jetshop_platform::{
    config::{ConsumerSettings, NatsSettings},
    envelope::{self, MessageMeta},
    runtime::Runtime,
};
use jetshop_testkit::{CardProcessor, NatsServer, TestDb, eventually};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Long enough for a slow, shared test machine; never a timing assertion.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub const CORRELATION: &str = "test-correlation";

/// A running payments service with its own NATS server and database.
pub struct TestPayments {
    pub _server: NatsServer,
    pub _db: TestDb,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    /// The card processor (a real one, in process; outlives restarts of
    /// the service, and can be restarted itself).
    pub processor: CardProcessor,
    /// The adapter the service calls it with (tests call it directly to
    /// play an earlier process).
    pub provider: Arc<CardProcessorClient>,
    /// The resilience layer the service calls it through.
    pub guarded: Arc<ResilientProvider>,
    pub settings: PaymentsSettings,
    /// The test's own connection to the service's database.
    pub books: DatabaseConnection,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), jetshop_payments::Error>>>,
    events: Mutex<(u64, Vec<PaymentEvent>)>,
}

/// Settings for tests: quick redeliveries, no DLQ by accident.
pub fn test_settings(url: &str) -> PaymentsSettings {
    PaymentsSettings {
        provider_backoff: Duration::from_millis(10),
        consumer: ConsumerSettings {
            max_deliver: 20,
            backoff: vec![Duration::from_millis(100)],
            ack_wait: Duration::from_secs(10),
            concurrency: 8,
            pin_timeout: Duration::from_secs(2),
        },
        ..PaymentsSettings::for_database(url)
    }
}

impl TestPayments {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(tweak: impl FnOnce(&mut PaymentsSettings)) -> Self {
        jetshop_testkit::init_test_log();
        let server = NatsServer::start();
        let db = TestDb::fresh().await;
        let client =
            jetshop_platform::nats::connect(&NatsSettings::for_url(server.url()), "payments-test")
                .await
                .unwrap();
        let processor = CardProcessor::start().await;
        let mut settings = test_settings(&db.url);
        settings.provider_url = processor.url();
        tweak(&mut settings);
        let provider = Arc::new(
            CardProcessorClient::new(&settings.provider_url, settings.provider_timeout).unwrap(),
        );
        let guarded = Arc::new(ResilientProvider::new(
            provider.clone(),
            settings.resilience(),
        ));
        let js = jetstream::new(client.clone());
        let (shutdown, task) = start(&client, &js, &settings, guarded.clone()).await;
        let books = jetshop_payments::connect(&db.url).await.unwrap();
        Self {
            _server: server,
            _db: db,
            client,
            js,
            processor,
            provider,
            guarded,
            settings,
            books,
            shutdown,
            task: Some(task),
            events: Mutex::new((0, Vec::new())),
        }
    }

    /// Stop the service and wait for it to drain.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Stop and start again on the same database, streams and provider.
    pub async fn restart(&mut self) {
        self.stop().await;
        let (shutdown, task) =
            start(&self.client, &self.js, &self.settings, self.guarded.clone()).await;
        self.shutdown = shutdown;
        self.task = Some(task);
    }

    /// Start another replica of the service, as `jetshop run payments`
    /// would (its own NATS connection and provider adapter, same database,
    /// same processor); it stops when the returned token is cancelled.
    pub async fn start_replica(
        &self,
    ) -> (
        CancellationToken,
        tokio::task::JoinHandle<Result<(), jetshop_payments::Error>>,
    ) {
        let client = jetshop_platform::nats::connect(
            &NatsSettings::for_url(self._server.url()),
            "payments-replica",
        )
        .await
        .unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(jetshop_payments::run(
            self.settings.clone(),
            Runtime::new(client, 1),
            stop.clone(),
        ));
        (stop, task)
    }

    /// Send a command under a fresh message id; returns the id.
    pub async fn send<C: Command>(&self, cmd: &C) -> String {
        let id = Uuid::now_v7().to_string();
        self.send_as(&id, cmd).await;
        id
    }

    /// Send a command under a chosen message id.
    pub async fn send_as<C: Command>(&self, id: &str, cmd: &C) {
        envelope::send_command(&self.js, id, cmd, &MessageMeta::correlated(CORRELATION))
            .await
            .unwrap();
    }

    /// Deliver a command again as the same message: a new `Nats-Msg-Id` (so
    /// JetStream stores it) naming the original, as a DLQ replay does. The
    /// consumer deduplicates on the original id, exactly as for a
    /// redelivery whose first ack was lost.
    pub async fn redeliver<C: Command>(&self, original_id: &str, cmd: &C) {
        let mut h = envelope::headers_for::<C>(
            &Uuid::now_v7().to_string(),
            Encoding::MsgPack,
            &MessageMeta::correlated(CORRELATION),
        );
        h.insert(headers::REPLAY_ORIGINAL_MSG_ID, original_id);
        let payload = Encoding::MsgPack.encode(cmd).unwrap();
        self.js
            .publish_with_headers(cmd.subject().into_owned(), h, payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    pub async fn authorize(&self, order_id: Uuid, amount_minor: i64, token: &str) -> String {
        self.send(&authorize_cmd(order_id, amount_minor, token))
            .await
    }

    pub async fn capture(&self, order_id: Uuid) -> String {
        self.send(&CapturePayment { order_id }).await
    }

    pub async fn void(&self, order_id: Uuid) -> String {
        self.send(&VoidPayment {
            order_id,
            reason: Some("customer cancelled".into()),
        })
        .await
    }

    pub async fn refund(&self, order_id: Uuid) -> String {
        self.send(&RefundPayment {
            order_id,
            reason: Some("returned".into()),
        })
        .await
    }

    /// Wait until every command sent so far is acknowledged (or dead-lettered)
    /// and every event it caused is published. After this, counting events
    /// is exact: nothing more is coming.
    pub async fn settle(&self) {
        let js = self.js.clone();
        let books = self.books.clone();
        eventually("commands handled and outbox drained", PATIENCE, || {
            let js = js.clone();
            let books = books.clone();
            async move {
                let commands = jetshop_testkit::stream_count(&js, streams::PAYMENTS_COMMANDS).await;
                let unpublished = jetshop_platform::outbox::entity::Entity::find()
                    .filter(jetshop_platform::outbox::entity::Column::PublishedAt.is_null())
                    .count(&books)
                    .await
                    .ok()?;
                (commands == 0 && unpublished == 0).then_some(())
            }
        })
        .await;
    }

    /// Every event published so far, in stream order.
    pub async fn events(&self) -> Vec<PaymentEvent> {
        let mut cache = self.events.lock().await;
        let mut stream = self.js.get_stream(streams::PAYMENTS_EVENTS).await.unwrap();
        let last = stream.info().await.unwrap().state.last_sequence;
        // An events stream never deletes: every sequence is there. Stop at
        // a failed read and pick up from it next time.
        for seq in cache.0 + 1..=last {
            let Ok(m) = stream.get_raw_message(seq).await else {
                break;
            };
            cache.1.push(PaymentEvent::decode(&m));
            cache.0 = seq;
        }
        cache.1.clone()
    }

    pub async fn events_of(&self, order_id: Uuid) -> Vec<PaymentEvent> {
        self.events()
            .await
            .into_iter()
            .filter(|e| e.order_id() == order_id)
            .collect()
    }

    /// Wait until `order_id` has at least `n` events; return them.
    pub async fn wait_events_of(&self, order_id: Uuid, n: usize) -> Vec<PaymentEvent> {
        eventually(
            &format!("{n} events of order {order_id}"),
            PATIENCE,
            || async {
                let events = self.events_of(order_id).await;
                (events.len() >= n).then_some(events)
            },
        )
        .await
    }

    pub async fn intent(&self, order_id: Uuid) -> Option<IntentSummary> {
        audit::intent(&self.books, order_id).await.unwrap()
    }

    pub async fn wait_state(&self, order_id: Uuid, state: IntentState) -> IntentSummary {
        eventually(&format!("order {order_id} {state}"), PATIENCE, || async {
            self.intent(order_id).await.filter(|i| i.state == state)
        })
        .await
    }

    /// Dead letters of the payments consumer, waiting for at least `n`.
    pub async fn dead_letters(&self, n: u64) -> Vec<StreamMessage> {
        jetshop_testkit::stream_messages(&self.js, streams::DLQ, n)
            .await
            .into_iter()
            .filter(|m| {
                jetshop_testkit::header(m, headers::dlq::CONSUMER).as_deref() == Some(CONSUMER)
            })
            .collect()
    }

    pub async fn dlq_count(&self) -> u64 {
        jetshop_testkit::stream_count(&self.js, streams::DLQ).await
    }
}

impl Drop for TestPayments {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(
    client: &async_nats::Client,
    js: &jetstream::Context,
    settings: &PaymentsSettings,
    guarded: Arc<ResilientProvider>,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), jetshop_payments::Error>>,
) {
    let rt = Runtime::new(client.clone(), 1);
    let shutdown = CancellationToken::new();
    let mut task = tokio::spawn(jetshop_payments::run_with_resilient(
        settings.clone(),
        rt,
        guarded,
        shutdown.clone(),
    ));
    // Ready once the command consumer exists; a start-up failure surfaces here.
    let ready = tokio::time::timeout(PATIENCE, async {
        loop {
            tokio::select! {
                ended = &mut task => panic!("payments stopped during start-up: {ended:?}"),
                _ = tokio::time::sleep(Duration::from_millis(25)) => {}
            }
            if let Ok(stream) = js.get_stream(streams::PAYMENTS_COMMANDS).await
                && stream
                    .get_consumer::<jetstream::consumer::pull::Config>(CONSUMER)
                    .await
                    .is_ok()
            {
                break;
            }
        }
    })
    .await;
    assert!(ready.is_ok(), "the payments consumer did not start");
    (shutdown, task)
}

pub fn authorize_cmd(order_id: Uuid, amount_minor: i64, token: &str) -> AuthorizePayment {
    AuthorizePayment {
        order_id,
        amount: eur(amount_minor),
        card_token: token.into(),
    }
}

pub fn eur(amount_minor: i64) -> Money {
    Money {
        amount_minor,
        currency: "EUR".into(),
    }
}

/// A payments event, decoded by its type header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentEvent {
    Authorized(PaymentAuthorized),
    Declined(PaymentDeclined),
    Captured(PaymentCaptured),
    Voided(PaymentVoided),
    Refunded(PaymentRefunded),
}

impl PaymentEvent {
    fn decode(m: &StreamMessage) -> Self {
        let t = jetshop_testkit::header(m, headers::TYPE).expect("typed event");
        let payload = &m.payload;
        match t.as_str() {
            PaymentAuthorized::TYPE => Self::Authorized(Encoding::MsgPack.decode(payload).unwrap()),
            PaymentDeclined::TYPE => Self::Declined(Encoding::MsgPack.decode(payload).unwrap()),
            PaymentCaptured::TYPE => Self::Captured(Encoding::MsgPack.decode(payload).unwrap()),
            PaymentVoided::TYPE => Self::Voided(Encoding::MsgPack.decode(payload).unwrap()),
            PaymentRefunded::TYPE => Self::Refunded(Encoding::MsgPack.decode(payload).unwrap()),
            other => panic!("unexpected event type {other}"),
        }
    }

    pub fn order_id(&self) -> Uuid {
        match self {
            Self::Authorized(e) => e.order_id,
            Self::Declined(e) => e.order_id,
            Self::Captured(e) => e.order_id,
            Self::Voided(e) => e.order_id,
            Self::Refunded(e) => e.order_id,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Authorized(_) => "authorized",
            Self::Declined(_) => "declined",
            Self::Captured(_) => "captured",
            Self::Voided(_) => "voided",
            Self::Refunded(_) => "refunded",
        }
    }
}

/// The kinds of `events`, in order.
pub fn kinds(events: &[PaymentEvent]) -> Vec<&'static str> {
    events.iter().map(PaymentEvent::kind).collect()
}
