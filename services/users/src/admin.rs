//! Operations for operators, outside the running service: what
//! `jetshop users create-admin` and `jetshop oauth create-client` call.
//!
//! They write the database directly (and the outbox, so a created account
//! is still announced: the service's relay publishes the row when it runs).
//! Hashes use the production argon2 parameters.
//!
//! ```no_run
//! # async fn demo() -> Result<(), jetshop_users::Error> {
//! use jetshop_users::admin::{self, NewClient};
//! use jetshop_contracts::users::{GrantType, Role};
//!
//! let db = admin::connect_and_migrate("sqlite://data/users.db").await?;
//! admin::create_user(&db, "ops@example.com", "a long passphrase", &[Role::Admin]).await?;
//! let (client, secret) = admin::create_client(&db, NewClient {
//!     client_id: "reporting".into(),
//!     name: "Nightly reports".into(),
//!     confidential: true,
//!     redirect_uris: vec![],
//!     grant_types: vec![GrantType::ClientCredentials],
//!     scopes: vec!["orders:read".into()],
//!     service_account: None,
//! }).await?;
//! println!("{}: {}", client.client_id, secret.unwrap()); // shown once
//! # Ok(()) }
//! ```

use jetshop_contracts::users::{GrantType, OAuthClient, Role, User};
use jetshop_platform::envelope::MessageMeta;
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::{
    Error,
    handlers::{Ctx, accounts},
    passwords::{self, Hasher},
    settings::Argon2Settings,
    storage::{self, clients},
};

/// Connect to the users' database and bring its schema up to date.
pub async fn connect_and_migrate(url: &str) -> Result<DatabaseConnection, Error> {
    let db = jetshop_platform::db::connect(url).await?;
    storage::migrate(&db).await?;
    Ok(db)
}

/// Create an account with `roles` (at least one), under the same rules as
/// registration (email, password policy). Its `UserRegistered` event goes
/// to the outbox in the same transaction. A taken email is [`Error::EmailTaken`].
pub async fn create_user(
    db: &DatabaseConnection,
    email: &str,
    password: &str,
    roles: &[Role],
) -> Result<User, Error> {
    let ctx = Ctx {
        db: db.clone(),
        hasher: Hasher::new(&Argon2Settings::default()).await?,
        outbox: None,
    };
    create_user_with(&ctx, email, password, roles).await
}

pub(crate) async fn create_user_with(
    ctx: &Ctx,
    email: &str,
    password: &str,
    roles: &[Role],
) -> Result<User, Error> {
    if roles.is_empty() {
        return Err(Error::invalid("roles", "must name at least one role"));
    }
    accounts::create(ctx, email, password, None, roles, &MessageMeta::default()).await
}

/// What an operator asks for when registering an OAuth client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClient {
    /// Client id: 1 to 64 of `A-Z a-z 0-9 - _ .`.
    pub client_id: String,
    /// Human name shown on the login page.
    pub name: String,
    /// Confidential clients get a generated secret; public ones (browsers,
    /// native apps) have none and must use PKCE.
    pub confidential: bool,
    /// Redirect URIs, matched exactly; required for `authorization_code`.
    pub redirect_uris: Vec<String>,
    /// Grants it may use (at least one; `client_credentials` needs a confidential client).
    pub grant_types: Vec<GrantType>,
    /// Scopes it may ask for.
    pub scopes: Vec<String>,
    /// For client credentials: the account it acts as.
    pub service_account: Option<Uuid>,
}

/// Register a client. Answers it and, for a confidential client, the
/// generated secret: shown this once, only its argon2id hash is stored.
/// A taken id is [`Error::ClientExists`].
pub async fn create_client(
    db: &DatabaseConnection,
    spec: NewClient,
) -> Result<(OAuthClient, Option<String>), Error> {
    let hasher = Hasher::new(&Argon2Settings::default()).await?;
    create_client_with(db, &hasher, spec).await
}

pub(crate) async fn create_client_with(
    db: &DatabaseConnection,
    hasher: &Hasher,
    spec: NewClient,
) -> Result<(OAuthClient, Option<String>), Error> {
    let spec = validate(spec)?;
    let secret = spec.confidential.then(passwords::generate_secret);
    let secret_hash = match &secret {
        Some(s) => Some(hasher.hash(s).await?),
        None => None,
    };
    let row = clients::insert(
        db,
        clients::NewClientRow {
            client_id: &spec.client_id,
            name: &spec.name,
            secret_hash,
            redirect_uris: &spec.redirect_uris,
            grant_types: &spec.grant_types,
            scopes: &spec.scopes,
            service_account: spec.service_account,
        },
    )
    .await?;
    tracing::info!(client_id = %spec.client_id, confidential = spec.confidential, "OAuth client created");
    Ok((clients::to_wire(&row)?, secret))
}

/// Check and normalise a client spec.
fn validate(mut spec: NewClient) -> Result<NewClient, Error> {
    let id_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if spec.client_id.is_empty() || spec.client_id.len() > 64 || !spec.client_id.chars().all(id_ok)
    {
        return Err(Error::invalid(
            "client_id",
            "must be 1 to 64 of letters, digits, '-', '_' and '.'",
        ));
    }
    spec.name = spec.name.trim().to_owned();
    if spec.name.is_empty() || spec.name.chars().count() > 100 {
        return Err(Error::invalid("name", "must be 1 to 100 characters"));
    }
    spec.grant_types.dedup();
    if spec.grant_types.is_empty() {
        return Err(Error::invalid(
            "grant_types",
            "must name at least one grant",
        ));
    }
    if !spec.confidential && spec.grant_types.contains(&GrantType::ClientCredentials) {
        return Err(Error::invalid(
            "grant_types",
            "a public client cannot use client_credentials",
        ));
    }
    spec.redirect_uris = normalise_redirect_uris(&spec.redirect_uris)?;
    if spec.grant_types.contains(&GrantType::AuthorizationCode) && spec.redirect_uris.is_empty() {
        return Err(Error::invalid(
            "redirect_uris",
            "authorization_code needs at least one redirect URI",
        ));
    }
    // RFC 6749 scope-token: printable ASCII except space, '"' and '\'.
    let scope_ok = |s: &String| {
        !s.is_empty()
            && s.bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
    };
    if let Some(bad) = spec.scopes.iter().find(|s| !scope_ok(s)) {
        return Err(Error::invalid(
            "scopes",
            format!("{bad:?} is not a scope token"),
        ));
    }
    Ok(spec)
}

/// Redirect URIs are absolute, without a fragment or spaces (RFC 6749 3.1.2).
pub(crate) fn normalise_redirect_uris(uris: &[String]) -> Result<Vec<String>, Error> {
    let mut out: Vec<String> = Vec::new();
    for uri in uris.iter().map(|u| u.trim()) {
        let absolute = uri
            .split_once("://")
            .is_some_and(|(scheme, rest)| !scheme.is_empty() && !rest.is_empty());
        if !absolute
            || uri.contains('#')
            || uri.chars().any(|c| c.is_whitespace() || c.is_control())
            || uri.len() > 2000
        {
            return Err(Error::invalid(
                "redirect_uris",
                format!("{uri:?} is not an absolute URI without a fragment"),
            ));
        }
        if !out.iter().any(|u| u == uri) {
            out.push(uri.to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> NewClient {
        NewClient {
            client_id: "web".into(),
            name: "Web shop".into(),
            confidential: false,
            redirect_uris: vec!["https://shop.example/cb".into()],
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            scopes: vec!["openid".into(), "orders:read".into()],
            service_account: None,
        }
    }

    #[test]
    fn a_sound_spec_passes() {
        assert!(validate(spec()).is_ok());
    }

    #[test]
    fn bad_specs_name_the_field() {
        let field = |s: NewClient| match validate(s) {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("accepted: {other:?}"),
        };
        assert_eq!(
            field(NewClient {
                client_id: "has space".into(),
                ..spec()
            }),
            "client_id"
        );
        assert_eq!(
            field(NewClient {
                name: " ".into(),
                ..spec()
            }),
            "name"
        );
        assert_eq!(
            field(NewClient {
                grant_types: vec![],
                ..spec()
            }),
            "grant_types"
        );
        assert_eq!(
            field(NewClient {
                grant_types: vec![GrantType::ClientCredentials],
                ..spec()
            }),
            "grant_types",
            "public clients cannot use client credentials"
        );
        assert_eq!(
            field(NewClient {
                redirect_uris: vec![],
                ..spec()
            }),
            "redirect_uris"
        );
        assert_eq!(
            field(NewClient {
                redirect_uris: vec!["https://a.example/cb#frag".into()],
                ..spec()
            }),
            "redirect_uris"
        );
        assert_eq!(
            field(NewClient {
                redirect_uris: vec!["/relative".into()],
                ..spec()
            }),
            "redirect_uris"
        );
        assert_eq!(
            field(NewClient {
                scopes: vec!["two words".into()],
                ..spec()
            }),
            "scopes"
        );
    }
}
