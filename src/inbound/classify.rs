//! gazette's classification rules (documented in the README), on top of `mail-parser`.
//! Pure: bytes in, a [`Classified`] out; never panics.

use mail_parser::{MessageParser, MimeHeaders, PartType};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bounce,
    Complaint,
    Unsubscribe,
    Autoreply,
    Delivery,
    Other,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Bounce => "bounce",
            Kind::Complaint => "complaint",
            Kind::Unsubscribe => "unsubscribe",
            Kind::Autoreply => "autoreply",
            Kind::Delivery => "delivery",
            Kind::Other => "other",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    pub address: String,
    pub status: Option<String>,
    /// Permanent for this recipient: the address is suppressed.
    pub hard: bool,
    /// About the sender or the message (5.7.x, spam, policy): never suppresses.
    pub policy: bool,
}

#[derive(Clone, Debug)]
pub struct Classified {
    pub kind: Kind,
    pub recipients: Vec<Recipient>,
    pub message_id: Option<String>,
    /// A delay notice (`Action: delayed`): not yet a failure, counts nothing.
    pub delayed: bool,
}

impl Classified {
    pub fn other() -> Classified {
        Classified {
            kind: Kind::Other,
            recipients: Vec::new(),
            message_id: None,
            delayed: false,
        }
    }
}

/// Status codes that say the address itself is gone.
const HARD: &[&str] = &["5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.4.4"];

fn recipient(address: &str, status: Option<String>, diagnostic: &str) -> Recipient {
    let d = diagnostic.to_lowercase();
    let policy = status
        .as_deref()
        .is_some_and(|s| s.starts_with("5.7.") || s.starts_with("4.7."))
        || [
            "spam",
            "policy",
            "blocked",
            "blacklist",
            "sender rejected",
            "reputation",
        ]
        .iter()
        .any(|w| d.contains(w));
    // Exchange Online answers `550 5.4.1 Recipient address rejected: Access denied` for an
    // address its directory does not know (directory-based edge blocking).
    let hard = !policy
        && (status.as_deref().is_some_and(|s| HARD.contains(&s))
            || status.as_deref() == Some("5.4.1") && d.contains("recipient address rejected"));
    Recipient {
        address: address.trim().to_lowercase(),
        status,
        hard,
        policy,
    }
}

/// A `Status:`-like enhanced code `c.d.d` in `text`.
fn find_code(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find_map(|w| {
            let w = w.trim_matches('.');
            let mut it = w.split('.');
            let (a, b, c) = (it.next()?, it.next()?, it.next()?);
            (it.next().is_none()
                && matches!(a, "2" | "4" | "5")
                && (1..=3).contains(&b.len())
                && (1..=3).contains(&c.len()))
            .then(|| w.to_string())
        })
}

/// Splits `Field: value` lines (with folded continuations) of a header-like block.
fn fields(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            out.push((k.trim().to_lowercase(), v.trim().to_string()));
        }
    }
    out
}

/// `rfc822; user@example.org` → `user@example.org`.
fn typed_address(v: &str) -> String {
    let v = v.split_once(';').map_or(v, |(_, a)| a);
    v.trim().trim_matches(['<', '>']).to_string()
}

/// One per-recipient block of a delivery-status report.
struct DsnGroup {
    address: Option<String>,
    status: Option<String>,
    action: String,
    diagnostic: String,
}

/// The per-recipient blocks of a `message/delivery-status` body: blank-line separated field
/// groups (RFC 3464 §2.1) holding an `Action` or a recipient; the order of fields inside a
/// block does not matter (Amazon SES writes `Action` first). A block without
/// `Final-Recipient` falls back to `Original-Recipient`.
fn dsn_groups(report: &str) -> Vec<DsnGroup> {
    let mut out = Vec::new();
    let mut block = String::new();
    let mut flush = |block: &mut String| {
        let f = fields(block);
        block.clear();
        let get = |name: &str| f.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let address = get("final-recipient")
            .or_else(|| get("original-recipient"))
            .map(typed_address)
            .filter(|a| !a.is_empty());
        let action = get("action").unwrap_or("").to_lowercase();
        if address.is_none() && action.is_empty() {
            return;
        }
        out.push(DsnGroup {
            address,
            status: get("status").and_then(find_code),
            action,
            diagnostic: get("diagnostic-code").unwrap_or("").to_string(),
        });
    };
    for line in report.lines() {
        if line.trim().is_empty() {
            flush(&mut block);
        } else {
            block.push_str(line);
            block.push('\n');
        }
    }
    flush(&mut block);
    out
}

/// Declared a `multipart/report` (however broken its parts are).
fn looks_like_report(msg: &mail_parser::Message<'_>) -> bool {
    msg.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    })
}

/// From a mail system: `MAILER-DAEMON@`/`postmaster@`, or the null return path.
fn from_daemon(msg: &mail_parser::Message<'_>) -> bool {
    let from = msg
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .unwrap_or("")
        .to_lowercase();
    from.starts_with("mailer-daemon@")
        || from.starts_with("postmaster@")
        || msg.return_address().is_some_and(str::is_empty)
}

/// Lines after which a plain-text bounce quotes the returned message: addresses there are
/// not failed recipients.
const COPY_MARKERS: &[&str] = &[
    "--- below this line is a copy of the message",
    "------ this is a copy of the message",
    "----- original message -----",
    "----- message header follows -----",
    "--- the header of the original message is following",
    "original message headers",
];

/// Diagnostic phrases (without an enhanced status code) that say the address is gone.
const GONE: &[&str] = &[
    "unknown user",
    "no such user",
    "user unknown",
    "does not exist",
    "unrouteable address",
    "no mailbox here by that name",
    "doesn't have a",
    "no such recipient",
    "recipient not found",
    "address not found",
    "user doesn't exist",
    "mailbox not found",
    "invalid recipient",
];

/// Subjects (lowercase) of vacation and out-of-office replies sent without RFC 3834 headers.
const AUTO_SUBJECTS: &[&str] = &[
    "out of office",
    "out-of-office",
    "out of the office",
    "automatic reply",
    "auto-reply",
    "auto reply",
    "autoreply",
    "auto response",
    "autoresponse",
    "vacation",
    "on holiday",
    "abwesenheit",
    "automatische antwort",
    "réponse automatique",
    "absence",
    "respuesta automática",
    "fuera de la oficina",
    "risposta automatica",
    "resposta automática",
    "automatisch antwoord",
    "afwezig",
    "自动回复",
    "自動回覆",
    "自動回复",
    "自動応答",
    "不在",
    "자동 응답",
];

/// Challenge-response systems (TMDA, Boxbe, SpamArrest, ...): the message asks the sender to
/// prove it is human; it says nothing about the reader.
fn challenge(msg: &mail_parser::Message<'_>, subject: &str) -> bool {
    msg.header_raw("X-Delivery-Agent")
        .is_some_and(|v| v.to_ascii_lowercase().contains("tmda"))
        || msg.header_raw("X-Boxbe-Challenge").is_some()
        || msg.header_raw("X-Challenge").is_some()
        || [
            "confirm your message",
            "please confirm your",
            "verify your email",
            "verification required",
            "challenge",
            "guest list",
            "spamarrest",
            "sender verification",
        ]
        .iter()
        .any(|w| subject.contains(w))
}

/// Only the first this many bytes of a message are parsed. A report's machine-readable part
/// comes before the returned message (RFC 3464, RFC 5965), so a large returned attachment or a
/// malformed MIME tree past this point costs neither time nor memory.
pub const PARSE_BYTES: usize = 1024 * 1024;

pub fn classify(raw: &[u8], unsubscribe: Option<&str>) -> Classified {
    let raw = &raw[..raw.len().min(PARSE_BYTES)];
    let Some(msg) = MessageParser::default().parse(raw) else {
        return Classified::other();
    };
    let message_id = msg.message_id().map(str::to_string);
    let mut out = Classified {
        kind: Kind::Other,
        recipients: Vec::new(),
        message_id,
        delayed: false,
    };
    let header = |name: &str| msg.header_raw(name).map(|v| v.trim().to_lowercase());

    let mut dsn: Option<String> = None;
    let mut arf: Option<String> = None;
    let mut embedded_to: Option<String> = None;
    for part in msg.parts.iter() {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let sub = ct.subtype().unwrap_or("").to_lowercase();
        let ctype = ct.ctype().to_lowercase();
        let text = || String::from_utf8_lossy(part.contents()).into_owned();
        match (ctype.as_str(), sub.as_str()) {
            ("message", "delivery-status" | "global-delivery-status") => dsn = Some(text()),
            ("message", "feedback-report") => arf = Some(text()),
            ("message", "rfc822") => {
                if let PartType::Message(m) = &part.body {
                    embedded_to = m
                        .to()
                        .filter(|a| a.iter().count() == 1)
                        .and_then(|a| a.first())
                        .and_then(|a| a.address())
                        .map(str::to_string);
                }
            }
            ("text", "rfc822-headers") => {
                embedded_to = fields(&text())
                    .into_iter()
                    .find(|(k, _)| k == "to")
                    .filter(|(_, v)| v.matches('@').count() == 1)
                    .map(|(_, v)| typed_address(v.rsplit('<').next().unwrap_or(&v)));
            }
            _ => {}
        }
    }

    if let Some(report) = arf {
        let f = fields(&report);
        // An authentication failure report (RFC 6591) is about the sender's DKIM/SPF, not a
        // reader's complaint: it never suppresses anyone.
        let auth_failure = f
            .iter()
            .any(|(k, v)| k == "feedback-type" && v.eq_ignore_ascii_case("auth-failure"));
        out.kind = if auth_failure {
            Kind::Other
        } else {
            Kind::Complaint
        };
        let rcpt = f
            .iter()
            .find(|(k, _)| k == "original-rcpt-to")
            .map(|(_, v)| typed_address(v))
            .or(embedded_to);
        if let Some(a) = rcpt {
            out.recipients.push(Recipient {
                address: a.to_lowercase(),
                status: None,
                hard: false,
                policy: auth_failure,
            });
        }
        return out;
    }
    // A delivery-status report whose MIME structure is broken (wrong boundary): its fields
    // are still read from the raw text when the message comes from a mail system.
    if dsn.is_none() && (looks_like_report(&msg) || from_daemon(&msg)) {
        let raw_text = String::from_utf8_lossy(raw);
        let lower = raw_text.to_ascii_lowercase();
        if let Some(at) = lower.find("\nfinal-recipient:")
            && lower.contains("\naction:")
        {
            dsn = Some(raw_text[at..].to_string());
        }
    }
    if let Some(report) = dsn {
        let mut delivered = false;
        let mut failed = false;
        let mut delays = Vec::new();
        let groups = dsn_groups(&report);
        let anonymous = groups.iter().filter(|g| g.address.is_none()).count();
        for g in groups {
            // A group naming no recipient is attributed to the returned message's single
            // `To` (gazette sends one message per reader), and only when it is the only one.
            let named = g
                .address
                .clone()
                .or_else(|| (anonymous == 1).then(|| embedded_to.clone()).flatten())
                .filter(|a| a.contains('@'));
            let Some(addr) = named.or_else(|| {
                // A status naming no recipient: unnamed (a VERP token may still name them).
                g.status.is_some().then(String::new)
            }) else {
                continue;
            };
            if matches!(g.action.as_str(), "delivered" | "relayed" | "expanded") {
                delivered = true;
                continue;
            }
            let status = g.status.or_else(|| find_code(&g.diagnostic));
            let mut r = recipient(&addr, status, &g.diagnostic);
            if g.action == "delayed" {
                r.hard = false;
                delays.push(r);
                continue;
            }
            failed = true;
            out.recipients.push(r);
        }
        out.kind = if failed {
            Kind::Bounce
        } else if !delays.is_empty() {
            out.delayed = true;
            out.recipients = delays;
            Kind::Bounce
        } else if delivered {
            Kind::Delivery
        } else {
            Kind::Other
        };
        return out;
    }

    let subject = msg.subject().unwrap_or("").to_lowercase();
    let auto = header("auto-submitted").is_some_and(|v| v != "no")
        || msg.header_raw("X-Autoreply").is_some()
        || msg.header_raw("X-Autorespond").is_some()
        || header("precedence").is_some_and(|v| v == "auto_reply")
        || AUTO_SUBJECTS.iter().any(|w| subject.contains(w))
        || challenge(&msg, &subject);

    // Plain-text bounces (Exim, qmail, older Postfix) from a mailer daemon.
    let from = msg
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .unwrap_or("")
        .to_lowercase();
    let daemon = from.starts_with("mailer-daemon@")
        || from.starts_with("postmaster@")
        || msg.return_address().is_none_or(str::is_empty) && subject.contains("deliver");
    if daemon
        && (subject.contains("fail")
            || subject.contains("undeliver")
            || subject.contains("returned"))
    {
        let body = msg.body_text(0).map(|b| b.into_owned()).unwrap_or_default();
        let mut lines = body.lines().peekable();
        while let Some(line) = lines.next() {
            let t = line.trim();
            let lower = t.to_lowercase();
            if COPY_MARKERS.iter().any(|m| lower.starts_with(m)) {
                break;
            }
            let addr = t.trim_matches(['<', '>', ':']).trim();
            if addr.contains('@') && !addr.contains(' ') && t.len() < 200 {
                let mut diag = String::new();
                for _ in 0..3 {
                    match lines.peek() {
                        Some(n) if !n.trim().contains('@') || n.trim().contains(' ') => {
                            diag.push_str(n);
                            diag.push(' ');
                            lines.next();
                        }
                        _ => break,
                    }
                }
                let status = find_code(&diag).or_else(|| {
                    diag.split_whitespace()
                        .map(|w| w.trim_end_matches([':', '-', ',']))
                        .find(|w| {
                            w.len() == 3
                                && (w.starts_with('5') || w.starts_with('4'))
                                && w.chars().all(|c| c.is_ascii_digit())
                        })
                        .map(|w| format!("{}.0.0", &w[..1]))
                });
                let mut r = recipient(addr, status, &diag);
                let d = diag.to_lowercase();
                if !r.policy && GONE.iter().any(|w| d.contains(w)) {
                    r.hard = true;
                    r.status.get_or_insert_with(|| "5.1.1".into());
                }
                out.recipients.push(r);
            }
        }
        out.kind = Kind::Bounce;
        return out;
    }
    if auto {
        out.kind = Kind::Autoreply;
        return out;
    }
    if let Some(unsub) = unsubscribe {
        // To the unsubscribe address, with or without `+TOKEN`. Who asked is read from the
        // token (inbound::verp), never from From, which anyone can write.
        let base = |a: &str| {
            let a = a.trim().trim_matches(['<', '>']).to_lowercase();
            match a.rsplit_once('@') {
                Some((local, domain)) => {
                    format!("{}@{domain}", local.split('+').next().unwrap_or(local))
                }
                None => a,
            }
        };
        let listed = [msg.to(), msg.cc()]
            .into_iter()
            .flatten()
            .flat_map(|a| a.iter())
            .filter_map(|a| a.address().map(str::to_string));
        let delivered = ["Delivered-To", "X-Original-To", "Envelope-To"]
            .into_iter()
            .filter_map(|h| msg.header_raw(h).map(str::to_string));
        if listed.chain(delivered).any(|a| base(&a) == unsub) {
            out.kind = Kind::Unsubscribe;
        }
    }
    out
}
