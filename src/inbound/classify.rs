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
}

impl Classified {
    pub fn other() -> Classified {
        Classified {
            kind: Kind::Other,
            recipients: Vec::new(),
            message_id: None,
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
    let hard = !policy && status.as_deref().is_some_and(|s| HARD.contains(&s));
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

pub fn classify(raw: &[u8], unsubscribe: Option<&str>) -> Classified {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return Classified::other();
    };
    let message_id = msg.message_id().map(str::to_string);
    let mut out = Classified {
        kind: Kind::Other,
        recipients: Vec::new(),
        message_id,
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
                        .and_then(|a| a.first())
                        .and_then(|a| a.address())
                        .map(str::to_string);
                }
            }
            ("text", "rfc822-headers") => {
                embedded_to = fields(&text())
                    .into_iter()
                    .find(|(k, _)| k == "to")
                    .map(|(_, v)| typed_address(v.rsplit('<').next().unwrap_or(&v)));
            }
            _ => {}
        }
    }

    if let Some(report) = arf {
        out.kind = Kind::Complaint;
        let f = fields(&report);
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
                policy: false,
            });
        }
        return out;
    }
    if let Some(report) = dsn {
        let f = fields(&report);
        let mut delivered = false;
        let mut failed = false;
        // Per-recipient groups start at Final-Recipient.
        let mut cur: Option<(String, Option<String>, String, String)> = None;
        let mut groups = Vec::new();
        for (k, v) in f {
            match k.as_str() {
                "final-recipient" => {
                    if let Some(c) = cur.take() {
                        groups.push(c);
                    }
                    cur = Some((typed_address(&v), None, String::new(), String::new()));
                }
                "status" => match cur.as_mut() {
                    Some(c) => c.1 = find_code(&v),
                    // A status with no Final-Recipient: the recipient is unnamed (a VERP
                    // token may still name them).
                    None => {
                        cur = Some((String::new(), find_code(&v), String::new(), String::new()))
                    }
                },
                "action" => {
                    if let Some(c) = cur.as_mut() {
                        c.2 = v.to_lowercase();
                    }
                }
                "diagnostic-code" => {
                    if let Some(c) = cur.as_mut() {
                        c.3 = v;
                    }
                }
                _ => {}
            }
        }
        groups.extend(cur);
        for (addr, status, action, diag) in groups {
            if !(addr.contains('@') || addr.is_empty() && status.is_some()) {
                continue;
            }
            if matches!(action.as_str(), "delivered" | "relayed" | "expanded") {
                delivered = true;
                continue;
            }
            if action == "delayed" {
                continue;
            }
            failed = true;
            let status = status.or_else(|| find_code(&diag));
            out.recipients.push(recipient(&addr, status, &diag));
        }
        out.kind = if failed {
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
        || [
            "out of office",
            "out-of-office",
            "automatic reply",
            "auto-reply",
            "autoreply",
            "vacation",
            "abwesenheit",
            "absence",
        ]
        .iter()
        .any(|w| subject.contains(w));

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
                        .find(|w| {
                            w.len() == 3
                                && (w.starts_with('5') || w.starts_with('4'))
                                && w.chars().all(|c| c.is_ascii_digit())
                        })
                        .map(|w| format!("{}.0.0", &w[..1]))
                });
                let mut r = recipient(addr, status, &diag);
                let d = diag.to_lowercase();
                if !r.policy
                    && (d.contains("unknown user")
                        || d.contains("no such user")
                        || d.contains("user unknown")
                        || d.contains("does not exist")
                        || d.contains("unrouteable address"))
                {
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
