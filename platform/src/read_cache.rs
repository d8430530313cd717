//! A read-through cache of versioned records, kept fresh by the events
//! that announce their changes: the catalog's own `get` and the gateway's
//! product reads share it, so a hot read skips the database or the NATS
//! round trip to the catalog.
//!
//! Freshness, strongest first: a writer drops an entry right after
//! committing a change ([`ReadCache::invalidate`]); every instance follows
//! the owner's event subject ([`ReadCache::follow`]) and replaces an entry
//! with a newer version or drops the ones an event touched, so replicas
//! learn of each other's writes within milliseconds; and an entry expires
//! after a TTL, which bounds staleness when an event is missed (core NATS
//! drops messages for a slow subscriber and while disconnected). A
//! reconnect empties the cache for the same reason.
//!
//! A miss hands out a [`Ticket`]; the value loaded with it is kept only if
//! nothing touched that key (or emptied the cache) since the miss. Without
//! that, a load that started before a change and answered after its
//! invalidation would put the old value back for a whole TTL.
//!
//! Nothing here is needed by another replica or after a restart: an empty
//! cache only costs loads.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use async_nats::{HeaderMap, connection::State};
use futures::StreamExt;
use jetshop_contracts::{Encoding, Touch, headers};
use tokio_util::sync::CancellationToken;

/// The counters a cache reports to (names with their `# HELP` given by
/// the owner).
#[derive(Debug, Clone, Copy)]
pub struct CacheMetrics {
    /// Reads answered from the cache.
    pub hits: &'static str,
    /// Reads that had to load.
    pub misses: &'static str,
}

/// Records by key, bounded in number and age. Share it behind an `Arc`.
#[derive(Debug)]
pub struct ReadCache<K, V> {
    state: Mutex<Entries<K, V>>,
    capacity: usize,
    ttl: Duration,
    metrics: CacheMetrics,
    /// The record's version, bumped on every change: a higher one is newer.
    version: fn(&V) -> i64,
}

/// How a cache reads what an event says: from its `Jetshop-Type` header,
/// its encoding and its payload (e.g. `catalog::product_touch`).
pub type Interpret<K, V> = fn(Option<&str>, Encoding, &[u8]) -> Option<Touch<K, V>>;

#[derive(Debug)]
struct Entries<K, V> {
    slots: HashMap<K, Slot<V>>,
    /// Bumped whenever the cache is emptied: tickets from before are void.
    epoch: u64,
}

#[derive(Debug)]
struct Slot<V> {
    value: Option<(V, Instant)>,
    /// Bumped whenever the key is touched: tickets from before are void.
    generation: u64,
}

/// Permission to fill a key after a miss; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    epoch: u64,
    generation: u64,
}

/// The answer of [`ReadCache::get`].
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup<V> {
    /// A fresh cached value.
    Hit(V),
    /// Load it, then [`ReadCache::fill`] with this ticket.
    Miss(Ticket),
}

impl<K: Hash + Eq + Copy, V: Clone> ReadCache<K, V> {
    /// A cache of at most `capacity` records, each served at most `ttl`
    /// after it was stored; `version` tells which of two is newer. A
    /// capacity or TTL of zero disables it.
    pub fn new(
        capacity: usize,
        ttl: Duration,
        metrics: CacheMetrics,
        version: fn(&V) -> i64,
    ) -> Self {
        Self {
            state: Mutex::new(Entries {
                slots: HashMap::new(),
                epoch: 0,
            }),
            capacity,
            ttl,
            metrics,
            version,
        }
    }

    /// Whether it keeps anything at all.
    pub fn enabled(&self) -> bool {
        self.capacity > 0 && !self.ttl.is_zero()
    }

    fn lock(&self) -> MutexGuard<'_, Entries<K, V>> {
        // Every update leaves the map consistent, even one that panicked.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached record if fresh, else a ticket to fill it with.
    pub fn get(&self, key: K) -> Lookup<V> {
        let state = self.lock();
        let slot = state.slots.get(&key);
        if self.enabled()
            && let Some((value, stored)) = slot.and_then(|s| s.value.as_ref())
            && stored.elapsed() < self.ttl
        {
            let hit = value.clone();
            drop(state);
            metrics::counter!(self.metrics.hits).increment(1);
            return Lookup::Hit(hit);
        }
        let ticket = Ticket {
            epoch: state.epoch,
            generation: slot.map_or(0, |s| s.generation),
        };
        drop(state);
        metrics::counter!(self.metrics.misses).increment(1);
        Lookup::Miss(ticket)
    }

    /// Keep what a load after a miss found, unless the key was touched or
    /// the cache emptied since (the load may predate the change), or a
    /// newer version is already here.
    pub fn fill(&self, key: K, value: V, ticket: Ticket) {
        if !self.enabled() {
            return;
        }
        let mut state = self.lock();
        let generation = state.slots.get(&key).map_or(0, |s| s.generation);
        if state.epoch != ticket.epoch || generation != ticket.generation {
            return;
        }
        self.store(&mut state, key, value);
    }

    /// Keep `value` as the current record (an event carried it), unless a
    /// newer version is already here. Voids the tickets of loads in flight.
    pub fn offer(&self, key: K, value: V) {
        if !self.enabled() {
            return;
        }
        let mut state = self.lock();
        self.store(&mut state, key, value);
        if let Some(slot) = state.slots.get_mut(&key) {
            slot.generation += 1;
        }
    }

    fn store(&self, state: &mut Entries<K, V>, key: K, value: V) {
        if let Some((current, _)) = state.slots.get(&key).and_then(|s| s.value.as_ref())
            && (self.version)(current) > (self.version)(&value)
        {
            return;
        }
        if state.slots.len() >= self.capacity && !state.slots.contains_key(&key) {
            self.make_room(state);
        }
        let slot = state.slots.entry(key).or_insert(Slot {
            value: None,
            generation: 0,
        });
        slot.value = Some((value, Instant::now()));
    }

    /// Drop expired values and the marks of keys nobody holds; if that is
    /// not enough, empty the cache (voiding every ticket, so forgetting a
    /// key's generation cannot let an old load back in).
    fn make_room(&self, state: &mut Entries<K, V>) {
        let ttl = self.ttl;
        let before = state.slots.len();
        state
            .slots
            .retain(|_, s| s.value.as_ref().is_some_and(|(_, t)| t.elapsed() < ttl));
        if state.slots.len() < before {
            state.epoch += 1;
        }
        if state.slots.len() >= self.capacity {
            state.slots.clear();
            state.epoch += 1;
        }
    }

    /// Forget `key` (it changed) and void the tickets of loads in flight.
    pub fn invalidate(&self, key: K) {
        if !self.enabled() {
            return;
        }
        let mut state = self.lock();
        if !state.slots.contains_key(&key) && state.slots.len() >= self.capacity {
            self.make_room(&mut state);
        }
        let slot = state.slots.entry(key).or_insert(Slot {
            value: None,
            generation: 0,
        });
        slot.value = None;
        slot.generation += 1;
    }

    /// Forget everything (events may have been missed).
    pub fn clear(&self) {
        let mut state = self.lock();
        state.slots.clear();
        state.epoch += 1;
    }

    /// Apply what an event says.
    pub fn apply(&self, touch: Touch<K, V>) {
        match touch {
            Touch::Current(key, value) => self.offer(key, value),
            Touch::Changed(keys) => keys.into_iter().for_each(|k| self.invalidate(k)),
        }
    }

    /// Apply what one event message says (see [`Interpret`]).
    pub fn apply_message(&self, interpret: Interpret<K, V>, h: Option<&HeaderMap>, payload: &[u8]) {
        let header = |name| h.and_then(|h| h.get(name)).map(|v| v.as_str());
        let Ok(encoding) = Encoding::detect(header(headers::CONTENT_TYPE), payload) else {
            return;
        };
        if let Some(touch) = interpret(header(headers::TYPE), encoding, payload) {
            self.apply(touch);
        }
    }

    /// Follow `subject` with a core subscription until `stop`, applying
    /// what `interpret` reads from each message, and emptying the cache
    /// whenever events may have been missed (a reconnect, the end of the
    /// subscription).
    pub async fn follow(
        &self,
        client: async_nats::Client,
        subject: &'static str,
        interpret: Interpret<K, V>,
        stop: CancellationToken,
    ) {
        if !self.enabled() {
            return;
        }
        let mut events = match client.subscribe(subject).await {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(error = %err, subject, "cannot follow events; the read cache relies on its TTL");
                return;
            }
        };
        // What a reconnect may have dropped is gone for good: empty the
        // cache then. Polled, since async-nats reports state, not events.
        let mut state_poll = tokio::time::interval(Duration::from_millis(250));
        state_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_connected = true;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                msg = events.next() => {
                    let Some(msg) = msg else {
                        tracing::warn!(subject, "the read cache's event subscription ended");
                        break;
                    };
                    self.apply_message(interpret, msg.headers.as_ref(), &msg.payload);
                }
                _ = state_poll.tick() => {
                    let connected = client.connection_state() == State::Connected;
                    if !connected || !was_connected {
                        self.clear();
                    }
                    was_connected = connected;
                }
            }
        }
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Rec {
        version: i64,
        stock: i64,
    }

    const METRICS: CacheMetrics = CacheMetrics {
        hits: "test_hits_total",
        misses: "test_misses_total",
    };

    fn rec(version: i64, stock: i64) -> Rec {
        Rec { version, stock }
    }

    fn cache(capacity: usize, ttl: Duration) -> ReadCache<u32, Rec> {
        ReadCache::new(capacity, ttl, METRICS, |r| r.version)
    }

    fn ticket(c: &ReadCache<u32, Rec>, key: u32) -> Ticket {
        match c.get(key) {
            Lookup::Miss(t) => t,
            Lookup::Hit(v) => panic!("expected a miss, got {v:?}"),
        }
    }

    #[test]
    fn a_filled_miss_is_served_until_it_expires() {
        let c = cache(10, Duration::from_millis(40));
        let t = ticket(&c, 1);
        c.fill(1, rec(1, 5), t);
        assert_eq!(c.get(1), Lookup::Hit(rec(1, 5)));
        std::thread::sleep(Duration::from_millis(50));
        assert!(matches!(c.get(1), Lookup::Miss(_)));
    }

    #[test]
    fn a_load_that_started_before_a_change_is_not_kept() {
        let c = cache(10, Duration::from_secs(60));
        // Never cached, and cached then changed: both loads are too old.
        let t = ticket(&c, 1);
        c.invalidate(1);
        c.fill(1, rec(1, 5), t);
        assert!(matches!(c.get(1), Lookup::Miss(_)));
        c.fill(1, rec(1, 5), ticket(&c, 1));
        c.invalidate(1);
        let t = ticket(&c, 1);
        c.apply(Touch::Changed(vec![1]));
        c.fill(1, rec(1, 5), t);
        assert!(matches!(c.get(1), Lookup::Miss(_)));
        // An event carrying the record voids loads in flight too.
        let t = ticket(&c, 2);
        c.apply(Touch::Current(2, rec(3, 1)));
        c.fill(2, rec(2, 9), t);
        assert_eq!(c.get(2), Lookup::Hit(rec(3, 1)));
    }

    #[test]
    fn an_older_version_never_replaces_a_newer_one() {
        let c = cache(10, Duration::from_secs(60));
        c.offer(1, rec(3, 7));
        c.offer(1, rec(2, 9));
        assert_eq!(c.get(1), Lookup::Hit(rec(3, 7)));
        c.offer(1, rec(4, 1));
        assert_eq!(c.get(1), Lookup::Hit(rec(4, 1)));
    }

    #[test]
    fn emptying_voids_every_ticket() {
        let c = cache(10, Duration::from_secs(60));
        let t = ticket(&c, 1);
        c.clear();
        c.fill(1, rec(1, 1), t);
        assert!(matches!(c.get(1), Lookup::Miss(_)));
    }

    #[test]
    fn capacity_is_bounded_and_zero_disables() {
        let c = cache(2, Duration::from_secs(60));
        for key in 0..5 {
            let t = ticket(&c, key);
            c.fill(key, rec(1, 1), t);
            c.invalidate(key + 100);
        }
        assert!(c.lock().slots.len() <= 2);
        for off in [cache(0, Duration::from_secs(60)), cache(5, Duration::ZERO)] {
            let t = ticket(&off, 1);
            off.fill(1, rec(1, 1), t);
            off.offer(2, rec(1, 1));
            assert!(matches!(off.get(1), Lookup::Miss(_)));
            assert!(matches!(off.get(2), Lookup::Miss(_)));
        }
    }
}
