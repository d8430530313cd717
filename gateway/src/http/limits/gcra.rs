//! GCRA (the generic cell rate algorithm, a token bucket kept as one
//! timestamp): the decision in Rust for the in-process limiter, and the same
//! decision as a Lua script for Redis.
//!
//! A quota of `limit` requests per `period` spaces requests `interval =
//! period / limit` apart and tolerates a burst of `limit`. The only state
//! per key is the theoretical arrival time (TAT): when the bucket would be
//! full again. A request at `now` is allowed when `max(tat, now) + interval
//! - limit * interval <= now`, and then moves the TAT by one interval.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// How many requests a caller may make per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests per period (at least 1).
    pub limit: u32,
    /// The window the limit applies to.
    pub period: Duration,
}

impl Quota {
    /// Microseconds between two requests at the sustained rate (at least 1).
    pub fn interval_us(&self) -> u64 {
        (self.period.as_micros() as u64 / u64::from(self.limit.max(1))).max(1)
    }

    /// Microseconds a full bucket lasts: `limit` intervals. Using this
    /// rather than `period` keeps the burst at exactly `limit` when the
    /// period does not divide evenly.
    pub fn span_us(&self) -> u64 {
        self.interval_us() * u64::from(self.limit.max(1))
    }
}

/// What the limiter decided for one request, in the units of the
/// `RateLimit-*` header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The quota's limit (`RateLimit-Limit`).
    pub limit: u32,
    /// Requests left right now (`RateLimit-Remaining`).
    pub remaining: u32,
    /// Until the whole quota is available again (`RateLimit-Reset`).
    pub reset: Duration,
    /// Until the next request may be allowed (`Retry-After`); zero when allowed.
    pub retry_after: Duration,
}

impl Decision {
    /// Build a decision from what the algorithm (Rust or Lua) returned:
    /// `until_full_us` is `tat - now` after the decision.
    pub fn from_parts(quota: Quota, allowed: bool, until_full_us: u64, retry_us: u64) -> Self {
        let interval = quota.interval_us();
        let remaining = if allowed {
            quota.span_us().saturating_sub(until_full_us) / interval
        } else {
            0
        };
        Self {
            allowed,
            limit: quota.limit,
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset: Duration::from_micros(until_full_us),
            retry_after: Duration::from_micros(retry_us),
        }
    }
}

/// One GCRA step: the decision and, when allowed, the TAT to store.
pub fn step(now_us: u64, tat_us: Option<u64>, quota: Quota) -> (Decision, Option<u64>) {
    let tat = tat_us.unwrap_or(now_us).max(now_us);
    let new_tat = tat + quota.interval_us();
    let allow_at = new_tat.saturating_sub(quota.span_us());
    if now_us < allow_at {
        let d = Decision::from_parts(quota, false, tat - now_us, allow_at - now_us);
        (d, None)
    } else {
        let d = Decision::from_parts(quota, true, new_tat - now_us, 0);
        (d, Some(new_tat))
    }
}

/// [`step`] in Lua, atomic in Redis. Redis's own clock (`TIME`) is the
/// clock, so replicas with skewed clocks still share one budget.
/// KEYS[1]: the bucket; ARGV[1]: interval (µs); ARGV[2]: span (µs).
/// Returns `{allowed (0|1), tat - now (µs), retry after (µs)}`.
pub const LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local span = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - span
if now < allow_at then
  return {0, tat - now, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, new_tat - now, 0}
";

/// The in-process limiter: one TAT per key in a map, swept of keys whose
/// bucket is full again (they carry no information) as the map grows.
#[derive(Debug)]
pub struct LocalLimiter {
    origin: Instant,
    state: Mutex<LocalState>,
}

#[derive(Debug)]
struct LocalState {
    tats: HashMap<String, u64>,
    /// Sweep when the map reaches this size.
    sweep_at: usize,
}

/// Smallest map size that triggers a sweep.
const MIN_SWEEP: usize = 1024;

impl Default for LocalLimiter {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            state: Mutex::new(LocalState {
                tats: HashMap::new(),
                sweep_at: MIN_SWEEP,
            }),
        }
    }
}

impl LocalLimiter {
    /// Decide for one request under `key`.
    pub fn check(&self, key: &str, quota: Quota) -> Decision {
        // +1 so that "no state" (now) never equals the origin's zero.
        let now = self.origin.elapsed().as_micros() as u64 + 1;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (decision, new_tat) = step(now, state.tats.get(key).copied(), quota);
        if let Some(tat) = new_tat {
            state.tats.insert(key.to_owned(), tat);
            if state.tats.len() >= state.sweep_at {
                state.tats.retain(|_, tat| *tat > now);
                state.sweep_at = (state.tats.len() * 2).max(MIN_SWEEP);
            }
        }
        decision
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.state.lock().map(|s| s.tats.len()).unwrap_or_default()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Quota = Quota {
        limit: 3,
        period: Duration::from_secs(3),
    };

    #[test]
    fn a_full_bucket_allows_a_burst_of_limit_then_refuses() {
        let mut tat = None;
        let now = 1_000_000;
        for left in [2, 1, 0] {
            let (d, t) = step(now, tat, Q);
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
            tat = t;
        }
        let (d, t) = step(now, tat, Q);
        assert!(!d.allowed);
        assert_eq!(t, None);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after, Duration::from_secs(1));
        assert_eq!(d.reset, Duration::from_secs(3));
    }

    #[test]
    fn the_bucket_refills_at_the_sustained_rate() {
        let (_, tat) = step(0, None, Q);
        let (_, tat) = step(0, tat, Q);
        let (_, tat) = step(0, tat, Q);
        assert!(!step(999_999, tat, Q).0.allowed);
        let (d, _) = step(1_000_000, tat, Q);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        // After a whole period of silence the burst is back.
        assert_eq!(step(10_000_000, tat, Q).0.remaining, 2);
    }

    #[test]
    fn an_uneven_period_keeps_the_burst_at_limit() {
        let q = Quota {
            limit: 7,
            period: Duration::from_secs(60),
        };
        let mut tat = None;
        let mut allowed = 0;
        for _ in 0..20 {
            let (d, t) = step(5, tat, q);
            if d.allowed {
                allowed += 1;
                tat = t;
            }
        }
        assert_eq!(allowed, 7);
    }

    #[test]
    fn local_limiter_counts_per_key_and_sweeps() {
        let l = LocalLimiter::default();
        let q = Quota {
            limit: 2,
            period: Duration::from_secs(60),
        };
        assert!(l.check("a", q).allowed);
        assert!(l.check("a", q).allowed);
        assert!(!l.check("a", q).allowed);
        assert!(l.check("b", q).allowed);
        let tiny = Quota {
            limit: 1,
            period: Duration::from_micros(1),
        };
        for i in 0..3 * MIN_SWEEP {
            l.check(&format!("k{i}"), tiny);
        }
        assert!(l.len() < 2 * MIN_SWEEP, "{} keys kept", l.len());
    }
}
