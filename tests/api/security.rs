//! The edge: security headers, CORS for exact origins (lookalikes refused), HTTPS behind a
//! trusted proxy, URL and header limits — on SQLite and PostgreSQL.

use std::net::SocketAddr;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::runtime::{spawn_binary, terminate};
use crate::support::{Scratch, TestApp};

const APP: &str = "https://app.example.com";

crate::both_backends!(every_response_has_security_headers, |backend| {
    let Some((app, _)) = TestApp::start_with(backend, |_| {}).await else { return };
    for r in [
        app.get("/api/v1/Territory").send().await,
        app.get("/api/v1/Nope").send().await,
        app.get("/api/v1/Territory").by("garbage".into()).send().await,
        app.get("/health").anonymous().send().await,
    ] {
        assert_eq!(r.header("x-content-type-options").as_deref(), Some("nosniff"), "{}", r.status);
        assert_eq!(r.header("x-frame-options").as_deref(), Some("DENY"));
        assert_eq!(r.header("referrer-policy").as_deref(), Some("no-referrer"));
        assert_eq!(r.header("strict-transport-security"), None, "HSTS only in production");
    }
});

crate::both_backends!(cors_allows_exact_origins_only, |backend| {
    let Some((app, _)) =
        TestApp::start_with(backend, |c| c.cors_origins = Some(format!("{APP}, https://admin.example.com"))).await
    else {
        return;
    };
    let r = app.get("/api/v1/Territory").header("origin", APP).send().await.expect(200);
    assert_eq!(r.header("access-control-allow-origin").as_deref(), Some(APP));
    assert!(r.header("access-control-allow-credentials").is_none());
    let pre = app
        .req("OPTIONS", "/api/v1/Territory")
        .header("origin", APP)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type")
        .anonymous()
        .send()
        .await
        .expect(204);
    assert_eq!(pre.header("access-control-allow-origin").as_deref(), Some(APP));
    let methods = pre.header("access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("POST") && !methods.contains('*'), "{methods}");
    for lookalike in [
        "https://app.example.com.evil.com",
        "https://evil-app.example.com",
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://APP.example.com",
        "null",
        "*",
    ] {
        let r = app.get("/api/v1/Territory").header("origin", lookalike).send().await.expect(200);
        assert_eq!(r.header("access-control-allow-origin"), None, "{lookalike} must not be allowed");
        app.req("OPTIONS", "/api/v1/Territory")
            .header("origin", lookalike)
            .header("access-control-request-method", "DELETE")
            .anonymous()
            .send()
            .await
            .expect_error(403, "cors_forbidden");
    }
});

crate::both_backends!(long_urls_and_huge_headers_are_refused, |backend| {
    let Some((app, _)) = TestApp::start_with(backend, |_| {}).await else { return };
    let long = format!("/api/v1/Territory?territory_name={}", "x".repeat(9000));
    app.get(&long).send().await.expect_error(414, "uri_too_long");
    app.get("/api/v1/Territory")
        .header("x-padding", &"y".repeat(40_000))
        .send()
        .await
        .expect_error(431, "headers_too_large");
    app.post("/api/v1/Territory", json!({"territory_name": "Fine"})).send().await.expect(201);
});

/// One request to a real listener; the whole response text.
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

crate::both_backends!(https_is_enforced_behind_a_trusted_proxy, |backend| {
    let Some(scratch) = Scratch::new(backend).await else { return };
    let token = TestApp::admin();
    let (mut server, addr) = spawn_binary(&scratch, &[("M_TRUSTED_PROXIES", "127.0.0.1/32, ::1")]).await;
    // Plain HTTP reported by the proxy: GET is redirected to the same URL over HTTPS ...
    let r = raw(
        addr,
        "GET /api/v1/Territory?limit=5 HTTP/1.1\r\nHost: api.example.com\r\nX-Forwarded-Proto: http\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 308"), "{r}");
    assert!(r.to_lowercase().contains("location: https://api.example.com/api/v1/territory?limit=5"), "{r}");
    // ... anything else is refused.
    let body = r#"{"territory_name": "North"}"#;
    let r = raw(
        addr,
        &format!(
            "POST /api/v1/Territory HTTP/1.1\r\nHost: api.example.com\r\nX-Forwarded-Proto: http\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 403") && r.contains("https_required"), "{r}");
    // HTTPS at the proxy: served, with HSTS.
    let r = raw(
        addr,
        &format!(
            "GET /api/v1/Territory HTTP/1.1\r\nHost: api.example.com\r\nX-Forwarded-Proto: https\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.to_lowercase().contains("strict-transport-security: max-age=31536000"), "{r}");
    terminate(&mut server);

    // From a peer that is not a trusted proxy, X-Forwarded-Proto means nothing.
    let (mut server, addr) = spawn_binary(&scratch, &[("M_TRUSTED_PROXIES", "10.0.0.0/8")]).await;
    let r = raw(
        addr,
        &format!(
            "GET /api/v1/Territory HTTP/1.1\r\nHost: api.example.com\r\nX-Forwarded-Proto: http\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    terminate(&mut server);
});
