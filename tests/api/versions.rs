//! Version history: each change of a tracked DocType (the example's Customer and Invoice) is
//! recorded in its transaction with a field-level diff, readable newest first by those who may
//! read the document, never with a Password field; an untracked DocType records nothing.

use serde_json::{Value, json};

use crate::support::TestApp;

async fn versions(app: &TestApp, path: &str, token: Option<String>) -> Vec<Value> {
    let mut req = app.get(&format!("{path}/versions?limit=50"));
    if let Some(t) = token {
        req = req.by(t);
    }
    req.send().await.expect(200).json["items"].as_array().cloned().unwrap()
}

crate::both!(changes_are_recorded_as_versions, |app| {
    app.post("/api/v1/Territory", json!({"territory_name": "North"})).send().await.expect(201);
    let c = app.post("/api/v1/Customer", json!({"customer_name": "Acme", "territory": "North"})).send().await;
    let customer = c.expect(201).json["name"].as_str().unwrap().to_string();
    let items = json!([{"item_code": "A", "qty": 1, "rate": 5}, {"item_code": "B", "qty": 2, "rate": 1}]);
    let i = app.post("/api/v1/Invoice", json!({"customer": customer, "items": items})).send().await.expect(201);
    let invoice = i.json["name"].as_str().unwrap().to_string();
    let path = format!("/api/v1/Invoice/{invoice}");
    let rows = i.json["items"].as_array().unwrap().clone();
    // Change a row, drop one, add one, and a field.
    let update = json!({"items": [
        {"id": rows[0]["id"], "item_code": "A", "qty": 3, "rate": 5},
        {"item_code": "C", "qty": 1, "rate": 7}
    ]});
    let etag = i.header("etag").unwrap();
    app.patch(&path, update).header("if-match", &etag).send().await.expect(200);
    let etag = app.get(&path).send().await.header("etag").unwrap();
    app.post(&format!("{path}/submit"), json!({})).header("if-match", &etag).send().await.expect(200);

    // A save that changes nothing records nothing.
    let c_path = format!("/api/v1/Customer/{customer}");
    app.patch(&c_path, json!({"customer_name": "Acme"})).send().await.expect(200);
    assert_eq!(versions(&app, &c_path, None).await.len(), 1, "only the creation");
    let v = versions(&app, &path, None).await;
    let actions: Vec<&str> = v.iter().map(|v| v["data"]["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["submit", "update", "create"], "newest first: {v:?}");
    assert!(v.iter().all(|v| v["user"] == "Administrator" && v["creation"].is_string()), "{v:?}");
    assert_eq!(v[2]["data"]["doc"]["customer"], customer.as_str(), "the created document");
    let upd = &v[1]["data"];
    assert!(upd["changed"].as_array().unwrap().iter().any(|c| c[0] == "grand_total"), "{upd}");
    assert_eq!(upd["added"][0][0], "items");
    assert_eq!(upd["added"][0][1]["item_code"], "C");
    assert_eq!(upd["removed"][0][1]["item_code"], "B");
    let row = &upd["row_changed"][0];
    assert_eq!((row[0].as_str(), row[1].as_i64()), (Some("items"), Some(0)), "{upd}");
    assert!(row[3].as_array().unwrap().iter().any(|c| c[0] == "qty" && c[2] == 3.0), "{upd}");
    let sub = &v[0]["data"]["changed"];
    assert!(sub.as_array().unwrap().iter().any(|c| c[0] == "docstatus" && c[1] == 0 && c[2] == 1), "{sub}");

    // Only those who may read the document: a stranger gets 403, an if_owner user 404.
    let stranger = app.token("versions-stranger@example.com", &["Gadget Reader"]).await;
    app.get(&format!("{path}/versions")).by(stranger).send().await.expect_error(403, "forbidden");
    let sales = app.token("versions-sales@example.com", &["Sales User"]).await;
    app.get(&format!("{path}/versions")).by(sales.clone()).send().await.expect_error(404, "not_found");
    app.get(&format!("{path}/versions?limit=0x")).send().await.expect_error(400, "bad_request");
    app.get(&format!("{path}/versions?order=asc")).send().await.expect_error(400, "bad_request");
    let paged = app.get(&format!("{path}/versions?limit=1&offset=1")).send().await.expect(200);
    assert_eq!(paged.json["items"][0]["data"]["action"], "update");
    assert_eq!(paged.json["has_more"], true);

    // A delete keeps the last state, for System Managers (the document is gone).
    let d = app.post("/api/v1/Customer", json!({"customer_name": "Gone"})).send().await.expect(201);
    let gone = d.json["name"].as_str().unwrap().to_string();
    app.delete(&format!("/api/v1/Customer/{gone}")).send().await.expect(204);
    let all = app.get(&format!("/api/v1/Version?docname={gone}")).send().await.expect(200);
    let kept = all.json["items"].as_array().unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept.iter().any(|v| v["data"]["action"] == "delete" && v["data"]["doc"]["customer_name"] == "Gone"));
    app.get("/api/v1/Version").by(sales).send().await.expect_error(403, "forbidden");

    // An untracked DocType (Gadget, which has a Password field) records nothing.
    app.post("/api/v1/Gadget", json!({"code": "V-1", "api_key": "k-secret"})).send().await.expect(201);
    assert!(versions(&app, "/api/v1/Gadget/V-1", None).await.is_empty());
    let everything = app.get("/api/v1/Version?limit=500").send().await.expect(200);
    assert!(!everything.json.to_string().contains("k-secret"));
});

crate::both!(old_versions_are_swept_when_a_retention_is_set, |app| {
    let c = app.post("/api/v1/Customer", json!({"customer_name": "Old"})).send().await.expect(201);
    let old = c.json["name"].as_str().unwrap().to_string();
    let path = format!("/api/v1/Customer/{old}");
    assert_eq!(versions(&app, &path, None).await.len(), 1);
    // Workers whose upkeep keeps versions for a second.
    let mut wc = m_runtime::jobs::WorkerConfig::from_config(&m_runtime::config::Config::default());
    wc.maintain_every = std::time::Duration::from_millis(100);
    wc.version_keep = Some(std::time::Duration::from_secs(1));
    let worker = app.worker_with(wc, std::time::Duration::from_secs(5));
    crate::support::wait_until("the old version to be swept", std::time::Duration::from_secs(30), || async {
        let left = versions(&app, &path, None).await;
        if left.is_empty() { Ok(()) } else { Err(left) }
    })
    .await;
    worker.stop().await;
    // Without a retention nothing is swept: the default keeps versions.
    assert!(m_runtime::jobs::WorkerConfig::from_config(&m_runtime::config::Config::default()).version_keep.is_none());
    let fresh = app.post("/api/v1/Customer", json!({"customer_name": "New"})).send().await.expect(201);
    let fresh = format!("/api/v1/Customer/{}", fresh.json["name"].as_str().unwrap());
    assert_eq!(versions(&app, &fresh, None).await.len(), 1);
});
