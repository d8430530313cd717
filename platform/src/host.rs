//! One service lifecycle, so that every replica of every service starts and
//! drains the same way.
//!
//! Start ([`ServiceHost::start`]): connect the service's own database with
//! its pool settings, run its migrations, provision the streams it needs
//! (idempotent, so whichever replica or service starts first creates them),
//! register its readiness checks, and start its outbox relay and its
//! JetStream sampler ([`crate::sampler`]). The service
//! then adds what is its own: RPC endpoints ([`ServiceHost::rpc`]), durable
//! consumers ([`ServiceHost::consumer`]) and background loops
//! ([`ServiceHost::background`]). [`ServiceHost::serve`] marks it started
//! (readiness) and runs it until shutdown.
//!
//! Drain, in this order, because each step may still produce work for the
//! next: stop taking RPC requests (finishing those in hand); stop the
//! consumers (they finish what they hold and commit its effects with
//! outbox rows); stop the background loops; then stop the relay, whose
//! last pass publishes what the consumers committed; close the pool.
//!
//! Replicas may start at the same moment: [`crate::db::migrate`] makes
//! their migrations take turns.
//!
//! A consumer that ends on its own before shutdown (its stream was deleted,
//! it could not be created) is fatal: a replica that silently stopped
//! consuming would look healthy while doing nothing. The host then drains
//! as above and returns the consumer's error.

use std::{collections::HashMap, future::Future};

use async_nats::jetstream;
use jetshop_contracts::streams::StreamSpec;
use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;
use tokio::task::{Id, JoinError, JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{
    Error,
    config::{DbSettings, redact_url},
    outbox::{OutboxNotifier, Relay},
    rpc::RpcService,
    runtime::Runtime,
    sampler::Sampler,
};

/// Where a service keeps its data.
#[derive(Debug, Clone, Copy)]
pub struct Database<'a> {
    /// SQLite file or PostgreSQL URL.
    pub url: &'a str,
    /// Pool size and acquire timeout.
    pub settings: &'a DbSettings,
}

/// A service being started or running: its database, runtime, relay and
/// tasks. `E` is the service's own error type.
pub struct ServiceHost<E> {
    name: &'static str,
    rt: Runtime,
    db: DatabaseConnection,
    database_url: String,
    outbox: OutboxNotifier,
    relay_stop: CancellationToken,
    relay: JoinHandle<()>,
    /// Cancelled at shutdown, or when a consumer ends on its own.
    stop: CancellationToken,
    shutdown: CancellationToken,
    rpc: Vec<RpcService>,
    consumers: JoinSet<Result<(), E>>,
    /// Consumer names by task, to name a panicked one.
    consumer_names: HashMap<Id, &'static str>,
    background: Vec<(&'static str, JoinHandle<()>)>,
}

impl<E> std::fmt::Debug for ServiceHost<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceHost")
            .field("name", &self.name)
            .field("database", &redact_url(&self.database_url))
            .field("rpc", &self.rpc.len())
            .field("consumers", &self.consumers.len())
            .field("background", &self.background.len())
            .finish_non_exhaustive()
    }
}

impl<E> ServiceHost<E>
where
    E: From<Error> + Send + 'static,
{
    /// Connect and migrate the database (`M` is the service's migrator),
    /// provision `streams`, register `<name>-db` and `<name>-nats` readiness
    /// checks and start the outbox relay. `shutdown` is the caller's: when
    /// it is cancelled, [`Self::serve`] drains.
    pub async fn start<M: MigratorTrait>(
        name: &'static str,
        rt: Runtime,
        database: Database<'_>,
        streams: &[StreamSpec],
        shutdown: CancellationToken,
    ) -> Result<Self, E> {
        let db = crate::db::connect_with(database.url, database.settings).await?;
        crate::db::migrate::<M>(&db).await.map_err(Error::from)?;
        rt.provision(streams).await?;
        rt.health.add_db(format!("{name}-db"), db.clone()).await;
        rt.health
            .add_nats(format!("{name}-nats"), rt.nats.clone())
            .await;
        let relay = Relay::new(db.clone(), rt.jetstream(), name);
        let outbox = relay.notifier();
        let relay_stop = CancellationToken::new();
        let relay = tokio::spawn(relay.run(relay_stop.clone()));
        let stop = shutdown.child_token();
        let sampler = Sampler::new(
            name,
            rt.nats.clone(),
            rt.jetstream(),
            streams.iter().map(|s| s.name).collect(),
        );
        let background = vec![(
            "jetstream-sampler",
            tokio::spawn(sampler.run(stop.child_token())),
        )];
        Ok(Self {
            name,
            db,
            database_url: database.url.to_owned(),
            outbox,
            relay_stop,
            relay,
            stop,
            shutdown,
            rt,
            rpc: Vec::new(),
            consumers: JoinSet::new(),
            consumer_names: HashMap::new(),
            background,
        })
    }

    /// The service's database pool.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Wakes the relay after a commit that wrote outbox rows.
    pub fn outbox(&self) -> OutboxNotifier {
        self.outbox.clone()
    }

    /// The NATS connection.
    pub fn nats(&self) -> &async_nats::Client {
        &self.rt.nats
    }

    /// A JetStream context on the connection.
    pub fn jetstream(&self) -> jetstream::Context {
        self.rt.jetstream()
    }

    /// A token for a task of the service: cancelled when the service drains.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.child_token()
    }

    /// RPC endpoints, stopped first at drain.
    pub fn rpc(&mut self, service: RpcService) {
        self.rpc.push(service);
    }

    /// A durable consumer: `run` gets a token that is cancelled at drain,
    /// and must then finish what it holds and return. Ending earlier is
    /// fatal (see the module docs).
    pub fn consumer<F, Fut, X>(&mut self, name: &'static str, run: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = Result<(), X>> + Send + 'static,
        E: From<X>,
    {
        let fut = run(self.stop_token());
        let task = self
            .consumers
            .spawn(async move { fut.await.map_err(E::from) });
        self.consumer_names.insert(task.id(), name);
    }

    /// A loop that runs until its token is cancelled (a deadline scan, a
    /// cache follower); stopped after the consumers.
    pub fn background<F, Fut>(&mut self, name: &'static str, run: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(run(self.stop_token()));
        self.background.push((name, handle));
    }

    /// Mark the service started (its readiness), run until shutdown or
    /// until a consumer ends on its own, then drain in order. Returns the
    /// first consumer error, if any.
    pub async fn serve(mut self) -> Result<(), E> {
        self.rt.health.started(self.name).await;
        tracing::info!(
            service = self.name,
            database = %redact_url(&self.database_url),
            consumers = self.consumers.len(),
            "service running"
        );
        let mut result = Ok(());
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            Some(ended) = self.consumers.join_next(), if !self.consumers.is_empty() => {
                result = outcome(&self.consumer_names, ended);
                // Both branches can be ready at shutdown; only an early end is news.
                if !self.shutdown.is_cancelled() {
                    tracing::error!(
                        service = self.name,
                        "a consumer stopped on its own; the service drains and stops"
                    );
                }
            }
        }
        self.stop.cancel();
        for rpc in self.rpc.drain(..) {
            rpc.stop().await;
        }
        while let Some(ended) = self.consumers.join_next().await {
            let drained = outcome(&self.consumer_names, ended);
            if result.is_ok() {
                result = drained;
            }
        }
        for (name, task) in self.background.drain(..) {
            if let Err(join) = task.await {
                tracing::error!(service = self.name, task = name, error = %join, "a background task panicked");
            }
        }
        self.relay_stop.cancel();
        if let Err(join) = (&mut self.relay).await {
            tracing::error!(service = self.name, error = %join, "the outbox relay panicked");
        }
        self.db.clone().close().await.ok();
        result
    }
}

/// A consumer's end: its own result, or the panic, naming the consumer.
fn outcome<E: From<Error>>(
    names: &HashMap<Id, &'static str>,
    ended: Result<Result<(), E>, JoinError>,
) -> Result<(), E> {
    match ended {
        Ok(outcome) => outcome,
        Err(join) => Err(E::from(Error::Panicked {
            task: names.get(&join.id()).copied().unwrap_or("consumer"),
            source: join,
        })),
    }
}

/// A host dropped without [`ServiceHost::serve`] (the service failed while
/// starting) stops its tasks instead of leaving them running.
impl<E> Drop for ServiceHost<E> {
    fn drop(&mut self) {
        self.stop.cancel();
        self.relay_stop.cancel();
    }
}
