//! A Redis connection that fails fast: a lazily connecting
//! [`ConnectionManager`] (it reconnects by itself when Redis returns), a
//! short timeout on every command, and a circuit breaker that skips Redis
//! for a cool-down after a failure so a dead Redis costs requests nothing.
//! After the cool-down one request probes Redis; the others keep skipping
//! until the probe succeeds.

use std::{
    future::Future,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use redis::{
    Client,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

/// How long Redis is skipped after a failure.
pub const COOL_DOWN: Duration = Duration::from_secs(1);
/// Warn about an unreachable Redis at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Why Redis was not used.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// A recent failure opened the circuit; Redis was not asked.
    #[error("skipped while the circuit is open")]
    CircuitOpen,
    /// The command did not finish in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Redis answered with an error, or the connection failed.
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

impl Unavailable {
    /// Metric label for the cause.
    pub fn cause(&self) -> &'static str {
        match self {
            Self::CircuitOpen => "circuit_open",
            Self::Timeout(_) => "timeout",
            Self::Redis(_) => "error",
        }
    }
}

/// One Redis connection for one component (the rate limiter, the
/// idempotency store), with its own circuit and error metric.
pub struct RedisStore {
    /// Multiplexed, reconnecting; cheap to clone per command.
    conn: ConnectionManager,
    /// Every key this store touches starts with it (`jetshop:`).
    prefix: String,
    /// Longest a command may take before it counts as a failure.
    timeout: Duration,
    /// Who uses this store, for the log.
    component: &'static str,
    /// Counter of requests Redis could not serve, labelled by `cause`.
    errors_metric: &'static str,
    /// Clock origin for the atomics below.
    origin: Instant,
    /// Circuit open until this many µs after `origin` (0: closed).
    open_until: AtomicU64,
    /// Last warning, µs after `origin` (0: never).
    last_warn: AtomicU64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("component", &self.component)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on `url` that connects on first use; fails only for a malformed URL.
    pub fn new(
        url: &str,
        prefix: &str,
        timeout: Duration,
        component: &'static str,
        errors_metric: &'static str,
    ) -> Result<Self, redis::RedisError> {
        let client = Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // Reconnect on the next command rather than retrying in a
            // loop that commands would wait on; the circuit paces retries.
            .set_number_of_retries(0);
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            timeout,
            component,
            errors_metric,
            origin: Instant::now(),
            open_until: AtomicU64::new(0),
            last_warn: AtomicU64::new(0),
        })
    }

    /// `prefix` + `suffix`: the full name of one of our keys.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64 + 1
    }

    /// Run one command (or script) unless the circuit is open; a failure
    /// opens it for [`COOL_DOWN`], a success closes it.
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T, Unavailable>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let now = self.now_us();
        let until = self.open_until.load(Ordering::Acquire);
        let probing = until != 0;
        if probing {
            // Open: skip, unless the cool-down is over and this request
            // wins the right to probe (the others keep skipping meanwhile).
            let next = now + COOL_DOWN.as_micros() as u64;
            if now < until
                || self
                    .open_until
                    .compare_exchange(until, next, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
            {
                return Err(self.failed(Unavailable::CircuitOpen));
            }
        }
        let result = match tokio::time::timeout(self.timeout, f(self.conn.clone())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Unavailable::Redis(e)),
            Err(_) => Err(Unavailable::Timeout(self.timeout)),
        };
        match result {
            Ok(v) => {
                if probing {
                    self.open_until.store(0, Ordering::Release);
                    tracing::info!(component = self.component, "Redis is reachable again");
                }
                Ok(v)
            }
            Err(e) => {
                let next = self.now_us() + COOL_DOWN.as_micros() as u64;
                self.open_until.store(next, Ordering::Release);
                Err(self.failed(e))
            }
        }
    }

    /// Count a request Redis did not serve; warn now and then.
    fn failed(&self, e: Unavailable) -> Unavailable {
        metrics::counter!(self.errors_metric, "cause" => e.cause()).increment(1);
        let now = self.now_us();
        let last = self.last_warn.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= WARN_EVERY.as_micros() as u64;
        if due
            && self
                .last_warn
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                component = self.component,
                error = %e,
                "Redis is unreachable; serving without it (this warning repeats at most every {}s)",
                WARN_EVERY.as_secs()
            );
        }
        e
    }
}
