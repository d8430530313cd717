//! The idempotent inbox: a consumer records each processed message id in
//! the same transaction as the effect, so a redelivery finds the id taken
//! and is acknowledged without acting twice.

use sea_orm::{ConnectionTrait, EntityTrait, Set, sea_query::OnConflict};

/// The `inbox` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// One processed message.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "inbox")]
    pub struct Model {
        /// The durable consumer that processed it.
        #[sea_orm(primary_key, auto_increment = false)]
        pub consumer: String,
        /// Its `Nats-Msg-Id` (or stream and sequence when it had none).
        #[sea_orm(primary_key, auto_increment = false)]
        pub message_id: String,
        /// When.
        pub processed_at: DateTimeUtc,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Record `message_id` as processed by `consumer`. Returns `false` when it
/// already was: the caller must then skip the effect (and roll back).
/// Call inside the transaction that applies the effect.
pub async fn claim<C: ConnectionTrait>(
    db: &C,
    consumer: &str,
    message_id: &str,
) -> Result<bool, sea_orm::DbErr> {
    let row = entity::ActiveModel {
        consumer: Set(consumer.to_owned()),
        message_id: Set(message_id.to_owned()),
        processed_at: Set(chrono::Utc::now()),
    };
    let inserted = entity::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([entity::Column::Consumer, entity::Column::MessageId])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(inserted == 1)
}
