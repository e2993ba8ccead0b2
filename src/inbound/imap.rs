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

use std::future::Future;
use std::net::ToSocketAddrs;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use async_imap::imap_proto::{AttributeValue, MailboxDatum, Response, Status};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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
        let local = is_loopback(&host);
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

/// Whether `host` is this machine. An `imap://` URL is not one the url crate knows, so its
/// `127.0.0.1` comes as a domain name, not as an address.
fn is_loopback(host: &url::Host<String>) -> bool {
    match host {
        url::Host::Domain(d) => {
            d.eq_ignore_ascii_case("localhost")
                || d.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
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

/// How long one read or write may wait without progress (a blocking socket's timeout).
const IDLE: Duration = Duration::from_secs(120);
/// How long connecting to one address may take.
const CONNECT: Duration = Duration::from_secs(15);
/// At most this many responses to one command: a server that sends more is not followed.
const MAX_RESPONSES: usize = 100_000;

async fn connect(source: &Source) -> anyhow::Result<Idle<tokio::net::TcpStream>> {
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
        let tcp = tokio::time::timeout(CONNECT, tokio::net::TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connection timed out",
                ))
            });
        match tcp {
            Ok(tcp) => return Ok(Idle::new(tcp)),
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
    // One connection, one task: a runtime on this thread only for its time.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("--imap: cannot start the network runtime")?;
    runtime.block_on(read_async(source, dry_run, bar, f))
}

async fn read_async(
    source: &Source,
    dry_run: bool,
    bar: &indicatif::ProgressBar,
    f: &mut dyn FnMut(read::Message) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let tcp = connect(source).await?;
    if !source.tls {
        return session(source, tcp, dry_run, bar, f).await;
    }
    let name = match &source.host {
        url::Host::Domain(d) => rustls_pki_types::ServerName::try_from(d.clone())
            .map_err(|e| anyhow!("--imap: {d}: not a host name ({e})"))?,
        url::Host::Ipv4(ip) => rustls_pki_types::ServerName::IpAddress((*ip).into()),
        url::Host::Ipv6(ip) => rustls_pki_types::ServerName::IpAddress((*ip).into()),
    };
    let tls = tokio_rustls::TlsConnector::from(tls_config()?)
        .connect(name, tcp)
        .await
        .map_err(|e| no_greeting(source, &e))?;
    session(source, tls, dry_run, bar, f).await
}

/// The error for a server that does not greet (or, over TLS, does not complete the handshake:
/// a blocking TLS stream does the handshake with the first read, the greeting's).
fn no_greeting(source: &Source, e: &dyn std::fmt::Display) -> anyhow::Error {
    anyhow!(
        "--imap: no IMAP greeting from {}:{} ({e}); is it an IMAP server with TLS (993)?",
        source.host,
        source.port
    )
}

async fn session<T>(
    source: &Source,
    stream: T,
    dry_run: bool,
    bar: &indicatif::ProgressBar,
    f: &mut dyn FnMut(read::Message) -> anyhow::Result<()>,
) -> anyhow::Result<()>
where
    T: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    let at = format!("{}:{}", source.host, source.port);
    let mut client = async_imap::Client::new(stream);
    match client.read_response().await {
        Ok(Some(_)) => {}
        Ok(None) => return Err(no_greeting(source, &"connection closed")),
        Err(e) => return Err(no_greeting(source, &e)),
    }
    let mut s = client
        .login(&source.user, &source.password)
        .await
        .map_err(|(e, _)| {
            anyhow!(
                "--imap: login as {} at {at} refused ({e}); check the user and {PASSWORD_VAR}",
                source.user
            )
        })?;
    let mailbox = s
        .select(&source.mailbox)
        .await
        .with_context(|| format!("--imap: cannot open mailbox {} at {at}", source.mailbox))?;
    let keywords = mailbox.permanent_flags.iter().any(|fl| match fl {
        async_imap::types::Flag::MayCreate => true,
        async_imap::types::Flag::Custom(c) => c == KEYWORD,
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
    // SEARCH, FETCH and STORE go through `command`, which fails unless the server ends them
    // with OK (async-imap's `uid_search`/`uid_fetch` end quietly on NO or BAD) and skips
    // untagged responses such as the `OK [PERMANENTFLAGS ...]` by which Dovecot announces a
    // new keyword.
    let mut uids = Vec::new();
    command(&mut s, &format!("UID SEARCH {search}"), |r| {
        if let Response::MailboxData(MailboxDatum::Search(ids)) = r {
            uids.extend_from_slice(ids);
        }
    })
    .await
    .with_context(|| format!("--imap: SEARCH failed in {}", source.mailbox))?;
    uids.sort_unstable();
    uids.dedup();
    super::reveal(bar, uids.len() as u64);
    // Sizes first (500 at a time), so a message over the limit is never fetched.
    let mut sizes = std::collections::HashMap::new();
    for chunk in uids.chunks(500) {
        let set: Vec<String> = chunk.iter().map(u32::to_string).collect();
        command(
            &mut s,
            &format!("UID FETCH {} RFC822.SIZE", set.join(",")),
            |r| {
                if let (Some(uid), Some(size)) = (
                    fetched(r, |a| match a {
                        AttributeValue::Uid(u) => Some(*u),
                        _ => None,
                    }),
                    fetched(r, |a| match a {
                        AttributeValue::Rfc822Size(n) => Some(*n),
                        _ => None,
                    }),
                ) {
                    sizes.insert(uid, u64::from(size));
                }
            },
        )
        .await
        .with_context(|| format!("--imap: FETCH of the sizes failed in {}", source.mailbox))?;
    }
    for uid in uids {
        let name = format!("{}/;UID={uid}", source.shown);
        let bytes = if sizes.get(&uid).is_some_and(|&n| n > read::MAX_BYTES) {
            None
        } else {
            let mut body = None;
            command(&mut s, &format!("UID FETCH {uid} BODY.PEEK[]"), |r| {
                let this = fetched(r, |a| match a {
                    AttributeValue::Uid(u) => Some(*u),
                    _ => None,
                }) == Some(uid);
                if let Some(b) = fetched(r, whole_body).filter(|_| this && body.is_none()) {
                    body = Some(b[..b.len().min(read::MAX_BYTES as usize)].to_vec());
                }
            })
            .await
            .with_context(|| format!("--imap: FETCH of UID {uid} failed in {}", source.mailbox))?;
            let Some(body) = body else {
                continue; // Expunged meanwhile.
            };
            Some(body)
        };
        f(read::Message {
            name,
            bytes,
            maildir_move: None,
        })?;
        if !dry_run {
            command(&mut s, &format!("UID STORE {uid} {mark}"), |_| {})
                .await
                .with_context(|| format!("--imap: cannot mark UID {uid} processed"))?;
        }
    }
    let _ = s.logout().await;
    Ok(())
}

/// Sends `command` and hands each untagged response to `each` until the tagged one, which
/// must be OK.
async fn command<T>(
    s: &mut async_imap::Session<T>,
    command: &str,
    mut each: impl FnMut(&Response<'_>),
) -> anyhow::Result<()>
where
    T: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    let tag = s.run_command(command).await?;
    for _ in 0..MAX_RESPONSES {
        let Some(response) = s.read_response().await? else {
            bail!("the server closed the connection");
        };
        match response.parsed() {
            Response::Done {
                tag: done,
                status,
                outcome,
            } if *done == tag => {
                let text = outcome.information.as_deref().unwrap_or("(no text)");
                return match status {
                    Status::Ok => Ok(()),
                    Status::No => Err(anyhow!("the server answered NO: {text}")),
                    Status::Bad => Err(anyhow!("the server answered BAD: {text}")),
                    other => Err(anyhow!("the server answered {other:?}: {text}")),
                };
            }
            other => each(other),
        }
    }
    bail!("over {MAX_RESPONSES} responses to one command; is it an IMAP server?")
}

/// The first attribute of a FETCH response that `pick` takes.
fn fetched<'r, V>(
    r: &'r Response<'_>,
    pick: impl Fn(&'r AttributeValue<'_>) -> Option<V>,
) -> Option<V> {
    match r {
        Response::Fetch(_, attrs) => attrs.iter().find_map(pick),
        _ => None,
    }
}

/// The whole message of a `BODY[]` (or `RFC822`) attribute.
fn whole_body<'r>(a: &'r AttributeValue<'_>) -> Option<&'r [u8]> {
    match a {
        AttributeValue::BodySection {
            section: None,
            data: Some(d),
            ..
        }
        | AttributeValue::Rfc822(Some(d)) => Some(d),
        _ => None,
    }
}

/// A stream whose reads and writes fail after [`IDLE`] without progress, as a blocking
/// socket's read and write timeouts do.
#[derive(Debug)]
struct Idle<S> {
    inner: S,
    read: Option<Pin<Box<tokio::time::Sleep>>>,
    write: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Idle<S> {
    fn new(inner: S) -> Idle<S> {
        Idle {
            inner,
            read: None,
            write: None,
        }
    }
}

/// `polled` as it is, unless it is pending and `timer` (started at the first wait) ran out.
fn idle<T>(
    polled: Poll<std::io::Result<T>>,
    timer: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    cx: &mut TaskContext<'_>,
) -> Poll<std::io::Result<T>> {
    if polled.is_ready() {
        *timer = None;
        return polled;
    }
    let sleep = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(IDLE)));
    match sleep.as_mut().poll(cx) {
        Poll::Ready(()) => {
            *timer = None;
            Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("nothing sent or received for {} s", IDLE.as_secs()),
            )))
        }
        Poll::Pending => Poll::Pending,
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        idle(polled, &mut this.read, cx)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        idle(polled, &mut this.write, cx)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        idle(polled, &mut this.write, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        idle(polled, &mut this.write, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(url: &str) -> url::Host<String> {
        url::Url::parse(url).unwrap().host().unwrap().to_owned()
    }

    #[test]
    fn plain_imap_is_local_only_for_loopback_hosts() {
        for url in [
            "imap://u@127.0.0.1/INBOX",
            "imap://u@127.1.2.3:1143/INBOX",
            "imap://u@localhost/INBOX",
            "imap://u@LocalHost/INBOX",
            "imap://u@[::1]/INBOX",
            "imaps://u@127.0.0.1/INBOX",
        ] {
            assert!(is_loopback(&host(url)), "{url}");
        }
        for url in [
            "imap://u@192.0.2.1/INBOX",
            "imap://u@[2001:db8::1]/INBOX",
            "imap://u@mail.example.org/INBOX",
            "imap://u@localhost.example.org/INBOX",
            "imap://u@127.0.0.1.example.org/INBOX",
        ] {
            assert!(!is_loopback(&host(url)), "{url}");
        }
        // Refused for the scheme before the password is looked at.
        let e = Source::parse("imap://u@192.0.2.1/INBOX").err().unwrap();
        assert!(e.to_string().contains("only for 127.0.0.1"), "{e}");
        if let Err(e) = Source::parse("imap://u@127.0.0.1/INBOX") {
            assert!(!e.to_string().contains("only for 127.0.0.1"), "{e}");
        }
    }
}
