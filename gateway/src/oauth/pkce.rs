//! RFC 7636 proof key for code exchange. Only `S256` is accepted: `plain`
//! would let whoever sees the authorization request redeem the code.

use sha2::{Digest, Sha256};

use crate::oauth::{b64url, constant_time_eq};

/// The one accepted method.
pub const S256: &str = "S256";

/// Whether `s` is a valid verifier or challenge: 43 to 128 characters of
/// `A-Z a-z 0-9 - . _ ~`.
pub fn is_well_formed(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The S256 challenge of a verifier.
pub fn challenge(verifier: &str) -> String {
    b64url(&Sha256::digest(verifier.as_bytes()))
}

/// Whether `verifier` answers the S256 `challenge`.
pub fn verify(verifier: &str, challenge_s256: &str) -> bool {
    is_well_formed(verifier)
        && constant_time_eq(challenge(verifier).as_bytes(), challenge_s256.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let expected = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(challenge(verifier), expected);
        assert!(verify(verifier, expected));
        assert!(!verify(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXx",
            expected
        ));
    }

    #[test]
    fn verifiers_are_checked_for_shape() {
        assert!(!is_well_formed("short"));
        assert!(!is_well_formed(&"a".repeat(129)));
        assert!(!is_well_formed(&format!("{}+", "a".repeat(43))));
        assert!(is_well_formed(&"a~._-".repeat(10)));
    }
}
