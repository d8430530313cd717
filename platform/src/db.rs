//! Database connections, the tables every service shares (outbox, inbox,
//! outbox lease), and what a database failure means to a caller.
//!
//! SQLite by default (one file per service under `./data/`), PostgreSQL in
//! production; the same code runs on both. Each service lists
//! [`shared_migrations`] in its own `Migrator`, so the tables live in the
//! service's own database.
//!
//! [`is_transient`] is the one place that tells an infrastructure failure
//! (the pool is exhausted, the server restarts, a connection drops, a lock
//! is busy) from an error in the statement or the data: services use it
//! to retry the first and never dead-letter a message or fail an order for
//! it.

use std::{path::Path, time::Duration};

use sea_orm::{
    ConnAcquireErr, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend,
    DbErr, RuntimeErr, TransactionTrait,
};
use sea_orm_migration::{prelude::*, schema::*};

use crate::{Error, config::DbSettings};

/// Connect to `url` with the default pool (see [`DbSettings`]), creating the
/// SQLite file (and its folder) when needed. Services pass their settings
/// to [`connect_with`]; this is for tools and tests.
pub async fn connect(url: &str) -> Result<DatabaseConnection, Error> {
    connect_with(url, &DbSettings::default()).await
}

/// Connect to `url` with a pool shaped by `settings`, creating the SQLite
/// file (and its folder) when needed.
pub async fn connect_with(url: &str, settings: &DbSettings) -> Result<DatabaseConnection, Error> {
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
    // The acquire timeout bounds both the wait for a free connection and
    // the opening of a new one: past it the caller gets
    // `ConnectionAcquire(Timeout)`, which [`is_transient`] retries.
    opts.sqlx_logging(false)
        .connect_timeout(settings.acquire_timeout)
        .acquire_timeout(settings.acquire_timeout)
        .max_connections(settings.max_connections_for(is_sqlite));
    if is_sqlite {
        // WAL lets readers run beside the one writer; busy_timeout makes a
        // writer wait for the lock instead of failing with SQLITE_BUSY.
        opts.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
        });
    }
    Ok(Database::connect(opts).await?)
}

/// The advisory lock key every jetshop service's migrations take on its
/// own database (any constant; `jetshop` in ASCII).
const MIGRATION_LOCK: i64 = 0x006a_6574_7368_6f70;

/// Bring the schema up to date (run at every start; idempotent), one
/// replica at a time. On PostgreSQL the migrations run in one transaction
/// under an advisory lock: a second replica starting at the same moment
/// waits, then finds nothing pending, and since DDL is transactional there
/// a failed migration leaves nothing half done. A SQLite file belongs to
/// one process; within it (tests, two hosts on one file) they take turns.
pub async fn migrate<M: MigratorTrait>(db: &DatabaseConnection) -> Result<(), DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        static SQLITE_MIGRATIONS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _turn = SQLITE_MIGRATIONS.lock().await;
        M::up(db, None).await?;
        return Ok(());
    }
    let txn = db.begin().await?;
    txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        .await?;
    M::up(&txn, None).await?;
    txn.commit().await?;
    Ok(())
}

/// Whether a database error is an infrastructure failure that retrying
/// later can fix, as opposed to a statement or data that will fail again.
///
/// Transient: no connection from the pool in time or a closed pool; a
/// failure to open or keep a connection (refused, reset, TLS, protocol);
/// PostgreSQL SQLSTATE class `08` (connection exception), `57P01`
/// (admin shutdown), `57P02` (crash shutdown), `57P03` (cannot connect now:
/// starting up or in recovery), `53300` (too many connections), `40001`
/// (serialization failure) and `40P01` (deadlock); SQLite `SQLITE_BUSY` and
/// `SQLITE_LOCKED` with their extended codes. Everything else (constraint
/// violations, syntax, decoding, a missing row) is not: a caller decides
/// what those mean for its domain.
pub fn is_transient(err: &DbErr) -> bool {
    match err {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout | ConnAcquireErr::ConnectionClosed) => {
            true
        }
        // Opening or checking out a connection failed: whatever the cause
        // reported by the server (it may be restarting, or refusing us for
        // a moment), the statement itself was never tried.
        DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            sqlx_is_transient(e)
        }
        _ => false,
    }
}

fn sqlx_is_transient(err: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error as E;
    match err {
        E::Io(_)
        | E::Tls(_)
        | E::Protocol(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed
        | E::BeginFailed => true,
        E::Database(db) => {
            if let Some(pg) = db.try_downcast_ref::<sea_orm::sqlx::postgres::PgDatabaseError>() {
                pg_code_is_transient(pg.code())
            } else if db
                .try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()
                .is_some()
            {
                // The extended result code, as a number.
                db.code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .is_some_and(sqlite_code_is_transient)
            } else {
                false
            }
        }
        _ => false,
    }
}

/// PostgreSQL SQLSTATEs that a retry can get past (see [`is_transient`]).
fn pg_code_is_transient(code: &str) -> bool {
    code.starts_with("08")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01"
        )
}

/// SQLite result codes that a retry can get past: `SQLITE_BUSY` (5) and
/// `SQLITE_LOCKED` (6), whose extended codes keep the primary code in the
/// low byte (`SQLITE_BUSY_SNAPSHOT` is 517).
fn sqlite_code_is_transient(code: i32) -> bool {
    matches!(code & 0xff, 5 | 6)
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
    vec![
        Box::new(CreateOutbox),
        Box::new(CreateInbox),
        Box::new(CreateOutboxLease),
    ]
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

/// The outbox relay's lease (see [`crate::outbox`]): one row per relayed
/// outbox, naming the replica that may publish it and until when.
struct CreateOutboxLease;

crate::migration_name!(CreateOutboxLease, "m20261201_000001_jetshop_outbox_lease");

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for CreateOutboxLease {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("outbox_lease")
                    .if_not_exists()
                    .col(string("name").primary_key())
                    .col(string("holder"))
                    // Milliseconds since the Unix epoch by the database's
                    // clock, so replicas with skewed clocks still agree.
                    .col(big_integer("expires_at_ms"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("outbox_lease").to_owned())
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

    #[test]
    fn pool_and_connection_failures_are_transient() {
        assert!(is_transient(&DbErr::ConnectionAcquire(
            ConnAcquireErr::Timeout
        )));
        assert!(is_transient(&DbErr::ConnectionAcquire(
            ConnAcquireErr::ConnectionClosed
        )));
        assert!(is_transient(&DbErr::Conn(RuntimeErr::Internal(
            "refused".into()
        ))));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        assert!(is_transient(&DbErr::Query(RuntimeErr::SqlxError(
            std::sync::Arc::new(sea_orm::sqlx::Error::Io(io))
        ))));
        assert!(is_transient(&DbErr::Exec(RuntimeErr::SqlxError(
            std::sync::Arc::new(sea_orm::sqlx::Error::PoolTimedOut)
        ))));
        assert!(is_transient(&DbErr::Exec(RuntimeErr::SqlxError(
            std::sync::Arc::new(sea_orm::sqlx::Error::PoolClosed)
        ))));
    }

    #[test]
    fn statement_and_data_errors_are_not_transient() {
        assert!(!is_transient(&DbErr::RecordNotFound("x".into())));
        assert!(!is_transient(&DbErr::Type("bad".into())));
        assert!(!is_transient(&DbErr::Custom("bug".into())));
        assert!(!is_transient(&DbErr::Query(RuntimeErr::SqlxError(
            std::sync::Arc::new(sea_orm::sqlx::Error::RowNotFound)
        ))));
        assert!(!is_transient(&DbErr::Exec(RuntimeErr::Internal(
            "syntax".into()
        ))));
    }

    #[test]
    fn postgres_sqlstates_that_a_retry_can_get_past() {
        for code in [
            "08000", "08003", "08006", "08001", "08004", "57P01", "57P02", "57P03", "53300",
            "40001", "40P01",
        ] {
            assert!(pg_code_is_transient(code), "{code}");
        }
        // unique, foreign key, not null, check, syntax, undefined table,
        // database does not exist, query cancelled by a statement timeout
        for code in [
            "23505", "23503", "23502", "23514", "42601", "42P01", "3D000", "57014", "22P02",
        ] {
            assert!(!pg_code_is_transient(code), "{code}");
        }
    }

    #[test]
    fn sqlite_busy_and_locked_are_transient() {
        // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_BUSY_SNAPSHOT, SQLITE_BUSY_TIMEOUT, SQLITE_LOCKED_SHAREDCACHE
        for code in [5, 6, 517, 773, 262] {
            assert!(sqlite_code_is_transient(code), "{code}");
        }
        // SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_NOTNULL, SQLITE_ERROR, SQLITE_READONLY
        for code in [2067, 1299, 1, 8] {
            assert!(!sqlite_code_is_transient(code), "{code}");
        }
    }

    #[tokio::test]
    async fn a_sqlite_constraint_violation_is_not_transient_but_a_closed_pool_is() {
        use sea_orm::ConnectionTrait;
        let file = jetshop_testkit::TestDb::sqlite();
        let db = connect(&file.url).await.unwrap();
        db.execute_unprepared("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            .await
            .unwrap();
        db.execute_unprepared("INSERT INTO t (id) VALUES (1)")
            .await
            .unwrap();
        let dup = db
            .execute_unprepared("INSERT INTO t (id) VALUES (1)")
            .await
            .unwrap_err();
        assert!(!is_transient(&dup), "{dup:?}");
        let syntax = db.execute_unprepared("INSERT INTO").await.unwrap_err();
        assert!(!is_transient(&syntax), "{syntax:?}");
        db.clone().close().await.unwrap();
        let closed = db.execute_unprepared("SELECT 1").await.unwrap_err();
        assert!(is_transient(&closed), "{closed:?}");
    }
}
