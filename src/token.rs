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
