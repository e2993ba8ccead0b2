//! Unsubscribe tokens: the address sealed with the newsletter's key (deterministic
//! authenticated encryption, SIV-style, from HMAC-SHA256), so an unsubscribe link works without
//! a database lookup, cannot be forged for another address, and reveals nothing about who it
//! belongs to (only whether the address is shorter than 32, 64, ... bytes). Links sent before
//! (the address in base64, a dot, its HMAC) are still accepted. Owns the secret's loading;
//! never writes the secret anywhere but the git-ignored `.gazette/secret`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The environment variable that holds the signing key (takes precedence over the file).
pub const SECRET_ENV: &str = "GAZETTE_SECRET";

/// Where `gazette init` writes a fresh key, inside the git-ignored `.gazette/`.
pub fn secret_path(dir: &Path) -> PathBuf {
    crate::layout::state(dir, "secret")
}

/// The key that signs unsubscribe tokens.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    /// `GAZETTE_SECRET`, else `.gazette/secret` under the newsletter directory.
    pub fn load(dir: &Path) -> anyhow::Result<Secret> {
        if let Ok(v) = std::env::var(SECRET_ENV) {
            if v.trim().len() < 16 {
                bail!("{SECRET_ENV} must hold at least 16 characters");
            }
            return Ok(Secret(v.trim().as_bytes().to_vec()));
        }
        let path = secret_path(dir);
        let text = crate::files::read_bytes(&path, 4096)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .with_context(|| {
                format!(
                    "no key to sign unsubscribe links: set {SECRET_ENV} or create {} \
                 (`gazette init` makes one; e.g. `head -c 32 /dev/urandom | base64 > {}`)",
                    path.display(),
                    path.display()
                )
            })?;
        if text.trim().len() < 16 {
            bail!("{} must hold at least 16 characters", path.display());
        }
        Ok(Secret(text.trim().as_bytes().to_vec()))
    }

    /// Writes a new random key to `.gazette/secret` unless one exists. Returns whether it wrote.
    pub fn create(dir: &Path) -> anyhow::Result<bool> {
        let path = secret_path(dir);
        if path.exists() {
            return Ok(false);
        }
        let mut bytes = [0u8; 32];
        use std::io::{Read, Write};
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .context("cannot read /dev/urandom for a new key")?;
        crate::files::create_dir_all(path.parent().expect("the secret lives in .gazette/"))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        // Readable by its owner only, from the moment it exists.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
            .open(&path)
            .and_then(|mut f| {
                f.write_all(format!("{}\n", URL_SAFE_NO_PAD.encode(bytes)).as_bytes())
            })
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(true)
    }

    fn mac(&self, list_id: &str, address: &str) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(list_id.as_bytes());
        mac.update(b"\0");
        mac.update(address.to_lowercase().as_bytes());
        mac
    }

    /// The token for `address` on `list_id`, URL-safe: 16 bytes of tag, then the address,
    /// padded to a multiple of 32 bytes, encrypted under a keystream drawn from the tag. The
    /// same address on the same list always gets the same token (the outbox is deterministic).
    pub fn token(&self, list_id: &str, address: &str) -> String {
        let mut sealed = padded(address.as_bytes());
        let tag = self.seal_tag(list_id, &sealed);
        self.keystream(&tag, &mut sealed);
        let mut bytes = tag.to_vec();
        bytes.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The address a token was made for, if it was made with this key for this list: a token
    /// of today's form, or one sent before (address in base64, `.`, HMAC).
    pub fn verify(&self, list_id: &str, token: &str) -> Option<String> {
        let token = token.trim();
        if token.contains('.') {
            return self.verify_address_token(list_id, token);
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        if bytes.len() < TAG_LEN + PAD_BLOCK
            || bytes.len() > TAG_LEN + MAX_SEALED
            || (bytes.len() - TAG_LEN) % PAD_BLOCK != 0
        {
            return None;
        }
        let (tag, sealed) = bytes.split_at(TAG_LEN);
        let tag: [u8; TAG_LEN] = tag.try_into().ok()?;
        let mut plain = sealed.to_vec();
        self.keystream(&tag, &mut plain);
        self.keyed(b"tag")
            .chain_update(list_id.as_bytes())
            .chain_update(b"\0")
            .chain_update(&plain)
            .verify_truncated_left(&tag)
            .ok()?;
        let end = plain.iter().rposition(|&b| b == 0x80)?;
        if plain[end + 1..].iter().any(|&b| b != 0) {
            return None;
        }
        plain.truncate(end);
        String::from_utf8(plain).ok()
    }

    /// A token of the form gazette sent until links became opaque: the address in base64 and
    /// a truncated HMAC. Accepted, never made.
    fn verify_address_token(&self, list_id: &str, token: &str) -> Option<String> {
        let (address, tag) = token.split_once('.')?;
        let address = String::from_utf8(URL_SAFE_NO_PAD.decode(address).ok()?).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if tag.len() != 16 {
            return None;
        }
        self.mac(list_id, &address)
            .verify_truncated_left(&tag)
            .ok()
            .map(|()| address)
    }

    /// HMAC under a key derived from the secret for one `purpose`, so the tag and the
    /// keystream never share a key (nor with the tokens sent before).
    fn keyed(&self, purpose: &[u8]) -> Hmac<Sha256> {
        let mut derive =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        derive.update(b"gazette unsubscribe token v2\0");
        derive.update(purpose);
        let key = derive.finalize().into_bytes();
        Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length")
    }

    fn seal_tag(&self, list_id: &str, padded: &[u8]) -> [u8; TAG_LEN] {
        let full = self
            .keyed(b"tag")
            .chain_update(list_id.as_bytes())
            .chain_update(b"\0")
            .chain_update(padded)
            .finalize()
            .into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    /// XORs `data` with the keystream of `tag` (HMAC in counter mode): encrypts and decrypts.
    fn keystream(&self, tag: &[u8; TAG_LEN], data: &mut [u8]) {
        let key = self.keyed(b"stream");
        for (i, chunk) in data.chunks_mut(32).enumerate() {
            let block = key
                .clone()
                .chain_update(tag)
                .chain_update((i as u32).to_be_bytes())
                .finalize()
                .into_bytes();
            for (b, k) in chunk.iter_mut().zip(block.iter()) {
                *b ^= k;
            }
        }
    }
}

/// The bytes of a token's tag.
const TAG_LEN: usize = 16;
/// Sealed addresses are padded to a multiple of this, so a token tells little of their length.
const PAD_BLOCK: usize = 32;
/// The longest sealed address a token may carry (an address has at most 254 bytes).
const MAX_SEALED: usize = 512;

/// `bytes`, then 0x80, then zeros up to a multiple of [`PAD_BLOCK`].
fn padded(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out.push(0x80);
    out.resize(out.len().div_ceil(PAD_BLOCK) * PAD_BLOCK, 0);
    out
}

// ---- confirmation tokens (double opt-in) ----

/// How long a confirmation link works.
pub const CONFIRM_DAYS: i64 = 7;

/// The prefix of every confirmation token: its purpose and format version. An unsubscribe
/// token never has it, and a confirmation token never verifies as an unsubscribe token.
const CONFIRM_PREFIX: &str = "c1.";

/// Why a confirmation token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfirmError {
    /// Not a confirmation token of this newsletter and key: forged, cut short, another
    /// purpose, another list.
    Invalid,
    /// Genuine, but older than [`CONFIRM_DAYS`].
    Expired,
}

impl Secret {
    /// A key of its own for confirmation tokens, derived from the secret, so that no MAC made
    /// for another purpose with the secret itself can ever pass for one.
    fn confirm_key(&self) -> Hmac<Sha256> {
        let mut derive =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        derive.update(b"gazette confirmation-token key v1");
        let key = derive.finalize().into_bytes();
        Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length")
    }

    /// The synthetic IV of a token: a MAC over purpose, list, expiry and address. It both
    /// authenticates the token and seeds the stream that hides the address.
    fn confirm_siv(&self, list_id: &str, expires: u64, address: &str) -> Hmac<Sha256> {
        let mut mac = self.confirm_key();
        mac.update(b"confirm\0");
        mac.update(list_id.as_bytes());
        mac.update(b"\0");
        mac.update(&expires.to_be_bytes());
        mac.update(address.as_bytes());
        mac
    }

    /// XORs `data` with a keystream made from the key and the IV (HMAC in counter mode).
    fn confirm_stream(&self, siv: &[u8], data: &mut [u8]) {
        for (i, chunk) in data.chunks_mut(32).enumerate() {
            let mut mac = self.confirm_key();
            mac.update(b"stream\0");
            mac.update(siv);
            mac.update(&(i as u32).to_be_bytes());
            let block = mac.finalize().into_bytes();
            for (b, k) in chunk.iter_mut().zip(block.iter()) {
                *b ^= k;
            }
        }
    }

    /// A token confirming `address`'s sign-up to `list_id`, valid for [`CONFIRM_DAYS`] from
    /// `now`. It names its purpose (`c1.`), and its expiry; the address inside is encrypted,
    /// so the link reveals nothing about the reader to whoever sees it.
    pub fn confirm_token(
        &self,
        list_id: &str,
        address: &str,
        now: chrono::DateTime<chrono::FixedOffset>,
    ) -> String {
        let address = address.to_lowercase();
        let expires = (now.timestamp() + CONFIRM_DAYS * 86_400).max(0) as u64;
        let siv = self
            .confirm_siv(list_id, expires, &address)
            .finalize()
            .into_bytes();
        let siv = &siv[..16];
        let mut body = address.into_bytes();
        self.confirm_stream(siv, &mut body);
        let mut raw = Vec::with_capacity(24 + body.len());
        raw.extend_from_slice(&expires.to_be_bytes());
        raw.extend_from_slice(siv);
        raw.extend_from_slice(&body);
        format!("{CONFIRM_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw))
    }

    /// The address (lowercased) a confirmation token was made for, if it is genuine, for
    /// `list_id`, and not expired at `now`.
    pub fn verify_confirm(
        &self,
        list_id: &str,
        token: &str,
        now: chrono::DateTime<chrono::FixedOffset>,
    ) -> Result<String, ConfirmError> {
        let rest = token
            .trim()
            .strip_prefix(CONFIRM_PREFIX)
            .ok_or(ConfirmError::Invalid)?;
        if rest.len() > 1024 {
            return Err(ConfirmError::Invalid);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(rest)
            .map_err(|_| ConfirmError::Invalid)?;
        if raw.len() < 8 + 16 + 3 {
            return Err(ConfirmError::Invalid);
        }
        let expires = u64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
        let siv = &raw[8..24];
        let mut body = raw[24..].to_vec();
        self.confirm_stream(siv, &mut body);
        let address = String::from_utf8(body).map_err(|_| ConfirmError::Invalid)?;
        self.confirm_siv(list_id, expires, &address)
            .verify_truncated_left(siv)
            .map_err(|_| ConfirmError::Invalid)?;
        if now.timestamp() < 0 || now.timestamp() as u64 >= expires {
            return Err(ConfirmError::Expired);
        }
        Ok(address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_only_for_its_list_and_key() {
        let s = Secret::new("0123456789abcdef0123");
        let t = s.token("papers.example.org", "Reader@Example.org");
        assert_eq!(
            s.verify("papers.example.org", &t).as_deref(),
            Some("Reader@Example.org")
        );
        assert_eq!(s.verify("other.example.org", &t), None);
        assert_eq!(
            Secret::new("another key 0123456").verify("papers.example.org", &t),
            None
        );
        // Tampering with the address of a token of the old form invalidates the signature.
        let old = legacy_token(&s, "papers.example.org", "Reader@Example.org");
        let forged = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode("victim@example.org"),
            old.split_once('.').unwrap().1
        );
        assert_eq!(s.verify("papers.example.org", &forged), None);
        assert_eq!(s.verify("papers.example.org", "garbage"), None);
        assert!(
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        );
    }

    /// A token as gazette made them before they became opaque.
    fn legacy_token(s: &Secret, list_id: &str, address: &str) -> String {
        let tag = s.mac(list_id, address).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(address.as_bytes()),
            URL_SAFE_NO_PAD.encode(&tag[..16])
        )
    }

    #[test]
    fn a_token_reveals_nothing_of_the_address() {
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};
        let s = Secret::new("0123456789abcdef0123");
        for address in [
            "reader@digest.example.org",
            "Li.Wei+news@example.com",
            "a@b.c",
            "张伟@例子.中国",
        ] {
            let t = s.token("papers.example.org", address);
            let lower = t.to_lowercase();
            let local = address.split('@').next().unwrap();
            let mut revealing = vec![address.to_string(), local.to_string()];
            for text in [address, local] {
                let b = text.as_bytes();
                revealing.extend([
                    STANDARD.encode(b),
                    STANDARD_NO_PAD.encode(b),
                    URL_SAFE.encode(b),
                    URL_SAFE_NO_PAD.encode(b),
                    b.iter().map(|b| format!("{b:02x}")).collect(),
                ]);
            }
            // Runs shorter than 5 characters turn up in random base64 by chance.
            for r in revealing.iter().filter(|r| r.len() >= 5) {
                // Base64 of a text shifts with its offset: any 4-character run of it that
                // encodes 3 whole bytes would do; the whole and its head are checked.
                let head: String = r.chars().take(8).collect();
                assert!(
                    !lower.contains(&r.to_lowercase()) && !lower.contains(&head.to_lowercase()),
                    "{address}: {t} holds {r}"
                );
            }
            assert!(!t.contains('.'), "{t}");
            assert!(
                t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
            );
            assert_eq!(s.verify("papers.example.org", &t).as_deref(), Some(address));
            // Same address, same token (deterministic output); another address, another.
            assert_eq!(t, s.token("papers.example.org", address));
            assert_ne!(t, s.token("papers.example.org", &format!("x{address}")));
        }
        // Short addresses all give tokens of one length.
        assert_eq!(
            s.token("l", "a@b.c").len(),
            s.token("l", "reader@digest.example.org").len()
        );
    }

    #[test]
    fn tokens_sent_before_still_work_and_forgeries_do_not() {
        let s = Secret::new("0123456789abcdef0123");
        let list = "papers.example.org";
        let old = legacy_token(&s, list, "Reader@Example.org");
        assert_eq!(s.verify(list, &old).as_deref(), Some("Reader@Example.org"));
        assert_eq!(s.verify("other.example.org", &old), None);
        let t = s.token(list, "reader@example.org");
        let bytes = URL_SAFE_NO_PAD.decode(&t).unwrap();
        // Every flipped bit, in the tag or the sealed address, is refused.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert_eq!(
                s.verify(list, &URL_SAFE_NO_PAD.encode(&b)),
                None,
                "byte {i}"
            );
        }
        // Cut short, lengthened, another list, another key, or made up: refused.
        let cut = URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() - 32]);
        assert_eq!(s.verify(list, &cut), None);
        let mut long = bytes.clone();
        long.extend([0u8; 32]);
        assert_eq!(s.verify(list, &URL_SAFE_NO_PAD.encode(&long)), None);
        assert_eq!(s.verify("other.example.org", &t), None);
        assert_eq!(Secret::new("another key 0123456").verify(list, &t), None);
        assert_eq!(s.verify(list, &URL_SAFE_NO_PAD.encode([0u8; 48])), None);
        assert_eq!(s.verify(list, ""), None);
        assert_eq!(s.verify(list, &"A".repeat(10_000)), None);
    }
}

#[cfg(test)]
mod confirm_tests {
    use super::*;

    fn at(s: &str) -> chrono::DateTime<chrono::FixedOffset> {
        chrono::DateTime::parse_from_rfc3339(s).unwrap()
    }

    const LIST: &str = "papers.example.org";

    #[test]
    fn a_confirm_token_verifies_for_its_list_until_it_expires() {
        let s = Secret::new("0123456789abcdef0123");
        let now = at("2026-01-01T00:00:00Z");
        let t = s.confirm_token(LIST, "Reader@Example.org", now);
        assert!(t.starts_with("c1."), "{t}");
        assert!(
            !t.to_lowercase().contains("reader") && !t.contains("UmVhZGVy"),
            "the address shows in {t}"
        );
        assert!(
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        );
        assert_eq!(
            s.verify_confirm(LIST, &t, now).as_deref(),
            Ok("reader@example.org")
        );
        assert_eq!(
            s.verify_confirm(LIST, &t, at("2026-01-07T23:59:59Z"))
                .as_deref(),
            Ok("reader@example.org")
        );
        assert_eq!(
            s.verify_confirm(LIST, &t, at("2026-01-08T00:00:00Z")),
            Err(ConfirmError::Expired)
        );
        // Another newsletter, another key.
        assert_eq!(
            s.verify_confirm("other.example.org", &t, now),
            Err(ConfirmError::Invalid)
        );
        assert_eq!(
            Secret::new("another key 0123456").verify_confirm(LIST, &t, now),
            Err(ConfirmError::Invalid)
        );
    }

    #[test]
    fn forged_truncated_and_wrong_purpose_tokens_are_refused() {
        let s = Secret::new("0123456789abcdef0123");
        let now = at("2026-01-01T00:00:00Z");
        let t = s.confirm_token(LIST, "reader@example.org", now);
        // Cut short anywhere.
        for n in [0, 3, 10, 30, t.len() - 1] {
            assert_eq!(
                s.verify_confirm(LIST, &t[..n], now),
                Err(ConfirmError::Invalid),
                "cut at {n}"
            );
        }
        // Every byte flipped in turn: expiry, IV or the address.
        let raw = URL_SAFE_NO_PAD.decode(&t[3..]).unwrap();
        for i in 0..raw.len() {
            let mut forged = raw.clone();
            forged[i] ^= 1;
            let forged = format!("c1.{}", URL_SAFE_NO_PAD.encode(&forged));
            assert_eq!(
                s.verify_confirm(LIST, &forged, now),
                Err(ConfirmError::Invalid),
                "byte {i}"
            );
        }
        // A later expiry written by hand does not verify.
        let mut later = raw.clone();
        later[..8].copy_from_slice(&u64::MAX.to_be_bytes());
        let later = format!("c1.{}", URL_SAFE_NO_PAD.encode(&later));
        assert_eq!(
            s.verify_confirm(LIST, &later, now),
            Err(ConfirmError::Invalid)
        );
        // An unsubscribe token is not a confirm token, and the other way round.
        let unsubscribe = s.token(LIST, "reader@example.org");
        assert_eq!(
            s.verify_confirm(LIST, &unsubscribe, now),
            Err(ConfirmError::Invalid)
        );
        assert_eq!(
            s.verify_confirm(LIST, &format!("c1.{unsubscribe}"), now),
            Err(ConfirmError::Invalid)
        );
        assert_eq!(s.verify(LIST, &t), None);
        assert_eq!(s.verify(LIST, &t[3..]), None);
        assert_eq!(
            s.verify_confirm(LIST, "garbage", now),
            Err(ConfirmError::Invalid)
        );
        assert_eq!(
            s.verify_confirm(LIST, &"c1.".repeat(5000), now),
            Err(ConfirmError::Invalid)
        );
    }
}

/// What a [`Secret::local_token`] is for: a token made for one purpose never verifies for
/// another (a bounce address cannot unsubscribe anyone, and the reverse).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The `+TOKEN` of the envelope sender (VERP): who a returned message was sent to.
    Bounce,
    /// The `+TOKEN` of the List-Unsubscribe mailto: who asked to leave.
    Unsubscribe,
}

/// What a local-part token names: a subscriber id and the first bytes of the SHA-256 of the
/// issue id (see [`issue_tag`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalToken {
    pub subscriber_id: i64,
    pub issue: [u8; 4],
}

/// The bytes of the issue id's SHA-256 that a local-part token carries.
pub fn issue_tag(issue_id: &str) -> [u8; 4] {
    use sha2::Digest;
    let h = Sha256::digest(issue_id.as_bytes());
    [h[0], h[1], h[2], h[3]]
}

/// The longest token [`Secret::local_token`] makes (a 9-byte id, 4 issue bytes, 8 MAC bytes).
pub const LOCAL_TOKEN_MAX: usize = 34;

/// RFC 4648 base32, lowercase, no padding: survives relays that change the case of local parts
/// and holds only letters and digits.
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[((acc >> bits) & 31) as usize] as char);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(BASE32[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn unbase32(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = BASE32.iter().position(|&x| x == c.to_ascii_lowercase())? as u32;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    // Left-over bits must be the zero padding of the last character.
    (acc == 0).then_some(out)
}

impl Secret {
    fn local_mac(&self, purpose: Purpose, list_id: &str, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(match purpose {
            Purpose::Bounce => b"gazette-bounce\0".as_slice(),
            Purpose::Unsubscribe => b"gazette-unsubscribe\0".as_slice(),
        });
        mac.update(list_id.as_bytes());
        mac.update(b"\0");
        mac.update(payload);
        mac
    }

    /// A short token for a local part (`bounces+TOKEN@…`): the subscriber id, the issue's tag
    /// and 8 bytes of HMAC-SHA256, in lowercase base32 (at most [`LOCAL_TOKEN_MAX`] characters).
    pub fn local_token(
        &self,
        purpose: Purpose,
        list_id: &str,
        subscriber_id: i64,
        issue_id: &str,
    ) -> String {
        let mut payload = Vec::with_capacity(21);
        // The id as a LEB128 varint: 2 bytes up to 16,383 subscribers.
        let mut id = subscriber_id.max(0) as u64;
        loop {
            let b = (id & 0x7f) as u8;
            id >>= 7;
            if id == 0 {
                payload.push(b);
                break;
            }
            payload.push(b | 0x80);
        }
        payload.extend_from_slice(&issue_tag(issue_id));
        let tag = self
            .local_mac(purpose, list_id, &payload)
            .finalize()
            .into_bytes();
        payload.extend_from_slice(&tag[..8]);
        base32(&payload)
    }

    /// What a local-part token names, if its signature is right (case does not matter).
    pub fn verify_local_token(
        &self,
        purpose: Purpose,
        list_id: &str,
        token: &str,
    ) -> Option<LocalToken> {
        if token.len() > LOCAL_TOKEN_MAX || token.len() < 20 {
            return None;
        }
        let bytes = unbase32(token)?;
        let split = bytes.len().checked_sub(8)?;
        let (payload, tag) = bytes.split_at(split);
        let id_len = payload.iter().position(|b| b & 0x80 == 0)? + 1;
        if payload.len() != id_len + 4 || id_len > 9 {
            return None;
        }
        self.local_mac(purpose, list_id, payload)
            .verify_truncated_left(tag)
            .ok()?;
        let mut id = 0u64;
        for (i, b) in payload[..id_len].iter().enumerate() {
            id |= u64::from(b & 0x7f) << (7 * i);
        }
        let issue = payload[id_len..].try_into().ok()?;
        Some(LocalToken {
            subscriber_id: i64::try_from(id).ok()?,
            issue,
        })
    }
}

#[cfg(test)]
mod local_token_tests {
    use super::*;

    #[test]
    fn a_local_token_is_short_lowercase_and_verifies_only_for_its_purpose() {
        let s = Secret::new("0123456789abcdef0123");
        for id in [1i64, 127, 128, 16_383, 1_000_000, i64::MAX] {
            let t = s.local_token(Purpose::Bounce, "list.example.org", id, "tag:x,2026:a");
            assert!(t.len() <= LOCAL_TOKEN_MAX, "{t}");
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            );
            let v = s
                .verify_local_token(Purpose::Bounce, "list.example.org", &t.to_uppercase())
                .expect("verifies in any case");
            assert_eq!(v.subscriber_id, id);
            assert_eq!(v.issue, issue_tag("tag:x,2026:a"));
            assert_eq!(
                s.verify_local_token(Purpose::Unsubscribe, "list.example.org", &t),
                None
            );
            assert_eq!(
                s.verify_local_token(Purpose::Bounce, "other.example.org", &t),
                None
            );
        }
        let t = s.local_token(Purpose::Bounce, "l", 42, "i");
        assert_eq!(t.len(), 21);
        // One character changed: refused.
        let mut forged = t.clone().into_bytes();
        forged[0] = if forged[0] == b'a' { b'b' } else { b'a' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(s.verify_local_token(Purpose::Bounce, "l", &forged), None);
        for junk in ["", "not a token", "0000000000000000000000", &"a".repeat(40)] {
            assert_eq!(s.verify_local_token(Purpose::Bounce, "l", junk), None);
        }
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
        assert_eq!(unbase32("MZXW6YTBOI").as_deref(), Some(&b"foobar"[..]));
    }
}
