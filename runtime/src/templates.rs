//! The template environment of emails and prints (minijinja): no loader, so a template can
//! include, import or extend only the templates the runtime itself registered (a print
//! template the other print templates) and reach no file or URL; HTML autoescaped for `.html`
//! names; `none` printed as nothing; JSON values given to templates with their exact digits;
//! and the filter `money` (`{{ doc.grand_total | money }}`: two decimals, or as many as asked,
//! `| money(0)`), rounding half away from zero as invoices do.

use serde_json::Value as Json;

/// `none` (and undefined) print as nothing — an empty field prints empty — everything else as
/// usual.
fn formatter(
    out: &mut minijinja::Output<'_>,
    state: &mut minijinja::State<'_, '_>,
    value: &minijinja::Value,
) -> Result<(), minijinja::Error> {
    if value.is_none() || value.is_undefined() {
        return Ok(());
    }
    minijinja::escape_formatter(out, state, value)
}

/// A new environment with the rules above.
pub fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") { minijinja::AutoEscape::Html } else { minijinja::AutoEscape::None }
    });
    env.set_formatter(formatter);
    env.add_filter("money", money);
    env
}

/// A number (or a decimal string) with `decimals` places; anything else as it is.
fn money(value: minijinja::Value, decimals: Option<u32>) -> String {
    let decimals = decimals.unwrap_or(2).min(12);
    let text = value.to_string();
    match text.trim().parse::<rust_decimal::Decimal>() {
        Ok(d) => {
            let rounded = d.round_dp_with_strategy(decimals, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
            format!("{rounded:.prec$}", prec = decimals as usize)
        }
        Err(_) if value.is_none() || value.is_undefined() => String::new(),
        Err(_) => text,
    }
}

/// A JSON value as templates see it. Numbers keep their exact digits: an integer is a number,
/// any other (a Decimal or Currency value, `"1234.50"`) is shown as written.
pub fn value(json: &Json) -> minijinja::Value {
    match json {
        Json::Null => minijinja::Value::from(()),
        Json::Bool(b) => minijinja::Value::from(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => minijinja::Value::from(i),
            None => minijinja::Value::from(n.to_string()),
        },
        Json::String(s) => minijinja::Value::from(s.as_str()),
        Json::Array(items) => minijinja::Value::from(items.iter().map(value).collect::<Vec<_>>()),
        Json::Object(map) => minijinja::Value::from_pairs(map.iter().map(|(k, v)| (k.as_str(), value(v)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_has_fixed_decimals() {
        let env = environment();
        let render = |src: &str, ctx: Json| env.render_str(src, value(&ctx)).unwrap();
        let ctx: Json =
            serde_json::from_str(r#"{"a": 10.5, "b": "21.000000", "c": 2.005, "d": null, "e": "n/a", "f": 7}"#)
                .unwrap();
        assert_eq!(
            render("{{ a|money }} {{ b|money }} {{ c|money }} [{{ d|money }}] {{ e|money }} {{ f|money(0) }}", ctx),
            "10.50 21.00 2.01 [] n/a 7"
        );
    }
}
