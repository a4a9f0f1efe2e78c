//! The edge of every response: security headers, CORS for an exact list of origins, HTTPS
//! enforcement behind a trusted proxy, and limits on the URL and header sizes.
//!
//! - Every response: `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`,
//!   `Referrer-Policy: no-referrer`; in production also `Strict-Transport-Security`.
//! - CORS (`M_CORS_ORIGINS`): an `Origin` equal to a listed origin gets
//!   `Access-Control-Allow-Origin: <that origin>` (never `*`, never credentials); preflights from
//!   other origins are refused (403) and their responses carry no CORS headers.
//! - HTTPS (production): a request that a trusted proxy (`M_TRUSTED_PROXIES`, by peer address)
//!   marks `X-Forwarded-Proto: http` is redirected to `https://` (GET, HEAD: 308) or refused
//!   (others: 403 `https_required`). `X-Forwarded-*` from any other peer is ignored.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
pub use crate::config::Net;
use crate::config::Origin;

/// Edge settings, from the configuration.
#[derive(Debug, Clone, Default)]
pub struct Edge {
    pub cors_origins: Vec<Origin>,
    pub trusted_proxies: Vec<Net>,
    pub production: bool,
    pub max_url_bytes: usize,
    pub max_header_bytes: usize,
}

const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
const ALLOW_HEADERS: &str = "authorization, content-type, if-match, x-request-id";

fn add_security_headers(headers: &mut HeaderMap, production: bool) {
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if production {
        headers
            .insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    }
}

/// The answer to a request that came over plain HTTP where only HTTPS is served: a GET or HEAD
/// is redirected (308) to the same URL over `https://`; anything else is a 403 `https_required`.
pub fn to_https(method: &Method, host: Option<&str>, path: &str) -> Response {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return error(StatusCode::FORBIDDEN, "https_required", "this API is only served over HTTPS");
    }
    let Some(host) = host.filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic())) else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "no host to redirect to");
    };
    let mut res = StatusCode::PERMANENT_REDIRECT.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("https://{host}{path}")) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// Security headers on a response made outside the router (the TLS listener's plain-HTTP
/// answers).
pub fn secure(mut res: Response, production: bool) -> Response {
    add_security_headers(res.headers_mut(), production);
    res
}

fn error(status: StatusCode, code: &'static str, message: &str) -> Response {
    ApiError::Edge { status, code, message: message.to_string() }.into_response()
}

pub async fn middleware(State(edge): State<Arc<Edge>>, req: Request, next: Next) -> Response {
    let production = edge.production;
    let mut res = handle(&edge, req, next).await;
    add_security_headers(res.headers_mut(), production);
    res
}

async fn handle(edge: &Edge, req: Request, next: Next) -> Response {
    // Limits a proxy or client could otherwise use to make every request expensive.
    let url_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if url_len > edge.max_url_bytes {
        return error(StatusCode::URI_TOO_LONG, "uri_too_long", "the URL is too long");
    }
    let header_bytes: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if header_bytes > edge.max_header_bytes {
        return error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            "the request headers are too large",
        );
    }

    // HTTPS, as a trusted proxy reports it.
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let trusted = peer.is_some_and(|ip| edge.trusted_proxies.iter().any(|n| n.contains(ip)));
    if edge.production && trusted {
        let proto = req.headers().get("x-forwarded-proto").and_then(|v| v.to_str().ok()).unwrap_or("");
        if proto.eq_ignore_ascii_case("http") {
            let host = req
                .headers()
                .get("x-forwarded-host")
                .or_else(|| req.headers().get(header::HOST))
                .and_then(|v| v.to_str().ok());
            return to_https(req.method(), host, req.uri().path_and_query().map_or("/", |p| p.as_str()));
        }
    }

    // CORS: exact origins only.
    let origin = req.headers().get(header::ORIGIN).cloned();
    let allowed = origin
        .as_ref()
        .and_then(|o| o.to_str().ok())
        .is_some_and(|o| edge.cors_origins.iter().any(|a| a.as_str() == o));
    let preflight =
        req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        if !allowed {
            return error(StatusCode::FORBIDDEN, "cors_forbidden", "this origin may not call the API");
        }
        let mut res = StatusCode::NO_CONTENT.into_response();
        let h = res.headers_mut();
        if let Some(o) = origin {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        }
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOW_METHODS));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOW_HEADERS));
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        h.insert(header::VARY, HeaderValue::from_static("origin"));
        return res;
    }
    let mut res = next.run(req).await;
    if allowed && let Some(o) = origin {
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("etag, location, x-request-id, retry-after"),
        );
        h.append(header::VARY, HeaderValue::from_static("origin"));
    } else if origin.is_some() {
        res.headers_mut().append(header::VARY, HeaderValue::from_static("origin"));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let n = Net::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.0.0.1".parse().unwrap()), "IPv4-mapped IPv6 peers match IPv4 networks");
        let one = Net::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(Net::parse("fd00::/8").unwrap().contains("fd12::1".parse().unwrap()));
        assert!(Net::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert_eq!(Net::parse("10.0.0.0/33"), None);
        assert_eq!(Net::parse("nonsense"), None);
    }
}
