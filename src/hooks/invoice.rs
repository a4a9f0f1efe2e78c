//! Invoice hooks: the customer's name is copied from the Customer, each row's amount is
//! qty × rate, and the grand total is the sum of the amounts. Submitting an invoice emails it to
//! the customer when the customer has an email address (queued in the submit's transaction,
//! with the invoice's print attached when the server prints PDFs).

use m_runtime::email::Email;
use m_runtime::hooks::{HookCtx, HookError, Hooks};
use m_runtime::types::Decimal;
use serde_json::json;

use crate::doctypes::Invoice;

impl Hooks for Invoice {
    async fn validate(&mut self, ctx: &HookCtx<'_>) -> Result<(), HookError> {
        self.customer_name = match &self.customer {
            Some(customer) => ctx.get_value("Customer", customer, "customer_name").await?.as_str().map(str::to_string),
            None => None,
        };
        let mut total = Decimal::ZERO;
        for (i, item) in self.items.iter_mut().enumerate() {
            let qty = Decimal::try_from(item.qty.unwrap_or(0.0))
                .map_err(|_| HookError::field(&format!("items[{i}].qty"), "qty is not a finite number"))?;
            // Checked: a huge qty × rate is the client's mistake (a 422), not a crash.
            let amount = qty
                .checked_mul(item.rate.unwrap_or(Decimal::ZERO))
                .ok_or_else(|| HookError::field(&format!("items[{i}].amount"), "qty × rate is too large"))?
                .round_dp(6);
            item.amount = Some(amount);
            total = total
                .checked_add(amount)
                .ok_or_else(|| HookError::field("grand_total", "the sum of the amounts is too large"))?;
        }
        self.grand_total = Some(total);
        Ok(())
    }

    async fn on_submit(&mut self, ctx: &HookCtx<'_>) -> Result<(), HookError> {
        let (Some(name), Some(customer)) = (&self.name, &self.customer) else { return Ok(()) };
        let address = ctx.get_value("Customer", customer, "email").await?;
        let Some(address) = address.as_str().filter(|a| !a.trim().is_empty()) else { return Ok(()) };
        let text = |v: Option<String>| v.unwrap_or_default();
        // Money with two decimals, whatever scale the database keeps.
        let money = |v: Option<Decimal>| v.map(|d| format!("{d:.2}")).unwrap_or_default();
        let items: Vec<_> = self
            .items
            .iter()
            .map(|i| {
                json!({
                    "item_code": i.item_code,
                    "qty": i.qty,
                    "rate": money(i.rate),
                    "amount": money(i.amount),
                })
            })
            .collect();
        let context = json!({
            "name": name,
            "customer": customer,
            "customer_name": self.customer_name,
            "posting_date": text(self.posting_date.map(|d| d.to_string())),
            "grand_total": money(self.grand_total),
            "items": items,
        });
        let email = Email::new(address, "Invoice {{ name }}")
            .html(include_str!("../../email/invoice_submitted.html"))
            .text(include_str!("../../email/invoice_submitted.txt"))
            .context(context)
            .about("Invoice", name)
            .attach_print();
        // An address the mail system cannot use (the customer's to fix) does not stop the
        // submit: the invoice stands, without its email.
        match ctx.send_email(email).await {
            Ok(_) | Err(HookError::Validation { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
