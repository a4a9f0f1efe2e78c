//! Build diagnostics: an error in a DocType file, located by file, line and column, with a hint.

use std::fmt;
use std::ops::Range;

/// One problem in a DocType file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as the user knows it, e.g. `doctypes/invoice.toml`.
    pub file: String,
    /// 1-based line and column of the offending text (0 when the whole file is meant).
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
    /// The source line, for rendering a caret under the problem.
    pub source_line: Option<String>,
    /// Width of the caret underline.
    pub width: usize,
}

impl Diagnostic {
    /// A diagnostic at a byte span of `source`.
    pub fn at(file: &str, source: &str, span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        let (line, column, source_line, width) = match span {
            Some(span) => locate(source, span),
            None => (0, 0, None, 0),
        };
        Diagnostic { file: file.to_string(), line, column, message: message.into(), hint: None, source_line, width }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

fn locate(source: &str, span: Range<usize>) -> (usize, usize, Option<String>, usize) {
    let start = span.start.min(source.len());
    let before = &source[..start];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = source[line_start..start].chars().count() + 1;
    let line_end = source[line_start..].find('\n').map_or(source.len(), |i| line_start + i);
    let text = source[line_start..line_end].trim_end_matches('\r').to_string();
    let end = span.end.clamp(start, line_end);
    let width = source[start..end].chars().count().max(1);
    (line, column, Some(text), width)
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            writeln!(f, "error: {}:{}:{}: {}", self.file, self.line, self.column, self.message)?;
        } else {
            writeln!(f, "error: {}: {}", self.file, self.message)?;
        }
        if let Some(text) = &self.source_line {
            let gutter = self.line.to_string().len();
            writeln!(f, "{:gutter$} |", "")?;
            writeln!(f, "{} | {}", self.line, text)?;
            writeln!(f, "{:gutter$} | {}{}", "", " ".repeat(self.column.saturating_sub(1)), "^".repeat(self.width))?;
        }
        if let Some(hint) = &self.hint {
            writeln!(f, "  = hint: {hint}")?;
        }
        Ok(())
    }
}

/// Render a list of diagnostics the way `build.rs` prints them.
pub fn render_all(diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        out.push_str(&d.to_string());
        out.push('\n');
    }
    out.push_str(&format!("{} error(s) in DocType files\n", diags.len()));
    out
}
