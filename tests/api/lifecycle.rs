//! Submit / cancel / amend, their 409s, and optimistic concurrency (If-Match, `_version`).

use serde_json::json;

use crate::both;
use crate::support::seed;

both!(submit_cancel_amend, |app| {
    let (_, invoice) = seed(&app).await;
    let path = format!("/api/v1/Invoice/{invoice}");
    app.post(&format!("{path}/cancel"), json!({})).send().await.expect_error(409, "invalid_state");
    app.post(&format!("{path}/amend"), json!({})).send().await.expect_error(409, "invalid_state");

    let s = app.req("POST", &format!("{path}/submit")).send().await.expect(200).json;
    assert_eq!(s["docstatus"], 1);
    app.patch(&path, json!({"status": "Paid"})).send().await.expect_error(409, "invalid_state");
    app.delete(&path).send().await.expect_error(409, "invalid_state");
    app.req("POST", &format!("{path}/submit")).send().await.expect_error(409, "invalid_state");

    let c = app.req("POST", &format!("{path}/cancel")).send().await.expect(200).json;
    assert_eq!(c["docstatus"], 2);
    app.req("POST", &format!("{path}/cancel")).send().await.expect_error(409, "invalid_state");
    app.delete(&path).send().await.expect_error(409, "invalid_state");

    let a = app.req("POST", &format!("{path}/amend")).send().await.expect(201);
    assert_eq!(a.json["name"], format!("{invoice}-1"));
    assert_eq!(a.json["amended_from"], invoice.as_str());
    assert_eq!(a.json["docstatus"], 0);
    assert_eq!(a.json["items"].as_array().unwrap().len(), 2);
    assert_eq!(a.header("location"), Some(format!("/api/v1/Invoice/{invoice}-1")));

    // Amending the amendment after it is cancelled gives -2, not -1-1.
    let amended = format!("/api/v1/Invoice/{invoice}-1");
    app.req("POST", &format!("{amended}/submit")).send().await.expect(200);
    app.req("POST", &format!("{amended}/cancel")).send().await.expect(200);
    let a2 = app.req("POST", &format!("{amended}/amend")).send().await.expect(201).json;
    assert_eq!(a2["name"], format!("{invoice}-2"));

    // Lifecycle routes exist only for submittable DocTypes.
    app.req("POST", "/api/v1/Territory/North/submit").send().await.expect_error(404, "not_found");
    app.req("POST", &format!("{path}/frobnicate")).send().await.expect_error(404, "not_found");
});

both!(if_match_and_version, |app| {
    let (customer, invoice) = seed(&app).await;
    let path = format!("/api/v1/Invoice/{invoice}");
    let got = app.get(&path).send().await.expect(200);
    let etag = got.header("etag").unwrap();
    assert_eq!(etag, "\"v1\"");

    app.patch(&path, json!({"status": "Unpaid"}))
        .header("if-match", "\"v0\"")
        .send()
        .await
        .expect_error(412, "precondition_failed");
    let ok = app.patch(&path, json!({"status": "Unpaid"})).header("if-match", &etag).send().await.expect(200);
    assert_eq!(ok.header("etag").as_deref(), Some("\"v2\""));
    app.patch(&path, json!({"status": "Paid"}))
        .header("if-match", &etag)
        .send()
        .await
        .expect_error(412, "precondition_failed");
    app.patch(&path, json!({"status": "Paid", "_version": 1})).send().await.expect_error(409, "conflict");
    app.patch(&path, json!({"status": "Paid", "_version": 2})).send().await.expect(200);
    app.req("POST", &format!("{path}/submit"))
        .header("if-match", "\"v2\"")
        .send()
        .await
        .expect_error(412, "precondition_failed");
    app.req("POST", &format!("{path}/submit")).header("if-match", "\"v3\"").send().await.expect(200);

    // Non-optimistic DocTypes: the ETag comes from `modified`.
    let cpath = format!("/api/v1/Customer/{customer}");
    let c = app.get(&cpath).send().await.expect(200);
    let tag = c.header("etag").unwrap();
    app.patch(&cpath, json!({"credit_limit": 1})).header("if-match", &tag).send().await.expect(200);
    app.patch(&cpath, json!({"credit_limit": 2}))
        .header("if-match", &tag)
        .send()
        .await
        .expect_error(412, "precondition_failed");
    app.delete(&cpath).header("if-match", "\"stale\"").send().await.expect_error(412, "precondition_failed");
});

both!(concurrent_amendments_get_distinct_names, |app| {
    let (_, invoice) = seed(&app).await;
    let path = format!("/api/v1/Invoice/{invoice}");
    app.req("POST", &format!("{path}/submit")).send().await.expect(200);
    app.req("POST", &format!("{path}/cancel")).send().await.expect(200);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let req = app.req("POST", &format!("{path}/amend"));
        tasks.push(tokio::spawn(async move { req.send().await }));
    }
    let mut names = Vec::new();
    for t in tasks {
        names.push(t.await.unwrap().expect(201).json["name"].as_str().unwrap().to_string());
    }
    names.sort();
    let expected: Vec<String> = (1..=4).map(|n| format!("{invoice}-{n}")).collect();
    assert_eq!(names, expected);
});
