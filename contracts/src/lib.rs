//! The wire between jetshop processes, and nothing else.
//!
//! Every crate that sends or receives a message agrees on it through this
//! crate: the message types ([`catalog`], [`users`], [`orders`], [`payments`],
//! [`notifications`], [`feedback`]), the subjects they travel on
//! ([`subjects`]), the streams that keep them ([`streams`]), the headers
//! around them ([`headers`]), how they are encoded ([`codec`]) and the one
//! error shape an RPC answers with ([`error`]). [`schema`] pins each
//! message's shape so that a breaking change fails a test instead of a
//! reader in production. [`card_processor`] is the one HTTP API here: the
//! card processor's, which payments calls and which is outside the shop.
//!
//! [`access`] says which part may publish and subscribe to what, for the
//! NATS server's permissions.
//!
//! This crate depends on no other jetshop crate and on no transport.

pub mod access;
pub mod card_processor;
pub mod catalog;
pub mod codec;
pub mod error;
pub mod feedback;
pub mod headers;
pub mod message;
pub mod notifications;
pub mod orders;
pub mod payments;
pub mod schema;
pub mod streams;
pub mod subjects;
pub mod users;

pub use codec::{CodecError, Encoding};
pub use error::{ErrorCode, RpcError};
pub use message::{Command, Event, Message, Rpc, Touch};
