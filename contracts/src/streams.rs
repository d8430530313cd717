//! The JetStream streams jetshop provisions, described without any
//! dependency on a NATS client so that every process derives them from one
//! place. `platform` turns a [`StreamSpec`] into a server configuration.

use std::time::Duration;

use crate::subjects;

/// How a stream discards messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Keep by age/size limits; readers browse and replay freely (events, DLQ).
    Limits,
    /// A message is removed once a consumer acknowledges it (commands).
    WorkQueue,
}

/// Everything needed to create or update one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// Stream name, e.g. `CATALOG_EVENTS`.
    pub name: &'static str,
    /// Subject filters the stream captures.
    pub subjects: Vec<String>,
    /// Retention policy.
    pub retention: Retention,
    /// How long a message is kept at most (zero = forever).
    pub max_age: Duration,
    /// Window in which a repeated `Nats-Msg-Id` is dropped as a duplicate.
    pub duplicate_window: Duration,
    /// Human description shown by `nats stream info`.
    pub description: &'static str,
    /// When set, the server stores each keyed subject
    /// (`<context>.<kind>.<name>.<key>`, see [`subjects::keyed`]) with a
    /// fifth token, the key's partition among [`KEY_PARTITIONS`]: a subject
    /// transform with `{{partition(n, key)}}`, so every publisher agrees
    /// on a key's partition without code, and a consumer per partition
    /// sees one key's messages in the order they were stored.
    pub partitioned: bool,
}

/// Partitions of every partitioned stream, and so the partition consumers
/// a per-key consumer runs: one number, so they always agree. Fixed:
/// changing it moves keys between partitions, and messages already stored
/// keep their old partition token.
pub const KEY_PARTITIONS: u32 = 8;

impl StreamSpec {
    /// The subject transform that adds the partition token, as
    /// (source, destination), for a stream capturing `<context>.<kind>.>`.
    pub fn partition_transform(&self) -> Option<(String, String)> {
        if !self.partitioned {
            return None;
        }
        let n = KEY_PARTITIONS;
        let prefix = self.subjects.first()?.strip_suffix(".>")?;
        Some((
            format!("{prefix}.*.*"),
            format!("{prefix}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.{{{{partition({n},2)}}}}"),
        ))
    }
}

/// Dedupe window for every stream: longer than any outbox relay retry burst.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Name of the catalog's events stream.
pub const CATALOG_EVENTS: &str = "CATALOG_EVENTS";
/// Name of the catalog's commands stream.
pub const CATALOG_COMMANDS: &str = "CATALOG_COMMANDS";
/// Name of the users' events stream.
pub const USERS_EVENTS: &str = "USERS_EVENTS";
/// Name of the orders' events stream (the aggregate's events).
pub const ORDERS_EVENTS: &str = "ORDERS_EVENTS";
/// Name of the orders' commands stream.
pub const ORDERS_COMMANDS: &str = "ORDERS_COMMANDS";
/// Name of the payments' events stream.
pub const PAYMENTS_EVENTS: &str = "PAYMENTS_EVENTS";
/// Name of the payments' commands stream.
pub const PAYMENTS_COMMANDS: &str = "PAYMENTS_COMMANDS";
/// Name of the notifications' events stream.
pub const NOTIFICATIONS_EVENTS: &str = "NOTIFICATIONS_EVENTS";
/// Name of the notifications' commands stream (webhook deliveries).
pub const NOTIFICATIONS_COMMANDS: &str = "NOTIFICATIONS_COMMANDS";
/// Name of the feedback's events stream (responses recorded).
pub const FEEDBACK_EVENTS: &str = "FEEDBACK_EVENTS";
/// Name of the dead-letter stream.
pub const DLQ: &str = "DLQ";

/// The catalog's events: kept for replay and for new projections.
pub fn catalog_events() -> StreamSpec {
    StreamSpec {
        name: CATALOG_EVENTS,
        subjects: vec![subjects::catalog::EVENTS_ALL.into()],
        retention: Retention::Limits,
        max_age: Duration::from_secs(90 * 24 * 3600),
        duplicate_window: DUPLICATE_WINDOW,
        partitioned: true,
        description: "Facts published by the catalog service",
    }
}

/// The catalog's commands: each is worked off once.
pub fn catalog_commands() -> StreamSpec {
    StreamSpec {
        name: CATALOG_COMMANDS,
        subjects: vec![subjects::catalog::COMMANDS_ALL.into()],
        retention: Retention::WorkQueue,
        max_age: Duration::from_secs(7 * 24 * 3600),
        duplicate_window: DUPLICATE_WINDOW,
        partitioned: true,
        description: "Commands for the catalog service",
    }
}

/// The users' events (no commands stream: registration answers synchronously).
pub fn users_events() -> StreamSpec {
    StreamSpec {
        name: USERS_EVENTS,
        subjects: vec![subjects::users::EVENTS_ALL.into()],
        retention: Retention::Limits,
        max_age: Duration::from_secs(90 * 24 * 3600),
        duplicate_window: DUPLICATE_WINDOW,
        partitioned: false,
        description: "Facts published by the users service",
    }
}

/// A context's events: kept 90 days for replay and for new projections.
fn events(name: &'static str, filter: &str, description: &'static str) -> StreamSpec {
    StreamSpec {
        name,
        subjects: vec![filter.into()],
        retention: Retention::Limits,
        max_age: Duration::from_secs(90 * 24 * 3600),
        duplicate_window: DUPLICATE_WINDOW,
        description,
        partitioned: false,
    }
}

/// A context's commands: each is worked off once, kept a week at most.
fn commands(name: &'static str, filter: &str, description: &'static str) -> StreamSpec {
    StreamSpec {
        name,
        subjects: vec![filter.into()],
        retention: Retention::WorkQueue,
        max_age: Duration::from_secs(7 * 24 * 3600),
        duplicate_window: DUPLICATE_WINDOW,
        description,
        partitioned: false,
    }
}

/// `spec`, partitioned by order.
fn keyed(spec: StreamSpec) -> StreamSpec {
    StreamSpec {
        partitioned: true,
        ..spec
    }
}

/// The order aggregate's events, as stored in the orders database.
pub fn orders_events() -> StreamSpec {
    keyed(events(
        ORDERS_EVENTS,
        subjects::orders::EVENTS_ALL,
        "Events of the order aggregate",
    ))
}

/// Commands for the orders service (place, cancel).
pub fn orders_commands() -> StreamSpec {
    keyed(commands(
        ORDERS_COMMANDS,
        subjects::orders::COMMANDS_ALL,
        "Commands for the orders service",
    ))
}

/// Facts published by the payments service.
pub fn payments_events() -> StreamSpec {
    keyed(events(
        PAYMENTS_EVENTS,
        subjects::payments::EVENTS_ALL,
        "Facts published by the payments service",
    ))
}

/// Commands for the payments service (authorize, capture, void, refund).
pub fn payments_commands() -> StreamSpec {
    keyed(commands(
        PAYMENTS_COMMANDS,
        subjects::payments::COMMANDS_ALL,
        "Commands for the payments service",
    ))
}

/// Facts published by the notifications service.
pub fn notifications_events() -> StreamSpec {
    events(
        NOTIFICATIONS_EVENTS,
        subjects::notifications::EVENTS_ALL,
        "Facts published by the notifications service",
    )
}

/// Webhook deliveries for the notifications service.
pub fn notifications_commands() -> StreamSpec {
    commands(
        NOTIFICATIONS_COMMANDS,
        subjects::notifications::COMMANDS_ALL,
        "Commands for the notifications service",
    )
}

/// Facts published by the feedback service.
pub fn feedback_events() -> StreamSpec {
    events(
        FEEDBACK_EVENTS,
        subjects::feedback::EVENTS_ALL,
        "Facts published by the feedback service",
    )
}

/// Dead letters: limits retention so operators can browse and replay them.
pub fn dlq() -> StreamSpec {
    StreamSpec {
        name: DLQ,
        subjects: vec![subjects::dlq::ALL.into()],
        retention: Retention::Limits,
        max_age: Duration::from_secs(30 * 24 * 3600),
        duplicate_window: DUPLICATE_WINDOW,
        partitioned: false,
        description: "Messages a consumer gave up on, with the reason",
    }
}

/// Every stream the system needs.
pub fn all() -> Vec<StreamSpec> {
    vec![
        catalog_events(),
        catalog_commands(),
        users_events(),
        orders_events(),
        orders_commands(),
        payments_events(),
        payments_commands(),
        notifications_events(),
        notifications_commands(),
        feedback_events(),
        dlq(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partitioned_stream_appends_the_partition_of_the_key_token() {
        assert_eq!(users_events().partition_transform(), None);
        assert_eq!(
            payments_events().partition_transform(),
            Some((
                "payments.events.*.*".to_owned(),
                format!(
                    "payments.events.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.{{{{partition({KEY_PARTITIONS},2)}}}}"
                )
            ))
        );
    }

    #[test]
    fn no_rpc_subject_is_captured_by_a_stream() {
        for spec in all() {
            for filter in &spec.subjects {
                for s in subjects::all_concrete() {
                    if s.split('.').nth(1) == Some("rpc") {
                        assert!(!subjects::matches(filter, s), "{} captures {s}", spec.name);
                    }
                }
            }
        }
    }

    #[test]
    fn streams_do_not_overlap_and_keep_dedupe_long_enough() {
        let specs = all();
        for a in &specs {
            assert!(a.duplicate_window >= Duration::from_secs(600));
            for b in &specs {
                if a.name != b.name {
                    for s in subjects::all_concrete() {
                        let in_a = a.subjects.iter().any(|f| subjects::matches(f, s));
                        let in_b = b.subjects.iter().any(|f| subjects::matches(f, s));
                        assert!(!(in_a && in_b), "{s} is in {} and {}", a.name, b.name);
                    }
                }
            }
        }
    }
}
