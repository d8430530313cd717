//! The orders database: the event store, the order projection, the sagas
//! and their timelines. Only this module writes SQL-shaped code.

pub mod entity;
pub mod events;
pub mod migrations;
pub mod projection;
pub mod sagas;
pub mod timeline;

use sea_orm::DatabaseConnection;

/// Bring the schema up to date (run at every start; idempotent; replicas
/// take turns).
pub async fn migrate(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    jetshop_platform::db::migrate::<migrations::Migrator>(db).await
}
