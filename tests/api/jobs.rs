//! Background jobs on both databases: queued with the write that queues them, run by workers,
//! retried, timed out, taken back from a lost worker, released at shutdown; the `m worker` and
//! `m job:*` commands; the queue in the metrics.

use std::time::Duration;

use m_runtime::config::Config;
use m_runtime::jobs::{JobInfo, JobState, WorkerConfig};
use serde_json::{Value, json};

use crate::support::{Scratch, TestApp, unix_micros, wait_until};

/// Every job, newest first.
async fn jobs(app: &TestApp) -> Vec<JobInfo> {
    app.repo().jobs().list(None, 100).await.unwrap()
}

/// Wait (up to 20 s) until `check` holds for the queue; the queue when it does.
async fn until(app: &TestApp, what: &str, check: impl Fn(&[JobInfo]) -> bool) -> Vec<JobInfo> {
    let check = &check;
    wait_until(what, Duration::from_secs(20), move || async move {
        let all = jobs(app).await;
        if check(&all) { Ok(all) } else { Err(all) }
    })
    .await
}

/// Queue `job` with `args`, due at `run_at` (Unix microseconds, the host's clock), as a staged
/// row (a job enqueued through the repository is due at once).
async fn enqueue_at(app: &TestApp, job: &str, args: &Value, run_at: i64) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    let sql = format!(
        "INSERT INTO m_job (id, job, args, state, attempts, max_attempts, run_at, created) \
         VALUES ('{id}', '{job}', '{args}', 'queued', 0, 1, {run_at}, {})",
        unix_micros()
    );
    crate::support::execute(app.database_url(), &sql).await;
    id
}

fn state_of<'a>(all: &'a [JobInfo], job: &str) -> Option<&'a str> {
    all.iter().find(|j| j.job == job).map(|j| j.state.as_str())
}

/// Jobs retry at once in these tests.
fn quick(c: &mut Config) {
    c.job_backoff_secs = 0;
}

crate::both_backends!(renaming_a_customer_updates_its_draft_invoices_in_the_background, |backend| {
    let Some((app, config)) = TestApp::start_with(backend, quick).await else { return };
    let customer = app.post("/api/v1/Customer", json!({"customer_name": "Acme"})).send().await.expect(201);
    let customer = customer.json["name"].as_str().unwrap().to_string();
    let invoice =
        |n: u32| json!({"customer": customer, "items": [{"item_code": format!("I-{n}"), "qty": 1, "rate": 10}]});
    let draft =
        app.post("/api/v1/Invoice", invoice(1)).send().await.expect(201).json["name"].as_str().unwrap().to_string();
    let issued =
        app.post("/api/v1/Invoice", invoice(2)).send().await.expect(201).json["name"].as_str().unwrap().to_string();
    app.post(&format!("/api/v1/Invoice/{issued}/submit"), json!({})).send().await.expect(200);
    // Saving without renaming queues nothing.
    app.req("PATCH", &format!("/api/v1/Customer/{customer}"))
        .json(json!({"email": "a@acme.test"}))
        .send()
        .await
        .expect(200);
    assert!(jobs(&app).await.is_empty(), "no rename, no job");
    app.req("PATCH", &format!("/api/v1/Customer/{customer}"))
        .json(json!({"customer_name": "Acme Ltd"}))
        .send()
        .await
        .expect(200);
    let queued = jobs(&app).await;
    assert_eq!(queued.len(), 1, "{queued:#?}");
    assert_eq!((queued[0].job.as_str(), queued[0].state.as_str()), ("sync_customer_name", "queued"));
    assert_eq!(queued[0].args, json!({"customer": customer}));
    assert_eq!(queued[0].enqueued_by.as_deref(), Some("Administrator"));
    let draft_doc = app.get(&format!("/api/v1/Invoice/{draft}")).send().await.expect(200);
    assert_eq!(draft_doc.json["customer_name"], "Acme", "nothing changes before a worker runs the job");

    let worker = app.worker(&config);
    until(&app, "the job to finish", |all| state_of(all, "sync_customer_name") == Some("done")).await;
    worker.stop().await;
    let draft_doc = app.get(&format!("/api/v1/Invoice/{draft}")).send().await.expect(200);
    assert_eq!(draft_doc.json["customer_name"], "Acme Ltd", "the draft shows the new name");
    let issued_doc = app.get(&format!("/api/v1/Invoice/{issued}")).send().await.expect(200);
    assert_eq!(issued_doc.json["customer_name"], "Acme", "a submitted invoice keeps the name it was issued with");

    let text = app.get("/metrics").anonymous().send().await.expect(200).json.as_str().unwrap_or_default().to_string();
    assert!(
        text.lines().any(|l| l.starts_with("m_jobs_total{")
            && l.contains("job=\"sync_customer_name\"")
            && l.contains("outcome=\"done\"")),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("m_jobs_queued{state=\"queued\"} 0")), "{text}");
});

crate::both_backends!(a_job_is_queued_only_if_the_write_that_queues_it_commits, |backend| {
    let Some((app, config)) = TestApp::start_with(backend, quick).await else { return };
    app.post("/api/v1/Gadget", json!({"code": "G-1", "label": "enqueue then fail"}))
        .send()
        .await
        .expect_error(422, "validation_failed");
    assert!(jobs(&app).await.is_empty(), "the job went with the rolled-back write");
    app.post("/api/v1/Gadget", json!({"code": "G-1", "label": "enqueue", "count": 5})).send().await.expect(201);
    let all = jobs(&app).await;
    assert_eq!(state_of(&all, "gadget_count"), Some("queued"), "{all:#?}");
    let counts = app.repo().jobs().counts().await.unwrap();
    assert!(counts.contains(&(JobState::Queued, 1)), "{counts:?}");
    let worker = app.worker(&config);
    until(&app, "gadget_count done", |all| state_of(all, "gadget_count") == Some("done")).await;
    worker.stop().await;
    let g = app.get("/api/v1/Gadget/G-1").send().await.expect(200);
    assert_eq!(g.json["count"], 6, "the job ran once");
});

crate::both_backends!(failures_are_retried_until_the_attempts_are_used_up, |backend| {
    let Some((app, config)) = TestApp::start_with(backend, quick).await else { return };
    for code in ["F-1", "F-2"] {
        app.post("/api/v1/Gadget", json!({"code": code})).send().await.expect(201);
    }
    let repo = app.repo();
    let ok = repo.enqueue("flaky", &json!({"code": "F-1", "succeed_on": 2}), None).await.unwrap();
    let never = repo.enqueue("flaky", &json!({"code": "F-2", "succeed_on": 9}), None).await.unwrap();
    let fatal = repo.enqueue("fatal", &json!({}), None).await.unwrap();
    let panics = repo.enqueue("panics", &json!({}), None).await.unwrap();
    assert!(matches!(
        repo.enqueue("no_such_job", &json!({}), None).await,
        Err(m_runtime::jobs::EnqueueError::Unknown(_))
    ));
    let worker = app.worker(&config);
    let all = until(&app, "every job to end", |all| all.iter().all(|j| j.state == "done" || j.state == "failed")).await;
    worker.stop().await;
    let by_id = |id: &str| all.iter().find(|j| j.id == id).unwrap().clone();
    let (ok, never, fatal, panics) = (by_id(&ok), by_id(&never), by_id(&fatal), by_id(&panics));
    assert_eq!((ok.state.as_str(), ok.attempts), ("done", 2), "{ok:#?}");
    assert_eq!(ok.error, None, "a success clears the last error");
    assert_eq!(app.get("/api/v1/Gadget/F-1").send().await.expect(200).json["label"], "attempt 2");
    assert_eq!((never.state.as_str(), never.attempts, never.max_attempts), ("failed", 3, 3), "{never:#?}");
    assert_eq!(never.error.as_deref(), Some("flaky on attempt 3"));
    assert_eq!((fatal.state.as_str(), fatal.attempts), ("failed", 1), "a fatal error is not retried: {fatal:#?}");
    assert_eq!(fatal.error.as_deref(), Some("bad input"));
    assert_eq!((panics.state.as_str(), panics.attempts), ("failed", 3), "{panics:#?}");
    assert_eq!(panics.error.as_deref(), Some("the job panicked"));
    // A failed job can be queued again, with fresh attempts.
    assert_eq!(app.repo().jobs().list(Some(JobState::Failed), 10).await.unwrap().len(), 3);
});

crate::both_backends!(a_job_past_the_timeout_is_stopped_and_counts_as_a_failure, |backend| {
    let Some((app, config)) = TestApp::start_with(backend, |c| {
        c.job_timeout_secs = 1;
        c.job_attempts = 1;
    })
    .await
    else {
        return;
    };
    app.post("/api/v1/Gadget", json!({"code": "T-1", "count": 0})).send().await.expect(201);
    app.repo().enqueue("late_write", &json!({"code": "T-1", "ms": 2000}), None).await.unwrap();
    let worker = app.worker(&config);
    let all = until(&app, "the timeout", |all| state_of(all, "late_write") == Some("failed")).await;
    assert!(all[0].error.as_deref().is_some_and(|e| e.contains("job timeout")), "{all:#?}");
    // The stopped job never writes, even after the time it would have: it slept 2 s from its
    // start, at least 1 s before it failed, so by the time a job due 1.5 s after the failure
    // has run, its write would have happened.
    let failed_at = all[0].finished.unwrap_or_else(|| panic!("a failed job has finished: {all:#?}"));
    let later = enqueue_at(&app, "sleepy", &json!({"ms": 1}), failed_at + 1_500_000).await;
    until(&app, "a job due after the stopped job's write", |all| {
        all.iter().any(|j| j.id == later && j.state == "done")
    })
    .await;
    worker.stop().await;
    assert_eq!(app.get("/api/v1/Gadget/T-1").send().await.expect(200).json["count"], 0);
});

crate::both_backends!(a_job_whose_worker_died_runs_again_after_its_lease, |backend| {
    let Some((app, config)) = TestApp::start_with(backend, quick).await else { return };
    app.post("/api/v1/Gadget", json!({"code": "L-1", "count": 0})).send().await.expect(201);
    let id = app.repo().enqueue("gadget_count", &json!({"code": "L-1", "add": 1}), None).await.unwrap();
    // A worker claimed it, then vanished: its lease ran out long ago.
    let url = app.database_url().to_string();
    let sql = format!("UPDATE m_job SET state = 'running', attempts = 1, lease_until = 1 WHERE id = '{id}'");
    crate::support::execute(&url, &sql).await;
    assert_eq!(jobs(&app).await[0].state, "running");
    let worker = app.worker(&config);
    let all = until(&app, "the job to run again", |all| all[0].state == "done").await;
    worker.stop().await;
    assert_eq!(all[0].attempts, 2, "{all:#?}");
    assert_eq!(app.get("/api/v1/Gadget/L-1").send().await.expect(200).json["count"], 1);
});

crate::both_backends!(stopping_a_worker_queues_its_unfinished_jobs_again, |backend| {
    let Some((app, config)) = TestApp::start_with(backend, quick).await else { return };
    app.post("/api/v1/Gadget", json!({"code": "S-1", "count": 0})).send().await.expect(201);
    app.repo().enqueue("late_write", &json!({"code": "S-1", "ms": 1500}), None).await.unwrap();
    app.repo().enqueue("sleepy", &json!({"ms": 10}), None).await.unwrap();
    let mut wc = WorkerConfig::from_config(&config);
    wc.poll = Duration::from_millis(50);
    let worker = app.worker_with(wc, Duration::from_millis(300));
    until(&app, "both claimed", |all| {
        all.iter().any(|j| j.state == "done") && all.iter().any(|j| j.state == "running")
    })
    .await;
    worker.stop().await;
    let all = jobs(&app).await;
    let long = all.iter().find(|j| j.job == "late_write").unwrap();
    assert_eq!((long.state.as_str(), long.attempts), ("queued", 0), "released, the attempt not counted: {long:#?}");
    // The stopped job never writes, even after the time it would have: it slept 1.5 s from its
    // claim, at least the 300 ms deadline before its release (its new `run_at`); wait until
    // 1.8 s after the release.
    let released_at = long.run_at;
    wait_until("1.8 s past the job's release", Duration::from_secs(10), || async {
        unix_micros() > released_at + 1_800_000
    })
    .await;
    assert_eq!(app.get("/api/v1/Gadget/S-1").send().await.expect(200).json["count"], 0);
});

/// `m` with the test database's environment.
fn m(scratch: &Scratch, args: &[&str], extra: &[(&str, &str)]) -> std::process::Output {
    crate::runtime::m_command(scratch, extra).args(args).output().unwrap()
}

/// An `m worker` process on the test database (its log on stderr, for `terminate`).
fn worker_process(scratch: &Scratch, args: &[&str]) -> crate::runtime::KillOnDrop {
    let mut c = crate::runtime::m_command(scratch, &[]);
    c.arg("worker").args(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    crate::runtime::KillOnDrop(c.spawn().unwrap())
}

fn job_list(scratch: &Scratch) -> Vec<Value> {
    let out = m(scratch, &["job:list", "--json"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

crate::both_backends!(a_worker_process_runs_what_the_server_queues, |backend| {
    let Some(scratch) = Scratch::new(backend).await else { return };
    // The server runs no workers; an `m worker` process does.
    let (_server, addr) = crate::runtime::spawn_binary(&scratch, &[("M_JOB_WORKERS", "0")]).await;
    let call = |method: &'static str, path: String, body: Value| async move {
        let head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\n", TestApp::admin());
        let (status, text) = crate::runtime::exchange(addr, &head, &body.to_string()).await;
        (status, serde_json::from_str::<Value>(&text).unwrap_or(Value::Null))
    };
    let (s, c) = call("POST", "/api/v1/Customer".into(), json!({"customer_name": "Zeta"})).await;
    assert_eq!(s, 201, "{c}");
    let customer = c["name"].as_str().unwrap().to_string();
    let (s, inv) = call("POST", "/api/v1/Invoice".into(), json!({"customer": customer})).await;
    assert_eq!(s, 201, "{inv}");
    let (s, _) = call("PATCH", format!("/api/v1/Customer/{customer}"), json!({"customer_name": "Zeta Corp"})).await;
    assert_eq!(s, 200);
    // A worker in the server would have claimed the job at once (the commit wakes it) or at
    // its next poll (1 s): wait until the job has been queued for 1.5 s.
    let queued = job_list(&scratch);
    let created = queued.first().and_then(|j| j["created"].as_i64()).unwrap_or_else(|| panic!("{queued:#?}"));
    wait_until("the job to be queued for 1.5 s", Duration::from_secs(10), || async {
        unix_micros() > created + 1_500_000
    })
    .await;
    let listed = job_list(&scratch);
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["state"], "queued", "no worker in the server: {listed:#?}");

    let mut worker = worker_process(&scratch, &["--concurrency", "1"]);
    wait_until("the worker to run the job", Duration::from_secs(20), || async {
        let all = job_list(&scratch);
        if all[0]["state"] == "done" { Ok(()) } else { Err(all) }
    })
    .await;
    let log = crate::runtime::terminate(&mut worker);
    assert!(log.contains("job done") && log.contains("sync_customer_name"), "{log}");
    assert!(log.contains("job worker stopped"), "a SIGTERM stops the worker cleanly: {log}");
    let (s, inv) = call("GET", format!("/api/v1/Invoice/{}", inv["name"].as_str().unwrap()), Value::Null).await;
    assert_eq!((s, inv["customer_name"].as_str()), (200, Some("Zeta Corp")));

    // `m job:run` runs a job in the command's own process.
    let out =
        m(&scratch, &["job:run", "sync_customer_name", "--args", &json!({"customer": customer}).to_string()], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = m(&scratch, &["job:run", "no_such_job"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sync_customer_name"), "the known jobs are listed");
    let out = m(&scratch, &["job:run", "sync_customer_name", "--args", "{}"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("args.customer"), "{}", String::from_utf8_lossy(&out.stderr));
    // Queued with --enqueue, failed by a worker, queued again with job:retry.
    let out = m(&scratch, &["job:run", "sync_customer_name", "--args", "{}", "--enqueue"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut worker = worker_process(&scratch, &[]);
    let failed = wait_until("the job to fail", Duration::from_secs(20), || async {
        let all = job_list(&scratch);
        all.iter().find(|j| j["id"] == id.as_str() && j["state"] == "failed").cloned().ok_or(all)
    })
    .await;
    crate::runtime::terminate(&mut worker);
    assert_eq!(failed["attempts"], 1, "bad arguments are not retried: {failed:#}");
    let out = m(&scratch, &["job:retry", &id], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = job_list(&scratch).into_iter().find(|j| j["id"] == id.as_str()).unwrap();
    assert_eq!((again["state"].as_str(), again["attempts"].as_i64()), (Some("queued"), Some(0)));
    assert!(!m(&scratch, &["job:retry", &id], &[]).status.success(), "only failed jobs are retried");
    // A queued (or failed) job can be deleted; a done one cannot.
    assert!(m(&scratch, &["job:delete", &id], &[]).status.success());
    assert!(job_list(&scratch).iter().all(|j| j["id"] != id.as_str()));
    assert!(!m(&scratch, &["job:delete", &id], &[]).status.success(), "gone");
    let done = job_list(&scratch).into_iter().find(|j| j["state"] == "done").unwrap();
    assert!(!m(&scratch, &["job:delete", done["id"].as_str().unwrap()], &[]).status.success(), "done jobs stay");
    let out = m(&scratch, &["job:list", "--state", "sometimes"], &[]);
    assert!(!out.status.success());
});

#[tokio::test]
async fn job_definitions_are_checked() {
    use m_runtime::jobs::{Job, JobError};
    let ok: Job = Job { name: "ok", run: |_, _| Box::pin(async { Ok::<(), JobError>(()) }) };
    assert!(m_runtime::jobs::check_table(&[ok, ok]).unwrap_err().contains("twice"));
    let bad = Job { name: "Bad Name", ..ok };
    assert!(m_runtime::jobs::check_table(&[bad]).unwrap_err().contains("Bad Name"));
}

crate::both_backends!(a_job_this_build_does_not_define_waits_for_a_worker_that_does, |backend| {
    let Some((app, config)) = TestApp::start_with(backend, quick).await else { return };
    // Queued by a newer build (a job this one does not know), next to one it knows.
    let sql = "INSERT INTO m_job (id, job, args, state, attempts, max_attempts, run_at, created) \
               VALUES ('0000-newer', 'from_a_newer_build', '{}', 'queued', 0, 3, 0, 0)";
    crate::support::execute(app.database_url(), sql).await;
    app.repo().enqueue("sleepy", &json!({"ms": 1}), None).await.unwrap();
    let worker = app.worker(&config);
    until(&app, "the known job", |all| state_of(all, "sleepy") == Some("done")).await;
    // One more claim after that one still passes over it.
    app.repo().enqueue("sleepy", &json!({"ms": 1}), None).await.unwrap();
    until(&app, "a known job queued after it", |all| {
        all.iter().filter(|j| j.job == "sleepy" && j.state == "done").count() == 2
    })
    .await;
    worker.stop().await;
    let all = jobs(&app).await;
    let newer = all.iter().find(|j| j.job == "from_a_newer_build").unwrap();
    assert_eq!((newer.state.as_str(), newer.attempts), ("queued", 0), "left for a worker that knows it: {newer:#?}");
});

crate::both_backends!(done_jobs_are_deleted_after_the_retention_period_and_failed_ones_kept, |backend| {
    let Some((app, config)) = TestApp::start_with(backend, |c| {
        quick(c);
        c.job_keep_secs = 0;
        c.job_attempts = 1;
    })
    .await
    else {
        return;
    };
    app.repo().enqueue("sleepy", &json!({"ms": 1}), None).await.unwrap();
    app.repo().enqueue("fatal", &json!({}), None).await.unwrap();
    let worker = app.worker(&config);
    let all = until(&app, "the done job to be swept", |all| all.len() == 1 && all[0].state == "failed").await;
    worker.stop().await;
    assert_eq!(all[0].job, "fatal");
});
