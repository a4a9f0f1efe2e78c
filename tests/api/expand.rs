//! `expand`: Links returned as the linked documents, through the caller's permissions and row
//! scope, with one query per linked DocType for a whole list.

use serde_json::{Value, json};

use crate::support::{Backend, TestApp};

/// The expand tests count statements in the process-wide metrics: they run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn expanding(backend: Backend) {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(app) = TestApp::start(backend).await else { return };
    for t in ["North", "South"] {
        app.post("/api/v1/Territory", json!({"territory_name": t})).send().await.expect(201);
    }
    let customer = |name: &str, territory: &str| {
        let body = json!({"customer_name": name, "territory": territory, "email": format!("{}@example.com", name.to_lowercase())});
        let app = &app;
        async move { app.post("/api/v1/Customer", body).send().await.expect(201).json["name"].as_str().unwrap().to_string() }
    };
    let north = customer("Nora", "North").await;
    let south = customer("Sam", "South").await;
    let items = json!([{"item_code": "A", "qty": 1, "rate": 2}]);
    let inv = app.post("/api/v1/Invoice", json!({"customer": north, "items": items})).send().await.expect(201);
    let invoice = inv.json["name"].as_str().unwrap().to_string();

    // One document: the Link becomes the linked document; a projection keeps the name and the
    // fields asked for.
    let r = app.get(&format!("/api/v1/Invoice/{invoice}?expand=customer")).send().await.expect(200);
    assert!(r.header("etag").is_some());
    let c = &r.json["customer"];
    assert_eq!((c["name"].as_str(), c["customer_name"].as_str()), (Some(north.as_str()), Some("Nora")), "{}", r.json);
    assert_eq!(c["territory"], "North");
    assert_eq!(r.json["items"][0]["item_code"], "A", "child rows are still there");
    let r =
        app.get(&format!("/api/v1/Invoice/{invoice}?expand=customer(customer_name,email)")).send().await.expect(200);
    let keys: Vec<&String> = r.json["customer"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["name", "customer_name", "email"], "{}", r.json);
    for bad in [
        "nope",
        "customer_name",
        "customer(nope)",
        "customer.territory",
        "items.item_code",
        "customer(",
        "customer,customer",
    ] {
        let r = app.get(&format!("/api/v1/Invoice/{invoice}?expand={bad}")).send().await;
        r.expect_error(400, "bad_request");
    }

    // A list of 100 invoices over two customers: one query for the customers, whatever the rows.
    for i in 0..99 {
        let who = if i % 2 == 0 { &north } else { &south };
        app.post("/api/v1/Invoice", json!({"customer": who})).send().await.expect(201);
    }
    let labels = [("doctype", "Customer"), ("operation", "expand")];
    let before = crate::support::metric_value(&app, "m_db_query_duration_seconds_count", &labels).await;
    let r = app.get("/api/v1/Invoice?expand=customer(customer_name)&limit=100").send().await.expect(200);
    let after = crate::support::metric_value(&app, "m_db_query_duration_seconds_count", &labels).await;
    assert_eq!(after - before, 1.0, "one statement for the linked customers of 100 rows");
    let items = r.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 100);
    assert!(items.iter().all(|i| i["customer"]["customer_name"].is_string()), "{}", r.json);
    app.get("/api/v1/Invoice?expand=items.customer").send().await.expect_error(400, "bad_request");
    app.get("/api/v1/Invoice?fields=name&expand=customer").send().await.expect_error(400, "bad_request");

    // A Link outside the caller's User Permissions is its name only.
    let ann = app.token("ann-expand@example.com", &["Sales User"]).await;
    let mine = |customer: String| {
        let (app, ann) = (&app, ann.clone());
        async move {
            let r = app.post("/api/v1/Invoice", json!({"customer": customer})).by(ann).send().await.expect(201);
            r.json["name"].as_str().unwrap().to_string()
        }
    };
    let (to_north, to_south) = (mine(north.clone()).await, mine(south.clone()).await);
    let up = json!({"user": "ann-expand@example.com", "allow": "Territory", "for_value": "North"});
    app.post("/api/v1/User Permission", up).send().await.expect(201);
    let get = |name: String| {
        let (app, ann) = (&app, ann.clone());
        async move { app.get(&format!("/api/v1/Invoice/{name}?expand=customer")).by(ann).send().await.expect(200).json }
    };
    let seen: Value = get(to_north).await;
    assert_eq!(seen["customer"]["customer_name"], "Nora", "{seen}");
    let hidden: Value = get(to_south).await;
    assert_eq!(hidden["customer"], json!({"name": south}), "only the name: {hidden}");

    // A Link to a DocType the caller cannot read at all is its name only.
    let gadgeteer = app.token("gadget-expand@example.com", &["Gadget User"]).await;
    // (Linked by a System Manager: the owner cannot link what they cannot read.)
    app.post("/api/v1/Gadget", json!({"code": "EXP-1"})).by(gadgeteer.clone()).send().await.expect(201);
    app.patch("/api/v1/Gadget/EXP-1", json!({"territory": "North"})).send().await.expect(200);
    let r = app.get("/api/v1/Gadget/EXP-1?expand=territory").by(gadgeteer.clone()).send().await.expect(200);
    assert_eq!(r.json["territory"], json!({"name": "North"}), "{}", r.json);
    let r = app.get("/api/v1/Gadget?expand=territory").by(gadgeteer).send().await.expect(200);
    assert_eq!(r.json["items"][0]["territory"], json!({"name": "North"}), "{}", r.json);

    // A Link inside child rows (one Table hop), through the same rules.
    let parts = json!([{"part": "a", "territory": "North"}, {"part": "b", "territory": "South"}, {"part": "c"}]);
    app.post("/api/v1/Gizmo", json!({"code": "EXP-G", "parts": parts})).send().await.expect(201);
    let r = app.get("/api/v1/Gizmo/EXP-G?expand=parts.territory(territory_name)").send().await.expect(200);
    let rows = r.json["parts"].as_array().unwrap();
    assert_eq!(rows[0]["territory"], json!({"name": "North", "territory_name": "North"}), "{}", r.json);
    assert_eq!(rows[1]["territory"]["name"], "South");
    assert!(rows[2]["territory"].is_null(), "an empty Link stays empty: {}", r.json);
    let gizmo_user = app.token("gizmo-expand@example.com", &["Gizmo User"]).await;
    let r = app.get("/api/v1/Gizmo/EXP-G?expand=parts.territory").by(gizmo_user).send().await.expect(200);
    assert_eq!(r.json["parts"][0]["territory"], json!({"name": "North"}), "cannot read Territory: {}", r.json);
    let r = app.get("/api/v1/Gizmo?expand=parts.territory").send().await.expect_error(400, "bad_request");
    assert!(r.json["error"]["message"].as_str().unwrap().contains("no child rows"), "{}", r.json);
    // Repeated parameters count together: a Link named twice, or more than ten, is a 400.
    app.get("/api/v1/Gizmo/EXP-G?expand=parts.territory&expand=parts.territory").send().await.expect(400);
}

crate::both_backends!(links_expand_through_the_callers_permissions, |backend| {
    expanding(backend).await;
});
