//! The rules of an account, as types that can only hold valid values.
//! Wire shapes from `contracts` are parsed into these on the way in.

use jetshop_contracts::users::Role;

use crate::Error;

/// An email address: trimmed and lower-cased as a whole, so that one
/// mailbox is one account whatever case it is typed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Longest address accepted (RFC 5321's path limit less the brackets).
    pub const MAX_LEN: usize = 254;

    /// Parse and normalise. This is a sanity check, not RFC 5322: one `@`,
    /// a non-empty local part, a dotted domain, no spaces or control characters.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let s = raw.trim().to_lowercase();
        let bad = |reason: &str| Err(Error::invalid("email", reason));
        if s.is_empty() {
            return bad("must not be empty");
        }
        if s.chars().count() > Self::MAX_LEN {
            return bad("must be at most 254 characters");
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad("must not contain spaces or control characters");
        }
        let Some((local, domain)) = s.split_once('@') else {
            return bad("must contain an @");
        };
        if domain.contains('@') {
            return bad("must contain exactly one @");
        }
        if local.is_empty() || local.chars().count() > 64 {
            return bad("must have 1 to 64 characters before the @");
        }
        if !domain.contains('.') || domain.split('.').any(str::is_empty) {
            return bad("must have a domain like example.com after the @");
        }
        Ok(Self(s))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the `@`.
    pub fn local_part(&self) -> &str {
        self.0.split('@').next().unwrap_or(&self.0)
    }
}

/// A password the policy accepts. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Passwords long enough for the length rule but guessed first by every
/// cracker; compared case-insensitively.
const COMMON_PASSWORDS: &[&str] = &[
    "123456789012",
    "1234567890123",
    "12345678901234",
    "123456789abc",
    "abcdefghijkl",
    "abc123456789",
    "administrator",
    "changeme1234",
    "iloveyou1234",
    "letmein12345",
    "password1234",
    "password123!",
    "passwordpassword",
    "qwerty123456",
    "qwertyuiop12",
    "qwertyuiopasdf",
    "welcome12345",
    "trustno1trustno1",
    "correcthorsebatterystaple",
    "correct horse battery staple",
];

impl Password {
    /// Shortest password accepted (NIST SP 800-63B's floor for single-factor).
    pub const MIN_CHARS: usize = 12;
    /// Longest password accepted (bounds the hashing work an attacker can ask for).
    pub const MAX_CHARS: usize = 128;

    /// Check `raw` against the policy; `email` is the account's own address.
    pub fn parse(raw: &str, email: &Email) -> Result<Self, Error> {
        let bad = |reason: &str| Err(Error::invalid("password", reason));
        let n = raw.chars().count();
        if n < Self::MIN_CHARS {
            return bad("must be at least 12 characters");
        }
        if n > Self::MAX_CHARS {
            return bad("must be at most 128 characters");
        }
        let mut chars = raw.chars();
        let first = chars.next();
        if chars.all(|c| Some(c) == first) {
            return bad("must not be one character repeated");
        }
        let lower = raw.trim().to_lowercase();
        if COMMON_PASSWORDS.contains(&lower.as_str()) {
            return bad("is one of the most common passwords");
        }
        if lower == email.as_str() {
            return bad("must not be the email address");
        }
        Ok(Self(raw.to_owned()))
    }

    /// The password in clear, for hashing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A name shown to people: 1 to 100 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// Parse.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let s = raw.trim();
        if s.chars().any(char::is_control) {
            return Err(Error::invalid(
                "display_name",
                "must not contain control characters",
            ));
        }
        match s.chars().count() {
            0 => Err(Error::invalid("display_name", "must not be empty")),
            n if n > 100 => Err(Error::invalid(
                "display_name",
                "must be at most 100 characters",
            )),
            _ => Ok(Self(s.to_owned())),
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The name a role is stored under.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Customer => "customer",
        Role::Admin => "admin",
    }
}

/// A stored role name back into a role.
pub fn parse_role(name: &str) -> Result<Role, Error> {
    match name {
        "customer" => Ok(Role::Customer),
        "admin" => Ok(Role::Admin),
        other => Err(Error::invalid("roles", format!("unknown role {other:?}"))),
    }
}

/// Roles as stored: names, comma separated, without duplicates, in a
/// stable order (customer before admin).
pub fn encode_roles(roles: &[Role]) -> String {
    let mut names: Vec<&str> = [Role::Customer, Role::Admin]
        .into_iter()
        .filter(|r| roles.contains(r))
        .map(role_name)
        .collect();
    names.dedup();
    names.join(",")
}

/// Stored roles back into roles.
pub fn decode_roles(text: &str) -> Result<Vec<Role>, Error> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(parse_role)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(s: &str) -> Email {
        Email::parse(s).unwrap()
    }

    #[test]
    fn email_is_trimmed_and_lower_cased_whole() {
        assert_eq!(
            email("  Ada.Lovelace@Example.COM ").as_str(),
            "ada.lovelace@example.com"
        );
        assert_eq!(email("a+tag@b.co").local_part(), "a+tag");
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "   ",
            "no-at-sign",
            "two@@example.com",
            "a@b@example.com",
            "@example.com",
            "ada@",
            "ada@localhost",
            "ada@example.",
            "ada@.example.com",
            "ada@exa..mple.com",
            "ada lovelace@example.com",
            "ada@exam\tple.com",
            "ada\u{0}@example.com",
        ] {
            let err = Email::parse(bad).unwrap_err();
            assert!(
                matches!(err, Error::Invalid { field: "email", .. }),
                "{bad:?} was accepted"
            );
        }
        let long = format!("{}@{}.com", "a".repeat(64), "b".repeat(200));
        assert!(Email::parse(&long).is_err(), "over 254 characters");
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn password_policy() {
        let e = email("ada.lovelace@example.com");
        assert!(Password::parse("tr0ub4dor&3-horse", &e).is_ok());
        for bad in [
            "short",
            "elevenchars",
            "aaaaaaaaaaaaaaaa",
            "password1234",
            "PassWord1234",
            "Ada.Lovelace@example.com",
        ] {
            let err = Password::parse(bad, &e).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Invalid {
                        field: "password",
                        ..
                    }
                ),
                "{bad:?} was accepted"
            );
        }
        assert!(Password::parse(&"ab".repeat(65), &e).is_err(), "over 128");
        assert!(Password::parse(&"ab".repeat(64), &e).is_ok(), "exactly 128");
    }

    #[test]
    fn password_debug_hides_it() {
        let p = Password::parse("tr0ub4dor&3-horse", &email("a@b.co")).unwrap();
        assert!(!format!("{p:?}").contains("tr0ub4dor"));
    }

    #[test]
    fn display_name_bounds() {
        assert_eq!(DisplayName::parse("  Ada ").unwrap().as_str(), "Ada");
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"x".repeat(101)).is_err());
        assert!(DisplayName::parse(&"é".repeat(100)).is_ok());
    }

    #[test]
    fn roles_round_trip_in_a_stable_order() {
        let text = encode_roles(&[Role::Admin, Role::Customer, Role::Admin]);
        assert_eq!(text, "customer,admin");
        assert_eq!(decode_roles(&text).unwrap(), [Role::Customer, Role::Admin]);
        assert!(decode_roles("root").is_err());
        assert!(decode_roles("").unwrap().is_empty());
    }
}
