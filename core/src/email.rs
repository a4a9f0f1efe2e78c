//! An outgoing email as hooks and jobs queue it (`HookCtx::send_email`, `JobCtx::send_email`):
//! its subject and bodies are templates (minijinja) rendered with `context` when it is queued —
//! the HTML body autoescaped, the subject and text part as written — and it is sent later by the
//! outbox (the built-in `Email Queue` DocType and its job).

use serde_json::Value as Json;

/// One email to queue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Email {
    /// Addresses it is sent to (at least one).
    pub to: Vec<String>,
    pub cc: Vec<String>,
    /// Template of the subject (one line).
    pub subject: String,
    /// Template of the HTML part (autoescaped).
    pub html: Option<String>,
    /// Template of the plain-text part.
    pub text: Option<String>,
    /// What the templates see.
    pub context: Json,
    /// The document it is about: `(DocType, name)`.
    pub reference: Option<(String, String)>,
    /// Attach the referenced document's print as a PDF, when the server can print PDFs.
    pub attach_print: bool,
}

impl Email {
    /// An email to `to` with the subject template `subject`.
    pub fn new(to: impl Into<String>, subject: impl Into<String>) -> Email {
        Email {
            to: vec![to.into()],
            subject: subject.into(),
            context: Json::Object(Default::default()),
            ..Email::default()
        }
    }

    pub fn cc(mut self, address: impl Into<String>) -> Email {
        self.cc.push(address.into());
        self
    }

    /// The HTML part's template.
    pub fn html(mut self, template: impl Into<String>) -> Email {
        self.html = Some(template.into());
        self
    }

    /// The plain-text part's template.
    pub fn text(mut self, template: impl Into<String>) -> Email {
        self.text = Some(template.into());
        self
    }

    /// What the templates see (a JSON object).
    pub fn context(mut self, context: Json) -> Email {
        self.context = context;
        self
    }

    /// The document the email is about (`reference_doctype`, `reference_name` in the queue).
    pub fn about(mut self, doctype: impl Into<String>, name: impl Into<String>) -> Email {
        self.reference = Some((doctype.into(), name.into()));
        self
    }

    /// Attach the referenced document's print (PDF) when the server prints PDFs.
    pub fn attach_print(mut self) -> Email {
        self.attach_print = true;
        self
    }
}
