//! After-commit document events (the test DocType Gizmo's `after_commit` hook): recorded in the
//! change's transaction, so they exist exactly when it commits, and delivered by a job with the
//! document as it was committed.

use std::time::Duration;

use serde_json::json;

use crate::support::{Backend, GIZMO_EVENTS, TestApp, wait_until};

/// The events delivered for `code`, in order: (event, label).
fn events_of(code: &str) -> Vec<(&'static str, Option<String>, String)> {
    GIZMO_EVENTS
        .lock()
        .map(|e| e.iter().filter(|(c, ..)| c == code).map(|(_, ev, l, s)| (*ev, l.clone(), s.clone())).collect())
        .unwrap_or_default()
}

async fn run(backend: Backend) {
    let Some((app, config)) = TestApp::start_with(backend, |_| {}).await else { return };
    // Codes unique to this run: both databases share the recorder.
    let code = format!("GZ-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]).to_uppercase();
    let worker = app.worker(&config);
    app.post("/api/v1/Gizmo", json!({"code": code, "label": "first", "secret": "s"})).send().await.expect(201);
    app.patch(&format!("/api/v1/Gizmo/{code}"), json!({"label": "second"})).send().await.expect(200);
    // A change that fails records nothing.
    app.patch(&format!("/api/v1/Gizmo/{code}"), json!({"label": "refuse"}))
        .send()
        .await
        .expect_error(422, "validation_failed");
    app.post(&format!("/api/v1/Gizmo/{code}/submit"), json!({})).send().await.expect(200);
    app.post(&format!("/api/v1/Gizmo/{code}/cancel"), json!({})).send().await.expect(200);
    let seen = wait_until("five events delivered", Duration::from_secs(30), || async {
        let seen = events_of(&code);
        if seen.len() >= 5 { Ok(seen) } else { Err(seen) }
    })
    .await;
    // The events of one change arrive in order; different changes' events in any order (jobs run
    // side by side), each with the document as that change committed it.
    let names: Vec<&str> = seen.iter().map(|(e, ..)| *e).collect();
    let insert = names.iter().position(|e| *e == "after_insert").expect("after_insert");
    assert_eq!(seen[insert].1.as_deref(), Some("first"));
    let created = seen.iter().position(|(e, l, _)| *e == "on_update" && l.as_deref() == Some("first"));
    assert!(created.is_some_and(|i| i > insert), "the creation's on_update follows its after_insert: {seen:?}");
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["after_insert", "on_cancel", "on_submit", "on_update", "on_update"], "{seen:?}");
    assert!(seen.iter().any(|(e, l, _)| *e == "on_update" && l.as_deref() == Some("second")), "{seen:?}");
    assert!(seen.iter().any(|(e, l, _)| *e == "on_submit" && l.as_deref() == Some("second")), "{seen:?}");
    assert!(seen.iter().all(|(_, l, _)| l.as_deref() != Some("refuse")), "{seen:?}");
    // A deleted draft: its last state is delivered as on_trash.
    let other = format!("{code}-T");
    app.post("/api/v1/Gizmo", json!({"code": other, "label": "doomed"})).send().await.expect(201);
    app.delete(&format!("/api/v1/Gizmo/{other}")).send().await.expect(204);
    let gone = wait_until("the on_trash event", Duration::from_secs(30), || async {
        let seen = events_of(&other);
        if seen.iter().any(|(e, ..)| *e == "on_trash") { Ok(seen) } else { Err(seen) }
    })
    .await;
    let trash = gone.iter().find(|(e, ..)| *e == "on_trash").unwrap();
    assert_eq!(trash.1.as_deref(), Some("doomed"));
    assert_eq!(trash.2, "Null", "after the delete committed, the document is gone");
    worker.stop().await;
    // Delivered events are forgotten; their jobs are done.
    let left = app.repo().jobs().list(None, 100).await.unwrap();
    assert!(left.iter().filter(|j| j.job == "m:doc_event").all(|j| j.state == "done"), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_changes_reach_after_commit_hooks_sqlite() {
    run(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_changes_reach_after_commit_hooks_postgres() {
    if crate::support::pg_url().is_none() {
        eprintln!("skipped: M_TEST_PG_URL is not set");
        return;
    }
    run(Backend::Postgres).await;
}
