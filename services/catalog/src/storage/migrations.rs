//! Schema migrations, named by date, listed in one `Migrator`.

use sea_orm_migration::{prelude::*, schema::*};

/// The catalog's migrations: the shared outbox and inbox first, then its own.
#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut all = jetshop_platform::db::shared_migrations();
        all.push(Box::new(M20261127CreateProducts));
        all.push(Box::new(M20261127CreateReservations));
        all
    }
}

struct M20261127CreateProducts;

jetshop_platform::migration_name!(M20261127CreateProducts, "m20261127_000001_catalog_products");

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for M20261127CreateProducts {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("products")
                    .if_not_exists()
                    .col(string("id").primary_key())
                    .col(string_uniq("sku"))
                    .col(string("name"))
                    .col(text("description"))
                    .col(big_integer("price_minor"))
                    .col(string_len("currency", 3))
                    .col(big_integer("stock"))
                    .col(big_integer("version"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("products").to_owned())
            .await
    }
}

struct M20261127CreateReservations;

jetshop_platform::migration_name!(
    M20261127CreateReservations,
    "m20261127_000002_catalog_reservations"
);

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for M20261127CreateReservations {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("reservations")
                    .if_not_exists()
                    .col(string("order_id"))
                    .col(string("product_id"))
                    .col(big_integer("quantity"))
                    // reserved | released | committed
                    .col(string_len("state", 16))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .primary_key(Index::create().col("order_id").col("product_id"))
                    .to_owned(),
            )
            .await?;
        // What is held per product (operators, the stock invariant).
        manager
            .create_index(
                Index::create()
                    .name("reservations_product_state")
                    .table("reservations")
                    .col("product_id")
                    .col("state")
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("reservations").to_owned())
            .await
    }
}
