//! `gazette inbound --imap URL`: the unprocessed messages of one IMAP mailbox, over TLS.
//!
//! - The URL is `imaps://user@host[:993]/MAILBOX` (`imap://` only to 127.0.0.1/localhost,
//!   where no network sees the password). The password comes from `GAZETTE_IMAP_PASSWORD`;
//!   a URL holding one is refused, and the password is never printed.
//! - The server's certificate is checked against the bundled web roots, plus the PEM
//!   certificates in the file `GAZETTE_IMAP_CA` names (a private CA); never disabled.
//! - A processed message gets the keyword `$GazetteProcessed` (or `\Seen` where the mailbox
//!   allows no keywords) and only messages without it are fetched, so a second run reads
//!   nothing again. Messages are fetched with `BODY.PEEK`, so `--dry-run` changes nothing on
//!   the server either, and one at a time, at most [`read::MAX_BYTES`] each.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};

use super::read;

/// The keyword that marks a message processed.
pub const KEYWORD: &str = "$GazetteProcessed";
/// The environment variable holding the password.
pub const PASSWORD_VAR: &str = "GAZETTE_IMAP_PASSWORD";
/// The environment variable naming a PEM file of extra trusted certificates.
pub const CA_VAR: &str = "GAZETTE_IMAP_CA";

/// Where to read: parsed from the URL and the environment, checked before anything connects.
pub struct Source {
    /// The URL as it may be printed (no password).
    shown: String,
    host: url::Host<String>,
    port: u16,
    tls: bool,
    user: String,
    password: String,
    mailbox: String,
}

impl Source {
    pub fn parse(url: &str) -> anyhow::Result<Source> {
        // The input is never echoed: it may hold a password.
        let u = url::Url::parse(url).map_err(|e| {
            anyhow!("--imap: not a URL ({e}); expected imaps://user@host:993/INBOX")
        })?;
        if u.password().is_some() {
            bail!(
                "--imap: the URL holds a password; remove it (a URL shows in `ps`, shell history \
                 and cron mail) and set {PASSWORD_VAR} instead"
            );
        }
        let host = u
            .host()
            .map(|h| h.to_owned())
            .ok_or_else(|| anyhow!("--imap: the URL names no host: imaps://user@host/INBOX"))?;
        let local = match &host {
            url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
            url::Host::Ipv4(ip) => ip.is_loopback(),
            url::Host::Ipv6(ip) => ip.is_loopback(),
        };
        let tls = match u.scheme() {
            "imaps" => true,
            "imap" if local => false,
            "imap" => bail!(
                "--imap: plain imap:// is only for 127.0.0.1 or localhost; use imaps:// for {host}"
            ),
            other => bail!("--imap: scheme {other}: is not imaps:// (imaps://user@host/INBOX)"),
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = decode(u.username());
        if user.is_empty() {
            bail!("--imap: the URL names no user: imaps://user@{host}/INBOX");
        }
        let mailbox = decode(u.path().trim_matches('/'));
        let mailbox = if mailbox.is_empty() {
            "INBOX".to_string()
        } else {
            mailbox
        };
        let password = std::env::var(PASSWORD_VAR).unwrap_or_default();
        if password.is_empty() {
            bail!("--imap: set {PASSWORD_VAR} to the password of {user} at {host}");
        }
        let port = u.port().unwrap_or(if tls { 993 } else { 143 });
        let shown = format!(
            "{}://{}@{}:{}/{}",
            u.scheme(),
            u.username(),
            host,
            port,
            mailbox
        );
        Ok(Source {
            shown,
            host,
            port,
            tls,
            user,
            password,
            mailbox,
        })
    }
}

/// The roots a server certificate is checked against: the bundled web roots and the
/// certificates in `GAZETTE_IMAP_CA`.
fn tls_config() -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = std::env::var_os(CA_VAR).filter(|p| !p.is_empty()) {
        let shown = std::path::Path::new(&path).display().to_string();
        let pem = std::fs::read(&path).with_context(|| format!("{CA_VAR}: cannot read {shown}"))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert =
                cert.map_err(|e| anyhow!("{CA_VAR}: {shown}: not PEM certificates ({e})"))?;
            roots
                .add(cert)
                .map_err(|e| anyhow!("{CA_VAR}: {shown}: unusable certificate ({e})"))?;
            added += 1;
        }
        if added == 0 {
            bail!("{CA_VAR}: {shown} holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn connect(source: &Source) -> anyhow::Result<TcpStream> {
    let host = match &source.host {
        url::Host::Ipv6(ip) => ip.to_string(),
        h => h.to_string(),
    };
    let addrs: Vec<_> = (host.as_str(), source.port)
        .to_socket_addrs()
        .with_context(|| format!("--imap: cannot resolve {host}"))?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(15)) {
            Ok(tcp) => {
                tcp.set_read_timeout(Some(Duration::from_secs(120)))?;
                tcp.set_write_timeout(Some(Duration::from_secs(120)))?;
                return Ok(tcp);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(anyhow!(
        "--imap: cannot connect to {}:{} ({}); check the host, the port and the firewall",
        source.host,
        source.port,
        last.map_or("no address".to_string(), |e| e.to_string())
    ))
}

/// Fetches every unprocessed message of the mailbox into `f`, then marks it processed
/// (unless `dry_run`).
pub fn read(
    source: &Source,
    dry_run: bool,
    bar: &indicatif::ProgressBar,
    f: &mut dyn FnMut(read::Message) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let tcp = connect(source)?;
    if !source.tls {
        return session(source, tcp, dry_run, bar, f);
    }
    let name = match &source.host {
        url::Host::Domain(d) => rustls_pki_types::ServerName::try_from(d.clone())
            .map_err(|e| anyhow!("--imap: {d}: not a host name ({e})"))?,
        url::Host::Ipv4(ip) => rustls_pki_types::ServerName::IpAddress((*ip).into()),
        url::Host::Ipv6(ip) => rustls_pki_types::ServerName::IpAddress((*ip).into()),
    };
    let conn = rustls::ClientConnection::new(tls_config()?, name).context("TLS setup")?;
    session(source, rustls::StreamOwned::new(conn, tcp), dry_run, bar, f)
}

fn session<T: Read + Write>(
    source: &Source,
    stream: T,
    dry_run: bool,
    bar: &indicatif::ProgressBar,
    f: &mut dyn FnMut(read::Message) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let at = format!("{}:{}", source.host, source.port);
    let mut client = imap::Client::new(stream);
    client.read_greeting().map_err(|e| {
        anyhow!("--imap: no IMAP greeting from {at} ({e}); is it an IMAP server with TLS (993)?")
    })?;
    let mut s = client
        .login(&source.user, &source.password)
        .map_err(|(e, _)| {
            anyhow!(
                "--imap: login as {} at {at} refused ({e}); check the user and {PASSWORD_VAR}",
                source.user
            )
        })?;
    let mailbox = s
        .select(&source.mailbox)
        .with_context(|| format!("--imap: cannot open mailbox {} at {at}", source.mailbox))?;
    let keywords = mailbox.permanent_flags.iter().any(|fl| match fl {
        imap::types::Flag::MayCreate => true,
        imap::types::Flag::Custom(c) => c == KEYWORD,
        _ => false,
    });
    let (search, mark) = if keywords {
        (
            format!("NOT KEYWORD {KEYWORD}"),
            format!("+FLAGS.SILENT ({KEYWORD})"),
        )
    } else {
        ("UNSEEN".to_string(), "+FLAGS.SILENT (\\Seen)".to_string())
    };
    // SEARCH and STORE are sent raw: Dovecot announces a new keyword with an untagged
    // `OK [PERMANENTFLAGS ...]` in their responses, which the imap crate's parser rejects.
    let raw = s
        .run_command_and_read_response(format!("UID SEARCH {search}"))
        .with_context(|| format!("--imap: SEARCH failed in {}", source.mailbox))?;
    let uids = search_uids(&raw);
    super::reveal(bar, uids.len() as u64);
    // Sizes first (500 at a time), so a message over the limit is never fetched.
    let mut sizes = std::collections::HashMap::new();
    for chunk in uids.chunks(500) {
        let set: Vec<String> = chunk.iter().map(u32::to_string).collect();
        for fetch in s.uid_fetch(set.join(","), "RFC822.SIZE")?.iter() {
            if let (Some(uid), Some(size)) = (fetch.uid, fetch.size) {
                sizes.insert(uid, u64::from(size));
            }
        }
    }
    for uid in uids {
        let name = format!("{}/;UID={uid}", source.shown);
        let bytes = if sizes.get(&uid).is_some_and(|&n| n > read::MAX_BYTES) {
            None
        } else {
            let fetched = s.uid_fetch(uid.to_string(), "BODY.PEEK[]")?;
            let Some(body) = fetched
                .iter()
                .find(|m| m.uid == Some(uid))
                .and_then(|m| m.body())
            else {
                continue; // Expunged meanwhile.
            };
            Some(body[..body.len().min(read::MAX_BYTES as usize)].to_vec())
        };
        f(read::Message {
            name,
            bytes,
            maildir_move: None,
        })?;
        if !dry_run {
            s.run_command_and_check_ok(format!("UID STORE {uid} {mark}"))
                .with_context(|| format!("--imap: cannot mark UID {uid} processed"))?;
        }
    }
    let _ = s.logout();
    Ok(())
}

/// The UIDs of untagged `* SEARCH n n n` lines, sorted.
fn search_uids(raw: &[u8]) -> Vec<u32> {
    let text = String::from_utf8_lossy(raw);
    let mut uids: Vec<u32> = text
        .lines()
        .filter_map(|l| l.strip_prefix("* SEARCH"))
        .flat_map(|rest| rest.split_whitespace().filter_map(|n| n.parse().ok()))
        .collect();
    uids.sort_unstable();
    uids.dedup();
    uids
}
