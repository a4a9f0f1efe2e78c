//! Webhooks (Frappe's): a `Webhook` document asks for a POST to its `request_url` after each
//! committed `webhook_docevent` of its `webhook_doctype`. The document service records each
//! delivery in the change's own transaction — a `Webhook Request Log` holding the JSON body as
//! committed, and a job `m:webhook` naming it — so a delivery exists exactly when the change
//! commits. The job ([`deliver`]) signs and sends it, at least once, with the same delivery id
//! on every attempt, behind a circuit breaker per target and the SSRF guard
//! ([`crate::outbound`]).
//!
//! Which webhooks a change matches is read from an in-process copy of the enabled webhooks,
//! read again when older than a second (a webhook saved on another instance applies within a
//! second) and at once after a webhook is saved here.

pub mod deliver;
pub mod rules;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json, json};

use crate::app::App;
use crate::breaker::Breakers;
use crate::config::Config;
use crate::db::{DbError, Fetch as _, Tx};
use crate::doc::{Doc, DocSchema};
use crate::hooks::DocEvent;
use crate::meta::FieldType;
use crate::outbound::Guard;
use crate::query::Sql;
use crate::value::Value;

pub const WEBHOOK_DOCTYPE: &str = "Webhook";
pub const WEBHOOK_DATA_DOCTYPE: &str = "Webhook Data";
pub const LOG_DOCTYPE: &str = "Webhook Request Log";
/// The built-in job that makes one delivery (`{"log": <Webhook Request Log name>}`).
pub const JOB_NAME: &str = "m:webhook";

/// Whether `doctype` is one of the webhooks' built-in DocTypes.
pub fn is_built_in(doctype: &str) -> bool {
    [WEBHOOK_DOCTYPE, WEBHOOK_DATA_DOCTYPE, LOG_DOCTYPE].contains(&doctype)
}

/// How long the in-process copy of the webhooks is used before it is read again.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// Where a log's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Queued,
    Retrying,
    Delivered,
    Failed,
    Refused,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "Queued",
            Status::Retrying => "Retrying",
            Status::Delivered => "Delivered",
            Status::Failed => "Failed",
            Status::Refused => "Refused",
            Status::Cancelled => "Cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [Status::Queued, Status::Retrying, Status::Delivered, Status::Failed, Status::Refused, Status::Cancelled]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// An enabled webhook, as deliveries are recorded from it.
#[derive(Debug, Clone)]
pub struct Hook {
    pub name: String,
    pub doctype: String,
    pub event: DocEvent,
    pub url: String,
    /// `(field, key)` pairs to send; empty: the whole document.
    pub fields: Vec<(String, String)>,
}

impl Hook {
    /// The JSON body of a delivery of `doc` (its API form: Password fields are never in it).
    pub fn body(&self, doc: &Doc, event: DocEvent) -> String {
        let whole = serde_json::to_value(doc.json(None)).unwrap_or(Json::Null);
        let data = if self.fields.is_empty() {
            whole
        } else {
            let mut picked = Map::new();
            for (field, key) in &self.fields {
                picked.insert(key.clone(), whole.get(field).cloned().unwrap_or(Json::Null));
            }
            Json::Object(picked)
        };
        json!({ "doctype": doc.schema.name(), "name": doc.name(), "event": event.as_str(), "data": data }).to_string()
    }
}

struct Cached {
    at: Instant,
    hooks: Arc<[Hook]>,
}

/// The webhooks of one runtime: what deliveries are recorded from, and how they are sent.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    /// The log DocType (None: the application was assembled without the built-in webhooks).
    log: Option<Arc<DocSchema>>,
    cache: Mutex<Option<Cached>>,
    guard: Guard,
    timeout: Duration,
    breakers: Breakers,
}

impl Webhooks {
    pub fn new(config: &Config, app: &App, breakers: Breakers) -> Webhooks {
        // Deliveries to https:// receivers.
        crate::auth::install_crypto_provider();
        let built_in = app.get(WEBHOOK_DOCTYPE).is_some() && app.get(WEBHOOK_DATA_DOCTYPE).is_some();
        let log = app.get(LOG_DOCTYPE).filter(|_| built_in).cloned();
        Webhooks {
            inner: Arc::new(Inner {
                log,
                cache: Mutex::new(None),
                guard: Guard::new(&config.webhook_allow_hosts),
                timeout: Duration::from_secs(config.webhook_timeout_secs),
                breakers,
            }),
        }
    }

    /// The `Webhook Request Log` DocType, when the application has the built-in webhooks.
    pub fn log_schema(&self) -> Option<&Arc<DocSchema>> {
        self.inner.log.as_ref()
    }

    /// Forget the copy of the webhooks (one was saved or deleted here).
    pub fn forget(&self) {
        if let Ok(mut cache) = self.inner.cache.lock() {
            *cache = None;
        }
    }

    /// A write observer: forgets the copy when a webhook or one of its rows changed.
    pub fn forget_written(&self) -> Box<dyn Fn(&Doc) + Send + Sync> {
        let me = self.clone();
        Box::new(move |doc: &Doc| {
            if doc.schema.name() == WEBHOOK_DOCTYPE {
                me.forget();
            }
        })
    }

    /// The enabled webhooks for `event` of `doctype`, read through `tx` when the copy is stale.
    pub(crate) async fn matching(&self, tx: &mut Tx, doctype: &str, event: DocEvent) -> Result<Vec<Hook>, DbError> {
        if self.inner.log.is_none() {
            return Ok(Vec::new());
        }
        let fresh = self
            .inner
            .cache
            .lock()
            .ok()
            .and_then(|c| c.as_ref().filter(|c| c.at.elapsed() < FRESH_FOR).map(|c| c.hooks.clone()));
        let hooks = match fresh {
            Some(hooks) => hooks,
            None => {
                let at = Instant::now();
                // Webhooks are System Managers' documents: the runtime reads them whoever writes
                // (past PostgreSQL row security, when it is on).
                tx.bypass(true).await?;
                let loaded = load(tx).await;
                let reset = tx.bypass(false).await;
                let hooks: Arc<[Hook]> = loaded?.into();
                reset?;
                if let Ok(mut cache) = self.inner.cache.lock() {
                    *cache = Some(Cached { at, hooks: hooks.clone() });
                }
                hooks
            }
        };
        Ok(hooks.iter().filter(|h| h.doctype == doctype && h.event == event).cloned().collect())
    }
}

/// Every enabled webhook with the fields it sends.
async fn load(tx: &mut Tx) -> Result<Vec<Hook>, DbError> {
    let dialect = tx.dialect();
    let mut sql = Sql::new(dialect);
    sql.push("SELECT name, webhook_doctype, webhook_docevent, request_url FROM webhook WHERE enabled = ");
    sql.bind(FieldType::Check, Value::Bool(true));
    let kinds = [FieldType::Data; 4];
    let rows = tx.fetch(&sql.text, sql.binds, &kinds).await?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    let mut hooks: Vec<Hook> = rows
        .iter()
        .filter_map(|r| {
            Some(Hook {
                name: text(r.first()),
                doctype: text(r.get(1)),
                event: DocEvent::parse(&text(r.get(2)))?,
                url: text(r.get(3)),
                fields: Vec::new(),
            })
        })
        .collect();
    if hooks.is_empty() {
        return Ok(hooks);
    }
    let sql = "SELECT parent, fieldname, \"key\" FROM webhook_data ORDER BY parent, idx";
    for row in tx.fetch(sql, Vec::new(), &[FieldType::Data; 3]).await? {
        let parent = text(row.first());
        if let Some(hook) = hooks.iter_mut().find(|h| h.name == parent) {
            let field = text(row.get(1));
            let key = match text(row.get(2)) {
                k if k.is_empty() => field.clone(),
                k => k,
            };
            hook.fields.push((field, key));
        }
    }
    Ok(hooks)
}
