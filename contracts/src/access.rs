//! Who may say what on the wire: for each jetshop part that connects to
//! NATS, the events it publishes, the commands it sends, the RPC groups it
//! serves and calls, the streams it consumes and provisions. From this one
//! table [`Access::permissions`] derives the NATS publish and subscribe
//! allow-lists that `jetshop nats-config` writes into the server's
//! configuration, so the server's idea of who may publish
//! `payments.commands.capture` cannot drift from the subjects defined in
//! [`crate::subjects`].
//!
//! What the lists grant, and why each entry is there:
//!
//! - its own events (`<context>.events.>`): the outbox relay publishes them,
//!   keyed subjects included;
//! - the commands it sends, by base subject and keyed (`<base>.>`);
//! - the RPC subjects it calls (a request is a publish);
//! - the RPC groups it serves (subscribe `<group>.*`) and the micro
//!   protocol's `$SRV.>` discovery subjects, so `nats micro ls` sees it;
//! - its own inbox, `_INBOX_<part>.>`: replies to its RPC calls, PubAcks,
//!   pull consumer deliveries. A private prefix per part means one part
//!   cannot read the replies sent to another;
//! - the JetStream API on the streams it provisions (`STREAM.INFO`,
//!   `.CREATE`, `.UPDATE`) and consumes (consumer create, info, delete and
//!   next-message requests, acks), and `dlq.>` to dead-letter what it gives
//!   up on. Consumer names are not part of the contracts, so consumer
//!   rights are per stream, not per consumer.
//!
//! Replies to requests it serves go out under the server's
//! `allow_responses`, not under a publish grant.

use crate::{streams, subjects};

/// The subject prefix of a part's private inbox (see the module docs).
pub fn inbox_prefix(part: &str) -> String {
    format!("_INBOX_{part}")
}

/// What one part does on NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The part's name, also its NATS user's name (`catalog`, `gateway`, ...).
    pub part: &'static str,
    /// The filter of the events it publishes (its own context's), if any.
    pub publishes: Option<&'static str>,
    /// Base subjects of the commands it sends.
    pub sends: Vec<&'static str>,
    /// Micro groups whose endpoints it serves.
    pub serves: Vec<&'static str>,
    /// RPC subjects it calls.
    pub calls: Vec<&'static str>,
    /// Streams it reads with durable consumers.
    pub consumes: Vec<&'static str>,
    /// Event filters it follows with plain subscriptions (cache
    /// invalidation, live updates), outside any stream.
    pub follows: Vec<&'static str>,
    /// Streams it creates or updates at start (whoever starts first).
    pub provisions: Vec<&'static str>,
}

/// NATS allow-lists for one user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Permissions {
    /// Subjects it may publish to.
    pub publish: Vec<String>,
    /// Subjects it may subscribe to.
    pub subscribe: Vec<String>,
}

impl Access {
    /// The allow-lists this part needs and nothing more.
    pub fn permissions(&self) -> Permissions {
        let mut publish: Vec<String> = Vec::new();
        let mut subscribe: Vec<String> = Vec::new();
        publish.extend(self.publishes.map(str::to_owned));
        for command in &self.sends {
            publish.push((*command).to_owned());
            publish.push(subjects::keyed::every(command));
        }
        publish.extend(self.calls.iter().map(|s| (*s).to_owned()));
        subscribe.push(format!("{}.>", inbox_prefix(self.part)));
        for group in &self.serves {
            subscribe.push(format!("{group}.*"));
        }
        // Every service registers on the micro protocol, endpoints or
        // not, so that `nats micro ls` and `$SRV.PING` count its instances.
        if self.publishes.is_some() || !self.serves.is_empty() {
            subscribe.push("$SRV.>".to_owned());
        }
        subscribe.extend(self.follows.iter().map(|s| (*s).to_owned()));
        for stream in &self.provisions {
            for verb in ["INFO", "CREATE", "UPDATE"] {
                publish.push(format!("$JS.API.STREAM.{verb}.{stream}"));
            }
            // The service's JetStream sampler: its durables' lag.
            publish.push(format!("$JS.API.CONSUMER.LIST.{stream}"));
        }
        for stream in &self.consumes {
            // DELETE: a per-key consumer removes the single durable it
            // replaced (see the platform's consumer runner).
            for api in ["CREATE", "DURABLE.CREATE", "INFO", "MSG.NEXT", "DELETE"] {
                publish.push(format!("$JS.API.CONSUMER.{api}.{stream}.>"));
            }
            publish.push(format!("$JS.ACK.{stream}.>"));
        }
        if !self.consumes.is_empty() {
            publish.push(subjects::dlq::ALL.to_owned());
        }
        Permissions { publish, subscribe }
    }
}

/// Every part that connects to NATS, with what it does there.
pub fn parts() -> Vec<Access> {
    use subjects::{catalog, feedback, notifications, orders, payments, users};
    vec![
        Access {
            part: "catalog",
            publishes: Some(catalog::EVENTS_ALL),
            sends: vec![],
            serves: vec![catalog::RPC_PRODUCT_GROUP],
            calls: vec![],
            consumes: vec![streams::CATALOG_COMMANDS],
            follows: vec![catalog::EVENTS_ALL],
            provisions: vec![
                streams::CATALOG_EVENTS,
                streams::CATALOG_COMMANDS,
                streams::DLQ,
            ],
        },
        Access {
            part: "users",
            publishes: Some(users::EVENTS_ALL),
            sends: vec![],
            serves: vec![
                users::RPC_USER_GROUP,
                users::RPC_CREDENTIALS_GROUP,
                users::RPC_CLIENT_GROUP,
                users::RPC_GRANT_GROUP,
            ],
            calls: vec![],
            consumes: vec![],
            follows: vec![],
            provisions: vec![streams::USERS_EVENTS, streams::DLQ],
        },
        Access {
            part: "orders",
            publishes: Some(orders::EVENTS_ALL),
            sends: vec![
                catalog::RESERVE_STOCK,
                catalog::RELEASE_STOCK,
                catalog::COMMIT_RESERVATION,
                payments::AUTHORIZE,
                payments::CAPTURE,
                payments::VOID,
                payments::REFUND,
            ],
            serves: vec![orders::RPC_ORDER_GROUP, orders::RPC_SAGA_GROUP],
            calls: vec![catalog::RPC_PRODUCT_GET],
            consumes: vec![
                streams::ORDERS_COMMANDS,
                streams::CATALOG_EVENTS,
                streams::PAYMENTS_EVENTS,
            ],
            follows: vec![],
            provisions: vec![
                streams::ORDERS_EVENTS,
                streams::ORDERS_COMMANDS,
                streams::CATALOG_EVENTS,
                streams::CATALOG_COMMANDS,
                streams::PAYMENTS_EVENTS,
                streams::PAYMENTS_COMMANDS,
                streams::DLQ,
            ],
        },
        Access {
            part: "payments",
            publishes: Some(payments::EVENTS_ALL),
            sends: vec![],
            serves: vec![],
            calls: vec![],
            consumes: vec![streams::PAYMENTS_COMMANDS],
            follows: vec![],
            provisions: vec![
                streams::PAYMENTS_EVENTS,
                streams::PAYMENTS_COMMANDS,
                streams::DLQ,
            ],
        },
        Access {
            part: "notifications",
            publishes: Some(notifications::EVENTS_ALL),
            // Each webhook call is a command to itself, so it is retried
            // and dead-lettered like any other.
            sends: vec![notifications::DELIVER_WEBHOOK],
            serves: vec![notifications::RPC_WEBHOOK_GROUP],
            calls: vec![],
            consumes: vec![
                streams::ORDERS_EVENTS,
                streams::USERS_EVENTS,
                streams::NOTIFICATIONS_COMMANDS,
            ],
            follows: vec![],
            provisions: vec![
                streams::ORDERS_EVENTS,
                streams::USERS_EVENTS,
                streams::NOTIFICATIONS_EVENTS,
                streams::NOTIFICATIONS_COMMANDS,
                streams::DLQ,
            ],
        },
        Access {
            part: "feedback",
            publishes: Some(feedback::EVENTS_ALL),
            sends: vec![],
            serves: vec![
                feedback::RPC_POLL_GROUP,
                feedback::RPC_INVITATION_GROUP,
                feedback::RPC_RESPONSE_GROUP,
                feedback::RPC_RESULTS_GROUP,
            ],
            calls: vec![],
            // The order telemetry snapshot and the invitations' triggers.
            consumes: vec![streams::ORDERS_EVENTS],
            follows: vec![],
            provisions: vec![
                streams::ORDERS_EVENTS,
                streams::FEEDBACK_EVENTS,
                streams::DLQ,
            ],
        },
        Access {
            part: "gateway",
            publishes: None,
            sends: vec![
                catalog::CREATE_PRODUCT,
                catalog::UPDATE_PRODUCT,
                catalog::ADJUST_STOCK,
                orders::PLACE_ORDER,
                orders::CANCEL_ORDER,
            ],
            serves: vec![],
            calls: vec![
                catalog::RPC_PRODUCT_GET,
                catalog::RPC_PRODUCT_LIST,
                users::RPC_USER_REGISTER,
                users::RPC_USER_GET,
                users::RPC_USER_UPDATE,
                users::RPC_CREDENTIALS_VERIFY,
                users::RPC_CLIENT_GET,
                users::RPC_CLIENT_AUTHENTICATE,
                users::RPC_GRANT_STORE_CODE,
                users::RPC_GRANT_REDEEM_CODE,
                users::RPC_GRANT_ISSUE_REFRESH,
                users::RPC_GRANT_ROTATE_REFRESH,
                users::RPC_GRANT_REVOKE_REFRESH,
                orders::RPC_ORDER_GET,
                orders::RPC_ORDER_LIST,
                orders::RPC_ORDER_HISTORY,
                notifications::RPC_WEBHOOK_SET,
                notifications::RPC_WEBHOOK_GET,
                notifications::RPC_WEBHOOK_DELETE,
            ],
            consumes: vec![],
            // Live order updates for SSE; the product read cache.
            follows: vec![orders::EVENTS_ALL, catalog::EVENTS_ALL],
            provisions: vec![],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(subject: &str) -> &str {
        subject.split('.').nth(1).unwrap_or("")
    }

    fn context(subject: &str) -> &str {
        subject.split('.').next().unwrap_or("")
    }

    #[test]
    fn a_part_publishes_only_its_own_context_s_events() {
        for a in parts() {
            if let Some(filter) = a.publishes {
                assert_eq!(context(filter), a.part, "{filter}");
                assert_eq!(kind(filter), "events", "{filter}");
            }
        }
    }

    #[test]
    fn every_command_is_sent_by_someone_and_consumed_by_its_owner_alone() {
        let all = parts();
        for command in subjects::all_concrete()
            .into_iter()
            .filter(|s| kind(s) == "commands")
        {
            assert!(
                all.iter().any(|a| a.sends.contains(&command)),
                "nobody sends {command}"
            );
            let stream = streams::all()
                .into_iter()
                .find(|s| s.subjects.iter().any(|f| subjects::matches(f, command)))
                .unwrap_or_else(|| panic!("no stream captures {command}"));
            let consumers: Vec<_> = all
                .iter()
                .filter(|a| a.consumes.contains(&stream.name))
                .map(|a| a.part)
                .collect();
            assert_eq!(consumers, vec![context(command)], "{command}");
        }
    }

    #[test]
    fn every_rpc_group_is_served_by_its_context_and_every_call_lands_in_one() {
        let all = parts();
        for (subject, group) in subjects::rpc_groups() {
            let servers: Vec<_> = all
                .iter()
                .filter(|a| a.serves.contains(&group))
                .map(|a| a.part)
                .collect();
            assert_eq!(servers, vec![context(subject)], "{subject}");
        }
        for a in &all {
            for call in &a.calls {
                assert!(
                    subjects::rpc_groups().iter().any(|(s, _)| s == call),
                    "{} calls {call}, which is not an RPC subject",
                    a.part
                );
            }
        }
    }

    #[test]
    fn consumed_streams_are_provisioned_by_their_consumer() {
        let names: Vec<_> = streams::all().iter().map(|s| s.name).collect();
        for a in parts() {
            for s in a.consumes.iter().chain(&a.provisions) {
                assert!(names.contains(s), "{} names unknown stream {s}", a.part);
            }
            for s in &a.consumes {
                assert!(
                    a.provisions.contains(s),
                    "{} consumes {s} unprovisioned",
                    a.part
                );
            }
        }
    }

    #[test]
    fn permissions_grant_exactly_the_listed_commands_and_a_private_inbox() {
        let all = parts();
        let payments = all.iter().find(|a| a.part == "payments").unwrap();
        let p = payments.permissions();
        let covers = |subject: &str| p.publish.iter().any(|f| subjects::matches(f, subject));
        let keyed = subjects::keyed::subject(subjects::payments::CAPTURED, "o-1");
        assert!(covers(&keyed));
        assert!(!covers(subjects::payments::CAPTURE), "its own commands");
        assert!(!covers(subjects::orders::CONFIRMED));
        assert!(!covers(subjects::catalog::RESERVE_STOCK));
        assert!(p.subscribe.contains(&"_INBOX_payments.>".to_owned()));
        assert!(!p.subscribe.iter().any(|s| s.starts_with("_INBOX.")));

        let orders = all.iter().find(|a| a.part == "orders").unwrap();
        let p = orders.permissions();
        let keyed = subjects::keyed::subject(subjects::payments::CAPTURE, "o-1");
        assert!(p.publish.iter().any(|f| subjects::matches(f, &keyed)));
        assert!(
            p.publish
                .contains(&"$JS.API.STREAM.CREATE.ORDERS_EVENTS".to_owned())
        );
        assert!(p.subscribe.contains(&"orders.rpc.order.*".to_owned()));
    }
}
