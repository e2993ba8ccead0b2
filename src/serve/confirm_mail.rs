//! The confirmation mail of a sign-up: the newsletter's look (templates/email.css inlined, its
//! header) and language, HTML and text, with the confirm link. Pure but for reading the
//! editor's stylesheet; returns the exact bytes to queue.

use anyhow::Context;
use lettre::message::header::{self, ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message, MultiPart, SinglePart};
use maud::{DOCTYPE, html};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::render::i18n::SignUp;

/// A rendered confirmation mail: `(message_id, envelope sender, bytes)`.
pub(crate) fn render(
    css: &str,
    config: &Config,
    dkim: Option<&crate::render::email::Dkim>,
    to: &str,
    link: &str,
    date: std::time::SystemTime,
) -> anyhow::Result<crate::store::QueuedMessage> {
    let words = crate::render::i18n::sign_up(&config.language);
    let title = &config.title;
    let subject = words.mail_subject.replace("{title}", title);
    let address: lettre::Address = to
        .parse()
        .with_context(|| format!("`{to}` is not an email address"))?;
    let message_id = {
        let mut h = Sha256::new();
        h.update(b"confirm\0");
        h.update(link.as_bytes());
        let hex: String = h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("confirm.{hex}@{}", config.email.from.email.domain())
    };
    // The bare address: the name came with the sign-up, from anyone, and the address has
    // not confirmed it. Bots sign victims up with a name that is an advertisement or a
    // phishing link, for the confirmation mail to carry it from the newsletter's domain.
    let mut builder = Message::builder()
        .from(config.email.from.clone())
        .to(Mailbox::new(None, address.clone()))
        .subject(subject)
        .date(date)
        .message_id(Some(format!("<{message_id}>")))
        .header(AutoSubmitted);
    if let Some(r) = &config.email.reply_to {
        builder = builder.reply_to(r.clone());
    }
    let mut message = builder
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(text(config, words, link)),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html_part(css, config, words, link)?),
                ),
        )
        .context("cannot build the confirmation mail")?;
    if let Some(dkim) = dkim {
        dkim.sign(&mut message);
    }
    Ok((
        message_id,
        config.email.from.email.to_string(),
        message.formatted(),
    ))
}

fn text(config: &Config, words: &SignUp, link: &str) -> String {
    let mut out = String::new();
    out.push_str(&config.title);
    out.push_str("\n\n");
    for line in crate::text::wrap(
        &words.mail_intro.replace("{title}", &config.title),
        72,
        "",
        "",
    ) {
        out.push_str(&line);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(link);
    out.push_str("\n\n");
    for line in crate::text::wrap(words.mail_ignore, 72, "", "") {
        out.push_str(&line);
        out.push('\n');
    }
    if !config.postal_address.is_empty() {
        out.push_str("\n-- \n");
        out.push_str(&config.postal_address);
        out.push('\n');
    }
    out
}

fn html_part(css: &str, config: &Config, words: &SignUp, link: &str) -> anyhow::Result<String> {
    let subject = words.mail_subject.replace("{title}", &config.title);
    let document = html! {
        (DOCTYPE)
        html lang=(config.language) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (subject) }
                style { (maud::PreEscaped(css.replace("</", "<\\/"))) }
            }
            body.body {
                table.wrapper role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" {
                    tr { td.outer align="center" {
                        table.container role="presentation" width="600" cellpadding="0" cellspacing="0" border="0" {
                            tr { td.header {
                                p.newsletter { (config.title) }
                                h1.title { (crate::render::i18n::sign_up(&config.language).confirm_title) }
                            } }
                            tr { td.content lang=(config.language) {
                                p { (words.mail_intro.replace("{title}", &config.title)) }
                                p { a href=(link) { strong { (words.mail_button) } } }
                                p { (words.mail_ignore) }
                            } }
                            @if !config.postal_address.is_empty() {
                                tr { td.footer { p { (config.postal_address) } } }
                            }
                        }
                    } }
                }
            }
        }
    };
    css_inline::CSSInliner::options()
        .keep_at_rules(true)
        .load_remote_stylesheets(false)
        .build()
        .inline(&document.into_string())
        .context("cannot inline templates/email.css into the confirmation mail")
}

/// `Auto-Submitted: auto-generated` (RFC 3834): vacation responders do not answer it.
#[derive(Clone, Debug)]
struct AutoSubmitted;

impl header::Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_string())
    }
}
