//! Unsubscribe tokens: HMAC-SHA256 over the list id and the address, so an unsubscribe link
//! works without a database lookup and cannot be forged for another address. Owns the secret's
//! loading; never writes the secret anywhere but the git-ignored `.gazette/secret`.

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

    /// The token for `address` on `list_id`: the address and its signature, URL-safe.
    pub fn token(&self, list_id: &str, address: &str) -> String {
        let tag = self.mac(list_id, address).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(address.as_bytes()),
            URL_SAFE_NO_PAD.encode(&tag[..16])
        )
    }

    /// The address a token was made for, if its signature is right.
    pub fn verify(&self, list_id: &str, token: &str) -> Option<String> {
        let (address, tag) = token.trim().split_once('.')?;
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
        // Tampering with the address invalidates the signature.
        let forged = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode("victim@example.org"),
            t.split_once('.').unwrap().1
        );
        assert_eq!(s.verify("papers.example.org", &forged), None);
        assert_eq!(s.verify("papers.example.org", "garbage"), None);
        assert!(
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        );
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
