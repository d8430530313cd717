//! The catalog's read cache for `get`, so the hot read path skips the
//! database: the platform's [`ReadCache`] of products.
//!
//! Kept fresh three ways, strongest first: the command handler drops a
//! product's entry right after committing a change to it; every instance
//! follows `catalog.events.>` and replaces an entry with a newer version
//! (so replicas learn of each other's writes within milliseconds); and an
//! entry expires after a TTL, which bounds staleness if an event is missed.
//! Reads of the catalog were never transactional with its writes, since
//! commands are asynchronous; decisions that need the exact stock
//! (reservations) read the database, not this cache.

use std::{sync::Arc, time::Duration};

use jetshop_contracts::{
    catalog::{Product, product_touch},
    subjects,
};
use jetshop_platform::read_cache::{CacheMetrics, Lookup, ReadCache, Ticket};
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
pub struct ProductCache(Arc<ReadCache<Uuid, Product>>);

impl ProductCache {
    /// A cache of at most `capacity` products, each kept at most `ttl`.
    /// A capacity or TTL of zero disables it.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        let metrics = CacheMetrics {
            hits: HITS,
            misses: MISSES,
        };
        Self(Arc::new(ReadCache::new(capacity, ttl, metrics, |p| {
            p.version
        })))
    }

    /// The cached product if fresh, else a ticket to fill it with.
    pub fn get(&self, id: Uuid) -> Lookup<Product> {
        self.0.get(id)
    }

    /// Keep what a load after a miss found (see [`ReadCache::fill`]).
    pub fn fill(&self, product: Product, ticket: Ticket) {
        self.0.fill(product.id, product, ticket);
    }

    /// Forget a product (it changed).
    pub fn invalidate(&self, id: Uuid) {
        self.0.invalidate(id);
    }

    /// Apply the catalog's events to the cache until `shutdown`.
    pub async fn follow_events(self, client: async_nats::Client, shutdown: CancellationToken) {
        self.0
            .follow(
                client,
                subjects::catalog::EVENTS_ALL,
                product_touch,
                shutdown,
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    use jetshop_contracts::{
        Encoding, Message,
        catalog::{
            Money, ProductChanged, ReservationLine, StockAdjusted, StockReleased, StockReserved,
        },
        headers,
    };

    use super::*;

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

    fn event(cache: &ProductCache, ty: &str, payload: &[u8]) {
        let mut h = async_nats::HeaderMap::new();
        h.insert(headers::TYPE, ty);
        h.insert(headers::CONTENT_TYPE, "application/msgpack");
        cache.0.apply_message(product_touch, Some(&h), payload);
    }

    fn cached(cache: &ProductCache, id: Uuid) -> Option<Product> {
        match cache.get(id) {
            Lookup::Hit(p) => Some(p),
            Lookup::Miss(_) => None,
        }
    }

    #[test]
    fn stock_events_invalidate_and_product_events_update() {
        let cache = ProductCache::new(10, Duration::from_secs(60));
        let id = Uuid::now_v7();
        cache.0.offer(id, product(id, 1, 5));
        let e = StockAdjusted {
            product_id: id,
            delta: -1,
            stock: 4,
            reason: None,
            version: 2,
        };
        event(
            &cache,
            StockAdjusted::TYPE,
            &Encoding::MsgPack.encode(&e).unwrap(),
        );
        assert!(cached(&cache, id).is_none());
        let e = ProductChanged {
            product: product(id, 3, 4),
        };
        event(
            &cache,
            ProductChanged::TYPE,
            &Encoding::MsgPack.encode(&e).unwrap(),
        );
        assert_eq!(cached(&cache, id).unwrap().version, 3);
    }

    #[test]
    fn reservation_events_invalidate_every_line() {
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
        let order_id = Uuid::now_v7();
        for (ty, payload) in [
            (
                StockReserved::TYPE,
                Encoding::MsgPack
                    .encode(&StockReserved {
                        order_id,
                        lines: lines.clone(),
                    })
                    .unwrap(),
            ),
            (
                StockReleased::TYPE,
                Encoding::MsgPack
                    .encode(&StockReleased {
                        order_id,
                        lines: lines.clone(),
                    })
                    .unwrap(),
            ),
        ] {
            cache.0.offer(a, product(a, 1, 5));
            cache.0.offer(b, product(b, 1, 5));
            event(&cache, ty, &payload);
            assert!(
                cached(&cache, a).is_none() && cached(&cache, b).is_none(),
                "{ty}"
            );
        }
    }
}
