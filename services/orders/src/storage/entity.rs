//! SeaORM entities of the orders database. Ids are stored as hyphenated
//! lower-case UUID text, like every jetshop service, so the same schema
//! works on SQLite and PostgreSQL.

/// The event store: every event of every order, append-only.
pub mod order_event {
    use sea_orm::entity::prelude::*;

    /// One stored event.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "order_events")]
    pub struct Model {
        /// The order.
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: String,
        /// 1, 2, 3, ... per order. The primary key makes a concurrent
        /// second writer of the same sequence fail: optimistic concurrency.
        #[sea_orm(primary_key, auto_increment = false)]
        pub sequence: i64,
        /// The event id, also its `Nats-Msg-Id` when published.
        #[sea_orm(unique)]
        pub event_id: String,
        /// `orders.placed`, ...
        pub event_type: String,
        /// The event as JSON.
        #[sea_orm(column_type = "Text")]
        pub data: String,
        /// When it was recorded.
        pub recorded_at: DateTimeUtc,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The read projection: one row per order, the fold of its events.
pub mod order {
    use sea_orm::entity::prelude::*;

    /// One order as read by the RPC endpoints.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "orders")]
    pub struct Model {
        /// The order (UUIDv7: sorts by time).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// Who placed it.
        pub customer_id: String,
        /// Where it stands (`OrderStatus` wire name).
        pub status: String,
        /// Lines with frozen prices, as JSON.
        #[sea_orm(column_type = "Text")]
        pub lines: String,
        /// Total in minor units.
        pub total_minor: i64,
        /// Currency of the total.
        pub currency: String,
        /// Why it was cancelled.
        pub cancel_reason: Option<String>,
        /// Events folded in.
        pub version: i64,
        /// When it was placed.
        pub created_at: DateTimeUtc,
        /// When it last changed.
        pub updated_at: DateTimeUtc,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The saga of each order.
pub mod saga {
    use sea_orm::entity::prelude::*;

    /// One saga.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sagas")]
    pub struct Model {
        /// The order it drives.
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: String,
        /// `SagaState` name.
        pub state: String,
        /// The pending `Step` name, when there is one.
        pub step: Option<String>,
        /// Sends of the current step.
        pub attempts: i32,
        /// Sends of every step so far: numbers each command's message id.
        pub sends: i32,
        /// When the current step times out.
        pub deadline_at: Option<DateTimeUtc>,
        /// When the current step was first sent (step latency).
        pub step_started_at: DateTimeUtc,
        /// Why the last attempt failed.
        pub last_error: Option<String>,
        /// Why the saga compensates.
        pub cancel_reason: Option<String>,
        /// The payment method, for (re)sending the authorization.
        pub card_token: String,
        /// Bumped on every change: the optimistic concurrency check.
        pub version: i64,
        /// When the saga began.
        pub created_at: DateTimeUtc,
        /// When it last changed.
        pub updated_at: DateTimeUtc,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The timeline: what the saga did, step by step, for people.
pub mod saga_note {
    use sea_orm::entity::prelude::*;

    /// One line.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "saga_notes")]
    pub struct Model {
        /// Insertion order.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The order.
        pub order_id: String,
        /// The step.
        pub step: String,
        /// What happened.
        pub outcome: String,
        /// Details.
        pub detail: Option<String>,
        /// When.
        pub at: DateTimeUtc,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
