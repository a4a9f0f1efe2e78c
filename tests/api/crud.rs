//! Create / read / update / delete of every example DocType, child rows included.

use serde_json::json;

use crate::both;
use crate::support::seed;

both!(territory_and_customer_round_trip, |app| {
    let t = app.post("/api/v1/Territory", json!({"territory_name": "North"})).send().await.expect(201);
    assert_eq!(t.json["name"], "North", "field: naming uses territory_name");
    assert_eq!(t.header("location").as_deref(), Some("/api/v1/Territory/North"));
    assert!(t.header("etag").is_some());
    assert_eq!(t.json["owner"], "Administrator");

    let c = app
        .post(
            "/api/v1/Customer",
            json!({"customer_name": "Acme", "email": "ops@acme.test", "territory": "North", "credit_limit": 1234.5}),
        )
        .send()
        .await
        .expect(201);
    let name = c.json["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("CUST-"), "series naming: {name}");
    assert_eq!(c.json["credit_limit"], json!(1234.5));

    // Get by name and by id give the same document.
    let by_name = app.get(&format!("/api/v1/Customer/{name}")).send().await.expect(200);
    let id = by_name.json["id"].as_str().unwrap().to_string();
    let by_id = app.get(&format!("/api/v1/Customer/{id}")).send().await.expect(200);
    assert_eq!(by_name.json, by_id.json);
    assert_eq!(by_name.json, c.json, "the create response equals the stored document");

    // Partial update (PATCH and PUT), modified_by from the token.
    let u = app
        .patch(&format!("/api/v1/Customer/{name}"), json!({"credit_limit": "99.99"}))
        .by(app.token("boss@example.com", &["System Manager"]).await)
        .send()
        .await
        .expect(200);
    assert_eq!(u.json["credit_limit"], json!(99.99));
    assert_eq!(u.json["customer_name"], "Acme");
    assert_eq!(u.json["modified_by"], "boss@example.com");
    assert_eq!(u.json["owner"], "Administrator");
    let p = app.req("PUT", &format!("/api/v1/Customer/{id}")).json(json!({"email": null})).send().await.expect(200);
    assert_eq!(p.json["email"], json!(null));

    // Exact decimals survive the round trip.
    let d = app
        .patch(&format!("/api/v1/Customer/{name}"), json!({"credit_limit": "123456789012.123456"}))
        .send()
        .await
        .expect(200);
    assert_eq!(d.json["credit_limit"].to_string(), "123456789012.123456");
    let g = app.get(&format!("/api/v1/Customer/{name}")).send().await.expect(200);
    assert_eq!(g.json["credit_limit"].to_string(), "123456789012.123456");

    app.delete(&format!("/api/v1/Customer/{name}")).send().await.expect(204);
    app.get(&format!("/api/v1/Customer/{name}")).send().await.expect_error(404, "not_found");
    app.delete("/api/v1/Territory/North").send().await.expect(204);
});

both!(invoice_with_child_rows, |app| {
    let (customer, invoice) = seed(&app).await;
    let doc = app.get(&format!("/api/v1/Invoice/{invoice}")).send().await.expect(200).json;
    assert_eq!(doc["customer_name"], "Acme", "hook fills customer_name");
    assert_eq!(doc["customer"], customer.as_str());
    assert_eq!(doc["status"], "Draft", "Select default");
    assert_eq!(doc["docstatus"], 0);
    assert_eq!(doc["_version"], 1);
    let items = doc["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["amount"], json!(21), "hook computes amount = qty × rate");
    assert_eq!(items[0]["idx"], 0);
    assert_eq!(items[1]["idx"], 1);
    assert_eq!(items[0]["parent"], invoice.as_str());
    assert_eq!(doc["grand_total"], json!(25));
    assert!(doc["posting_date"].as_str().is_some_and(|d| d.len() == 10), "today default");

    // Update row 0 by id, drop row 1 by omission, add a new row.
    let first_id = items[0]["id"].as_str().unwrap();
    let second_id = items[1]["id"].as_str().unwrap().to_string();
    let updated = app
        .patch(
            &format!("/api/v1/Invoice/{invoice}"),
            json!({"items": [{"id": first_id, "qty": 3}, {"item_code": "C", "qty": 1, "rate": "0.25"}]}),
        )
        .send()
        .await
        .expect(200)
        .json;
    let rows = updated["items"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["id"], first_id, "updated in place");
    assert_eq!(rows[0]["item_code"], "A", "untouched fields kept");
    assert_eq!(rows[0]["amount"], json!(31.5));
    assert_eq!(rows[1]["item_code"], "C");
    assert_eq!(updated["grand_total"], json!(31.75));
    assert_eq!(updated["_version"], 2);
    let reread = app.get(&format!("/api/v1/Invoice/{invoice}")).send().await.expect(200).json;
    assert_eq!(reread, updated, "stored state equals the response");
    assert!(!reread["items"].as_array().unwrap().iter().any(|r| r["id"] == second_id.as_str()), "omitted row deleted");

    // A row id that is not this document's is rejected.
    app.patch(&format!("/api/v1/Invoice/{invoice}"), json!({"items": [{"id": second_id, "qty": 1}]}))
        .send()
        .await
        .expect_error(422, "validation_failed");

    // Updating without `items` keeps the rows; deleting the invoice removes them.
    let kept =
        app.patch(&format!("/api/v1/Invoice/{invoice}"), json!({"status": "Unpaid"})).send().await.expect(200).json;
    assert_eq!(kept["items"].as_array().unwrap().len(), 2);
    app.delete(&format!("/api/v1/Invoice/{invoice}")).send().await.expect(204);
    app.get(&format!("/api/v1/Invoice/{invoice}")).send().await.expect_error(404, "not_found");
});

both!(every_field_type_round_trips, |app| {
    app.post("/api/v1/Territory", json!({"territory_name": "West"})).send().await.expect(201);
    let body = json!({
        "code": "G-1", "label": "long text", "email": "a@b.example", "site": "https://example.com/x",
        "count": 7, "big": 9007199254740993i64, "weight": 2.5, "price": "19.99", "ratio": 0.1234,
        "active": true, "made_on": "2026-01-31", "seen_at": "2026-11-26T10:30:00+01:00", "opens": "08:30:00",
        "color": "Green", "extra": {"tags": ["a", "b"], "n": 1}, "token": "0193a5c0-0000-7000-8000-000000000001",
        "territory": "West"
    });
    let created = app.post("/api/v1/Gadget", body).send().await.expect(201).json;
    let got = app.get("/api/v1/Gadget/G-1").send().await.expect(200).json;
    assert_eq!(created, got);
    assert_eq!(got["big"], json!(9007199254740993i64), "BigInt keeps 64-bit precision");
    assert_eq!(got["price"].to_string(), "19.99");
    assert_eq!(got["ratio"].to_string(), "0.1234");
    assert_eq!(got["active"], json!(true));
    assert_eq!(got["seen_at"], "2026-11-26T09:30:00Z", "Datetime in UTC");
    assert_eq!(got["opens"], "08:30:00");
    assert_eq!(got["extra"], json!({"tags": ["a", "b"], "n": 1}));
    assert_eq!(got["token"], "0193a5c0-0000-7000-8000-000000000001");

    // Check accepts 0/1; Link accepts the target's id and stores its name.
    let west_id = app.get("/api/v1/Territory/West").send().await.expect(200).json["id"].as_str().unwrap().to_string();
    let g2 = app
        .post("/api/v1/Gadget", json!({"code": "G-2", "active": 1, "territory": west_id}))
        .send()
        .await
        .expect(201)
        .json;
    assert_eq!(g2["active"], json!(true));
    assert_eq!(g2["territory"], "West");
    let g3 = app.post("/api/v1/Gadget", json!({"code": "G-3"})).send().await.expect(201).json;
    assert_eq!(g3["active"], json!(false), "Check defaults to false");
});

both!(value_rules_are_422_and_wrong_types_400, |app| {
    let r = app
        .post("/api/v1/Gadget", json!({"code": "lower case", "count": 5000, "color": "Purple", "email": "nope", "site": "ftp://x", "price": "1.1234567"}))
        .send()
        .await
        .expect_error(422, "validation_failed");
    let codes: Vec<(String, String)> = r.json["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["field"].as_str().unwrap().to_string(), d["code"].as_str().unwrap().to_string()))
        .collect();
    for expected in [
        ("code", "regex"),
        ("count", "max"),
        ("color", "option"),
        ("email", "email"),
        ("site", "url"),
        ("price", "scale"),
    ] {
        assert!(codes.contains(&(expected.0.to_string(), expected.1.to_string())), "missing {expected:?} in {codes:?}");
    }
    app.post("/api/v1/Gadget", json!({"code": "TOO-LONG-CODE-1234567890"}))
        .send()
        .await
        .expect_error(422, "validation_failed");
    app.post("/api/v1/Customer", json!({})).send().await.expect_error(422, "validation_failed");
    app.post("/api/v1/Gadget", json!({"code": "G-9", "count": "seven"})).send().await.expect_error(400, "bad_request");
    app.post("/api/v1/Gadget", json!({"code": "G-9", "active": "yes"})).send().await.expect_error(400, "bad_request");
    app.post("/api/v1/Gadget", json!({"code": "G-9", "made_on": "31/01/2026"}))
        .send()
        .await
        .expect_error(422, "validation_failed");
    app.post("/api/v1/Gadget", json!({"code": "G-9", "nonsense": 1})).send().await.expect_error(400, "unknown_field");
    app.post("/api/v1/Gadget", json!([1, 2])).send().await.expect_error(400, "bad_request");
    app.req("POST", "/api/v1/Gadget").raw("{not json").send().await.expect_error(400, "bad_request");
    app.post("/api/v1/Nope", json!({})).send().await.expect_error(404, "not_found");
    app.post("/api/v1/Invoice%20Item", json!({})).send().await.expect_error(404, "not_found");
});

both!(server_set_fields_are_ignored_on_input, |app| {
    let created = app
        .post("/api/v1/Territory", json!({"territory_name": "East", "owner": "mallory@example.com", "name": "Hijack", "creation": "2000-01-01T00:00:00Z", "id": "0193a5c0-0000-7000-8000-000000000009"}))
        .send()
        .await
        .expect(201)
        .json;
    assert_eq!(created["owner"], "Administrator");
    assert_eq!(created["name"], "East");
    assert_ne!(created["id"], "0193a5c0-0000-7000-8000-000000000009");
    assert_ne!(created["creation"], "2000-01-01T00:00:00Z");
    let (_, invoice) = crate::support::seed(&app).await;
    let doc = app
        .patch(
            &format!("/api/v1/Invoice/{invoice}"),
            json!({"docstatus": 1, "grand_total": 1, "customer_name": "Evil"}),
        )
        .send()
        .await
        .expect(200)
        .json;
    assert_eq!(doc["docstatus"], 0);
    assert_eq!(doc["grand_total"], json!(25), "read_only fields are set by hooks, never by clients");
    assert_eq!(doc["customer_name"], "Acme");
});

both!(links_and_uniques, |app| {
    let (customer, _invoice) = seed(&app).await;
    app.post("/api/v1/Invoice", json!({"customer": "CUST-99999"})).send().await.expect_error(422, "validation_failed");
    app.post("/api/v1/Customer", json!({"customer_name": "X", "territory": "Atlantis"}))
        .send()
        .await
        .expect_error(422, "validation_failed");
    let dup =
        app.post("/api/v1/Territory", json!({"territory_name": "North"})).send().await.expect_error(409, "duplicate");
    assert!(dup.json["error"]["details"][0]["field"].is_string());
    app.delete(&format!("/api/v1/Customer/{customer}")).send().await.expect_error(409, "link_exists");
    app.delete("/api/v1/Territory/North").send().await.expect_error(409, "link_exists");
    // Nothing leaks database text.
    let body = app.delete("/api/v1/Territory/North").send().await.json.to_string().to_lowercase();
    assert!(!body.contains("constraint") && !body.contains("foreign") && !body.contains("sql"), "{body}");
});

both!(series_names_are_unique_under_concurrency, |app| {
    app.post("/api/v1/Territory", json!({"territory_name": "North"})).send().await.expect(201);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let req = app.post("/api/v1/Customer", json!({"customer_name": format!("C{i}"), "territory": "North"}));
        tasks.push(tokio::spawn(async move { req.send().await }));
    }
    let mut names = std::collections::BTreeSet::new();
    for t in tasks {
        let r = t.await.unwrap().expect(201);
        names.insert(r.json["name"].as_str().unwrap().to_string());
    }
    assert_eq!(names.len(), 50, "50 distinct names: {names:?}");
    let list = app.get("/api/v1/Customer?limit=100&fields=name").send().await.expect(200).json;
    assert_eq!(list["total"], 50);
});

both!(hooks_see_links_given_by_id_and_read_through_the_transaction, |app| {
    let (customer, _) = seed(&app).await;
    let customer_id = app.get(&format!("/api/v1/Customer/{customer}")).send().await.expect(200).json["id"]
        .as_str()
        .unwrap()
        .to_string();
    let inv = app.post("/api/v1/Invoice", json!({"customer": customer_id})).send().await.expect(201).json;
    assert_eq!(inv["customer"], customer.as_str(), "stored as the target's name");
    assert_eq!(inv["customer_name"], "Acme", "the hook ran after the Link was resolved");

    // More concurrent hook-running writes than the pool has connections (8): hooks read through
    // their own transaction, so nobody waits for a second connection.
    let mut names = Vec::new();
    for _ in 0..12 {
        let r = app
            .post("/api/v1/Invoice", json!({"customer": customer, "items": [{"item_code": "A", "rate": 1}]}))
            .send()
            .await
            .expect(201);
        names.push(r.json["name"].as_str().unwrap().to_string());
    }
    let mut tasks = Vec::new();
    for n in &names {
        for q in 1..=3 {
            let req =
                app.patch(&format!("/api/v1/Invoice/{n}"), json!({"items": [{"item_code": "A", "qty": q, "rate": 2}]}));
            tasks.push(tokio::spawn(async move { req.send().await }));
        }
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert!(r.status == 200 || r.status == 409, "unexpected {}: {}", r.status, r.json);
    }
});

both!(child_rows_repeated_or_changed_on_submit, |app| {
    let (_, invoice) = seed(&app).await;
    let path = format!("/api/v1/Invoice/{invoice}");
    let doc = app.get(&path).send().await.expect(200).json;
    let id = doc["items"][0]["id"].as_str().unwrap();
    let r = app
        .patch(&path, json!({"items": [{"id": id, "qty": 1}, {"id": id, "qty": 2}]}))
        .send()
        .await
        .expect_error(422, "validation_failed");
    assert_eq!(r.json["error"]["details"][0]["code"], "duplicate_row");
    // What submit returns is what is stored, child rows included.
    let submitted = app.req("POST", &format!("{path}/submit")).send().await.expect(200).json;
    assert_eq!(app.get(&path).send().await.expect(200).json, submitted);
});

both!(like_escapes_and_malformed_paths, |app| {
    app.post("/api/v1/Gadget", json!({"code": "L-1", "label": "a_b"})).send().await.expect(201);
    app.post("/api/v1/Gadget", json!({"code": "L-2", "label": "axb"})).send().await.expect(201);
    let r = app.get("/api/v1/Gadget?label[like]=a%5C_b").send().await.expect(200).json;
    assert_eq!(r["total"], 1, "an escaped wildcard matches itself: {r}");
    let r = app.get("/api/v1/Gadget?label[like]=a_b").send().await.expect(200).json;
    assert_eq!(r["total"], 2);
    app.get("/api/v1/%FF").send().await.expect_error(400, "bad_request");
    // Permission is checked before the body is parsed.
    let reader = app.token("rita@example.com", &["Gadget Reader"]).await;
    app.req("POST", "/api/v1/Gadget").raw("{not json").by(reader).send().await.expect_error(403, "forbidden");
});
