//! The `deliveries` and `webhooks` tables.

/// The delivery log: one row per notification the service owes someone,
/// keyed by what it is about, so the same fact arriving twice (even under
/// different message ids) finds its row and sends nothing more.
pub mod delivery {
    use sea_orm::entity::prelude::*;

    /// One delivery.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "deliveries")]
    pub struct Model {
        /// Delivery id: UUIDv5 of channel and business key, so every replica
        /// derives the same id (and email Message-ID) for the same fact.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// `email` or `webhook`.
        pub channel: String,
        /// What the delivery is about: `order-confirmed:<order_id>`,
        /// `order-cancelled:<order_id>`, `welcome:<user_id>`. Unique per channel.
        pub business_key: String,
        /// `order-confirmed`, `order-cancelled` or `welcome`.
        pub kind: String,
        /// The user it is for.
        pub user_id: String,
        /// The order it is about, when it is.
        pub order_id: Option<String>,
        /// The email address or webhook URL it goes to.
        pub recipient: String,
        /// `pending`, `sent`, `failed` or `skipped`.
        pub state: String,
        /// Send attempts so far.
        pub attempts: i32,
        /// Why the last attempt failed (or why it was skipped).
        pub last_error: Option<String>,
        /// The handler currently sending it, if any.
        pub lease_token: Option<String>,
        /// Until when (Unix milliseconds) that handler may send; 0 when nobody holds it.
        pub lease_until_ms: i64,
        /// When the row was created.
        pub created_at: DateTimeUtc,
        /// When it last changed.
        pub updated_at: DateTimeUtc,
        /// When it was sent.
        pub sent_at: Option<DateTimeUtc>,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The webhook registry: at most one webhook per user.
pub mod webhook {
    use sea_orm::entity::prelude::*;

    /// One user's webhook.
    #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhooks")]
    pub struct Model {
        /// The user.
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        /// Where events are POSTed.
        pub url: String,
        /// The HMAC-SHA256 key (kept in clear: signing needs it).
        pub secret: String,
        /// When it was registered (or last replaced).
        pub created_at: DateTimeUtc,
    }

    // The secret must not reach a log line through `{:?}`.
    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("webhook::Model")
                .field("user_id", &self.user_id)
                .field("url", &self.url)
                .field("created_at", &self.created_at)
                .finish_non_exhaustive()
        }
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
