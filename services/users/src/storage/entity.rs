//! The users service's tables, one module each.

/// The `users` table: accounts.
pub mod user {
    use sea_orm::entity::prelude::*;

    /// One account row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        /// Account id, hyphenated lower-case UUID text.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// Normalised (lower-case) email; unique, so one mailbox is one account.
        #[sea_orm(unique)]
        pub email: String,
        /// argon2id PHC string.
        pub password_hash: String,
        /// Name shown to people.
        pub display_name: String,
        /// Role names, comma separated (see `domain::encode_roles`).
        pub roles: String,
        /// Bumped on every change.
        pub version: i64,
        /// Registration time.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `oauth_clients` table: registered OAuth clients.
pub mod client {
    use sea_orm::entity::prelude::*;

    /// One client row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "oauth_clients")]
    pub struct Model {
        /// Client id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub client_id: String,
        /// Human name shown on the login page.
        pub name: String,
        /// argon2id PHC string of the secret; `None` for a public client.
        pub secret_hash: Option<String>,
        /// Redirect URIs, a JSON array of strings.
        pub redirect_uris: String,
        /// Allowed grant types, a JSON array of their snake_case names.
        pub grant_types: String,
        /// Allowed scopes, a JSON array of strings.
        pub scopes: String,
        /// For client credentials: the account id it acts as.
        pub service_account: Option<String>,
        /// Registration time.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `oauth_codes` table: authorization codes, by hash, redeemable once.
pub mod code {
    use sea_orm::entity::prelude::*;

    /// One authorization code row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "oauth_codes")]
    pub struct Model {
        /// SHA-256 of the code, hex (the code itself is never stored).
        #[sea_orm(primary_key, auto_increment = false)]
        pub code_hash: String,
        /// The client it was issued to.
        pub client_id: String,
        /// The account that authorized it.
        pub user_id: String,
        /// The redirect URI it was issued for.
        pub redirect_uri: String,
        /// Granted scopes, space separated.
        pub scope: String,
        /// PKCE challenge.
        pub challenge: String,
        /// PKCE method.
        pub method: String,
        /// OpenID Connect nonce.
        pub nonce: Option<String>,
        /// When it stops being redeemable.
        pub expires_at: DateTimeUtc,
        /// When it was redeemed; set once.
        pub redeemed_at: Option<DateTimeUtc>,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `refresh_tokens` table: refresh tokens, by hash, in rotation families.
pub mod refresh {
    use sea_orm::entity::prelude::*;

    /// One refresh token row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refresh_tokens")]
    pub struct Model {
        /// SHA-256 of the token, hex (the token itself is never stored).
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_hash: String,
        /// The login session: every successor of a token shares it.
        pub family_id: String,
        /// The client it was issued to.
        pub client_id: String,
        /// The account.
        pub user_id: String,
        /// Granted scopes, space separated.
        pub scope: String,
        /// When it expires.
        pub expires_at: DateTimeUtc,
        /// When it was exchanged for its successor; presenting it again after that is reuse.
        pub rotated_at: Option<DateTimeUtc>,
        /// When its family was revoked.
        pub revoked_at: Option<DateTimeUtc>,
        /// When it was issued.
        pub created_at: DateTimeUtc,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
