//! The application's background jobs (listed in `JOBS`, run by `m start`'s workers or `m worker`).

use m_runtime::jobs::{Job, JobCtx, JobError};
use m_runtime::repo::Expect;

/// Every job this application defines.
pub static JOBS: &[Job] =
    &[Job { name: "sync_customer_name", run: |ctx, args| Box::pin(sync_customer_name(ctx, args)) }];

/// Draft invoices carry their customer's name (filled by the Invoice hook when they are saved);
/// after a Customer is renamed, save its draft invoices again so they show the new name.
/// Submitted invoices keep the name they were issued with. Args: `{"customer": "<name>"}`.
async fn sync_customer_name(ctx: &JobCtx, args: serde_json::Value) -> Result<(), JobError> {
    let customer = args
        .get("customer")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| JobError::fatal("args.customer must be a Customer name"))?;
    let repo = ctx.repo();
    let system = ctx.system();
    let name = repo.get(&system, "Customer", customer).await?.get("customer_name").clone();
    let params = [("customer".to_string(), customer.to_string()), ("docstatus".to_string(), "0".to_string())];
    for invoice in repo.list_all(&system, "Invoice", &params).await? {
        if invoice.get("customer_name") != &name {
            repo.update(&system, "Invoice", invoice.name(), &serde_json::json!({}), &Expect::default()).await?;
        }
    }
    Ok(())
}
