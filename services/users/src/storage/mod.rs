//! The users service's database: entities, migrations and the queries the
//! handlers need. Only this module writes SQL-shaped code.

pub mod clients;
pub mod entity;
pub mod grants;
pub mod migrations;
pub mod users;

use sea_orm::DatabaseConnection;

/// Bring the schema up to date (run at every start; idempotent; replicas
/// take turns).
pub async fn migrate(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    jetshop_platform::db::migrate::<migrations::Migrator>(db).await
}
