//! Authentication, type-level permissions (403) and the `if_owner` row scope (404).

use serde_json::json;

use crate::both;
use crate::support::seed;

both!(authentication_is_required, |app| {
    let r = app.get("/api/v1/Customer").anonymous().send().await.expect_error(401, "unauthenticated");
    assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer"));
    let r = app
        .get("/api/v1/Customer")
        .header("authorization", "Bearer not.a.token")
        .anonymous()
        .send()
        .await
        .expect_error(401, "unauthenticated");
    assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer error=\"invalid_token\""));
    app.get("/health").anonymous().send().await.expect(200);
});

both!(type_level_permissions_are_403, |app| {
    let (customer, _) = seed(&app).await;
    let sales = app.token("sam@example.com", &["Sales User"]).await;
    let nobody = app.token("nina@example.com", &[]).await;
    app.get("/api/v1/Customer").by(nobody.clone()).send().await.expect_error(403, "forbidden");
    app.get(&format!("/api/v1/Customer/{customer}")).by(nobody.clone()).send().await.expect_error(403, "forbidden");
    app.get("/api/meta/Customer").by(nobody).send().await.expect_error(403, "forbidden");
    app.get("/api/v1/Customer").by(sales.clone()).send().await.expect(200);
    app.post("/api/v1/Territory", json!({"territory_name": "South"}))
        .by(sales.clone())
        .send()
        .await
        .expect_error(403, "forbidden");
    app.delete(&format!("/api/v1/Customer/{customer}")).by(sales.clone()).send().await.expect_error(403, "forbidden");
    let meta = app.get("/api/meta/Customer").by(sales).send().await.expect(200).json;
    assert_eq!(meta["permissions"], json!(["read", "create", "write"]));
    assert!(meta["fields"].as_array().unwrap().iter().any(|f| f["name"] == "credit_limit" && f["type"] == "Currency"));
});

both!(if_owner_scope_is_404_everywhere, |app| {
    app.post("/api/v1/Territory", json!({"territory_name": "North"})).send().await.expect(201);
    let c = app
        .post("/api/v1/Customer", json!({"customer_name": "Acme", "territory": "North"}))
        .send()
        .await
        .expect(201)
        .json;
    let customer = c["name"].as_str().unwrap();
    let alice = app.token("alice@example.com", &["Sales User"]).await;
    let bob = app.token("bob@example.com", &["Sales User"]).await;
    let manager = app.token("meg@example.com", &["Sales Manager"]).await;
    let inv = app
        .post("/api/v1/Invoice", json!({"customer": customer, "items": [{"item_code": "A", "rate": 1}]}))
        .by(alice.clone())
        .send()
        .await
        .expect(201)
        .json;
    let name = inv["name"].as_str().unwrap().to_string();
    let id = inv["id"].as_str().unwrap().to_string();
    app.post("/api/v1/Invoice", json!({"customer": customer})).by(bob.clone()).send().await.expect(201);

    // Bob cannot see, change or act on Alice's invoice, by name or by id: 404 like a missing one.
    for r in [&name, &id] {
        let path = format!("/api/v1/Invoice/{r}");
        let missing = app.get(&path).by(bob.clone()).send().await.expect_error(404, "not_found");
        let truly_missing =
            app.get("/api/v1/Invoice/INV-0000-0000").by(bob.clone()).send().await.expect_error(404, "not_found");
        assert_eq!(missing.json["error"]["message"], truly_missing.json["error"]["message"]);
        app.patch(&path, json!({"status": "Paid"})).by(bob.clone()).send().await.expect_error(404, "not_found");
    }
    // Bob's list and count show only his invoice, whatever he filters on.
    let mine = app.get("/api/v1/Invoice").by(bob.clone()).send().await.expect(200).json;
    assert_eq!(mine["total"], 1);
    assert_eq!(mine["items"][0]["owner"], "bob@example.com");
    let widened = app.get("/api/v1/Invoice?or_filters=%5B%5B%22owner%22,%22=%22,%22alice@example.com%22%5D,%5B%22docstatus%22,%22=%22,0%5D%5D").by(bob.clone()).send().await.expect(200).json;
    assert_eq!(widened["total"], 1, "or_filters only narrow the scope");
    let theirs = app.get("/api/v1/Invoice?owner=alice@example.com").by(bob.clone()).send().await.expect(200).json;
    assert_eq!(theirs["total"], 0);

    // Submitting it is the same 404 for Bob, by name or by id (Sales Users submit their own).
    for r in [&name, &id] {
        let path = format!("/api/v1/Invoice/{r}/submit");
        app.req("POST", &path).by(bob.clone()).send().await.expect_error(404, "not_found");
    }
    // Alice sees hers; the manager (no if_owner) sees both. Alice may submit hers but not cancel
    // it (no grant: 403); the manager may.
    app.get(&format!("/api/v1/Invoice/{name}")).by(alice.clone()).send().await.expect(200);
    let all = app.get("/api/v1/Invoice").by(manager.clone()).send().await.expect(200).json;
    assert_eq!(all["total"], 2);
    app.req("POST", &format!("/api/v1/Invoice/{name}/submit")).by(alice.clone()).send().await.expect(200);
    app.req("POST", &format!("/api/v1/Invoice/{name}/cancel")).by(alice).send().await.expect_error(403, "forbidden");
    app.req("POST", &format!("/api/v1/Invoice/{name}/cancel")).by(manager).send().await.expect(200);
});

both!(links_need_read_access_to_the_target, |app| {
    app.post("/api/v1/Territory", json!({"territory_name": "North"})).send().await.expect(201);
    let gadgeteer = app.token("gus@example.com", &["Gadget User"]).await;
    // Gadget User cannot read Territory: the Link is treated as missing.
    let r = app
        .post("/api/v1/Gadget", json!({"code": "G-1", "territory": "North"}))
        .by(gadgeteer.clone())
        .send()
        .await
        .expect_error(422, "validation_failed");
    assert_eq!(r.json["error"]["details"][0]["field"], "territory");
    let created =
        app.post("/api/v1/Gadget", json!({"code": "G-2"})).by(gadgeteer.clone()).send().await.expect(201).json;
    assert_eq!(created["owner"], "gus@example.com");
    // Another Gadget User does not see it; a Gadget Reader (no if_owner) does, but cannot write.
    let other = app.token("ola@example.com", &["Gadget User"]).await;
    let id = created["id"].as_str().unwrap();
    for r in ["G-2", id] {
        let path = format!("/api/v1/Gadget/{r}");
        app.get(&path).by(other.clone()).send().await.expect_error(404, "not_found");
        app.patch(&path, json!({"label": "mine"})).by(other.clone()).send().await.expect_error(404, "not_found");
        app.delete(&path).by(other.clone()).send().await.expect_error(404, "not_found");
    }
    let reader = app.token("rita@example.com", &["Gadget Reader"]).await;
    app.get("/api/v1/Gadget/G-2").by(reader.clone()).send().await.expect(200);
    app.patch("/api/v1/Gadget/G-2", json!({"label": "x"})).by(reader).send().await.expect_error(403, "forbidden");
    app.delete("/api/v1/Gadget/G-2").by(gadgeteer).send().await.expect(204);
});

both!(errors_have_one_shape_and_request_ids, |app| {
    let r = app.get("/nope").header("x-request-id", "req-123").send().await.expect_error(404, "not_found");
    assert_eq!(r.json["error"]["request_id"], "req-123");
    assert_eq!(r.header("x-request-id").as_deref(), Some("req-123"));
    app.req("DELETE", "/api/v1/Customer").send().await.expect_error(405, "method_not_allowed");
    let big = "x".repeat(2 << 20);
    app.req("POST", "/api/v1/Territory")
        .raw(&format!("{{\"territory_name\": \"{big}\"}}"))
        .send()
        .await
        .expect_error(413, "payload_too_large");
    let spec = app.get("/openapi.json").anonymous().send().await.expect(200).json;
    assert_eq!(spec["openapi"], "3.1.0");
    assert!(spec["paths"]["/api/v1/Invoice/{ref}/submit"].is_object());
});
