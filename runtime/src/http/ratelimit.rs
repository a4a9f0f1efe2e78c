//! Per-user and per-address rate limits on the API (see `crate::ratelimit`). An authenticated
//! request counts against its user (`M_RATE_LIMIT_API` per minute); one without a valid token
//! against its client address (`M_RATE_LIMIT_ANON`). In development without a key, requests
//! act as the Administrator and count against that user. The address is the connection's peer, or —
//! when that peer is a trusted proxy — the right-most `X-Forwarded-For` entry that is not one.
//! Every limited response says where the caller stands (`RateLimit-Policy`, `RateLimit`); a 429
//! adds `Retry-After`. Health and metrics endpoints are not limited.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::authenticate::Authenticated;
use super::{ApiError, ApiState, Net};
use crate::ratelimit::{Decision, Limiter, Policy};

/// The limiter and its policies.
pub struct RateLimits {
    pub limiter: Limiter,
    pub api: Policy,
    pub anon: Policy,
    /// Login attempts, per account and per client address.
    pub login: Policy,
    pub trusted_proxies: Vec<Net>,
}

/// The client's address: the peer, unless it is a trusted proxy.
pub fn client_ip(headers: &HeaderMap, peer: Option<IpAddr>, trusted: &[Net]) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    Some(forwarded.into_iter().rev().find(|ip| !is_trusted(*ip)).unwrap_or(peer))
}

fn describe(headers: &mut HeaderMap, policy: Policy, d: Decision) {
    let p = format!("\"{}\";q={};w={}", policy.name, policy.limit, policy.window.as_secs());
    let r = format!("\"{}\";r={};t={}", policy.name, d.remaining, d.reset_secs);
    for (name, value) in [("ratelimit-policy", p), ("ratelimit", r)] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
}

impl RateLimits {
    /// Count one request against `key`: the decision when allowed, or the 429 to answer with
    /// (counted in the metrics).
    pub async fn check(&self, key: &str, policy: Policy) -> Result<Decision, Response> {
        let decision = self.limiter.check(key, policy).await;
        if decision.allowed {
            return Ok(decision);
        }
        crate::metrics::rate_limited(policy.name);
        let mut res = ApiError::RateLimited(decision.reset_secs).into_response();
        describe(res.headers_mut(), policy, decision);
        Err(res)
    }

    /// The client address of a request, as text (`unknown` without a peer).
    pub fn client(&self, req: &Request) -> String {
        let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        client_ip(req.headers(), peer, &self.trusted_proxies).map_or_else(|| "unknown".to_string(), |ip| ip.to_string())
    }
}

/// Count the request against its user (a valid token) or its client address (anything else),
/// from the outcome the authentication step recorded.
pub async fn middleware(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let limits: &Arc<RateLimits> = &state.rate_limits;
    if super::authenticate::is_unmetered(req.uri().path()) {
        return next.run(req).await;
    }
    let user = match req.extensions().get::<Authenticated>() {
        Some(Authenticated(Ok(subject))) => Some(subject.user.clone()),
        _ => None,
    };
    let (key, policy) = match user {
        Some(u) => (format!("user:{u}"), limits.api),
        None => (format!("ip:{}", limits.client(&req)), limits.anon),
    };
    let decision = match limits.check(&key, policy).await {
        Ok(d) => d,
        Err(refused) => return refused,
    };
    let mut res = next.run(req).await;
    describe(res.headers_mut(), policy, decision);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_the_rightmost_untrusted_address() {
        let trusted = vec![Net::parse("10.0.0.0/8").unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6, 203.0.113.9, 10.0.0.7"));
        let peer = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // From a trusted proxy: the right-most address that is not a proxy (a client can prepend
        // anything, but not what the proxies append).
        assert_eq!(client_ip(&h, peer("10.0.0.2"), &trusted), peer("203.0.113.9"));
        // From anyone else, the header means nothing.
        assert_eq!(client_ip(&h, peer("198.51.100.4"), &trusted), peer("198.51.100.4"));
        assert_eq!(client_ip(&HeaderMap::new(), peer("10.0.0.2"), &trusted), peer("10.0.0.2"));
    }
}
