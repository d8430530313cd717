//! The payments' database: entities, migrations and the queries the
//! handlers and the audit need. Only this module writes SQL-shaped code.

pub mod entries;
pub mod intents;
pub mod migrations;

use sea_orm::DatabaseConnection;

/// Bring the schema up to date (run at every start; idempotent; replicas
/// take turns).
pub async fn migrate(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    jetshop_platform::db::migrate::<migrations::Migrator>(db).await
}
