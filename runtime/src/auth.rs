//! Authentication: turn a request's credentials into a [`Principal`] (the README's identity section).
//!
//! With a key configured, a bearer HS256 JWT is required: `sub` names the user and the `roles`
//! claim lists roles (until users live in the database). The algorithm comes from the server,
//! never from the token; `exp` and `sub` are required. Without a key, in development, requests
//! act as the built-in Administrator.

use std::sync::Arc;

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
    Hs256 { decoding: DecodingKey, validation: Validation, verified: VerifiedTokens },
}

/// Tokens already verified, with their principal and expiry: a client sends the same token on
/// every request, and a token cannot change, so it is checked once and then looked up until it
/// expires. Bounded: when full it is emptied.
#[derive(Default)]
pub struct VerifiedTokens {
    map: std::sync::RwLock<std::collections::HashMap<String, (Arc<Principal>, u64)>>,
}

const MAX_VERIFIED_TOKENS: usize = 10_000;

impl VerifiedTokens {
    fn get(&self, token: &str, now: u64) -> Option<Arc<Principal>> {
        let map = self.map.read().ok()?;
        map.get(token).filter(|(_, exp)| now < *exp).map(|(p, _)| p.clone())
    }

    fn put(&self, token: &str, principal: &Arc<Principal>, exp: u64) {
        if let Ok(mut map) = self.map.write() {
            if map.len() >= MAX_VERIFIED_TOKENS {
                map.clear();
            }
            map.insert(token.to_string(), (principal.clone(), exp));
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Authenticator {
    pub fn hs256(secret: &[u8]) -> Authenticator {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = 30;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Authenticator::Hs256 {
            decoding: DecodingKey::from_secret(secret),
            validation,
            verified: VerifiedTokens::default(),
        }
    }

    /// The principal for an `Authorization` header value (or its absence).
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Arc<Principal>, AuthError> {
        match self {
            Authenticator::DevAdministrator => match authorization {
                // A token sent to a server without a key cannot be verified: refuse it rather than
                // silently acting as someone else.
                Some(_) => Err(AuthError::Invalid),
                None => Ok(Arc::new(Principal::administrator())),
            },
            Authenticator::Hs256 { decoding, validation, verified } => {
                let header = authorization.ok_or(AuthError::Missing)?;
                let token = header
                    .strip_prefix("Bearer ")
                    .or_else(|| header.strip_prefix("bearer "))
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .ok_or(AuthError::Invalid)?;
                let now = unix_now();
                if let Some(principal) = verified.get(token, now) {
                    crate::metrics::cache_lookup("token", true);
                    return Ok(principal);
                }
                crate::metrics::cache_lookup("token", false);
                let data =
                    jsonwebtoken::decode::<Claims>(token, decoding, validation).map_err(|_| AuthError::Invalid)?;
                if data.claims.sub.trim().is_empty() {
                    return Err(AuthError::Invalid);
                }
                let principal = Arc::new(Principal { user: data.claims.sub, roles: data.claims.roles });
                // Cached until `exp` itself (the leeway applies to the first check only).
                verified.put(token, &principal, data.claims.exp);
                Ok(principal)
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
        // The second use is answered from the verified-token cache, with the same principal.
        assert_eq!(auth.authenticate(Some(&format!("Bearer {token}"))).unwrap(), p);
        assert_eq!(auth.authenticate(None), Err(AuthError::Missing));
        assert_eq!(auth.authenticate(Some("Bearer nope")), Err(AuthError::Invalid));
        let expired = Claims { exp: now() - 3600, ..claims.clone() };
        let token = sign_hs256(key, &expired).unwrap();
        assert_eq!(auth.authenticate(Some(&format!("Bearer {token}"))), Err(AuthError::Invalid));
        let other = sign_hs256(b"another-key-another-key-another-key", &claims).unwrap();
        assert_eq!(auth.authenticate(Some(&format!("Bearer {other}"))), Err(AuthError::Invalid));
    }
}
