//! `/v1/users`: registration (public) and the caller's own account
//! (`/v1/users/me`, any valid token issued to an account). An account is
//! readable by id only by itself or with the `users:admin` scope:
//! customers see only themselves.
//!
//! The users service owns the rules (email normalisation, password policy);
//! the schema here only bounds sizes, and a refusal names its field in the
//! problem's `errors`.

use chrono::{DateTime, Utc};
use jetshop_contracts::users::{self as wire, GetUser, RegisterUser, UpdateProfile};
use jetshop_platform::{envelope::MessageMeta, rpc::RpcClient};
use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags, param::Path, payload::Json};
use uuid::Uuid;

use crate::{
    auth::{
        guard::{AuthError, Authenticated, Public},
        scopes::{self, Scope},
    },
    error::Error,
    http::{
        problem::{Guarded, Problem, operation as problems},
        request_id::RequestId,
        strict_json::StrictJson,
    },
};

#[derive(Tags)]
enum Tag {
    /// Accounts: registration and profiles.
    Users,
}

/// An account (never with credentials).
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename = "User")]
pub struct UserBody {
    /// Account id.
    pub id: Uuid,
    /// Email, lower-cased.
    pub email: String,
    /// Name shown to people.
    pub display_name: String,
    /// Roles: `customer`, `admin`.
    pub roles: Vec<String>,
    /// Bumped on every change.
    pub version: i64,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<wire::User> for UserBody {
    fn from(u: wire::User) -> Self {
        Self {
            id: u.id,
            email: u.email,
            display_name: u.display_name,
            roles: u
                .roles
                .into_iter()
                .map(|r| scopes::role_name(r).to_owned())
                .collect(),
            version: u.version,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// A registration.
#[derive(Object)]
#[oai(rename = "NewUser", deny_unknown_fields)]
pub struct NewUserBody {
    /// Email; unique whatever its case. One `@` after 1 to 64 characters,
    /// a dotted domain without empty labels, no spaces or control characters.
    #[oai(validator(
        min_length = 3,
        max_length = 254,
        pattern = r"^[^@\s\x00-\x1f\x7f-\x9f]{1,64}@[^@.\s\x00-\x1f\x7f-\x9f]+(?:\.[^@.\s\x00-\x1f\x7f-\x9f]+)+$"
    ))]
    pub email: String,
    /// Password: 12 to 128 characters, not one character repeated (the
    /// pattern says so), not one of the most common passwords and not the
    /// email itself (no schema can say those two; refused with 400 naming
    /// `password`).
    #[oai(validator(min_length = 12, max_length = 128))]
    pub password: String,
    /// Name shown to people (default: the email's local part): 1 to 100
    /// characters, not only spaces, no control characters.
    #[oai(validator(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    ))]
    pub display_name: Option<String>,
}

// The password must never reach a log line.
impl std::fmt::Debug for NewUserBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUserBody")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// Changes to your profile; absent fields stay.
#[derive(Debug, Object)]
#[oai(rename = "ProfileChanges", deny_unknown_fields)]
pub struct ProfileChangesBody {
    /// New name shown to people: 1 to 100 characters, not only spaces, no
    /// control characters.
    #[oai(validator(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    ))]
    pub display_name: Option<String>,
}

#[derive(ApiResponse)]
enum Registered {
    /// The account was created; `Location` is its URL.
    #[oai(status = 201)]
    Created(
        Json<UserBody>,
        /// `/v1/users/{id}`.
        #[oai(header = "Location")]
        String,
    ),
    /// The email is taken (in any case).
    #[oai(status = 409, content_type = "application/problem+json")]
    #[allow(dead_code, reason = "answered through Error; documented here")]
    Conflict(Json<Problem>),
}

/// The account operations.
#[derive(Debug, Clone, Copy, Default)]
pub struct UsersApi;

#[OpenApi(tag = "Tag::Users")]
impl UsersApi {
    /// Register
    ///
    /// Create a customer account. Open to everyone. Answers 201 with the
    /// account and its `Location`, 409 when the email is taken in any case,
    /// 400 naming the field for a malformed email or a password the policy
    /// refuses.
    #[oai(
        path = "/v1/users",
        method = "post",
        operation_id = "registerUser",
        transform = "problems"
    )]
    async fn register(
        &self,
        _auth: Public,
        rpc: Data<&RpcClient>,
        request_id: Data<&RequestId>,
        body: StrictJson<NewUserBody>,
    ) -> Result<Registered, Error> {
        let body = body.0;
        let request = RegisterUser {
            email: body.email,
            password: body.password,
            display_name: body.display_name,
        };
        // Not retried: a timeout may hide a success.
        let user = rpc
            .call_once(&request, &MessageMeta::correlated(request_id.as_str()))
            .await?;
        tracing::info!(user_id = %user.id, "account registered");
        let location = format!("/v1/users/{}", user.id);
        Ok(Registered::Created(Json(user.into()), location))
    }

    /// Your account
    ///
    /// The account the access token was issued to.
    #[oai(
        path = "/v1/users/me",
        method = "get",
        operation_id = "getMe",
        transform = "problems"
    )]
    async fn me(
        &self,
        auth: Authenticated,
        rpc: Data<&RpcClient>,
        request_id: Data<&RequestId>,
    ) -> Result<Json<UserBody>, Guarded> {
        let id = auth.user_id()?;
        let user = rpc
            .call(
                &GetUser { id },
                &MessageMeta::correlated(request_id.as_str()),
            )
            .await?;
        Ok(Json(user.into()))
    }

    /// Change your profile
    ///
    /// Change the display name of the account the access token was issued to.
    #[oai(
        path = "/v1/users/me",
        method = "patch",
        operation_id = "updateMe",
        transform = "problems"
    )]
    async fn update_me(
        &self,
        auth: Authenticated,
        rpc: Data<&RpcClient>,
        request_id: Data<&RequestId>,
        body: StrictJson<ProfileChangesBody>,
    ) -> Result<Json<UserBody>, Guarded> {
        let id = auth.user_id()?;
        let Some(display_name) = body.0.display_name else {
            return Err(Error::Invalid {
                field: "display_name",
                reason: "name at least one field to change",
            }
            .into());
        };
        let user = rpc
            .call_once(
                &UpdateProfile {
                    id,
                    display_name: Some(display_name),
                },
                &MessageMeta::correlated(request_id.as_str()),
            )
            .await?;
        Ok(Json(user.into()))
    }

    /// Get an account
    ///
    /// An account by id: your own, or any with the `users:admin` scope.
    #[oai(
        path = "/v1/users/:id",
        method = "get",
        operation_id = "getUser",
        transform = "problems"
    )]
    async fn get(
        &self,
        #[oai(scope = "Scope::UsersAdmin")] auth: Authenticated,
        rpc: Data<&RpcClient>,
        request_id: Data<&RequestId>,
        /// Account id (a UUID).
        id: Path<Uuid>,
    ) -> Result<Json<UserBody>, Guarded> {
        let own = auth.principal().user_id() == Some(id.0);
        if !own && !auth.principal().has_scope(scopes::USERS_ADMIN) {
            return Err(AuthError::InsufficientScope(scopes::USERS_ADMIN).into());
        }
        let user = rpc
            .call(
                &GetUser { id: id.0 },
                &MessageMeta::correlated(request_id.as_str()),
            )
            .await?;
        Ok(Json(user.into()))
    }
}
