//! MIME and headers: the transfer encodings (quoted-printable or base64, whichever is
//! shorter per part, CRLF line endings), the List-* headers lettre has no type for, and the
//! DKIM key.

use super::*;

/// A loaded DKIM signing key with its domain and selector. Cheap to clone.
#[derive(Clone)]
pub struct Dkim {
    pub(super) config: Arc<DkimConfig>,
    /// `rsa` or `ed25519`, as detected from the key.
    pub algorithm: &'static str,
}

impl std::fmt::Debug for Dkim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dkim({})", self.algorithm)
    }
}

impl Dkim {
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

/// A formatted header line (with folding), as lettre writes it.
pub(super) fn header_line(h: impl Header) -> String {
    let mut headers = Headers::new();
    headers.set(h);
    headers.to_string()
}

pub(super) fn quoted_printable(s: String) -> Vec<u8> {
    // lettre makes line endings CRLF by inserting each `\r` in place, which is quadratic in
    // the part's size (a 4 MB issue took 13 s); done here in one pass, lettre finds none left.
    let s = crlf_line_endings(s);
    Body::new_with_encoding(s, ContentTransferEncoding::QuotedPrintable)
        .map(Body::into_vec)
        .unwrap_or_default()
}

/// `s` with every `\n` not already after a `\r` made `\r\n`, in one pass.
pub(super) fn crlf_line_endings(s: String) -> String {
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

/// Lines of HTML longer than this are folded by [`fold_html`].
pub(super) const FOLD_AT: usize = 900;

/// `html` with every line longer than [`FOLD_AT`] bytes broken at a space inside a tag (between
/// attributes, outside quotes), where a line break means the same as the space: so that the
/// part fits SMTP's 998 octets per line as 8bit. A paragraph of Chinese has no spaces to break
/// at in its text, and a break in text would show as a space. A line with no such space stays
/// long (and its part goes as base64).
pub(super) fn fold_html(html: String) -> String {
    if html.split('\n').all(|l| l.len() <= FOLD_AT) {
        return html;
    }
    let mut bytes = html.into_bytes();
    let (mut line_start, mut last_space) = (0, None);
    let (mut in_tag, mut quote) = (false, None);
    for i in 0..bytes.len() {
        match bytes[i] {
            b'\n' => (line_start, last_space) = (i + 1, None),
            b'<' if !in_tag => in_tag = true,
            b'>' if in_tag && quote.is_none() => in_tag = false,
            q @ (b'"' | b'\'') if in_tag => match quote {
                None => quote = Some(q),
                Some(open) if open == q => quote = None,
                Some(_) => {}
            },
            b' ' if in_tag && quote.is_none() => last_space = Some(i),
            _ => {}
        }
        if i + 1 - line_start > FOLD_AT {
            if let Some(space) = last_space.take() {
                bytes[space] = b'\n';
                line_start = space + 1;
            }
        }
    }
    // Only ASCII spaces became line feeds: still UTF-8.
    String::from_utf8(bytes).expect("folding keeps UTF-8")
}

/// Base64 in lines of 76 characters, each but the last ending in CRLF (the last too if
/// `final_break`).
pub(super) fn base64_lines(raw: &[u8], final_break: bool) -> Vec<u8> {
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
pub(super) fn base64_len(n: usize) -> usize {
    let chars = n.div_ceil(3) * 4;
    chars + chars.div_ceil(76).saturating_sub(1) * 2
}

pub(super) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A header lettre has no type for, holding its value as written.
macro_rules! text_header {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub(super) struct $name(pub(super) String);

        impl Header for $name {
            fn name() -> HeaderName {
                HeaderName::new_from_ascii_str($field)
            }
            fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
                Ok($name(s.to_string()))
            }
            fn display(&self) -> HeaderValue {
                HeaderValue::new(Self::name(), self.0.clone())
            }
        }
    };
}

text_header!(
    /// `List-Id`.
    ListId,
    "List-Id"
);
text_header!(
    /// `List-Unsubscribe`.
    ListUnsubscribe,
    "List-Unsubscribe"
);
text_header!(
    /// `List-Unsubscribe-Post` (RFC 8058); its one value is [`ONE_CLICK`].
    ListUnsubscribePost,
    "List-Unsubscribe-Post"
);

text_header!(
    /// A `From` value already written (see `with_from`).
    QuotedFrom,
    "From"
);

text_header!(
    /// A `To` value already written (see `with_to`).
    QuotedTo,
    "To"
);

/// The value of `List-Unsubscribe-Post` that asks for a one-click POST.
pub(super) const ONE_CLICK: &str = "List-Unsubscribe=One-Click";

impl Dkim {
    /// Signs a message built elsewhere (`gazette serve`'s confirmation mail).
    pub fn sign(&self, message: &mut Message) {
        message.sign(&self.config);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_html_lines_fold_only_at_spaces_between_attributes() {
        let cell = "<td class=\"a b\" style=\"color: red; margin: 0 0 1px 0\">文字 text 文字</td>";
        let html = cell.repeat(40);
        assert!(html.len() > 2 * FOLD_AT);
        let folded = fold_html(html.clone());
        assert!(folded.split('\n').all(|l| l.len() <= FOLD_AT), "{folded}");
        assert!(folded.contains('\n'));
        // Only spaces became line feeds, and only inside a tag, outside its quoted values.
        assert_eq!(folded.replace('\n', " "), html);
        for (i, b) in folded.bytes().enumerate() {
            if b == b'\n' {
                let tag = &folded[folded[..i].rfind('<').unwrap()..i];
                assert!(
                    !tag.contains('>') && tag.matches('"').count() % 2 == 0,
                    "{tag}"
                );
            }
        }
        // Text, attribute values and a line without tags stay as they are.
        let prose = "长段落没有空格可以断行。".repeat(40);
        assert_eq!(fold_html(prose.clone()), prose);
        let value = format!("<a title=\"{}\">x</a>", "a b ".repeat(400));
        assert_eq!(fold_html(value.clone()), value.replacen(' ', "\n", 1));
        let short = "<p class=\"x\">short</p>\n".repeat(3);
        assert_eq!(fold_html(short.clone()), short);
    }
}
