//! Authentication: turn a request's credentials into a [`Principal`] (DESIGN.md §4).
//!
//! With a key configured, a bearer HS256 JWT is required: `sub` names the user and the `roles`
//! claim lists roles (until users live in the database). The algorithm comes from the server,
//! never from the token; `exp` and `sub` are required. Without a key, in development, requests
//! act as the built-in Administrator.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::perms::Principal;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required")]
    Missing,
    #[error("invalid token")]
    Invalid,
}

/// How requests are authenticated (shared behind an `Arc`; never cloned per request).
#[expect(clippy::large_enum_variant, reason = "one instance per server")]
pub enum Authenticator {
    /// No key (development): every request is the Administrator.
    DevAdministrator,
    /// HS256 with a shared key.
    Hs256 { decoding: DecodingKey, validation: Validation },
}

impl Authenticator {
    pub fn hs256(secret: &[u8]) -> Authenticator {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = 30;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Authenticator::Hs256 { decoding: DecodingKey::from_secret(secret), validation }
    }

    /// The principal for an `Authorization` header value (or its absence).
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        match self {
            Authenticator::DevAdministrator => match authorization {
                // A token sent to a server without a key cannot be verified: refuse it rather than
                // silently acting as someone else.
                Some(_) => Err(AuthError::Invalid),
                None => Ok(Principal::administrator()),
            },
            Authenticator::Hs256 { decoding, validation } => {
                let header = authorization.ok_or(AuthError::Missing)?;
                let token = header
                    .strip_prefix("Bearer ")
                    .or_else(|| header.strip_prefix("bearer "))
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .ok_or(AuthError::Invalid)?;
                let data =
                    jsonwebtoken::decode::<Claims>(token, decoding, validation).map_err(|_| AuthError::Invalid)?;
                if data.claims.sub.trim().is_empty() {
                    return Err(AuthError::Invalid);
                }
                Ok(Principal { user: data.claims.sub, roles: data.claims.roles })
            }
        }
    }
}

/// Sign an HS256 token (tests and local tooling).
pub fn sign_hs256(secret: &[u8], claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    #[test]
    fn tokens_are_checked() {
        let key = b"0123456789abcdef0123456789abcdef";
        let auth = Authenticator::hs256(key);
        let claims =
            Claims { sub: "a@x.com".into(), exp: now() + 60, roles: vec!["Sales User".into()], iat: None, nbf: None };
        let token = sign_hs256(key, &claims).unwrap();
        let p = auth.authenticate(Some(&format!("Bearer {token}"))).unwrap();
        assert_eq!(p.user, "a@x.com");
        assert_eq!(auth.authenticate(None), Err(AuthError::Missing));
        assert_eq!(auth.authenticate(Some("Bearer nope")), Err(AuthError::Invalid));
        let expired = Claims { exp: now() - 3600, ..claims.clone() };
        let token = sign_hs256(key, &expired).unwrap();
        assert_eq!(auth.authenticate(Some(&format!("Bearer {token}"))), Err(AuthError::Invalid));
        let other = sign_hs256(b"another-key-another-key-another-key", &claims).unwrap();
        assert_eq!(auth.authenticate(Some(&format!("Bearer {other}"))), Err(AuthError::Invalid));
    }
}
