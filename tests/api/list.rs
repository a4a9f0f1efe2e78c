//! List parameters and operators, with values coerced from the query string.

use serde_json::{Value, json};

use crate::both;
use crate::support::TestApp;

async fn gadgets(app: &TestApp) {
    let rows = [
        json!({"code": "A", "count": 1, "weight": 0.5, "price": "10.10", "active": true, "made_on": "2026-01-10", "seen_at": "2026-01-10T08:00:00Z", "color": "Red", "label": "alpha one"}),
        json!({"code": "B", "count": 2, "weight": 1.5, "price": "20.20", "active": false, "made_on": "2026-02-10", "seen_at": "2026-02-10T08:00:00Z", "color": "Green", "label": "beta"}),
        json!({"code": "C", "count": 3, "weight": 2.5, "price": "30.30", "active": true, "made_on": "2026-03-10", "seen_at": "2026-03-10T08:00:00Z", "color": "Blue", "label": "gamma"}),
        json!({"code": "D", "count": 4, "weight": 3.5, "price": "100.00", "active": false, "made_on": "2026-04-10", "seen_at": "2026-04-10T08:00:00Z", "color": "Red", "label": "alpha two"}),
        json!({"code": "E"}),
    ];
    for r in rows {
        app.post("/api/v1/Gadget", r).send().await.expect(201);
    }
}

/// Codes of a list response, in order.
fn codes(v: &Value) -> Vec<String> {
    v["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_string()).collect()
}

async fn list(app: &TestApp, query: &str) -> Vec<String> {
    let r = app.get(&format!("/api/v1/Gadget?{query}")).send().await.expect(200);
    codes(&r.json)
}

both!(operators_on_every_type_from_the_query_string, |app| {
    gadgets(&app).await;
    let cases: &[(&str, &[&str])] = &[
        // Int
        ("count=2&order_by=name", &["B"]),
        ("count[gt]=2&order_by=name", &["C", "D"]),
        ("count[gte]=2&count[lt]=4&order_by=name", &["B", "C"]),
        ("count[lte]=1", &["A"]),
        ("count[ne]=1&order_by=name", &["B", "C", "D", "E"]),
        ("count[in]=1,3&order_by=name", &["A", "C"]),
        ("count[not_in]=1,3&order_by=name", &["B", "D", "E"]),
        ("count[between]=2,3&order_by=name", &["B", "C"]),
        ("count[is_null]=true", &["E"]),
        ("count[is_null]=false&order_by=name", &["A", "B", "C", "D"]),
        // Float
        ("weight[gt]=1.5&order_by=name", &["C", "D"]),
        ("weight[between]=0.5,1.5&order_by=name", &["A", "B"]),
        // Currency (compared as numbers, not text: 100 > 30.30)
        ("price[gt]=30&order_by=name", &["C", "D"]),
        ("price[gte]=100.00", &["D"]),
        ("price=20.2", &["B"]),
        ("order_by=price desc&price[is_null]=false", &["D", "C", "B", "A"]),
        // Date
        ("made_on[gte]=2026-03-01&order_by=name", &["C", "D"]),
        ("made_on[between]=2026-01-01,2026-02-28&order_by=name", &["A", "B"]),
        ("made_on=2026-04-10", &["D"]),
        // Datetime (RFC 3339, other offsets, or a bare date)
        ("seen_at[gt]=2026-03-01T00:00:00Z&order_by=name", &["C", "D"]),
        ("seen_at[lt]=2026-02-10T09:00:00%2B01:00", &["A"]),
        ("seen_at[gte]=2026-04-01&order_by=name", &["D"]),
        // Check
        ("active=true&order_by=name", &["A", "C"]),
        ("active=0&order_by=name", &["B", "D", "E"]),
        // Select
        ("color=Red&order_by=name", &["A", "D"]),
        ("color[in]=Green,Blue&order_by=name", &["B", "C"]),
        // like, with wildcards as given
        ("label[like]=alpha%25&order_by=name", &["A", "D"]),
        ("label[like]=%25ET%25", &["B"]),
        // bare field = eq; name
        ("name=C", &["C"]),
    ];
    for (query, expected) in cases {
        assert_eq!(list(&app, query).await, *expected, "query: {query}");
    }
});

both!(json_filters_or_filters_and_aliases, |app| {
    gadgets(&app).await;
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            format!("filters={}&order_by=name", enc(r#"[["color","in",["Red","Blue"]],["count",">",1]]"#)),
            vec!["C", "D"],
        ),
        (
            format!("filters={}&order_by=name", enc(r#"[{"field":"weight","operator":"between","value":[1,3]}]"#)),
            vec!["B", "C"],
        ),
        (format!("filters={}&order_by=name", enc(r#"[["price",">=","30"],["made_on","<","2026-04-01"]]"#)), vec!["C"]),
        (format!("filters={}&order_by=name", enc(r#"[["count","not in",[1,2]],["count","!=",4]]"#)), vec!["C", "E"]),
        (format!("filters={}&order_by=name", enc(r#"[["count","is","not set"]]"#)), vec!["E"]),
        (format!("filters={}&order_by=name", enc(r#"{"color":"Red"}"#)), vec!["A", "D"]),
        (format!("filters={}&order_by=name", enc(r#"[["Gadget","count","=",3]]"#)), vec!["C"]),
        (format!("or_filters={}&order_by=name", enc(r#"[["color","=","Blue"],["count","<=",1]]"#)), vec!["A", "C"]),
        (
            format!(
                "or_filters={}&filters={}&order_by=name",
                enc(r#"[["color","=","Red"],["color","=","Blue"]]"#),
                enc(r#"[["active","=",true]]"#)
            ),
            vec!["A", "C"],
        ),
        (
            format!("or_filters={}&count[gte]=3&order_by=name", enc(r#"[["color","=","Red"],["color","=","Blue"]]"#)),
            vec!["C", "D"],
        ),
    ];
    for (query, expected) in cases {
        assert_eq!(list(&app, &query).await, expected, "query: {query}");
    }
});

both!(paging_ordering_projection_and_totals, |app| {
    gadgets(&app).await;
    let r = app.get("/api/v1/Gadget?order_by=-count,name&limit=2").send().await.expect(200).json;
    assert_eq!(codes(&r), ["D", "C"]);
    assert_eq!(r["total"], 5);
    assert_eq!(r["limit"], 2);
    assert_eq!(r["offset"], 0);
    assert_eq!(r["has_more"], true);
    let r = app.get("/api/v1/Gadget?order_by=count%20asc,name&limit=2&offset=4").send().await.expect(200).json;
    assert_eq!(r["has_more"], false);
    assert_eq!(r["items"].as_array().unwrap().len(), 1);
    let r = app.get("/api/v1/Gadget?order_by=name%20DESC&total=false&limit=1").send().await.expect(200).json;
    assert_eq!(codes(&r), ["E"]);
    assert_eq!(r["total"], Value::Null);
    assert_eq!(r["has_more"], true);

    // Default order: most recently modified first.
    assert_eq!(list(&app, "").await, ["E", "D", "C", "B", "A"]);

    // fields: projected, id and name always present; comma list or JSON array.
    let r = app.get("/api/v1/Gadget?fields=count,color&name=A").send().await.expect(200).json;
    let item = r["items"][0].as_object().unwrap();
    let mut keys: Vec<&str> = item.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["color", "count", "id", "name"]);
    let r = app.get("/api/v1/Gadget?fields=%5B%22price%22%5D&name=D").send().await.expect(200).json;
    assert_eq!(r["items"][0]["price"].to_string(), "100");
    assert_eq!(r["items"][0].as_object().unwrap().len(), 3);

    // limit is clamped to the maximum page size and reported.
    let r = app.get("/api/v1/Gadget?limit=100000").send().await.expect(200).json;
    assert_eq!(r["limit"], 500);

    // Lists never include child rows.
    crate::support::seed(&app).await;
    let r = app.get("/api/v1/Invoice").send().await.expect(200).json;
    assert!(r["items"][0].get("items").is_none());
});

both!(bad_list_parameters_are_400, |app| {
    let bad: &[(&str, &str)] = &[
        ("limit=0", "bad_request"),
        ("limit=-1", "bad_request"),
        ("limit=abc", "bad_request"),
        ("limit=99999999999999999999999", "bad_request"),
        ("offset=-1", "bad_request"),
        ("offset=4294967296", "bad_request"),
        ("limit=1&limit=2", "bad_request"),
        ("order_by=nope", "unknown_field"),
        ("order_by=count%20sideways", "bad_request"),
        ("order_by=count;DROP%20TABLE%20gadget", "bad_request"),
        ("order_by=count;DROP", "unknown_field"),
        ("fields=nope", "unknown_field"),
        ("fields=count,%22name%22", "unknown_field"),
        ("filters=%5B%5B%22nope%22,%22=%22,1%5D%5D", "unknown_field"),
        ("filters=%5B%5B%22count%22,%22~%22,1%5D%5D", "bad_request"),
        ("filters=not-json", "bad_request"),
        ("count[gt]=three", "bad_request"),
        ("made_on[gt]=yesterday", "bad_request"),
        ("active=maybe", "bad_request"),
        ("count[like]=1", "bad_request"),
        ("count[between]=1", "bad_request"),
        ("count[whatever]=1", "bad_request"),
        ("unknown=1", "bad_request"),
        ("total=perhaps", "bad_request"),
    ];
    for (query, code) in bad {
        app.get(&format!("/api/v1/Gadget?{query}")).send().await.expect_error(400, code);
    }
    // Caps: 101 fields, 51 conditions, 1001 in-values.
    let many_fields = vec!["count"; 101].join(",");
    app.get(&format!("/api/v1/Gadget?fields={many_fields}")).send().await.expect_error(400, "bad_request");
    let many_filters = (0..51).map(|i| format!("count[ne]={i}")).collect::<Vec<_>>().join("&");
    app.get(&format!("/api/v1/Gadget?{many_filters}")).send().await.expect_error(400, "bad_request");
    let many_values = (0..1001).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    app.get(&format!("/api/v1/Gadget?count[in]={many_values}")).send().await.expect_error(400, "bad_request");
    // The table is intact after all of that.
    app.get("/api/v1/Gadget").send().await.expect(200);
});
