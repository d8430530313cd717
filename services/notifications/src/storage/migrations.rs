//! Schema migrations, named by date, listed in one `Migrator`.

use sea_orm_migration::{prelude::*, schema::*};

/// The notifications migrations: the shared outbox and inbox first, then its own.
#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut all = jetshop_platform::db::shared_migrations();
        all.push(Box::new(M20261201CreateDeliveries));
        all.push(Box::new(M20261201CreateWebhooks));
        all
    }
}

struct M20261201CreateDeliveries;

jetshop_platform::migration_name!(
    M20261201CreateDeliveries,
    "m20261201_000001_notifications_deliveries"
);

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for M20261201CreateDeliveries {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("deliveries")
                    .if_not_exists()
                    .col(string("id").primary_key())
                    .col(string_len("channel", 16))
                    .col(string("business_key"))
                    .col(string_len("kind", 32))
                    .col(string("user_id"))
                    .col(string_null("order_id"))
                    .col(text("recipient"))
                    // pending | sent | failed | skipped
                    .col(string_len("state", 16))
                    .col(integer("attempts"))
                    .col(text_null("last_error"))
                    .col(string_null("lease_token"))
                    .col(big_integer("lease_until_ms"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .col(timestamp_with_time_zone_null("sent_at"))
                    .to_owned(),
            )
            .await?;
        // The guarantee itself: one delivery per fact and channel, whatever
        // the message ids it arrived under.
        manager
            .create_index(
                Index::create()
                    .name("deliveries_channel_business_key")
                    .table("deliveries")
                    .col("channel")
                    .col("business_key")
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // The audit reads deliveries per order.
        manager
            .create_index(
                Index::create()
                    .name("deliveries_order")
                    .table("deliveries")
                    .col("order_id")
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("deliveries").to_owned())
            .await
    }
}

struct M20261201CreateWebhooks;

jetshop_platform::migration_name!(
    M20261201CreateWebhooks,
    "m20261201_000002_notifications_webhooks"
);

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for M20261201CreateWebhooks {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("webhooks")
                    .if_not_exists()
                    .col(string("user_id").primary_key())
                    .col(text("url"))
                    .col(string("secret"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("webhooks").to_owned())
            .await
    }
}
