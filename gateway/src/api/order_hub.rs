//! The order events hub behind `GET /v1/orders/{id}/events`: one core NATS
//! subscription to `orders.events.>` per gateway process, fanned out to the
//! Server-Sent Events streams watching each order.
//!
//! The hub does not carry statuses, only wake-ups: every orders event holds
//! `order_id` first, so the hub decodes just [`OrderRef`] from the payload
//! and bumps that order's [`watch`] channel. A woken stream re-reads the
//! order over RPC and emits when its status changed. Several events in a
//! burst collapse into one wake-up (a `watch` keeps only the latest value),
//! and the projection the RPC reads is committed before the event is
//! published (the orders outbox), so a re-read after a wake-up never sees
//! an older state than the event announced.
//!
//! A stream must [`OrderHub::watch`] *before* it reads the order for the
//! first time: a change landing between the read and the watch would
//! otherwise be missed. The subscription and the first read travel on the
//! same NATS connection, so the server has the subscription before it
//! routes the read.
//!
//! What a core subscription cannot promise (events published while the
//! connection is down; a slow-consumer drop) is covered twice: the pump
//! wakes every watcher when the connection comes back, and each stream
//! re-reads its order every [`RESYNC`] anyway. async-nats re-subscribes by
//! itself after a reconnect; if the subscription ends for good (the client
//! closed), the next watcher starts a new one.
//!
//! An order's channel lives while someone watches it: the last [`Watch`]
//! to drop (the stream ended, or the client went away) removes it. A
//! client that goes away is noticed when a write to it fails, so within
//! about two keep-alive periods ([`OrderHub::keep_alive`]) of an idle stream.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_nats::{HeaderMap, connection::State};
use futures::StreamExt;
use jetshop_contracts::{Encoding, headers, orders::OrderRef, subjects};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::Error;

/// How often a stream re-reads its order even without a wake-up: the net
/// under what a core subscription can drop.
pub const RESYNC: Duration = Duration::from_secs(30);
/// Default period of the keep-alive comments on an idle event stream.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often the pump looks at the connection state to notice a reconnect.
const STATE_POLL: Duration = Duration::from_secs(1);
/// SSE streams watching an order right now (gauge).
pub const WATCHERS: &str = "jetshop_gateway_order_watchers";
/// Orders events the hub received (counter; label `routed`: whether a
/// stream was watching the order).
pub const EVENTS: &str = "jetshop_gateway_order_events_total";

/// The process-wide hub. Cheap to clone; every clone is the same hub.
#[derive(Clone)]
pub struct OrderHub(Arc<Inner>);

impl std::fmt::Debug for OrderHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderHub")
            .field("orders_watched", &self.0.orders_watched())
            .field("subscribed", &self.0.subscribed.load(Ordering::Acquire))
            .finish()
    }
}

struct Inner {
    /// Where the subscription lives (the gateway's one connection).
    nats: async_nats::Client,
    /// Whether a pump (and so a subscription) is running.
    subscribed: AtomicBool,
    /// Serialises starting the subscription, so there is only ever one.
    starting: tokio::sync::Mutex<()>,
    /// The orders being watched.
    slots: Mutex<HashMap<Uuid, Slot>>,
    /// Cancelled when the gateway shuts down: every stream ends.
    closed: CancellationToken,
    /// Period of the streams' keep-alive comments.
    keep_alive: Duration,
}

/// One watched order.
struct Slot {
    /// Bumped on every event of the order.
    wake: watch::Sender<u64>,
    /// How many streams watch it.
    watchers: usize,
}

impl OrderHub {
    /// A hub on `nats`; it subscribes when the first stream watches. Its
    /// streams send a keep-alive comment every `keep_alive` when idle.
    pub fn new(nats: async_nats::Client, keep_alive: Duration) -> Self {
        Self(Arc::new(Inner {
            nats,
            subscribed: AtomicBool::new(false),
            starting: tokio::sync::Mutex::new(()),
            slots: Mutex::default(),
            closed: CancellationToken::new(),
            keep_alive,
        }))
    }

    /// Period of the keep-alive comments on an idle stream.
    pub fn keep_alive(&self) -> Duration {
        self.0.keep_alive
    }

    /// Watch `order_id`: the returned [`Watch`] wakes on each of its
    /// events. Call this before reading the order.
    pub async fn watch(&self, order_id: Uuid) -> Result<Watch, Error> {
        self.0.ensure_subscribed().await?;
        Ok(self.0.register(order_id))
    }

    /// End every stream (the gateway is shutting down).
    pub fn close(&self) {
        self.0.closed.cancel();
    }

    /// How many distinct orders are being watched.
    pub fn orders_watched(&self) -> usize {
        self.0.orders_watched()
    }
}

impl Inner {
    async fn ensure_subscribed(self: &Arc<Self>) -> Result<(), Error> {
        if self.subscribed.load(Ordering::Acquire) {
            return Ok(());
        }
        let _starting = self.starting.lock().await;
        if self.subscribed.load(Ordering::Acquire) {
            return Ok(());
        }
        let sub = self
            .nats
            .subscribe(subjects::orders::EVENTS_ALL)
            .await
            .map_err(|err| {
                tracing::warn!(error = %err, "cannot subscribe to the orders events");
                Error::StoreUnavailable {
                    what: "the order event feed",
                }
            })?;
        self.subscribed.store(true, Ordering::Release);
        tracing::info!(
            subject = subjects::orders::EVENTS_ALL,
            "order event hub subscribed"
        );
        tokio::spawn(pump(
            Arc::downgrade(self),
            self.nats.clone(),
            sub,
            self.closed.clone(),
        ));
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Slot>> {
        // A panic while holding the lock leaves a consistent map.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(self: &Arc<Self>, order_id: Uuid) -> Watch {
        let rx = {
            let mut slots = self.lock();
            let slot = slots.entry(order_id).or_insert_with(|| Slot {
                wake: watch::channel(0).0,
                watchers: 0,
            });
            slot.watchers += 1;
            slot.wake.subscribe()
        };
        metrics::gauge!(WATCHERS).increment(1.0);
        Watch {
            hub: self.clone(),
            order_id,
            rx,
        }
    }

    fn unregister(&self, order_id: Uuid) {
        let mut slots = self.lock();
        if let Some(slot) = slots.get_mut(&order_id) {
            slot.watchers -= 1;
            if slot.watchers == 0 {
                slots.remove(&order_id);
            }
        }
        drop(slots);
        metrics::gauge!(WATCHERS).decrement(1.0);
    }

    /// Wake the streams watching `order_id`; whether there were any.
    fn wake(&self, order_id: Uuid) -> bool {
        match self.lock().get(&order_id) {
            Some(slot) => {
                slot.wake.send_modify(|n| *n = n.wrapping_add(1));
                true
            }
            None => false,
        }
    }

    /// Wake every stream (after a reconnect: events may have been missed).
    fn wake_all(&self) {
        for slot in self.lock().values() {
            slot.wake.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn orders_watched(&self) -> usize {
        self.lock().len()
    }
}

/// The order an orders event is about, whatever its type: every orders
/// event starts with `order_id`. `None` for a payload that is not one.
pub fn order_of(headers: Option<&HeaderMap>, payload: &[u8]) -> Option<Uuid> {
    let content_type = headers
        .and_then(|h| h.get(headers::CONTENT_TYPE))
        .map(|v| v.as_str());
    let encoding = Encoding::detect(content_type, payload).ok()?;
    encoding
        .decode::<OrderRef>(payload)
        .ok()
        .map(|r| r.order_id)
}

/// Route every message of the subscription to its watchers until the hub
/// is dropped or closed, or the subscription ends.
async fn pump(
    hub: Weak<Inner>,
    nats: async_nats::Client,
    mut sub: async_nats::Subscriber,
    closed: CancellationToken,
) {
    let mut state_poll = tokio::time::interval(STATE_POLL);
    state_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_connected = true;
    loop {
        tokio::select! {
            _ = closed.cancelled() => break,
            msg = sub.next() => {
                let Some(msg) = msg else {
                    tracing::warn!("the orders events subscription ended");
                    break;
                };
                let Some(hub) = hub.upgrade() else { break };
                match order_of(msg.headers.as_ref(), &msg.payload) {
                    Some(order_id) => {
                        let routed = hub.wake(order_id);
                        metrics::counter!(EVENTS, "routed" => if routed { "true" } else { "false" })
                            .increment(1);
                    }
                    None => tracing::debug!(subject = %msg.subject, "an orders event without an order id"),
                }
            }
            _ = state_poll.tick() => {
                let Some(hub) = hub.upgrade() else { break };
                let connected = nats.connection_state() == State::Connected;
                if connected && !was_connected {
                    tracing::info!("NATS reconnected: order event streams re-read their orders");
                    hub.wake_all();
                }
                was_connected = connected;
            }
        }
    }
    let _ = sub.unsubscribe().await;
    if let Some(hub) = hub.upgrade() {
        hub.subscribed.store(false, Ordering::Release);
        // Whatever was missed, the streams read again.
        hub.wake_all();
    }
}

/// One stream's interest in one order. Dropping it is the only cleanup.
pub struct Watch {
    hub: Arc<Inner>,
    order_id: Uuid,
    rx: watch::Receiver<u64>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("order_id", &self.order_id)
            .finish_non_exhaustive()
    }
}

impl Watch {
    /// The order watched.
    pub fn order_id(&self) -> Uuid {
        self.order_id
    }

    /// Wait until an event of the order arrives (`true`), or the hub is
    /// closed (`false`). Wake-ups that arrived since the last call count:
    /// none is lost between two calls.
    pub async fn changed(&mut self) -> bool {
        tokio::select! {
            _ = self.hub.closed.cancelled() => false,
            // The sender lives in the slot as long as this watch does.
            r = self.rx.changed() => r.is_ok(),
        }
    }

    /// Whether the hub was closed.
    pub fn is_closed(&self) -> bool {
        self.hub.closed.is_cancelled()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.hub.unregister(self.order_id);
    }
}

#[cfg(test)]
mod tests {
    use jetshop_contracts::orders::{OrderCancelled, OrderStockReserved};

    use super::*;

    /// A hub whose client never connects: enough for the registry.
    async fn offline_hub() -> OrderHub {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect("127.0.0.1:1")
            .await
            .expect("a lazy client");
        OrderHub::new(client, DEFAULT_KEEP_ALIVE)
    }

    #[test]
    fn any_orders_event_names_its_order_in_either_encoding() {
        let id = Uuid::now_v7();
        let msgpack = Encoding::MsgPack
            .encode(&OrderStockReserved { order_id: id })
            .unwrap();
        let mut h = HeaderMap::new();
        h.insert(headers::CONTENT_TYPE, Encoding::MsgPack.content_type());
        assert_eq!(order_of(Some(&h), &msgpack), Some(id));
        // No header: msgpack unless it looks like JSON.
        assert_eq!(order_of(None, &msgpack), Some(id));
        let cancelled = OrderCancelled {
            order_id: id,
            customer_id: Uuid::now_v7(),
            customer_email: None,
            reason: "card declined".into(),
            cancelled_at: chrono::Utc::now(),
        };
        let json = serde_json::to_vec(&cancelled).unwrap();
        assert_eq!(order_of(None, &json), Some(id));
        assert_eq!(order_of(None, b"\x01garbage"), None);
        let mut h = HeaderMap::new();
        h.insert(headers::CONTENT_TYPE, "text/plain");
        assert_eq!(order_of(Some(&h), &msgpack), None);
    }

    #[tokio::test]
    async fn the_last_watcher_to_leave_removes_the_order() {
        let hub = offline_hub().await;
        let id = Uuid::now_v7();
        let a = hub.0.register(id);
        let b = hub.0.register(id);
        let other = hub.0.register(Uuid::now_v7());
        assert_eq!(hub.orders_watched(), 2);
        drop(a);
        assert_eq!(hub.orders_watched(), 2);
        drop(b);
        assert_eq!(hub.orders_watched(), 1);
        assert_eq!(
            other.order_id(),
            hub.0.lock().keys().next().copied().unwrap()
        );
        drop(other);
        assert_eq!(hub.orders_watched(), 0);
        assert!(!hub.0.wake(id), "nobody to wake any more");
    }

    #[tokio::test]
    async fn a_wake_reaches_every_watcher_of_that_order_only() {
        let hub = offline_hub().await;
        let id = Uuid::now_v7();
        let mut a = hub.0.register(id);
        let mut b = hub.0.register(id);
        let mut other = hub.0.register(Uuid::now_v7());
        // Two events before anyone looks: one wake-up, none lost.
        assert!(hub.0.wake(id));
        assert!(hub.0.wake(id));
        assert!(a.changed().await);
        assert!(b.changed().await);
        let nothing = tokio::time::timeout(Duration::from_millis(20), other.changed()).await;
        assert!(nothing.is_err(), "another order's watcher stays asleep");
        hub.0.wake_all();
        assert!(other.changed().await);
    }

    #[tokio::test]
    async fn closing_the_hub_ends_every_watch() {
        let hub = offline_hub().await;
        let mut w = hub.0.register(Uuid::now_v7());
        hub.close();
        assert!(!w.changed().await);
        assert!(w.is_closed());
    }
}
