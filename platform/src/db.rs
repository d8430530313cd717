//! Database connections and the tables every service shares (outbox, inbox).
//!
//! SQLite by default (one file per service under `./data/`), PostgreSQL in
//! production; the same code runs on both. Each service lists
//! [`shared_migrations`] in its own `Migrator`, so the tables live in the
//! service's own database.

use std::{path::Path, time::Duration};

use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use sea_orm_migration::{prelude::*, schema::*};

use crate::Error;

/// Connect to `url`, creating the SQLite file (and its folder) when needed.
pub async fn connect(url: &str) -> Result<DatabaseConnection, Error> {
    let is_sqlite = url.starts_with("sqlite:");
    if is_sqlite && !url.contains(":memory:") {
        let path = url
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:");
        let path = path.split('?').next().unwrap_or(path);
        if let Some(dir) = Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::Config(format!(
                    "cannot create database folder {}: {e}",
                    dir.display()
                ))
            })?;
        }
    }
    let mut url = url.to_owned();
    if is_sqlite && !url.contains("mode=") {
        url.push_str(if url.contains('?') {
            "&mode=rwc"
        } else {
            "?mode=rwc"
        });
    }
    let mut opts = ConnectOptions::new(url);
    opts.sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10));
    if is_sqlite {
        // WAL lets readers run beside the one writer; busy_timeout makes a
        // writer wait for the lock instead of failing with SQLITE_BUSY.
        opts.max_connections(8).map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
        });
    } else {
        opts.max_connections(16);
    }
    Ok(Database::connect(opts).await?)
}

/// Give a migration an explicit name. `DeriveMigrationName` names a
/// migration after its source file, which is the same for every migration
/// in a file: the second would fail to record itself.
#[macro_export]
macro_rules! migration_name {
    ($migration:ty, $name:literal) => {
        impl ::sea_orm_migration::MigrationName for $migration {
            fn name(&self) -> &str {
                $name
            }
        }
    };
}

/// Migrations of the shared tables, to be listed first in each service's `Migrator`.
pub fn shared_migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![Box::new(CreateOutbox), Box::new(CreateInbox)]
}

/// The transactional outbox (see [`crate::outbox`]).
struct CreateOutbox;

crate::migration_name!(CreateOutbox, "m20261127_000001_jetshop_outbox");

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for CreateOutbox {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("outbox")
                    .if_not_exists()
                    .col(big_pk_auto("seq"))
                    .col(string_uniq("message_id"))
                    .col(string("subject"))
                    .col(string("message_type"))
                    .col(blob("payload"))
                    .col(text("headers"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone_null("published_at"))
                    .col(integer("attempts").default(0))
                    .col(text_null("last_error"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("outbox_unpublished")
                    .table("outbox")
                    .col("published_at")
                    .col("seq")
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("outbox").to_owned())
            .await
    }
}

/// The idempotent inbox (see [`crate::inbox`]).
struct CreateInbox;

crate::migration_name!(CreateInbox, "m20261127_000002_jetshop_inbox");

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for CreateInbox {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("inbox")
                    .if_not_exists()
                    .col(string("consumer"))
                    .col(string("message_id"))
                    .col(timestamp_with_time_zone("processed_at"))
                    .primary_key(Index::create().col("consumer").col("message_id"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("inbox").to_owned())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_migrations_have_distinct_names() {
        let names: Vec<String> = shared_migrations()
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
    }
}
