//! The durable pull-consumer runner every service uses.
//!
//! A handler answers each message with `Ok` (ack), a transient error (nak
//! with the next backoff delay plus jitter) or a permanent error (dead
//! letter at once). The last allowed delivery that still fails is dead-
//! lettered too: the `DLQ` stream gets the original subject, payload and
//! headers plus the reason, consumer, stream sequence and delivery count.
//! Nothing is dropped silently. A handler that runs long keeps its message
//! with in-progress acks. On shutdown the runner stops pulling and finishes
//! what it holds.
//!
//! An unavailable dependency ([`HandlerError::Unavailable`]: the database
//! is restarting, its pool is exhausted) is not the message's fault, so it
//! never dead-letters it: it is nak'd with backoff like a transient error,
//! and at the last allowed delivery the runner keeps the message (with
//! in-progress acks) and retries the handler in place, on the last backoff
//! step, until the dependency is back. Only a shutdown during that wait
//! dead-letters it, with the reason, because the server would not deliver
//! it again.

use std::{future::Future, sync::Arc, time::Duration};

use async_nats::{
    HeaderMap,
    jetstream::{
        self, AckKind,
        consumer::{AckPolicy, DeliverPolicy, PriorityPolicy, pull},
    },
};
use bytes::Bytes;
use futures::StreamExt;
use jetshop_contracts::{Encoding, Message, headers, streams, subjects};
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{Error, config::ConsumerSettings, envelope::MessageMeta, metrics as m, telemetry};

/// How a handler failed, which decides what happens to the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Might work later (database busy, dependency down): retry with backoff.
    #[error("transient: {0}")]
    Transient(String),
    /// Will never work (malformed, invalid): dead-letter now.
    #[error("permanent: {0}")]
    Permanent(String),
    /// Infrastructure this handler needs is down or saturated (database
    /// unreachable or restarting, pool exhausted): retried for as long as
    /// it lasts, never dead-lettered for it (see the module docs).
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// A database error: [`HandlerError::Unavailable`] when it is an
/// infrastructure failure ([`crate::db::is_transient`]), otherwise
/// [`HandlerError::Transient`] (retried, dead-lettered after the last
/// delivery), as a service has not mapped it to anything more specific.
impl From<sea_orm::DbErr> for HandlerError {
    fn from(err: sea_orm::DbErr) -> Self {
        if crate::db::is_transient(&err) {
            Self::Unavailable(format!("database: {err}"))
        } else {
            Self::Transient(format!("database: {err}"))
        }
    }
}

/// A runtime failure: a database infrastructure failure is
/// [`HandlerError::Unavailable`], anything else (NATS, a publish) transient.
impl From<Error> for HandlerError {
    fn from(err: Error) -> Self {
        if err.is_transient_db() {
            Self::Unavailable(err.to_string())
        } else {
            Self::Transient(err.to_string())
        }
    }
}

impl HandlerError {
    /// A failure worth retrying.
    pub fn transient(e: impl std::fmt::Display) -> Self {
        Self::Transient(e.to_string())
    }

    /// A failure no retry will fix.
    pub fn permanent(e: impl std::fmt::Display) -> Self {
        Self::Permanent(e.to_string())
    }

    /// A dependency that is down or saturated; retried until it is back.
    pub fn unavailable(e: impl std::fmt::Display) -> Self {
        Self::Unavailable(e.to_string())
    }

    /// `message` as the transient error it is, or as
    /// [`HandlerError::Unavailable`] when `unavailable` (a service's error
    /// type says whether its cause is a database infrastructure failure).
    pub fn transient_or_unavailable(message: impl std::fmt::Display, unavailable: bool) -> Self {
        if unavailable {
            Self::Unavailable(message.to_string())
        } else {
            Self::Transient(message.to_string())
        }
    }
}

/// One message handed to a handler.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The subject it was published on.
    pub subject: String,
    /// The raw payload.
    pub payload: Bytes,
    /// The headers it was published with.
    pub headers: Option<HeaderMap>,
    /// Ids read from the headers.
    pub meta: MessageMeta,
    /// The stream it came from.
    pub stream: String,
    /// Its sequence in the stream.
    pub stream_sequence: u64,
    /// 1 for the first delivery, more for redeliveries.
    pub delivered: i64,
    /// The consumer delivering it (a per-key consumer's name, not its
    /// partition's durable).
    pub consumer: String,
}

impl Delivery {
    /// Decode the payload as `M`, per its `Content-Type`. A payload that does
    /// not decode will never decode: that is a permanent error.
    pub fn decode<M: Message>(&self) -> Result<M, HandlerError> {
        let content_type = self
            .headers
            .as_ref()
            .and_then(|h| h.get(headers::CONTENT_TYPE))
            .map(|v| v.as_str());
        let encoding =
            Encoding::detect(content_type, &self.payload).map_err(HandlerError::permanent)?;
        encoding
            .decode(&self.payload)
            .map_err(|e| HandlerError::Permanent(format!("malformed {} payload: {e}", M::TYPE)))
    }

    /// The id to deduplicate on: `Nats-Msg-Id`, or stream and sequence for a
    /// message published without one. A message replayed from the DLQ has a
    /// new `Nats-Msg-Id` but keeps the original one in
    /// [`headers::REPLAY_ORIGINAL_MSG_ID`], and that is the one used: a
    /// consumer that already handled the original skips the replay, the one
    /// that dead-lettered it (and so recorded nothing) handles it.
    pub fn dedupe_id(&self) -> String {
        self.headers
            .as_ref()
            .and_then(|h| h.get(headers::REPLAY_ORIGINAL_MSG_ID))
            .map(|v| v.as_str().to_owned())
            .filter(|id| !id.is_empty())
            .or_else(|| self.meta.message_id.clone())
            .unwrap_or_else(|| format!("{}:{}", self.stream, self.stream_sequence))
    }
}

/// Which messages a durable consumer takes.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// The stream to consume.
    pub stream: String,
    /// Durable name, `<consumer-context>-<purpose>`: traces show the
    /// deliveries as the work of `<consumer-context>`.
    pub durable: String,
    /// What it is for (`nats consumer info` shows it).
    pub description: String,
    /// Subjects to take; empty means the whole stream.
    pub filter_subjects: Vec<String>,
}

/// The server-side consumer configuration for a spec and settings.
///
/// The backoff schedule is applied by the runner (a nak carries the next
/// delay), not by the server: a server-side `backoff` list replaces
/// `ack_wait` as the ack deadline of every delivery, so with the usual
/// steps (1s) shorter than `ack_wait` (30s) a handler running longer than
/// the first step would be redelivered while still running, its
/// in-progress acks (every third of `ack_wait`) coming too late.
pub fn consumer_config(spec: &ConsumerSpec, settings: &ConsumerSettings) -> pull::Config {
    pull::Config {
        durable_name: Some(spec.durable.clone()),
        description: Some(spec.description.clone()),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: settings.ack_wait,
        max_deliver: settings.max_deliver,
        filter_subjects: spec.filter_subjects.clone(),
        max_ack_pending: i64::try_from(settings.concurrency * 4)
            .unwrap_or(1024)
            .max(1),
        ..Default::default()
    }
}

/// The priority group every per-key partition consumer pins its one
/// replica in.
pub const PINNED_GROUP: &str = "jetshop";

/// The server-side configuration of one partition of a per-key consumer
/// (see [`run_per_key`]): one message in flight, and one replica pinned.
pub fn partition_config(spec: &ConsumerSpec, settings: &ConsumerSettings) -> pull::Config {
    pull::Config {
        max_ack_pending: 1,
        priority_policy: PriorityPolicy::PinnedClient,
        priority_groups: vec![PINNED_GROUP.to_owned()],
        priority_timeout: settings.pin_timeout,
        ..consumer_config(spec, settings)
    }
}

/// How a runner pulls: any number of messages at once from a consumer all
/// replicas share, or one at a time as the replica pinned to a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pulling {
    Shared,
    Pinned,
}

/// Run the consumer until `shutdown`, handling each message with `handler`.
/// Returns once in-flight messages are finished.
pub async fn run<H, Fut>(
    js: jetstream::Context,
    spec: ConsumerSpec,
    settings: ConsumerSettings,
    handler: H,
    shutdown: CancellationToken,
) -> Result<(), Error>
where
    H: Fn(Delivery) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    let name = spec.durable.clone();
    run_pulling(js, spec, name, settings, Pulling::Shared, handler, shutdown).await
}

/// Run a consumer whose messages of one key must be handled in the order
/// they were stored, with any number of replicas running it.
///
/// The stream must be partitioned ([`StreamSpec::partitioned`], into
/// [`streams::KEY_PARTITIONS`]) and the
/// spec's filters are keyed base subjects ([`subjects::keyed`]). Each
/// partition gets its own durable (`<durable>-p<n>`) with the pinned-client
/// priority policy (ADR-42, nats-server 2.11+): the server delivers a
/// partition to one replica at a time, one message at a time (a failing
/// message is retried before the next, so a redelivery never overtakes),
/// and moves it to a standby replica when the pinned one stops pulling for
/// `pin_timeout` (it died, stalled or lost the server). A partition's ack
/// deadline is at most `pin_timeout`, so the message a dead replica held
/// comes back about as soon as the partition moves. The server's
/// partitioning and pinning replace any lock of ours: a replica that
/// comes back after its pin moved is told so and stands by.
///
/// Order is per key, not across keys: partitions run side by side.
///
/// [`StreamSpec::partitioned`]: jetshop_contracts::streams::StreamSpec::partitioned
pub async fn run_per_key<H, Fut>(
    js: jetstream::Context,
    spec: ConsumerSpec,
    settings: ConsumerSettings,
    handler: H,
    shutdown: CancellationToken,
) -> Result<(), Error>
where
    H: Fn(Delivery) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    if spec.filter_subjects.is_empty() {
        return Err(Error::Config(format!(
            "consumer {}: per-key order needs keyed filter subjects",
            spec.durable
        )));
    }
    // A store from before per-key order has one durable under the plain
    // name; on a work-queue stream it would overlap the partitions' filters
    // and the server would refuse them. The partitions replace it.
    if let Ok(stream) = js.get_stream(&spec.stream).await
        && stream.delete_consumer(&spec.durable).await.is_ok()
    {
        tracing::warn!(consumer = %spec.durable, "removed the consumer from before per-key order; its partitions replace it");
    }
    // One failing partition (its consumer cannot be created) stops the
    // others: a replica serving only some partitions would look healthy.
    let stop = shutdown.child_token();
    let mut runs = JoinSet::new();
    for partition in 0..streams::KEY_PARTITIONS {
        let part = ConsumerSpec {
            durable: format!("{}-p{partition}", spec.durable),
            description: format!("{} (partition {partition})", spec.description),
            filter_subjects: spec
                .filter_subjects
                .iter()
                .map(|base| subjects::keyed::in_partition(base, partition))
                .collect(),
            stream: spec.stream.clone(),
        };
        runs.spawn(run_pulling(
            js.clone(),
            part,
            spec.durable.clone(),
            settings.clone(),
            Pulling::Pinned,
            handler.clone(),
            stop.clone(),
        ));
    }
    let mut result = Ok(());
    while let Some(ended) = runs.join_next().await {
        let ended = ended.unwrap_or_else(|join| {
            Err(Error::Panicked {
                task: "partition consumer",
                source: join,
            })
        });
        if let Err(err) = ended {
            stop.cancel();
            if result.is_ok() {
                result = Err(err);
            }
        }
    }
    result
}

/// `name` is the consumer as the service knows it: a partition's durable
/// reports deliveries, metrics and dead letters under it, so operators and
/// the inbox see one consumer whatever the partitioning.
async fn run_pulling<H, Fut>(
    js: jetstream::Context,
    spec: ConsumerSpec,
    name: String,
    mut settings: ConsumerSettings,
    pulling: Pulling,
    handler: H,
    shutdown: CancellationToken,
) -> Result<(), Error>
where
    H: Fn(Delivery) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    settings.validate()?;
    let config = match pulling {
        Pulling::Shared => consumer_config(&spec, &settings),
        Pulling::Pinned => {
            // One at a time: the next message of a partition waits until
            // this one is acknowledged or dead-lettered.
            settings.concurrency = 1;
            // A partition waits for the message a dead replica held until
            // its ack deadline: keep that no longer than the pin timeout
            // (in-progress acks keep a long handler's message, as always).
            settings.ack_wait = settings.ack_wait.min(settings.pin_timeout);
            partition_config(&spec, &settings)
        }
    };
    let stream = js
        .get_stream(&spec.stream)
        .await
        .map_err(|e| Error::jetstream(format!("get stream {}", spec.stream), e))?;
    let consumer: jetstream::consumer::Consumer<pull::Config> = stream
        .create_consumer(config)
        .await
        .map_err(|e| Error::jetstream(format!("create consumer {}", spec.durable), e))?;
    tracing::info!(consumer = %spec.durable, stream = %spec.stream, "consumer started");
    // A pinned replica keeps its pin only while it pulls: each pull must
    // end (and the next begin) well within the pin timeout. Pinned pulls
    // ask for no idle heartbeats: the server sends none to a replica on
    // standby, and a pull stream that gives up on missed heartbeats comes
    // back as a new client, on standby behind its own old pin.
    let (expires, heartbeat) = match pulling {
        Pulling::Shared => (Duration::from_secs(30), Some(Duration::from_secs(5))),
        Pulling::Pinned => (settings.pin_timeout / 3, None),
    };

    let ctx = Arc::new(Runner {
        js,
        spec,
        name,
        settings,
        shutdown: shutdown.clone(),
    });
    let permits = Arc::new(Semaphore::new(ctx.settings.concurrency));
    let mut tasks = JoinSet::new();
    // Pull streams ended by an error in a row, for the pause before the next.
    let mut broken = 0u32;
    'outer: while !shutdown.is_cancelled() {
        let mut pull = consumer
            .stream()
            .max_messages_per_batch(ctx.settings.concurrency)
            .expires(expires);
        if let Some(heartbeat) = heartbeat {
            pull = pull.heartbeat(heartbeat);
        }
        if pulling == Pulling::Pinned {
            pull = pull.group(PINNED_GROUP);
        }
        let messages = pull.messages().await;
        let mut messages = match messages {
            Ok(m) => m,
            Err(err) => {
                tracing::warn!(consumer = %ctx.spec.durable, error = %err, "cannot pull; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.cancelled() => break,
                }
            }
        };
        loop {
            // Wait for a free slot before taking the next message, so a
            // message never sits unprocessed while its ack deadline runs.
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => p.expect("semaphore is never closed"),
                _ = shutdown.cancelled() => break 'outer,
            };
            let next = tokio::select! {
                n = messages.next() => n,
                _ = shutdown.cancelled() => break 'outer,
            };
            match next {
                Some(Ok(msg)) => {
                    let ctx = ctx.clone();
                    let handler = handler.clone();
                    tasks.spawn(async move {
                        ctx.process(msg, handler).await;
                        drop(permit);
                    });
                }
                Some(Err(err)) => {
                    // No responders (no consumer leader yet, or one being
                    // elected), missed heartbeats, a failed pull request:
                    // the pull stream would count the lost request as still
                    // pending and ask again only when its expiry runs out
                    // (30 s), so a consumer whose first pull met a leader
                    // election sat idle that long. Start a fresh pull instead.
                    broken += 1;
                    let pause = Duration::from_millis(100 << broken.min(4));
                    tracing::warn!(consumer = %ctx.spec.durable, error = %err, retry_in = ?pause, "pull interrupted; pulling afresh");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => continue 'outer,
                        _ = shutdown.cancelled() => break 'outer,
                    }
                }
                None => break,
            }
            broken = 0;
            while tasks.try_join_next().is_some() {}
        }
    }
    while tasks.try_join_next().is_some() {}
    tracing::info!(consumer = %ctx.spec.durable, in_flight = tasks.len(), "consumer stopping; finishing in-flight messages");
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// The part a durable consumer belongs to: the context its name begins with.
fn consuming_part(durable: &str) -> &str {
    durable.split('-').next().unwrap_or(durable)
}

struct Runner {
    js: jetstream::Context,
    spec: ConsumerSpec,
    /// The consumer's name for deliveries, metrics and dead letters.
    name: String,
    settings: ConsumerSettings,
    /// Ends the in-place retries of a message whose dependency is down.
    shutdown: CancellationToken,
}

impl Runner {
    async fn process<H, Fut>(&self, msg: jetstream::Message, handler: H)
    where
        H: Fn(Delivery) -> Fut,
        Fut: Future<Output = Result<(), HandlerError>>,
    {
        let (stream, stream_sequence, delivered) = match msg.info() {
            Ok(i) => (i.stream.to_owned(), i.stream_sequence, i.delivered),
            Err(err) => {
                tracing::error!(error = %err, "message without JetStream metadata; terminating it");
                let _ = msg.ack_with(AckKind::Term).await;
                return;
            }
        };
        let durable = self.name.clone();
        metrics::counter!(m::CONSUMER_DELIVERIES, "consumer" => durable.clone()).increment(1);
        if delivered > 1 {
            metrics::counter!(m::CONSUMER_REDELIVERIES, "consumer" => durable.clone()).increment(1);
        }
        let meta = MessageMeta::from_headers(msg.headers.as_ref());
        let span = tracing::info_span!(
            "consume",
            // By the subject's base: a keyed subject's order id (and the
            // partition the stream adds) would make every name unique.
            otel.name = %format!("consume {}", subjects::keyed::base(&msg.subject)),
            otel.kind = "consumer",
            consumer = %durable,
            subject = %msg.subject,
            stream_sequence,
            delivered,
            correlation_id = meta.correlation_id.as_deref().unwrap_or(""),
            trace_id = tracing::field::Empty,
        );
        telemetry::set_parent(&span, consuming_part(&durable), msg.headers.as_ref());
        let delivery = Delivery {
            subject: msg.subject.to_string(),
            payload: msg.payload.clone(),
            headers: msg.headers.clone(),
            meta,
            stream,
            stream_sequence,
            delivered,
            consumer: durable.clone(),
        };
        let started = std::time::Instant::now();
        let mut result = self
            .with_progress(&msg, guard_panics(handler(delivery.clone())))
            .instrument(span.clone())
            .await;
        metrics::histogram!(m::CONSUMER_DURATION, "consumer" => durable.clone())
            .record(started.elapsed().as_secs_f64());
        // The last delivery, and a dependency down: the server would not
        // deliver it again, and the message is not at fault, so keep it
        // and try again here until the dependency is back.
        while let Err(HandlerError::Unavailable(reason)) = &result {
            if delivered < self.settings.max_deliver {
                break;
            }
            let delay = jittered(self.settings.delay_after(delivered));
            tracing::warn!(parent: &span, %reason, delivered, retry_in = ?delay, "dependency unavailable at the last delivery; holding the message and retrying in place");
            let slept = self
                .with_progress(&msg, async {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => Ok(()),
                        _ = self.shutdown.cancelled() => Err(HandlerError::Unavailable(
                            format!("shutting down while unavailable: {reason}"),
                        )),
                    }
                })
                .await;
            if let Err(stop) = slept {
                result = Err(stop);
                break;
            }
            result = self
                .with_progress(&msg, guard_panics(handler(delivery.clone())))
                .instrument(span.clone())
                .await;
        }
        // Instrumented, not entered: a guard held across the awaits below
        // would leave the span entered on this thread while the task is
        // parked, and other tasks polled meanwhile would run inside it.
        async {
            match result {
                Ok(()) => {
                    if let Err(err) = msg.double_ack().await {
                        // The effect is committed; a redelivery is skipped by the inbox.
                        tracing::warn!(error = %err, "ack failed; the message will be redelivered");
                    }
                }
                Err(HandlerError::Transient(reason) | HandlerError::Unavailable(reason))
                    if delivered < self.settings.max_deliver =>
                {
                    let delay = jittered(self.settings.delay_after(delivered));
                    tracing::warn!(%reason, delivered, retry_in = ?delay, "handler failed; retrying");
                    let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
                }
                Err(err) => {
                    let reason = match &err {
                        HandlerError::Transient(r) => {
                            format!("gave up after {delivered} deliveries: {r}")
                        }
                        HandlerError::Permanent(r) | HandlerError::Unavailable(r) => r.clone(),
                    };
                    self.dead_letter(&msg, &delivery, &reason).await;
                }
            }
        }
        .instrument(span)
        .await;
    }

    /// Run the handler while telling the server every third of `ack_wait`
    /// that we are still working on the message.
    async fn with_progress<Fut: Future<Output = Result<(), HandlerError>>>(
        &self,
        msg: &jetstream::Message,
        fut: Fut,
    ) -> Result<(), HandlerError> {
        let period = (self.settings.ack_wait / 3).max(Duration::from_millis(100));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tokio::pin!(fut);
        loop {
            tokio::select! {
                r = &mut fut => return r,
                _ = ticker.tick() => {
                    if let Err(err) = msg.ack_with(AckKind::Progress).await {
                        tracing::warn!(error = %err, "in-progress ack failed");
                    }
                }
            }
        }
    }

    async fn dead_letter(&self, msg: &jetstream::Message, d: &Delivery, reason: &str) {
        let mut h = msg.headers.clone().unwrap_or_default();
        // Keep the original headers, but the DLQ entry needs its own id:
        // the original Nats-Msg-Id is already taken in the DLQ's dedupe window
        // only if this same message was dead-lettered before, which is the
        // duplicate we want dropped.
        let dlq_id = format!("{}:{}:{}", d.stream, d.stream_sequence, d.consumer);
        if let Some(original) = h.get(headers::MSG_ID).map(|v| v.as_str().to_owned()) {
            h.insert(headers::dlq::ORIGINAL_MSG_ID, original.as_str());
        }
        h.insert(headers::MSG_ID, dlq_id.as_str());
        h.insert(headers::dlq::REASON, sanitize(reason).as_str());
        h.insert(headers::dlq::CONSUMER, d.consumer.as_str());
        h.insert(headers::dlq::STREAM, d.stream.as_str());
        h.insert(
            headers::dlq::STREAM_SEQUENCE,
            d.stream_sequence.to_string().as_str(),
        );
        h.insert(headers::dlq::DELIVERIES, d.delivered.to_string().as_str());
        h.insert(headers::dlq::SUBJECT, d.subject.as_str());
        let subject = subjects::dlq::for_consumer(&d.consumer);
        let published = match self
            .js
            .publish_with_headers(subject, h, msg.payload.clone())
            .await
        {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match published {
            Ok(()) => {
                metrics::counter!(m::CONSUMER_DLQ, "consumer" => d.consumer.clone()).increment(1);
                tracing::error!(reason, consumer = %d.consumer, stream_sequence = d.stream_sequence, "message dead-lettered");
                if let Err(err) = msg.ack_with(AckKind::Term).await {
                    tracing::warn!(error = %err, "term after dead-lettering failed");
                }
            }
            Err(err) => {
                // Never drop it: let the server redeliver and try again.
                tracing::error!(error = %err, reason, "cannot dead-letter; leaving the message for redelivery");
                let _ = msg
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
                    .await;
            }
        }
    }
}

/// A panicking handler is a failed attempt like any other: retried, then
/// dead-lettered, instead of leaving its message unacknowledged until the
/// server gives up on it silently.
async fn guard_panics<Fut: Future<Output = Result<(), HandlerError>>>(
    fut: Fut,
) -> Result<(), HandlerError> {
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            Err(HandlerError::Transient(format!(
                "handler panicked: {}",
                panic_message(&panic)
            )))
        })
}

/// The text of a panic payload, when it has one.
pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// Up to 20% extra, so retries of many messages do not arrive in lockstep.
fn jittered(delay: Duration) -> Duration {
    let extra = delay.as_millis() as u64 / 5;
    delay
        + Duration::from_millis(if extra == 0 {
            0
        } else {
            rand::random_range(0..=extra)
        })
}

/// Header values cannot hold line breaks.
fn sanitize(reason: &str) -> String {
    let one_line: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    one_line.chars().take(1024).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_wait_is_the_deadline_of_every_delivery() {
        let spec = ConsumerSpec {
            stream: "S".into(),
            durable: "d".into(),
            description: String::new(),
            filter_subjects: vec![],
        };
        let settings = ConsumerSettings {
            max_deliver: 3,
            ..Default::default()
        };
        let cfg = consumer_config(&spec, &settings);
        assert!(
            cfg.backoff.is_empty(),
            "the runner naks with the backoff delays"
        );
        assert_eq!(cfg.ack_wait, settings.ack_wait);
        assert_eq!(cfg.max_deliver, 3);
        assert_eq!(cfg.ack_policy, AckPolicy::Explicit);
    }

    #[test]
    fn jitter_stays_within_a_fifth() {
        for _ in 0..100 {
            let d = jittered(Duration::from_millis(1000));
            assert!(d >= Duration::from_millis(1000) && d <= Duration::from_millis(1200));
        }
    }

    #[test]
    fn a_replay_deduplicates_on_the_original_id() {
        let mut h = HeaderMap::new();
        h.insert(headers::MSG_ID, "new-id");
        let mut d = Delivery {
            subject: "x".into(),
            payload: Bytes::new(),
            headers: Some(h.clone()),
            meta: MessageMeta::from_headers(Some(&h)),
            stream: "S".into(),
            stream_sequence: 9,
            delivered: 1,
            consumer: "c".into(),
        };
        assert_eq!(d.dedupe_id(), "new-id");
        h.insert(headers::REPLAY_ORIGINAL_MSG_ID, "original-id");
        d.headers = Some(h);
        assert_eq!(d.dedupe_id(), "original-id");
        d.headers = None;
        d.meta = MessageMeta::default();
        assert_eq!(d.dedupe_id(), "S:9");
    }

    #[test]
    fn reasons_fit_in_a_header() {
        assert_eq!(sanitize("a\nb\r\nc"), "a b  c");
    }
}
