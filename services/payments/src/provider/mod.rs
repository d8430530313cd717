//! The card provider adapter: what payments needs from a card processor,
//! and its implementation over the card processor's HTTP API
//! ([`card_processor`]). An adapter for another processor is a second
//! implementation of [`PaymentProvider`].
//!
//! A provider is reached over the network, so every call may fail in one
//! of three ways that mean different things to the caller:
//! - [`ProviderError::Declined`]: the processor answered *no*. Permanent:
//!   asking again gives the same answer, so it is never retried.
//! - [`ProviderError::Transient`]: the processor could not answer now
//!   (processing error, outage, our own circuit breaker or bulkhead).
//!   Retrying later may work.
//! - [`ProviderError::Timeout`]: no answer in time. The call may or may not
//!   have taken effect; retrying is safe only because every request carries
//!   an idempotency key (see below).
//!
//! Every request carries an `idempotency_key` derived from the payment and
//! the operation ([`crate::domain::idempotency_key`]), like Stripe's
//! `Idempotency-Key` header: the processor answers a repeated key with the
//! first answer instead of acting again. That is what makes a retry after a
//! timeout, a redelivery, or a crash between the provider call and our
//! commit safe: it never charges twice.
//!
//! Requests also name the payment by our own reference (`payment_id`, the
//! merchant reference), so a void works even when we never learnt the
//! processor's reference for the authorization (a "technical cancel"): it
//! releases whatever was authorized under that payment and refuses any
//! authorization of it that arrives later.
//!
//! The trait returns boxed futures so that it is object safe:
//! the service holds an `Arc<dyn PaymentProvider>`.

pub mod card_processor;

use futures::future::BoxFuture;
use uuid::Uuid;

pub use card_processor::CardProcessorClient;

/// How a provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The processor refused; permanent for this request.
    #[error("declined ({code}): {reason}")]
    Declined {
        /// Machine-readable code (`card_declined`, `insufficient_funds`, ...).
        code: String,
        /// Why, for people.
        reason: String,
    },
    /// The processor could not answer now; a later attempt may work.
    #[error("provider unavailable: {0}")]
    Transient(String),
    /// No answer within the timeout; the outcome is unknown.
    #[error("provider call timed out")]
    Timeout,
}

impl ProviderError {
    /// A decline with a code and a reason.
    pub fn declined(code: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Declined {
            code: code.into(),
            reason: reason.into(),
        }
    }

    /// Whether trying again may give another answer: transient failures and
    /// timeouts, never declines.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient(_) | Self::Timeout)
    }
}

/// Hold an amount on a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeRequest {
    /// Same key, same answer (see the module docs).
    pub idempotency_key: String,
    /// Our reference for the payment (the merchant reference).
    pub payment_id: Uuid,
    /// The order paid for.
    pub order_id: Uuid,
    /// Amount in minor units.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// The card token.
    pub card_token: String,
}

/// Take held money.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureRequest {
    /// Same key, same answer.
    pub idempotency_key: String,
    /// Our reference for the payment.
    pub payment_id: Uuid,
    /// The order.
    pub order_id: Uuid,
    /// The processor's reference of the authorization.
    pub authorization_ref: String,
    /// Amount to take, in minor units (at most what is held).
    pub amount_minor: i64,
}

/// Release a hold, or close a payment whose authorization outcome is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoidRequest {
    /// Same key, same answer.
    pub idempotency_key: String,
    /// Our reference for the payment: the processor voids whatever it
    /// authorized under it, and refuses any later authorization of it.
    pub payment_id: Uuid,
    /// The order.
    pub order_id: Uuid,
}

/// Give captured money back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    /// Same key, same answer.
    pub idempotency_key: String,
    /// Our reference for the payment.
    pub payment_id: Uuid,
    /// The order.
    pub order_id: Uuid,
    /// Amount to give back, in minor units (at most what was captured).
    pub amount_minor: i64,
}

/// An approved authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The processor's reference for the hold.
    pub provider_ref: String,
}

/// A capture or refund the processor made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The processor's reference for the movement.
    pub provider_ref: String,
}

/// What a void did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoidReceipt {
    /// The processor's reference for the void.
    pub provider_ref: String,
    /// Minor units released; zero when nothing was held (the payment is
    /// closed all the same).
    pub released_minor: i64,
}

/// A card processor. Implementations must honour idempotency keys.
pub trait PaymentProvider: Send + Sync + 'static {
    /// A short name for metrics and logs (`card-processor`, `stripe`, ...).
    fn name(&self) -> &'static str;

    /// Hold `amount_minor` on the card.
    fn authorize<'a>(
        &'a self,
        req: &'a AuthorizeRequest,
    ) -> BoxFuture<'a, Result<Authorization, ProviderError>>;

    /// Take held money.
    fn capture<'a>(
        &'a self,
        req: &'a CaptureRequest,
    ) -> BoxFuture<'a, Result<Receipt, ProviderError>>;

    /// Release the hold of a payment (or close it before any hold).
    fn void<'a>(
        &'a self,
        req: &'a VoidRequest,
    ) -> BoxFuture<'a, Result<VoidReceipt, ProviderError>>;

    /// Give captured money back.
    fn refund<'a>(
        &'a self,
        req: &'a RefundRequest,
    ) -> BoxFuture<'a, Result<Receipt, ProviderError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_failures_and_timeouts_are_retryable() {
        assert!(ProviderError::Transient("x".into()).is_retryable());
        assert!(ProviderError::Timeout.is_retryable());
        assert!(!ProviderError::declined("card_declined", "no").is_retryable());
    }
}
