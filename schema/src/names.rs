//! Naming conventions shared by every output: table names, struct names, identifiers.

/// `Invoice Item` -> `invoice_item`, `SalesOrder` stays `salesorder` (DocType names are words
/// separated by spaces, as in Frappe).
pub fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for ch in name.trim().chars() {
        if ch == ' ' || ch == '-' {
            if !out.ends_with('_') {
                out.push('_');
            }
        } else {
            out.extend(ch.to_lowercase());
        }
    }
    out
}

/// `Invoice Item` -> `InvoiceItem`: the Rust struct generated for a DocType.
pub fn struct_name(name: &str) -> String {
    name.split([' ', '-', '_'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut cs = w.chars();
            match cs.next() {
                Some(first) => first.to_uppercase().chain(cs).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}

/// A field name: lowercase ASCII letter first, then lowercase letters, digits and single `_`
/// (a double underscore is the separator in constraint names). Rust keywords are fine (the
/// generated Rust spells them as raw identifiers, see [`rust_ident`]), except the few that
/// cannot be identifiers at all ([`is_unusable_ident`]).
pub fn is_field_ident(name: &str) -> bool {
    let mut cs = name.chars();
    matches!(cs.next(), Some('a'..='z'))
        && cs.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.contains("__")
}

/// `self`, `super`, `crate` and `Self` are keywords that no Rust identifier can spell, not even
/// a raw one (`r#self` is an error).
pub fn is_unusable_ident(name: &str) -> bool {
    NOT_RAW.contains(&name)
}

/// How generated Rust spells a field: `type` -> `r#type`, other names unchanged. The JSON, SQL
/// and metadata side always keeps the plain name.
pub fn rust_ident(name: &str) -> String {
    if RUST_KEYWORDS.contains(&name) { format!("r#{name}") } else { name.to_string() }
}

/// A DocType name: letters, digits and single spaces, starting with an uppercase letter.
pub fn is_doctype_name(name: &str) -> bool {
    let mut cs = name.chars();
    matches!(cs.next(), Some('A'..='Z'))
        && cs.all(|c| c.is_ascii_alphanumeric() || c == ' ')
        && !name.contains("  ")
        && !name.ends_with(' ')
}

/// Rust keywords (strict, reserved, and `gen` from edition 2024): a struct field with one of
/// these names is a raw identifier in generated Rust. Weak keywords (`union`, `raw`, `safe`)
/// are ordinary identifiers in field position.
const RUST_KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "dyn", "else", "enum", "extern", "false", "fn", "for", "if",
    "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "static", "struct", "trait",
    "true", "type", "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "macro", "override",
    "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
];

/// Keywords that cannot be raw identifiers either.
const NOT_RAW: &[&str] = &["self", "super", "crate", "Self"];

/// Deterministic, PostgreSQL-safe (<= 63 bytes) name for a constraint or index:
/// `<table>__<col>[__<col>…]_<suffix>`. Table and field names never contain `__`, so the double
/// underscore keeps `sales` + `order_name` apart from `sales_order` + `name`. Long names keep a
/// readable prefix and end in a short hash of the full name.
pub fn constraint_name(table: &str, columns: &[&str], suffix: &str) -> String {
    let full = format!("{table}__{}_{suffix}", columns.join("__"));
    if full.len() <= 63 {
        return full;
    }
    let hash = fnv1a(full.as_bytes());
    let tail = format!("_{hash:08x}_{suffix}");
    let mut head: String = full.chars().take(63 - tail.len()).collect();
    while head.len() + tail.len() > 63 {
        head.pop();
    }
    format!("{head}{tail}")
}

fn fnv1a(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// Levenshtein distance, for "did you mean" hints.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate within a small distance, for hints.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&lower, &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_conversions() {
        assert_eq!(snake_case("Invoice Item"), "invoice_item");
        assert_eq!(struct_name("Invoice Item"), "InvoiceItem");
        assert_eq!(struct_name("User Permission"), "UserPermission");
    }

    #[test]
    fn long_constraint_names_are_shortened_deterministically() {
        let long = "a".repeat(60);
        let n1 = constraint_name(&long, &["customer"], "fkey");
        let n2 = constraint_name(&long, &["customer"], "fkey");
        assert_eq!(n1, n2);
        assert!(n1.len() <= 63);
        assert!(n1.ends_with("_fkey"));
        assert_ne!(n1, constraint_name(&long, &["customes"], "fkey"));
        assert_ne!(constraint_name("sales", &["order_name"], "key"), constraint_name("sales_order", &["name"], "key"));
        assert_ne!(constraint_name("t", &["a_b", "c"], "idx"), constraint_name("t", &["a", "b_c"], "idx"));
    }

    #[test]
    fn keywords_become_raw_identifiers() {
        assert_eq!(rust_ident("type"), "r#type");
        assert_eq!(rust_ident("gen"), "r#gen");
        assert_eq!(rust_ident("union"), "union");
        assert_eq!(rust_ident("customer"), "customer");
        assert!(is_field_ident("type") && is_field_ident("static"));
        assert!(is_unusable_ident("self") && is_unusable_ident("crate") && !is_unusable_ident("type"));
    }

    #[test]
    fn closest_finds_typos() {
        assert_eq!(closest("Currncy", ["Currency", "Data"]), Some("Currency"));
        assert_eq!(closest("zzzzzz", ["Currency", "Data"]), None);
    }
}
