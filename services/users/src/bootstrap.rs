//! What the service creates on start from its settings: an admin account
//! and the public `swagger-ui` client. Idempotent: a restart, or another
//! replica starting at the same moment, creates nothing twice.

use jetshop_contracts::users::{GrantType, Role};

use crate::{
    Error,
    admin::{self, NewClient},
    domain::Email,
    handlers::Ctx,
    settings::UsersSettings,
    storage::{clients, users},
};

/// Client id of the Swagger UI page's public client.
pub const SWAGGER_UI_CLIENT_ID: &str = "swagger-ui";

/// Scopes the Swagger UI client may ask for: everything the API documents.
pub const SWAGGER_UI_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "catalog:write",
    "orders:read",
    "orders:write",
    "users:admin",
];

/// Create what the settings ask for and does not exist yet.
pub async fn run(ctx: &Ctx, settings: &UsersSettings) -> Result<(), Error> {
    if let (Some(email), Some(password)) = (&settings.admin_email, &settings.admin_password) {
        ensure_admin(ctx, email, password).await?;
    }
    if !settings.swagger_ui_redirect_uris.is_empty() {
        ensure_swagger_ui(ctx, &settings.swagger_ui_redirect_uris).await?;
    }
    Ok(())
}

async fn ensure_admin(ctx: &Ctx, email: &str, password: &str) -> Result<(), Error> {
    let config = |e: Error| {
        Error::Config(format!(
            "bootstrap admin (--admin-email/--admin-password): {e}"
        ))
    };
    let parsed = Email::parse(email).map_err(config)?;
    if let Some(existing) = users::find_by_email(&ctx.db, &parsed).await? {
        // Its password and roles are the operator's now: never overwritten.
        if !existing.roles.split(',').any(|r| r == "admin") {
            tracing::warn!(user_id = %existing.id, "the configured admin email belongs to an account without the admin role; left as it is");
        }
        return Ok(());
    }
    match admin::create_user_with(ctx, email, password, &[Role::Admin]).await {
        Ok(user) => {
            tracing::info!(user_id = %user.id, "bootstrap admin created");
            Ok(())
        }
        // Another replica created it in between.
        Err(Error::EmailTaken) => Ok(()),
        Err(e @ Error::Invalid { .. }) => Err(config(e)),
        Err(e) => Err(e),
    }
}

async fn ensure_swagger_ui(ctx: &Ctx, redirect_uris: &[String]) -> Result<(), Error> {
    let wanted = admin::normalise_redirect_uris(redirect_uris)
        .map_err(|e| Error::Config(format!("--swagger-ui-redirect-uri: {e}")))?;
    if let Some(existing) = clients::find(&ctx.db, SWAGGER_UI_CLIENT_ID).await? {
        if clients::to_wire(&existing)?.redirect_uris != wanted {
            clients::set_redirect_uris(&ctx.db, existing, &wanted).await?;
            tracing::info!(redirect_uris = ?wanted, "swagger-ui client redirect URIs updated");
        }
        return Ok(());
    }
    let spec = NewClient {
        client_id: SWAGGER_UI_CLIENT_ID.into(),
        name: "Swagger UI".into(),
        confidential: false,
        redirect_uris: wanted,
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        scopes: SWAGGER_UI_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
        service_account: None,
    };
    match admin::create_client_with(&ctx.db, &ctx.hasher, spec).await {
        Ok(_) | Err(Error::ClientExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
