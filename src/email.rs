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
//!   quoted-printable triples; quoted-printable for English). Every line is at most 76 octets,
//!   and a relay that downgrades 8-bit mail cannot break a DKIM signature. The boundary starts
//!   with `=_`, which neither encoding can produce, and is derived from the issue id (lettre
//!   would pick a random one).
//! - Personalisation without re-rendering: a quoted-printable part is encoded once in pieces,
//!   with a soft line break before and after every per-recipient value, so a value is encoded
//!   on its own and spliced in. A base64 part is encoded once up to a multiple of 3 bytes
//!   before its first value (the footer); that end is encoded per recipient. Per recipient
//!   lettre only encodes the `To`, `Message-ID` and `List-Unsubscribe` header lines.
//! - `Message-ID` is `<hash(issue id, address)@sender's domain>`; `Date` is the moment `send`
//!   hands the message to SMTP (kept in the ledger), and the issue's date in previews.
//! - Subject, title and names pass through [`crate::issue::one_line`]: a CR or LF becomes a
//!   space and can never start a header; lettre RFC 2047-encodes what is not ASCII.
//! - DKIM (lettre, relaxed/relaxed) covers [`SIGNED_HEADERS`]. Not `Content-Type`: lettre 0.11
//!   keeps a multipart message's `Content-Type` outside the headers it signs, so listing it
//!   gives signatures that do not verify. The `t=` tag is lettre's clock time, so a signed
//!   message is the one output that differs between runs.

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

use crate::config::{self, Config};
use crate::files;
use crate::issue::{Issue, one_line};
use crate::markdown::{self, Place};
use crate::scaffold;
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

/// The HTML around an issue's body (head, header, footer) with the CSS inlined, and stand-ins
/// for what differs between issues. Inlining the frame is most of the cost of inlining, so it
/// is done once per newsletter, not once per issue.
#[derive(Clone, Debug)]
struct Frame {
    /// The settings the frame was made with.
    key: String,
    html: String,
}

const FRAME_TITLE: &str = "gazetteframetitle0000";
const FRAME_META: &str = "gazetteframemeta0000";
const FRAME_SUMMARY: &str = "gazetteframesummary0000";
const FRAME_BODY: &str = "gazetteframebody0000";
const FRAME_WEB_URL: &str = "https://gazette.invalid/frame-web-url-0000";

impl Templates {
    /// The templates gazette ships.
    pub fn builtin() -> Templates {
        Templates::new(
            scaffold::EMAIL_CSS.to_string(),
            scaffold::FOOTER_MD.to_string(),
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

    /// `DIR/templates/email.css` and `footer.md`; the built-in one for a file that is absent.
    pub fn load(dir: &Path) -> anyhow::Result<Templates> {
        let read = |name: &str, fallback: &str| -> anyhow::Result<String> {
            let path = dir.join("templates").join(name);
            if !path.exists() {
                return Ok(fallback.to_string());
            }
            files::read_text(&path).map_err(|d| anyhow::anyhow!("{d}"))
        };
        Ok(Templates::new(
            read("email.css", scaffold::EMAIL_CSS)?,
            read("footer.md", scaffold::FOOTER_MD)?,
        ))
    }
}

/// A loaded DKIM signing key with its domain and selector. Cheap to clone.
#[derive(Clone)]
pub struct Dkim {
    config: Arc<DkimConfig>,
    /// `rsa` or `ed25519`, as detected from the key.
    pub algorithm: &'static str,
}

impl std::fmt::Debug for Dkim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dkim({})", self.algorithm)
    }
}

impl Dkim {
    /// Reads the key named by `[dkim]`.
    pub fn load(settings: &config::DkimConfig) -> anyhow::Result<Dkim> {
        let path = &settings.private_key_file;
        // A PEM key is a few kilobytes: the bound keeps `/dev/zero` or a misnamed file out.
        let pem = crate::files::read_bytes(path, 64 * 1024).context("cannot read the DKIM key")?;
        let pem = String::from_utf8(pem)
            .map_err(|_| anyhow::anyhow!("{} is not a PEM text file", path.display()))?;
        Dkim::from_pem(&settings.domain, &settings.selector, &pem)
            .with_context(|| format!("{}", path.display()))
    }

    /// A key from PEM text: RSA (PKCS#1 `BEGIN RSA PRIVATE KEY` or PKCS#8) or Ed25519 (PKCS#8,
    /// as `openssl genpkey -algorithm ed25519` writes it). The type is read from the key.
    pub fn from_pem(domain: &str, selector: &str, pem: &str) -> anyhow::Result<Dkim> {
        use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
        use rsa::pkcs8::{DecodePrivateKey, PrivateKeyInfo, SecretDocument};
        use rsa::traits::PublicKeyParts;

        const RSA: &str = "1.2.840.113549.1.1.1";
        const ED25519: &str = "1.3.101.112";
        let hint = "expected an RSA or Ed25519 private key in PEM, e.g. from \
                    `openssl genpkey -algorithm ed25519` or `openssl genrsa 2048`";
        let pem = pem.trim();
        let rsa_key = |key: rsa::RsaPrivateKey| -> anyhow::Result<(DkimSigningKey, &'static str)> {
            if key.size() * 8 < 2048 {
                bail!(
                    "the RSA key has {} bits; RFC 8301 and Gmail need at least 2048 (`openssl genrsa 2048`, or Ed25519)",
                    key.size() * 8
                );
            }
            let pkcs1 = key
                .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
                .context("cannot re-encode the RSA key")?;
            let key = DkimSigningKey::new(&pkcs1, DkimSigningAlgorithm::Rsa)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok((key, "rsa"))
        };
        let (key, algorithm) = if pem.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
            rsa_key(rsa::RsaPrivateKey::from_pkcs1_pem(pem).context(hint)?)?
        } else if pem.starts_with("-----BEGIN PRIVATE KEY-----") {
            let (_, doc) = SecretDocument::from_pem(pem).context(hint)?;
            let info = PrivateKeyInfo::try_from(doc.as_bytes()).context(hint)?;
            match info.algorithm.oid.to_string().as_str() {
                RSA => rsa_key(rsa::RsaPrivateKey::from_pkcs8_der(doc.as_bytes()).context(hint)?)?,
                ED25519 => {
                    // RFC 8410: the private key is an OCTET STRING holding the 32-byte seed.
                    let seed = match info.private_key {
                        [0x04, 0x20, seed @ ..] if seed.len() == 32 => seed,
                        _ => bail!("the Ed25519 key is malformed ({hint})"),
                    };
                    let b64 = base64::engine::general_purpose::STANDARD.encode(seed);
                    let key = DkimSigningKey::new(&b64, DkimSigningAlgorithm::Ed25519)
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    (key, "ed25519")
                }
                other => bail!("the key's algorithm {other} is neither RSA nor Ed25519 ({hint})"),
            }
        } else {
            bail!("not a PEM private key: {hint}");
        };
        let headers = SIGNED_HEADERS
            .iter()
            .map(|h| HeaderName::new_from_ascii_str(h))
            .collect();
        let config = DkimConfig::new(
            selector.to_string(),
            domain.to_string(),
            key,
            headers,
            DkimCanonicalization {
                header: DkimCanonicalizationType::Relaxed,
                body: DkimCanonicalizationType::Relaxed,
            },
        );
        Ok(Dkim {
            config: Arc::new(config),
            algorithm,
        })
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
}

/// A value that differs per recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    UnsubscribeUrl,
    Email,
    /// The name, or the address when the name is unknown.
    Name,
}

/// Stand-ins for the per-recipient values while the issue is rendered. Each is one unbreakable
/// word of 72 columns, so that text wrapping puts the real value on a line of its own and a
/// long address cannot push a line past the width. The URL stand-in is a URL so that Markdown
/// links and bare-URL linking treat it like the real one.
const MARKERS: [(Slot, &str); 3] = [
    (
        Slot::UnsubscribeUrl,
        "https://gazette.invalid/unsubscribe0000000000000000000000000000000000000",
    ),
    (
        Slot::Email,
        "gazetteslotemail00000000000000000000000000000000000000000000000000000000",
    ),
    (
        Slot::Name,
        "gazetteslotname000000000000000000000000000000000000000000000000000000000",
    ),
];

/// Rendered text with holes for the per-recipient values.
#[derive(Clone, Debug, Default)]
struct Pattern(Vec<Chunk>);

#[derive(Clone, Debug)]
enum Chunk {
    Fixed(String),
    Slot(Slot),
}

impl Pattern {
    fn parse(rendered: &str) -> Pattern {
        let mut chunks = Vec::new();
        let mut rest = rendered;
        loop {
            let next = MARKERS
                .iter()
                .filter_map(|(slot, m)| rest.find(m).map(|i| (i, *slot, m.len())))
                .min_by_key(|(i, _, _)| *i);
            match next {
                Some((i, slot, len)) => {
                    if i > 0 {
                        chunks.push(Chunk::Fixed(rest[..i].to_string()));
                    }
                    chunks.push(Chunk::Slot(slot));
                    rest = &rest[i + len..];
                }
                None => {
                    if !rest.is_empty() {
                        chunks.push(Chunk::Fixed(rest.to_string()));
                    }
                    return Pattern(chunks);
                }
            }
        }
    }

    fn fill(&self, values: &Values<'_>, html: bool) -> String {
        let mut out = String::new();
        for chunk in &self.0 {
            match chunk {
                Chunk::Fixed(s) => out.push_str(s),
                Chunk::Slot(slot) if html => escape_into(&mut out, values.get(*slot)),
                Chunk::Slot(slot) => out.push_str(values.get(*slot)),
            }
        }
        out
    }
}

fn escape_into(out: &mut String, s: &str) {
    let _ = maud::Escaper::new(out).write_str(s);
}

/// The per-recipient values.
struct Values<'a> {
    unsubscribe_url: String,
    email: &'a str,
    name: Option<String>,
}

impl Values<'_> {
    fn get(&self, slot: Slot) -> &str {
        match slot {
            Slot::UnsubscribeUrl => &self.unsubscribe_url,
            Slot::Email => self.email,
            Slot::Name => self.name.as_deref().unwrap_or(self.email),
        }
    }
}

/// A piece of the encoded message.
#[derive(Clone, Debug)]
enum Piece {
    /// Bytes of [`Prepared::fixed`].
    Fixed(std::ops::Range<usize>),
    /// A header line made per recipient.
    Header(HeaderSlot),
    /// A value in a quoted-printable part, HTML-escaped in the HTML part.
    Value { slot: Slot, html: bool },
    /// The end of a base64 part from its first per-recipient value on, encoded per recipient.
    Tail { html: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HeaderSlot {
    To,
    Date,
    MessageId,
    ListUnsubscribe,
}

/// An issue's email, rendered once; [`Prepared::message`] makes each recipient's copy.
#[derive(Clone, Debug)]
pub struct Prepared {
    fixed: Vec<u8>,
    pieces: Vec<Piece>,
    html: Pattern,
    text: Pattern,
    from: Mailbox,
    subject: String,
    date: SystemTime,
    issue_id: String,
    list_id: String,
    unsubscribe_mailto: String,
    /// The unsubscribe URL before and after `{token}`.
    unsubscribe: (String, String),
    secret: Secret,
    dkim: Option<Dkim>,
    html_part_bytes: usize,
    /// The ends of the text and HTML parts where they are base64: see [`Tail`].
    text_tail: Option<Tail>,
    html_tail: Option<Tail>,
}

/// The end of a base64 part: base64 cannot be cut at any byte, so the part is encoded up to a
/// multiple of 3 bytes before its first per-recipient value, and the rest (a few hundred bytes
/// of footer) is encoded per recipient.
#[derive(Clone, Debug)]
struct Tail {
    /// The 0 to 2 bytes before the first value that did not fill a group of 3.
    carry: Vec<u8>,
    /// The part from its first value on.
    rest: Pattern,
}

/// A part's body as the message carries it.
struct EncodedPart {
    bytes: Vec<u8>,
    encoding: ContentTransferEncoding,
    tail: Option<Tail>,
    /// The part's size on the wire, with stand-ins as long as typical values.
    size: usize,
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
        let summary = crate::publish::summary(issue);
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
        let html = Pattern::parse(&inlined);

        let language = &config.language;
        let body = markdown::to_text_in(&issue.body, place, TEXT_WIDTH, 1, language);
        let footer =
            markdown::to_text_in(&footer, place, TEXT_WIDTH, body.next_reference, language);
        let text = Pattern::parse(&plain_text(config, issue, &body.text, &footer.text));

        let (before, after) = split_unsubscribe_url(&config.email.unsubscribe_url)?;
        let subject = one_line(issue.subject());
        let date = SystemTime::from(issue.date);
        let from = Mailbox::new(
            config.email.from.name.as_deref().map(one_line),
            config.email.from.email.clone(),
        );

        // The message with stand-ins, formatted by lettre; then cut into pieces.
        let text_part = encode_part(&text, false);
        let html_part = encode_part(&html, true);
        let html_part_bytes = html_part.size;
        let boundary = format!("=_{}", &hex(&Sha256::digest(issue.id.as_bytes()))[..40]);
        let placeholder: Address = "recipient@gazette.invalid".parse()?;
        let mut builder = with_from(Message::builder(), &from);
        if let Some(reply_to) = &config.email.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        let message = builder
            .to(Mailbox::new(None, placeholder))
            .subject(subject.clone())
            .date(date)
            .message_id(Some("<placeholder@gazette.invalid>".to_string()))
            .header(ListId(format!("<{}>", config.email.list_id)))
            .header(ListUnsubscribe(String::new()))
            .header(ListUnsubscribePost)
            .multipart(
                MultiPart::alternative()
                    .boundary(boundary)
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

        Ok(Prepared {
            fixed,
            pieces,
            html,
            text,
            from,
            subject,
            date,
            issue_id: issue.id.clone(),
            list_id: config.email.list_id.clone(),
            unsubscribe_mailto: config.email.unsubscribe_mailto.clone(),
            unsubscribe: (before, after),
            secret: secret.clone(),
            dkim: dkim.cloned(),
            html_part_bytes,
            text_tail: text_part.tail,
            html_tail: html_part.tail,
        })
    }

    /// The size of the HTML part as sent (quoted-printable or base64), with stand-ins of 72
    /// bytes for the per-recipient values.
    pub fn html_part_bytes(&self) -> usize {
        self.html_part_bytes
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
        self.build(to, false, self.date)
    }

    /// The message as sent: its `Date` is `date`, the moment it is handed to SMTP (RFC 3339,
    /// as the ledger keeps it), so mail clients file it by when it arrived.
    pub fn message_at(&self, to: &Recipient<'_>, date: &str) -> anyhow::Result<Outgoing> {
        let date = chrono::DateTime::parse_from_rfc3339(date)
            .with_context(|| format!("the ledger's date `{date}` is not RFC 3339"))?;
        self.build(to, false, SystemTime::from(date))
    }

    /// A test copy (`send --to`): the same message under a Message-ID of its own, so that a
    /// receiver that drops repeated Message-IDs never drops the real issue sent later. Dated
    /// now, as it is sent now.
    pub fn test_message(&self, to: &Recipient<'_>) -> anyhow::Result<Outgoing> {
        self.build(to, true, SystemTime::now())
    }

    fn build(&self, to: &Recipient<'_>, test: bool, date: SystemTime) -> anyhow::Result<Outgoing> {
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
        let mut to_line = header_line(header::To::from(Mailboxes::from(mailbox.clone())));
        if to_line.split('\n').any(|l| l.len() > 998) {
            // A name no header line can hold: the address alone.
            mailbox = Mailbox::new(None, address.clone());
            to_line = header_line(header::To::from(Mailboxes::from(mailbox.clone())));
        }
        let id_line = header_line(header::MessageId::from(format!("<{message_id}>")));
        let date_line = header_line(header::Date::new(date));
        let unsubscribe = self.list_unsubscribe(&values.unsubscribe_url);
        let unsubscribe_line = header_line(unsubscribe.clone());

        let mut bytes = Vec::with_capacity(self.fixed.len() + 1024);
        for piece in &self.pieces {
            match piece {
                Piece::Fixed(range) => bytes.extend_from_slice(&self.fixed[range.clone()]),
                Piece::Header(HeaderSlot::To) => bytes.extend_from_slice(to_line.as_bytes()),
                Piece::Header(HeaderSlot::Date) => bytes.extend_from_slice(date_line.as_bytes()),
                Piece::Header(HeaderSlot::MessageId) => bytes.extend_from_slice(id_line.as_bytes()),
                Piece::Header(HeaderSlot::ListUnsubscribe) => {
                    bytes.extend_from_slice(unsubscribe_line.as_bytes())
                }
                Piece::Value { slot, html } => {
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
                        &self.html_tail
                    } else {
                        &self.text_tail
                    };
                    let tail = tail.as_ref().context("a base64 part lost its end")?;
                    let mut raw = tail.carry.clone();
                    raw.extend_from_slice(tail.rest.fill(&values, *html).as_bytes());
                    bytes.extend_from_slice(&base64_lines(&raw, false));
                }
            }
        }

        if let Some(dkim) = &self.dkim {
            let body_start = bytes
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|i| i + 4)
                .context("the message has no body")?;
            let mut signed = with_from(Message::builder(), &self.from)
                .to(mailbox)
                .subject(self.subject.clone())
                .date(date)
                .message_id(Some(format!("<{message_id}>")))
                .header(ListId(format!("<{}>", self.list_id)))
                .header(unsubscribe)
                .header(ListUnsubscribePost)
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
        })
    }

    fn list_unsubscribe(&self, url: &str) -> ListUnsubscribe {
        ListUnsubscribe(format!("<{url}>, <{}>", self.unsubscribe_mailto))
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

/// A formatted header line (with folding), as lettre writes it.
fn header_line(h: impl Header) -> String {
    let mut headers = Headers::new();
    headers.set(h);
    headers.to_string()
}

fn quoted_printable(s: String) -> Vec<u8> {
    // lettre makes line endings CRLF by inserting each `\r` in place, which is quadratic in
    // the part's size (a 4 MB issue took 13 s); done here in one pass, lettre finds none left.
    let s = crlf_line_endings(s);
    Body::new_with_encoding(s, ContentTransferEncoding::QuotedPrintable)
        .map(Body::into_vec)
        .unwrap_or_default()
}

/// `s` with every `\n` not already after a `\r` made `\r\n`, in one pass.
fn crlf_line_endings(s: String) -> String {
    let lone = s
        .bytes()
        .zip(std::iter::once(0).chain(s.bytes()))
        .filter(|&(b, before)| b == b'\n' && before != b'\r')
        .count();
    if lone == 0 {
        return s;
    }
    let mut out = String::with_capacity(s.len() + lone);
    let mut after_cr = false;
    for c in s.chars() {
        if c == '\n' && !after_cr {
            out.push('\r');
        }
        after_cr = c == '\r';
        out.push(c);
    }
    out
}

/// Marks a per-recipient value in the encoded parts until [`cut`] finds it: `=` followed by a
/// letter never occurs in quoted-printable, nor in base64 (where `=` only pads the end).
fn value_mark(slot: Slot, html: bool) -> String {
    format!("=Z{}{}Z=", slot as u8, u8::from(html))
}

/// Marks where a base64 part's [`Tail`] goes.
fn tail_mark(html: bool) -> String {
    format!("=ZT{}Z=", u8::from(html))
}

/// Base64 in lines of 76 characters, each but the last ending in CRLF (the last too if
/// `final_break`).
fn base64_lines(raw: &[u8], final_break: bool) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
    let mut out = Vec::with_capacity(encoded.len() + encoded.len() / 38 + 2);
    for (i, line) in encoded.as_bytes().chunks(76).enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(line);
    }
    if final_break && !out.is_empty() {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The length of [`base64_lines`] for `n` bytes.
fn base64_len(n: usize) -> usize {
    let chars = n.div_ceil(3) * 4;
    chars + chars.div_ceil(76).saturating_sub(1) * 2
}

/// A part in whichever of quoted-printable and base64 is shorter for it (quoted-printable on a
/// tie). Chinese text is about 3 times its size in quoted-printable and 1.35 times in base64;
/// English text and markup stay near 1.05 times in quoted-printable. The choice depends only
/// on the part as prepared, never on a recipient: every copy of an issue is encoded alike.
fn encode_part(pattern: &Pattern, html: bool) -> EncodedPart {
    let qp = encode_pattern(pattern, html);
    // Measured with the stand-ins (72 bytes each) in place of the values.
    let standing_in: usize = pattern
        .0
        .iter()
        .map(|c| match c {
            // Line breaks become CRLF, the canonical form of text (RFC 2045 6.8).
            Chunk::Fixed(s) => s.len() + s.matches('\n').count(),
            Chunk::Slot(_) => MARKERS[0].1.len(),
        })
        .sum();
    let b64_size = base64_len(standing_in);
    if qp.len() <= b64_size {
        return EncodedPart {
            size: qp.len(),
            bytes: qp,
            encoding: ContentTransferEncoding::QuotedPrintable,
            tail: None,
        };
    }
    let first_slot = pattern
        .0
        .iter()
        .position(|c| matches!(c, Chunk::Slot(_)))
        .unwrap_or(pattern.0.len());
    let crlf = |s: &str| s.replace("\r\n", "\n").replace('\n', "\r\n");
    let mut head = Vec::new();
    for chunk in &pattern.0[..first_slot] {
        if let Chunk::Fixed(s) = chunk {
            head.extend_from_slice(crlf(s).as_bytes());
        }
    }
    let aligned = head.len() - head.len() % 3;
    let carry = head.split_off(aligned);
    let mut bytes = base64_lines(&head, true);
    bytes.extend_from_slice(tail_mark(html).as_bytes());
    EncodedPart {
        bytes,
        encoding: ContentTransferEncoding::Base64,
        tail: Some(Tail {
            carry,
            rest: Pattern(
                pattern.0[first_slot..]
                    .iter()
                    .map(|c| match c {
                        Chunk::Fixed(s) => Chunk::Fixed(crlf(s)),
                        Chunk::Slot(slot) => Chunk::Slot(*slot),
                    })
                    .collect(),
            ),
        }),
        size: b64_size,
    }
}

/// A part encoded as quoted-printable in pieces: each fixed piece on its own, a soft line break
/// after it, and a mark where a value goes.
fn encode_pattern(pattern: &Pattern, html: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in &pattern.0 {
        match chunk {
            Chunk::Fixed(s) => {
                out.extend_from_slice(&quoted_printable(s.clone()));
            }
            Chunk::Slot(slot) => {
                if !out.is_empty() && !out.ends_with(b"\r\n") {
                    out.extend_from_slice(b"=\r\n");
                }
                out.extend_from_slice(value_mark(*slot, html).as_bytes());
            }
        }
    }
    out
}

/// Cuts the formatted stand-in message into fixed bytes and per-recipient pieces.
fn cut(formatted: &[u8]) -> anyhow::Result<(Vec<u8>, Vec<Piece>)> {
    let header_end = formatted
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 2)
        .context("lettre wrote no header section")?;
    let mut fixed = Vec::with_capacity(formatted.len());
    let mut pieces = Vec::new();
    let push_fixed = |fixed: &mut Vec<u8>, pieces: &mut Vec<Piece>, bytes: &[u8]| {
        if bytes.is_empty() {
            return;
        }
        let start = fixed.len();
        fixed.extend_from_slice(bytes);
        match pieces.last_mut() {
            Some(Piece::Fixed(r)) if r.end == start => r.end = fixed.len(),
            _ => pieces.push(Piece::Fixed(start..fixed.len())),
        }
    };
    // The header section, field by field (a field continues on lines that start with space).
    let mut at = 0;
    while at < header_end {
        let mut end = at;
        loop {
            let nl = formatted[end..header_end]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(header_end, |i| end + i + 1);
            end = nl;
            if end >= header_end || !matches!(formatted[end], b' ' | b'\t') {
                break;
            }
        }
        let field = &formatted[at..end];
        let slot = if field.starts_with(b"To:") {
            Some(HeaderSlot::To)
        } else if field.starts_with(b"Date:") {
            Some(HeaderSlot::Date)
        } else if field.starts_with(b"Message-ID:") {
            Some(HeaderSlot::MessageId)
        } else if field.starts_with(b"List-Unsubscribe:") {
            Some(HeaderSlot::ListUnsubscribe)
        } else {
            None
        };
        match slot {
            Some(s) => pieces.push(Piece::Header(s)),
            None => push_fixed(&mut fixed, &mut pieces, field),
        }
        at = end;
    }
    // The body, with its value marks (the encoded message is ASCII).
    let mut rest = std::str::from_utf8(&formatted[header_end..])
        .context("lettre wrote a message that is not ASCII")?;
    'marks: while !rest.is_empty() {
        let Some(i) = rest.find("=Z") else {
            break;
        };
        for slot in [Slot::UnsubscribeUrl, Slot::Email, Slot::Name] {
            for html in [false, true] {
                let mark = value_mark(slot, html);
                if rest[i..].starts_with(&mark) {
                    push_fixed(&mut fixed, &mut pieces, &rest.as_bytes()[..i]);
                    pieces.push(Piece::Value { slot, html });
                    rest = &rest[i + mark.len()..];
                    continue 'marks;
                }
            }
        }
        for html in [false, true] {
            let mark = tail_mark(html);
            if rest[i..].starts_with(&mark) {
                push_fixed(&mut fixed, &mut pieces, &rest.as_bytes()[..i]);
                pieces.push(Piece::Tail { html });
                rest = &rest[i + mark.len()..];
                continue 'marks;
            }
        }
        bail!("an unknown mark in the encoded message");
    }
    push_fixed(&mut fixed, &mut pieces, rest.as_bytes());
    Ok((fixed, pieces))
}

/// The unsubscribe URL template around `{token}`, normalised to ASCII.
fn split_unsubscribe_url(template: &str) -> anyhow::Result<(String, String)> {
    const TOKEN: &str = "GAZETTETOKENGAZETTE";
    let url = url::Url::parse(&template.replace("{token}", TOKEN))
        .with_context(|| format!("email.unsubscribe_url `{template}` is not a URL"))?;
    let url = url.as_str();
    match url.split_once(TOKEN) {
        Some((a, b)) => Ok((a.to_string(), b.to_string())),
        None => bail!("email.unsubscribe_url `{template}` has no {{token}}"),
    }
}

/// The footer template with the issue's values filled in and the per-recipient ones marked.
/// Every email carries a visible unsubscribe link and the postal address: a template without
/// `{unsubscribe_url}` or `{postal_address}` gets them added at its end (`check` warns).
fn footer_markdown(template: &str, config: &Config, title: &str, page_url: &str) -> String {
    let marker = |slot: Slot| {
        MARKERS
            .iter()
            .find(|(s, _)| *s == slot)
            .map_or("", |(_, m)| *m)
    };
    let words = crate::i18n::strings(&config.language);
    let template = words.footer(template);
    let mut template = template.trim_end().to_string();
    for (placeholder, line) in FOOTER_REQUIRED {
        if !template.contains(placeholder) {
            template.push_str("\n\n");
            // The link's words in the newsletter's language.
            template
                .push_str(&line.replace("[Unsubscribe]", &format!("[{}]", words.unsubscribe())));
        }
    }
    template.push('\n');
    template
        .replace("{newsletter}", &markdown_escape(&config.title))
        .replace("{title}", &markdown_escape(title))
        .replace("{postal_address}", &markdown_escape(&config.postal_address))
        .replace("{web_url}", page_url)
        .replace("{unsubscribe_url}", marker(Slot::UnsubscribeUrl))
        .replace("{email}", marker(Slot::Email))
        .replace("{name}", marker(Slot::Name))
}

/// What every footer must hold, and the line added when the template lacks it.
pub const FOOTER_REQUIRED: [(&str, &str); 2] = [
    ("{unsubscribe_url}", "[Unsubscribe]({unsubscribe_url})"),
    ("{postal_address}", "{postal_address}"),
];

/// The frame with each stand-in replaced, in one pass: an issue's text that happens to hold a
/// stand-in is never read as one.
fn fill_frame(frame: &str, values: &[(&str, &str)]) -> String {
    let mut out =
        String::with_capacity(frame.len() + values.iter().map(|v| v.1.len()).sum::<usize>());
    let mut rest = frame;
    while let Some((at, marker, value)) = values
        .iter()
        .filter_map(|(m, v)| rest.find(m).map(|at| (at, *m, *v)))
        .min_by_key(|(at, _, _)| *at)
    {
        out.push_str(&rest[..at]);
        out.push_str(value);
        rest = &rest[at + marker.len()..];
    }
    out.push_str(rest);
    out
}

/// Text that Markdown shows as written: ASCII punctuation behind a backslash.
fn markdown_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `No. 3 · 2023-03-31`, or `第 3 期 · 2023年3月31日`, in the newsletter's language.
fn meta_line(config: &Config, issue: &Issue) -> String {
    let words = crate::i18n::strings(&config.language);
    let date = words.date(issue.date);
    match issue.number {
        Some(n) => format!("{} · {date}", words.issue_number(n)),
        None => date,
    }
}

/// The HTML document before CSS inlining. The issue's and the footer's rendered Markdown are
/// the only markup that enters unescaped (and the editor's CSS, inside `<style>`).
fn html_document(
    config: &Config,
    title: &str,
    meta: &str,
    summary: &str,
    fragment: &str,
    footer: &str,
    css: &str,
) -> Markup {
    let css = css.replace("</", "<\\/");
    html! {
        (DOCTYPE)
        html lang=(config.language) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="x-apple-disable-message-reformatting";
                meta name="color-scheme" content="light dark";
                meta name="supported-color-schemes" content="light dark";
                title { (title) }
                style { (PreEscaped(css)) }
            }
            body.body {
                // The preview line: hidden by `display: none` (and `mso-hide` for Outlook), no
                // filler characters and no text coloured like its background, which spam
                // filters read as hidden text (HTML_FONT_LOW_CONTRAST, HTML_OBFUSCATE_*).
                div.preheader { (summary) }
                table.wrapper role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" {
                    tr {
                        td.outer align="center" {
                            table.container role="presentation" width="600" cellpadding="0" cellspacing="0" border="0" {
                                tr {
                                    td.header {
                                        p.newsletter { (config.title) }
                                        h1.title { (title) }
                                        p.meta { (meta) }
                                    }
                                }
                                tr { td.content { (PreEscaped(fragment)) } }
                                tr { td.footer { (PreEscaped(footer)) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The text part: a header, the body, its links, then the footer and its links.
fn plain_text(config: &Config, issue: &Issue, body: &str, footer: &str) -> String {
    let mut out = String::new();
    let head = format!("{} · {}", config.title, meta_line(config, issue));
    for line in markdown::wrap(&head, TEXT_WIDTH, "", "") {
        out.push_str(&line);
        out.push('\n');
    }
    out.push('\n');
    let title = markdown::wrap(&one_line(&issue.title), TEXT_WIDTH, "", "");
    let widest = title
        .iter()
        .map(|l| markdown::display_width(l))
        .max()
        .unwrap_or(0);
    for line in &title {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&"=".repeat(widest.clamp(3, TEXT_WIDTH)));
    out.push_str("\n\n");
    out.push_str(body);
    out.push('\n');
    out.push_str(&"-".repeat(TEXT_WIDTH));
    out.push('\n');
    out.push_str(footer);
    out
}

/// `List-Id`.
#[derive(Clone, Debug)]
struct ListId(String);

/// `List-Unsubscribe`.
#[derive(Clone, Debug)]
struct ListUnsubscribe(String);

/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
#[derive(Clone, Debug)]
struct ListUnsubscribePost;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Header for ListId {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Id")
    }
    fn parse(s: &str) -> Result<Self, BoxError> {
        Ok(ListId(s.to_string()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }
    fn parse(s: &str) -> Result<Self, BoxError> {
        Ok(ListUnsubscribe(s.to_string()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }
    fn parse(_: &str) -> Result<Self, BoxError> {
        Ok(ListUnsubscribePost)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".to_string())
    }
}

/// `From`, written by lettre, except for a display name such as `my.news` that lettre writes
/// bare (RFC 5322's obsolete phrase, which parsers flag): that one is quoted.
fn with_from(
    builder: lettre::message::MessageBuilder,
    from: &Mailbox,
) -> lettre::message::MessageBuilder {
    match from.name.as_deref() {
        Some(name)
            if name.contains('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) =>
        {
            builder.header(QuotedFrom(format!("\"{name}\" <{}>", from.email)))
        }
        _ => builder.from(from.clone()),
    }
}

/// A `From` value already written (see [`with_from`]).
#[derive(Clone, Debug)]
struct QuotedFrom(String);

impl Header for QuotedFrom {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("From")
    }
    fn parse(s: &str) -> Result<Self, BoxError> {
        Ok(QuotedFrom(s.to_string()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
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
