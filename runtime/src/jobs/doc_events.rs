//! After-commit document events (`m_doc_event`): recorded in the transaction of the change that
//! causes them — so an event exists exactly when its change commits — with the document as it
//! was committed, and delivered by the built-in job [`JOB_NAME`], at least once.

use serde_json::Value as Json;

use super::queue::{EnqueueError, JobQueue, now_us};
use crate::db::{Db, DbCtx, DbError, Tx};
use crate::doc::Doc;
use crate::hooks::DocEvent;
use crate::meta::FieldType;
use crate::query::Sql;
use crate::value::Value;

/// The built-in job that delivers the events of one change, in order (`{"ids": [<event id>, …]}`).
pub const JOB_NAME: &str = "m:doc_event";

/// One recorded event.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub doctype: String,
    pub name: String,
    pub event: DocEvent,
    /// The document as it was committed, in its API form (Password fields left out).
    pub doc: Json,
}

/// Record `events` of `doc` in `tx` and queue their delivery, in this order, by one job (in the
/// same transaction). Events of different changes may be delivered in any order.
pub(crate) async fn record(
    tx: &mut Tx,
    queue: &JobQueue,
    doc: &Doc,
    events: &[DocEvent],
    by: &str,
) -> Result<(), EnqueueError> {
    let snapshot = serde_json::to_string(&doc.json(None)).map_err(|e| DbError::Other(e.to_string()))?;
    let mut ids = Vec::with_capacity(events.len());
    for event in events {
        let id = uuid::Uuid::now_v7().to_string();
        let mut sql = Sql::new(tx.dialect());
        sql.push("INSERT INTO m_doc_event (id, doctype, name, event, doc, created) VALUES (");
        sql.bind(FieldType::Data, Value::Str(id.clone())).push(", ");
        sql.bind(FieldType::Data, Value::Str(doc.schema.name().to_string())).push(", ");
        sql.bind(FieldType::Data, Value::Str(doc.name().to_string())).push(", ");
        sql.bind(FieldType::Data, Value::Str(event.as_str().to_string())).push(", ");
        sql.bind(FieldType::Text, Value::Str(snapshot.clone())).push(", ");
        sql.bind(FieldType::BigInt, Value::Int(now_us())).push(")");
        tx.execute(&sql.text, sql.binds).await?;
        ids.push(id);
    }
    queue.enqueue_in(tx, JOB_NAME, &serde_json::json!({ "ids": ids }), Some(by)).await?;
    Ok(())
}

/// An event by id (None once it was delivered).
pub(crate) async fn load(db: &Db, id: &str) -> Result<Option<Recorded>, DbError> {
    let mut sql = Sql::new(db.dialect());
    sql.push("SELECT doctype, name, event, doc FROM m_doc_event WHERE id = ")
        .bind(FieldType::Data, Value::Str(id.into()));
    let kinds = [FieldType::Data, FieldType::Data, FieldType::Data, FieldType::Text];
    let rows = db.fetch(&DbCtx::System, &sql.text, sql.binds, &kinds).await?;
    let Some(row) = rows.into_iter().next() else { return Ok(None) };
    let text = |i: usize| row.get(i).and_then(Value::as_str).unwrap_or_default().to_string();
    let event = DocEvent::parse(&text(2)).ok_or_else(|| DbError::Other(format!("unknown event `{}`", text(2))))?;
    let doc = serde_json::from_str(&text(3)).map_err(|e| DbError::Other(format!("event document: {e}")))?;
    Ok(Some(Recorded { doctype: text(0), name: text(1), event, doc }))
}

/// Forget a delivered event.
pub(crate) async fn delete(db: &Db, id: &str) -> Result<(), DbError> {
    let mut sql = Sql::new(db.dialect());
    sql.push("DELETE FROM m_doc_event WHERE id = ").bind(FieldType::Data, Value::Str(id.into()));
    db.write(&DbCtx::System, &sql.text, sql.binds).await?;
    Ok(())
}
