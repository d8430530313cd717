//! The `--oauth-*` flags: which issuer, which keys, which lifetimes.

use std::{path::PathBuf, time::Duration};

/// How the gateway issues and checks OAuth 2.0 tokens.
#[derive(clap::Args, Clone, Debug)]
pub struct AuthSettings {
    /// Validate tokens of this external OpenID Connect issuer (its
    /// `/.well-known/openid-configuration` and JWKS) instead of running the
    /// built-in authorization server.
    #[arg(long = "oauth-issuer", env = "JETSHOP_OAUTH_ISSUER")]
    pub issuer: Option<url::Url>,
    /// The `aud` access tokens must carry (and ours are issued with).
    #[arg(
        long = "oauth-audience",
        env = "JETSHOP_OAUTH_AUDIENCE",
        default_value = "jetshop"
    )]
    pub audience: String,
    /// An Ed25519 PKCS#8 PEM private key to sign tokens with (overrides the key directory).
    #[arg(long = "oauth-signing-key", env = "JETSHOP_OAUTH_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
    /// Directory of signing keys: the newest `*.pem` signs, older ones stay
    /// published until their tokens expired; a key is generated when empty.
    #[arg(
        long = "oauth-key-dir",
        env = "JETSHOP_OAUTH_KEY_DIR",
        default_value = "data/oauth-keys"
    )]
    pub key_dir: Option<PathBuf>,
    /// Access-token lifetime.
    #[arg(long = "oauth-access-ttl", env = "JETSHOP_OAUTH_ACCESS_TTL", default_value = "15m", value_parser = humantime::parse_duration)]
    pub access_ttl: Duration,
    /// Refresh-token lifetime.
    #[arg(long = "oauth-refresh-ttl", env = "JETSHOP_OAUTH_REFRESH_TTL", default_value = "30days", value_parser = humantime::parse_duration)]
    pub refresh_ttl: Duration,
    /// Authorization-code lifetime.
    #[arg(long = "oauth-code-ttl", env = "JETSHOP_OAUTH_CODE_TTL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub code_ttl: Duration,
    /// The URL clients reach the gateway at (the token issuer, and the base
    /// of redirect URIs such as `<url>/docs/oauth-receiver.html`). Default:
    /// `http://<http-addr>`.
    #[arg(long = "public-url", env = "JETSHOP_PUBLIC_URL")]
    pub public_url: Option<url::Url>,
}

impl AuthSettings {
    /// Default access-token lifetime.
    pub const DEFAULT_ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
    /// Default refresh-token lifetime.
    pub const DEFAULT_REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
    /// Default authorization-code lifetime.
    pub const DEFAULT_CODE_TTL: Duration = Duration::from_secs(60);

    /// Defaults for tests and embedding: built-in issuer with an in-memory key.
    pub fn in_memory() -> Self {
        Self {
            issuer: None,
            audience: "jetshop".to_owned(),
            signing_key: None,
            key_dir: None,
            access_ttl: Self::DEFAULT_ACCESS_TTL,
            refresh_ttl: Self::DEFAULT_REFRESH_TTL,
            code_ttl: Self::DEFAULT_CODE_TTL,
            public_url: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        auth: AuthSettings,
    }

    #[test]
    fn defaults() {
        let s = Cli::try_parse_from(["gw"]).unwrap().auth;
        assert!(s.issuer.is_none());
        assert_eq!(s.audience, "jetshop");
        assert_eq!(s.key_dir, Some(PathBuf::from("data/oauth-keys")));
        assert_eq!(s.access_ttl, AuthSettings::DEFAULT_ACCESS_TTL);
        assert_eq!(s.refresh_ttl, AuthSettings::DEFAULT_REFRESH_TTL);
        assert_eq!(s.code_ttl, AuthSettings::DEFAULT_CODE_TTL);
    }

    #[test]
    fn external_issuer_and_lifetimes() {
        let s = Cli::try_parse_from([
            "gw",
            "--oauth-issuer",
            "http://idp.example:8081/realms/x",
            "--oauth-audience",
            "api",
            "--oauth-access-ttl",
            "5m",
        ])
        .unwrap()
        .auth;
        assert_eq!(
            s.issuer.unwrap().as_str(),
            "http://idp.example:8081/realms/x"
        );
        assert_eq!(s.audience, "api");
        assert_eq!(s.access_ttl, Duration::from_secs(300));
    }
}
