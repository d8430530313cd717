//! The scopes jetshop knows, and which of them an account may be granted.
//!
//! A client lists the scopes it may ask for; an account's roles bound what
//! it may receive through any client: a customer logging in through the
//! `swagger-ui` client gets no `catalog:write` even when asking for it (the
//! token's `scope` says what was granted, as RFC 6749 section 3.3 allows).

use std::collections::BTreeSet;

use jetshop_contracts::users::Role;
use poem_openapi::OAuthScopes;

/// `catalog:write`: create and change products and stock.
pub const CATALOG_WRITE: &str = "catalog:write";
/// `orders:read`: read orders.
pub const ORDERS_READ: &str = "orders:read";
/// `orders:write`: place and change orders.
pub const ORDERS_WRITE: &str = "orders:write";
/// `users:admin`: administer accounts.
pub const USERS_ADMIN: &str = "users:admin";
/// `openid`: OpenID Connect (an `id_token` and `/oauth/userinfo`).
pub const OPENID: &str = "openid";
/// `profile`: name claims in the `id_token` and userinfo.
pub const PROFILE: &str = "profile";
/// `email`: the email claim in the `id_token` and userinfo.
pub const EMAIL: &str = "email";

/// Every scope the issuer knows (advertised in discovery).
pub const ALL: &[&str] = &[
    CATALOG_WRITE,
    ORDERS_READ,
    ORDERS_WRITE,
    USERS_ADMIN,
    OPENID,
    PROFILE,
    EMAIL,
];

/// The API's scopes, as the OpenAPI document lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, OAuthScopes)]
pub enum Scope {
    /// Create and change products and stock.
    #[oai(rename = "catalog:write")]
    CatalogWrite,
    /// Read your orders.
    #[oai(rename = "orders:read")]
    OrdersRead,
    /// Place and change your orders.
    #[oai(rename = "orders:write")]
    OrdersWrite,
    /// Administer accounts.
    #[oai(rename = "users:admin")]
    UsersAdmin,
    /// OpenID Connect sign-in.
    #[oai(rename = "openid")]
    Openid,
}

impl Scope {
    /// The scope's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CatalogWrite => CATALOG_WRITE,
            Self::OrdersRead => ORDERS_READ,
            Self::OrdersWrite => ORDERS_WRITE,
            Self::UsersAdmin => USERS_ADMIN,
            Self::Openid => OPENID,
        }
    }
}

/// Scopes only an admin may hold.
const ADMIN_ONLY: &[&str] = &[CATALOG_WRITE, USERS_ADMIN];

/// A space-separated scope string as a set (RFC 6749 section 3.3).
pub fn parse(scope: &str) -> BTreeSet<String> {
    scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A scope set as a space-separated string.
pub fn join(scopes: &BTreeSet<String>) -> String {
    scopes
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `scope` is a syntactically valid scope token (RFC 6749 3.3).
pub fn is_valid_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// Of the scopes asked for, those an account with `roles` may hold.
pub fn allowed_for_roles(requested: &BTreeSet<String>, roles: &[Role]) -> BTreeSet<String> {
    let admin = roles.contains(&Role::Admin);
    requested
        .iter()
        .filter(|s| admin || !ADMIN_ONLY.contains(&s.as_str()))
        .cloned()
        .collect()
}

/// The name of a role as tokens carry it.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Customer => "customer",
        Role::Admin => "admin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customers_do_not_get_admin_scopes() {
        let asked = parse("catalog:write orders:read openid");
        assert_eq!(
            join(&allowed_for_roles(&asked, &[Role::Customer])),
            "openid orders:read"
        );
        assert_eq!(
            allowed_for_roles(&asked, &[Role::Customer, Role::Admin]),
            asked
        );
    }

    #[test]
    fn scope_strings() {
        assert_eq!(parse("  a  b a "), parse("a b"));
        assert!(is_valid_token("catalog:write"));
        assert!(!is_valid_token("a\"b"));
        assert!(!is_valid_token(""));
        for s in [
            Scope::CatalogWrite,
            Scope::OrdersRead,
            Scope::OrdersWrite,
            Scope::UsersAdmin,
            Scope::Openid,
        ] {
            assert!(ALL.contains(&s.as_str()));
            assert_eq!(OAuthScopes::name(&s), s.as_str());
        }
    }
}
