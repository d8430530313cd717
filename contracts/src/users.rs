//! The users context's messages: accounts, credentials, OAuth clients and
//! the grants (authorization codes, refresh tokens) every gateway replica
//! shares through the users service.
//!
//! Secrets cross the wire only where they must (a password to register or
//! verify, a client secret to authenticate), only on RPC subjects (never
//! stored in a stream), and never as a stored value: codes and refresh
//! tokens travel as hashes.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Event, Message, Rpc, subjects::users as subj};

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Shops; sees only their own resources.
    Customer,
    /// Runs the shop.
    Admin,
}

/// An account as the users service publishes and serves it (no credentials).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct User {
    /// Account id.
    pub id: Uuid,
    /// Normalised (lower-case) email, unique.
    pub email: String,
    /// Name shown to people.
    pub display_name: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// Bumped on every change.
    pub version: i64,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// RPC: register an account. Answers the new account, or `conflict` when
/// the email (in any case) is taken, `bad_request` for a malformed email or
/// a password the policy refuses.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterUser {
    /// Email; normalised by the service.
    pub email: String,
    /// Password in clear, hashed with argon2id by the service.
    pub password: String,
    /// Name shown to people (defaults to the email's local part).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// RPC: fetch an account by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GetUser {
    /// Account id.
    pub id: Uuid,
}

/// RPC: change a profile. Absent fields stay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfile {
    /// Account id.
    pub id: Uuid,
    /// New display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// RPC: check an email and password. Answers the account, or
/// `unauthorized` for an unknown email and a wrong password alike.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyCredentials {
    /// Email as typed.
    pub email: String,
    /// Password as typed.
    pub password: String,
}

/// Event: an account was registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserRegistered {
    /// The new account.
    pub user: User,
}

/// Event: a profile changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProfileChanged {
    /// The account after the change.
    pub user: User,
}

/// An OAuth 2.0 grant type a client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// Authorization code (with PKCE).
    AuthorizationCode,
    /// Client credentials (machines).
    ClientCredentials,
    /// Refresh token.
    RefreshToken,
}

/// A registered OAuth client (never with its secret or hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OAuthClient {
    /// Client id.
    pub client_id: String,
    /// Human name shown on the login page.
    pub name: String,
    /// Whether it has a secret (confidential) or not (public, PKCE required).
    pub confidential: bool,
    /// Redirect URIs, matched exactly.
    pub redirect_uris: Vec<String>,
    /// Grants it may use.
    pub grant_types: Vec<GrantType>,
    /// Scopes it may ask for.
    pub scopes: Vec<String>,
    /// For client credentials: the account it acts as, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<Uuid>,
}

/// RPC: fetch a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GetClient {
    /// Client id.
    pub client_id: String,
}

/// RPC: check a confidential client's secret; `unauthorized` otherwise.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthenticateClient {
    /// Client id.
    pub client_id: String,
    /// Client secret in clear.
    pub client_secret: String,
}

/// RPC: keep an authorization code (by hash) until it is redeemed or expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StoreCode {
    /// SHA-256 of the code, hex.
    pub code_hash: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The account that authorized it.
    pub user_id: Uuid,
    /// The redirect URI it was issued for (must match at redemption).
    pub redirect_uri: String,
    /// Granted scopes, space separated.
    pub scope: String,
    /// PKCE challenge.
    pub code_challenge: String,
    /// PKCE method (`S256`).
    pub code_challenge_method: String,
    /// OpenID Connect nonce, if the client sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// When it stops being redeemable.
    pub expires_at: DateTime<Utc>,
}

/// RPC: redeem a code exactly once. `not_found` when unknown, expired,
/// already redeemed or issued to another client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RedeemCode {
    /// SHA-256 of the code, hex.
    pub code_hash: String,
    /// The client redeeming it.
    pub client_id: String,
}

/// RPC reply: what a redeemed code granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CodeGrant {
    /// The account.
    pub user_id: Uuid,
    /// The redirect URI it was issued for.
    pub redirect_uri: String,
    /// Granted scopes, space separated.
    pub scope: String,
    /// PKCE challenge to check the verifier against.
    pub code_challenge: String,
    /// PKCE method.
    pub code_challenge_method: String,
    /// OpenID Connect nonce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// RPC: keep a new refresh token (by hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IssueRefresh {
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// The family it starts (a fresh id at login).
    pub family_id: Uuid,
    /// The client.
    pub client_id: String,
    /// The account.
    pub user_id: Uuid,
    /// Granted scopes, space separated.
    pub scope: String,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
}

/// RPC: exchange a refresh token for its successor. Presenting a token that
/// was already rotated revokes its whole family and answers `unauthorized`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RotateRefresh {
    /// SHA-256 of the presented token.
    pub token_hash: String,
    /// SHA-256 of its successor.
    pub new_token_hash: String,
    /// The client presenting it.
    pub client_id: String,
    /// When the successor expires.
    pub expires_at: DateTime<Utc>,
}

/// RPC reply: what a refresh token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RefreshGrant {
    /// Its family.
    pub family_id: Uuid,
    /// The account.
    pub user_id: Uuid,
    /// Granted scopes, space separated.
    pub scope: String,
}

/// RPC: revoke a refresh token and its family (RFC 7009: unknown tokens are not an error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RevokeRefresh {
    /// SHA-256 of the token.
    pub token_hash: String,
    /// The client revoking it.
    pub client_id: String,
}

/// RPC reply with nothing to say but "done".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Ack {}

// Secrets must not reach a log line through `{:?}`.
macro_rules! redacted_debug {
    ($ty:ident { $($shown:ident),* }) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($shown), &self.$shown))*
                    .finish_non_exhaustive()
            }
        }
    };
}
redacted_debug!(RegisterUser {
    email,
    display_name
});
redacted_debug!(VerifyCredentials { email });
redacted_debug!(AuthenticateClient { client_id });

macro_rules! message {
    ($ty:ty, $name:literal) => {
        impl Message for $ty {
            const TYPE: &'static str = $name;
            const VERSION: u32 = 1;
        }
    };
}

message!(User, "users.user");
message!(RegisterUser, "users.register-user");
message!(GetUser, "users.get-user");
message!(UpdateProfile, "users.update-profile");
message!(VerifyCredentials, "users.verify-credentials");
message!(UserRegistered, "users.registered");
message!(ProfileChanged, "users.profile-changed");
message!(OAuthClient, "users.oauth-client");
message!(GetClient, "users.get-client");
message!(AuthenticateClient, "users.authenticate-client");
message!(StoreCode, "users.store-code");
message!(RedeemCode, "users.redeem-code");
message!(CodeGrant, "users.code-grant");
message!(IssueRefresh, "users.issue-refresh");
message!(RotateRefresh, "users.rotate-refresh");
message!(RefreshGrant, "users.refresh-grant");
message!(RevokeRefresh, "users.revoke-refresh");
message!(Ack, "ack");

impl Event for UserRegistered {
    const SUBJECT: &'static str = subj::REGISTERED;
}
impl Event for ProfileChanged {
    const SUBJECT: &'static str = subj::PROFILE_CHANGED;
}

macro_rules! rpc {
    ($req:ty => $reply:ty, $subject:expr) => {
        impl Rpc for $req {
            type Reply = $reply;
            const SUBJECT: &'static str = $subject;
        }
    };
}

rpc!(RegisterUser => User, subj::RPC_USER_REGISTER);
rpc!(GetUser => User, subj::RPC_USER_GET);
rpc!(UpdateProfile => User, subj::RPC_USER_UPDATE);
rpc!(VerifyCredentials => User, subj::RPC_CREDENTIALS_VERIFY);
rpc!(GetClient => OAuthClient, subj::RPC_CLIENT_GET);
rpc!(AuthenticateClient => OAuthClient, subj::RPC_CLIENT_AUTHENTICATE);
rpc!(StoreCode => Ack, subj::RPC_GRANT_STORE_CODE);
rpc!(RedeemCode => CodeGrant, subj::RPC_GRANT_REDEEM_CODE);
rpc!(IssueRefresh => Ack, subj::RPC_GRANT_ISSUE_REFRESH);
rpc!(RotateRefresh => RefreshGrant, subj::RPC_GRANT_ROTATE_REFRESH);
rpc!(RevokeRefresh => Ack, subj::RPC_GRANT_REVOKE_REFRESH);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let r = RegisterUser {
            email: "a@b.c".into(),
            password: "hunter2-secret".into(),
            display_name: None,
        };
        let v = VerifyCredentials {
            email: "a@b.c".into(),
            password: "hunter2-secret".into(),
        };
        let c = AuthenticateClient {
            client_id: "cli".into(),
            client_secret: "s3cr3t-value".into(),
        };
        for text in [format!("{r:?}"), format!("{v:?}"), format!("{c:?}")] {
            assert!(
                !text.contains("hunter2") && !text.contains("s3cr3t"),
                "{text}"
            );
        }
    }
}
