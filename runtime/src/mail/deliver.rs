//! Sending one queued email (the job `m:email`): the message is built from the `Email Queue`
//! document (a text and an HTML part, as rendered when it was queued) and handed to the
//! transport. An SMTP refusal (5xx) fails it at once; no answer, a dropped connection or a
//! temporary refusal (4xx) is retried with the job queue's backoff and counts against the
//! breaker `smtp`, whose being open defers the job without using an attempt.

use std::time::Instant;

use lettre::message::{Attachment, Mailbox, Mailboxes, MultiPart, SinglePart, header::ContentType};
use lettre::{AsyncFileTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{Value as Json, json};

use super::{BREAKER, QUEUE_DOCTYPE, Status, Transport};
use crate::doc::Doc;
use crate::jobs::{JobCtx, JobError};
use crate::print::PrintError;
use crate::repo::{Expect, RepoError};
use crate::value::Value;

/// Why production sends nothing without SMTP.
const NOT_CONFIGURED: &str = "smtp_not_configured: M_SMTP_URL is not set, so production sends no email (it stays queued here; set M_SMTP_URL and M_MAIL_FROM, then `m job:retry` its job)";

/// The job: send the email named in `args.email`.
pub async fn run(ctx: &JobCtx, args: Json) -> Result<(), JobError> {
    let id = args
        .get("email")
        .and_then(Json::as_str)
        .ok_or_else(|| JobError::fatal("args.email must name an Email Queue document"))?;
    let repo = ctx.repo();
    let email = match repo.get(&ctx.system(), QUEUE_DOCTYPE, id).await {
        Ok(email) => email,
        Err(RepoError::NotFound) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    // Sent once is enough (the job may run again after a crash); a failed email is sent again
    // when its job is retried (`m job:retry`).
    if email.text("status") == Status::Sent.as_str() {
        return Ok(());
    }
    let attempts = match email.get("attempts") {
        Value::Int(n) => *n,
        _ => 0,
    };
    // Nothing is prepared for a message that cannot leave now.
    match repo.outbox().transport() {
        Transport::Missing => {
            crate::metrics::email("failed", None);
            record(ctx, id, json!({ "status": Status::Error.as_str(), "error": NOT_CONFIGURED })).await?;
            return Err(JobError::fatal(NOT_CONFIGURED));
        }
        Transport::Smtp(_) => {
            let breaker = repo.outbox().breakers().get(BREAKER);
            if let Some(left) = breaker.waiting() {
                crate::metrics::email("deferred", None);
                return Err(JobError::later("not sent: the SMTP breaker is open", left));
            }
        }
        Transport::Directory(_) => {}
    }
    // The referenced document's print, as it is now, when asked for and PDFs can be made.
    let attachment = match attachment(ctx, &email).await {
        Ok(a) => a,
        Err(Attach::Later(why, after)) => {
            crate::metrics::email("deferred", None);
            return Err(JobError::later(why, after));
        }
        Err(Attach::Retry(error)) => {
            return retry_or_fail(ctx, id, attempts, error).await;
        }
    };
    let message = match message(&email, attachment) {
        Ok(m) => m,
        Err(error) => {
            crate::metrics::email("failed", None);
            record(ctx, id, json!({ "status": Status::Error.as_str(), "error": error })).await?;
            return Err(JobError::fatal(error));
        }
    };
    let outbox = repo.outbox();
    let started = Instant::now();
    let outcome = match outbox.transport() {
        Transport::Missing => Sent::Refused(NOT_CONFIGURED.into()),
        Transport::Directory(dir) => {
            let written = async {
                tokio::fs::create_dir_all(dir).await.map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                AsyncFileTransport::<Tokio1Executor>::new(dir)
                    .send(message)
                    .await
                    .map_err(|e| format!("cannot write to {}: {e}", dir.display()))
            }
            .await;
            match written {
                Ok(file) => {
                    crate::metrics::email("written", Some(started.elapsed()));
                    let note = format!("written to {}/{file}.eml (M_SMTP_URL is not set)", dir.display());
                    tracing::info!(email = id, file = %note, "email written");
                    Sent::Done(Some(note))
                }
                Err(e) => Sent::Retry(e),
            }
        }
        Transport::Smtp(smtp) => {
            let breaker = outbox.breakers().get(BREAKER);
            let Some(call) = breaker.call() else {
                crate::metrics::email("deferred", None);
                return Err(JobError::later("not sent: the SMTP breaker is open", breaker.retry_after()));
            };
            match smtp.send(message).await {
                Ok(_) => {
                    call.succeeded();
                    crate::metrics::email("sent", Some(started.elapsed()));
                    Sent::Done(None)
                }
                Err(e) if e.is_permanent() => {
                    // The server answered: it is up, and will not take this message.
                    call.succeeded();
                    Sent::Refused(format!("the SMTP server refused the message: {e}"))
                }
                Err(e) => {
                    call.failed();
                    Sent::Retry(format!("SMTP: {e}"))
                }
            }
        }
    };
    let tried = attempts + 1;
    let (update, job) = match outcome {
        Sent::Done(note) => (json!({ "status": Status::Sent.as_str(), "attempts": tried, "error": note }), Ok(())),
        Sent::Refused(error) => {
            crate::metrics::email("failed", Some(started.elapsed()));
            (
                json!({ "status": Status::Error.as_str(), "attempts": tried, "error": error }),
                Err(JobError::fatal(error)),
            )
        }
        Sent::Retry(error) if ctx.can_retry() => {
            crate::metrics::email("retry", Some(started.elapsed()));
            let update = json!({ "status": Status::NotSent.as_str(), "attempts": tried, "error": error });
            (update, Err(JobError::retry(error)))
        }
        Sent::Retry(error) => {
            crate::metrics::email("failed", Some(started.elapsed()));
            (
                json!({ "status": Status::Error.as_str(), "attempts": tried, "error": error }),
                Err(JobError::fatal(error)),
            )
        }
    };
    record(ctx, id, update).await?;
    job
}

/// Why the print could not be attached now.
enum Attach {
    /// Gotenberg's breaker is open.
    Later(String, std::time::Duration),
    /// It failed; trying again may work.
    Retry(String),
}

/// `(file name, PDF)` of the referenced document, when the email asks for its print and the
/// server prints PDFs. A document deleted since is left out (the email still goes).
async fn attachment(ctx: &JobCtx, email: &Doc) -> Result<Option<(String, Vec<u8>)>, Attach> {
    let printer = ctx.repo().printer();
    let (doctype, name) = (email.text("reference_doctype"), email.text("reference_name"));
    if email.get("attach_print") != &Value::Bool(true) || !printer.prints_pdf() || doctype.is_empty() {
        return Ok(None);
    }
    let admin = ctx.system();
    let (doc, html, page) = match printer.html(ctx.repo(), &admin, doctype, name).await {
        Ok(printed) => printed,
        Err(PrintError::Repo(RepoError::NotFound)) => return Ok(None),
        Err(e) => return Err(Attach::Retry(format!("cannot print {doctype} {name}: {e}"))),
    };
    match printer.pdf(&html, &page).await {
        Ok(pdf) => Ok(Some((format!("{}.pdf", doc.name()), pdf))),
        Err(PrintError::Unavailable { message, retry_after }) => {
            Err(Attach::Later(message, retry_after.unwrap_or(std::time::Duration::from_secs(5))))
        }
        Err(e) => Err(Attach::Retry(format!("cannot print {doctype} {name} as PDF: {e}"))),
    }
}

/// A failed attempt before anything was sent: retried while attempts are left.
async fn retry_or_fail(ctx: &JobCtx, id: &str, attempts: i64, error: String) -> Result<(), JobError> {
    let tried = attempts + 1;
    if ctx.can_retry() {
        crate::metrics::email("retry", None);
        let update = json!({ "status": Status::NotSent.as_str(), "attempts": tried, "error": error });
        record(ctx, id, update).await?;
        Err(JobError::retry(error))
    } else {
        crate::metrics::email("failed", None);
        record(ctx, id, json!({ "status": Status::Error.as_str(), "attempts": tried, "error": error })).await?;
        Err(JobError::fatal(error))
    }
}

enum Sent {
    /// Sent (or written), with a note for the queue.
    Done(Option<String>),
    /// Refused for good.
    Refused(String),
    /// May pass later.
    Retry(String),
}

async fn record(ctx: &JobCtx, id: &str, update: Json) -> Result<(), JobError> {
    ctx.repo().update(&ctx.system(), QUEUE_DOCTYPE, id, &update, &Expect::default()).await?;
    Ok(())
}

/// A stored address list (`a@x.io, "Doe, John" <j@x.io>`), quoted names with commas included.
fn mailboxes(list: &str) -> Result<Vec<Mailbox>, String> {
    if list.trim().is_empty() {
        return Ok(Vec::new());
    }
    let parsed: Mailboxes = list.parse().map_err(|e| format!("`{list}` is not a list of email addresses: {e}"))?;
    Ok(parsed.into_iter().collect())
}

/// The message of a queued email: its text and HTML parts as alternatives, and the attachment.
fn message(email: &Doc, attachment: Option<(String, Vec<u8>)>) -> Result<Message, String> {
    let from: Mailbox = email.text("sender").parse().map_err(|e| format!("the sender is not an address: {e}"))?;
    let mut builder = Message::builder().from(from).subject(email.text("subject"));
    for to in mailboxes(email.text("recipients"))? {
        builder = builder.to(to);
    }
    for cc in mailboxes(email.text("cc"))? {
        builder = builder.cc(cc);
    }
    let (html, plain) = (email.text("message_html"), email.text("message_text"));
    let result = match (html.is_empty(), plain.is_empty(), attachment) {
        (false, false, None) => {
            builder.multipart(MultiPart::alternative_plain_html(plain.to_string(), html.to_string()))
        }
        (false, true, None) => builder.singlepart(SinglePart::html(html.to_string())),
        (true, _, None) => builder.header(ContentType::TEXT_PLAIN).body(plain.to_string()),
        (_, _, Some((file, pdf))) => {
            let body = match (html.is_empty(), plain.is_empty()) {
                (false, false) => MultiPart::alternative_plain_html(plain.to_string(), html.to_string()),
                (false, true) => MultiPart::mixed().singlepart(SinglePart::html(html.to_string())),
                (true, _) => MultiPart::mixed().singlepart(SinglePart::plain(plain.to_string())),
            };
            let pdf_type = ContentType::parse("application/pdf").map_err(|e| e.to_string())?;
            builder.multipart(MultiPart::mixed().multipart(body).singlepart(Attachment::new(file).body(pdf, pdf_type)))
        }
    };
    result.map_err(|e| format!("cannot build the message: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn stored_address_lists_keep_quoted_names() {
        let list = super::mailboxes(r#"a@example.com, "Doe, John" <j@example.com>"#).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].email.to_string(), "j@example.com");
        assert!(super::mailboxes("").unwrap().is_empty());
        assert!(super::mailboxes("not an address").is_err());
    }
}
