//! Users, login and User Permissions (DESIGN §4), on SQLite and PostgreSQL: argon2 login with one
//! answer for every failure, `/auth/me`, password changes, roles and the enabled flag from the
//! database (changes from another process within a second), login brute-force limits per account
//! and per address, and `[rls] user_permissions` through lists, counts, filters, OR filters,
//! reads, writes and lifecycle actions.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::runtime::{exchange, spawn_binary};
use crate::support::{Resp, Scratch, TestApp, seed, wait_past_issue_of, wait_until};

fn without_request_id(mut v: Value) -> Value {
    if let Some(e) = v.get_mut("error").and_then(Value::as_object_mut) {
        e.remove("request_id");
    }
    v
}

async fn login(app: &TestApp, user: &str, password: &str) -> Resp {
    app.post("/api/v1/auth/login", json!({"username": user, "password": password})).anonymous().send().await
}

crate::both!(login_me_and_passwords, |app| {
    // A System Manager creates a user through the normal API; the email is the name, normalised.
    let ann = app
        .post(
            "/api/v1/User",
            json!({"email": " Ann@Example.COM ", "full_name": "Ann", "roles": [{"role": "Sales User"}]}),
        )
        .send()
        .await
        .expect(201)
        .json;
    assert_eq!(ann["name"], "ann@example.com");
    assert_eq!(ann["enabled"], true);
    app.post("/api/v1/User", json!({"email": "bob@example.com"})).send().await.expect(201);
    // Only a System Manager sets another user's password.
    app.post("/api/v1/auth/password", json!({"user": "ann@example.com", "password": "correct horse"}))
        .send()
        .await
        .expect(204);

    let ok = login(&app, "ANN@example.com", "correct horse").await.expect(200);
    assert_eq!(ok.json["token_type"], "bearer");
    assert_eq!(ok.json["expires_in"], 3600);
    assert_eq!(ok.header("cache-control").as_deref(), Some("no-store"));
    let token = ok.json["access_token"].as_str().unwrap().to_string();
    let me = app.get("/api/v1/auth/me").by(token.clone()).send().await.expect(200).json;
    assert_eq!(
        me,
        json!({"name": "ann@example.com", "full_name": "Ann", "roles": ["Sales User"], "system_manager": false})
    );
    app.get("/api/v1/Customer").by(token.clone()).send().await.expect(200);
    app.get("/api/v1/User").by(token.clone()).send().await.expect_error(403, "forbidden");
    app.get("/api/meta/User").by(token.clone()).send().await.expect_error(403, "forbidden");
    app.get("/api/v1/auth/me").anonymous().send().await.expect_error(401, "unauthenticated");

    // Unknown user, wrong password, user without a password: one answer. Each verifies a hash
    // (a decoy for the unknown user), so the times are alike; they are printed, not asserted.
    let mut bodies = Vec::new();
    for (user, password) in [
        ("ann@example.com", "wrong horse"),
        ("nobody@example.com", "correct horse"),
        ("bob@example.com", "correct horse"),
    ] {
        let started = Instant::now();
        let r = login(&app, user, password).await.expect_error(401, "invalid_credentials");
        println!("login {user}: {} µs", started.elapsed().as_micros());
        assert!(r.header("www-authenticate").is_none());
        bodies.push(without_request_id(r.json));
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    for bad in [json!({"username": "ann@example.com"}), json!({"username": "a", "password": "b", "x": 1}), json!([])] {
        app.post("/api/v1/auth/login", bad).anonymous().send().await.expect_error(400, "bad_request");
    }

    // A user changes their own password with the current one, and nobody else's.
    let change = |body: Value| app.post("/api/v1/auth/password", body).by(token.clone());
    change(json!({"password": "battery staple", "current_password": "nope"}))
        .send()
        .await
        .expect_error(403, "forbidden");
    change(json!({"password": "battery staple"})).send().await.expect_error(403, "forbidden");
    change(json!({"user": "bob@example.com", "password": "battery staple"}))
        .send()
        .await
        .expect_error(403, "forbidden");
    change(json!({"password": "short", "current_password": "correct horse"}))
        .send()
        .await
        .expect_error(422, "validation_failed");
    // Tokens carry whole seconds: the change comes in a later second than the login's token.
    wait_past_issue_of(&token).await;
    change(json!({"password": "battery staple", "current_password": "correct horse"})).send().await.expect(204);
    login(&app, "ann@example.com", "correct horse").await.expect_error(401, "invalid_credentials");
    let fresh = login(&app, "ann@example.com", "battery staple").await.expect(200).json;
    // Tokens issued before the change no longer work; the new one does.
    app.get("/api/v1/auth/me").by(token.clone()).send().await.expect_error(401, "unauthenticated");
    let fresh = fresh["access_token"].as_str().unwrap().to_string();
    app.get("/api/v1/auth/me").by(fresh).send().await.expect(200);

    // The hash is never returned: not in the document, not as a field.
    let doc = app.get("/api/v1/User/ann@example.com").send().await.expect(200);
    assert!(!doc.json.to_string().contains("argon2"), "{}", doc.json);
    app.get("/api/v1/User?fields=%5B%22password_hash%22%5D").send().await.expect_error(400, "unknown_field");
});

crate::both!(disabled_deleted_and_demoted_users_lose_access, |app| {
    let (customer, _) = seed(&app).await;
    let token = app.token("cat@example.com", &["Sales User"]).await;
    let path = format!("/api/v1/Customer/{customer}");
    app.get(&path).by(token.clone()).send().await.expect(200);

    // Disabled: the token is refused like an invalid one, at once in this process.
    app.patch("/api/v1/User/cat@example.com", json!({"enabled": false})).send().await.expect(200);
    let r = app.get(&path).by(token.clone()).send().await.expect_error(401, "unauthenticated");
    assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer error=\"invalid_token\""));
    app.patch("/api/v1/User/cat@example.com", json!({"enabled": true})).send().await.expect(200);
    app.get(&path).by(token.clone()).send().await.expect(200);

    // A role removed: 403 at once; a `roles` claim in a token is ignored.
    app.req("PUT", "/api/v1/User/cat@example.com").json(json!({"roles": []})).send().await.expect(200);
    app.get(&path).by(token.clone()).send().await.expect_error(403, "forbidden");

    // Deleted: 401; recreated later with the same email, the old token stays refused.
    app.delete("/api/v1/User/cat@example.com").send().await.expect(204);
    app.get(&path).by(token.clone()).send().await.expect_error(401, "unauthenticated");
    // Tokens carry whole seconds: the user is recreated in a later second than the token's.
    wait_past_issue_of(&token).await;
    app.ensure_user("cat@example.com", &["Sales User"]).await;
    app.get(&path).by(token).send().await.expect_error(401, "unauthenticated");
    app.get(&path).by(TestApp::bare_token("cat@example.com")).send().await.expect(200);

    // The built-in rules: known roles only, no role twice, the email is fixed, and the
    // Administrator can be neither disabled nor deleted.
    let r = app
        .post("/api/v1/User", json!({"email": "dan@example.com", "roles": [{"role": "Sales Usr"}]}))
        .send()
        .await
        .expect_error(422, "validation_failed");
    assert_eq!(r.json["error"]["details"][0]["field"], "roles[0].role");
    assert!(r.json["error"]["message"].as_str().unwrap().contains("Sales User"), "{}", r.json);
    app.post(
        "/api/v1/User",
        json!({"email": "dan@example.com", "roles": [{"role": "Sales User"}, {"role": "Sales User"}]}),
    )
    .send()
    .await
    .expect_error(422, "validation_failed");
    app.post("/api/v1/User", json!({"email": "not an email"})).send().await.expect_error(422, "validation_failed");
    app.post("/api/v1/User", json!({"email": "dan@example.com"})).send().await.expect(201);
    app.post("/api/v1/User", json!({"email": "DAN@example.com"})).send().await.expect_error(409, "duplicate");
    app.patch("/api/v1/User/dan@example.com", json!({"email": "dan2@example.com"}))
        .send()
        .await
        .expect_error(422, "validation_failed");
    app.patch("/api/v1/User/Administrator", json!({"enabled": false}))
        .send()
        .await
        .expect_error(422, "validation_failed");
    app.delete("/api/v1/User/Administrator").send().await.expect_error(403, "forbidden");
});

/// Run `m user:*` against a test database, as another process would.
fn m_user(url: &str, args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_m"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("M_ENV", "development")
        .env_remove("M_LOG_LEVEL")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "m {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// `m user:*` with `input` on its standard input; it must succeed.
fn m_user_stdin(url: &str, args: &[&str], input: &str) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_m"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("M_ENV", "development")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "m {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

crate::both_backends!(user_commands_apply_within_a_second, |backend| {
    let Some((app, config)) = TestApp::start_with(backend, |_| {}).await else { return };
    let url = config.database_url.expose().to_string();
    let out = m_user(
        &url,
        &["user:create", "--email", "Eve@Example.com", "--password", "correct horse", "--role", "Sales User"],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("created user eve@example.com"));
    let token = login(&app, "eve@example.com", "correct horse").await.expect(200).json["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let read = || app.get("/api/v1/Territory").by(token.clone());
    read().send().await.expect(200);
    // Another process changes the user: the server acts on it (within a second; waited for up
    // to 5 s).
    let settle = |status: u16| {
        let read = &read;
        wait_until("the server to act on the change", Duration::from_secs(5), move || async move {
            let r = read().send().await;
            if r.status == status { Ok(()) } else { Err(r) }
        })
    };
    m_user(&url, &["user:remove-role", "--email", "eve@example.com", "--role", "Sales User"]);
    settle(403).await;
    read().send().await.expect_error(403, "forbidden");
    m_user(&url, &["user:add-role", "--email", "eve@example.com", "--role", "Sales Manager"]);
    settle(200).await;
    read().send().await.expect(200);
    m_user(&url, &["user:disable", "--email", "eve@example.com"]);
    settle(401).await;
    read().send().await.expect_error(401, "unauthenticated");
    login(&app, "eve@example.com", "correct horse").await.expect_error(401, "invalid_credentials");
    m_user(&url, &["user:enable", "--email", "eve@example.com"]);
    settle(200).await;
    read().send().await.expect(200);
    // A password from standard input.
    m_user_stdin(&url, &["user:set-password", "--email", "eve@example.com"], "battery staple\n");
    login(&app, "eve@example.com", "battery staple").await.expect(200);
    // A new user's password from standard input, never on the command line.
    m_user_stdin(&url, &["user:create", "--email", "gus@example.com", "--password-stdin"], "gus password 1\n");
    login(&app, "gus@example.com", "gus password 1").await.expect(200);
    let listed: Value = serde_json::from_slice(&m_user(&url, &["user:list", "--json"]).stdout).unwrap();
    let eve = listed.as_array().unwrap().iter().find(|u| u["name"] == "eve@example.com").unwrap();
    assert_eq!(eve["roles"], json!(["Sales Manager"]));
    assert_eq!(eve["enabled"], true);
    // Refusals exit non-zero with the reason.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_m"))
        .args(["user:add-role", "--email", "eve@example.com", "--role", "Wizard"])
        .env("DATABASE_URL", &url)
        .env("M_ENV", "development")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown role `Wizard`"));
});

/// One request on a fresh connection from the (trusted) local proxy on behalf of `client`.
async fn login_from(addr: SocketAddr, client: &str, user: &str, password: &str) -> (u16, Value) {
    let body = json!({"username": user, "password": password}).to_string();
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: {client}\r\nX-Forwarded-Proto: https\r\n"
    );
    let (status, text) = exchange(addr, &head, &body).await;
    (status, without_request_id(serde_json::from_str(&text).unwrap_or(Value::Null)))
}

crate::both_backends!(login_brute_force_is_limited_per_account_and_address, |backend| {
    let Some(scratch) = Scratch::new(backend).await else { return };
    let (_server, addr) = spawn_binary(
        &scratch,
        &[("M_RATE_LIMIT_LOGIN", "3"), ("M_TRUSTED_PROXIES", "127.0.0.1"), ("M_RATE_LIMIT_ANON", "1000")],
    )
    .await;
    m_user(&scratch.url, &["user:create", "--email", "fay@example.com", "--password", "correct horse"]);
    // Per account, whatever the address: the fourth attempt is refused, even with the right
    // password; an unknown account is limited and answered the same way.
    let mut refused = Vec::new();
    for account in ["fay@example.com", "ghost@example.com"] {
        for n in 0..3 {
            let (status, _) = login_from(addr, &format!("203.0.113.{n}"), account, "guess").await;
            assert_eq!(status, 401, "{account} attempt {n}");
        }
        let (status, body) = login_from(addr, "203.0.113.9", account, "correct horse").await;
        assert_eq!(status, 429, "{account}: {body}");
        refused.push(body);
    }
    assert_eq!(refused[0], refused[1], "a 429 does not tell a real account from an unknown one");
    // Per address, whatever the account.
    for n in 0..3 {
        let (status, _) = login_from(addr, "198.51.100.7", &format!("user{n}@example.com"), "guess").await;
        assert_eq!(status, 401);
    }
    let (status, _) = login_from(addr, "198.51.100.7", "other@example.com", "guess").await;
    assert_eq!(status, 429);
    // Another address and a fresh account are unaffected.
    let (status, _) = login_from(addr, "198.51.100.8", "new@example.com", "guess").await;
    assert_eq!(status, 401);
});

// Invoices for two customers in two territories, and users restricted by User Permissions.
crate::both!(user_permissions_restrict_rows_everywhere, |app| {
    for t in ["North", "South"] {
        app.post("/api/v1/Territory", json!({"territory_name": t})).send().await.expect(201);
    }
    let mut customers = Vec::new();
    for (n, t) in [("Acme", "North"), ("Bolt", "South")] {
        let c = app.post("/api/v1/Customer", json!({"customer_name": n, "territory": t})).send().await.expect(201);
        customers.push(c.json["name"].as_str().unwrap().to_string());
    }
    let (acme, bolt) = (customers[0].clone(), customers[1].clone());
    let mut invoices = Vec::new();
    for c in [&acme, &acme, &bolt] {
        let inv = app
            .post("/api/v1/Invoice", json!({"customer": c, "items": [{"item_code": "A", "qty": 1, "rate": 10}]}))
            .send()
            .await
            .expect(201);
        invoices.push(inv.json["name"].as_str().unwrap().to_string());
    }
    let manager = app.token("mia@example.com", &["Sales Manager"]).await;
    // Mia sees everything until she has a User Permission on Customer.
    let all = app.get("/api/v1/Invoice").by(manager.clone()).send().await.expect(200).json;
    assert_eq!(all["total"], 3);
    app.post("/api/v1/User%20Permission", json!({"user": "mia@example.com", "allow": "Customer", "for_value": acme}))
        .send()
        .await
        .expect(201);
    let list = app.get("/api/v1/Invoice").by(manager.clone()).send().await.expect(200).json;
    assert_eq!(list["total"], 2, "{list}");
    assert!(list["items"].as_array().unwrap().iter().all(|i| i["customer"] == acme.as_str()));
    // Filters and OR filters only narrow it; counts agree.
    let q = |query: &str| app.get(&format!("/api/v1/Invoice?{query}")).by(manager.clone());
    let enc = |v: Value| form_urlencoded::byte_serialize(v.to_string().as_bytes()).collect::<String>();
    assert_eq!(q(&format!("customer={bolt}")).send().await.expect(200).json["total"], 0);
    let widened = enc(json!([["customer", "=", bolt], ["customer", "=", acme]]));
    let r = q(&format!("or_filters={widened}")).send().await.expect(200).json;
    assert_eq!(r["total"], 2, "{r}");
    let r = q(&format!("or_filters={}", enc(json!([["customer", "=", bolt], ["docstatus", "=", 0]]))))
        .send()
        .await
        .expect(200)
        .json;
    assert_eq!(r["total"], 2, "{r}");
    assert_eq!(q("total=true&limit=1").send().await.expect(200).json["total"], 2);
    // Bolt's invoice: the same 404 as a missing one for get, update, delete and submit.
    let theirs = format!("/api/v1/Invoice/{}", invoices[2]);
    app.get(&theirs).by(manager.clone()).send().await.expect_error(404, "not_found");
    app.patch(&theirs, json!({"status": "Paid"})).by(manager.clone()).send().await.expect_error(404, "not_found");
    app.req("POST", &format!("{theirs}/submit")).by(manager.clone()).send().await.expect_error(404, "not_found");
    app.delete(&theirs).by(manager.clone()).send().await.expect_error(404, "not_found");
    // Writing outside them is refused: a new invoice for Bolt, or moving one to Bolt.
    app.post("/api/v1/Invoice", json!({"customer": bolt}))
        .by(manager.clone())
        .send()
        .await
        .expect_error(403, "forbidden");
    let mine = format!("/api/v1/Invoice/{}", invoices[0]);
    app.patch(&mine, json!({"customer": bolt})).by(manager.clone()).send().await.expect_error(403, "forbidden");
    let got = app.get(&mine).by(manager.clone()).send().await.expect(200).json;
    assert_eq!(got["customer"], acme.as_str(), "the refused change was rolled back");
    assert_eq!(got["items"].as_array().unwrap().len(), 1, "child rows come with a permitted parent");
    app.post("/api/v1/Invoice", json!({"customer": acme})).by(manager.clone()).send().await.expect(201);
    app.req("POST", &format!("{mine}/submit")).by(manager.clone()).send().await.expect(200);
    app.delete(&format!("/api/v1/Invoice/{}", invoices[1])).by(manager.clone()).send().await.expect(204);

    // Customer lists Territory under [rls]: a permission on Territory North hides South's
    // customers (and a second permission widens it again).
    app.post(
        "/api/v1/User%20Permission",
        json!({"user": "mia@example.com", "allow": "Territory", "for_value": "North"}),
    )
    .send()
    .await
    .expect(201);
    let cs = app.get("/api/v1/Customer").by(manager.clone()).send().await.expect(200).json;
    assert_eq!(cs["total"], 1, "{cs}");
    app.get(&format!("/api/v1/Customer/{bolt}")).by(manager.clone()).send().await.expect_error(404, "not_found");
    app.post(
        "/api/v1/User%20Permission",
        json!({"user": "mia@example.com", "allow": "Territory", "for_value": "South"}),
    )
    .send()
    .await
    .expect(201);
    assert_eq!(app.get("/api/v1/Customer").by(manager.clone()).send().await.expect(200).json["total"], 2);
    let r = app
        .post(
            "/api/v1/User%20Permission",
            json!({"user": "mia@example.com", "allow": "Invoice Item", "for_value": "x"}),
        )
        .send()
        .await
        .expect_error(422, "validation_failed");
    assert_eq!(r.json["error"]["details"][0]["field"], "allow");
    // Removing a permission applies at once: with none left for Territory, Mia sees every
    // customer again.
    let ups = app.get("/api/v1/User%20Permission?user=mia@example.com&allow=Territory").send().await.expect(200).json;
    for up in ups["items"].as_array().unwrap() {
        app.delete(&format!("/api/v1/User%20Permission/{}", up["name"].as_str().unwrap())).send().await.expect(204);
    }
    assert_eq!(app.get("/api/v1/Customer").by(manager.clone()).send().await.expect(200).json["total"], 2);
    // A System Manager is never restricted, and only a System Manager manages User Permissions.
    app.post("/api/v1/User%20Permission", json!({"user": "Administrator", "allow": "Customer", "for_value": acme}))
        .send()
        .await
        .expect(201);
    assert_eq!(app.get("/api/v1/Invoice").send().await.expect(200).json["total"], 3);
    app.get("/api/v1/User%20Permission").by(manager.clone()).send().await.expect_error(403, "forbidden");
    app.post("/api/v1/User%20Permission", json!({"user": "mia@example.com", "allow": "Customer", "for_value": bolt}))
        .by(manager)
        .send()
        .await
        .expect_error(403, "forbidden");
});

crate::both_backends!(login_needs_a_key_it_can_sign_with, |backend| {
    // Development without a key: requests act as the Administrator; the login cannot issue a
    // token the server would accept, and says so.
    let Some((app, _)) = TestApp::start_with(backend, |c| c.jwt_secret = None).await else { return };
    app.post("/api/v1/User", json!({"email": "gil@example.com"})).anonymous().send().await.expect(201);
    app.post("/api/v1/auth/password", json!({"user": "gil@example.com", "password": "correct horse"}))
        .anonymous()
        .send()
        .await
        .expect(204);
    let r = login(&app, "gil@example.com", "correct horse").await.expect_error(501, "login_unavailable");
    assert!(r.json["error"]["message"].as_str().unwrap().contains("M_JWT_SECRET"));
    // The same answer for a wrong password: nothing is checked.
    let wrong = login(&app, "gil@example.com", "wrong horse").await.expect_error(501, "login_unavailable");
    assert_eq!(without_request_id(wrong.json), without_request_id(r.json));
});
