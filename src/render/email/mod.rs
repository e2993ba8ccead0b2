//! One issue + settings -> the email: HTML (Maud, the editor's CSS inlined with css-inline), a
//! plain-text alternative from the same Markdown, and the complete MIME message for each
//! recipient (built with lettre, optionally DKIM-signed with lettre). Never sends anything and
//! never looks at the clock: same issue and recipient, same bytes.
//!
//! The issue is rendered once into a [`Prepared`] message; per recipient only the unsubscribe
//! URL, the address and the name are substituted. This is the interface `send` uses:
//!
//! ```text
//! let prepared = Prepared::new(&config, &issue, &templates, &secret, dkim.as_ref())?;  // once
//! let out: Outgoing = prepared.message(&Recipient { email, name })?;  // per recipient
//! // out.bytes: the RFC 5322 message; out.message_id: its Message-ID without <>;
//! // out.from / out.to: the envelope.
//! ```
//!
//! How the message is made, and why:
//! - `multipart/alternative`, text/plain first, both parts UTF-8, each in whichever of
//!   quoted-printable and base64 is shorter for it (base64 for Chinese text, which
//!   quoted-printable triples; quoted-printable for English). Every line is at most 76 octets.
//!   Previews, the outbox and test copies are always so.
//! - For a relay that announces 8BITMIME ([`Transfer::EightBit`], `smtp.eight_bit`), each part
//!   whose lines fit SMTP's 998 octets goes as 8bit: the UTF-8 text itself, about 1.05 times
//!   for the March sample instead of 1.41. The HTML's long lines are folded at spaces inside
//!   tags, which every transfer shares, so the decoded parts are the same bytes either way.
//! - The boundary starts with `=_`, which neither encoding can produce, and is derived from
//!   the issue id (lettre would pick a random one); 8bit text could hold it only by quoting
//!   that hash.
//! - Personalisation without re-rendering: a quoted-printable part is encoded once in pieces,
//!   with a soft line break before and after every per-recipient value, so a value is encoded
//!   on its own and spliced in. A base64 part is encoded once up to a multiple of 3 bytes
//!   before its first value (the footer); that end is encoded per recipient. Per recipient
//!   lettre only encodes the `To`, `Message-ID` and `List-Unsubscribe` header lines.
//! - `Message-ID` is `<hash(issue id, address)@sender's domain>`; `Date` is the moment `send`
//!   hands the message to SMTP (kept in the ledger), and the issue's date in previews.
//! - Subject, title and names pass through [`crate::text::one_line`]: a CR or LF becomes a
//!   space and can never start a header; lettre RFC 2047-encodes what is not ASCII.
//! - DKIM (lettre, relaxed/relaxed) covers [`SIGNED_HEADERS`]. Not `Content-Type`: lettre 0.11
//!   keeps a multipart message's `Content-Type` outside the headers it signs, so listing it
//!   gives signatures that do not verify. The `t=` tag is lettre's clock time, so a signed
//!   message is the one output that differs between runs.

mod layout;
mod mime;
mod splice;

pub use layout::FOOTER_REQUIRED;
pub use mime::Dkim;

use layout::*;
use mime::*;
use splice::*;

use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use anyhow::{Context, bail};
use base64::Engine;
use lettre::Address;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey,
};
use lettre::message::header::{
    self, ContentTransferEncoding, ContentType, Header, HeaderName, HeaderValue, Headers,
};
use lettre::message::{Body, Mailbox, Mailboxes, Message, MultiPart, SinglePart};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::issue::Issue;
use crate::render::i18n;
use crate::render::markdown::{self, Place};
use crate::text::one_line;
use crate::token::Secret;

/// Width of the plain-text part, in display columns.
pub const TEXT_WIDTH: usize = 72;

/// `check` warns when the encoded HTML part is larger than this: Gmail clips messages near
/// 102 KB.
pub const HTML_PART_WARN_BYTES: usize = 90 * 1024;

/// The headers a DKIM signature covers.
pub const SIGNED_HEADERS: [&str; 8] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// The files `publish` and `preview` write for an issue.
pub const HTML_FILE: &str = "email.html";
pub const TEXT_FILE: &str = "email.txt";
pub const MESSAGE_FILE: &str = "message.eml";

/// The editor-owned parts of the email's look, from `templates/`.
#[derive(Clone, Debug)]
pub struct Templates {
    /// `templates/email.css`: inlined into the elements; `@media` rules stay in a `<style>`.
    pub css: String,
    /// `templates/footer.md`: Markdown with `{newsletter}`, `{title}`, `{email}`, `{name}`,
    /// `{unsubscribe_url}`, `{web_url}` and `{postal_address}`.
    pub footer: String,
    /// The frame of every issue's HTML with the CSS inlined, made by the first issue.
    frame: OnceLock<Frame>,
}

impl Templates {
    /// The templates gazette ships.
    pub fn builtin() -> Templates {
        Templates::new(
            crate::render::builtin::EMAIL_CSS.to_string(),
            crate::render::builtin::FOOTER_MD.to_string(),
        )
    }

    /// Templates from their text.
    pub fn new(css: String, footer: String) -> Templates {
        Templates {
            css,
            footer,
            frame: OnceLock::new(),
        }
    }

    fn frame_key(config: &Config) -> String {
        format!(
            "{}\0{}\0{}\0{}",
            config.title, config.language, config.postal_address, config.base_url
        )
    }

    /// The inlined frame for `config`: cached for the first settings it is asked for.
    fn frame(&self, config: &Config) -> anyhow::Result<std::borrow::Cow<'_, str>> {
        let key = Templates::frame_key(config);
        if let Some(frame) = self.frame.get() {
            if frame.key == key {
                return Ok(frame.html.as_str().into());
            }
            return Ok(self.make_frame(config)?.into());
        }
        let html = self.make_frame(config)?;
        let frame = self.frame.get_or_init(|| Frame { key, html });
        Ok(frame.html.as_str().into())
    }

    fn make_frame(&self, config: &Config) -> anyhow::Result<String> {
        let place_base = config.base_url.clone();
        let place = Place {
            base_url: &place_base,
            page_url: &place_base,
        };
        let footer = footer_markdown(&self.footer, config, FRAME_TITLE, FRAME_WEB_URL);
        let document = html_document(
            config,
            FRAME_TITLE,
            FRAME_META,
            FRAME_SUMMARY,
            FRAME_BODY,
            &markdown::to_email_html(&footer, place),
            &self.css,
        );
        css_inline::CSSInliner::options()
            .keep_at_rules(true)
            .load_remote_stylesheets(false)
            .build()
            .inline(&document.into_string())
            .context("cannot inline templates/email.css into the email")
    }

    /// An issue's rendered body with the CSS inlined, as it sits in the frame's `.content`.
    fn inline_body(&self, fragment: &str, language: &str) -> anyhow::Result<String> {
        // In a wrapper like the frame's, so that `.content p` and `:lang()` rules apply; then
        // unwrapped.
        let mut lang = String::new();
        escape_into(&mut lang, language);
        let fragment = if i18n::is_chinese(language) {
            markdown::latin_emphasis(fragment)
        } else {
            fragment.into()
        };
        let wrapped = format!("<div class=\"content\" lang=\"{lang}\">{fragment}</div>");
        let inlined = css_inline::CSSInliner::options()
            .load_remote_stylesheets(false)
            .build()
            .inline_fragment(&wrapped, &self.css)
            .context("cannot inline templates/email.css into the email")?;
        let start = inlined.find('>').map_or(0, |i| i + 1);
        let end = inlined.rfind("</div>").unwrap_or(inlined.len()).max(start);
        Ok(inlined[start..end].to_string())
    }
}

/// Who one message goes to.
#[derive(Clone, Copy, Debug)]
pub struct Recipient<'a> {
    pub email: &'a str,
    /// The subscriber's name, where known: shown in `To` and in the footer's `{name}`.
    pub name: Option<&'a str>,
}

/// One complete message, ready for SMTP.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The Message-ID without angle brackets.
    pub message_id: String,
    /// The envelope sender: the `From` address.
    pub from: Address,
    /// The envelope recipient.
    pub to: Address,
    /// The RFC 5322 message, CRLF line endings.
    pub bytes: Vec<u8>,
    /// Whether a part is 8bit: the relay must announce 8BITMIME, and MAIL FROM says BODY=8BITMIME.
    pub eight_bit: bool,
}

/// How a message's parts may travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transfer {
    /// Quoted-printable or base64, whichever is shorter per part: every relay takes it, and
    /// previews and the outbox show it.
    SevenBit,
    /// 8bit where a part allows it (RFC 6152), for a relay that announces 8BITMIME: UTF-8
    /// text as it is, a third smaller than base64 for Chinese.
    EightBit,
}

/// An issue's email, rendered once; [`Prepared::message`] makes each recipient's copy.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The message cut around its per-recipient values, 7-bit.
    seven: Encoded,
    /// The same with 8bit parts, made the first time a relay takes them; `None` when no part
    /// can go as 8bit.
    eight: OnceLock<Option<Encoded>>,
    html: Pattern,
    text: Pattern,
    from: Mailbox,
    reply_to: Option<Mailbox>,
    subject: String,
    date: SystemTime,
    boundary: String,
    issue_id: String,
    list_id: String,
    unsubscribe_mailto: String,
    /// The unsubscribe URL before and after `{token}`.
    unsubscribe: (String, String),
    secret: Secret,
    dkim: Option<Dkim>,
}

/// The message with stand-ins, formatted and cut into fixed bytes and per-recipient pieces.
#[derive(Clone, Debug, Default)]
struct Encoded {
    fixed: Vec<u8>,
    pieces: Vec<Piece>,
    html_part_bytes: usize,
    /// The ends of the text and HTML parts where they are base64: see [`Tail`].
    text_tail: Option<Tail>,
    html_tail: Option<Tail>,
    /// Whether a part is 8bit.
    eight_bit: bool,
}

impl Prepared {
    /// Renders `issue`'s email once.
    pub fn new(
        config: &Config,
        issue: &Issue,
        templates: &Templates,
        secret: &Secret,
        dkim: Option<&Dkim>,
    ) -> anyhow::Result<Prepared> {
        let page_url = config.issue_url(&issue.slug);
        let fragment = markdown::to_email_html(
            &issue.body,
            Place {
                base_url: &config.base_url,
                page_url: &page_url,
            },
        );
        Prepared::with_fragment(config, issue, &fragment, templates, secret, dkim)
    }

    /// Like [`Prepared::new`], reusing the issue's body already rendered by
    /// [`markdown::to_email_html`].
    pub fn with_fragment(
        config: &Config,
        issue: &Issue,
        fragment: &str,
        templates: &Templates,
        secret: &Secret,
        dkim: Option<&Dkim>,
    ) -> anyhow::Result<Prepared> {
        let page_url = config.issue_url(&issue.slug);
        let place = Place {
            base_url: &config.base_url,
            page_url: &page_url,
        };
        let summary = crate::render::summary(issue);
        let title = one_line(&issue.title);
        let footer = footer_markdown(&templates.footer, config, &title, page_url.as_str());

        let body = templates.inline_body(fragment, &config.language)?;
        let escaped = |s: &str| {
            let mut out = String::with_capacity(s.len());
            escape_into(&mut out, s);
            out
        };
        let frame = templates.frame(config)?;
        let inlined = fill_frame(
            &frame,
            &[
                (FRAME_TITLE, &escaped(&title)),
                (FRAME_META, &escaped(&meta_line(config, issue))),
                (FRAME_SUMMARY, &escaped(&summary)),
                (FRAME_WEB_URL, &escaped(page_url.as_str())),
                (FRAME_BODY, &body),
            ],
        );
        let html = Pattern::parse(&fold_html(inlined));

        let language = &config.language;
        let body = crate::render::text::to_text_in(&issue.body, place, TEXT_WIDTH, 1, language);
        let footer = crate::render::text::to_text_in(
            &footer,
            place,
            TEXT_WIDTH,
            body.next_reference,
            language,
        );
        let text = Pattern::parse(&plain_text(config, issue, &body.text, &footer.text));

        let (before, after) = split_unsubscribe_url(&config.email.unsubscribe_url)?;
        let subject = one_line(issue.subject());
        let date = SystemTime::from(issue.date);
        let from = Mailbox::new(
            config.email.from.name.as_deref().map(one_line),
            config.email.from.email.clone(),
        );

        let mut prepared = Prepared {
            // Encoded from the fields below, right after.
            seven: Encoded::default(),
            eight: OnceLock::new(),
            html,
            text,
            from,
            reply_to: config.email.reply_to.clone(),
            subject,
            date,
            boundary: format!("=_{}", &hex(&Sha256::digest(issue.id.as_bytes()))[..40]),
            issue_id: issue.id.clone(),
            list_id: config.email.list_id.clone(),
            unsubscribe_mailto: config.email.unsubscribe_mailto.clone(),
            unsubscribe: (before, after),
            secret: secret.clone(),
            dkim: dkim.cloned(),
        };
        prepared.seven = prepared.encode(Transfer::SevenBit)?;
        Ok(prepared)
    }

    /// The message with stand-ins, formatted by lettre; then cut into pieces.
    fn encode(&self, transfer: Transfer) -> anyhow::Result<Encoded> {
        let eight_bit = transfer == Transfer::EightBit;
        let text_part = encode_part(&self.text, false, eight_bit);
        let html_part = encode_part(&self.html, true, eight_bit);
        let html_part_bytes = html_part.size;
        let any_eight_bit = [&text_part, &html_part]
            .iter()
            .any(|p| p.encoding == ContentTransferEncoding::EightBit);
        let placeholder: Address = "recipient@gazette.invalid".parse()?;
        let mut builder = with_from(Message::builder(), &self.from);
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        let message = builder
            .to(Mailbox::new(None, placeholder))
            .subject(self.subject.clone())
            .date(self.date)
            .message_id(Some("<placeholder@gazette.invalid>".to_string()))
            .header(ListId(format!("<{}>", self.list_id)))
            .header(ListUnsubscribe(String::new()))
            .header(ListUnsubscribePost(ONE_CLICK.to_string()))
            .multipart(
                MultiPart::alternative()
                    .boundary(self.boundary.clone())
                    .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(
                        Body::dangerous_pre_encoded(text_part.bytes, text_part.encoding),
                    ))
                    .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(
                        Body::dangerous_pre_encoded(html_part.bytes, html_part.encoding),
                    )),
            )
            .context("cannot build the message")?;
        let formatted = message.formatted();
        let (fixed, pieces) = cut(&formatted)?;

        if let Some(line) = formatted.split(|&b| b == b'\n').find(|l| l.len() > 998) {
            bail!(
                "a header of the email would be longer than 998 octets (`{}...`): shorten the subject or the sender's name",
                String::from_utf8_lossy(&line[..60])
            );
        }
        Ok(Encoded {
            fixed,
            pieces,
            html_part_bytes,
            text_tail: text_part.tail,
            html_tail: html_part.tail,
            eight_bit: any_eight_bit,
        })
    }

    /// The cut message for `transfer`: 7-bit, or with 8bit parts where any part can be.
    fn encoded(&self, transfer: Transfer) -> &Encoded {
        if transfer == Transfer::SevenBit {
            return &self.seven;
        }
        let eight = self.eight.get_or_init(|| {
            // It cannot fail where the 7-bit message did not; if it did, 7-bit still works.
            let eight = self.encode(Transfer::EightBit);
            debug_assert!(eight.is_ok(), "the 8bit message failed: {eight:?}");
            eight.ok().filter(|e| e.eight_bit)
        });
        eight.as_ref().unwrap_or(&self.seven)
    }

    /// The size of the HTML part as sent 7-bit (quoted-printable or base64; as 8bit it is
    /// smaller), with stand-ins of 72 bytes for the per-recipient values.
    pub fn html_part_bytes(&self) -> usize {
        self.seven.html_part_bytes
    }

    fn values<'a>(&self, to: &Recipient<'a>) -> Values<'a> {
        let token = self.secret.token(&self.list_id, to.email);
        Values {
            unsubscribe_url: format!("{}{token}{}", self.unsubscribe.0, self.unsubscribe.1),
            email: to.email,
            name: to.name.map(one_line).filter(|n| !n.is_empty()),
        }
    }

    /// The HTML part for one recipient, decoded.
    pub fn html(&self, to: &Recipient<'_>) -> String {
        self.html.fill(&self.values(to), true)
    }

    /// The text part for one recipient, decoded.
    pub fn text(&self, to: &Recipient<'_>) -> String {
        self.text.fill(&self.values(to), false)
    }

    /// The Message-ID for one recipient, without angle brackets: a hash of the issue id and
    /// the address (lowercased) at the sender's domain.
    pub fn message_id(&self, address: &Address) -> String {
        let mut h = Sha256::new();
        h.update(self.issue_id.as_bytes());
        h.update([0]);
        h.update(address.to_string().to_lowercase().as_bytes());
        format!("{}@{}", &hex(&h.finalize())[..32], self.from.email.domain())
    }

    /// The complete RFC 5322 message for one recipient, and its Message-ID (without <>).
    /// Its `Date` is the issue's: this is the message as previews and the outbox show it.
    pub fn message(&self, to: &Recipient<'_>) -> anyhow::Result<Outgoing> {
        self.build(to, false, self.date, None, Transfer::SevenBit)
    }

    /// The message for a subscriber of the list: as [`Prepared::message`] (or, with `date`,
    /// [`Prepared::message_at`]), and the mailto half of List-Unsubscribe carries their signed
    /// token (`unsubscribe+TOKEN@…`), so `gazette inbound` knows who asked without trusting
    /// the request's From. With [`Transfer::EightBit`] its parts may be 8bit.
    pub fn subscriber_message(
        &self,
        to: &Recipient<'_>,
        subscriber_id: i64,
        date: Option<&str>,
        transfer: Transfer,
    ) -> anyhow::Result<Outgoing> {
        let at = match date {
            Some(date) => SystemTime::from(
                chrono::DateTime::parse_from_rfc3339(date)
                    .with_context(|| format!("the ledger's date `{date}` is not RFC 3339"))?,
            ),
            None => self.date,
        };
        self.build(to, false, at, Some(subscriber_id), transfer)
    }

    /// The message as sent: its `Date` is `date`, the moment it is handed to SMTP (RFC 3339,
    /// as the ledger keeps it), so mail clients file it by when it arrived.
    pub fn message_at(&self, to: &Recipient<'_>, date: &str) -> anyhow::Result<Outgoing> {
        let date = chrono::DateTime::parse_from_rfc3339(date)
            .with_context(|| format!("the ledger's date `{date}` is not RFC 3339"))?;
        self.build(to, false, SystemTime::from(date), None, Transfer::SevenBit)
    }

    /// A test copy (`send --to`): the same message under a Message-ID of its own, so that a
    /// receiver that drops repeated Message-IDs never drops the real issue sent later. Dated
    /// now, as it is sent now, and in `transfer`, as the subscribers' copies through the same
    /// relay.
    pub fn test_message(&self, to: &Recipient<'_>, transfer: Transfer) -> anyhow::Result<Outgoing> {
        self.build(to, true, SystemTime::now(), None, transfer)
    }

    fn build(
        &self,
        to: &Recipient<'_>,
        test: bool,
        date: SystemTime,
        subscriber_id: Option<i64>,
        transfer: Transfer,
    ) -> anyhow::Result<Outgoing> {
        let address: Address = to
            .email
            .parse()
            .with_context(|| format!("`{}` is not an email address", to.email))?;
        if !to.email.is_ascii() {
            bail!(
                "`{}` is not an ASCII address: gazette does not send SMTPUTF8 mail",
                to.email
            );
        }
        let values = self.values(to);
        let message_id = if test {
            format!("test.{}", self.message_id(&address))
        } else {
            self.message_id(&address)
        };
        let mut mailbox = Mailbox::new(values.name.clone(), address.clone());
        let mut to_field = to_line(&mailbox);
        if to_field.split('\n').any(|l| l.len() > 998) {
            // A name no header line can hold: the address alone.
            mailbox = Mailbox::new(None, address.clone());
            to_field = to_line(&mailbox);
        }
        let id_line = header_line(header::MessageId::from(format!("<{message_id}>")));
        let date_line = header_line(header::Date::new(date));
        let unsubscribe = self.list_unsubscribe(&values.unsubscribe_url, subscriber_id);
        let unsubscribe_line = header_line(unsubscribe.clone());

        let encoded = self.encoded(transfer);
        let mut bytes = Vec::with_capacity(encoded.fixed.len() + 1024);
        // Where the values of 8bit parts went: only their lines can have grown.
        let mut raw_values: Vec<std::ops::Range<usize>> = Vec::new();
        for piece in &encoded.pieces {
            match piece {
                Piece::Fixed(range) => bytes.extend_from_slice(&encoded.fixed[range.clone()]),
                Piece::Header(HeaderSlot::To) => bytes.extend_from_slice(to_field.as_bytes()),
                Piece::Header(HeaderSlot::Date) => bytes.extend_from_slice(date_line.as_bytes()),
                Piece::Header(HeaderSlot::MessageId) => bytes.extend_from_slice(id_line.as_bytes()),
                Piece::Header(HeaderSlot::ListUnsubscribe) => {
                    bytes.extend_from_slice(unsubscribe_line.as_bytes())
                }
                Piece::Value {
                    slot,
                    html,
                    raw: true,
                } => {
                    let value = values.get(*slot);
                    let start = bytes.len();
                    if *html {
                        let mut escaped = String::with_capacity(value.len() + 16);
                        escape_into(&mut escaped, value);
                        bytes.extend_from_slice(escaped.as_bytes());
                    } else {
                        bytes.extend_from_slice(value.as_bytes());
                    }
                    raw_values.push(start..bytes.len());
                }
                Piece::Value {
                    slot,
                    html,
                    raw: false,
                } => {
                    let value = values.get(*slot);
                    let encoded = if *html {
                        let mut escaped = String::with_capacity(value.len() + 16);
                        escape_into(&mut escaped, value);
                        quoted_printable(escaped)
                    } else {
                        quoted_printable(value.to_string())
                    };
                    bytes.extend_from_slice(&encoded);
                    if !encoded.is_empty() {
                        bytes.extend_from_slice(b"=\r\n");
                    }
                }
                Piece::Tail { html } => {
                    let tail = if *html {
                        &encoded.html_tail
                    } else {
                        &encoded.text_tail
                    };
                    let tail = tail.as_ref().context("a base64 part lost its end")?;
                    let mut raw = tail.carry.clone();
                    raw.extend_from_slice(tail.rest.fill(&values, *html).as_bytes());
                    bytes.extend_from_slice(&base64_lines(&raw, false));
                }
            }
        }

        if !values_fit(&bytes, &raw_values) {
            // A value too long for its 8bit line (an address of hundreds of characters).
            return self.build(to, test, date, subscriber_id, Transfer::SevenBit);
        }

        if let Some(dkim) = &self.dkim {
            let body_start = bytes
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|i| i + 4)
                .context("the message has no body")?;
            let mut signed = with_to(with_from(Message::builder(), &self.from), &mailbox)
                .subject(self.subject.clone())
                .date(date)
                .message_id(Some(format!("<{message_id}>")))
                .header(ListId(format!("<{}>", self.list_id)))
                .header(unsubscribe)
                .header(ListUnsubscribePost(ONE_CLICK.to_string()))
                .body(Body::dangerous_pre_encoded(
                    bytes[body_start..].to_vec(),
                    ContentTransferEncoding::SevenBit,
                ))
                .context("cannot build the message to sign")?;
            signed.sign(&dkim.config);
            let signature = signed
                .headers()
                .get_raw("DKIM-Signature")
                .context("lettre added no DKIM-Signature")?;
            let mut line = Headers::new();
            line.insert_raw(HeaderValue::new(
                HeaderName::new_from_ascii_str("DKIM-Signature"),
                signature.to_string(),
            ));
            let line = line.to_string();
            bytes.splice(0..0, line.into_bytes());
        }

        Ok(Outgoing {
            message_id,
            from: self.from.email.clone(),
            to: address,
            bytes,
            eight_bit: encoded.eight_bit,
        })
    }

    fn list_unsubscribe(&self, url: &str, subscriber_id: Option<i64>) -> ListUnsubscribe {
        let mailto = match subscriber_id {
            Some(id) => crate::inbound::verp::mailto_with_token(
                &self.unsubscribe_mailto,
                &self.secret.local_token(
                    crate::token::Purpose::Unsubscribe,
                    &self.list_id,
                    id,
                    &self.issue_id,
                ),
            ),
            None => self.unsubscribe_mailto.clone(),
        };
        ListUnsubscribe(format!("<{url}>, <{mailto}>"))
    }
}

/// The three files of an issue's email for one recipient: `(name, bytes)`.
pub fn files(
    prepared: &Prepared,
    to: &Recipient<'_>,
) -> anyhow::Result<[(&'static str, Vec<u8>); 3]> {
    Ok([
        (HTML_FILE, prepared.html(to).into_bytes()),
        (TEXT_FILE, prepared.text(to).into_bytes()),
        (MESSAGE_FILE, prepared.message(to)?.bytes),
    ])
}

/// The key that signs unsubscribe links in the sample files that `publish` and `preview`
/// write: the newsletter's secret, or a fixed stand-in where none is set up (the sample
/// recipient is not a real subscriber), so that publishing needs no secret.
pub fn sample_secret(dir: &Path) -> Secret {
    Secret::load(dir).unwrap_or_else(|_| Secret::new("gazette sample: no secret set up"))
}

/// The mailbox written by hand (`"my.news" <a@b>`) where lettre would write its display name
/// bare although it holds a dot, such as `my.news` or `j.smith`: RFC 5322's obsolete phrase,
/// which parsers flag. `None` where lettre writes it well.
fn quoted_by_hand(mailbox: &Mailbox) -> Option<String> {
    let name = mailbox.name.as_deref()?;
    let bare = name.contains('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    bare.then(|| format!("\"{name}\" <{}>", mailbox.email))
}

/// `From`, written by lettre or, for a dotted name, [`quoted_by_hand`].
fn with_from(
    builder: lettre::message::MessageBuilder,
    from: &Mailbox,
) -> lettre::message::MessageBuilder {
    match quoted_by_hand(from) {
        Some(value) => builder.header(QuotedFrom(value)),
        None => builder.from(from.clone()),
    }
}

/// `To` as [`with_from`] writes `From`, for the message DKIM signs.
fn with_to(
    builder: lettre::message::MessageBuilder,
    to: &Mailbox,
) -> lettre::message::MessageBuilder {
    match quoted_by_hand(to) {
        Some(value) => builder.header(QuotedTo(value)),
        None => builder.to(to.clone()),
    }
}

/// The `To` line of a message, CRLF-terminated: the same as [`with_to`] writes.
fn to_line(to: &Mailbox) -> String {
    match quoted_by_hand(to) {
        Some(value) => header_line(QuotedTo(value)),
        None => header_line(header::To::from(Mailboxes::from(to.clone()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Regression (issue 7, item 5): lettre inserted each `\r` in place, copying the rest of
    // the part once per line: 4 MB of short lines took minutes.
    #[test]
    fn hardening_5_quoted_printable_is_linear_in_the_number_of_lines() {
        let small = "a\nb\r\nc\n\nd".to_string();
        let lettre =
            Body::new_with_encoding(small.clone(), ContentTransferEncoding::QuotedPrintable)
                .map(Body::into_vec)
                .unwrap();
        assert_eq!(quoted_printable(small), lettre);
        assert_eq!(crlf_line_endings("x\r\ny\nz".into()), "x\r\ny\r\nz");
        let start = std::time::Instant::now();
        let big = quoted_printable("a\n".repeat(2_000_000));
        assert_eq!(big.len(), 6_000_000);
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn prepared_can_be_shared_between_sending_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Prepared>();
        shared::<Dkim>();
    }

    #[test]
    fn the_unsubscribe_url_is_split_around_its_token() {
        let (a, b) = split_unsubscribe_url("https://example.org/u?token={token}&list=x").unwrap();
        assert_eq!(a, "https://example.org/u?token=");
        assert_eq!(b, "&list=x");
        let (a, _) = split_unsubscribe_url("https://例子.org/u/{token}").unwrap();
        assert_eq!(a, "https://xn--fsqu00a.org/u/");
        assert!(split_unsubscribe_url("https://example.org/u").is_err());
    }

    #[test]
    fn markers_are_cut_out_of_rendered_text() {
        let (_, url) = MARKERS[0];
        let p = Pattern::parse(&format!("a {url} b{url}"));
        let values = Values {
            unsubscribe_url: "https://x.example/?a=1&b=2".into(),
            email: "r@x.example",
            name: None,
        };
        assert_eq!(
            p.fill(&values, false),
            "a https://x.example/?a=1&b=2 bhttps://x.example/?a=1&b=2"
        );
        assert_eq!(
            p.fill(&values, true),
            "a https://x.example/?a=1&amp;b=2 bhttps://x.example/?a=1&amp;b=2"
        );
    }

    #[test]
    fn frame_values_are_not_read_as_stand_ins() {
        let frame = format!("<title>{FRAME_TITLE}</title><td>{FRAME_BODY}</td>");
        let out = fill_frame(
            &frame,
            &[(FRAME_TITLE, FRAME_BODY), (FRAME_BODY, "<p>body</p>")],
        );
        assert_eq!(
            out,
            format!("<title>{FRAME_BODY}</title><td><p>body</p></td>")
        );
    }

    #[test]
    fn footer_values_cannot_inject_markdown() {
        assert_eq!(markdown_escape("*A* [b](c) <d>"), r"\*A\* \[b\]\(c\) \<d\>");
    }
}
