//! Document names from a DocType's naming rule (the README's DocType reference).

use chrono::{Datelike, Utc};

/// A series pattern split around its counter: `INV-.YYYY.-.####` in 2026 gives prefix
/// `INV-2026-`, width 4 and an empty suffix. The prefix is also the counter's key, so each year
/// starts again at 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub prefix: String,
    pub width: usize,
    pub suffix: String,
}

/// Expand date parts and find the `#` run of a series pattern.
pub fn parse_series(pattern: &str) -> Series {
    let now = Utc::now();
    let mut prefix = String::new();
    let mut suffix = String::new();
    let mut width = 0;
    for part in pattern.split('.') {
        let text = match part {
            "YYYY" => format!("{:04}", now.year()),
            "YY" => format!("{:02}", now.year() % 100),
            "MM" => format!("{:02}", now.month()),
            "DD" => format!("{:02}", now.day()),
            p if !p.is_empty() && p.chars().all(|c| c == '#') && width == 0 => {
                width = p.len();
                continue;
            }
            p => p.to_string(),
        };
        if width == 0 { prefix.push_str(&text) } else { suffix.push_str(&text) }
    }
    Series { prefix, width: width.max(1), suffix }
}

impl Series {
    pub fn name(&self, n: i64) -> String {
        format!("{}{:0width$}{}", self.prefix, n, self.suffix, width = self.width)
    }
}

/// Frappe's default: ten random hexadecimal characters.
pub fn hash_name() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_patterns() {
        let s = parse_series("CUST-.#####");
        assert_eq!(s.prefix, "CUST-");
        assert_eq!(s.name(42), "CUST-00042");
        let s = parse_series("INV-.YYYY.-.####");
        assert_eq!(s.prefix, format!("INV-{}-", Utc::now().year()));
        assert_eq!(s.width, 4);
    }
}
