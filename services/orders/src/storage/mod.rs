//! The orders database: the event store, the order projection, the sagas
//! and their timelines. Only this module writes SQL-shaped code.

pub mod entity;
pub mod events;
pub mod migrations;
pub mod projection;
pub mod sagas;
pub mod timeline;

use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;

/// Bring the schema up to date (run at every start; idempotent).
pub async fn migrate(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    migrations::Migrator::up(db, None).await
}
