//! Every subject string in jetshop, defined once.
//!
//! Subjects follow `<context>.<kind>.<name>` with kind `events` (facts, past
//! tense), `commands` (imperative) or `rpc` (request-reply). No other crate
//! writes a subject literal: a typo here fails the tests below, a typo
//! anywhere else would silently misroute.

/// The catalog context.
pub mod catalog {
    /// Everything the catalog publishes as a fact.
    pub const EVENTS_ALL: &str = "catalog.events.>";
    /// A product was created.
    pub const PRODUCT_CREATED: &str = "catalog.events.product-created";
    /// A product's name, description or price changed.
    pub const PRODUCT_CHANGED: &str = "catalog.events.product-changed";
    /// A product's stock was adjusted.
    pub const STOCK_ADJUSTED: &str = "catalog.events.stock-adjusted";
    /// Stock for every line of an order was reserved.
    pub const STOCK_RESERVED: &str = "catalog.events.stock-reserved";
    /// An order's reservation was refused; nothing was reserved.
    pub const STOCK_REJECTED: &str = "catalog.events.stock-rejected";
    /// An order's reserved stock went back on hand.
    pub const STOCK_RELEASED: &str = "catalog.events.stock-released";
    /// An order's reservation became final.
    pub const RESERVATION_COMMITTED: &str = "catalog.events.reservation-committed";

    /// Every command the catalog accepts.
    pub const COMMANDS_ALL: &str = "catalog.commands.>";
    /// Create a product.
    pub const CREATE_PRODUCT: &str = "catalog.commands.create-product";
    /// Change a product's name, description or price.
    pub const UPDATE_PRODUCT: &str = "catalog.commands.update-product";
    /// Add to or take from a product's stock.
    pub const ADJUST_STOCK: &str = "catalog.commands.adjust-stock";
    /// Reserve stock for all lines of an order, or none.
    pub const RESERVE_STOCK: &str = "catalog.commands.reserve-stock";
    /// Give an order's reserved stock back.
    pub const RELEASE_STOCK: &str = "catalog.commands.release-stock";
    /// Make an order's reservation final.
    pub const COMMIT_RESERVATION: &str = "catalog.commands.commit-reservation";

    /// The NATS micro group of the catalog's product RPC endpoints.
    pub const RPC_PRODUCT_GROUP: &str = "catalog.rpc.product";
    /// Endpoint name of [`RPC_PRODUCT_GET`] within its group.
    pub const RPC_GET_ENDPOINT: &str = "get";
    /// Endpoint name of [`RPC_PRODUCT_LIST`] within its group.
    pub const RPC_LIST_ENDPOINT: &str = "list";
    /// Fetch one product.
    pub const RPC_PRODUCT_GET: &str = "catalog.rpc.product.get";
    /// List products with a cursor, a limit and a text filter.
    pub const RPC_PRODUCT_LIST: &str = "catalog.rpc.product.list";
}

/// The users context: accounts, credentials, OAuth clients and grants.
pub mod users {
    /// Everything the users service publishes as a fact.
    pub const EVENTS_ALL: &str = "users.events.>";
    /// An account was registered.
    pub const REGISTERED: &str = "users.events.registered";
    /// A profile changed.
    pub const PROFILE_CHANGED: &str = "users.events.profile-changed";

    /// Micro group of account endpoints.
    pub const RPC_USER_GROUP: &str = "users.rpc.user";
    /// Register an account (synchronous: the caller needs the duplicate-email answer).
    pub const RPC_USER_REGISTER: &str = "users.rpc.user.register";
    /// Fetch an account.
    pub const RPC_USER_GET: &str = "users.rpc.user.get";
    /// Change a profile.
    pub const RPC_USER_UPDATE: &str = "users.rpc.user.update";

    /// Micro group of credential endpoints.
    pub const RPC_CREDENTIALS_GROUP: &str = "users.rpc.credentials";
    /// Check an email and password (constant time, same answer for unknown email).
    pub const RPC_CREDENTIALS_VERIFY: &str = "users.rpc.credentials.verify";

    /// Micro group of OAuth client endpoints.
    pub const RPC_CLIENT_GROUP: &str = "users.rpc.client";
    /// Fetch a registered OAuth client.
    pub const RPC_CLIENT_GET: &str = "users.rpc.client.get";
    /// Check a confidential client's secret.
    pub const RPC_CLIENT_AUTHENTICATE: &str = "users.rpc.client.authenticate";

    /// Micro group of OAuth grant endpoints (codes and refresh tokens, shared by every gateway replica).
    pub const RPC_GRANT_GROUP: &str = "users.rpc.grant";
    /// Store an authorization code (by hash).
    pub const RPC_GRANT_STORE_CODE: &str = "users.rpc.grant.store-code";
    /// Redeem an authorization code once.
    pub const RPC_GRANT_REDEEM_CODE: &str = "users.rpc.grant.redeem-code";
    /// Store a new refresh token (by hash), starting or continuing a family.
    pub const RPC_GRANT_ISSUE_REFRESH: &str = "users.rpc.grant.issue-refresh";
    /// Exchange a refresh token for its successor; reuse revokes the family.
    pub const RPC_GRANT_ROTATE_REFRESH: &str = "users.rpc.grant.rotate-refresh";
    /// Revoke a refresh token and its family.
    pub const RPC_GRANT_REVOKE_REFRESH: &str = "users.rpc.grant.revoke-refresh";
}

/// The orders context: the order aggregate and the order saga.
pub mod orders {
    /// Everything the orders service publishes as a fact (the aggregate's events).
    pub const EVENTS_ALL: &str = "orders.events.>";
    /// An order was placed with its prices frozen.
    pub const PLACED: &str = "orders.events.placed";
    /// The order's stock is held.
    pub const STOCK_RESERVED: &str = "orders.events.stock-reserved";
    /// The order's payment is authorized.
    pub const PAYMENT_AUTHORIZED: &str = "orders.events.payment-authorized";
    /// The order's payment is captured.
    pub const PAYMENT_CAPTURED: &str = "orders.events.payment-captured";
    /// The order is confirmed: stock committed, money captured.
    pub const CONFIRMED: &str = "orders.events.confirmed";
    /// Someone asked to cancel the order.
    pub const CANCELLATION_REQUESTED: &str = "orders.events.cancellation-requested";
    /// The order is cancelled; nothing is held or charged for it.
    pub const CANCELLED: &str = "orders.events.cancelled";

    /// Every command the orders service accepts.
    pub const COMMANDS_ALL: &str = "orders.commands.>";
    /// Place an order.
    pub const PLACE_ORDER: &str = "orders.commands.place-order";
    /// Cancel an order that is not yet being captured.
    pub const CANCEL_ORDER: &str = "orders.commands.cancel-order";

    /// Micro group of order read endpoints.
    pub const RPC_ORDER_GROUP: &str = "orders.rpc.order";
    /// Fetch one order (status, lines, totals, timeline).
    pub const RPC_ORDER_GET: &str = "orders.rpc.order.get";
    /// List orders, newest first, optionally one customer's.
    pub const RPC_ORDER_LIST: &str = "orders.rpc.order.list";
    /// The aggregate's events of one order.
    pub const RPC_ORDER_HISTORY: &str = "orders.rpc.order.history";

    /// Micro group of saga operations.
    pub const RPC_SAGA_GROUP: &str = "orders.rpc.saga";
    /// List sagas, optionally in one state (`stuck`).
    pub const RPC_SAGA_LIST: &str = "orders.rpc.saga.list";
    /// Give a stuck saga's step a fresh set of attempts.
    pub const RPC_SAGA_RETRY: &str = "orders.rpc.saga.retry";
}

/// The payments context: payment intents, the provider and the ledger.
pub mod payments {
    /// Everything the payments service publishes as a fact.
    pub const EVENTS_ALL: &str = "payments.events.>";
    /// Money for an order is held on the card.
    pub const AUTHORIZED: &str = "payments.events.authorized";
    /// The card was declined (a business outcome, permanent).
    pub const DECLINED: &str = "payments.events.declined";
    /// Held money was taken.
    pub const CAPTURED: &str = "payments.events.captured";
    /// A hold was released (or an order's payment was closed before it began).
    pub const VOIDED: &str = "payments.events.voided";
    /// Captured money was given back.
    pub const REFUNDED: &str = "payments.events.refunded";

    /// Every command the payments service accepts.
    pub const COMMANDS_ALL: &str = "payments.commands.>";
    /// Hold an order's total on a card.
    pub const AUTHORIZE: &str = "payments.commands.authorize";
    /// Take the held money.
    pub const CAPTURE: &str = "payments.commands.capture";
    /// Release the hold.
    pub const VOID: &str = "payments.commands.void";
    /// Give captured money back.
    pub const REFUND: &str = "payments.commands.refund";
}

/// The notifications context: email, webhooks and their delivery log.
pub mod notifications {
    /// Everything the notifications service publishes as a fact.
    pub const EVENTS_ALL: &str = "notifications.events.>";
    /// A notification was delivered.
    pub const SENT: &str = "notifications.events.sent";
    /// A notification could not be delivered.
    pub const FAILED: &str = "notifications.events.failed";

    /// Every command the notifications service accepts.
    pub const COMMANDS_ALL: &str = "notifications.commands.>";
    /// Deliver one signed webhook call (retried with backoff, then dead-lettered).
    pub const DELIVER_WEBHOOK: &str = "notifications.commands.deliver-webhook";

    /// Micro group of webhook endpoints.
    pub const RPC_WEBHOOK_GROUP: &str = "notifications.rpc.webhook";
    /// Register or replace a user's webhook.
    pub const RPC_WEBHOOK_SET: &str = "notifications.rpc.webhook.set";
    /// Fetch a user's webhook.
    pub const RPC_WEBHOOK_GET: &str = "notifications.rpc.webhook.get";
    /// Remove a user's webhook.
    pub const RPC_WEBHOOK_DELETE: &str = "notifications.rpc.webhook.delete";
}

/// The feedback context: polls, invitations and responses.
pub mod feedback {
    /// Everything the feedback service publishes as a fact.
    pub const EVENTS_ALL: &str = "feedback.events.>";
    /// A customer answered a poll.
    pub const RESPONSE_RECORDED: &str = "feedback.events.response-recorded";

    /// Micro group of poll administration endpoints.
    pub const RPC_POLL_GROUP: &str = "feedback.rpc.poll";
    /// Create a draft poll.
    pub const RPC_POLL_CREATE: &str = "feedback.rpc.poll.create";
    /// Replace a poll's questions and rule (a new version once published).
    pub const RPC_POLL_EDIT: &str = "feedback.rpc.poll.edit";
    /// Publish a draft poll.
    pub const RPC_POLL_PUBLISH: &str = "feedback.rpc.poll.publish";
    /// Close a poll.
    pub const RPC_POLL_CLOSE: &str = "feedback.rpc.poll.close";
    /// Fetch a poll.
    pub const RPC_POLL_GET: &str = "feedback.rpc.poll.get";
    /// List polls.
    pub const RPC_POLL_LIST: &str = "feedback.rpc.poll.list";

    /// Micro group of invitation endpoints.
    pub const RPC_INVITATION_GROUP: &str = "feedback.rpc.invitation";
    /// The poll an invitation link's token asks about.
    pub const RPC_INVITATION_GET: &str = "feedback.rpc.invitation.get";

    /// Micro group of answering endpoints.
    pub const RPC_RESPONSE_GROUP: &str = "feedback.rpc.response";
    /// Answer with an invitation link's token.
    pub const RPC_RESPONSE_SUBMIT_TOKEN: &str = "feedback.rpc.response.submit-token";
    /// Answer as a signed-in customer.
    pub const RPC_RESPONSE_SUBMIT_CUSTOMER: &str = "feedback.rpc.response.submit-customer";

    /// Micro group of results endpoints.
    pub const RPC_RESULTS_GROUP: &str = "feedback.rpc.results";
    /// A poll's results with its telemetry breakdowns.
    pub const RPC_RESULTS_GET: &str = "feedback.rpc.results.get";
    /// A poll's responses as CSV.
    pub const RPC_RESULTS_EXPORT: &str = "feedback.rpc.results.export";
}

/// The dead-letter stream's subjects.
pub mod dlq {
    /// Everything dead-lettered, by any consumer.
    pub const ALL: &str = "dlq.>";

    /// The subject a consumer dead-letters to, so operators can filter per consumer.
    pub fn for_consumer(consumer: &str) -> String {
        format!("dlq.{consumer}")
    }
}

/// Every concrete (non-wildcard) subject, for the checks below and for tools.
pub fn all_concrete() -> Vec<&'static str> {
    vec![
        catalog::PRODUCT_CREATED,
        catalog::PRODUCT_CHANGED,
        catalog::STOCK_ADJUSTED,
        catalog::STOCK_RESERVED,
        catalog::STOCK_REJECTED,
        catalog::STOCK_RELEASED,
        catalog::RESERVATION_COMMITTED,
        catalog::CREATE_PRODUCT,
        catalog::UPDATE_PRODUCT,
        catalog::ADJUST_STOCK,
        catalog::RESERVE_STOCK,
        catalog::RELEASE_STOCK,
        catalog::COMMIT_RESERVATION,
        catalog::RPC_PRODUCT_GET,
        catalog::RPC_PRODUCT_LIST,
        users::REGISTERED,
        users::PROFILE_CHANGED,
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
        orders::PLACED,
        orders::STOCK_RESERVED,
        orders::PAYMENT_AUTHORIZED,
        orders::PAYMENT_CAPTURED,
        orders::CONFIRMED,
        orders::CANCELLATION_REQUESTED,
        orders::CANCELLED,
        orders::PLACE_ORDER,
        orders::CANCEL_ORDER,
        orders::RPC_ORDER_GET,
        orders::RPC_ORDER_LIST,
        orders::RPC_ORDER_HISTORY,
        orders::RPC_SAGA_LIST,
        orders::RPC_SAGA_RETRY,
        payments::AUTHORIZED,
        payments::DECLINED,
        payments::CAPTURED,
        payments::VOIDED,
        payments::REFUNDED,
        payments::AUTHORIZE,
        payments::CAPTURE,
        payments::VOID,
        payments::REFUND,
        notifications::SENT,
        notifications::FAILED,
        notifications::DELIVER_WEBHOOK,
        notifications::RPC_WEBHOOK_SET,
        notifications::RPC_WEBHOOK_GET,
        notifications::RPC_WEBHOOK_DELETE,
        feedback::RESPONSE_RECORDED,
        feedback::RPC_POLL_CREATE,
        feedback::RPC_POLL_EDIT,
        feedback::RPC_POLL_PUBLISH,
        feedback::RPC_POLL_CLOSE,
        feedback::RPC_POLL_GET,
        feedback::RPC_POLL_LIST,
        feedback::RPC_INVITATION_GET,
        feedback::RPC_RESPONSE_SUBMIT_TOKEN,
        feedback::RPC_RESPONSE_SUBMIT_CUSTOMER,
        feedback::RPC_RESULTS_GET,
        feedback::RPC_RESULTS_EXPORT,
    ]
}

/// Every RPC subject with the micro group it must sit in.
pub fn rpc_groups() -> Vec<(&'static str, &'static str)> {
    use users::*;
    vec![
        (catalog::RPC_PRODUCT_GET, catalog::RPC_PRODUCT_GROUP),
        (catalog::RPC_PRODUCT_LIST, catalog::RPC_PRODUCT_GROUP),
        (RPC_USER_REGISTER, RPC_USER_GROUP),
        (RPC_USER_GET, RPC_USER_GROUP),
        (RPC_USER_UPDATE, RPC_USER_GROUP),
        (RPC_CREDENTIALS_VERIFY, RPC_CREDENTIALS_GROUP),
        (RPC_CLIENT_GET, RPC_CLIENT_GROUP),
        (RPC_CLIENT_AUTHENTICATE, RPC_CLIENT_GROUP),
        (RPC_GRANT_STORE_CODE, RPC_GRANT_GROUP),
        (RPC_GRANT_REDEEM_CODE, RPC_GRANT_GROUP),
        (RPC_GRANT_ISSUE_REFRESH, RPC_GRANT_GROUP),
        (RPC_GRANT_ROTATE_REFRESH, RPC_GRANT_GROUP),
        (RPC_GRANT_REVOKE_REFRESH, RPC_GRANT_GROUP),
        (orders::RPC_ORDER_GET, orders::RPC_ORDER_GROUP),
        (orders::RPC_ORDER_LIST, orders::RPC_ORDER_GROUP),
        (orders::RPC_ORDER_HISTORY, orders::RPC_ORDER_GROUP),
        (orders::RPC_SAGA_LIST, orders::RPC_SAGA_GROUP),
        (orders::RPC_SAGA_RETRY, orders::RPC_SAGA_GROUP),
        (
            notifications::RPC_WEBHOOK_SET,
            notifications::RPC_WEBHOOK_GROUP,
        ),
        (
            notifications::RPC_WEBHOOK_GET,
            notifications::RPC_WEBHOOK_GROUP,
        ),
        (
            notifications::RPC_WEBHOOK_DELETE,
            notifications::RPC_WEBHOOK_GROUP,
        ),
        (feedback::RPC_POLL_CREATE, feedback::RPC_POLL_GROUP),
        (feedback::RPC_POLL_EDIT, feedback::RPC_POLL_GROUP),
        (feedback::RPC_POLL_PUBLISH, feedback::RPC_POLL_GROUP),
        (feedback::RPC_POLL_CLOSE, feedback::RPC_POLL_GROUP),
        (feedback::RPC_POLL_GET, feedback::RPC_POLL_GROUP),
        (feedback::RPC_POLL_LIST, feedback::RPC_POLL_GROUP),
        (feedback::RPC_INVITATION_GET, feedback::RPC_INVITATION_GROUP),
        (
            feedback::RPC_RESPONSE_SUBMIT_TOKEN,
            feedback::RPC_RESPONSE_GROUP,
        ),
        (
            feedback::RPC_RESPONSE_SUBMIT_CUSTOMER,
            feedback::RPC_RESPONSE_GROUP,
        ),
        (feedback::RPC_RESULTS_GET, feedback::RPC_RESULTS_GROUP),
        (feedback::RPC_RESULTS_EXPORT, feedback::RPC_RESULTS_GROUP),
    ]
}

/// Subjects of messages about one thing (an order) carry its id as a
/// fourth token, `<context>.<kind>.<name>.<key>`, so the server can spread
/// them over partitions by key (see [`crate::streams::StreamSpec::partitions`])
/// and consumers that need per-key order can take one partition each.
pub mod keyed {
    /// The subject `base` (a three-token subject above) for `key`.
    pub fn subject(base: &str, key: impl std::fmt::Display) -> String {
        format!("{base}.{key}")
    }

    /// The three-token subject a keyed subject was made from: `base` for
    /// `base`, `base.<key>` and `base.<key>.<partition>` alike, so handlers
    /// match on it whatever the stream stored.
    pub fn base(subject: &str) -> &str {
        match subject.match_indices('.').nth(2) {
            Some((at, _)) => &subject[..at],
            None => subject,
        }
    }

    /// The key of a keyed subject (`None` for a three-token one).
    pub fn key(subject: &str) -> Option<&str> {
        subject.split('.').nth(3)
    }

    /// The filter that takes every key's `base` messages, partitioned or not.
    pub fn every(base: &str) -> String {
        format!("{base}.>")
    }

    /// The filter that takes `base`'s messages of one partition, as a
    /// partitioned stream stores them (`base.<key>.<partition>`).
    pub fn in_partition(base: &str, partition: u32) -> String {
        format!("{base}.*.{partition}")
    }
}

/// The endpoint name of an RPC subject within its micro group.
pub fn endpoint_of<'a>(subject: &'a str, group: &str) -> &'a str {
    subject
        .strip_prefix(group)
        .and_then(|rest| rest.strip_prefix('.'))
        .unwrap_or(subject)
}

/// Whether `subject` is a valid NATS subject made of jetshop-style tokens
/// (lower-case letters, digits and dashes), optionally ending in `>`.
pub fn is_valid(subject: &str) -> bool {
    let tokens: Vec<&str> = subject.split('.').collect();
    tokens.len() >= 2
        && tokens.iter().enumerate().all(|(i, t)| {
            (*t == ">" && i == tokens.len() - 1)
                || (!t.is_empty()
                    && t.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
        })
}

/// Whether a subject filter (with `*` and `>` wildcards) matches a subject.
pub fn matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn keyed_subjects_keep_their_base_and_key_through_partitioning() {
        let order = "0195c3f0-0000-7000-8000-000000000001";
        let sent = keyed::subject(payments::AUTHORIZED, order);
        assert_eq!(sent, format!("payments.events.authorized.{order}"));
        let stored = format!("{sent}.5");
        for subject in [payments::AUTHORIZED, sent.as_str(), stored.as_str()] {
            assert_eq!(keyed::base(subject), payments::AUTHORIZED);
        }
        assert_eq!(keyed::key(&stored), Some(order));
        assert_eq!(keyed::key(payments::AUTHORIZED), None);
        let filter = keyed::in_partition(payments::AUTHORIZED, 5);
        assert!(matches(&filter, &stored));
        assert!(!matches(&filter, &format!("{sent}.4")));
        assert!(!matches(&filter, &sent));
    }

    #[test]
    fn subjects_are_distinct_and_valid() {
        let all = all_concrete();
        let unique: HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len(), "a subject is defined twice");
        for s in all {
            assert!(is_valid(s), "{s} is not a valid subject");
        }
        for s in [
            catalog::EVENTS_ALL,
            catalog::COMMANDS_ALL,
            users::EVENTS_ALL,
            orders::EVENTS_ALL,
            orders::COMMANDS_ALL,
            payments::EVENTS_ALL,
            payments::COMMANDS_ALL,
            notifications::EVENTS_ALL,
            notifications::COMMANDS_ALL,
            feedback::EVENTS_ALL,
            dlq::ALL,
        ] {
            assert!(is_valid(s), "{s} is not a valid filter");
        }
        assert!(is_valid(&dlq::for_consumer("catalog-commands")));
    }

    #[test]
    fn subjects_follow_context_kind_name() {
        for s in all_concrete() {
            let kind = s.split('.').nth(1).unwrap();
            assert!(["events", "commands", "rpc"].contains(&kind), "{s}");
        }
    }

    #[test]
    fn rpc_subjects_sit_in_their_micro_group() {
        use catalog::*;
        assert_eq!(
            RPC_PRODUCT_GET,
            format!("{RPC_PRODUCT_GROUP}.{RPC_GET_ENDPOINT}")
        );
        assert_eq!(
            RPC_PRODUCT_LIST,
            format!("{RPC_PRODUCT_GROUP}.{RPC_LIST_ENDPOINT}")
        );
    }

    #[test]
    fn every_rpc_subject_is_one_endpoint_below_its_group() {
        let rpc: Vec<_> = all_concrete()
            .into_iter()
            .filter(|s| s.split('.').nth(1) == Some("rpc"))
            .collect();
        assert_eq!(rpc.len(), rpc_groups().len(), "an RPC subject has no group");
        for (subject, group) in rpc_groups() {
            let endpoint = endpoint_of(subject, group);
            assert_ne!(endpoint, subject, "{subject} is not in {group}");
            assert!(
                !endpoint.contains('.'),
                "{subject} is more than one token below {group}"
            );
        }
    }

    #[test]
    fn validity_rejects_bad_subjects() {
        for bad in [
            "",
            "catalog",
            "catalog..x",
            "Catalog.events.x",
            "a.>.b",
            "a b.c",
        ] {
            assert!(!is_valid(bad), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn wildcard_matching() {
        assert!(matches(
            "catalog.events.>",
            "catalog.events.product-created"
        ));
        assert!(matches("catalog.*.x", "catalog.rpc.x"));
        assert!(!matches("catalog.events.>", "catalog.events"));
        assert!(!matches("catalog.events.>", "catalog.rpc.product.get"));
    }
}
