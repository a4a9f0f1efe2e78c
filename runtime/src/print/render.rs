//! A document printed as HTML: read as the caller may, with the titles of its Links, through
//! its template.

use serde_json::{Map, Value as Json, json};

use super::{Page, PrintError, Printer};
use crate::doc::Doc;
use crate::meta::FieldType;
use crate::perms::Principal;
use crate::repo::Repo;

impl Printer {
    /// The document `r` of `doctype` as `who` may read it, printed as HTML, with its page.
    pub async fn html(
        &self,
        repo: &Repo,
        who: &Principal,
        doctype: &str,
        r: &str,
    ) -> Result<(Doc, String, Page), PrintError> {
        let doc = repo.get(who, doctype, r).await?;
        let context = context(repo, who, &doc).await;
        let own = format!("{}.html", doc.schema.meta.table);
        let name = if self.inner.templates.contains_key(&own) { own } else { "standard.html".to_string() };
        let page = self.inner.templates.get(&name).map(|t| t.page).unwrap_or_default();
        let template = self.inner.env.get_template(&name).map_err(|e| PrintError::Template(e.to_string()))?;
        let html = template.render(crate::templates::value(&context)).map_err(|e| {
            tracing::error!(template = %name, error = %e, "a print template failed");
            PrintError::Template(format!("{name}: {e}"))
        })?;
        Ok((doc, html, page))
    }
}

/// "customer_name" -> "Customer Name".
fn label(name: &str) -> String {
    name.split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a print template sees.
async fn context(repo: &Repo, who: &Principal, doc: &Doc) -> Json {
    let meta = doc.schema.meta;
    let shown = |kind: FieldType| !matches!(kind, FieldType::Table | FieldType::Password);
    let fields: Vec<Json> = meta
        .fields
        .iter()
        .filter(|f| shown(f.kind) && !f.hidden)
        .map(|f| json!({ "name": f.name, "label": label(f.name), "type": f.kind.as_str() }))
        .collect();
    let tables: Vec<Json> = doc
        .schema
        .tables
        .iter()
        .map(|t| {
            let columns: Vec<Json> = t
                .child
                .meta
                .fields
                .iter()
                .filter(|f| shown(f.kind) && !f.hidden)
                .map(|f| json!({ "name": f.name, "label": label(f.name) }))
                .collect();
            json!({ "name": t.name, "label": label(t.name), "columns": columns })
        })
        .collect();
    // The title of each Link the caller may read (a Link they may not read shows its value).
    let mut titles = Map::new();
    for f in meta.fields.iter().filter(|f| f.kind == FieldType::Link) {
        let (Some(target), Some(value)) = (f.to, doc.get(f.name).as_str()) else { continue };
        let Some(title_field) = repo.app().get(target).and_then(|s| s.meta.title_field) else { continue };
        if let Ok(linked) = repo.get(who, target, value).await
            && let Some(title) = linked.get(title_field).as_str()
        {
            titles.insert(f.name.to_string(), Json::String(title.to_string()));
        }
    }
    let doc_json = serde_json::to_value(doc.json(None)).unwrap_or(Json::Null);
    json!({
        "doc": doc_json,
        "doctype": meta.name,
        "titles": titles,
        "fields": fields,
        "tables": tables,
        "printed_at": chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels() {
        assert_eq!(super::label("customer_name"), "Customer Name");
    }
}
