//! Customer hooks: renaming a customer queues the job that updates its draft invoices (in the
//! same transaction, so the job exists only if the rename is saved).

use m_runtime::hooks::{HookCtx, HookError, Hooks};

use crate::doctypes::Customer;

impl Hooks for Customer {
    async fn before_save(&mut self, ctx: &HookCtx<'_>) -> Result<(), HookError> {
        if ctx.is_new() {
            return Ok(());
        }
        let Some(name) = self.name.clone() else { return Ok(()) };
        let stored = ctx.get_value("Customer", &name, "customer_name").await?;
        if stored.as_str() != self.customer_name.as_deref() {
            ctx.enqueue("sync_customer_name", serde_json::json!({ "customer": name })).await?;
        }
        Ok(())
    }
}
