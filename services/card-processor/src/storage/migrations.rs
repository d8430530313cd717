//! Schema migrations, named by date, listed in one `Migrator`.

use sea_orm_migration::{prelude::*, schema::*};

/// The processor's migrations. It has no outbox or inbox: it publishes
/// nothing and consumes nothing, it only answers HTTP.
#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(M20261210CreateTables)]
    }
}

struct M20261210CreateTables;

jetshop_platform::migration_name!(
    M20261210CreateTables,
    "m20261210_000001_card_processor_tables"
);

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for M20261210CreateTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("payments")
                    .if_not_exists()
                    .col(string("merchant_reference").primary_key())
                    .col(string("order_reference"))
                    // authorized | captured | refunded | voided | canceled
                    .col(string_len("status", 16))
                    .col(string_null("authorization_id").unique_key())
                    .col(string_len("currency", 3))
                    .col(big_integer("authorized_minor"))
                    .col(big_integer("captured_minor"))
                    .col(big_integer("refunded_minor"))
                    .col(big_integer("released_minor"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    // Bumped on every change: an update names the version it
                    // read, so two concurrent requests cannot both move it.
                    .col(big_integer("version"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("movements")
                    .if_not_exists()
                    .col(string("id").primary_key())
                    .col(string("merchant_reference"))
                    .col(string("order_reference"))
                    // authorization | capture | void | refund
                    .col(string_len("kind", 16))
                    .col(big_integer("amount_minor"))
                    .col(string_len("currency", 3))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("idempotency_keys")
                    .if_not_exists()
                    .col(string("key").primary_key())
                    // sha256 of method, path and the canonical body.
                    .col(string("fingerprint"))
                    .col(integer("status_code"))
                    .col(text("response"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("requests")
                    .if_not_exists()
                    .col(big_pk_auto("id"))
                    .col(string_len("operation", 16))
                    .col(string_null("order_reference"))
                    .col(string_null("merchant_reference"))
                    .col(string_null("idempotency_key"))
                    .col(integer_null("status_code"))
                    .col(timestamp_with_time_zone("received_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("flaky_orders")
                    .if_not_exists()
                    .col(string("order_reference").primary_key())
                    .col(integer("failures"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("switches")
                    .if_not_exists()
                    .col(string("name").primary_key())
                    .col(boolean("enabled"))
                    .to_owned(),
            )
            .await?;
        for (name, table, col) in [
            ("payments_order", "payments", "order_reference"),
            ("movements_order", "movements", "order_reference"),
            ("requests_order", "requests", "order_reference"),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(table)
                        .col(col)
                        .if_not_exists()
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "switches",
            "flaky_orders",
            "requests",
            "idempotency_keys",
            "movements",
            "payments",
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
