//! OAuth 2.0 as a resource server: what guards `/v1`. A bearer token is
//! validated here whoever issued it (our own authorization server in
//! `oauth`, or an external issuer), and the operation's scope is checked.
//!
//! - [`settings`]: `--oauth-*` flags (shared with the authorization server).
//! - [`jwt`]: access-token validation ([`jwt::Validator`]) and the [`jwt::Principal`].
//! - [`issuer`]: external issuer mode: discovery and a cached JWKS.
//! - [`scopes`]: the scopes, and who may be granted which.
//! - [`guard`]: the poem-openapi security schemes and the authenticated principal.
//!
//! This layer sits on `error` only; it never imports the authorization
//! server, which lends it its keys through [`jwt::KeySource`].
//!
//! Tokens, secrets, passwords, codes and their hashes never reach a log
//! line: spans name clients and users, never credentials.

pub mod guard;
pub mod issuer;
pub mod jwt;
pub mod scopes;
pub mod settings;

pub use settings::AuthSettings;
