//! Outgoing email: an outbox in the application's database. Hooks and jobs queue an [`Email`]
//! (`ctx.send_email(…)`); its templates are rendered at once (minijinja: the HTML part
//! autoescaped, the subject and text part as written; no template can load a file or a URL)
//! and it is kept as an `Email Queue` document with a job `m:email` that sends it — both in the
//! write's transaction when a hook queues it, so an email exists exactly when its change
//! commits.
//!
//! The job ([`deliver`]) sends through `M_SMTP_URL` (implicit TLS, or STARTTLS required; plain
//! only to a loopback relay) behind the breaker `smtp`. Without an SMTP server, development
//! writes each message as an `.eml` file under `M_MAIL_DIR`; production leaves it in the queue,
//! failed with `smtp_not_configured` (the change that queued it is not affected).

pub mod deliver;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, Tokio1Executor};

use crate::app::App;
use crate::breaker::Breakers;
use crate::config::{Config, Mode, SmtpTls};
use crate::doc::DocSchema;
use crate::email::Email;

pub const QUEUE_DOCTYPE: &str = "Email Queue";
/// The built-in job that sends one queued email (`{"email": <Email Queue name>}`).
pub const JOB_NAME: &str = "m:email";
/// The breaker in front of the SMTP server.
pub const BREAKER: &str = "smtp";

/// Where a queued email stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for its job (first attempt or a retry).
    NotSent,
    Sent,
    /// Given up: the server refused it, the attempts ran out, or nothing can send it.
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::NotSent => "Not Sent",
            Status::Sent => "Sent",
            Status::Error => "Error",
        }
    }
}

/// How messages leave this server.
pub(crate) enum Transport {
    Smtp(Box<AsyncSmtpTransport<Tokio1Executor>>),
    /// Development without SMTP: one `.eml` file per message.
    Directory(PathBuf),
    /// Production without SMTP: nothing is sent.
    Missing,
}

/// The outbox of one runtime.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    /// The `Email Queue` DocType (None: the application was assembled without it).
    queue: Option<Arc<DocSchema>>,
    transport: Transport,
    from: String,
    breakers: Breakers,
}

impl Outbox {
    /// The outbox the configuration describes (the SMTP transport is made here, connections
    /// are opened when mail is sent).
    pub fn new(config: &Config, app: &App, breakers: Breakers) -> Result<Outbox, String> {
        let timeout = Some(Duration::from_secs(config.smtp_timeout_secs));
        let transport = match (&config.smtp_url, config.env) {
            (Some(url), _) => {
                crate::auth::install_crypto_provider();
                let builder = match url.tls {
                    SmtpTls::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(&url.host),
                    SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&url.host),
                    SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&url.host)),
                }
                .map_err(|e| format!("M_SMTP_URL: {e}"))?;
                let mut builder = builder.port(url.port).timeout(timeout);
                if let Some(user) = &url.user {
                    let password = url.password.as_ref().map(|p| p.expose().to_string()).unwrap_or_default();
                    builder = builder.credentials(Credentials::new(user.clone(), password));
                }
                Transport::Smtp(Box::new(builder.build()))
            }
            (None, Mode::Development) => Transport::Directory(config.mail_dir.clone()),
            (None, Mode::Production) => {
                if app.get(QUEUE_DOCTYPE).is_some() {
                    tracing::warn!("M_SMTP_URL is not set: queued email is kept and not sent (smtp_not_configured)");
                }
                Transport::Missing
            }
        };
        let from = config.mail_from.clone().unwrap_or_else(|| "M <noreply@localhost>".to_string());
        from.parse::<lettre::message::Mailbox>().map_err(|e| format!("M_MAIL_FROM `{from}` is not an address: {e}"))?;
        Ok(Outbox { inner: Arc::new(Inner { queue: app.get(QUEUE_DOCTYPE).cloned(), transport, from, breakers }) })
    }

    /// The `Email Queue` DocType, when the application has it.
    pub fn queue_schema(&self) -> Option<&Arc<DocSchema>> {
        self.inner.queue.as_ref()
    }

    /// The sender of every message (`M_MAIL_FROM`).
    pub fn from(&self) -> &str {
        &self.inner.from
    }

    pub(crate) fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    pub(crate) fn breakers(&self) -> &Breakers {
        &self.inner.breakers
    }
}

/// An email's subject and parts, rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub html: Option<String>,
    pub text: Option<String>,
}

/// Render an email's templates with its context ([`crate::templates`]: no loader, HTML
/// autoescaped).
pub fn render(email: &Email) -> Result<Rendered, String> {
    let mut env = crate::templates::environment();
    let ctx = crate::templates::value(&email.context);
    let mut one = |name: &'static str, source: &str| -> Result<String, String> {
        env.add_template_owned(name, source.to_string()).map_err(|e| format!("email template {name}: {e}"))?;
        let template = env.get_template(name).map_err(|e| format!("email template {name}: {e}"))?;
        template.render(&ctx).map_err(|e| format!("email template {name}: {e}"))
    };
    let subject = one("subject.txt", &email.subject)?;
    // One line: a header cannot carry a line break.
    let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    let html = email.html.as_deref().map(|t| one("body.html", t)).transpose()?;
    let text = email.text.as_deref().map(|t| one("body.txt", t)).transpose()?;
    Ok(Rendered { subject, html, text })
}

/// Every address of an email is one (`name <user@host>` or `user@host`); at least one `to`.
pub fn check_addresses(email: &Email) -> Result<(), String> {
    if email.to.iter().all(|a| a.trim().is_empty()) {
        return Err("an email needs at least one recipient".into());
    }
    for address in email.to.iter().chain(&email.cc) {
        address
            .trim()
            .parse::<lettre::message::Mailbox>()
            .map_err(|e| format!("`{address}` is not an email address: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_autoescaped_and_text_is_not() {
        let email = Email::new("a@example.com", "Invoice {{ doc.name }}\n  due")
            .html("<p>{{ doc.note }}</p>")
            .text("{{ doc.note }} {{ doc.total }} {{ doc.qty + 1 }}")
            .context(
                serde_json::from_str(r#"{"doc": {"name": "INV-1", "note": "<b>&</b>", "total": 1234.50, "qty": 3}}"#)
                    .unwrap(),
            );
        let r = render(&email).unwrap();
        assert_eq!(r.subject, "Invoice INV-1 due");
        assert_eq!(r.html.as_deref(), Some("<p>&lt;b&gt;&amp;&lt;&#x2f;b&gt;</p>"));
        assert_eq!(r.text.as_deref(), Some("<b>&</b> 1234.50 4"));
        let include = Email::new("a@example.com", "{% include 'x.html' %}");
        assert!(render(&include).is_err(), "templates load nothing");
        assert!(check_addresses(&Email::new("not an address", "x")).is_err());
        assert!(check_addresses(&Email::new("Ann <ann@example.com>", "x").cc("b@example.com")).is_ok());
        assert!(check_addresses(&Email { to: vec![], ..Email::default() }).is_err());
    }
}
