//! The notifications database: the delivery log, the webhook registry,
//! their migrations and queries. Only this module writes SQL-shaped code.

pub mod deliveries;
pub mod entity;
pub mod migrations;
pub mod webhooks;

use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;

/// Bring the schema up to date (run at every start; idempotent).
pub async fn migrate(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    migrations::Migrator::up(db, None).await
}
