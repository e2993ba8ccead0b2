//! Personalisation without re-rendering: the message is rendered once with a marker where
//! each per-recipient value goes (the address, the unsubscribe URL), encoded once around the
//! markers, and per recipient only the values are encoded and spliced in.

use super::*;

/// A value that differs per recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slot {
    UnsubscribeUrl,
    Email,
    /// The name, or the address when the name is unknown.
    Name,
}

/// Stand-ins for the per-recipient values while the issue is rendered. Each is one unbreakable
/// word of 72 columns, so that text wrapping puts the real value on a line of its own and a
/// long address cannot push a line past the width. The URL stand-in is a URL so that Markdown
/// links and bare-URL linking treat it like the real one.
pub(super) const MARKERS: [(Slot, &str); 3] = [
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
pub(super) struct Pattern(Vec<Chunk>);

#[derive(Clone, Debug)]
pub(super) enum Chunk {
    Fixed(String),
    Slot(Slot),
}

impl Pattern {
    pub(super) fn parse(rendered: &str) -> Pattern {
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

    pub(super) fn fill(&self, values: &Values<'_>, html: bool) -> String {
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

pub(super) fn escape_into(out: &mut String, s: &str) {
    let _ = maud::Escaper::new(out).write_str(s);
}

/// The per-recipient values.
pub(super) struct Values<'a> {
    pub(super) unsubscribe_url: String,
    pub(super) email: &'a str,
    pub(super) name: Option<String>,
}

impl Values<'_> {
    pub(super) fn get(&self, slot: Slot) -> &str {
        match slot {
            Slot::UnsubscribeUrl => &self.unsubscribe_url,
            Slot::Email => self.email,
            Slot::Name => self.name.as_deref().unwrap_or(self.email),
        }
    }
}

/// A piece of the encoded message.
#[derive(Clone, Debug)]
pub(super) enum Piece {
    /// Bytes of [`Prepared::fixed`].
    Fixed(std::ops::Range<usize>),
    /// A header line made per recipient.
    Header(HeaderSlot),
    /// A value in a quoted-printable part (or, `raw`, an 8bit part), HTML-escaped in the
    /// HTML part.
    Value { slot: Slot, html: bool, raw: bool },
    /// The end of a base64 part from its first per-recipient value on, encoded per recipient.
    Tail { html: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HeaderSlot {
    To,
    Date,
    MessageId,
    ListUnsubscribe,
}

/// The end of a base64 part: base64 cannot be cut at any byte, so the part is encoded up to a
/// multiple of 3 bytes before its first per-recipient value, and the rest (a few hundred bytes
/// of footer) is encoded per recipient.
#[derive(Clone, Debug)]
pub(super) struct Tail {
    /// The 0 to 2 bytes before the first value that did not fill a group of 3.
    pub(super) carry: Vec<u8>,
    /// The part from its first value on.
    pub(super) rest: Pattern,
}

/// A part's body as the message carries it.
pub(super) struct EncodedPart {
    pub(super) bytes: Vec<u8>,
    pub(super) encoding: ContentTransferEncoding,
    pub(super) tail: Option<Tail>,
    /// The part's size on the wire, with stand-ins as long as typical values.
    pub(super) size: usize,
}

/// Marks a per-recipient value in the encoded parts until [`cut`] finds it: a NUL byte never
/// occurs in quoted-printable or base64, nor in a part sent as 8bit (see [`eight_bit_part`]).
/// `raw`: the value goes into an 8bit part as it is.
pub(super) fn value_mark(slot: Slot, html: bool, raw: bool) -> String {
    let kind = if raw { 'R' } else { 'Q' };
    format!("\0{kind}{}{}\0", slot as u8, u8::from(html))
}

/// Marks where a base64 part's [`Tail`] goes.
pub(super) fn tail_mark(html: bool) -> String {
    format!("\0T{}\0", u8::from(html))
}

/// The longest line SMTP carries, without its CRLF (RFC 5321 4.5.3.1.6).
pub(super) const MAX_LINE: usize = 998;

/// Whether every line of `bytes` fits SMTP's limit.
pub(super) fn lines_fit(bytes: &[u8]) -> bool {
    bytes
        .split(|&b| b == b'\n')
        .all(|line| line.len() <= MAX_LINE + 1)
}

/// Whether the lines holding `values` (ranges of `bytes`) fit SMTP's limit: the rest of an
/// 8bit message was checked once, in [`eight_bit_part`], with stand-ins in their place.
pub(super) fn values_fit(bytes: &[u8], values: &[std::ops::Range<usize>]) -> bool {
    values.iter().all(|v| {
        let start = memchr::memrchr(b'\n', &bytes[..v.start]).map_or(0, |i| i + 1);
        let end = memchr::memchr(b'\n', &bytes[v.end..]).map_or(bytes.len(), |i| v.end + i);
        lines_fit(&bytes[start..end])
    })
}

/// A part as 8bit (RFC 6152), for a relay that announces 8BITMIME: the UTF-8 text itself, in
/// CRLF lines, with a mark where each value goes. `None` where 8bit cannot carry it: a NUL or
/// a bare CR, or a line longer than [`MAX_LINE`] octets with stand-ins of 72 bytes in place
/// of the values (a long paragraph of Chinese, which has no spaces to break at).
pub(super) fn eight_bit_part(pattern: &Pattern, html: bool) -> Option<EncodedPart> {
    let mut bytes = Vec::new();
    let mut standing_in = Vec::new();
    for chunk in &pattern.0 {
        match chunk {
            Chunk::Fixed(s) => {
                let s = crlf_line_endings(s.clone());
                bytes.extend_from_slice(s.as_bytes());
                standing_in.extend_from_slice(s.as_bytes());
            }
            Chunk::Slot(slot) => {
                bytes.extend_from_slice(value_mark(*slot, html, true).as_bytes());
                standing_in.extend_from_slice(MARKERS[0].1.as_bytes());
            }
        }
    }
    let bare_cr = standing_in
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\r' && standing_in.get(i + 1) != Some(&b'\n'));
    if standing_in.contains(&0) || bare_cr || !lines_fit(&standing_in) {
        return None;
    }
    Some(EncodedPart {
        size: standing_in.len(),
        bytes,
        encoding: ContentTransferEncoding::EightBit,
        tail: None,
    })
}

/// A part in whichever of quoted-printable and base64 is shorter for it (quoted-printable on a
/// tie). Chinese text is about 3 times its size in quoted-printable and 1.35 times in base64;
/// English text and markup stay near 1.05 times in quoted-printable. The choice depends only
/// on the part as prepared, never on a recipient: every copy of an issue is encoded alike.
///
/// With `eight_bit` (the relay announces 8BITMIME), a part 8bit can carry goes as 8bit: the
/// text itself, about 1.0 times.
pub(super) fn encode_part(pattern: &Pattern, html: bool, eight_bit: bool) -> EncodedPart {
    if let Some(part) = eight_bit.then(|| eight_bit_part(pattern, html)).flatten() {
        return part;
    }
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
    let mut head = Vec::new();
    for chunk in &pattern.0[..first_slot] {
        if let Chunk::Fixed(s) = chunk {
            head.extend_from_slice(crlf_line_endings(s.clone()).as_bytes());
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
                        Chunk::Fixed(s) => Chunk::Fixed(crlf_line_endings(s.clone())),
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
pub(super) fn encode_pattern(pattern: &Pattern, html: bool) -> Vec<u8> {
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
                out.extend_from_slice(value_mark(*slot, html, false).as_bytes());
            }
        }
    }
    out
}

/// Cuts the formatted stand-in message into fixed bytes and per-recipient pieces.
pub(super) fn cut(formatted: &[u8]) -> anyhow::Result<(Vec<u8>, Vec<Piece>)> {
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
    // The body, with its value marks (UTF-8: ASCII, or 8bit parts' text).
    let mut rest = std::str::from_utf8(&formatted[header_end..])
        .context("lettre wrote a message body that is not UTF-8")?;
    'marks: while !rest.is_empty() {
        let Some(i) = rest.find('\0') else {
            break;
        };
        for slot in [Slot::UnsubscribeUrl, Slot::Email, Slot::Name] {
            for html in [false, true] {
                for raw in [false, true] {
                    let mark = value_mark(slot, html, raw);
                    if rest[i..].starts_with(&mark) {
                        push_fixed(&mut fixed, &mut pieces, &rest.as_bytes()[..i]);
                        pieces.push(Piece::Value { slot, html, raw });
                        rest = &rest[i + mark.len()..];
                        continue 'marks;
                    }
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
