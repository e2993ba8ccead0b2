//! Signed local-part tokens, on the way out and on the way back.
//!
//! Out: with `[email] bounce_address = "bounces@example.org"` every message of `send` leaves
//! with MAIL FROM `bounces+TOKEN@example.org` ([`Envelope`]), and the mailto half of
//! List-Unsubscribe becomes `unsubscribe+TOKEN@…?subject=unsubscribe%20TOKEN`
//! ([`mailto_with_token`]). TOKEN is [`Secret::local_token`]: the subscriber id, the issue and
//! an HMAC, lowercase base32.
//!
//! Back: [`bounce_token`] finds a valid bounce token anywhere a returned message carries the
//! envelope sender (`To`, `Delivered-To`, `X-Original-To`, the returned message's
//! `Return-Path`, a quoted address); [`unsubscribe_token`] finds one in the addresses or the
//! subject of an unsubscribe request. The signature is what is trusted, not where the token
//! sits: a forged or altered token is ignored, and tokens naming two different subscribers
//! name nobody.

use lettre::Address;

use crate::token::{LOCAL_TOKEN_MAX, LocalToken, Purpose, Secret};

/// Makes the VERP envelope sender of one issue's messages.
pub struct Envelope {
    bounce: Address,
    secret: Secret,
    list_id: String,
    issue_id: String,
}

impl Envelope {
    pub fn new(bounce: &Address, secret: &Secret, list_id: &str, issue_id: &str) -> Envelope {
        Envelope {
            bounce: bounce.clone(),
            secret: secret.clone(),
            list_id: list_id.to_string(),
            issue_id: issue_id.to_string(),
        }
    }

    /// The envelope of one issue's messages under `[email] bounce_address`, if set.
    pub fn for_issue(
        dir: &std::path::Path,
        config: &crate::config::Config,
        issue_id: &str,
    ) -> anyhow::Result<Option<Envelope>> {
        let Some(bounce) = &config.email.bounce_address else {
            return Ok(None);
        };
        Ok(Some(Envelope::new(
            bounce,
            &Secret::load(dir)?,
            &config.email.list_id,
            issue_id,
        )))
    }

    /// `local+TOKEN@domain` for one subscriber.
    pub fn address(&self, subscriber_id: i64) -> Address {
        let token = self.secret.local_token(
            Purpose::Bounce,
            &self.list_id,
            subscriber_id,
            &self.issue_id,
        );
        Address::new(
            format!("{}+{token}", self.bounce.user()),
            self.bounce.domain(),
        )
        .unwrap_or_else(|_| self.bounce.clone())
    }
}

/// The mailto URL with the token in its address (`local+TOKEN@domain`) and at the end of its
/// subject, so either survives: a mail system that drops `+detail` still delivers the subject,
/// a client that rewrites the subject still sends to the address. An address gazette cannot
/// take apart safely (several recipients, percent-encoding) keeps only the subject token.
pub fn mailto_with_token(mailto: &str, token: &str) -> String {
    let Some(rest) = mailto.strip_prefix("mailto:") else {
        return mailto.to_string();
    };
    let (addr, query) = rest.split_once('?').unwrap_or((rest, ""));
    let addr = match addr.rsplit_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !local.contains(['%', ',', '+', '@'])
                && local.len() + 1 + LOCAL_TOKEN_MAX <= 64 =>
        {
            format!("{local}+{token}@{domain}")
        }
        _ => addr.to_string(),
    };
    let mut params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    match params
        .iter_mut()
        .find(|p| p.to_ascii_lowercase().starts_with("subject="))
    {
        Some(p) => p.push_str(&format!("%20{token}")),
        None => params.push(format!("subject=unsubscribe%20{token}")),
    }
    format!("mailto:{addr}?{}", params.join("&"))
}

/// Every `+TOKEN@` in `raw` whose token verifies for `purpose`.
fn plus_tokens(secret: &Secret, purpose: Purpose, list_id: &str, raw: &[u8]) -> Vec<LocalToken> {
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(p) = raw[i..].iter().position(|&b| b == b'+') {
        let start = i + p + 1;
        let len = raw[start..]
            .iter()
            .take(LOCAL_TOKEN_MAX + 1)
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        if raw.get(start + len) == Some(&b'@')
            && let Ok(t) = std::str::from_utf8(&raw[start..start + len])
            && let Some(v) = secret.verify_local_token(purpose, list_id, t)
        {
            found.push(v);
        }
        i = start;
        if found.len() > 16 {
            break;
        }
    }
    found
}

/// The one subscriber all `tokens` name, if they name exactly one.
fn one(tokens: Vec<LocalToken>) -> Option<LocalToken> {
    let first = *tokens.first()?;
    tokens
        .iter()
        .all(|t| t.subscriber_id == first.subscriber_id)
        .then_some(first)
}

/// The bounce token a returned message carries, if exactly one subscriber is named.
pub fn bounce_token(secret: &Secret, list_id: &str, raw: &[u8]) -> Option<LocalToken> {
    one(plus_tokens(secret, Purpose::Bounce, list_id, raw))
}

/// The unsubscribe token of a request: in an address (`unsubscribe+TOKEN@…`) or as a word
/// of the subject. Only the header block is read.
pub fn unsubscribe_token(secret: &Secret, list_id: &str, raw: &[u8]) -> Option<LocalToken> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
        .unwrap_or(raw.len());
    let headers = &raw[..end];
    let mut tokens = plus_tokens(secret, Purpose::Unsubscribe, list_id, headers);
    if let Some(msg) = mail_parser::MessageParser::default().parse_headers(headers)
        && let Some(subject) = msg.subject()
    {
        tokens.extend(
            subject
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter_map(|w| secret.verify_local_token(Purpose::Unsubscribe, list_id, w)),
        );
    }
    one(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mailto_carries_the_token_in_its_address_and_subject() {
        assert_eq!(
            mailto_with_token("mailto:unsubscribe@example.org?subject=unsubscribe", "abc"),
            "mailto:unsubscribe+abc@example.org?subject=unsubscribe%20abc"
        );
        assert_eq!(
            mailto_with_token("mailto:u@example.org", "abc"),
            "mailto:u+abc@example.org?subject=unsubscribe%20abc"
        );
        assert_eq!(
            mailto_with_token("mailto:a@x.org,b@x.org?body=hi&Subject=stop", "abc"),
            "mailto:a@x.org,b@x.org?body=hi&Subject=stop%20abc"
        );
    }

    #[test]
    fn tokens_are_found_only_when_signed_and_unambiguous() {
        let s = Secret::new("0123456789abcdef0123");
        let t1 = s.local_token(Purpose::Bounce, "l", 7, "issue");
        let t2 = s.local_token(Purpose::Bounce, "l", 8, "issue");
        let msg = format!("To: bounces+{t1}@example.org\r\n\r\nReturn-Path: <bounces+{t1}@x>\r\n");
        assert_eq!(
            bounce_token(&s, "l", msg.as_bytes()).map(|t| t.subscriber_id),
            Some(7)
        );
        let two = format!("To: b+{t1}@x\r\n\r\nb+{t2}@x");
        assert_eq!(bounce_token(&s, "l", two.as_bytes()), None);
        let mut f = t1.clone();
        let last = f.pop().unwrap();
        f.push(if last == 'a' { 'b' } else { 'a' });
        let forged = format!("To: b+{f}@x\r\n\r\n");
        assert_eq!(bounce_token(&s, "l", forged.as_bytes()), None);
        // A bounce token does not unsubscribe.
        let unsub = format!("To: u+{t1}@x\r\nSubject: unsubscribe {t1}\r\n\r\n");
        assert_eq!(unsubscribe_token(&s, "l", unsub.as_bytes()), None);
        let u = s.local_token(Purpose::Unsubscribe, "l", 9, "issue");
        let unsub = format!(
            "To: u@x\r\nSubject: Re: unsubscribe {}\r\n\r\n",
            u.to_uppercase()
        );
        assert_eq!(
            unsubscribe_token(&s, "l", unsub.as_bytes()).map(|t| t.subscriber_id),
            Some(9)
        );
        assert_eq!(bounce_token(&s, "l", b"+++@@@+"), None);
    }
}
