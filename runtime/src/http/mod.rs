//! The HTTP API (the README's HTTP API section). The only module that knows axum: handlers are written once and
//! dispatch on the DocType named in the path, through the repository.

mod authenticate;
mod docs;
mod edge;
mod error;
mod guard;
mod login;
mod print;
mod ratelimit;
mod ready;
mod request_id;
mod tls;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde::Serialize;

pub use edge::{Edge, Net};
pub use error::ApiError;
pub use guard::Limits;
pub use ratelimit::RateLimits;
pub use ready::Readiness;
pub use tls::{TlsListener, server_config as tls_server_config};

use crate::app::App;
use crate::auth::Authenticator;
use crate::doc::{Doc, DocJson};
use crate::list_query;
use crate::perms::{self, Action, Principal};
use crate::repo::{Expect, Page, Repo, RepoError, etag};
use crate::retry::retrying;
use crate::users::Users;

/// Shared state of the router: one `Arc`, so the per-request clones axum makes cost one
/// reference count.
#[derive(Clone)]
pub struct ApiState(Arc<Shared>);

impl ApiState {
    pub fn new(shared: Shared) -> ApiState {
        ApiState(Arc::new(shared))
    }
}

impl std::ops::Deref for ApiState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What the handlers share.
pub struct Shared {
    pub repo: Repo,
    pub users: Users,
    pub auth: Arc<Authenticator>,
    pub openapi: Arc<str>,
    pub max_body_bytes: usize,
    /// Lifetime of the login's tokens.
    pub token_ttl_secs: u64,
    pub ready: Arc<Readiness>,
    pub limits: Arc<Limits>,
    pub edge: Arc<Edge>,
    pub rate_limits: Arc<RateLimits>,
}

/// Each method of a route with the permission it needs.
type Methods = &'static [(&'static str, &'static str)];

/// Every route: its path, its handlers, and each method with the permission it needs. The
/// router is built from this table and `m routes` prints it, so the two cannot disagree.
fn routes() -> Vec<(&'static str, MethodRouter<ApiState>, Methods)> {
    const PUBLIC: &[(&str, &str)] = &[("GET", "-")];
    vec![
        ("/health", get(health), PUBLIC),
        ("/ready", get(ready::ready), PUBLIC),
        ("/metrics", get(metrics), &[("GET", "- (or on M_METRICS_ADDR)")]),
        ("/openapi.json", get(docs::openapi), PUBLIC),
        ("/docs", get(docs::page), PUBLIC),
        ("/api/meta/{doctype}", get(meta), &[("GET", "read")]),
        ("/api/v1/auth/login", post(login::login), &[("POST", "-")]),
        ("/api/v1/auth/me", get(login::me), &[("GET", "authenticated")]),
        ("/api/v1/auth/password", post(login::set_password), &[("POST", "authenticated")]),
        ("/api/v1/{doctype}", get(list).post(create), &[("GET", "read"), ("POST", "create")]),
        (
            "/api/v1/{doctype}/{docref}",
            get(read).patch(update).put(update).delete(delete),
            &[("GET", "read"), ("PATCH", "write"), ("PUT", "write"), ("DELETE", "delete")],
        ),
        ("/api/v1/{doctype}/{docref}/print", get(print::print), &[("GET", "read")]),
        ("/api/v1/{doctype}/{docref}/versions", get(versions), &[("GET", "read")]),
        ("/api/v1/{doctype}/{docref}/{action}", post(lifecycle), &[("POST", "{action}")]),
    ]
}

/// The whole API; `/metrics` too unless it has its own listener (`M_METRICS_ADDR`).
pub fn router(state: ApiState, with_metrics: bool) -> Router {
    let mut r = Router::new();
    for (path, handler, _) in routes() {
        if with_metrics || path != "/metrics" {
            r = r.route(path, handler);
        }
    }
    r.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // A panic in a handler or hook is a 500 in the usual shape, logged with the request.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn_with_state(state.clone(), ratelimit::middleware))
        .layer(axum::middleware::from_fn_with_state(state.clone(), authenticate::middleware))
        .layer(axum::middleware::from_fn_with_state(state.limits.clone(), guard::middleware))
        .layer(axum::middleware::from_fn_with_state(state.edge.clone(), edge::middleware))
        .layer(axum::middleware::from_fn(request_id::middleware))
        .with_state(state)
}

/// `m routes`: the route table with each DocType's paths spelled out (method, path, permission):
/// the fixed routes first, then every DocType's routes together.
pub fn route_table(app: &App) -> String {
    let mut out = String::new();
    let mut line = |method: &str, path: &str, perm: &str| out.push_str(&format!("{method:<7} {path:<48} {perm}\n"));
    let table = routes();
    for (path, _, methods) in table.iter().filter(|(p, _, _)| !p.contains("{doctype}")) {
        for (method, perm) in *methods {
            line(method, path, perm);
        }
    }
    for s in app.schemas().iter().filter(|s| !s.meta.child) {
        for (template, _, methods) in table.iter().filter(|(p, _, _)| p.contains("{doctype}")) {
            let path = template.replace("{doctype}", s.meta.name).replace("{docref}", "{ref}");
            for (method, perm) in *methods {
                if !path.contains("{action}") {
                    line(method, &path, perm);
                } else if s.meta.submittable {
                    for (action, perm) in [("submit", "submit"), ("cancel", "cancel"), ("amend", "create")] {
                        line(method, &path.replace("{action}", action), perm);
                    }
                }
            }
        }
    }
    out
}

/// A router with `/metrics` only, for a separate internal listener.
pub fn metrics_router(state: ApiState) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(state)
}

/// Path parameters, with a malformed path (say, invalid percent-encoding) answered in our error
/// shape.
struct DocPath<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for DocPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(DocPath(v)),
            Err(e) => Err(ApiError::BadRequest(format!("malformed path: {}", e.body_text()))),
        }
    }
}

/// A route that takes no query parameter: any is a 400, as an unknown list parameter is (a
/// misspelt `?expnad=` is never silently ignored).
pub struct NoQuery;

impl<S: Send + Sync> FromRequestParts<S> for NoQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.uri.query().and_then(|q| form_urlencoded::parse(q.as_bytes()).next()) {
            Some((key, _)) => Err(ApiError::Param(list_query::ParamError {
                code: "bad_request",
                message: format!("unknown parameter `{key}`: this route takes no query parameters"),
                field: None,
            })),
            None => Ok(NoQuery),
        }
    }
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    ApiError::Repo(RepoError::Internal(format!("panic: {message}"))).into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn health(_: NoQuery) -> Response {
    json_response(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

/// The authenticated caller of a request, and the preconditions it sent (`If-Match`). A missing
/// or invalid credential is a 401 before anything else is read.
struct Caller {
    who: Arc<Principal>,
    expect: Expect,
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let subject = match parts.extensions.get::<authenticate::Authenticated>() {
            Some(authenticate::Authenticated(outcome)) => outcome.clone()?,
            None => authenticate::verify(&parts.headers, state).await?,
        };
        if let Some(slot) = parts.extensions.get::<request_id::UserSlot>() {
            let _ = slot.0.set(subject.user.clone());
        }
        // Roles and the enabled flag come from the database: a deleted or disabled user's
        // token is refused like an invalid one, and so is a token issued before the user was
        // (re)created or last changed their password.
        let who = state.users.principal(&subject.user).await?.ok_or(crate::auth::AuthError::Invalid)?;
        if let (Some(iat), Some(after)) = (subject.issued_at, who.tokens_after)
            && iat < after
        {
            return Err(crate::auth::AuthError::Invalid.into());
        }
        let if_match = parts.headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()).map(str::to_string);
        Ok(Caller { who, expect: Expect { if_match } })
    }
}

/// `/metrics` and `/health` of an `m worker` process (on `M_METRICS_ADDR`).
pub fn worker_router(repo: Repo) -> Router {
    Router::new()
        .route("/metrics", get(|State(repo): State<Repo>, _: NoQuery| async move { render_metrics(&repo).await }))
        .route("/health", get(health))
        .with_state(repo)
}

/// `GET /metrics`: the Prometheus text format.
pub async fn metrics(State(state): State<ApiState>, _: NoQuery) -> Response {
    render_metrics(&state.repo).await
}

async fn render_metrics(repo: &Repo) -> Response {
    let Some(handle) = crate::metrics::handle() else {
        return ApiError::NotFound.into_response();
    };
    let (in_use, idle) = repo.pool_status();
    crate::metrics::pool_connections(in_use, idle);
    // The queue is counted at each scrape (one indexed GROUP BY), so any instance reports it
    // whether or not it runs workers; a database that does not answer leaves the last counts.
    if let Ok(Ok(counts)) = tokio::time::timeout(std::time::Duration::from_secs(2), repo.jobs().counts()).await {
        let counts: Vec<_> = counts.into_iter().map(|(s, n)| (s.as_str(), n)).collect();
        crate::metrics::jobs_queued(&counts);
    }
    let mut res = handle.render().into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    res
}

fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response()
        }
        Err(e) => ApiError::Repo(RepoError::Internal(format!("serializing a response: {e}"))).into_response(),
    }
}

fn doc_response(status: StatusCode, doc: &Doc) -> Response {
    let mut res = json_response(status, &doc.json(None));
    if let Ok(v) = HeaderValue::from_str(&etag(doc)) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
}

/// 201 with the document, its ETag and `Location`.
fn created(doctype: &str, doc: &Doc) -> Response {
    let mut res = doc_response(StatusCode::CREATED, doc);
    if let Ok(v) = HeaderValue::from_str(&location(doctype, doc.name())) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// `/api/v1/<DocType>/<name>`, percent-encoded.
fn location(doctype: &str, name: &str) -> String {
    let enc =
        |s: &str| -> String { form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20") };
    format!("/api/v1/{}/{}", enc(doctype), enc(name))
}

/// Read a JSON body within the size limit, in our error shape.
async fn json_body(state: &ApiState, body: Body) -> Result<serde_json::Value, ApiError> {
    let bytes: Bytes = axum::body::to_bytes(body, state.max_body_bytes)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(state.max_body_bytes))?;
    if bytes.is_empty() {
        return Err(ApiError::BadRequest("the request needs a JSON body".into()));
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))
}

#[derive(Serialize)]
struct ListBody<'a> {
    items: Vec<DocJson<'a>>,
    total: Option<i64>,
    limit: u32,
    offset: u32,
    has_more: bool,
}

async fn list(
    State(state): State<ApiState>,
    DocPath(doctype): DocPath<String>,
    RawQuery(query): RawQuery,
    caller: Caller,
) -> Result<Response, ApiError> {
    let who = &*caller.who;
    let schema = state.repo.authorize(who, &doctype, Action::Read)?;
    type Pairs = Vec<(String, String)>;
    let (expands, pairs): (Pairs, Pairs) =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().partition(|(k, _)| k == "expand");
    let q = list_query::parse(&schema, &pairs, state.repo.limits())?;
    let texts: Vec<String> = expands.into_iter().map(|(_, v)| v).collect();
    let specs = expand_specs(&state, &schema, &texts)?;
    if let Some(spec) = specs.iter().find(|s| s.table.is_some()) {
        return Err(ApiError::Param(list_query::ParamError {
            code: "bad_request",
            message: format!("expand `{}.{}`: lists carry no child rows", spec.table.unwrap_or_default(), spec.field),
            field: None,
        }));
    }
    // Lists never carry child rows: project every column when `fields` is absent.
    let all: Vec<usize> = (0..schema.columns.len()).collect();
    let projected = q.fields.as_deref().unwrap_or(&all);
    if let Some(spec) = specs.iter().find(|s| !projected.iter().any(|&i| schema.columns[i].name == s.field)) {
        return Err(ApiError::Param(list_query::ParamError {
            code: "bad_request",
            message: format!("expand `{}`: the field is not among `fields`", spec.field),
            field: Some(spec.field.to_string()),
        }));
    }
    let page: Page = retrying(true, || state.repo.list(who, &schema, &q)).await?;
    let projection = page.projection.as_deref().unwrap_or(&all);
    if !specs.is_empty() {
        let rows = &page.rows;
        let items = retrying(true, || state.repo.expand(who, rows, Some(projection), &specs)).await?;
        let body = serde_json::json!({
            "items": items, "total": page.total, "limit": page.limit, "offset": page.offset, "has_more": page.has_more,
        });
        return Ok(json_response(StatusCode::OK, &body));
    }
    let body = ListBody {
        items: page.rows.iter().map(|d| d.json(Some(projection))).collect(),
        total: page.total,
        limit: page.limit,
        offset: page.offset,
        has_more: page.has_more,
    };
    Ok(json_response(StatusCode::OK, &body))
}

async fn create(
    State(state): State<ApiState>,
    DocPath(doctype): DocPath<String>,
    caller: Caller,
    _: NoQuery,
    req: Request,
) -> Result<Response, ApiError> {
    let who = &*caller.who;
    let schema = state.repo.authorize(who, &doctype, Action::Create)?;
    let body = json_body(&state, req.into_body()).await?;
    let doc = retrying(false, || state.repo.create(who, &schema, &body)).await?;
    Ok(created(&doctype, &doc))
}

async fn read(
    State(state): State<ApiState>,
    DocPath((doctype, docref)): DocPath<(String, String)>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let who = &*caller.who;
    let schema = state.repo.schema(&doctype)?;
    let mut expands = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "expand" => expands.push(value.into_owned()),
            other => {
                return Err(ApiError::Param(list_query::ParamError {
                    code: "bad_request",
                    message: format!("unknown parameter `{other}` (expand)"),
                    field: None,
                }));
            }
        }
    }
    let specs = expand_specs(&state, &schema, &expands)?;
    let doc = retrying(true, || state.repo.get(who, &doctype, &docref)).await?;
    if specs.is_empty() {
        return Ok(doc_response(StatusCode::OK, &doc));
    }
    let docs = std::slice::from_ref(&doc);
    let expanded = retrying(true, || state.repo.expand(who, docs, None, &specs)).await?;
    let mut res = json_response(StatusCode::OK, &expanded.first());
    if let Ok(v) = HeaderValue::from_str(&etag(&doc)) {
        res.headers_mut().insert(header::ETAG, v);
    }
    Ok(res)
}

/// `GET /api/v1/{DocType}/{ref}/versions?limit=&offset=`: the document's recorded changes,
/// newest first, for a caller who may read it.
async fn versions(
    State(state): State<ApiState>,
    DocPath((doctype, docref)): DocPath<(String, String)>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let limits = state.repo.limits();
    let (mut limit, mut offset) = (limits.default_page_size, 0u32);
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let number = |max: u32| {
            value.parse::<u32>().ok().filter(|n| *n <= max).ok_or_else(|| {
                ApiError::BadRequest(format!("{key} must be a whole number from 0 to {max}, not `{value}`"))
            })
        };
        match key.as_ref() {
            "limit" => limit = number(limits.max_page_size)?.max(1),
            "offset" => offset = number(u32::MAX)?,
            other => return Err(ApiError::BadRequest(format!("unknown parameter `{other}` (limit, offset)"))),
        }
    }
    let who = &*caller.who;
    let (rows, has_more) = retrying(true, || state.repo.versions(who, &doctype, &docref, limit, offset)).await?;
    let items: Vec<serde_json::Value> = rows
        .iter()
        .map(|v| {
            serde_json::json!({
                "name": v.name(),
                "user": v.get("owner"),
                "creation": serde_json::to_value(v.json(None)).ok().and_then(|j| j.get("creation").cloned()),
                "data": v.get("data"),
            })
        })
        .collect();
    let body = serde_json::json!({ "items": items, "limit": limit, "offset": offset, "has_more": has_more });
    Ok(json_response(StatusCode::OK, &body))
}

/// The Links the `expand` parameters name (all of them together: the limits and the
/// named-once rule hold across repeated parameters), checked against the DocType.
fn expand_specs(
    state: &ApiState,
    schema: &crate::doc::DocSchema,
    texts: &[String],
) -> Result<Vec<crate::expand::ExpandSpec>, ApiError> {
    if texts.is_empty() {
        return Ok(Vec::new());
    }
    let app = state.repo.app();
    Ok(crate::expand::parse(schema, &|name| app.get(name).cloned(), &texts.join(","))?)
}

async fn update(
    State(state): State<ApiState>,
    DocPath((doctype, docref)): DocPath<(String, String)>,
    caller: Caller,
    _: NoQuery,
    req: Request,
) -> Result<Response, ApiError> {
    let who = &*caller.who;
    let schema = state.repo.authorize(who, &doctype, Action::Write)?;
    let body = json_body(&state, req.into_body()).await?;
    let doc = retrying(false, || state.repo.update(who, &schema, &docref, &body, &caller.expect)).await?;
    Ok(doc_response(StatusCode::OK, &doc))
}

async fn delete(
    State(state): State<ApiState>,
    DocPath((doctype, docref)): DocPath<(String, String)>,
    caller: Caller,
    _: NoQuery,
) -> Result<Response, ApiError> {
    let who = &*caller.who;
    retrying(false, || state.repo.delete(who, &doctype, &docref, &caller.expect)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn lifecycle(
    State(state): State<ApiState>,
    DocPath((doctype, docref, action)): DocPath<(String, String, String)>,
    caller: Caller,
    _: NoQuery,
) -> Result<Response, ApiError> {
    let who = &*caller.who;
    let expect = &caller.expect;
    let schema = state.repo.schema(&doctype)?;
    match action.as_str() {
        "submit" | "cancel" => {
            let action = if action == "submit" { Action::Submit } else { Action::Cancel };
            let doc = retrying(false, || state.repo.transition(who, &schema, &docref, action, expect)).await?;
            Ok(doc_response(StatusCode::OK, &doc))
        }
        "amend" => {
            let doc = retrying(false, || state.repo.amend(who, &schema, &docref, expect)).await?;
            Ok(created(&doctype, &doc))
        }
        _ => Err(ApiError::NotFound),
    }
}

#[derive(Serialize)]
struct FieldInfo {
    name: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'static str>,
    required: bool,
    unique: bool,
    read_only: bool,
    hidden: bool,
    standard: bool,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    options: &'static [&'static str],
    #[serde(skip_serializing_if = "Option::is_none")]
    max_length: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'static str>,
}

async fn meta(
    State(state): State<ApiState>,
    DocPath(doctype): DocPath<String>,
    caller: Caller,
    _: NoQuery,
) -> Result<Response, ApiError> {
    let who = &*caller.who;
    let schema = state.repo.schema(&doctype)?;
    let actions = perms::allowed_actions(schema.meta, who);
    if !actions.contains(&"read") {
        return Err(RepoError::Forbidden { doctype: doctype.clone(), action: "read" }.into());
    }
    let info = |name, kind: crate::meta::FieldType, f: Option<&'static crate::meta::FieldMeta>| FieldInfo {
        name,
        kind: kind.as_str(),
        to: f.and_then(|f| f.to),
        required: f.is_some_and(|f| f.required),
        unique: f.is_some_and(|f| f.unique),
        read_only: f.is_none_or(|f| f.read_only),
        hidden: f.is_some_and(|f| f.hidden),
        standard: f.is_none(),
        options: f.map_or(&[], |f| f.options),
        max_length: f.and_then(|f| f.max_length),
        description: f.and_then(|f| f.description),
    };
    let mut fields: Vec<FieldInfo> = schema.columns.iter().map(|c| info(c.name, c.kind, c.field)).collect();
    fields.extend(schema.tables.iter().map(|t| info(t.name, crate::meta::FieldType::Table, Some(t.field))));
    let m = schema.meta;
    let naming = match m.naming {
        crate::meta::Naming::Uuid => "uuid".to_string(),
        crate::meta::Naming::Hash => "hash".to_string(),
        crate::meta::Naming::Field(f) => format!("field:{f}"),
        crate::meta::Naming::Series(p) => format!("series:{p}"),
    };
    let body = serde_json::json!({
        "name": m.name,
        "table": m.table,
        "naming": naming,
        "title_field": m.title_field,
        "submittable": m.submittable,
        "concurrency": if m.optimistic { "optimistic" } else { "none" },
        "description": m.description,
        "fields": fields,
        "permissions": actions,
    });
    Ok(json_response(StatusCode::OK, &body))
}
