//! A consecutive-failure circuit breaker with a single half-open probe,
//! shared by everything that calls something over the network: the payments
//! service around its card processor, the gateway around each service it
//! asks over NATS.
//!
//! Closed lets calls through; after `threshold` consecutive failures it
//! opens and refuses every call at once ([`CircuitOpen`], which says how
//! long until the next probe, for a `Retry-After`); after `open_for` it is
//! half-open and lets exactly ONE probe through: a success closes it, a
//! failure opens it again for another period. What counts as a failure is
//! the caller's business: an answer that says *no* (a decline, a 404) is a
//! success, since the other side is healthy.
//!
//! Its state is per process on purpose: each replica judges the health of
//! what it calls from its own calls, so no replica needs another's state.

use std::{sync::Mutex, time::Duration};

use tokio::time::Instant;

use crate::metrics as m;

/// Where a circuit breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// The open period is over: the next call is the probe.
    HalfOpen,
    /// Calls fail fast.
    Open,
}

impl BreakerState {
    /// The value of the [`m::BREAKER_STATE`] gauge.
    pub fn gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }
}

/// What a breaker has done so far, for tests and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSnapshot {
    /// Where it stands now.
    pub state: BreakerState,
    /// Failures in a row while closed.
    pub consecutive_failures: u32,
    /// Times it opened (from closed or after a failed probe).
    pub times_opened: u64,
    /// Probes let through while half-open.
    pub probes: u64,
    /// Calls refused without being made.
    pub rejected: u64,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
struct BreakerInner {
    phase: Phase,
    times_opened: u64,
    probes: u64,
    rejected: u64,
}

/// A consecutive-failure circuit breaker with a single half-open probe.
/// Time is tokio's, so tests can pause and advance it.
#[derive(Debug)]
pub struct CircuitBreaker {
    name: String,
    threshold: u32,
    open_for: Duration,
    inner: Mutex<BreakerInner>,
}

/// The breaker refused the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit open; next probe in {retry_after:?}")]
pub struct CircuitOpen {
    /// How long until the breaker lets a probe through (zero while a probe
    /// is in flight): what a `Retry-After` should say.
    pub retry_after: Duration,
}

/// Leave to make one call. Report how it went with [`BreakerPermit::success`]
/// or [`BreakerPermit::failure`]; a probe dropped without a report (its
/// call was cancelled) lets the next call probe instead.
#[derive(Debug)]
pub struct BreakerPermit<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    reported: bool,
}

impl CircuitBreaker {
    /// A closed breaker named `name` (the `breaker` label of its gauge:
    /// `payments-card-processor`, `gateway-orders`).
    pub fn new(name: impl Into<String>, threshold: u32, open_for: Duration) -> Self {
        let name = name.into();
        metrics::gauge!(m::BREAKER_STATE, "breaker" => name.clone())
            .set(BreakerState::Closed.gauge());
        Self {
            name,
            threshold: threshold.max(1),
            open_for,
            inner: Mutex::new(BreakerInner {
                phase: Phase::Closed { failures: 0 },
                times_opened: 0,
                probes: 0,
                rejected: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ask to make a call.
    pub fn try_acquire(&self) -> Result<BreakerPermit<'_>, CircuitOpen> {
        let mut inner = self.lock();
        let probe = match inner.phase {
            Phase::Closed { .. } => false,
            Phase::Open { until } if Instant::now() >= until => {
                inner.phase = Phase::HalfOpen { probing: true };
                true
            }
            Phase::HalfOpen { probing: false } => {
                inner.phase = Phase::HalfOpen { probing: true };
                true
            }
            Phase::Open { until } => {
                inner.rejected += 1;
                return Err(CircuitOpen {
                    retry_after: until - Instant::now(),
                });
            }
            Phase::HalfOpen { probing: true } => {
                inner.rejected += 1;
                return Err(CircuitOpen {
                    retry_after: Duration::ZERO,
                });
            }
        };
        if probe {
            inner.probes += 1;
            self.publish(BreakerState::HalfOpen);
            tracing::info!(breaker = %self.name, "circuit breaker half-open: probing");
        }
        Ok(BreakerPermit {
            breaker: self,
            probe,
            reported: false,
        })
    }

    /// Where the breaker stands now.
    pub fn state(&self) -> BreakerState {
        Self::state_of(&self.lock())
    }

    fn state_of(inner: &BreakerInner) -> BreakerState {
        match inner.phase {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { until } if Instant::now() >= until => BreakerState::HalfOpen,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Counters and state.
    pub fn snapshot(&self) -> BreakerSnapshot {
        let inner = self.lock();
        BreakerSnapshot {
            state: Self::state_of(&inner),
            consecutive_failures: match inner.phase {
                Phase::Closed { failures } => failures,
                _ => 0,
            },
            times_opened: inner.times_opened,
            probes: inner.probes,
            rejected: inner.rejected,
        }
    }

    fn record(&self, probe: bool, ok: bool) {
        let mut inner = self.lock();
        match (inner.phase, probe) {
            (Phase::HalfOpen { .. }, true) if ok => {
                inner.phase = Phase::Closed { failures: 0 };
                self.publish(BreakerState::Closed);
                tracing::info!(
                    breaker = %self.name,
                    "circuit breaker closed: the probe succeeded"
                );
            }
            (Phase::HalfOpen { .. }, true) => self.open(&mut inner, "the probe failed"),
            (Phase::Closed { .. }, false) if ok => inner.phase = Phase::Closed { failures: 0 },
            (Phase::Closed { failures }, false) => {
                let failures = failures + 1;
                if failures >= self.threshold {
                    self.open(&mut inner, "too many consecutive failures");
                } else {
                    inner.phase = Phase::Closed { failures };
                }
            }
            // Calls let through while closed that finish after the breaker
            // moved on: only the probe decides a half-open breaker, and an
            // open one waits out its period.
            _ => {}
        }
    }

    fn open(&self, inner: &mut BreakerInner, why: &str) {
        inner.phase = Phase::Open {
            until: Instant::now() + self.open_for,
        };
        inner.times_opened += 1;
        self.publish(BreakerState::Open);
        tracing::warn!(breaker = %self.name, open_for = ?self.open_for, why, "circuit breaker open: failing calls fast");
    }

    fn release_probe(&self) {
        let mut inner = self.lock();
        if let Phase::HalfOpen { probing: true } = inner.phase {
            inner.phase = Phase::HalfOpen { probing: false };
        }
    }

    fn publish(&self, state: BreakerState) {
        metrics::gauge!(m::BREAKER_STATE, "breaker" => self.name.clone()).set(state.gauge());
    }
}

impl BreakerPermit<'_> {
    /// The call got an answer (a yes or a no: the other side is healthy).
    pub fn success(mut self) {
        self.reported = true;
        self.breaker.record(self.probe, true);
    }

    /// The call failed (no answer in time, unreachable, overloaded).
    pub fn failure(mut self) {
        self.reported = true;
        self.breaker.record(self.probe, false);
    }
}

impl Drop for BreakerPermit<'_> {
    fn drop(&mut self) {
        if self.probe && !self.reported {
            self.breaker.release_probe();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN_FOR: Duration = Duration::from_secs(10);

    fn breaker(threshold: u32) -> CircuitBreaker {
        CircuitBreaker::new("test", threshold, OPEN_FOR)
    }

    fn fail(b: &CircuitBreaker) {
        b.try_acquire().expect("let through").failure();
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_n_consecutive_failures_and_fails_fast() {
        let b = breaker(3);
        fail(&b);
        fail(&b);
        // A success in between starts the count again.
        b.try_acquire().unwrap().success();
        fail(&b);
        fail(&b);
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(
            b.try_acquire().unwrap_err(),
            CircuitOpen {
                retry_after: OPEN_FOR
            }
        );
        let s = b.snapshot();
        assert_eq!((s.times_opened, s.rejected), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_lets_one_probe_through_and_a_success_closes() {
        let b = breaker(1);
        fail(&b);
        tokio::time::advance(OPEN_FOR).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.try_acquire().expect("the probe");
        // Everyone else still fails fast while the probe is out.
        assert!(b.try_acquire().is_err());
        probe.success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.try_acquire().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_for_another_period() {
        let b = breaker(1);
        fail(&b);
        tokio::time::advance(OPEN_FOR).await;
        b.try_acquire().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(OPEN_FOR / 2).await;
        assert_eq!(b.try_acquire().unwrap_err().retry_after, OPEN_FOR / 2);
        tokio::time::advance(OPEN_FOR / 2).await;
        assert!(b.try_acquire().is_ok());
        assert_eq!(b.snapshot().times_opened, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_lets_the_next_call_probe() {
        let b = breaker(1);
        fail(&b);
        tokio::time::advance(OPEN_FOR).await;
        drop(b.try_acquire().unwrap());
        let probe = b.try_acquire().expect("a new probe");
        probe.success();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn late_outcomes_of_calls_started_while_closed_do_not_move_an_open_breaker() {
        let b = breaker(1);
        let early = b.try_acquire().unwrap();
        fail(&b);
        assert_eq!(b.state(), BreakerState::Open);
        early.success();
        assert_eq!(b.state(), BreakerState::Open);
    }
}
