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
    dir.join(".gazette").join("secret")
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
