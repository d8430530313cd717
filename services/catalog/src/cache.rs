//! A read cache for `get`, so the hot read path skips the database.
//!
//! Kept fresh three ways, strongest first: the command handler drops a
//! product's entry right after committing a change to it; every instance
//! follows `catalog.events.>` and replaces an entry with a newer version
//! (so replicas learn of each other's writes within milliseconds); and an
//! entry expires after a TTL, which bounds staleness if an event is missed
//! (core NATS subscriptions drop messages for a slow subscriber). Reads of
//! the catalog were never transactional with its writes, since commands are
//! asynchronous; decisions that need the exact stock (reservations) read the
//! database, not this cache.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use futures::StreamExt;
use jetshop_contracts::{
    Encoding, Message,
    catalog::{
        Product, ProductChanged, ProductCreated, StockAdjusted, StockReleased, StockReserved,
    },
    headers, subjects,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Cache hits of `get`.
pub const HITS: &str = "jetshop_catalog_cache_hits_total";
/// Cache misses of `get`.
pub const MISSES: &str = "jetshop_catalog_cache_misses_total";

/// The `# HELP` of the cache's metrics; call once the recorder is installed.
pub fn describe() {
    metrics::describe_counter!(HITS, "Product reads answered from the catalog's cache.");
    metrics::describe_counter!(
        MISSES,
        "Product reads the catalog's cache had to load from the database."
    );
}

/// Products by id, bounded in size and age. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ProductCache {
    entries: Arc<RwLock<HashMap<Uuid, Entry>>>,
    capacity: usize,
    ttl: Duration,
}

#[derive(Debug)]
struct Entry {
    product: Product,
    stored: Instant,
}

impl ProductCache {
    /// A cache of at most `capacity` products, each kept at most `ttl`.
    /// A capacity or TTL of zero disables it.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: Arc::default(),
            capacity,
            ttl,
        }
    }

    fn enabled(&self) -> bool {
        self.capacity > 0 && !self.ttl.is_zero()
    }

    /// The cached product, if fresh.
    pub fn get(&self, id: Uuid) -> Option<Product> {
        if !self.enabled() {
            return None;
        }
        let found = {
            let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
            entries
                .get(&id)
                .filter(|e| e.stored.elapsed() < self.ttl)
                .map(|e| e.product.clone())
        };
        match found {
            Some(p) => {
                metrics::counter!(HITS).increment(1);
                Some(p)
            }
            None => {
                metrics::counter!(MISSES).increment(1);
                None
            }
        }
    }

    /// Keep `product` unless a newer version is already cached.
    pub fn offer(&self, product: Product) {
        if !self.enabled() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if let Some(current) = entries.get(&product.id)
            && current.product.version > product.version
        {
            return;
        }
        if entries.len() >= self.capacity && !entries.contains_key(&product.id) {
            // Make room: expired entries first, else any one.
            let ttl = self.ttl;
            entries.retain(|_, e| e.stored.elapsed() < ttl);
            if entries.len() >= self.capacity
                && let Some(victim) = entries.keys().next().copied()
            {
                entries.remove(&victim);
            }
        }
        entries.insert(
            product.id,
            Entry {
                product,
                stored: Instant::now(),
            },
        );
    }

    /// Forget a product (it changed).
    pub fn invalidate(&self, id: Uuid) {
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Apply the catalog's events to the cache until `shutdown`.
    pub async fn follow_events(self, client: async_nats::Client, shutdown: CancellationToken) {
        if !self.enabled() {
            return;
        }
        let mut events = match client.subscribe(subjects::catalog::EVENTS_ALL).await {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(error = %err, "cannot follow catalog events; the cache relies on its TTL");
                return;
            }
        };
        loop {
            let msg = tokio::select! {
                m = events.next() => m,
                _ = shutdown.cancelled() => break,
            };
            let Some(msg) = msg else { break };
            self.apply(msg.headers.as_ref(), &msg.payload);
        }
    }

    fn apply(&self, h: Option<&async_nats::HeaderMap>, payload: &[u8]) {
        let ty = h
            .and_then(|h| h.get(headers::TYPE))
            .map(|v| v.as_str().to_owned());
        let content_type = h
            .and_then(|h| h.get(headers::CONTENT_TYPE))
            .map(|v| v.as_str().to_owned());
        let Ok(encoding) = Encoding::detect(content_type.as_deref(), payload) else {
            return;
        };
        match ty.as_deref() {
            Some(ProductCreated::TYPE) => {
                if let Ok(e) = encoding.decode::<ProductCreated>(payload) {
                    self.offer(e.product);
                }
            }
            Some(ProductChanged::TYPE) => {
                if let Ok(e) = encoding.decode::<ProductChanged>(payload) {
                    self.offer(e.product);
                }
            }
            Some(StockAdjusted::TYPE) => {
                if let Ok(e) = encoding.decode::<StockAdjusted>(payload) {
                    self.invalidate(e.product_id);
                }
            }
            // Reservations move stock without carrying it: drop the entries.
            Some(StockReserved::TYPE) => {
                if let Ok(e) = encoding.decode::<StockReserved>(payload) {
                    e.lines.iter().for_each(|l| self.invalidate(l.product_id));
                }
            }
            Some(StockReleased::TYPE) => {
                if let Ok(e) = encoding.decode::<StockReleased>(payload) {
                    e.lines.iter().for_each(|l| self.invalidate(l.product_id));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetshop_contracts::catalog::Money;

    fn product(id: Uuid, version: i64, stock: i64) -> Product {
        let now = chrono::Utc::now();
        Product {
            id,
            sku: "S".into(),
            name: "n".into(),
            description: String::new(),
            price: Money {
                amount_minor: 1,
                currency: "EUR".into(),
            },
            stock,
            version,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn an_older_version_never_replaces_a_newer_one() {
        let cache = ProductCache::new(10, Duration::from_secs(60));
        let id = Uuid::now_v7();
        cache.offer(product(id, 3, 7));
        cache.offer(product(id, 2, 9));
        assert_eq!(cache.get(id).unwrap().stock, 7);
        cache.offer(product(id, 4, 1));
        assert_eq!(cache.get(id).unwrap().stock, 1);
    }

    #[test]
    fn entries_expire_and_can_be_invalidated() {
        let cache = ProductCache::new(10, Duration::from_millis(30));
        let id = Uuid::now_v7();
        cache.offer(product(id, 1, 1));
        assert!(cache.get(id).is_some());
        cache.invalidate(id);
        assert!(cache.get(id).is_none());
        cache.offer(product(id, 1, 1));
        std::thread::sleep(Duration::from_millis(40));
        assert!(cache.get(id).is_none());
    }

    #[test]
    fn capacity_is_bounded_and_zero_disables() {
        let cache = ProductCache::new(2, Duration::from_secs(60));
        for _ in 0..5 {
            cache.offer(product(Uuid::now_v7(), 1, 1));
        }
        assert!(cache.entries.read().unwrap().len() <= 2);
        let off = ProductCache::new(0, Duration::from_secs(60));
        let id = Uuid::now_v7();
        off.offer(product(id, 1, 1));
        assert!(off.get(id).is_none());
    }

    #[test]
    fn stock_events_invalidate_and_product_events_update() {
        let cache = ProductCache::new(10, Duration::from_secs(60));
        let id = Uuid::now_v7();
        cache.offer(product(id, 1, 5));
        let mut h = async_nats::HeaderMap::new();
        h.insert(headers::TYPE, StockAdjusted::TYPE);
        h.insert(headers::CONTENT_TYPE, "application/msgpack");
        let e = StockAdjusted {
            product_id: id,
            delta: -1,
            stock: 4,
            reason: None,
            version: 2,
        };
        cache.apply(Some(&h), &Encoding::MsgPack.encode(&e).unwrap());
        assert!(cache.get(id).is_none());
        h.insert(headers::TYPE, ProductChanged::TYPE);
        let e = ProductChanged {
            product: product(id, 3, 4),
        };
        cache.apply(Some(&h), &Encoding::MsgPack.encode(&e).unwrap());
        assert_eq!(cache.get(id).unwrap().version, 3);
    }

    #[test]
    fn reservation_events_invalidate_every_line() {
        use jetshop_contracts::catalog::ReservationLine;
        let cache = ProductCache::new(10, Duration::from_secs(60));
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let lines = vec![
            ReservationLine {
                product_id: a,
                quantity: 1,
            },
            ReservationLine {
                product_id: b,
                quantity: 2,
            },
        ];
        let mut h = async_nats::HeaderMap::new();
        h.insert(headers::CONTENT_TYPE, "application/msgpack");
        for (ty, payload) in [
            (
                StockReserved::TYPE,
                Encoding::MsgPack
                    .encode(&StockReserved {
                        order_id: Uuid::now_v7(),
                        lines: lines.clone(),
                    })
                    .unwrap(),
            ),
            (
                StockReleased::TYPE,
                Encoding::MsgPack
                    .encode(&StockReleased {
                        order_id: Uuid::now_v7(),
                        lines: lines.clone(),
                    })
                    .unwrap(),
            ),
        ] {
            cache.offer(product(a, 1, 5));
            cache.offer(product(b, 1, 5));
            h.insert(headers::TYPE, ty);
            cache.apply(Some(&h), &payload);
            assert!(cache.get(a).is_none() && cache.get(b).is_none(), "{ty}");
        }
    }
}
