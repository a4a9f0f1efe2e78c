//! Changes: create, update, delete, submit, cancel and amend, each in one transaction — the
//! shared prologue (scope, lock in scope, `If-Match`, docstatus), hooks and value checks, the
//! row and its child rows written through the query builder, constraint errors as statuses.

use std::sync::Arc;

use serde_json::Value as Json;
use uuid::Uuid;

use super::body::{apply_body, apply_defaults, apply_defaults_to_children};
use super::links::link_values;
use super::{Expect, Repo, RepoError, Result, Target, ctx, docstatus, etag, if_match_ok, now, record_denial};
use crate::checks::{FieldIssue, check_doc};
use crate::db::{DbCtx, DbError, Fetch as _, Tx};
use crate::doc::{Doc, DocSchema, StandardColumn};
use crate::email::Email;
use crate::hooks::{DocEvent, HookEvent};
use crate::meta::FieldType;
use crate::perms::{ADMINISTRATOR, Action, Principal, Scope};
use crate::query::{self, DocRef, Sql};
use crate::value::Value;

impl Repo {
    pub async fn create(&self, who: &Principal, doctype: &(impl Target + ?Sized), body: &Json) -> Result<Doc> {
        let schema = doctype.resolve(&self.inner.app)?;
        let scope = self.scope(&schema, who, Action::Create)?;
        let mut doc = Doc::empty(schema.clone());
        apply_body(&mut doc, body)?;
        apply_defaults(&mut doc);
        self.insert_new(who, &scope, doc, NewName::FromRule).await
    }

    /// In one transaction: stamp, resolve Links, run hooks, validate, name and insert a new
    /// document with its child rows.
    async fn insert_new(&self, who: &Principal, scope: &Scope, mut doc: Doc, name: NewName) -> Result<Doc> {
        let schema = doc.schema.clone();
        stamp_new(&mut doc, &who.user);

        let operation = match name {
            NewName::FromRule => "create",
            NewName::AmendmentOf(_) => "amend",
        };
        let mut tx = self.inner.db.begin(&ctx(who, Action::Create, &schema, operation)).await?;
        self.prepare(&mut tx, who, &mut doc, None).await?;
        let name = match name {
            NewName::FromRule => self.next_name(&mut tx, &doc).await?,
            NewName::AmendmentOf(original) => self.next_amendment(&mut tx, &schema, &original).await?,
        };
        doc.set_std(StandardColumn::Name, Value::Str(name));
        let sql = query::insert(&schema, self.dialect(), &self.stored(&schema, &doc.values)?);
        self.write(&mut tx, &schema, sql, WriteKind::Insert).await?;
        self.write_children(&mut tx, &mut doc, &[]).await?;
        self.run_hook(HookEvent::AfterSave, &mut doc, &mut tx, who, true).await?;
        self.check_within(&mut tx, who, &doc, scope, Action::Create).await?;
        self.record_events(&mut tx, &doc, &[DocEvent::AfterInsert, DocEvent::OnUpdate], who).await?;
        self.record_version(&mut tx, who, operation, None, &doc).await?;
        tx.commit().await?;
        self.written(&doc);
        Ok(doc)
    }

    /// A document written under User Permissions must stay visible to its writer: a Link moved
    /// outside them is refused (403) rather than leaving a document the writer cannot see.
    async fn check_within(&self, tx: &mut Tx, who: &Principal, doc: &Doc, scope: &Scope, action: Action) -> Result<()> {
        if scope.user_permissions.is_none() {
            return Ok(());
        }
        let id = doc.id().ok_or(RepoError::NotFound)?;
        let sql = query::find_name(&doc.schema, self.dialect(), &DocRef::Id(id), scope);
        if !tx.fetch(&sql.text, sql.binds, &[FieldType::Data]).await?.is_empty() {
            return Ok(());
        }
        let reason = "a Link value is outside the user's User Permissions";
        record_denial(who, &doc.schema, action, reason);
        Err(RepoError::NotPermitted(format!(
            "not permitted to {} {} {}: {reason}",
            action.as_str(),
            doc.schema.name(),
            doc.name()
        )))
    }

    /// Resolve Links, run `validate` and `before_save`, resolve Links a hook changed, and check
    /// the value rules. `previous` is the stored document on an update (its Links are resolved).
    async fn prepare(&self, tx: &mut Tx, who: &Principal, doc: &mut Doc, previous: Option<&Doc>) -> Result<()> {
        let is_new = previous.is_none();
        self.resolve_links(tx, who, doc, previous).await?;
        if self.app().hooks(doc.schema.meta.name).is_some() {
            let before = link_values(doc);
            self.run_hook(HookEvent::Validate, doc, tx, who, is_new).await?;
            self.run_hook(HookEvent::BeforeSave, doc, tx, who, is_new).await?;
            if link_values(doc) != before {
                self.resolve_links(tx, who, doc, previous).await?;
            }
        }
        crate::users::rules::check(self.app(), doc, previous)?;
        crate::webhooks::rules::check(self.app(), doc)?;
        validate(doc)
    }

    pub async fn update(
        &self,
        who: &Principal,
        doctype: &(impl Target + ?Sized),
        r: &str,
        body: &Json,
        expect: &Expect,
    ) -> Result<Doc> {
        let schema = doctype.resolve(&self.inner.app)?;
        let change = Change {
            action: Action::Write,
            operation: "update",
            from: 0,
            refusal: |doc| not_a_draft(doc, "only drafts can be changed"),
        };
        let (mut tx, scope, mut doc) = self.begin_change(who, &schema, r, expect, change).await?;
        let old = doc.clone();
        let body_version = apply_body(&mut doc, body)?;
        let current_version = version(&doc);
        if let (Some(expected), Some(current)) = (body_version, current_version)
            && expected != current
        {
            return Err(RepoError::Conflict(format!(
                "stale _version {expected}: the document is at version {current}"
            )));
        }
        apply_defaults_to_children(&mut doc);
        self.stamp_modified(&mut doc, who);
        self.prepare(&mut tx, who, &mut doc, Some(&old)).await?;
        self.save_existing(&mut tx, &mut doc, &scope, current_version, &old).await?;
        self.run_hook(HookEvent::AfterSave, &mut doc, &mut tx, who, false).await?;
        self.check_within(&mut tx, who, &doc, &scope, Action::Write).await?;
        self.record_events(&mut tx, &doc, &[DocEvent::OnUpdate], who).await?;
        self.record_version(&mut tx, who, "update", Some(&old), &doc).await?;
        tx.commit().await?;
        self.written(&doc);
        Ok(doc)
    }

    pub async fn delete(
        &self,
        who: &Principal,
        doctype: &(impl Target + ?Sized),
        r: &str,
        expect: &Expect,
    ) -> Result<()> {
        let schema = doctype.resolve(&self.inner.app)?;
        let change = Change {
            action: Action::Delete,
            operation: "delete",
            from: 0,
            refusal: |doc| not_a_draft(doc, "only drafts can be deleted"),
        };
        let (mut tx, scope, mut doc) = self.begin_change(who, &schema, r, expect, change).await?;
        self.run_hook(HookEvent::BeforeDelete, &mut doc, &mut tx, who, false).await?;
        crate::users::rules::before_delete(&doc)?;
        let id = doc.id().ok_or(RepoError::NotFound)?;
        let sql = query::delete(&schema, self.dialect(), id, &scope);
        if self.write(&mut tx, &schema, sql, WriteKind::Delete).await? == 0 {
            return Err(RepoError::NotFound);
        }
        if schema.meta.table == crate::users::rules::USER_TABLE {
            let sql = query::delete_password_hash(self.dialect(), doc.name());
            tx.execute(&sql.text, sql.binds).await?;
        }
        self.record_events(&mut tx, &doc, &[DocEvent::OnTrash], who).await?;
        self.record_deletion(&mut tx, who, &doc).await?;
        tx.commit().await?;
        self.written(&doc);
        Ok(())
    }

    /// Submit (docstatus 0 -> 1) or cancel (1 -> 2).
    pub async fn transition(
        &self,
        who: &Principal,
        doctype: &(impl Target + ?Sized),
        r: &str,
        action: Action,
        expect: &Expect,
    ) -> Result<Doc> {
        let schema = doctype.resolve(&self.inner.app)?;
        if !schema.meta.submittable {
            return Err(RepoError::NotFound);
        }
        let (from, to, event, refusal): (i64, i64, HookEvent, fn(&Doc) -> String) = match action {
            Action::Submit => (0, 1, HookEvent::OnSubmit, |doc| has_docstatus(doc, "only drafts can be submitted")),
            _ => (1, 2, HookEvent::OnCancel, |doc| has_docstatus(doc, "only submitted documents can be cancelled")),
        };
        let change = Change { action, operation: action.as_str(), from, refusal };
        let (mut tx, scope, mut doc) = self.begin_change(who, &schema, r, expect, change).await?;
        let old = doc.clone();
        let current_version = version(&doc);
        if action == Action::Submit {
            self.prepare(&mut tx, who, &mut doc, Some(&old)).await?;
        }
        doc.set_std(StandardColumn::Docstatus, Value::Int(to));
        self.stamp_modified(&mut doc, who);
        self.save_existing(&mut tx, &mut doc, &scope, current_version, &old).await?;
        self.run_hook(event, &mut doc, &mut tx, who, false).await?;
        // Hooks may have changed Links on the way.
        self.check_within(&mut tx, who, &doc, &scope, action).await?;
        let committed = if action == Action::Submit { DocEvent::OnSubmit } else { DocEvent::OnCancel };
        self.record_events(&mut tx, &doc, &[committed], who).await?;
        self.record_version(&mut tx, who, action.as_str(), Some(&old), &doc).await?;
        tx.commit().await?;
        Ok(doc)
    }

    /// A new draft copying a cancelled document, named `<name>-N`, with `amended_from`.
    pub async fn amend(
        &self,
        who: &Principal,
        doctype: &(impl Target + ?Sized),
        r: &str,
        expect: &Expect,
    ) -> Result<Doc> {
        let schema = doctype.resolve(&self.inner.app)?;
        if !schema.meta.submittable {
            return Err(RepoError::NotFound);
        }
        let scope = self.scope(&schema, who, Action::Create)?;
        let source = self.read_one(who, doctype, r, "amend").await?;
        check_if_match(&source, expect)?;
        check_state(&source, 2, |doc| {
            format!("{} {} is not cancelled; only cancelled documents can be amended", doc.schema.name(), doc.name())
        })?;
        // `INV-0001-1` amends to `INV-0001-2`, not `INV-0001-1-1`.
        let original = match (source.get_std(StandardColumn::AmendedFrom), source.name().rsplit_once('-')) {
            (Value::Str(_), Some((base, n))) if n.chars().all(|c| c.is_ascii_digit()) => base.to_string(),
            _ => source.name().to_string(),
        };
        let mut doc = Doc::empty(schema.clone());
        for (i, c) in schema.columns.iter().enumerate() {
            if c.standard.is_none() {
                doc.values[i] = source.values[i].clone();
            }
        }
        for (i, rows) in source.tables.iter().enumerate() {
            doc.tables[i] = rows
                .iter()
                .map(|row| {
                    let mut copy = row.clone();
                    copy.set_std(StandardColumn::Id, Value::Null);
                    copy
                })
                .collect();
        }
        doc.set_std(StandardColumn::AmendedFrom, Value::Str(source.name().to_string()));
        self.insert_new(who, &scope, doc, NewName::AmendmentOf(original)).await
    }

    /// Record the after-commit events of a change in its transaction: for its DocType's hooks
    /// when they want them, and a delivery for each enabled webhook on the event.
    async fn record_events(&self, tx: &mut Tx, doc: &Doc, events: &[DocEvent], who: &Principal) -> Result<()> {
        if self.app().after_commit(doc.schema.name()) {
            crate::jobs::doc_events::record(tx, &self.inner.queue, doc, events, &who.user).await?;
        }
        let Some(log_schema) = self.inner.webhooks.log_schema() else { return Ok(()) };
        for &event in events {
            for hook in self.inner.webhooks.matching(tx, doc.schema.name(), event).await? {
                let text = |s: &str| Value::Str(s.to_string());
                let fields = [
                    ("webhook", text(&hook.name)),
                    ("reference_doctype", text(doc.schema.name())),
                    ("reference_document", text(doc.name())),
                    ("event", text(event.as_str())),
                    ("user", text(&who.user)),
                    ("url", text(&hook.url)),
                    ("status", text(crate::webhooks::Status::Queued.as_str())),
                    ("data", Value::Str(hook.body(doc, event))),
                    ("attempts", Value::Int(0)),
                ];
                let name = self.insert_system(tx, log_schema, &fields).await?;
                let args = serde_json::json!({ "log": name });
                let job = crate::webhooks::JOB_NAME;
                self.inner.queue.enqueue_in(tx, job, &args, Some(&who.user)).await?;
            }
        }
        Ok(())
    }

    /// Insert a document the runtime writes for itself (a delivery log, a queued email) in
    /// `tx`: no hooks, no permission check (nor PostgreSQL row security: the writer is rarely
    /// a System Manager), owned by the Administrator. Returns its name.
    pub(super) async fn insert_system(
        &self,
        tx: &mut Tx,
        schema: &Arc<DocSchema>,
        fields: &[(&str, Value)],
    ) -> Result<String> {
        self.insert_system_as(tx, schema, fields, ADMINISTRATOR).await
    }

    /// [`Repo::insert_system`], owned by `owner`.
    pub(super) async fn insert_system_as(
        &self,
        tx: &mut Tx,
        schema: &Arc<DocSchema>,
        fields: &[(&str, Value)],
        owner: &str,
    ) -> Result<String> {
        let mut doc = Doc::empty(schema.clone());
        stamp_new(&mut doc, owner);
        for (field, value) in fields {
            doc.set(field, value.clone());
        }
        let name = self.next_name(tx, &doc).await?;
        doc.set_std(StandardColumn::Name, Value::Str(name.clone()));
        let sql = query::insert(schema, self.dialect(), &self.stored(schema, &doc.values)?);
        tx.bypass(true).await?;
        let written = self.write(tx, schema, sql, WriteKind::Insert).await;
        // The statement's own error first (a failed statement also fails what follows).
        let reset = tx.bypass(false).await;
        written?;
        reset?;
        Ok(name)
    }

    /// Queue `email` in `tx` (rendered now; sent by the job `m:email` once `tx` commits).
    /// Returns its `Email Queue` name.
    pub(crate) async fn queue_email_in(&self, tx: &mut Tx, email: &Email, user: &str) -> Result<String> {
        let schema = self.inner.outbox.queue_schema().ok_or_else(|| {
            RepoError::Internal("this application has no Email Queue DocType: it cannot send email".into())
        })?;
        crate::mail::check_addresses(email)
            .map_err(|m| RepoError::Validation(vec![FieldIssue::new("email", "email", m)]))?;
        let rendered = crate::mail::render(email).map_err(RepoError::Internal)?;
        let text = |s: &str| Value::Str(s.to_string());
        let optional = |s: Option<&str>| s.map_or(Value::Null, text);
        let (doctype, name) = email.reference.clone().unzip();
        let fields = [
            ("sender", text(self.inner.outbox.from())),
            ("recipients", Value::Str(email.to.iter().map(|a| a.trim()).collect::<Vec<_>>().join(", "))),
            ("cc", Value::Str(email.cc.iter().map(|a| a.trim()).collect::<Vec<_>>().join(", "))),
            ("subject", Value::Str(rendered.subject)),
            ("message_html", optional(rendered.html.as_deref())),
            ("message_text", optional(rendered.text.as_deref())),
            ("status", text(crate::mail::Status::NotSent.as_str())),
            ("attempts", Value::Int(0)),
            ("reference_doctype", optional(doctype.as_deref())),
            ("reference_name", optional(name.as_deref())),
            ("attach_print", Value::Bool(email.attach_print)),
        ];
        let queued = self.insert_system(tx, schema, &fields).await?;
        let args = serde_json::json!({ "email": queued });
        self.inner.queue.enqueue_in(tx, crate::mail::JOB_NAME, &args, Some(user)).await?;
        Ok(queued)
    }

    /// Queue `email`, committed at once (from a job or after a commit).
    pub async fn send_email(&self, email: &Email, user: &str) -> Result<String> {
        let mut tx = self.inner.db.begin(&DbCtx::System).await?;
        let name = self.queue_email_in(&mut tx, email, user).await?;
        tx.commit().await?;
        Ok(name)
    }

    /// The start of every change to a stored document: the caller's scope for the action, a write
    /// transaction acting for them, the document read in scope and locked, `If-Match`, and the
    /// docstatus the change needs.
    async fn begin_change(
        &self,
        who: &Principal,
        schema: &Arc<DocSchema>,
        r: &str,
        expect: &Expect,
        change: Change,
    ) -> Result<(Tx, Scope, Doc)> {
        let scope = self.scope(schema, who, change.action)?;
        let mut tx = self.inner.db.begin(&ctx(who, change.action, schema, change.operation)).await?;
        let doc = self.load_for_write(&mut tx, schema, r, &scope, (who, change.action)).await?;
        check_if_match(&doc, expect)?;
        check_state(&doc, change.from, change.refusal)?;
        Ok((tx, scope, doc))
    }

    fn stamp_modified(&self, doc: &mut Doc, who: &Principal) {
        doc.set_std(StandardColumn::Modified, Value::Datetime(now()));
        doc.set_std(StandardColumn::ModifiedBy, Value::Str(who.user.clone()));
        if let Value::Int(v) = doc.get_std(StandardColumn::Version) {
            let next = v + 1;
            doc.set_std(StandardColumn::Version, Value::Int(next));
        }
    }

    /// Update the parent row (in scope, at the expected version) and sync its child rows.
    async fn save_existing(
        &self,
        tx: &mut Tx,
        doc: &mut Doc,
        scope: &Scope,
        version: Option<i64>,
        old: &Doc,
    ) -> Result<()> {
        let schema = doc.schema.clone();
        let sql = query::update(&schema, self.dialect(), &self.stored(&schema, &doc.values)?, scope, version);
        if self.write(tx, &schema, sql, WriteKind::Update).await? == 0 {
            return Err(RepoError::Conflict("the document changed while it was being saved".into()));
        }
        self.write_children(tx, doc, &old.tables).await
    }

    /// Replace-the-set against the stored rows `old`: delete rows left out, update rows that
    /// changed, insert new ones; unchanged rows cost nothing.
    async fn write_children(&self, tx: &mut Tx, doc: &mut Doc, old: &[Vec<Doc>]) -> Result<()> {
        let parent_name = doc.name().to_string();
        let schema = doc.schema.clone();
        for (i, t) in schema.tables.iter().enumerate() {
            let rows = &mut doc.tables[i];
            let old_rows: &[Doc] = old.get(i).map_or(&[], Vec::as_slice);
            let keep: Vec<Uuid> = rows.iter().filter_map(Doc::id).collect();
            if old_rows.iter().any(|o| o.id().is_some_and(|id| !keep.contains(&id))) {
                let sql = query::delete_children_except(&t.child, self.dialect(), &parent_name, t.name, &keep);
                self.write(tx, &t.child, sql, WriteKind::Delete).await?;
            }
            for (idx, row) in rows.iter_mut().enumerate() {
                row.set_std(StandardColumn::Idx, Value::Int(idx as i64));
                row.set_std(StandardColumn::Parent, Value::Str(parent_name.clone()));
                row.set_std(StandardColumn::Parentfield, Value::Str(t.name.to_string()));
                let stored = old_rows.iter().find(|o| o.id().is_some() && o.id() == row.id());
                // Child rows follow the parent, whose scope this transaction already checked.
                let (sql, kind) = match stored {
                    Some(o) if o.values == row.values => continue,
                    Some(_) => {
                        let values = self.stored(&t.child, &row.values)?;
                        (query::update(&t.child, self.dialect(), &values, &Scope::all(), None), WriteKind::Update)
                    }
                    None => {
                        if row.id().is_none() {
                            row.set_std(StandardColumn::Id, Value::Uuid(Uuid::now_v7()));
                        }
                        let values = self.stored(&t.child, &row.values)?;
                        (query::insert(&t.child, self.dialect(), &values), WriteKind::Insert)
                    }
                };
                self.write(tx, &t.child, sql, kind).await?;
            }
        }
        Ok(())
    }

    /// Execute a write and turn constraint violations into the statuses of the README's HTTP API section.
    async fn write(&self, tx: &mut Tx, schema: &DocSchema, sql: Sql, kind: WriteKind) -> Result<u64> {
        match tx.execute(&sql.text, sql.binds).await {
            Ok(n) => Ok(n),
            Err(DbError::Unique { constraint }) => {
                let field = unique_field(schema, &constraint);
                let message = match &field {
                    Some(f) if f == "name" => format!("{} with this name already exists", schema.name()),
                    Some(f) => format!("another {} has the same {f}", schema.name()),
                    None => format!("a unique constraint of {} was violated", schema.name()),
                };
                Err(RepoError::Duplicate { message, field })
            }
            Err(DbError::ForeignKey) => match kind {
                WriteKind::Delete => Err(RepoError::LinkExists(format!(
                    "other documents link to this {}; delete or change them first",
                    schema.name()
                ))),
                _ => Err(RepoError::Validation(vec![FieldIssue::new("", "link", "a linked document does not exist")])),
            },
            Err(DbError::TooLong) => Err(RepoError::Validation(vec![FieldIssue::new(
                "",
                "max_length",
                "a value (a name, or the acting user's name) is longer than 140 characters",
            )])),
            Err(DbError::NotNull { .. }) => {
                Err(RepoError::Validation(vec![FieldIssue::new("", "required", "a required value is missing")]))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// How a new document gets its name.
enum NewName {
    FromRule,
    /// `<original>-N`, the next free N.
    AmendmentOf(String),
}

fn version(doc: &Doc) -> Option<i64> {
    match doc.get_std(StandardColumn::Version) {
        Value::Int(v) => Some(*v),
        _ => None,
    }
}

#[derive(Clone, Copy)]
enum WriteKind {
    Insert,
    Update,
    Delete,
}

/// The field a unique-constraint violation is about: PostgreSQL names the constraint
/// (`<table>__<column>_key`), SQLite the columns (`UNIQUE constraint failed: t.c`).
fn unique_field(schema: &DocSchema, constraint: &str) -> Option<String> {
    let table = schema.meta.table;
    if let Some(cols) = constraint.strip_prefix("UNIQUE constraint failed: ") {
        let first = cols.split(',').next()?.trim();
        return first.split_once('.').map(|(_, c)| c.to_string());
    }
    let inner = constraint.strip_prefix(table)?.strip_prefix("__")?.strip_suffix("_key")?;
    schema.column(inner).map(|_| inner.to_string())
}

/// A change to a stored document: the action it needs, its operation (for the metrics), the
/// docstatus the document must have, and what a refusal says (a 409 `invalid_state`).
struct Change {
    action: Action,
    operation: &'static str,
    from: i64,
    refusal: fn(&Doc) -> String,
}

/// "Invoice INV-1 is not a draft; only drafts can be changed".
fn not_a_draft(doc: &Doc, rule: &str) -> String {
    format!("{} {} is not a draft; {rule}", doc.schema.name(), doc.name())
}

/// "Invoice INV-1 has docstatus 2; only drafts can be submitted".
fn has_docstatus(doc: &Doc, rule: &str) -> String {
    format!("{} {} has docstatus {}; {rule}", doc.schema.name(), doc.name(), docstatus(doc))
}

/// The document has docstatus `required`, or the change is a 409 `invalid_state`.
fn check_state(doc: &Doc, required: i64, refusal: fn(&Doc) -> String) -> Result<()> {
    if docstatus(doc) == required { Ok(()) } else { Err(RepoError::InvalidState(refusal(doc))) }
}

fn check_if_match(doc: &Doc, expect: &Expect) -> Result<()> {
    match &expect.if_match {
        Some(h) if !if_match_ok(h, &etag(doc)) => Err(RepoError::PreconditionFailed),
        _ => Ok(()),
    }
}

fn validate(doc: &Doc) -> Result<()> {
    let mut issues = Vec::new();
    check_doc(doc, "", &mut issues);
    if issues.is_empty() { Ok(()) } else { Err(RepoError::Validation(issues)) }
}

/// The standard columns of a new document written by `user`: a fresh id, owner and modifier,
/// creation and modification now, a draft at version 1.
fn stamp_new(doc: &mut Doc, user: &str) {
    let t = now();
    doc.set_std(StandardColumn::Id, Value::Uuid(Uuid::now_v7()));
    doc.set_std(StandardColumn::Owner, Value::Str(user.to_string()));
    doc.set_std(StandardColumn::ModifiedBy, Value::Str(user.to_string()));
    doc.set_std(StandardColumn::Creation, Value::Datetime(t));
    doc.set_std(StandardColumn::Modified, Value::Datetime(t));
    doc.set_std(StandardColumn::Docstatus, Value::Int(0));
    doc.set_std(StandardColumn::Version, Value::Int(1));
}
