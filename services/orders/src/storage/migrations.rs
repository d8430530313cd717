//! Schema migrations, named by date, listed in one `Migrator`.

use sea_orm_migration::{prelude::*, schema::*};

/// The orders' migrations: the shared outbox and inbox first, then its own.
#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut all = jetshop_platform::db::shared_migrations();
        all.push(Box::new(M20261127CreateOrders));
        all
    }
}

struct M20261127CreateOrders;

jetshop_platform::migration_name!(M20261127CreateOrders, "m20261127_000001_orders");

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for M20261127CreateOrders {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("order_events")
                    .if_not_exists()
                    .col(string("order_id"))
                    .col(big_integer("sequence"))
                    .col(string_uniq("event_id"))
                    .col(string("event_type"))
                    .col(text("data"))
                    .col(timestamp_with_time_zone("recorded_at"))
                    .primary_key(Index::create().col("order_id").col("sequence"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("orders")
                    .if_not_exists()
                    .col(string("id").primary_key())
                    .col(string("customer_id"))
                    .col(string_len("status", 32))
                    .col(text("lines"))
                    .col(big_integer("total_minor"))
                    .col(string_len("currency", 3))
                    .col(text_null("cancel_reason"))
                    .col(big_integer("version"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        // A customer's orders, newest first.
        manager
            .create_index(
                Index::create()
                    .name("orders_by_customer")
                    .table("orders")
                    .col("customer_id")
                    .col("id")
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("sagas")
                    .if_not_exists()
                    .col(string("order_id").primary_key())
                    .col(string_len("state", 32))
                    .col(string_len_null("step", 32))
                    .col(integer("attempts"))
                    .col(integer("sends"))
                    .col(timestamp_with_time_zone_null("deadline_at"))
                    .col(timestamp_with_time_zone("step_started_at"))
                    .col(text_null("last_error"))
                    .col(text_null("cancel_reason"))
                    .col(string("card_token"))
                    .col(big_integer("version"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        // The deadline scan and `sagas ls --state`.
        manager
            .create_index(
                Index::create()
                    .name("sagas_by_state_deadline")
                    .table("sagas")
                    .col("state")
                    .col("deadline_at")
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("saga_notes")
                    .if_not_exists()
                    .col(big_pk_auto("id"))
                    .col(string("order_id"))
                    .col(string_len("step", 32))
                    .col(string_len("outcome", 32))
                    .col(text_null("detail"))
                    .col(timestamp_with_time_zone("at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("saga_notes_by_order")
                    .table("saga_notes")
                    .col("order_id")
                    .col("id")
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["saga_notes", "sagas", "orders", "order_events"] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
