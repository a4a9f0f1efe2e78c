//! `GET /ready`: whether this instance can serve, as `application/health+json` (the IETF
//! health-check draft): the database answers `SELECT 1` quickly, its migrations are at the
//! revisions this build expects, and Redis (when configured) answers PING — Redis only warns,
//! since the application runs without it, as does an outside target whose circuit breaker is
//! open (a webhook's host). 200 when ready (`pass` or `warn`), 503 otherwise.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::ApiState;
use crate::config::percent_decode;
use crate::repo::Repo;

/// What readiness checks against.
pub struct Readiness {
    /// Revision ids the database must have applied.
    pub revisions: Vec<String>,
    /// `REDIS_URL`, when configured.
    pub redis_url: Option<String>,
    /// The outside targets' circuit breakers (webhook hosts, SMTP, Gotenberg).
    pub breakers: crate::breaker::Breakers,
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

fn check(status: &str, extra: Json) -> Json {
    let mut c =
        json!({ "status": status, "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true) });
    if let (Some(map), Json::Object(more)) = (c.as_object_mut(), extra) {
        map.extend(more);
    }
    c
}

async fn database(repo: &Repo) -> Json {
    let started = Instant::now();
    match tokio::time::timeout(CHECK_TIMEOUT, repo.ping()).await {
        Ok(Ok(())) => {
            check("pass", json!({ "observedValue": started.elapsed().as_secs_f64() * 1000.0, "observedUnit": "ms" }))
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the database check failed");
            check("fail", json!({ "output": "the database cannot be reached" }))
        }
        Err(_) => check("fail", json!({ "output": format!("no answer within {} s", CHECK_TIMEOUT.as_secs()) })),
    }
}

async fn migrations(repo: &Repo, expected: &[String]) -> Json {
    match tokio::time::timeout(CHECK_TIMEOUT, repo.applied_revisions()).await {
        Ok(Ok(applied)) => {
            let missing: Vec<&String> = expected.iter().filter(|id| !applied.contains(id)).collect();
            if missing.is_empty() {
                check("pass", json!({ "observedValue": applied.len() }))
            } else {
                tracing::warn!(revisions = ?missing, "readiness: revisions not applied");
                check("fail", json!({ "output": format!("{} revision(s) not applied", missing.len()) }))
            }
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the migrations check failed");
            check("fail", json!({ "output": "the migration history cannot be read" }))
        }
        Err(_) => check("fail", json!({ "output": "no answer" })),
    }
}

/// `host:port` of a `redis://[user:password@]host[:port][/db][?…]` URL.
fn redis_addr(host: &str) -> String {
    let host = host.split(['/', '?']).next().unwrap_or(host);
    let has_port = match host.rfind(']') {
        Some(end) => host[end..].contains(':'),
        None => host.contains(':'),
    };
    if has_port { host.to_string() } else { format!("{host}:6379") }
}

/// PING over RESP on a plain TCP connection (AUTH first when the URL carries a password).
async fn redis_ping(url: &str) -> Result<(), String> {
    if url.starts_with("rediss://") {
        return Err("TLS (rediss://) is not checked by this build".into());
    }
    let rest = url.strip_prefix("redis://").ok_or("only redis:// URLs are checked")?;
    let (auth, host) = match rest.split(['/', '?']).next().unwrap_or(rest).rsplit_once('@') {
        Some((a, _)) => (Some(a), rest.rsplit_once('@').map_or(rest, |(_, h)| h)),
        None => (None, rest),
    };
    let addr = redis_addr(host);
    let mut stream = tokio::net::TcpStream::connect(&addr).await.map_err(|e| format!("cannot connect: {e}"))?;
    let mut command = Vec::new();
    if let Some(auth) = auth {
        let (user, pass) = auth.split_once(':').unwrap_or(("", auth));
        let (user, pass) = (percent_decode(user), percent_decode(pass));
        let args: Vec<&str> = if user.is_empty() { vec!["AUTH", &pass] } else { vec!["AUTH", &user, &pass] };
        command.extend(format!("*{}\r\n", args.len()).bytes());
        for a in args {
            command.extend(format!("${}\r\n{a}\r\n", a.len()).bytes());
        }
    }
    command.extend(b"*1\r\n$4\r\nPING\r\n");
    stream.write_all(&command).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 256];
    let mut got = String::new();
    while !got.contains("PONG") {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
        if got.starts_with('-') || got.contains("\r\n-") {
            return Err(got.trim().to_string());
        }
    }
    Ok(())
}

async fn redis(url: &str) -> Json {
    let started = Instant::now();
    match tokio::time::timeout(CHECK_TIMEOUT, redis_ping(url)).await {
        Ok(Ok(())) => {
            check("pass", json!({ "observedValue": started.elapsed().as_secs_f64() * 1000.0, "observedUnit": "ms" }))
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: Redis does not answer");
            check("warn", json!({ "output": "Redis does not answer" }))
        }
        Err(_) => check("warn", json!({ "output": "no answer" })),
    }
}

pub async fn ready(State(state): State<ApiState>, _: super::NoQuery) -> Response {
    let r = &state.ready;
    let mut checks = serde_json::Map::new();
    // All checks at once, so the answer comes within one check's timeout.
    let redis_check = async {
        match &r.redis_url {
            Some(url) => Some(redis(url).await),
            None => None,
        }
    };
    let (db, mig, cache) = tokio::join!(database(&state.repo), migrations(&state.repo, &r.revisions), redis_check);
    checks.insert("database:responseTime".into(), json!([db]));
    checks.insert("migrations:applied".into(), json!([mig]));
    if let Some(c) = cache {
        checks.insert("redis:responseTime".into(), json!([c]));
    }
    // An outside target whose breaker is open (a webhook host, …) warns: this instance serves.
    // Counted by kind (`webhook`, `smtp`, `gotenberg`): the page is public, webhook hosts are not.
    let mut kinds: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for (name, _) in r.breakers.not_closed() {
        *kinds.entry(name.split(':').next().unwrap_or_default().to_string()).or_default() += 1;
    }
    let open: Vec<Json> = kinds
        .into_iter()
        .map(|(kind, n)| {
            check("warn", json!({ "componentId": kind, "observedValue": n, "observedUnit": "open breakers" }))
        })
        .collect();
    if !open.is_empty() {
        checks.insert("circuitBreakers:state".into(), Json::Array(open));
    }
    let statuses: Vec<&str> =
        checks.values().filter_map(|v| v.get(0).and_then(|c| c.get("status")).and_then(Json::as_str)).collect();
    let overall = if statuses.contains(&"fail") {
        "fail"
    } else if statuses.contains(&"warn") {
        "warn"
    } else {
        "pass"
    };
    let code = if overall == "fail" { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    let body = json!({ "status": overall, "checks": checks });
    let mut res = (code, serde_json::to_vec(&body).unwrap_or_default()).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/health+json"));
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls() {
        assert_eq!(redis_addr("cache:6380/2?x=1"), "cache:6380");
        assert_eq!(redis_addr("cache"), "cache:6379");
        assert_eq!(redis_addr("[::1]"), "[::1]:6379");
        assert_eq!(redis_addr("[::1]:7000"), "[::1]:7000");
        assert_eq!(percent_decode("p%40ss%3Aword"), "p@ss:word");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
