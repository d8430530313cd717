//! OAuth client queries and writes.

use chrono::Utc;
use jetshop_contracts::users::{GrantType, OAuthClient};
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, Set};
use uuid::Uuid;

use super::entity::client::{self, Entity as Clients};
use crate::Error;

/// The wire shape of a row (never the secret hash).
pub fn to_wire(m: &client::Model) -> Result<OAuthClient, Error> {
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        Error::Internal(format!("stored {what} of client {:?}: {e}", m.client_id))
    };
    Ok(OAuthClient {
        client_id: m.client_id.clone(),
        name: m.name.clone(),
        confidential: m.secret_hash.is_some(),
        redirect_uris: serde_json::from_str(&m.redirect_uris)
            .map_err(|e| corrupt("redirect_uris", &e))?,
        grant_types: serde_json::from_str(&m.grant_types)
            .map_err(|e| corrupt("grant_types", &e))?,
        scopes: serde_json::from_str(&m.scopes).map_err(|e| corrupt("scopes", &e))?,
        service_account: m
            .service_account
            .as_deref()
            .map(Uuid::parse_str)
            .transpose()
            .map_err(|e| corrupt("service_account", &e))?,
    })
}

/// One client.
pub async fn find<C: ConnectionTrait>(
    db: &C,
    client_id: &str,
) -> Result<Option<client::Model>, Error> {
    Ok(Clients::find_by_id(client_id.to_owned()).one(db).await?)
}

/// A validated client to insert.
#[derive(Debug)]
pub struct NewClientRow<'a> {
    /// Client id.
    pub client_id: &'a str,
    /// Human name.
    pub name: &'a str,
    /// argon2id PHC string of the secret; `None` for a public client.
    pub secret_hash: Option<String>,
    /// Redirect URIs.
    pub redirect_uris: &'a [String],
    /// Allowed grants.
    pub grant_types: &'a [GrantType],
    /// Allowed scopes.
    pub scopes: &'a [String],
    /// Account it acts as under client credentials.
    pub service_account: Option<Uuid>,
}

fn json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String, Error> {
    serde_json::to_string(v).map_err(|e| Error::Internal(format!("encode client field: {e}")))
}

/// Insert a client; an existing id is [`Error::ClientExists`].
pub async fn insert<C: ConnectionTrait>(
    db: &C,
    new: NewClientRow<'_>,
) -> Result<client::Model, Error> {
    let now = Utc::now();
    let row = client::ActiveModel {
        client_id: Set(new.client_id.to_owned()),
        name: Set(new.name.to_owned()),
        secret_hash: Set(new.secret_hash),
        redirect_uris: Set(json(new.redirect_uris)?),
        grant_types: Set(json(new.grant_types)?),
        scopes: Set(json(new.scopes)?),
        service_account: Set(new.service_account.map(|u| u.to_string())),
        created_at: Set(now),
        updated_at: Set(now),
    };
    row.insert(db)
        .await
        .map_err(|e| Error::from_insert(e, Error::ClientExists(new.client_id.to_owned())))
}

/// Replace a client's redirect URIs.
pub async fn set_redirect_uris<C: ConnectionTrait>(
    db: &C,
    current: client::Model,
    redirect_uris: &[String],
) -> Result<client::Model, Error> {
    let mut row: client::ActiveModel = current.into();
    row.redirect_uris = Set(json(redirect_uris)?);
    row.updated_at = Set(Utc::now());
    Ok(row.update(db).await?)
}
