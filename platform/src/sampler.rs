//! Gauges read from JetStream itself, sampled on a timer: consumer lag,
//! dead-letter depth, the service's own streams, and the connection.
//!
//! Counting deliveries in the runner cannot say how far behind a durable
//! is, nor how many dead letters still wait for an operator after a
//! replay or purge; only the server knows. So every service asks it, every
//! [`SAMPLE_EVERY`], about the streams it provisions, the durables named
//! after it (`<service>-...`) on those streams (a part provisions every
//! stream it consumes), and the `dlq.<durable>` subjects of those durables.
//! It asks about its own streams by name, never for the list of all: with
//! NATS security on, a part may only look at its own streams
//! (`jetshop_contracts::access`). Every replica of a service samples the same
//! server state, so dashboards take `max` over instances, as for the
//! outbox backlog.
//!
//! NATS server metrics (connections, memory, slow consumers) are the
//! server's own `/varz`; we surface what a service can see over its
//! connection instead of running an exporter next to every server, so the
//! same gauges exist under `jetshop up`, `jetshop run` and in a cluster.

use std::{collections::HashMap, time::Duration};

use async_nats::jetstream;
use futures::TryStreamExt;
use jetshop_contracts::{streams, subjects};
use tokio_util::sync::CancellationToken;

use crate::metrics as m;

/// How often the server is asked. Well under the 15 s scrape interval, so
/// a scrape never sees a value more than one sample old, and a handful of
/// JetStream API calls per replica each time.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Samples one service's view of JetStream into gauges.
pub struct Sampler {
    /// The service name: the durable prefix and the `service` label.
    service: &'static str,
    /// The connection whose state is reported.
    nats: async_nats::Client,
    /// JetStream API on that connection.
    js: jetstream::Context,
    /// The streams this service provisions (their size and leader).
    own_streams: Vec<&'static str>,
    /// Each own stream's leader at the last sample, to count changes.
    leaders: HashMap<String, String>,
}

impl Sampler {
    /// A sampler for `service`, which provisions `own_streams`.
    pub fn new(
        service: &'static str,
        nats: async_nats::Client,
        js: jetstream::Context,
        own_streams: Vec<&'static str>,
    ) -> Self {
        Self {
            service,
            nats,
            js,
            own_streams,
            leaders: HashMap::new(),
        }
    }

    /// Sample at once, then every [`SAMPLE_EVERY`] until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // At 0 from the start, so that `increase()` sees the first failure.
        metrics::counter!(m::SAMPLER_ERRORS, "service" => self.service).increment(0);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.sample_connection();
            // A sample waits on JetStream API timeouts while NATS is away;
            // the drain must not wait with it.
            let sampled = tokio::select! {
                _ = stop.cancelled() => return,
                sampled = self.sample_jetstream() => sampled,
            };
            if let Err(err) = sampled {
                // A NATS outage shows in the connection gauge; the last
                // values stay, and the error counter says they are stale.
                metrics::counter!(m::SAMPLER_ERRORS, "service" => self.service).increment(1);
                tracing::debug!(service = self.service, error = %err, "JetStream sample failed");
            }
        }
    }

    fn sample_connection(&self) {
        let up = matches!(
            self.nats.connection_state(),
            async_nats::connection::State::Connected
        );
        metrics::gauge!(m::NATS_CONNECTED, "service" => self.service).set(if up {
            1.0
        } else {
            0.0
        });
    }

    async fn sample_jetstream(&mut self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let prefix = format!("{}-", self.service);
        let mut durables = Vec::new();
        for name in self.own_streams.clone() {
            let stream = self.js.get_stream_no_info(name).await?;
            let info = stream.get_info().await?;
            self.stream_gauges(&info);
            // The DLQ's own consumers (operators' browsing) are not lag.
            if name == streams::DLQ {
                continue;
            }
            let consumers: Vec<jetstream::consumer::Info> =
                stream.consumers().try_collect().await?;
            for c in consumers
                .into_iter()
                .filter(|c| c.name.starts_with(&prefix))
            {
                let (consumer, stream) = (c.name.clone(), name.to_owned());
                metrics::gauge!(m::CONSUMER_PENDING, "consumer" => consumer.clone(), "stream" => stream.clone())
                    .set(c.num_pending as f64);
                metrics::gauge!(m::CONSUMER_ACK_PENDING, "consumer" => consumer.clone(), "stream" => stream.clone())
                    .set(c.num_ack_pending as f64);
                metrics::gauge!(m::CONSUMER_REDELIVERED, "consumer" => consumer, "stream" => stream)
                    .set(c.num_redelivered as f64);
                durables.push(c.name);
            }
        }
        if self.own_streams.contains(&streams::DLQ) {
            let dlq = self.js.get_stream_no_info(streams::DLQ).await?;
            let counts: HashMap<String, usize> = dlq
                .info_with_subjects(subjects::dlq::ALL)
                .await?
                .try_collect()
                .await?;
            // Every durable gets a value, 0 included: "no dead letters" is
            // a series an alert can compare, an absent one is not.
            for durable in durables {
                let depth = counts
                    .get(&subjects::dlq::for_consumer(&durable))
                    .copied()
                    .unwrap_or(0);
                metrics::gauge!(m::DLQ_DEPTH, "consumer" => durable).set(depth as f64);
            }
        }
        Ok(())
    }

    fn stream_gauges(&mut self, info: &jetstream::stream::Info) {
        let name = info.config.name.clone();
        metrics::gauge!(m::STREAM_MESSAGES, "stream" => name.clone())
            .set(info.state.messages as f64);
        metrics::gauge!(m::STREAM_BYTES, "stream" => name.clone()).set(info.state.bytes as f64);
        // A single server has no cluster info: one replica, always current.
        let (current, leader) = match &info.cluster {
            Some(c) => (
                1 + c
                    .replicas
                    .iter()
                    .filter(|p| p.current && !p.offline)
                    .count(),
                c.leader.clone(),
            ),
            None => (1, None),
        };
        metrics::gauge!(m::STREAM_REPLICAS_CURRENT, "stream" => name.clone()).set(current as f64);
        let changes = metrics::counter!(m::STREAM_LEADER_CHANGES, "stream" => name.clone());
        // Registered at 0 so that `increase()` has a series from the start.
        changes.increment(0);
        if let Some(leader) = leader
            && let Some(before) = self.leaders.insert(name, leader.clone())
            && before != leader
        {
            changes.increment(1);
        }
    }
}
