//! Schema migrations, named by date, listed in one `Migrator`.

use sea_orm_migration::{prelude::*, schema::*};

/// The payments' migrations: the shared outbox and inbox first, then its own.
#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut all = jetshop_platform::db::shared_migrations();
        all.push(Box::new(M20261201CreatePaymentIntents));
        all.push(Box::new(M20261201CreateLedgerEntries));
        all
    }
}

struct M20261201CreatePaymentIntents;

jetshop_platform::migration_name!(
    M20261201CreatePaymentIntents,
    "m20261201_000001_payments_payment_intents"
);

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for M20261201CreatePaymentIntents {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("payment_intents")
                    .if_not_exists()
                    // One intent per order: the key is what makes every
                    // operation idempotent per order.
                    .col(string("order_id").primary_key())
                    .col(string_uniq("payment_id"))
                    .col(big_integer("amount_minor"))
                    .col(string_len("currency", 3))
                    .col(string("card_token"))
                    // authorizing | authorized | declined | captured | voided | refunded
                    .col(string_len("state", 16))
                    .col(string_null("provider_ref"))
                    .col(string_null("decline_code"))
                    .col(text_null("decline_reason"))
                    .col(timestamp_with_time_zone_null("authorized_at"))
                    .col(timestamp_with_time_zone_null("captured_at"))
                    .col(timestamp_with_time_zone_null("voided_at"))
                    .col(timestamp_with_time_zone_null("refunded_at"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .col(big_integer("version"))
                    .to_owned(),
            )
            .await?;
        // Operators look for intents stuck in `authorizing`.
        manager
            .create_index(
                Index::create()
                    .name("payment_intents_state")
                    .table("payment_intents")
                    .col("state")
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("payment_intents").to_owned())
            .await
    }
}

struct M20261201CreateLedgerEntries;

jetshop_platform::migration_name!(
    M20261201CreateLedgerEntries,
    "m20261201_000002_payments_ledger_entries"
);

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for M20261201CreateLedgerEntries {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("ledger_entries")
                    .if_not_exists()
                    .col(big_pk_auto("id"))
                    .col(string("txn_id"))
                    .col(string("order_id"))
                    .col(string("payment_id"))
                    // authorize | capture | void | refund
                    .col(string_len("movement", 16))
                    .col(string_len("account", 32))
                    .col(big_integer("debit_minor"))
                    .col(big_integer("credit_minor"))
                    .col(string_len("currency", 3))
                    .col(string_null("provider_ref"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
        // One line per account per transaction, and one transaction per
        // payment and movement (deterministic ids): money is never booked twice.
        manager
            .create_index(
                Index::create()
                    .name("ledger_entries_txn_account")
                    .table("ledger_entries")
                    .col("txn_id")
                    .col("account")
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ledger_entries_order")
                    .table("ledger_entries")
                    .col("order_id")
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("ledger_entries").to_owned())
            .await
    }
}
