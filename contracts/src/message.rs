//! What makes a type a message: a stable type name, a schema version and,
//! for events and commands, the subject it travels on.

use std::borrow::Cow;

use serde::{Serialize, de::DeserializeOwned};

/// Any payload that crosses NATS. `TYPE` goes into the `Jetshop-Type`
/// header and `VERSION` into `Jetshop-Schema`, so a reader can tell what it
/// holds before decoding it.
pub trait Message:
    Serialize + DeserializeOwned + schemars::JsonSchema + Send + Sync + 'static
{
    /// Stable name, e.g. `catalog.product-created`. Never reused for another shape.
    const TYPE: &'static str;
    /// Bumped only for a breaking change, together with an upcaster.
    const VERSION: u32;
}

/// A fact that happened, published to its context's events stream.
pub trait Event: Message {
    /// The subject this kind of event is published on.
    const SUBJECT: &'static str;

    /// The subject this one event is published on: [`Self::SUBJECT`], or,
    /// for an event about one order, that with the order's id appended
    /// ([`crate::subjects::keyed`]), so its stream partitions it by order.
    fn subject(&self) -> Cow<'static, str> {
        Cow::Borrowed(Self::SUBJECT)
    }
}

/// A request to act, published to the owning context's commands stream.
pub trait Command: Message {
    /// The subject this kind of command is published on.
    const SUBJECT: &'static str;

    /// The subject this one command is published on; see [`Event::subject`].
    fn subject(&self) -> Cow<'static, str> {
        Cow::Borrowed(Self::SUBJECT)
    }
}

/// A synchronous request-reply pair served over the NATS micro protocol.
pub trait Rpc: Message {
    /// What a successful call answers with.
    type Reply: Message;
    /// The subject the request is sent to (never captured by a stream).
    const SUBJECT: &'static str;
}

/// Implement [`Message`] for a wire type with version 1, and optionally the
/// trait that gives it a subject: `wire!(T, "ctx.name", event SUBJ)`,
/// `command SUBJ` or `rpc SUBJ => Reply`; `event SUBJ, per order` (or
/// `command`) for a message about one order, keyed by its `order_id`.
macro_rules! wire {
    ($ty:ty, $name:literal) => {
        impl $crate::Message for $ty {
            const TYPE: &'static str = $name;
            const VERSION: u32 = 1;
        }
    };
    ($ty:ty, $name:literal, event $subject:expr) => {
        $crate::message::wire!($ty, $name);
        impl $crate::Event for $ty {
            const SUBJECT: &'static str = $subject;
        }
    };
    ($ty:ty, $name:literal, event $subject:expr, per order) => {
        $crate::message::wire!($ty, $name);
        impl $crate::Event for $ty {
            const SUBJECT: &'static str = $subject;
            fn subject(&self) -> std::borrow::Cow<'static, str> {
                $crate::subjects::keyed::subject($subject, self.order_id).into()
            }
        }
    };
    ($ty:ty, $name:literal, command $subject:expr, per order) => {
        $crate::message::wire!($ty, $name);
        impl $crate::Command for $ty {
            const SUBJECT: &'static str = $subject;
            fn subject(&self) -> std::borrow::Cow<'static, str> {
                $crate::subjects::keyed::subject($subject, self.order_id).into()
            }
        }
    };
    ($ty:ty, $name:literal, command $subject:expr) => {
        $crate::message::wire!($ty, $name);
        impl $crate::Command for $ty {
            const SUBJECT: &'static str = $subject;
        }
    };
    ($ty:ty, $name:literal, rpc $subject:expr => $reply:ty) => {
        $crate::message::wire!($ty, $name);
        impl $crate::Rpc for $ty {
            type Reply = $reply;
            const SUBJECT: &'static str = $subject;
        }
    };
}
pub(crate) use wire;

/// What an event says about the records its context owns, for readers that
/// cache them (see the platform's read cache).
#[derive(Debug, Clone, PartialEq)]
pub enum Touch<K, V> {
    /// The record as it is now (created or changed).
    Current(K, V),
    /// These records changed without the event carrying them.
    Changed(Vec<K>),
}
