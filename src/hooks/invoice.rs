//! Invoice hooks: the customer's name is copied from the Customer, each row's amount is
//! qty × rate, and the grand total is the sum of the amounts.

use m_runtime::hooks::{HookCtx, HookError, Hooks};
use m_runtime::types::Decimal;

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
}
