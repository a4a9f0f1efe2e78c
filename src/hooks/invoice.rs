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
            let amount = (qty * item.rate.unwrap_or(Decimal::ZERO)).round_dp(6);
            item.amount = Some(amount);
            total += amount;
        }
        self.grand_total = Some(total);
        Ok(())
    }
}
