//! Calling the card provider without letting it take us down: a timeout
//! per attempt, retries with jittered exponential backoff, a circuit
//! breaker and a bulkhead, wrapped around any [`PaymentProvider`] as a
//! provider itself ([`ResilientProvider`]).
//!
//! One attempt goes through, in order:
//! 1. the **circuit breaker**: closed lets calls through; after
//!    `breaker_failure_threshold` consecutive failures (transient errors and
//!    timeouts; a decline is an answer, so it counts as a success) it opens
//!    and fails every call fast as `Transient("circuit open")`, without
//!    touching the provider; after `breaker_open_duration` it is half-open
//!    and lets exactly ONE probe through: a success closes it, a failure
//!    opens it again for another period;
//! 2. the **bulkhead**: at most `bulkhead_max_concurrent` calls in flight; a
//!    call waits at most `bulkhead_max_wait` for a slot, then fails as
//!    `Transient("bulkhead full")`, so a slow provider cannot pile up every
//!    consumer task behind it;
//! 3. the **timeout**: no answer within `timeout` is [`ProviderError::Timeout`].
//!
//! Failed attempts are **retried** `retries` times with jittered
//! exponential backoff (the `backon` crate), but only when the provider
//! itself failed transiently or timed out: never a decline (the same card
//! gives the same answer), and never a call the breaker or the bulkhead
//! refused (retrying at once would only add load; the command consumer
//! redelivers the command later with its own, longer backoff). Retries
//! are safe because every request carries an idempotency key.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use backon::{ExponentialBuilder, Retryable};
use futures::{FutureExt, future::BoxFuture};
use jetshop_platform::breaker::CircuitBreaker;
pub use jetshop_platform::breaker::{BreakerSnapshot, BreakerState};
use tokio::{sync::Semaphore, time::Instant};

use crate::{
    metrics as m,
    provider::{
        Authorization, AuthorizeRequest, CaptureRequest, PaymentProvider, ProviderError, Receipt,
        RefundRequest, VoidReceipt, VoidRequest,
    },
};

/// Upper bound of one backoff delay, whatever the retry count.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How provider calls are guarded (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Longest wait for one attempt.
    pub timeout: Duration,
    /// Retries after the first attempt, for transient failures and timeouts.
    pub retries: u32,
    /// First delay between attempts; doubles each time, plus jitter.
    pub backoff: Duration,
    /// Consecutive failures that open the breaker.
    pub breaker_failure_threshold: u32,
    /// How long the breaker stays open before a probe.
    pub breaker_open_duration: Duration,
    /// Provider calls in flight at once.
    pub bulkhead_max_concurrent: usize,
    /// Longest wait for a bulkhead slot.
    pub bulkhead_max_wait: Duration,
}

/// Why one attempt failed, which decides whether to retry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptError {
    /// The provider failed or declined.
    Provider(ProviderError),
    /// The breaker is open: the provider was not called.
    CircuitOpen,
    /// No bulkhead slot in time: the provider was not called.
    BulkheadFull,
}

impl AttemptError {
    /// Retry within this call only what the provider itself failed
    /// transiently; see the module docs.
    pub fn is_retryable(&self) -> bool {
        matches!(self, AttemptError::Provider(e) if e.is_retryable())
    }

    fn outcome(&self) -> &'static str {
        match self {
            AttemptError::Provider(ProviderError::Declined { .. }) => "declined",
            AttemptError::Provider(ProviderError::Transient(_)) => "transient",
            AttemptError::Provider(ProviderError::Timeout) => "timeout",
            AttemptError::CircuitOpen => "circuit_open",
            AttemptError::BulkheadFull => "bulkhead_full",
        }
    }
}

impl From<AttemptError> for ProviderError {
    fn from(e: AttemptError) -> Self {
        match e {
            AttemptError::Provider(p) => p,
            AttemptError::CircuitOpen => ProviderError::Transient("circuit open".into()),
            AttemptError::BulkheadFull => ProviderError::Transient("bulkhead full".into()),
        }
    }
}

/// A provider behind a timeout, retries, a circuit breaker and a bulkhead.
pub struct ResilientProvider {
    inner: Arc<dyn PaymentProvider>,
    policy: Policy,
    breaker: CircuitBreaker,
    bulkhead: Semaphore,
    attempts: AtomicU64,
}

impl std::fmt::Debug for ResilientProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResilientProvider")
            .field("provider", &self.inner.name())
            .field("policy", &self.policy)
            .field("breaker", &self.breaker.snapshot())
            .finish()
    }
}

impl ResilientProvider {
    /// Guard `inner` with `policy`.
    pub fn new(inner: Arc<dyn PaymentProvider>, policy: Policy) -> Self {
        let breaker = CircuitBreaker::new(
            format!("payments-{}", inner.name()),
            policy.breaker_failure_threshold,
            policy.breaker_open_duration,
        );
        let bulkhead = Semaphore::new(policy.bulkhead_max_concurrent.max(1));
        Self {
            inner,
            policy,
            breaker,
            bulkhead,
            attempts: AtomicU64::new(0),
        }
    }

    /// Where the circuit breaker stands.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// The circuit breaker's counters.
    pub fn breaker(&self) -> BreakerSnapshot {
        self.breaker.snapshot()
    }

    /// Attempts made through this guard, including those refused by the
    /// breaker or the bulkhead.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Run `call` under the policy: attempts with retries and backoff.
    async fn guarded<'a, T, F>(
        &'a self,
        operation: &'static str,
        call: F,
    ) -> Result<T, ProviderError>
    where
        F: Fn() -> BoxFuture<'a, Result<T, ProviderError>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.policy.backoff)
            .with_max_delay(MAX_BACKOFF.max(self.policy.backoff))
            .with_factor(2.0)
            .with_max_times(self.policy.retries as usize)
            .with_jitter();
        (|| self.attempt(operation, &call))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(AttemptError::is_retryable)
            .notify(|err: &AttemptError, delay: Duration| {
                tracing::warn!(provider = self.inner.name(), operation, error = ?err, retry_in = ?delay, "provider call failed; retrying");
            })
            .await
            .map_err(ProviderError::from)
    }

    /// One attempt: breaker, bulkhead, timeout.
    async fn attempt<'a, T, F>(
        &'a self,
        operation: &'static str,
        call: &F,
    ) -> Result<T, AttemptError>
    where
        F: Fn() -> BoxFuture<'a, Result<T, ProviderError>>,
    {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let provider = self.inner.name();
        let result = self.attempt_inner(operation, call).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        metrics::counter!(m::PROVIDER_CALLS, "provider" => provider, "operation" => operation, "outcome" => outcome)
            .increment(1);
        result
    }

    async fn attempt_inner<'a, T, F>(
        &'a self,
        operation: &'static str,
        call: &F,
    ) -> Result<T, AttemptError>
    where
        F: Fn() -> BoxFuture<'a, Result<T, ProviderError>>,
    {
        let permit = self
            .breaker
            .try_acquire()
            .map_err(|_open| AttemptError::CircuitOpen)?;
        let _slot = match tokio::time::timeout(
            self.policy.bulkhead_max_wait,
            self.bulkhead.acquire(),
        )
        .await
        {
            Ok(Ok(slot)) => slot,
            // Elapsed, or closed (never: we do not close it).
            _ => return Err(AttemptError::BulkheadFull),
        };
        let started = Instant::now();
        let result = match tokio::time::timeout(self.policy.timeout, call()).await {
            Ok(r) => r,
            Err(_elapsed) => Err(ProviderError::Timeout),
        };
        metrics::histogram!(m::PROVIDER_DURATION, "provider" => self.inner.name(), "operation" => operation)
            .record(started.elapsed().as_secs_f64());
        match &result {
            Ok(_) | Err(ProviderError::Declined { .. }) => permit.success(),
            Err(ProviderError::Transient(_) | ProviderError::Timeout) => permit.failure(),
        }
        result.map_err(AttemptError::Provider)
    }
}

impl PaymentProvider for ResilientProvider {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn authorize<'a>(
        &'a self,
        req: &'a AuthorizeRequest,
    ) -> BoxFuture<'a, Result<Authorization, ProviderError>> {
        self.guarded("authorize", move || self.inner.authorize(req))
            .boxed()
    }

    fn capture<'a>(
        &'a self,
        req: &'a CaptureRequest,
    ) -> BoxFuture<'a, Result<Receipt, ProviderError>> {
        self.guarded("capture", move || self.inner.capture(req))
            .boxed()
    }

    fn void<'a>(
        &'a self,
        req: &'a VoidRequest,
    ) -> BoxFuture<'a, Result<VoidReceipt, ProviderError>> {
        self.guarded("void", move || self.inner.void(req)).boxed()
    }

    fn refund<'a>(
        &'a self,
        req: &'a RefundRequest,
    ) -> BoxFuture<'a, Result<Receipt, ProviderError>> {
        self.guarded("refund", move || self.inner.refund(req))
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU32};

    use uuid::Uuid;

    use super::*;

    const OPEN_FOR: Duration = Duration::from_secs(10);

    #[test]
    fn only_provider_failures_are_retried() {
        assert!(AttemptError::Provider(ProviderError::Timeout).is_retryable());
        assert!(AttemptError::Provider(ProviderError::Transient("x".into())).is_retryable());
        assert!(
            !AttemptError::Provider(ProviderError::declined("card_declined", "no")).is_retryable()
        );
        assert!(!AttemptError::CircuitOpen.is_retryable());
        assert!(!AttemptError::BulkheadFull.is_retryable());
        assert_eq!(
            ProviderError::from(AttemptError::CircuitOpen),
            ProviderError::Transient("circuit open".into())
        );
    }

    fn policy(retries: u32, threshold: u32) -> Policy {
        Policy {
            timeout: Duration::from_millis(100),
            retries,
            backoff: Duration::from_millis(10),
            breaker_failure_threshold: threshold,
            breaker_open_duration: OPEN_FOR,
            bulkhead_max_concurrent: 2,
            bulkhead_max_wait: Duration::from_millis(10),
        }
    }

    fn authorize(token: &str) -> AuthorizeRequest {
        let payment_id = Uuid::new_v4();
        AuthorizeRequest {
            idempotency_key: format!("{payment_id}:authorize"),
            payment_id,
            order_id: Uuid::new_v4(),
            amount_minor: 100,
            currency: "EUR".into(),
            card_token: token.into(),
        }
    }

    /// A provider whose answers the test scripts: an outage, a number of
    /// transient failures before it approves, a decline, or no answer.
    #[derive(Default)]
    struct Scripted {
        calls: AtomicU32,
        outage: AtomicBool,
        failures_left: AtomicU32,
        decline: AtomicBool,
        hang: AtomicBool,
    }

    impl Scripted {
        fn calls(&self) -> u32 {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl PaymentProvider for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn authorize<'a>(
            &'a self,
            _: &'a AuthorizeRequest,
        ) -> BoxFuture<'a, Result<Authorization, ProviderError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.hang.load(Ordering::SeqCst) {
                return futures::future::pending().boxed();
            }
            let answer = if self.outage.load(Ordering::SeqCst) {
                Err(ProviderError::Transient("outage".into()))
            } else if self.decline.load(Ordering::SeqCst) {
                Err(ProviderError::declined("card_declined", "no"))
            } else if self
                .failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                Err(ProviderError::Transient("processing error".into()))
            } else {
                Ok(Authorization {
                    provider_ref: "auth_1".into(),
                })
            };
            futures::future::ready(answer).boxed()
        }
        fn capture<'a>(
            &'a self,
            _: &'a CaptureRequest,
        ) -> BoxFuture<'a, Result<Receipt, ProviderError>> {
            futures::future::pending().boxed()
        }
        fn void<'a>(
            &'a self,
            _: &'a VoidRequest,
        ) -> BoxFuture<'a, Result<VoidReceipt, ProviderError>> {
            futures::future::pending().boxed()
        }
        fn refund<'a>(
            &'a self,
            _: &'a RefundRequest,
        ) -> BoxFuture<'a, Result<Receipt, ProviderError>> {
            futures::future::pending().boxed()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_and_declines_are_not() {
        let flaky = Arc::new(Scripted::default());
        flaky.failures_left.store(2, Ordering::SeqCst);
        let p = ResilientProvider::new(flaky.clone(), policy(2, 100));
        assert!(p.authorize(&authorize("tok_processingError")).await.is_ok());
        assert_eq!(flaky.calls(), 3, "two failures, then success");

        let declining = Arc::new(Scripted::default());
        declining.decline.store(true, Ordering::SeqCst);
        let p = ResilientProvider::new(declining.clone(), policy(2, 100));
        assert!(matches!(
            p.authorize(&authorize("tok_chargeDeclined")).await,
            Err(ProviderError::Declined { .. })
        ));
        assert_eq!(declining.calls(), 1, "a decline is final");
    }

    #[tokio::test(start_paused = true)]
    async fn timeouts_are_retried_then_surface_as_timeouts() {
        let slow = Arc::new(Scripted::default());
        slow.hang.store(true, Ordering::SeqCst);
        let p = ResilientProvider::new(slow.clone(), policy(2, 100));
        assert_eq!(
            p.authorize(&authorize("tok_timeout")).await,
            Err(ProviderError::Timeout)
        );
        assert_eq!(slow.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_stops_the_retries_and_spares_the_provider() {
        let down = Arc::new(Scripted::default());
        down.outage.store(true, Ordering::SeqCst);
        let p = ResilientProvider::new(down.clone(), policy(5, 2));
        let req = authorize("tok_visa");
        assert_eq!(
            p.authorize(&req).await,
            Err(ProviderError::Transient("circuit open".into()))
        );
        assert_eq!(down.calls(), 2, "the third attempt failed fast");
        assert_eq!(p.breaker_state(), BreakerState::Open);
        assert!(p.authorize(&authorize("tok_visa")).await.is_err());
        assert_eq!(down.calls(), 2);

        down.outage.store(false, Ordering::SeqCst);
        tokio::time::advance(OPEN_FOR).await;
        assert!(p.authorize(&req).await.is_ok(), "the probe");
        assert_eq!(p.breaker_state(), BreakerState::Closed);
    }

    /// A provider that never answers, to fill the bulkhead.
    struct Stuck(AtomicU32);

    impl PaymentProvider for Stuck {
        fn name(&self) -> &'static str {
            "stuck"
        }
        fn authorize<'a>(
            &'a self,
            _: &'a AuthorizeRequest,
        ) -> BoxFuture<'a, Result<Authorization, ProviderError>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            futures::future::pending().boxed()
        }
        fn capture<'a>(
            &'a self,
            _: &'a CaptureRequest,
        ) -> BoxFuture<'a, Result<Receipt, ProviderError>> {
            futures::future::pending().boxed()
        }
        fn void<'a>(
            &'a self,
            _: &'a VoidRequest,
        ) -> BoxFuture<'a, Result<VoidReceipt, ProviderError>> {
            futures::future::pending().boxed()
        }
        fn refund<'a>(
            &'a self,
            _: &'a RefundRequest,
        ) -> BoxFuture<'a, Result<Receipt, ProviderError>> {
            futures::future::pending().boxed()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_bulkhead_fails_transiently_without_calling_the_provider() {
        let stuck = Arc::new(Stuck(AtomicU32::new(0)));
        let mut pol = policy(0, 100);
        pol.timeout = Duration::from_secs(3600);
        let p = Arc::new(ResilientProvider::new(stuck.clone(), pol));
        let (a, b) = (authorize("tok_visa"), authorize("tok_visa"));
        let (p1, p2) = (p.clone(), p.clone());
        let t1 = tokio::spawn(async move { p1.authorize(&a).await });
        let t2 = tokio::spawn(async move { p2.authorize(&b).await });
        while stuck.0.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            p.authorize(&authorize("tok_visa")).await,
            Err(ProviderError::Transient("bulkhead full".into()))
        );
        assert_eq!(stuck.0.load(Ordering::SeqCst), 2);
        t1.abort();
        t2.abort();
    }
}
