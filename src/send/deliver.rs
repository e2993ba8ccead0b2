//! One message over an open connection: MAIL, RCPT and DATA, and what each reply means for
//! the recipient (sent, bounced, failed, deferred, unknown) or for the run (stop).

use super::*;

/// What became of one message.
pub(super) enum Outcome {
    Sent(String),
    Deferred(String),
    Failed(String),
    Bounced(String),
    Unknown(String),
    /// Not accepted, and not the recipient's fault (the sender refused, relaying denied):
    /// stop the run and leave the row to be tried again.
    Stop(String),
}

/// Sends one message on an open connection. `before_data` runs after RCPT and before DATA (it
/// waits for the ledger); if it fails nothing more is sent. Returns the outcome and whether
/// the connection is still usable.
pub(super) fn deliver(
    conn: &mut Conn,
    msg: &Outgoing,
    pipelining: bool,
    before_data: impl FnOnce() -> Result<(), Failure>,
) -> Result<(Outcome, bool), Failure> {
    // 8-bit bytes only in a message made for this connection's Transfer, to ASCII addresses
    // only (store.rs and `deliverable` refuse others): SMTPUTF8 is never needed.
    debug_assert!(
        msg.bytes.is_ascii() || (msg.eight_bit && conn.transfer == Transfer::EightBit),
        "a message with 8-bit bytes for a 7-bit connection"
    );
    debug_assert!(
        AsRef::<str>::as_ref(&msg.from).is_ascii() && AsRef::<str>::as_ref(&msg.to).is_ascii(),
        "a non-ASCII address"
    );
    let params = if msg.eight_bit {
        vec![MailParameter::Body(MailBodyParameter::EightBitMime)]
    } else {
        Vec::new()
    };
    let envelope = Envelope::new(Some(msg.from.clone()), vec![msg.to.clone()])
        .map_err(|e| Failure::Fatal(format!("bad envelope: {e}")))?;
    // Before DATA: any failure means the message was not accepted.
    let mail = Mail::new(envelope.from().cloned(), params);
    let rcpt = Rcpt::new(msg.to.clone(), vec![]);
    let early = if pipelining {
        // MAIL and RCPT in one write, then both replies (RFC 2920): one round trip.
        let first = conn.command(Wire(&format!("{mail}{rcpt}")));
        let second = conn.read_response();
        match first {
            Err(e) => Err((Stage::Mail, e)),
            Ok(_) => second.map_err(|e| (Stage::Rcpt, e)),
        }
    } else {
        conn.command(mail)
            .map_err(|e| (Stage::Mail, e))
            .and_then(|_| conn.command(rcpt).map_err(|e| (Stage::Rcpt, e)))
    };
    if let Err((stage, e)) = early {
        // The `sending` row may be queued; let it land before the outcome that overrides it.
        before_data()?;
        return Ok(refused_early(conn, stage, msg, &e));
    }
    before_data()?;
    if let Err(e) = conn.command(Data) {
        return Ok(refused_early(conn, Stage::Data, msg, &e));
    }
    // The body and its final dot in one write: written apart, Nagle's algorithm and the
    // server's delayed ACK hold the dot back ~40 ms per message.
    let sent = match std::str::from_utf8(&msg.bytes) {
        Ok(text) => conn.command(Wire(&data_lines(text))),
        Err(_) => conn.message(&msg.bytes),
    };
    match sent {
        Ok(reply) => Ok((Outcome::Sent(reply_text(&reply)), true)),
        Err(e) => Ok(after_dot(conn, msg, &e)),
    }
}

/// Text written to the server as it is.
pub(super) struct Wire<'a>(&'a str);

impl fmt::Display for Wire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A message as DATA lines: a dot doubled at the start of a line, then the final dot.
pub(super) fn data_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 64 + 8);
    if text.starts_with('.') {
        out.push('.');
    }
    let mut rest = text;
    while let Some(i) = rest.find("\n.") {
        out.push_str(&rest[..=i]);
        out.push('.');
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
    out.push_str(if out.ends_with("\r\n") {
        ".\r\n"
    } else {
        "\r\n.\r\n"
    });
    out
}

pub(super) fn reply_text(r: &lettre::transport::smtp::response::Response) -> String {
    format!("{} {}", r.code(), r.message().collect::<Vec<_>>().join(" "))
}

/// The command a refusal answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stage {
    Mail,
    Rcpt,
    Data,
    /// The final dot.
    Dot,
}

/// A reply to MAIL, RCPT or DATA: the message was not accepted, whatever happened.
pub(super) fn refused_early(
    conn: &mut Conn,
    stage: Stage,
    msg: &Outgoing,
    e: &lettre::transport::smtp::Error,
) -> (Outcome, bool) {
    let words = conn.explain(e);
    let code = e.status().map(|c| c.to_string());
    let outcome = if e.is_permanent() {
        permanent(stage, msg, words)
    } else {
        Outcome::Deferred(words)
    };
    // The server is still talking (a reply came): reset and reuse, unless it said goodbye.
    let usable =
        e.status().is_some() && code.as_deref() != Some("421") && conn.command(Rset).is_ok();
    if !usable {
        conn.abort();
    }
    (outcome, usable)
}

/// What a permanent (5xx) refusal means. Only the recipient's own address not existing
/// bounces it; a refusal that is about the sender or about this client (relaying, login)
/// would refuse every recipient alike, so it stops the run with the row left to retry.
pub(super) fn permanent(stage: Stage, msg: &Outgoing, words: String) -> Outcome {
    let enhanced = enhanced_code(&words);
    let class = |c: &str| enhanced.as_deref().is_some_and(|e| e.starts_with(c));
    if matches!(enhanced.as_deref(), Some("5.1.7" | "5.1.8")) || stage == Stage::Mail {
        return Outcome::Stop(format!(
            "the relay refused the sender <{}>: {words}; check email.from and the relay's \
             configuration (nobody was marked failed)",
            msg.from
        ));
    }
    if stage != Stage::Rcpt {
        return if is_no_such_user(&words) {
            Outcome::Bounced(words)
        } else {
            Outcome::Failed(words)
        };
    }
    let lower = words.to_lowercase();
    let about_us = ["relay", "authenticat", "auth required", "not permitted"]
        .iter()
        .any(|w| lower.contains(w));
    if class("5.7.") || (enhanced.is_none() && about_us) {
        return Outcome::Stop(format!(
            "the relay refused the recipient <{}>: {words}; a relaying or authentication \
             refusal applies to every recipient: check smtp.url, smtp.username and the relay's \
             configuration (nobody was marked failed)",
            msg.to
        ));
    }
    if is_no_such_user(&words) {
        Outcome::Bounced(words)
    } else {
        Outcome::Failed(words)
    }
}

/// The enhanced status code (RFC 3463) in a reply, like `5.1.1`.
pub(super) fn enhanced_code(words: &str) -> Option<String> {
    words
        .split(|c: char| c.is_whitespace() || c == ':' || c == '(' || c == ')')
        .find(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() == 3
                && matches!(parts[0], "2" | "4" | "5")
                && parts[1..]
                    .iter()
                    .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string)
}

/// A failure after the message and its final dot were written (or while writing them).
pub(super) fn after_dot(
    conn: &mut Conn,
    msg: &Outgoing,
    e: &lettre::transport::smtp::Error,
) -> (Outcome, bool) {
    let cut = conn.guard.cut().is_some() || timed_out(e);
    let words = if cut {
        format!("{} after the final dot", conn.explain(e))
    } else {
        chain(e)
    };
    let outcome = match e.status().map(|c| c.to_string()) {
        // 421 to the final dot: the server may have stored the message before closing.
        Some(code) if code == "421" => Outcome::Unknown(words),
        Some(_) if e.is_transient() => Outcome::Deferred(words),
        Some(_) => permanent(Stage::Dot, msg, words),
        None => {
            // A broken pipe (EPIPE) comes only from a write: the final dot never left, so the
            // server cannot have accepted the message. A reset (ECONNRESET) can come while
            // reading the reply, after the whole message was written and maybe stored (and
            // lettre does not say whether its write or its read failed); like no reply or a
            // timeout, it leaves the outcome unknown rather than risk a second copy.
            let unread = io_kind(e) == Some(std::io::ErrorKind::BrokenPipe);
            if unread {
                Outcome::Deferred(words)
            } else {
                Outcome::Unknown(words)
            }
        }
    };
    let usable = matches!(
        outcome,
        Outcome::Deferred(_) | Outcome::Failed(_) | Outcome::Bounced(_) | Outcome::Stop(_)
    ) && e.status().is_some();
    (outcome, usable)
}

pub(super) fn io_kind(e: &lettre::transport::smtp::Error) -> Option<std::io::ErrorKind> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = s.source();
    }
    None
}

/// A permanent reply saying the recipient's address does not exist: an enhanced status of
/// bad mailbox (5.1.1), bad system (5.1.2), bad syntax (5.1.3), moved (5.1.6) or null MX
/// (5.1.10); without an enhanced status, a 550/551/553 whose words say the user is unknown.
/// Not 5.1.7/5.1.8: those are about the sender.
pub(super) fn is_no_such_user(words: &str) -> bool {
    match enhanced_code(words) {
        Some(c) => matches!(c.as_str(), "5.1.1" | "5.1.2" | "5.1.3" | "5.1.6" | "5.1.10"),
        None => {
            let lower = words.to_lowercase();
            ["(550)", "(551)", "(553)", "550 ", "551 ", "553 "]
                .iter()
                .any(|c| lower.contains(c))
                && [
                    "user unknown",
                    "unknown user",
                    "no such user",
                    "recipient unknown",
                    "unknown recipient",
                    "does not exist",
                    "no such mailbox",
                ]
                .iter()
                .any(|w| lower.contains(w))
        }
    }
}

/// Whether an address can be sent to at all: the failure is about this recipient alone.
pub(super) fn deliverable(email: &str) -> Result<(), String> {
    if !email.is_ascii() {
        return Err(format!(
            "`{email}` is not an ASCII address: gazette does not send SMTPUTF8 mail"
        ));
    }
    email
        .parse::<lettre::Address>()
        .map(drop)
        .map_err(|e| format!("`{email}` is not an email address ({e})"))
}
