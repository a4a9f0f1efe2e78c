//! The review card: what a revision will do, step by step, with classes, rule codes and what
//! to do about REVIEW and DANGEROUS steps. Printed by `m migrate:create` and a development start,
//! and snapshotted next to the rendered SQL.

use super::ops::{Class, Step};
use super::revision::Revision;

const RESET: &str = "\x1b[0m";

fn paint(class: Class, text: &str, color: bool) -> String {
    if !color {
        return text.to_string();
    }
    let code = match class {
        Class::Safe => "\x1b[32m",
        Class::Review => "\x1b[33m",
        Class::Dangerous => "\x1b[1;31m",
    };
    format!("{code}{text}{RESET}")
}

fn steps(out: &mut String, title: &str, steps: &[Step], color: bool) {
    if steps.is_empty() {
        out.push_str(&format!("{title}: nothing\n"));
        return;
    }
    out.push_str(&format!("{title}:\n"));
    for s in steps {
        let label = paint(s.class, &format!("{:<9}", s.class.as_str()), color);
        out.push_str(&format!("  {label}  {}  {}\n", s.code, s.reason));
        if let Some(r) = &s.recommendation {
            out.push_str(&format!("                   -> {r}\n"));
        }
    }
}

/// The card for one revision; `color` adds ANSI colors (a terminal).
pub fn review_card(rev: &Revision, color: bool) -> String {
    let mut out = String::new();
    let class = paint(rev.class, rev.class.as_str(), color);
    out.push_str(&format!("revision {} ({}): {class}\n", rev.file_name(), rev.name));
    match rev.parents.as_slice() {
        [] => out.push_str("parents: none (root)\n"),
        ps => out.push_str(&format!("parents: {}\n", ps.join(", "))),
    }
    steps(&mut out, "up", &rev.up, color);
    let down_class = super::classify::max_class(&rev.down);
    steps(&mut out, &format!("down ({})", down_class.as_str()), &rev.down, color);
    let needed = super::classify::dangerous_codes(&rev.up);
    let missing: Vec<&String> = needed.iter().filter(|c| !rev.acknowledge.contains(c)).collect();
    match rev.class {
        Class::Safe => out.push_str("applies automatically on a development start and with `m migrate`\n"),
        Class::Review => {
            out.push_str("never applied by a development start: review the steps above, then run `m migrate`\n")
        }
        Class::Dangerous if missing.is_empty() => {
            out.push_str(&format!("acknowledged: {}; `m migrate` applies it\n", rev.acknowledge.join(", ")))
        }
        Class::Dangerous => out.push_str(&format!(
            "`m migrate` refuses it until `acknowledge` lists {}\n",
            missing.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ")
        )),
    }
    out
}
