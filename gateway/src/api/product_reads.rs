//! Product reads at the edge: `GET /v1/products/{id}` and the existence
//! check of order placement answer from a cache in each gateway process,
//! so the hottest read of a shop skips the NATS round trip to the catalog.
//!
//! The cache is the platform's read cache: each gateway follows
//! `catalog.events.>` with a core subscription (started with the first
//! read), takes new versions from product events and drops the products
//! whose stock an event moved; entries expire after `--product-cache-ttl`,
//! which bounds staleness when an event is missed. Nothing in it is needed
//! by another replica or after a restart. A product the catalog does not
//! have is never cached (it may be created a moment later).

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use jetshop_contracts::{
    catalog::{GetProduct, Product, product_touch},
    subjects,
};
use jetshop_platform::{
    envelope::MessageMeta,
    read_cache::{CacheMetrics, Lookup, ReadCache},
    rpc::{CallError, RpcClient},
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Product reads answered from the gateway's cache (counter).
pub const HITS: &str = "jetshop_gateway_product_cache_hits_total";
/// Product reads the gateway had to ask the catalog for (counter).
pub const MISSES: &str = "jetshop_gateway_product_cache_misses_total";

/// The process's product reads. Cheap to clone; clones share the cache.
#[derive(Clone, Debug)]
pub struct ProductReads(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    cache: ReadCache<Uuid, Product>,
    nats: async_nats::Client,
    /// Whether the follower of the catalog's events was started.
    following: AtomicBool,
    /// Ends the follower (the gateway is shutting down).
    stop: CancellationToken,
}

impl ProductReads {
    /// Reads cached (at most `capacity` products for at most `ttl`),
    /// following events on `nats`.
    pub fn new(capacity: usize, ttl: std::time::Duration, nats: async_nats::Client) -> Self {
        let metrics = CacheMetrics {
            hits: HITS,
            misses: MISSES,
        };
        Self(Arc::new(Inner {
            cache: ReadCache::new(capacity, ttl, metrics, |p| p.version),
            nats,
            following: AtomicBool::new(false),
            stop: CancellationToken::new(),
        }))
    }

    /// The product with `id`: from the cache when fresh, else from the
    /// catalog (and then cached).
    pub async fn get(
        &self,
        rpc: &RpcClient,
        id: Uuid,
        meta: &MessageMeta,
    ) -> Result<Product, CallError> {
        let ticket = match self.0.cache.get(id) {
            Lookup::Hit(product) => return Ok(product),
            Lookup::Miss(ticket) => ticket,
        };
        self.follow();
        let product = rpc.call(&GetProduct { id }, meta).await?;
        self.0.cache.fill(id, product.clone(), ticket);
        Ok(product)
    }

    /// Start following the catalog's events, once per process.
    fn follow(&self) {
        if !self.0.cache.enabled() || self.0.following.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.0.clone();
        tokio::spawn(async move {
            inner
                .cache
                .follow(
                    inner.nats.clone(),
                    subjects::catalog::EVENTS_ALL,
                    product_touch,
                    inner.stop.clone(),
                )
                .await;
            // Followed again by the next miss.
            inner.following.store(false, Ordering::Release);
        });
    }

    /// Stop following (the gateway is shutting down).
    pub fn close(&self) {
        self.0.stop.cancel();
    }
}

/// The `# HELP` of the cache's metrics; call once the recorder is installed.
pub fn describe() {
    metrics::describe_counter!(HITS, "Product reads the gateway answered from its cache.");
    metrics::describe_counter!(
        MISSES,
        "Product reads the gateway asked the catalog for (not cached, expired or changed)."
    );
}
