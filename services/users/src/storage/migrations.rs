//! Schema migrations, named by date, listed in one `Migrator`.

use sea_orm_migration::{prelude::*, schema::*};

/// The users service's migrations: the shared outbox and inbox first, then its own.
#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut all = jetshop_platform::db::shared_migrations();
        all.push(Box::new(M20261128CreateUsers));
        all.push(Box::new(M20261128CreateOAuth));
        all
    }
}

struct M20261128CreateUsers;

jetshop_platform::migration_name!(M20261128CreateUsers, "m20261128_000001_users_users");

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for M20261128CreateUsers {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("users")
                    .if_not_exists()
                    .col(string("id").primary_key())
                    .col(string_uniq("email"))
                    .col(text("password_hash"))
                    .col(string("display_name"))
                    .col(string("roles"))
                    .col(big_integer("version"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("users").to_owned())
            .await
    }
}

struct M20261128CreateOAuth;

jetshop_platform::migration_name!(M20261128CreateOAuth, "m20261128_000002_users_oauth");

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for M20261128CreateOAuth {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("oauth_clients")
                    .if_not_exists()
                    .col(string("client_id").primary_key())
                    .col(string("name"))
                    .col(text_null("secret_hash"))
                    .col(text("redirect_uris"))
                    .col(text("grant_types"))
                    .col(text("scopes"))
                    .col(string_null("service_account"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("oauth_codes")
                    .if_not_exists()
                    .col(string("code_hash").primary_key())
                    .col(string("client_id"))
                    .col(string("user_id"))
                    .col(text("redirect_uri"))
                    .col(text("scope"))
                    .col(string("challenge"))
                    .col(string("method"))
                    .col(text_null("nonce"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(timestamp_with_time_zone_null("redeemed_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("oauth_codes_expires_at")
                    .table("oauth_codes")
                    .col("expires_at")
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("refresh_tokens")
                    .if_not_exists()
                    .col(string("token_hash").primary_key())
                    .col(string("family_id"))
                    .col(string("client_id"))
                    .col(string("user_id"))
                    .col(text("scope"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(timestamp_with_time_zone_null("rotated_at"))
                    .col(timestamp_with_time_zone_null("revoked_at"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("refresh_tokens_family_id", "family_id"),
            ("refresh_tokens_expires_at", "expires_at"),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table("refresh_tokens")
                        .col(col)
                        .if_not_exists()
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["refresh_tokens", "oauth_codes", "oauth_clients"] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
