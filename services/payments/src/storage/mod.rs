//! The payments' database: entities, migrations and the queries the
//! handlers and the audit need. Only this module writes SQL-shaped code.

pub mod entries;
pub mod intents;
pub mod migrations;

use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;

/// Bring the schema up to date (run at every start; idempotent).
pub async fn migrate(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    migrations::Migrator::up(db, None).await
}
