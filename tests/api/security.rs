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
    let Some((app, _)) = TestApp::start_with(backend, |c| {
        c.cors_origins =
            [APP, "https://admin.example.com"].iter().map(|o| m_runtime::config::Origin::parse(o).unwrap()).collect()
    })
    .await
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

mod jwt {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::{Value, json};

    use crate::support::{SECRET, TestApp};

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    fn hs(claims: &Value) -> String {
        sign(Algorithm::HS256, None, &EncodingKey::from_secret(SECRET.as_bytes()), claims)
    }

    fn b64(v: &[u8]) -> String {
        use std::fmt::Write as _;
        // base64url without padding, by hand (no extra dependency for a test).
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in v.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                let _ = write!(out, "{}", char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }

    fn good() -> Value {
        json!({"sub": "Administrator", "exp": now() + 600, "iat": now(), "iss": "https://id.example.com", "aud": "m-api"})
    }

    /// A user of the identity provider, known to the server with a role that reads Territories.
    const IDP_USER: &str = "idp-user@example.com";

    fn good_idp() -> Value {
        json!({"sub": IDP_USER, "exp": now() + 600, "iat": now(), "iss": "https://id.example.com", "aud": "m-api"})
    }

    async fn status(app: &TestApp, token: &str) -> u16 {
        let r = app.get("/api/v1/Territory").by(token.to_string()).send().await;
        if r.status == 401 {
            assert_eq!(
                r.header("www-authenticate").as_deref(),
                Some("Bearer error=\"invalid_token\""),
                "an invalid token is a 401 invalid_token, never anonymous"
            );
        }
        r.status
    }

    crate::both_backends!(hs256_claims_are_enforced, |backend| {
        let Some((app, _)) = TestApp::start_with(backend, |c| {
            c.jwt_issuer = Some("https://id.example.com".into());
            c.jwt_audience = Some("m-api".into());
        })
        .await
        else {
            return;
        };
        assert_eq!(status(&app, &hs(&good())).await, 200);
        let mut cases: Vec<(&str, Value)> = Vec::new();
        let with = |k: &str, v: Value| {
            let mut c = good();
            c[k] = v;
            c
        };
        let without = |k: &str| {
            let mut c = good();
            c.as_object_mut().unwrap().remove(k);
            c
        };
        cases.push(("expired", with("exp", json!(now() - 3600))));
        cases.push(("string exp", with("exp", json!((now() + 600).to_string()))));
        cases.push(("future nbf", with("nbf", json!(now() + 3600))));
        cases.push(("future iat", with("iat", json!(now() + 3600))));
        cases.push(("wrong aud", with("aud", json!("other-api"))));
        cases.push(("missing aud", without("aud")));
        cases.push(("wrong iss", with("iss", json!("https://evil.example.com"))));
        cases.push(("missing iss", without("iss")));
        cases.push(("missing sub", without("sub")));
        cases.push(("numeric sub", with("sub", json!(42))));
        cases.push(("missing exp", without("exp")));
        // Without `iat` a token cannot be compared with the user's creation or password change.
        cases.push(("missing iat", without("iat")));
        for (what, claims) in cases {
            assert_eq!(status(&app, &hs(&claims)).await, 401, "{what}");
        }
        // Within the leeway is fine.
        assert_eq!(status(&app, &hs(&with("nbf", json!(now() + 10)))).await, 200);
        // alg none, a malformed token, a token signed with another key.
        let none = format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), b64(good().to_string().as_bytes()));
        assert_eq!(status(&app, &none).await, 401, "alg none");
        assert_eq!(status(&app, "not.a.jwt").await, 401);
        assert_eq!(status(&app, "abc").await, 401);
        let other =
            sign(Algorithm::HS256, None, &EncodingKey::from_secret(b"another-secret-another-secret-000"), &good());
        assert_eq!(status(&app, &other).await, 401);
    });

    crate::both_backends!(jwks_keys_by_kid, |backend| {
        let dir = std::env::temp_dir().join(format!("m-jwks-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let full: Value = serde_json::from_str(include_str!("keys/jwks.json")).unwrap();
        // Start without the Ed25519 key: it is "rotated in" later.
        let mut partial = full.clone();
        partial["keys"].as_array_mut().unwrap().retain(|k| k["kid"] != "ed-1");
        let file = dir.join("jwks.json");
        std::fs::write(&file, partial.to_string()).unwrap();
        let url = format!("file://{}", file.display());
        let Some((app, _)) = TestApp::start_with(backend, |c| {
            c.jwt_jwks_url = Some(url.clone());
            c.jwt_audience = Some("m-api".into());
        })
        .await
        else {
            return;
        };
        let user = json!({"email": IDP_USER, "roles": [{"role": "Sales User"}]});
        app.repo().create(&m_runtime::perms::Principal::administrator(), "User", &user).await.unwrap();
        let rsa = EncodingKey::from_rsa_der(include_bytes!("keys/rsa.der"));
        let ec = EncodingKey::from_ec_der(include_bytes!("keys/ec.der"));
        let ed = EncodingKey::from_ed_der(include_bytes!("keys/ed.der"));
        assert_eq!(status(&app, &sign(Algorithm::RS256, Some("rsa-1"), &rsa, &good_idp())).await, 200);
        assert_eq!(status(&app, &sign(Algorithm::ES256, Some("ec-1"), &ec, &good_idp())).await, 200);
        // A key added to the JWKS is picked up on its first use (one reload on an unknown kid;
        // later unknown kids within a minute do not reload again).
        std::fs::write(&file, full.to_string()).unwrap();
        assert_eq!(status(&app, &sign(Algorithm::EdDSA, Some("ed-1"), &ed, &good_idp())).await, 200);
        // No kid, an unknown kid, an algorithm that is not the key's.
        assert_eq!(status(&app, &sign(Algorithm::RS256, None, &rsa, &good_idp())).await, 401);
        assert_eq!(status(&app, &sign(Algorithm::RS256, Some("nope"), &rsa, &good_idp())).await, 401);
        assert_eq!(status(&app, &sign(Algorithm::RS256, Some("ec-1"), &rsa, &good_idp())).await, 401);
        // HS/RS confusion: HS256 "signed" with the public RSA key's bytes.
        let public = full["keys"][0]["n"].as_str().unwrap().as_bytes().to_vec();
        let confused = sign(Algorithm::HS256, Some("rsa-1"), &EncodingKey::from_secret(&public), &good_idp());
        assert_eq!(status(&app, &confused).await, 401, "HS256 is not accepted with a JWKS");
        assert_eq!(status(&app, &hs(&good_idp())).await, 401, "the shared secret is not a key here");
        // The identity provider's tokens never name the server's own Administrator.
        for sub in ["Administrator", "administrator"] {
            let mut admin = good();
            admin["sub"] = json!(sub);
            assert_eq!(status(&app, &sign(Algorithm::RS256, Some("rsa-1"), &rsa, &admin)).await, 401, "{sub}");
        }
        std::fs::remove_dir_all(&dir).ok();
    });
}

mod rate_limits {
    use m_runtime::config::Secret;

    use crate::runtime::{free_port, private_redis};
    use crate::support::{Backend, TestApp, redis_url};

    async fn app(backend: Backend, api: u32, anon: u32, redis: Option<String>, prefix: &str) -> Option<TestApp> {
        let prefix = prefix.to_string();
        TestApp::start_with(backend, move |c| {
            c.rate_limit_api = api;
            c.rate_limit_anon = anon;
            c.redis_url = redis.map(Secret::new);
            c.redis_prefix = prefix;
        })
        .await
        .map(|(a, _)| a)
    }

    fn unique() -> String {
        format!("m-test-{}:", uuid::Uuid::new_v4().simple())
    }

    crate::both_backends!(users_and_addresses_have_limits, |backend| {
        let Some(app) = app(backend, 5, 3, None, &unique()).await else { return };
        // Without a token: counted per address (and refused, with a key configured).
        for _ in 0..3 {
            let r = app.get("/api/v1/Territory").anonymous().send().await.expect(401);
            assert!(r.header("ratelimit").is_some_and(|v| v.starts_with("\"anonymous\";r=")), "{:?}", r.headers);
        }
        let r = app.get("/api/v1/Territory").anonymous().send().await.expect_error(429, "rate_limited");
        assert!(r.header("retry-after").and_then(|v| v.parse::<u64>().ok()).is_some_and(|s| s >= 1));
        assert_eq!(r.header("ratelimit-policy").as_deref(), Some("\"anonymous\";q=3;w=60"));
        // Per user: five, then 429; another user is unaffected; health is never limited.
        let alice = app.token("alice@example.com", &["System Manager"]).await;
        for left in (0..5).rev() {
            let r = app.get("/api/v1/Territory").by(alice.clone()).send().await.expect(200);
            assert_eq!(
                r.header("ratelimit"),
                Some(format!("\"api\";r={left};t={}", r.header("ratelimit").unwrap().rsplit('=').next().unwrap()))
            );
        }
        app.get("/api/v1/Territory").by(alice).send().await.expect_error(429, "rate_limited");
        app.get("/api/v1/Territory")
            .by(app.token("bob@example.com", &["System Manager"]).await)
            .send()
            .await
            .expect(200);
        app.get("/health").anonymous().send().await.expect(200);
    });

    crate::both_backends!(without_a_key_requests_count_as_the_administrator, |backend| {
        let Some((app, _)) = TestApp::start_with(backend, |c| {
            c.jwt_secret = None;
            c.rate_limit_api = 2;
            c.rate_limit_anon = 1;
        })
        .await
        else {
            return;
        };
        // Development without a key: no token means Administrator, limited as that user.
        for _ in 0..2 {
            let r = app.get("/api/v1/Territory").anonymous().send().await.expect(200);
            assert!(r.header("ratelimit").is_some_and(|v| v.starts_with("\"api\"")), "{:?}", r.headers);
        }
        app.get("/api/v1/Territory").anonymous().send().await.expect_error(429, "rate_limited");
    });

    crate::both_backends!(two_instances_share_limits_through_redis, |backend| {
        let Some(redis) = redis_url() else {
            eprintln!("skipped: M_TEST_REDIS_URL is not set");
            return;
        };
        let prefix = unique();
        let Some(a) = app(backend, 4, 100, Some(redis.clone()), &prefix).await else { return };
        let Some(b) = app(backend, 4, 100, Some(redis), &prefix).await else { return };
        let carol = a.token("carol@example.com", &["System Manager"]).await;
        b.ensure_user("carol@example.com", &["System Manager"]).await;
        for app in [&a, &b, &a, &b] {
            app.get("/api/v1/Territory").by(carol.clone()).send().await.expect(200);
        }
        a.get("/api/v1/Territory").by(carol.clone()).send().await.expect_error(429, "rate_limited");
        b.get("/api/v1/Territory").by(carol).send().await.expect_error(429, "rate_limited");
    });

    crate::both_backends!(a_redis_outage_falls_back_to_limits_in_process, |backend| {
        let port = free_port();
        let Some(mut redis) = private_redis(port).await else { return };
        let Some(app) = app(backend, 3, 100, Some(format!("redis://127.0.0.1:{port}")), &unique()).await else {
            return;
        };
        let dave = app.token("dave@example.com", &["System Manager"]).await;
        app.get("/api/v1/Territory").by(dave.clone()).send().await.expect(200);
        redis.stop();
        // Redis is gone: requests still succeed, and are still limited (in process), never
        // unlimited.
        let mut statuses = Vec::new();
        for _ in 0..6 {
            statuses.push(app.get("/api/v1/Territory").by(dave.clone()).send().await.status);
        }
        assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 3, "{statuses:?}");
    });
}

crate::both_backends!(m_token_mints_local_tokens_outside_production, |backend| {
    let Some((app, _)) = TestApp::start_with(backend, |_| {}).await else { return };
    let run = |env: &str, secret: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_m"));
        c.args(["token", "--user", "erin@example.com"]).env("M_ENV", env);
        match secret {
            Some(s) => c.env("M_JWT_SECRET", s),
            None => c.env_remove("M_JWT_SECRET"),
        };
        c.output().unwrap()
    };
    app.ensure_user("erin@example.com", &["System Manager"]).await;
    let out = run("development", Some(crate::support::SECRET));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    app.get("/api/v1/Territory").by(token).send().await.expect(200);
    let out = run("production", Some(crate::support::SECRET));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused in production"));
    let out = run("development", None);
    assert!(!out.status.success());
});

/// Audit events (`m::audit`) of this test process, as JSON lines.
fn audit_events() -> &'static std::sync::Mutex<Vec<u8>> {
    use std::sync::{Mutex, OnceLock};
    static BUF: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        struct W(&'static Mutex<Vec<u8>>);
        impl std::io::Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let _ = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter(tracing_subscriber::EnvFilter::new("off,m::audit=info"))
            .with_writer(move || W(buf))
            .try_init();
        buf
    })
}

crate::both!(out_of_scope_404s_are_audited_as_denials, |app| {
    let events = audit_events();
    app.post("/api/v1/Territory", json!({"territory_name": "North"})).send().await.expect(201);
    let c = app
        .post("/api/v1/Customer", json!({"customer_name": "Acme", "territory": "North"}))
        .send()
        .await
        .expect(201)
        .json;
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let (alice, bob) = (format!("alice-{unique}@example.com"), format!("bob-{unique}@example.com"));
    let inv = app
        .post("/api/v1/Invoice", json!({"customer": c["name"], "items": [{"item_code": "A", "rate": 1}]}))
        .by(app.token(&alice, &["Sales User"]).await)
        .send()
        .await
        .expect(201)
        .json;
    let path = format!("/api/v1/Invoice/{}", inv["name"].as_str().unwrap());
    let bob_token = app.token(&bob, &["Sales User"]).await;
    app.get(&path).by(bob_token.clone()).send().await.expect_error(404, "not_found");
    app.patch(&path, json!({"status": "Paid"})).by(bob_token.clone()).send().await.expect_error(404, "not_found");
    // A document that does not exist at all is a plain 404, not a denial.
    app.get("/api/v1/Invoice/INV-0000-00000").by(bob_token).send().await.expect_error(404, "not_found");
    let text = String::from_utf8(events.lock().unwrap().clone()).unwrap();
    let mine: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["user"] == bob.as_str())
        .collect();
    let actions: Vec<&str> = mine.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["read", "write"], "{mine:?}");
    assert!(
        mine.iter().all(|e| e["doctype"] == "Invoice" && e["reason"].as_str().is_some_and(|r| r.contains("scope")))
    );
});

// Nothing a client sends reaches SQL as text: identifiers are checked against the DocType, values
// are bound. Each attempt is refused (400) or harmless (a bound value matches nothing), no body
// carries database text, and the table is intact afterwards.
crate::both!(sql_injection_attempts_are_refused_or_bound, |app| {
    for name in ["North", "South"] {
        app.post("/api/v1/Territory", json!({"territory_name": name})).send().await.expect(201);
    }
    let evil = [
        "name; DROP TABLE territory; --",
        "name) OR 1=1 --",
        "\"name\" FROM territory; --",
        "1; SELECT pg_sleep(5)",
        "name' OR '1'='1",
        "territory_name/**/OR/**/1=1",
    ];
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    for e in evil {
        let v = enc(e);
        let paths = [
            format!("/api/v1/Territory?fields={v}"),
            format!("/api/v1/Territory?order_by={v}"),
            format!("/api/v1/Territory?{v}=North"),
            format!("/api/v1/Territory?territory_name[{v}]=North"),
            format!("/api/v1/Territory?territory_name={v}"),
            format!("/api/v1/Territory?territory_name[like]={v}"),
            format!("/api/v1/Territory?filters={}", enc(&json!([[e, "=", "x"]]).to_string())),
            format!("/api/v1/Territory?filters={}", enc(&json!([["territory_name", e, "x"]]).to_string())),
            format!("/api/v1/Territory?filters={}", enc(&json!([["territory_name", "=", e]]).to_string())),
            format!("/api/v1/Territory?or_filters={}", enc(&json!([[e, "=", "x"], ["name", "=", e]]).to_string())),
            format!("/api/v1/Territory?limit={v}"),
            format!("/api/v1/Territory?offset={v}"),
            format!("/api/v1/Territory/{v}"),
        ];
        for path in &paths {
            let r = app.get(path).send().await;
            assert!(matches!(r.status, 200 | 400 | 404), "{path}: {} {}", r.status, r.json);
            if r.status == 200 {
                // A bound value: it matches no territory (names are not these strings).
                assert_eq!(r.json["total"].as_i64().unwrap_or(0), 0, "{path}: {}", r.json);
            }
            // An error may quote the client's own input; anything else from the database is a leak.
            let echoed = serde_json::to_string(e).unwrap();
            let body = r.json.to_string().replace(echoed.trim_matches('"'), "").to_lowercase();
            for leak in ["syntax", "sqlite", "postgres", "relation", "sqlx", "select ", "near \""] {
                assert!(!body.contains(leak), "{path}: database text `{leak}` in {body}");
            }
        }
    }
    let all = app.get("/api/v1/Territory?order_by=territory_name").send().await.expect(200).json;
    assert_eq!(all["total"], 2, "the table is intact");
    assert_eq!(all["items"][0]["territory_name"], "North");
});

/// TLS: the server's own listener (`M_TLS_CERT` / `M_TLS_KEY`), plain HTTP on it redirected or
/// refused, and tokens verified with keys from an `https://` JWKS (trusted through
/// `SSL_CERT_FILE`), all in one production binary.
mod tls {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;

    use crate::runtime::spawn_binary;
    use crate::support::Scratch;

    const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/keys");

    fn connector() -> tokio_rustls::TlsConnector {
        m_runtime::auth::install_crypto_provider();
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject as _;
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(format!("{KEYS}/tls-ca.pem")).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    /// One request; the whole response as text.
    async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S, request: &str) -> String {
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    crate::both_backends!(tls_listener_and_https_jwks, |backend| {
        let Some(scratch) = Scratch::new(backend).await else { return };
        // The JWKS, served over HTTPS by the runtime's own TLS listener.
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let jwks_addr: SocketAddr = tcp.local_addr().unwrap();
        let config =
            m_runtime::http::tls_server_config(&format!("{KEYS}/tls-server.pem"), &format!("{KEYS}/tls-server.key"))
                .unwrap();
        let listener = m_runtime::http::TlsListener::new(tcp, config, false).unwrap();
        let jwks = include_str!("keys/jwks.json");
        let router = axum::Router::new().route("/jwks.json", axum::routing::get(move || async move { jwks }));
        tokio::spawn(async move { axum::serve(listener, router).await });

        let jwks_url = format!("https://127.0.0.1:{}/jwks.json", jwks_addr.port());
        let (cert, key, ca) =
            (format!("{KEYS}/tls-server.pem"), format!("{KEYS}/tls-server.key"), format!("{KEYS}/tls-ca.pem"));
        let (_server, addr) = spawn_binary(
            &scratch,
            &[("M_TLS_CERT", &cert), ("M_TLS_KEY", &key), ("M_JWT_JWKS_URL", &jwks_url), ("SSL_CERT_FILE", &ca)],
        )
        .await;

        // A user of the identity provider, known to the server.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_m"))
            .args(["user:create", "--email", "idp-user@example.com", "--role", "Sales User"])
            .env("DATABASE_URL", &scratch.url)
            .env("M_ENV", "development")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let exp = now + 600;
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("rsa-1".into());
        let token = jsonwebtoken::encode(
            &header,
            &json!({"sub": "idp-user@example.com", "exp": exp, "iat": now}),
            &EncodingKey::from_rsa_der(include_bytes!("keys/rsa.der")),
        )
        .unwrap();
        // Over TLS: the token verifies with the key fetched over HTTPS; production adds HSTS.
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector().connect(name, tcp).await.expect("TLS handshake");
        let res = exchange(
            tls,
            &format!(
                "GET /api/v1/Territory HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert!(res.starts_with("HTTP/1.1 200"), "{res}");
        assert!(res.to_lowercase().contains("strict-transport-security: max-age="), "{res}");

        // Plain HTTP on the TLS port: GET is redirected, anything else refused.
        let plain = |request: String| async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            exchange(tcp, &request).await
        };
        let host = format!("localhost:{}", addr.port());
        let res = plain(format!("GET /api/v1/Territory?limit=5 HTTP/1.1\r\nHost: {host}\r\n\r\n")).await;
        assert!(res.starts_with("HTTP/1.1 308"), "{res}");
        assert!(res.to_lowercase().contains(&format!("location: https://{host}/api/v1/territory?limit=5")), "{res}");
        let res = plain(format!(
            "POST /api/v1/Territory HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
        ))
        .await;
        assert!(res.starts_with("HTTP/1.1 403"), "{res}");
        assert!(res.contains("https_required"), "{res}");
    });
}
