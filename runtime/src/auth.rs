//! Authentication: which user a request's credentials name (the README's identity section).
//!
//! With a key configured, a bearer JWT is required: HS256 with `M_JWT_SECRET`, or RS256 / ES256 /
//! EdDSA with a key from the JWKS at `M_JWT_JWKS_URL`, chosen by `kid`. The algorithm comes from
//! the server, never from the token. `exp`, `iat` and `sub` are required, and `iss` / `aud` when
//! `M_JWT_ISSUER` / `M_JWT_AUDIENCE` are set; `nbf` and `iat` are checked with 30 s of leeway;
//! claims of the wrong type (a string `exp`) make the token invalid. `sub` names the user; roles
//! and whether the user may still act come from the database (`crate::users`), never from the
//! token. Without a key, in development, requests act as the built-in Administrator.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::perms::ADMINISTRATOR;

/// The process-wide crypto provider (ring), for the TLS listener and for `https://` clients
/// (JWKS, trace exporters).
pub fn install_crypto_provider() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// A string or an array of strings (checked by the JWT library).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
}

impl Claims {
    /// A token for `sub`, issued now and valid for `ttl` seconds, with the issuer and audience
    /// the server expects (when configured).
    pub fn issued_now(sub: String, ttl: u64, issuer: Option<String>, audience: Option<String>) -> Claims {
        let now = unix_now();
        Claims {
            sub,
            exp: now + ttl.max(1),
            iat: Some(now),
            nbf: None,
            iss: issuer,
            aud: audience.map(serde_json::Value::String),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required")]
    Missing,
    #[error("invalid token")]
    Invalid,
}

/// Who a verified token names, and when it was issued (`iat`, when it says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub user: String,
    pub issued_at: Option<u64>,
}

/// How requests are authenticated (shared behind an `Arc`; never cloned per request).
pub enum Authenticator {
    /// No key (development): every request is the Administrator.
    DevAdministrator,
    /// Bearer JWTs.
    Jwt(Box<JwtAuth>),
}

/// Verifying JWTs: the keys, the expected issuer and audience, and the verified-token cache.
pub struct JwtAuth {
    keys: Keys,
    issuer: Option<String>,
    audience: Option<String>,
    verified: VerifiedTokens,
    /// Signs the login's tokens (HS256 with `M_JWT_SECRET`; none with a JWKS).
    signer: Option<EncodingKey>,
}

enum Keys {
    /// HS256 with the shared `M_JWT_SECRET`.
    Hs256(DecodingKey),
    /// RS256 / ES256 / EdDSA public keys from a JWKS (`M_JWT_JWKS_URL`), chosen by `kid`.
    Jwks(Jwks),
}

/// Algorithms accepted from a JWKS. The token's `alg` must be one of these *and* the key's own.
const ASYMMETRIC: &[Algorithm] = &[Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
const LEEWAY: u64 = 30;

/// A JWKS, reloaded when a token names an unknown `kid` (at most once a minute).
struct Jwks {
    /// An `https://` or `http://` URL, or a file (`file://` URL or path).
    source: String,
    keys: std::sync::RwLock<std::collections::HashMap<String, (DecodingKey, Algorithm)>>,
    last_load: tokio::sync::Mutex<Option<std::time::Instant>>,
}

const JWKS_REFRESH: std::time::Duration = std::time::Duration::from_secs(60);

/// Why a JWKS could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JwksError(String);

async fn fetch_jwks(source: &str) -> Result<String, JwksError> {
    if source.starts_with("http://") || source.starts_with("https://") {
        // `https://` is verified against the system's roots (or `SSL_CERT_FILE`).
        install_crypto_provider();
        let url = source.to_string();
        return tokio::task::spawn_blocking(move || -> Result<String, JwksError> {
            let client = reqwest::blocking::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()
                .map_err(|e| JwksError(e.to_string()))?;
            let res = client.get(&url).send().map_err(|e| JwksError(format!("fetching {url}: {e}")))?;
            if !res.status().is_success() {
                return Err(JwksError(format!("fetching {url}: HTTP {}", res.status())));
            }
            res.text().map_err(|e| JwksError(e.to_string()))
        })
        .await
        .map_err(|e| JwksError(e.to_string()))?;
    }
    let path = source.strip_prefix("file://").unwrap_or(source).to_string();
    tokio::fs::read_to_string(&path).await.map_err(|e| JwksError(format!("reading {path}: {e}")))
}

fn parse_jwks(text: &str) -> Result<std::collections::HashMap<String, (DecodingKey, Algorithm)>, JwksError> {
    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(text).map_err(|e| JwksError(format!("not a JWKS: {e}")))?;
    let mut keys = std::collections::HashMap::new();
    for jwk in &set.keys {
        // Keys without a kid or an allowed algorithm are skipped: a token must name its key.
        let (Some(kid), Some(alg)) = (jwk.common.key_id.clone(), jwk.common.key_algorithm) else { continue };
        let Ok(alg) = alg.to_string().parse::<Algorithm>() else { continue };
        if !ASYMMETRIC.contains(&alg) {
            continue;
        }
        if let Ok(key) = DecodingKey::from_jwk(jwk) {
            keys.insert(kid, (key, alg));
        }
    }
    Ok(keys)
}

impl Jwks {
    async fn load(&self) -> Result<(), JwksError> {
        let keys = parse_jwks(&fetch_jwks(&self.source).await?)?;
        if let Ok(mut k) = self.keys.write() {
            *k = keys;
        }
        Ok(())
    }

    fn key(&self, kid: &str) -> Option<(DecodingKey, Algorithm)> {
        self.keys.read().ok()?.get(kid).cloned()
    }

    /// The key for `kid`, reloading the set once if it is unknown and the last load is a minute old.
    async fn key_or_reload(&self, kid: &str) -> Option<(DecodingKey, Algorithm)> {
        if let Some(k) = self.key(kid) {
            return Some(k);
        }
        let mut last = self.last_load.lock().await;
        if last.is_some_and(|t| t.elapsed() < JWKS_REFRESH) {
            return self.key(kid);
        }
        *last = Some(std::time::Instant::now());
        if let Err(e) = self.load().await {
            tracing::warn!(error = %e, "cannot reload the JWKS");
        }
        self.key(kid)
    }
}

/// Tokens already verified, with their user and expiry: a client sends the same token on
/// every request, and a token cannot change, so it is checked once and then looked up until it
/// expires. Bounded: when full it is emptied.
#[derive(Default)]
pub struct VerifiedTokens {
    map: std::sync::RwLock<std::collections::HashMap<String, (Arc<Subject>, u64)>>,
}

const MAX_VERIFIED_TOKENS: usize = 10_000;

impl VerifiedTokens {
    fn get(&self, token: &str, now: u64) -> Option<Arc<Subject>> {
        let map = self.map.read().ok()?;
        map.get(token).filter(|(_, exp)| now < *exp).map(|(p, _)| p.clone())
    }

    fn put(&self, token: &str, principal: &Arc<Subject>, exp: u64) {
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

/// What `iss` and `aud` must be, when configured.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

impl Authenticator {
    pub fn hs256(secret: &[u8]) -> Authenticator {
        Self::hs256_with(secret, Expected::default())
    }

    pub fn hs256_with(secret: &[u8], expected: Expected) -> Authenticator {
        Authenticator::Jwt(Box::new(JwtAuth {
            keys: Keys::Hs256(DecodingKey::from_secret(secret)),
            issuer: expected.issuer,
            audience: expected.audience,
            verified: VerifiedTokens::default(),
            signer: Some(EncodingKey::from_secret(secret)),
        }))
    }

    /// Keys from a JWKS (loaded now; a server does not start with an unreadable one).
    pub async fn jwks(source: &str, expected: Expected) -> Result<Authenticator, JwksError> {
        let jwks =
            Jwks { source: source.to_string(), keys: Default::default(), last_load: tokio::sync::Mutex::new(None) };
        jwks.load().await?;
        Ok(Authenticator::Jwt(Box::new(JwtAuth {
            keys: Keys::Jwks(jwks),
            issuer: expected.issuer,
            audience: expected.audience,
            verified: VerifiedTokens::default(),
            signer: None,
        })))
    }

    /// The user an `Authorization` header value (or its absence) names. Any token that does not
    /// verify is `Invalid` (a 401), never anonymous.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Arc<Subject>, AuthError> {
        let jwt = match self {
            Authenticator::DevAdministrator => {
                return match authorization {
                    // A token sent to a server without a key cannot be verified: refuse it rather
                    // than silently acting as someone else.
                    Some(_) => Err(AuthError::Invalid),
                    None => Ok(Arc::new(Subject { user: ADMINISTRATOR.into(), issued_at: None })),
                };
            }
            Authenticator::Jwt(j) => j,
        };
        let header = authorization.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Invalid)?;
        let now = unix_now();
        if let Some(principal) = jwt.verified.get(token, now) {
            crate::metrics::cache_lookup("token", true);
            return Ok(principal);
        }
        crate::metrics::cache_lookup("token", false);
        let head = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        // The algorithm is the server's choice: the token's `alg` only has to agree with it.
        let (key, alg) = match &jwt.keys {
            Keys::Hs256(key) => (key.clone(), Algorithm::HS256),
            Keys::Jwks(set) => {
                let kid = head.kid.as_deref().ok_or(AuthError::Invalid)?;
                set.key_or_reload(kid).await.ok_or(AuthError::Invalid)?
            }
        };
        if head.alg != alg {
            return Err(AuthError::Invalid);
        }
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.leeway = LEEWAY;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &jwt.issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &jwt.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|_| AuthError::Invalid)?;
        let claims = data.claims;
        // `iat` is required: without it a token could not be compared with the user's creation
        // or last password change.
        if claims.sub.trim().is_empty() || claims.iat.is_none_or(|iat| iat > now + LEEWAY) {
            return Err(AuthError::Invalid);
        }
        // The built-in Administrator is this server's own account: an identity provider's token
        // never names it (administrators there are users with the System Manager role).
        if matches!(jwt.keys, Keys::Jwks(_)) && claims.sub.trim().eq_ignore_ascii_case(ADMINISTRATOR) {
            return Err(AuthError::Invalid);
        }
        let principal = Arc::new(Subject { user: claims.sub, issued_at: claims.iat });
        // Cached until `exp` itself (the leeway applies to the first check only).
        jwt.verified.put(token, &principal, claims.exp);
        Ok(principal)
    }
}

impl Authenticator {
    /// A token for `user` from the login (HS256 with `M_JWT_SECRET`, with the configured issuer
    /// and audience), or None when this server verifies tokens it cannot issue (a JWKS, or
    /// development without a key).
    pub fn can_issue(&self) -> bool {
        matches!(self, Authenticator::Jwt(jwt) if jwt.signer.is_some())
    }

    pub fn issue(&self, user: &str, ttl: u64) -> Option<String> {
        let Authenticator::Jwt(jwt) = self else { return None };
        let key = jwt.signer.as_ref()?;
        let claims = Claims::issued_now(user.to_string(), ttl, jwt.issuer.clone(), jwt.audience.clone());
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key).ok()
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

    fn claims() -> Claims {
        Claims { sub: "a@x.com".into(), exp: now() + 60, iat: Some(now()), nbf: None, iss: None, aud: None }
    }

    #[tokio::test]
    async fn tokens_are_checked() {
        let key = b"0123456789abcdef0123456789abcdef";
        let auth = Authenticator::hs256(key);
        let token = sign_hs256(key, &claims()).unwrap();
        let p = auth.authenticate(Some(&format!("Bearer {token}"))).await.unwrap();
        assert_eq!(p.user, "a@x.com");
        // The second use is answered from the verified-token cache, with the same principal.
        assert_eq!(auth.authenticate(Some(&format!("Bearer {token}"))).await.unwrap(), p);
        assert_eq!(auth.authenticate(None).await, Err(AuthError::Missing));
        assert_eq!(auth.authenticate(Some("Bearer nope")).await, Err(AuthError::Invalid));
        let expired = Claims { exp: now() - 3600, ..claims() };
        let token = sign_hs256(key, &expired).unwrap();
        assert_eq!(auth.authenticate(Some(&format!("Bearer {token}"))).await, Err(AuthError::Invalid));
        let other = sign_hs256(b"another-key-another-key-another-key", &claims()).unwrap();
        assert_eq!(auth.authenticate(Some(&format!("Bearer {other}"))).await, Err(AuthError::Invalid));
        let no_iat = sign_hs256(key, &Claims { iat: None, ..claims() }).unwrap();
        assert_eq!(auth.authenticate(Some(&format!("Bearer {no_iat}"))).await, Err(AuthError::Invalid));
    }
}
