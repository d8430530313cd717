//! The notifications database: the delivery log, the webhook registry,
//! their migrations and queries. Only this module writes SQL-shaped code.

pub mod deliveries;
pub mod entity;
pub mod migrations;
pub mod webhooks;

use sea_orm::DatabaseConnection;

/// Bring the schema up to date (run at every start; idempotent; replicas
/// take turns).
pub async fn migrate(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    jetshop_platform::db::migrate::<migrations::Migrator>(db).await
}
