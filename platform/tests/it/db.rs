//! The shared tables' migrations on the test database.

use sea_orm_migration::MigratorTrait;

use crate::common::{self, Migrator};

#[tokio::test]
async fn shared_migrations_apply_once_and_rerun_cleanly() {
    let (_test_db, db) = common::database().await;
    // A restart runs the migrator again.
    Migrator::up(&db, None).await.unwrap();
    let applied = Migrator::get_applied_migrations(&db).await.unwrap();
    let names: Vec<&str> = applied.iter().map(|m| m.name()).collect();
    assert_eq!(
        names,
        [
            "m20261127_000001_jetshop_outbox",
            "m20261127_000002_jetshop_inbox",
            "m20261201_000001_jetshop_outbox_lease"
        ]
    );
    assert_eq!(
        common::count(&db, "SELECT COUNT(*) AS n FROM outbox").await,
        0
    );
    assert_eq!(
        common::count(&db, "SELECT COUNT(*) AS n FROM inbox").await,
        0
    );
}
