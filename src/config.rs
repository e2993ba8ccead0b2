//! `gazette.toml` -> [`Config`], strict and validated once, so the rest of the program can trust
//! it. Parsing is pure ([`Config::parse`]); [`Config::from_dir`] only reads. Never touches
//! secrets: passwords and keys come from the environment or git-ignored files.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use lettre::message::Mailbox;
use serde::Deserialize;
use toml::Spanned;
use url::Url;

use crate::diagnostic::{Diagnostic, did_you_mean, toml_error};
use crate::files;
use crate::text::one_line;

/// The settings file's name inside a newsletter directory.
pub const FILE_NAME: &str = crate::layout::CONFIG_FILE;

/// A person named in feeds and on pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub email: Option<String>,
}

/// The resolved settings of one newsletter.
#[derive(Clone, Debug)]
pub struct Config {
    pub title: String,
    pub description: String,
    /// Absolute http(s) URL where `feeds/` is served; always ends with `/`.
    pub base_url: Url,
    /// BCP 47 language tag, e.g. `zh-CN`.
    pub language: String,
    pub timezone: Tz,
    /// The authority part of derived `tag:` ids, e.g. `digest.example.org`.
    pub id_authority: String,
    pub author: Person,
    pub postal_address: String,
    /// Entries in each subscription feed.
    pub feed_limit: usize,
    pub email: EmailConfig,
    pub smtp: SmtpConfig,
    pub dkim: Option<DkimConfig>,
    /// `[serve] listen`: the address `gazette serve` binds (default 127.0.0.1:8080).
    pub serve_listen: String,
    /// The rest of `[serve]`.
    pub serve: ServeConfig,
    pub inbound: InboundConfig,
}

/// `[serve]` beyond `listen`: sign-up settings of `gazette serve`.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Whether gazette.toml has a `[serve]` table: published pages then carry a subscribe form.
    pub configured: bool,
    /// A header set by the reverse proxy in front (e.g. `X-Forwarded-For`) whose last address
    /// is the client's; None: the peer address is the client's.
    pub client_ip_header: Option<String>,
    /// Sign-ups (POST subscribe) allowed per client address per hour; more answer 429.
    pub signups_per_hour: u32,
}

#[derive(Clone, Debug)]
pub struct EmailConfig {
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    /// The List-Id value without angle brackets, e.g. `digest.example.org`.
    pub list_id: String,
    /// `mailto:` URL for List-Unsubscribe.
    pub unsubscribe_mailto: String,
    /// https URL template for List-Unsubscribe and the footer link; `{token}` is replaced.
    pub unsubscribe_url: String,
    /// The recipient of the sample message that `publish` and `preview` write.
    pub sample_recipient: Mailbox,
    /// `bounce_address`: each message of `send` leaves with MAIL FROM `local+TOKEN@domain`
    /// (VERP), so whatever comes back names its recipient. None: the `From` address.
    pub bounce_address: Option<lettre::Address>,
}

/// `[inbound]`: how `gazette inbound` acts on what it reads.
#[derive(Clone, Debug)]
pub struct InboundConfig {
    /// Temporary failures on this many different issues, with no delivery in between, mark
    /// a subscriber `bounced`.
    pub soft_bounce_limit: u32,
}

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tls {
    /// Plain connection upgraded with STARTTLS (required).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only sensible for a relay on this machine.
    None,
}

/// How far a ledger row has got before its message's DATA is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LedgerSync {
    /// On the disk (fsync): the duplicate bound holds through a power cut or a kernel crash.
    Full,
    /// Handed to the operating system: the bound holds through any crash of gazette itself
    /// (kill -9, Ctrl-C, out of memory), not through a power cut. Faster where syncing the
    /// disk is slow.
    Normal,
}

#[derive(Clone, Debug)]
pub struct SmtpConfig {
    pub url: String,
    pub tls: Tls,
    pub username: Option<String>,
    pub concurrency: usize,
    /// Messages per second over all connections; 0 = unlimited.
    pub rate: f64,
    pub timeout: Duration,
    pub ledger_sync: LedgerSync,
    /// The first pause before retrying a temporary failure; it doubles with each attempt.
    pub backoff: Duration,
    /// Send parts as 8bit when the relay announces 8BITMIME (RFC 6152). When unset: yes
    /// without `[dkim]`, no with it (RFC 6376 5.3: a relay that converts 8bit mail for a
    /// 7-bit hop would break the signature).
    pub eight_bit: bool,
}

#[derive(Clone, Debug)]
pub struct DkimConfig {
    pub domain: String,
    pub selector: String,
    /// Resolved against the newsletter directory.
    pub private_key_file: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    newsletter: RawNewsletter,
    #[serde(default)]
    feeds: RawFeeds,
    email: RawEmail,
    #[serde(default)]
    smtp: RawSmtp,
    dkim: Option<RawDkim>,
    serve: Option<RawServe>,
    #[serde(default)]
    inbound: RawInbound,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInbound {
    soft_bounce_limit: Option<Spanned<i64>>,
}

/// `[serve]`: where `gazette serve` listens.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServe {
    #[serde(default = "default_listen")]
    listen: String,
    client_ip_header: Option<Spanned<String>>,
    signups_per_hour: Option<Spanned<i64>>,
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNewsletter {
    title: Spanned<String>,
    #[serde(default)]
    description: String,
    base_url: Spanned<String>,
    language: Spanned<String>,
    timezone: Spanned<String>,
    id_authority: Spanned<String>,
    author: RawPerson,
    #[serde(default)]
    postal_address: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPerson {
    name: String,
    email: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeeds {
    limit: Spanned<i64>,
}

impl Default for RawFeeds {
    fn default() -> Self {
        RawFeeds {
            limit: Spanned::new(0..0, 20),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    from: Spanned<String>,
    reply_to: Option<Spanned<String>>,
    list_id: Option<Spanned<String>>,
    unsubscribe_mailto: Option<Spanned<String>>,
    unsubscribe_url: Option<Spanned<String>>,
    sample_recipient: Option<Spanned<String>>,
    bounce_address: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    #[serde(default = "default_smtp_url")]
    url: Spanned<String>,
    #[serde(default = "default_tls")]
    tls: Tls,
    username: Option<String>,
    #[serde(default = "default_concurrency")]
    concurrency: Spanned<i64>,
    #[serde(default = "default_rate")]
    rate: Spanned<f64>,
    #[serde(default = "default_timeout")]
    timeout_seconds: Spanned<i64>,
    #[serde(default = "default_ledger_sync")]
    ledger_sync: LedgerSync,
    eight_bit: Option<bool>,
}

impl Default for RawSmtp {
    fn default() -> Self {
        RawSmtp {
            url: default_smtp_url(),
            tls: default_tls(),
            username: None,
            concurrency: default_concurrency(),
            rate: default_rate(),
            timeout_seconds: default_timeout(),
            ledger_sync: default_ledger_sync(),
            eight_bit: None,
        }
    }
}

fn default_smtp_url() -> Spanned<String> {
    Spanned::new(0..0, "smtp://127.0.0.1:25".to_string())
}
fn default_tls() -> Tls {
    Tls::Starttls
}
fn default_ledger_sync() -> LedgerSync {
    LedgerSync::Full
}
/// The end of a URL's `scheme://user:password@` part: the byte index just after its last
/// `@` before the host, if it has one. Works on text that does not parse as a URL too.
fn userinfo_end(text: &str) -> Option<(usize, usize)> {
    let start = text.find("://")? + 3;
    let rest = &text[start..];
    let authority = &rest[..rest
        .find(['/', '?', '#', '"', '\'', ' '])
        .unwrap_or(rest.len())];
    authority.rfind('@').map(|at| (start, start + at + 1))
}

/// Whether an SMTP URL carries a user name or password (`smtp://user:pw@host`).
pub fn has_userinfo(url: &str) -> bool {
    userinfo_end(url).is_some()
}

/// A URL (or a line holding one) with its user name and password left out, for messages.
pub fn without_userinfo(text: &str) -> String {
    match userinfo_end(text) {
        Some((start, end)) => format!("{}{}", &text[..start], &text[end..]),
        None => text.to_string(),
    }
}

/// The slowest `smtp.rate` (messages per second) other than 0: one message every 1000 s.
pub const MIN_RATE: f64 = 0.001;

fn default_rate() -> Spanned<f64> {
    Spanned::new(0..0, 0.0)
}
fn default_concurrency() -> Spanned<i64> {
    Spanned::new(0..0, 4)
}
fn default_timeout() -> Spanned<i64> {
    Spanned::new(0..0, 30)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDkim {
    domain: String,
    selector: String,
    private_key_file: String,
}

impl Config {
    /// Reads and validates `DIR/gazette.toml`.
    pub fn from_dir(dir: &Path) -> Result<Config, Vec<Diagnostic>> {
        let path = dir.join(FILE_NAME);
        if !path.exists() {
            return Err(vec![
                Diagnostic::error(
                    &path,
                    "no gazette.toml here: this directory is not a newsletter",
                )
                .with_hint("run `gazette init` to make one, or name one with `gazette -C DIR ...`"),
            ]);
        }
        let text = files::read_text(&path).map_err(|d| vec![d])?;
        Config::parse(&path, &text, dir)
    }

    /// Parses and validates the text of a settings file; `dir` resolves relative paths.
    pub fn parse(path: &Path, text: &str, dir: &Path) -> Result<Config, Vec<Diagnostic>> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| vec![toml_error(path, text, 0..text.len(), &e)])?;
        let mut problems = Vec::new();
        let mut bad = |span: Range<usize>, message: String, hint: &str| {
            let mut d = Diagnostic::error(path, message).at_offset(text, span.start);
            if !hint.is_empty() {
                d = d.with_hint(hint);
            }
            problems.push(d);
        };

        let n = raw.newsletter;
        if one_line(n.title.get_ref()).is_empty() {
            bad(n.title.span(), "the newsletter's title is empty".into(), "");
        }
        let base_url = match Url::parse(n.base_url.get_ref()) {
            // A password would be published in every feed, a query or fragment would be
            // glued to every link: none belongs in the address of a directory.
            Ok(u)
                if !u.username().is_empty()
                    || u.password().is_some()
                    || u.query().is_some()
                    || u.fragment().is_some() =>
            {
                bad(
                    n.base_url.span(),
                    format!(
                        "base_url `{}` has a user name, password, query or fragment, which every published link would carry",
                        n.base_url.get_ref()
                    ),
                    "write only the scheme, host and path where feeds/ is served, e.g. \"https://example.org/digest/\"",
                );
                None
            }
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                let mut u = u;
                if !u.path().ends_with('/') {
                    let p = format!("{}/", u.path());
                    u.set_path(&p);
                }
                Some(u)
            }
            Ok(_) => {
                bad(
                    n.base_url.span(),
                    format!("base_url `{}` is not an http(s) URL", n.base_url.get_ref()),
                    "write the absolute URL where feeds/ is served, e.g. \"https://example.org/digest/\"",
                );
                None
            }
            Err(e) => {
                bad(
                    n.base_url.span(),
                    format!("base_url `{}` is not a URL: {e}", n.base_url.get_ref()),
                    "write the absolute URL where feeds/ is served, e.g. \"https://example.org/digest/\"",
                );
                None
            }
        };
        if let Some(email) = &n.author.email
            && email.get_ref().trim().parse::<lettre::Address>().is_err()
        {
            bad(
                email.span(),
                format!(
                    "newsletter.author.email `{}` is not an email address",
                    email.get_ref()
                ),
                "write the bare address, e.g. email = \"editors@example.org\"; it is published in the feeds",
            );
        }
        if !is_language_tag(n.language.get_ref()) {
            bad(
                n.language.span(),
                format!("`{}` is not a language tag", n.language.get_ref()),
                "use a BCP 47 tag such as \"zh-CN\" or \"en\"",
            );
        }
        let timezone = match n.timezone.get_ref().parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                let hint = did_you_mean(
                    n.timezone.get_ref(),
                    chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()),
                )
                .unwrap_or_else(|| {
                    "use an IANA time zone name such as \"Asia/Shanghai\" or \"UTC\"".into()
                });
                bad(
                    n.timezone.span(),
                    format!("unknown time zone `{}`", n.timezone.get_ref()),
                    &hint,
                );
                None
            }
        };
        let authority = n.id_authority.get_ref().trim();
        if authority.is_empty()
            || !authority
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '@' | '_'))
        {
            bad(
                n.id_authority.span(),
                format!("id_authority `{authority}` is not a domain name or email address"),
                "write a domain you own, e.g. \"digest.example.org\"; it goes into every issue's permanent id",
            );
        }

        let limit = *raw.feeds.limit.get_ref();
        if !(1..=10_000).contains(&limit) {
            bad(
                raw.feeds.limit.span(),
                format!("feeds.limit must be between 1 and 10000, not {limit}"),
                "",
            );
        }

        let e = raw.email;
        let mut mailbox =
            |field: &Spanned<String>, what: &str| match field.get_ref().parse::<Mailbox>() {
                Ok(m) => Some(m),
                Err(err) => {
                    bad(
                        field.span(),
                        format!(
                            "{what} `{}` is not an email address: {err}",
                            field.get_ref()
                        ),
                        "write `Name <address@example.org>` or `address@example.org`",
                    );
                    None
                }
            };
        let from = mailbox(&e.from, "email.from");
        let reply_to = e
            .reply_to
            .as_ref()
            .and_then(|r| mailbox(r, "email.reply_to"));
        let sample = e
            .sample_recipient
            .as_ref()
            .and_then(|r| mailbox(r, "email.sample_recipient"));
        let domain = from
            .as_ref()
            .map(|m| m.email.domain().to_string())
            .unwrap_or_default();
        let list_id = e
            .list_id
            .as_ref()
            .map(|s| s.get_ref().clone())
            .unwrap_or_else(|| domain.clone());
        if !list_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            let span = e.list_id.as_ref().map_or(0..0, |s| s.span());
            bad(
                span,
                format!(
                    "email.list_id `{list_id}` may hold only letters, digits, `.`, `-` and `_`"
                ),
                "e.g. \"digest.example.org\"",
            );
        }
        let unsubscribe_mailto = match &e.unsubscribe_mailto {
            Some(m)
                if m.get_ref()
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>')) =>
            {
                // It goes into the List-Unsubscribe header between `<` and `>`.
                bad(
                    m.span(),
                    "email.unsubscribe_mailto holds a space, a line break, `<` or `>`, which would break the List-Unsubscribe header".to_string(),
                    "percent-encode them: a space is %20, e.g. \"mailto:unsubscribe@example.org?subject=unsubscribe%20me\"",
                );
                String::new()
            }
            Some(m) if m.get_ref().starts_with("mailto:") => m.get_ref().clone(),
            Some(m) => {
                bad(
                    m.span(),
                    format!(
                        "email.unsubscribe_mailto `{}` must start with `mailto:`",
                        m.get_ref()
                    ),
                    "e.g. \"mailto:unsubscribe@example.org?subject=unsubscribe\"",
                );
                String::new()
            }
            None => format!(
                "mailto:{}?subject=unsubscribe",
                from.as_ref()
                    .map(|m| m.email.to_string())
                    .unwrap_or_default()
            ),
        };
        let unsubscribe_url = match &e.unsubscribe_url {
            Some(u) => {
                let ok = u.get_ref().contains("{token}")
                    && Url::parse(&u.get_ref().replace("{token}", "t"))
                        .is_ok_and(|p| p.scheme() == "https" || p.scheme() == "http");
                if !ok {
                    bad(
                        u.span(),
                        format!(
                            "email.unsubscribe_url `{}` must be an http(s) URL containing `{{token}}`",
                            u.get_ref()
                        ),
                        "e.g. \"https://example.org/unsubscribe?token={token}\"",
                    );
                }
                u.get_ref().clone()
            }
            None => base_url
                .as_ref()
                .map(|b| format!("{b}unsubscribe/?token={{token}}"))
                .unwrap_or_default(),
        };

        let bounce_address = e
            .bounce_address
            .as_ref()
            .and_then(|b| match bounce_address(b.get_ref()) {
                Ok(a) => Some(a),
                Err(why) => {
                    bad(
                        b.span(),
                        format!("email.bounce_address `{}` {why}", b.get_ref()),
                        "write a plain address whose mailbox also receives `local+anything@domain`, e.g. \"bounces@example.org\"",
                    );
                    None
                }
            });
        let soft_bounce_limit = match &raw.inbound.soft_bounce_limit {
            None => 3,
            Some(n) if (1..=100).contains(n.get_ref()) => *n.get_ref() as u32,
            Some(n) => {
                bad(
                    n.span(),
                    format!(
                        "inbound.soft_bounce_limit must be between 1 and 100, not {}",
                        n.get_ref()
                    ),
                    "e.g. soft_bounce_limit = 3: temporary failures on three issues in a row",
                );
                3
            }
        };

        let s = raw.smtp;
        let concurrency = *s.concurrency.get_ref();
        if !(1..=256).contains(&concurrency) {
            bad(
                s.concurrency.span(),
                format!("smtp.concurrency must be between 1 and 256, not {concurrency}"),
                "",
            );
        }
        let rate = *s.rate.get_ref();
        if !(rate == 0.0 || (rate >= MIN_RATE && rate.is_finite())) {
            bad(
                s.rate.span(),
                format!(
                    "smtp.rate must be 0 (unlimited) or at least {MIN_RATE} messages per second, not {rate:?}"
                ),
                "e.g. rate = 10 for ten messages a second; rate = 0.01 for one every 100 seconds",
            );
        }
        let timeout = *s.timeout_seconds.get_ref();
        if !(1..=3600).contains(&timeout) {
            bad(
                s.timeout_seconds.span(),
                format!("smtp.timeout_seconds must be between 1 and 3600, not {timeout}"),
                "",
            );
        }
        let serve = serve_settings(raw.serve.as_ref(), &mut bad);
        if has_userinfo(s.url.get_ref()) {
            let mut d = Diagnostic::error(
                path,
                "smtp.url must not hold a user name or password (they would be ignored, and \
                 a password does not belong in a file)",
            )
            .at_offset(text, s.url.span().start)
            .with_hint(format!(
                "put the password in {}, the user in smtp.username, and write the URL as `{}`",
                PASSWORD_ENV,
                without_userinfo(s.url.get_ref())
            ));
            d.source_line = d.source_line.as_deref().map(without_userinfo);
            problems.push(d);
        } else if let Err(err) = Url::parse(s.url.get_ref())
            .map_err(|e| e.to_string())
            .and_then(|u| {
                if matches!(u.scheme(), "smtp" | "smtps") && u.host().is_some() {
                    Ok(())
                } else {
                    Err("expected smtp://host:port or smtps://host:port".to_string())
                }
            })
        {
            bad(
                s.url.span(),
                format!("smtp.url `{}` is not an SMTP URL: {err}", s.url.get_ref()),
                "e.g. \"smtp://relay.example.org:587\"",
            );
        }

        if !problems.is_empty() {
            return Err(problems);
        }
        let (Some(base_url), Some(timezone), Some(from)) = (base_url, timezone, from) else {
            unreachable!("every missing value above was reported as a problem");
        };
        let sample_recipient = sample.unwrap_or_else(|| {
            Mailbox::new(
                Some("Sample Reader".into()),
                format!("reader@{domain}")
                    .parse()
                    .unwrap_or_else(|_| from.email.clone()),
            )
        });
        Ok(Config {
            serve_listen: raw
                .serve
                .as_ref()
                .map_or_else(default_listen, |s| s.listen.clone()),
            serve,
            // Text that reaches feeds and email headers: one line, only characters XML allows.
            title: one_line(n.title.get_ref()),
            description: one_line(&n.description),
            base_url,
            language: n.language.into_inner(),
            timezone,
            id_authority: authority.to_string(),
            author: Person {
                name: one_line(&n.author.name),
                email: n.author.email.map(|e| one_line(e.get_ref())),
            },
            postal_address: one_line(&n.postal_address),
            feed_limit: limit as usize,
            email: EmailConfig {
                from,
                reply_to,
                list_id,
                unsubscribe_mailto,
                unsubscribe_url,
                sample_recipient,
                bounce_address,
            },
            inbound: InboundConfig { soft_bounce_limit },
            smtp: SmtpConfig {
                url: s.url.into_inner(),
                tls: s.tls,
                username: s.username,
                concurrency: concurrency as usize,
                rate,
                timeout: Duration::from_secs(timeout as u64),
                ledger_sync: s.ledger_sync,
                backoff: SMTP_BACKOFF,
                eight_bit: s.eight_bit.unwrap_or(raw.dkim.is_none()),
            },
            dkim: raw.dkim.map(|d| DkimConfig {
                domain: d.domain,
                selector: d.selector,
                private_key_file: dir.join(d.private_key_file),
            }),
        })
    }

    /// The web address of one issue's page.
    pub fn issue_url(&self, slug: &str) -> Url {
        self.base_url
            .join(&format!("{slug}/"))
            .expect("a slug is a valid relative URL path")
    }

    /// The web address of a file under `feeds/`.
    pub fn feed_url(&self, file: &str) -> Url {
        self.base_url
            .join(file)
            .expect("a file name is a valid relative URL path")
    }
}

fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let first = parts.next().unwrap_or("");
    (2..=3).contains(&first.len())
        && first.chars().all(|c| c.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// `email.bounce_address`: an ASCII address with room for `+TOKEN` in its local part.
fn bounce_address(text: &str) -> Result<lettre::Address, String> {
    let a: lettre::Address = text
        .trim()
        .parse()
        .map_err(|e| format!("is not an email address: {e}"))?;
    if !AsRef::<str>::as_ref(&a).is_ascii() {
        return Err("must be ASCII (it is the SMTP envelope sender)".into());
    }
    if a.user().contains('+') {
        return Err("must not hold `+`: gazette adds `+TOKEN` to it".into());
    }
    let room = 64 - 1 - crate::token::LOCAL_TOKEN_MAX;
    if a.user().len() > room {
        return Err(format!(
            "has a local part over {room} characters: with `+TOKEN` it would exceed 64"
        ));
    }
    Ok(a)
}

/// The first pause before a temporary failure is retried in the same run.
pub const SMTP_BACKOFF: Duration = Duration::from_millis(250);

/// Overrides `[smtp] url`.
pub const URL_ENV: &str = "GAZETTE_SMTP_URL";

/// The SMTP password; never read from a file.
pub const PASSWORD_ENV: &str = "GAZETTE_SMTP_PASSWORD";

/// The default of `[serve] signups_per_hour`.
pub const DEFAULT_SIGNUPS_PER_HOUR: u32 = 20;

/// `[serve]`'s sign-up settings, checked.
fn serve_settings(
    raw: Option<&RawServe>,
    bad: &mut impl FnMut(Range<usize>, String, &str),
) -> ServeConfig {
    let mut serve = ServeConfig {
        configured: raw.is_some(),
        client_ip_header: None,
        signups_per_hour: DEFAULT_SIGNUPS_PER_HOUR,
    };
    let Some(raw) = raw else {
        return serve;
    };
    if let Some(h) = &raw.client_ip_header {
        let name = h.get_ref().trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            bad(
                h.span(),
                format!(
                    "serve.client_ip_header `{}` is not an HTTP header name",
                    h.get_ref()
                ),
                "e.g. \"X-Forwarded-For\" or \"X-Real-IP\"; set it only when a reverse proxy you run sets that header",
            );
        } else {
            serve.client_ip_header = Some(name.to_ascii_lowercase());
        }
    }
    if let Some(n) = &raw.signups_per_hour {
        match u32::try_from(*n.get_ref()) {
            Ok(v) if (1..=1_000_000).contains(&v) => serve.signups_per_hour = v,
            _ => bad(
                n.span(),
                format!(
                    "serve.signups_per_hour must be between 1 and 1000000, not {}",
                    n.get_ref()
                ),
                "it is how many sign-ups one client address may make in an hour (default 20)",
            ),
        }
    }
    serve
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[newsletter]
title = "论文月刊"
base_url = "https://digest.example.org/papers"
language = "zh-CN"
timezone = "Asia/Shanghai"
id_authority = "digest.example.org"
author = { name = "编辑部", email = "editors@example.org" }

[email]
from = "论文月刊 <digest@example.org>"
"#;

    #[test]
    fn defaults_fill_in_and_base_url_gains_a_slash() {
        let c = Config::parse(Path::new("gazette.toml"), GOOD, Path::new(".")).unwrap();
        assert_eq!(c.base_url.as_str(), "https://digest.example.org/papers/");
        assert_eq!(c.feed_limit, 20);
        assert_eq!(c.email.list_id, "example.org");
        assert_eq!(c.smtp.concurrency, 4);
        assert_eq!(
            c.issue_url("march").as_str(),
            "https://digest.example.org/papers/march/"
        );
    }

    #[test]
    fn eight_bit_is_on_by_default_only_without_dkim() {
        let parse = |text: &str| {
            Config::parse(Path::new("gazette.toml"), text, Path::new("."))
                .unwrap()
                .smtp
                .eight_bit
        };
        let dkim =
            "\n[dkim]\ndomain = \"example.org\"\nselector = \"s\"\nprivate_key_file = \"k.pem\"\n";
        assert!(parse(GOOD));
        assert!(!parse(&format!("{GOOD}{dkim}")));
        assert!(parse(&format!("{GOOD}\n[smtp]\neight_bit = true\n{dkim}")));
        assert!(!parse(&format!("{GOOD}\n[smtp]\neight_bit = false\n")));
    }

    // Regression: a TOML escape such as "\u000C" in the title reached the feeds and made them
    // invalid XML.
    #[test]
    fn text_fields_lose_characters_xml_cannot_carry() {
        let text = GOOD
            .replace("title = \"论文月刊\"", "title = \"论文\\u000C月刊\\n\"")
            .replace("name = \"编辑部\"", "name = \"编\\u0001辑部\"");
        let c = Config::parse(Path::new("gazette.toml"), &text, Path::new(".")).unwrap();
        assert_eq!(c.title, "论文 月刊");
        assert_eq!(c.author.name, "编 辑部");
    }

    #[test]
    fn unknown_key_is_located_with_a_suggestion() {
        let text = GOOD.replace("language =", "langauge =");
        let err = Config::parse(Path::new("gazette.toml"), &text, Path::new(".")).unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!((err[0].line, err[0].column), (5, 1));
        assert_eq!(err[0].hint.as_deref(), Some("did you mean `language`?"));
    }

    #[test]
    fn every_bad_value_is_reported_at_once() {
        let text = GOOD
            .replace("Asia/Shanghai", "Asia/Shanghia")
            .replace("https://digest.example.org/papers", "ftp://x");
        let err = Config::parse(Path::new("gazette.toml"), &text, Path::new(".")).unwrap_err();
        assert_eq!(err.len(), 2, "{err:#?}");
        assert_eq!(err[0].line, 4);
        assert_eq!(err[1].line, 6);
        assert_eq!(
            err[1].hint.as_deref(),
            Some("did you mean `Asia/Shanghai`?")
        );
    }

    // Regression: after `title = "x` the parser's follow-up error on the next line was shown
    // instead of the unclosed string.
    #[test]
    fn syntax_error_points_at_the_first_problem() {
        let text = GOOD.replace("title = \"论文月刊\"", "title = \"论文月刊\nbad");
        let err = Config::parse(Path::new("gazette.toml"), &text, Path::new(".")).unwrap_err();
        assert_eq!((err[0].line, err[0].column), (3, 14), "{err:?}");
        assert!(
            err[0]
                .hint
                .as_deref()
                .unwrap()
                .starts_with("close the string")
        );
    }

    #[test]
    fn a_rate_too_small_to_pace_is_refused_where_it_is_written() {
        for bad in ["1e-30", "0.0001", "-1", "nan", "inf"] {
            let text = format!("{GOOD}\n[smtp]\nrate = {bad}\n");
            let err = Config::parse(Path::new("gazette.toml"), &text, Path::new(".")).unwrap_err();
            assert_eq!(err.len(), 1, "{bad}: {err:#?}");
            assert!(err[0].message.contains("smtp.rate"), "{bad}: {err:#?}");
            assert_eq!(err[0].line, 14, "{bad}: {err:#?}");
        }
        for good in ["0", "0.001", "1e9"] {
            let text = format!("{GOOD}\n[smtp]\nrate = {good}\n");
            Config::parse(Path::new("gazette.toml"), &text, Path::new(".")).unwrap();
        }
    }

    #[test]
    fn a_password_in_the_smtp_url_is_refused_and_never_shown() {
        let text = format!("{GOOD}\n[smtp]\nurl = \"smtp://ed:s3cret@relay.example.org:587\"\n");
        let err = Config::parse(Path::new("gazette.toml"), &text, Path::new(".")).unwrap_err();
        assert_eq!(err.len(), 1, "{err:#?}");
        assert_eq!(err[0].line, 14, "{err:#?}");
        let shown = err[0].to_string();
        assert!(shown.contains("GAZETTE_SMTP_PASSWORD"), "{shown}");
        assert!(shown.contains("smtp.username"), "{shown}");
        assert!(shown.contains("smtp://relay.example.org:587"), "{shown}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("ed:"),
            "{shown}"
        );
        assert_eq!(
            without_userinfo("smtps://a%40b:p@ss@h:465/x"),
            "smtps://h:465/x"
        );
        assert!(!has_userinfo("smtp://relay.example.org:587/a@b"));
    }
}
