//! The delivery pipeline: recipients -> SMTP over `concurrency` connections, the ledger row of
//! each message committed before its DATA and updated after the reply; retries with backoff,
//! an optional rate limit, a clean stop. Takes messages from a source it is given: never
//! renders one, never reads gazette.toml, never talks to the terminal beyond its progress bar.
//!
//! Crash safety: a worker asks the ledger writer to commit a `sending` row, and does not send
//! DATA until that commit is on disk. Outcomes are group-committed afterwards, but the writer
//! applies writes in the order they arrive, so a worker's next `sending` row is durable only
//! after its previous outcome is. Hence at any instant each worker has at most one durable row
//! whose outcome is not durable: a crash leaves at most `concurrency` rows in `sending`, which
//! the next run reports as `unknown`. A message is never handed to SMTP without its row.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{SmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::ClientId;
use serde::Serialize;

use crate::config::{SmtpConfig, Tls};
use crate::store::{LedgerWrite, Recipient, State, Store};

/// Overrides `[smtp] url`.
pub const URL_ENV: &str = "GAZETTE_SMTP_URL";
/// The SMTP password; never read from a file.
pub const PASSWORD_ENV: &str = "GAZETTE_SMTP_PASSWORD";

/// Attempts at one message within one run before it is left `deferred` for the next run.
pub const MAX_ATTEMPTS: u32 = 8;
/// Consecutive failed connection attempts before a run gives up on the relay.
const MAX_CONNECT_ATTEMPTS: u32 = 6;
/// Unknown outcomes in a row tolerated beyond `concurrency` (one network fault can cut every
/// connection at once); the next one stops the run.
pub const UNKNOWN_MARGIN: usize = 2;
/// Recipients read from the database at a time: memory stays flat in the list's size.
const PAGE: usize = 1000;
/// Deferred recipients held for a retry within the run; beyond this (a relay refusing
/// everything) they wait for the next run, so memory stays bounded.
const MAX_WAITING: usize = 10_000;

/// One message ready for SMTP: the envelope and the exact bytes, as the email module makes it.
pub use crate::email::Outgoing;

/// Makes the message for one recipient.
pub type Source<'a> = &'a (dyn Fn(&Recipient) -> anyhow::Result<Outgoing> + Sync);

/// Where and how to connect, resolved from `[smtp]` and the environment.
pub struct Server {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    credentials: Option<Credentials>,
    pub timeout: Duration,
    /// Whether the server announced PIPELINING (RFC 2920) on the last connection.
    pipelining: AtomicBool,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} ({:?})", self.host, self.port, self.tls)
    }
}

impl Server {
    /// `[smtp]` with `GAZETTE_SMTP_URL` and `GAZETTE_SMTP_PASSWORD` applied. Refuses to send a
    /// password in clear text to anything but this machine.
    pub fn resolve(smtp: &SmtpConfig) -> anyhow::Result<Server> {
        let (url_text, origin) = match std::env::var(URL_ENV) {
            Ok(u) => (u, URL_ENV),
            Err(_) => (smtp.url.clone(), "smtp.url"),
        };
        if crate::config::has_userinfo(&url_text) {
            bail!(
                "{origin} must not hold a user name or password (it would be ignored): put the \
                 password in {PASSWORD_ENV}, the user in smtp.username, and give the URL as `{}`",
                crate::config::without_userinfo(&url_text)
            );
        }
        let url = url::Url::parse(&url_text)
            .with_context(|| format!("`{url_text}` is not an SMTP URL"))?;
        let tls = match url.scheme() {
            "smtps" => Tls::Tls,
            "smtp" => smtp.tls,
            other => bail!("`{url_text}`: unknown scheme `{other}`; use smtp:// or smtps://"),
        };
        let host = url
            .host_str()
            .with_context(|| format!("`{url_text}` names no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url
            .port()
            .unwrap_or(if tls == Tls::Tls { 465 } else { 587 });
        let password = std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty());
        let credentials = match (&smtp.username, password) {
            (None, None) => None,
            (Some(user), Some(password)) => Some(Credentials::new(user.clone(), password)),
            (Some(user), None) => bail!(
                "smtp.username is `{user}` but {PASSWORD_ENV} is not set; export the password in the environment"
            ),
            (None, Some(_)) => bail!("{PASSWORD_ENV} is set but smtp.username is not"),
        };
        if credentials.is_some() && tls == Tls::None && !is_loopback(&host) {
            bail!(
                "refusing to send the SMTP password in clear text to {host}: set smtp.tls = \"starttls\" or \"tls\""
            );
        }
        Ok(Server {
            host,
            port,
            tls,
            credentials,
            timeout: smtp.timeout,
            pipelining: AtomicBool::new(false),
        })
    }

    /// Opens one connection: greeting, EHLO, STARTTLS or TLS, AUTH, each within the timeout.
    pub fn connect(&self) -> Result<Conn, Failure> {
        let hello = ClientId::default();
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| Failure::Transient(format!("cannot resolve {}: {e}", self.host)))?
            .next()
            .ok_or_else(|| Failure::Transient(format!("{} has no address", self.host)))?;
        let params = || {
            TlsParameters::new_rustls(self.host.clone())
                .map_err(|e| Failure::Fatal(format!("TLS setup for {}: {e}", self.host)))
        };
        let implicit = match self.tls {
            Tls::Tls => Some(params()?),
            _ => None,
        };
        let (guard, local) = Guard::start(addr, self.timeout).map_err(|e| {
            let why = if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                no_answer(self.timeout)
            } else {
                e.to_string()
            };
            Failure::Transient(format!(
                "cannot connect to {}:{}: {why}",
                self.host, self.port
            ))
        })?;
        // lettre's own timeout (per read) only backs up the guard's deadline.
        let backstop = self.timeout * 2 + Duration::from_secs(1);
        guard.arm(self.timeout, HANDSHAKE_BYTES);
        let smtp = SmtpConnection::connect(local, Some(backstop), &hello, implicit.as_ref(), None);
        guard.disarm();
        let smtp = match smtp {
            Ok(smtp) => smtp,
            Err(e) => {
                let words = match guard.cut() {
                    Some(Cut::Deadline) => no_answer(self.timeout),
                    Some(Cut::TooLarge(n)) => {
                        format!("its greeting and EHLO reply were longer than {n} bytes")
                    }
                    None if timed_out(&e) => no_answer(self.timeout),
                    None => chain(&e),
                };
                return Err(if e.is_tls() {
                    Failure::Fatal(format!(
                        "TLS with {}:{} failed: {words}",
                        self.host, self.port
                    ))
                } else {
                    Failure::Transient(format!(
                        "cannot connect to {}:{}: {words}",
                        self.host, self.port
                    ))
                });
            }
        };
        let mut conn = Conn {
            smtp,
            guard,
            timeout: self.timeout,
        };
        if self.tls == Tls::Starttls {
            if !conn.smtp.can_starttls() {
                conn.abort();
                return Err(Failure::Fatal(format!(
                    "{}:{} does not offer STARTTLS; set smtp.tls = \"none\" only for a relay on this machine",
                    self.host, self.port
                )));
            }
            let tls = params()?;
            conn.guarded(HANDSHAKE_BYTES, |s| s.starttls(&tls, &hello))
                .map_err(|e| {
                    Failure::Fatal(format!(
                        "STARTTLS with {} failed: {}",
                        self.host,
                        conn.explain(&e)
                    ))
                })?;
        }
        // lettre keeps only the extensions it knows: ask again to learn about PIPELINING.
        // (Before AUTH, where a second EHLO is always allowed.)
        let pipelining = conn.command(Ehlo::new(hello.clone())).is_ok_and(|r| {
            r.message().any(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|w| w.eq_ignore_ascii_case("PIPELINING"))
            })
        });
        self.pipelining.store(pipelining, Ordering::Relaxed);
        if let Some(credentials) = &self.credentials {
            conn.guarded(REPLY_BYTES, |s| {
                s.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
            })
            .map_err(|e| {
                Failure::Fatal(format!(
                    "{} refused the login: {}",
                    self.host,
                    conn.explain(&e)
                ))
            })?;
        }
        Ok(conn)
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// An error and its causes on one line (lettre keeps the server's words in the causes).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}

/// The bytes a reply to one command may have on the wire (TLS included): a relay sending an
/// endless reply is cut off, and lettre, which parses a reply again after each of its lines,
/// never sees one large enough to take long.
pub const REPLY_BYTES: usize = 16 * 1024;
/// The same for the greeting and first EHLO, or a TLS handshake (certificates are large).
const HANDSHAKE_BYTES: usize = 256 * 1024;

/// Why a guard cut a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    Deadline,
    /// The reply had more than this many bytes.
    TooLarge(usize),
}

/// A deadline and a size bound for each command, which lettre cannot give: it applies its
/// timeout to each read, so a relay sending a byte a second holds it forever. lettre talks to
/// a loopback socket that a guard thread relays to the relay's socket, which it owns: while a
/// command is armed it forwards what the relay says, and cuts both sockets when the deadline
/// passes or the reply outgrows its bound. Between commands nothing is forwarded.
struct Guard {
    shared: std::sync::Arc<GuardShared>,
    /// The relay's socket, to cut it from the worker's side.
    upstream: std::net::TcpStream,
}

struct GuardShared {
    state: Mutex<GuardState>,
    wake: Condvar,
}

#[derive(Default)]
struct GuardState {
    /// The deadline of the command in progress, the bytes its reply may still have, and the
    /// bound it started with.
    armed: Option<(Instant, usize, usize)>,
    cut: Option<Cut>,
    closed: bool,
}

impl Guard {
    /// Connects to `addr` and listens on a loopback port for lettre; returns the port's
    /// address to give lettre.
    fn start(
        addr: std::net::SocketAddr,
        timeout: Duration,
    ) -> std::io::Result<(Guard, std::net::SocketAddr)> {
        let upstream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        upstream.set_nodelay(true)?;
        let listener = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))?;
        let local = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let shared = std::sync::Arc::new(GuardShared {
            state: Mutex::new(GuardState::default()),
            wake: Condvar::new(),
        });
        let guard = Guard {
            shared: shared.clone(),
            upstream: upstream.try_clone()?,
        };
        std::thread::Builder::new()
            .name("smtp-guard".into())
            .spawn(move || {
                // lettre connects at once; give up (and so fail its connect) after `timeout`.
                let until = Instant::now() + timeout;
                let client = loop {
                    match listener.accept() {
                        Ok((c, _)) => break c,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            if Instant::now() > until {
                                return;
                            }
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err(_) => return,
                    }
                };
                drop(listener);
                let _ = pump(&shared, client, upstream);
            })?;
        Ok((guard, local))
    }

    /// Starts a command: its reply must come within `timeout` and `bytes`.
    fn arm(&self, timeout: Duration, bytes: usize) {
        let mut s = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        s.armed = Some((Instant::now() + timeout, bytes, bytes));
        drop(s);
        self.shared.wake.notify_all();
    }

    fn disarm(&self) {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .armed = None;
    }

    fn cut(&self) -> Option<Cut> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .cut
    }

    /// Ends the connection now.
    fn close(&self) {
        let mut s = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        s.closed = true;
        drop(s);
        self.shared.wake.notify_all();
        let _ = self.upstream.shutdown(std::net::Shutdown::Both);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.close();
    }
}

/// Relays between lettre (`client`) and the relay (`upstream`) until either side closes.
fn pump(
    shared: &GuardShared,
    client: std::net::TcpStream,
    upstream: std::net::TcpStream,
) -> std::io::Result<()> {
    use std::io::{Read, Write};
    client.set_nodelay(true)?;
    // lettre to the relay: everything, as it comes (lettre writes only its commands).
    let (mut from_client, mut to_upstream) = (client.try_clone()?, upstream.try_clone()?);
    std::thread::Builder::new()
        .name("smtp-guard-up".into())
        .spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n @ 1..) = from_client.read(&mut buf) {
                if to_upstream.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to_upstream.shutdown(std::net::Shutdown::Write);
        })?;
    // The relay to lettre: only while a command is armed, within its deadline and bound.
    let (mut from_upstream, to_client) = (upstream, client);
    let mut buf = vec![0u8; 8 * 1024];
    let end = |why: Option<Cut>| {
        let mut s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.cut.is_none() {
            s.cut = why;
        }
        drop(s);
        // lettre's read ends at once.
        let _ = to_client.shutdown(std::net::Shutdown::Both);
    };
    loop {
        let (deadline, limit) = {
            let mut s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if s.closed {
                    drop(s);
                    end(None);
                    return Ok(());
                }
                if let Some((deadline, _, limit)) = s.armed {
                    break (deadline, limit);
                }
                s = shared.wake.wait(s).unwrap_or_else(|e| e.into_inner());
            }
        };
        let now = Instant::now();
        if now >= deadline {
            end(Some(Cut::Deadline));
            let _ = from_upstream.shutdown(std::net::Shutdown::Both);
            return Ok(());
        }
        let wait = (deadline - now).min(Duration::from_millis(200));
        from_upstream.set_read_timeout(Some(wait))?;
        match from_upstream.read(&mut buf) {
            Ok(0) => {
                end(None);
                return Ok(());
            }
            Ok(n) => {
                let mut s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((_, left, _)) = s.armed.as_mut() {
                    if n > *left {
                        drop(s);
                        end(Some(Cut::TooLarge(limit)));
                        let _ = from_upstream.shutdown(std::net::Shutdown::Both);
                        return Ok(());
                    }
                    *left -= n;
                }
                drop(s);
                (&to_client).write_all(&buf[..n])?;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => {
                end(None);
                return Ok(());
            }
        }
    }
}

/// An SMTP connection behind its guard: each command has a deadline and a bounded reply.
pub struct Conn {
    smtp: SmtpConnection,
    guard: Guard,
    timeout: Duration,
}

impl Conn {
    fn guarded<R>(
        &mut self,
        bytes: usize,
        f: impl FnOnce(&mut SmtpConnection) -> Result<R, lettre::transport::smtp::Error>,
    ) -> Result<R, lettre::transport::smtp::Error> {
        self.guard.arm(self.timeout, bytes);
        let r = f(&mut self.smtp);
        self.guard.disarm();
        r
    }

    fn command(
        &mut self,
        c: impl fmt::Display,
    ) -> Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error> {
        self.guarded(REPLY_BYTES, |s| s.command(c))
    }

    fn read_response(
        &mut self,
    ) -> Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error> {
        self.guarded(REPLY_BYTES, |s| s.read_response())
    }

    fn message(
        &mut self,
        bytes: &[u8],
    ) -> Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error> {
        self.guarded(REPLY_BYTES, |s| s.message(bytes))
    }

    fn quit(&mut self) {
        let _ = self.command(lettre::transport::smtp::commands::Quit);
        self.abort();
    }

    /// Drops the connection without waiting for anything.
    fn abort(&mut self) {
        self.guard.close();
        self.smtp.abort();
    }

    /// An error in words, with a deadline or a size bound that cut the reply said plainly
    /// (not as "Resource temporarily unavailable").
    fn explain(&self, e: &lettre::transport::smtp::Error) -> String {
        match self.guard.cut() {
            Some(Cut::Deadline) => no_answer(self.timeout),
            Some(Cut::TooLarge(limit)) => {
                format!("the relay's reply was longer than {limit} bytes (cut off)")
            }
            None if timed_out(e) => no_answer(self.timeout),
            None => chain(e),
        }
    }
}

fn no_answer(timeout: Duration) -> String {
    format!("the relay did not answer within {} s", timeout.as_secs())
}

/// Whether an error is a read or write that timed out.
fn timed_out(e: &lettre::transport::smtp::Error) -> bool {
    matches!(
        io_kind(e),
        Some(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
    )
}

/// Why something did not work, and what that means for the run.
#[derive(Clone, Debug)]
pub enum Failure {
    /// Try again later (4xx, a dropped or refused connection).
    Transient(String),
    /// Stop the whole run now (authentication, TLS, the ledger).
    Fatal(String),
}

/// How a run is asked to behave.
#[derive(Clone, Debug)]
pub struct Options {
    pub concurrency: usize,
    /// Messages per second over all connections; 0 = unlimited.
    pub rate: f64,
    pub retry_unknown: bool,
    pub progress: bool,
    /// The first retry's delay; later ones double, up to 32 times this.
    pub backoff: Duration,
    /// Whether a `sending` row must reach the disk, or only the operating system, before DATA.
    pub ledger_sync: crate::config::LedgerSync,
}

/// What a run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub issue: String,
    /// Recipients this run set out to reach.
    pub recipients: u64,
    pub sent: u64,
    pub failed: u64,
    pub bounced: u64,
    /// Left for the next run after transient failures.
    pub deferred: u64,
    /// Outcome unknown (421 after the final dot, a reply that never came); not re-sent
    /// unless `--retry-unknown`.
    pub unknown: u64,
    /// Rows left `sending` by an earlier run that died, now counted as unknown.
    pub interrupted_before: u64,
    /// Recipients never attempted because the run stopped.
    pub not_attempted: u64,
    /// Recipients counted at the start that were no longer active when their turn came
    /// (unsubscribed during the run): not sent, nothing recorded in the ledger.
    pub skipped: u64,
    pub stopped: Option<String>,
    pub interrupted: bool,
    pub seconds: f64,
}

impl Report {
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.sent as f64 / self.seconds
        } else {
            0.0
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} sent, {} failed, {} bounced, {} deferred, {} unknown in {:.1}s ({:.0}/s)",
            self.issue,
            self.sent,
            self.failed,
            self.bounced,
            self.deferred,
            self.unknown,
            self.seconds,
            self.rate()
        )?;
        if self.not_attempted > 0 {
            write!(f, "; {} not attempted", self.not_attempted)?;
        }
        if self.skipped > 0 {
            write!(
                f,
                "; {} skipped (unsubscribed during the run)",
                self.skipped
            )?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    bounced: AtomicU64,
    deferred: AtomicU64,
    unknown: AtomicU64,
    skipped: AtomicU64,
}

/// Recipients for the workers: pages read from the database in subscriber order, plus
/// deferred ones waiting for their backoff.
struct Queue {
    state: Mutex<QueueState>,
    wake: Condvar,
}

struct QueueState {
    reader: Store,
    issue_id: String,
    retry_unknown: bool,
    after: i64,
    page: VecDeque<Recipient>,
    exhausted: bool,
    retries: BinaryHeap<Reverse<(Instant, i64)>>,
    waiting: std::collections::HashMap<i64, Held>,
    /// Recipients held by workers: they may come back as retries.
    held: usize,
}

/// A recipient in a worker's hands, with the attempts this run made at it.
struct Held {
    recipient: Recipient,
    /// Attempts in this run only: MAX_ATTEMPTS is per run (the ledger counts all runs).
    tries: u32,
}

impl Queue {
    /// The next recipient, waiting for retries that are due; None when everything is done
    /// or the run is stopping.
    fn next(&self, stopping: impl Fn() -> bool) -> anyhow::Result<Option<Held>> {
        let mut s = self.state.lock().expect("queue lock");
        loop {
            if stopping() {
                return Ok(None);
            }
            let now = Instant::now();
            if let Some(Reverse((_, id))) = s.retries.peek().copied().filter(|r| r.0.0 <= now) {
                s.retries.pop();
                let r = s.waiting.remove(&id).expect("a retry has its recipient");
                s.held += 1;
                return Ok(Some(r));
            }
            if s.page.is_empty() && !s.exhausted {
                let page = s
                    .reader
                    .recipients_page(&s.issue_id, s.after, PAGE, s.retry_unknown)?;
                s.exhausted = page.len() < PAGE;
                if let Some(last) = page.last() {
                    s.after = last.id;
                }
                s.page = page.into();
            }
            if let Some(recipient) = s.page.pop_front() {
                s.held += 1;
                return Ok(Some(Held {
                    recipient,
                    tries: 0,
                }));
            }
            if s.retries.is_empty() && s.held == 0 {
                return Ok(None);
            }
            let wait = s
                .retries
                .peek()
                .map_or(Duration::from_millis(200), |Reverse((due, _))| {
                    due.saturating_duration_since(now)
                })
                .min(Duration::from_millis(200));
            s = self.wake.wait_timeout(s, wait).expect("queue lock").0;
        }
    }

    /// A worker is done with a recipient; `retry_at` puts it back unless too many wait.
    /// Returns whether it was put back.
    fn done(&self, r: Held, retry_at: Option<Instant>) -> bool {
        let mut s = self.state.lock().expect("queue lock");
        s.held -= 1;
        let mut requeued = false;
        if let Some(at) = retry_at.filter(|_| s.waiting.len() < MAX_WAITING) {
            s.retries.push(Reverse((at, r.recipient.id)));
            s.waiting.insert(r.recipient.id, r);
            requeued = true;
        }
        drop(s);
        self.wake.notify_all();
        requeued
    }
}

/// A ledger write, with where to say when it is on disk: `Ok(false)` when a `sending` row
/// was refused because the subscriber is no longer active (the message must not go out).
type Job = (LedgerWrite, Option<mpsc::SyncSender<Result<bool, String>>>);

/// The single writer of the ledger: commits writes in batches, in arrival order.
struct Ledger {
    tx: mpsc::Sender<Job>,
}

impl Ledger {
    /// Queues an outcome; it is committed with the next batch, before any later `sending` row.
    fn record(&self, w: LedgerWrite) {
        let _ = self.tx.send((w, None));
    }
}

fn write_ledger(mut store: Store, issue_id: &str, rx: mpsc::Receiver<Job>) -> Result<(), String> {
    let mut failed: Option<String> = None;
    let mut writes = Vec::new();
    let mut acks = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some((w, ack)) = next {
            acks.extend(ack.map(|a| (w.subscriber_id, a)));
            writes.push(w);
            next = if writes.len() < 4096 {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        let mut skipped = Vec::new();
        if failed.is_none() {
            match store.apply(issue_id, &writes) {
                Ok(s) => skipped = s,
                Err(e) => failed = Some(format!("{e:#}")),
            }
        }
        for (id, a) in acks.drain(..) {
            let _ = a.send(match &failed {
                Some(e) => Err(e.clone()),
                None => Ok(!skipped.contains(&id)),
            });
        }
        writes.clear();
    }
    failed.map_or(Ok(()), Err)
}

/// The time between messages at `rate` per second, never longer than the slowest rate
/// gazette.toml accepts (`Duration::from_secs_f64` panics on one too long for a Duration).
fn pace_interval(rate: f64) -> Duration {
    let slowest = Duration::from_secs_f64(1.0 / crate::config::MIN_RATE);
    Duration::try_from_secs_f64(1.0 / rate).map_or(slowest, |d| d.min(slowest))
}

/// Messages per second over all workers.
struct Pace {
    interval: Option<Duration>,
    next: Mutex<Instant>,
}

impl Pace {
    fn wait(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let at = {
            let mut next = self.next.lock().expect("pace lock");
            let at = (*next).max(Instant::now());
            *next = at + interval;
            at
        };
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
    }
}

/// What became of one message.
enum Outcome {
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
fn deliver(
    conn: &mut Conn,
    msg: &Outgoing,
    pipelining: bool,
    before_data: impl FnOnce() -> Result<(), Failure>,
) -> Result<(Outcome, bool), Failure> {
    // gazette makes 7-bit messages only (email.rs encodes every part), to ASCII addresses
    // only (store.rs and `deliverable` refuse others): no 8BITMIME or SMTPUTF8 needed.
    debug_assert!(msg.bytes.is_ascii(), "a message with 8-bit bytes");
    debug_assert!(
        AsRef::<str>::as_ref(&msg.from).is_ascii() && AsRef::<str>::as_ref(&msg.to).is_ascii(),
        "a non-ASCII address"
    );
    let params = Vec::new();
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
struct Wire<'a>(&'a str);

impl fmt::Display for Wire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A message as DATA lines: a dot doubled at the start of a line, then the final dot.
fn data_lines(text: &str) -> String {
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

fn reply_text(r: &lettre::transport::smtp::response::Response) -> String {
    format!("{} {}", r.code(), r.message().collect::<Vec<_>>().join(" "))
}

/// The command a refusal answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Mail,
    Rcpt,
    Data,
    /// The final dot.
    Dot,
}

/// A reply to MAIL, RCPT or DATA: the message was not accepted, whatever happened.
fn refused_early(
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
fn permanent(stage: Stage, msg: &Outgoing, words: String) -> Outcome {
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
fn enhanced_code(words: &str) -> Option<String> {
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
fn after_dot(
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

fn io_kind(e: &lettre::transport::smtp::Error) -> Option<std::io::ErrorKind> {
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
fn is_no_such_user(words: &str) -> bool {
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
fn deliverable(email: &str) -> Result<(), String> {
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

/// Permanent refusals in a row, all alike, that stop a run which has had nothing accepted.
const SAME_REFUSALS: usize = 20;

/// A safety net: when the first outcomes of a run are all permanent refusals with the same
/// reply, the fault is the relay's or the configuration's, not the recipients'.
#[derive(Default)]
struct Net {
    state: Mutex<NetState>,
}

#[derive(Default)]
struct NetState {
    disarmed: bool,
    reply: String,
    count: usize,
}

impl Net {
    /// Notes an outcome; returns why the run must stop, if it must.
    fn observe(&self, outcome: &Outcome) -> Option<String> {
        let mut s = self.state.lock().expect("net lock");
        if s.disarmed {
            return None;
        }
        let words = match outcome {
            Outcome::Failed(w) | Outcome::Bounced(w) => w,
            Outcome::Deferred(_) | Outcome::Unknown(_) | Outcome::Stop(_) => return None,
            Outcome::Sent(_) => {
                s.disarmed = true;
                return None;
            }
        };
        let reply = without_addresses(words);
        if s.count > 0 && s.reply != reply {
            s.disarmed = true;
            return None;
        }
        s.reply = reply;
        s.count += 1;
        if s.count < SAME_REFUSALS {
            return None;
        }
        s.disarmed = true;
        Some(format!(
            "the first {SAME_REFUSALS} messages were all refused with the same reply ({words}) and \
             none was accepted: that looks like the relay or the configuration, not the \
             subscribers; check them (`gazette status` lists the refused rows)"
        ))
    }
}

/// Unknown outcomes in a row: a relay that answers 421 to every final dot, or never answers
/// it, would otherwise leave every message of the run unknown. More than `limit` in a row
/// stops the run; any definite outcome resets the count. A run so stopped has at most
/// `limit + concurrency` unknown rows (the other connections finish the message in hand).
struct Streak {
    limit: usize,
    slug: String,
    count: Mutex<usize>,
}

impl Streak {
    /// Notes an outcome; returns why the run must stop, if it must.
    fn observe(&self, outcome: &Outcome) -> Option<String> {
        let mut count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        let Outcome::Unknown(words) = outcome else {
            *count = 0;
            return None;
        };
        *count += 1;
        (*count == self.limit + 1).then(|| {
            format!(
                "{} messages in a row have an unknown outcome (the last: {words}); the \
                 relay may be storing them or losing them, so no more are sent; check the \
                 relay, then `gazette status {slug}` lists them and `gazette send {slug} \
                 --retry-unknown` sends them again with the same Message-ID",
                *count,
                slug = self.slug
            )
        })
    }
}

/// A reply with the addresses in it left out, so that replies to different recipients compare.
fn without_addresses(words: &str) -> String {
    words
        .split_whitespace()
        .filter(|w| !w.contains('@'))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A fatal problem stops the run; the first one wins.
#[derive(Default)]
struct Stop {
    requested: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl Stop {
    fn fatal(&self, reason: String) {
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            *r = Some(reason);
        }
        self.requested.store(true, Ordering::SeqCst);
    }
}

/// Delivers one issue to every recipient the ledger says still needs it.
/// `interrupt` is set by Ctrl-C: the workers finish the message in hand and stop.
#[allow(clippy::too_many_arguments)]
pub fn run(
    dir: &Path,
    issue_id: &str,
    slug: &str,
    server: &Server,
    source: Source<'_>,
    options: &Options,
    interrupt: &AtomicBool,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let store = Store::open(dir)?;
    if options.ledger_sync == crate::config::LedgerSync::Normal {
        store.relax_sync()?;
    }
    let interrupted_before = store.settle_interrupted(issue_id)?;
    let total = store.count_recipients(issue_id, options.retry_unknown)?;
    let mut report = Report {
        issue: slug.to_string(),
        recipients: total,
        interrupted_before,
        ..Report::default()
    };
    if total == 0 {
        report.unknown = store.counts(issue_id)?.unknown;
        return Ok(report);
    }
    // One connection first: a wrong password or broken TLS stops here, before any row.
    let first = server.connect().map_err(|f| match f {
        Failure::Fatal(m) | Failure::Transient(m) => anyhow::anyhow!(m),
    })?;

    let queue = Queue {
        state: Mutex::new(QueueState {
            reader: Store::open(dir)?,
            issue_id: issue_id.to_string(),
            retry_unknown: options.retry_unknown,
            after: 0,
            page: VecDeque::new(),
            exhausted: false,
            retries: BinaryHeap::new(),
            waiting: Default::default(),
            held: 0,
        }),
        wake: Condvar::new(),
    };
    let bar = if options.progress {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {rate} ETA {eta}",
            )
            .expect("a valid template")
            .with_key("rate", crate::rounded_rate),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let counters = Counters::default();
    let stop = Stop::default();
    let net = Net::default();
    let streak = Streak {
        limit: options.concurrency + UNKNOWN_MARGIN,
        slug: slug.to_string(),
        count: Mutex::new(0),
    };
    let pace = Pace {
        interval: (options.rate > 0.0).then(|| pace_interval(options.rate)),
        next: Mutex::new(Instant::now()),
    };
    let (tx, rx) = mpsc::channel();
    let ledger_result = std::thread::scope(|scope| {
        let writer = scope.spawn(move || write_ledger(store, issue_id, rx));
        let mut first = Some(first);
        let workers: Vec<_> = (0..options.concurrency)
            .map(|_| {
                let conn = first.take();
                let ledger = Ledger { tx: tx.clone() };
                let ctx = Worker {
                    server,
                    source,
                    queue: &queue,
                    ledger,
                    counters: &counters,
                    stop: &stop,
                    interrupt,
                    pace: &pace,
                    bar: &bar,
                    backoff: options.backoff,
                    net: &net,
                    streak: &streak,
                };
                let stop = &stop;
                scope.spawn(move || {
                    // A panic must stop the run at once: the recipient it held would never be
                    // handed back, and the other workers would wait for it.
                    let run = std::panic::AssertUnwindSafe(|| ctx.run(conn));
                    if let Err(panic) = std::panic::catch_unwind(run) {
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        stop.fatal(format!("a worker thread panicked: {what}"));
                    }
                })
            })
            .collect();
        drop(tx);
        for w in workers {
            if w.join().is_err() {
                stop.fatal("a worker thread panicked".into());
            }
        }
        writer
            .join()
            .unwrap_or_else(|_| Err("the ledger writer panicked".into()))
    });
    bar.finish_and_clear();
    if let Err(e) = ledger_result {
        stop.fatal(format!("the ledger could not be written: {e}"));
    }
    let get = |c: &AtomicU64| c.load(Ordering::SeqCst);
    report.sent = get(&counters.sent);
    report.failed = get(&counters.failed);
    report.bounced = get(&counters.bounced);
    report.unknown = get(&counters.unknown);
    report.skipped = get(&counters.skipped);
    report.interrupted = interrupt.load(Ordering::SeqCst);
    report.stopped = stop
        .reason
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    // The lock is poisoned if a worker panicked while holding it: the count is still right.
    let deferred_waiting = queue
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .waiting
        .len() as u64;
    report.deferred = get(&counters.deferred) + deferred_waiting;
    let handled = report.sent
        + report.failed
        + report.bounced
        + report.unknown
        + report.deferred
        + report.skipped;
    report.not_attempted = total.saturating_sub(handled);
    // A run that went to the end read every page: a recipient counted at the start and never
    // handed out was no longer active when its page was read (unsubscribed during the run).
    if report.stopped.is_none() && !report.interrupted {
        report.skipped += report.not_attempted;
        report.not_attempted = 0;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

struct Worker<'a> {
    server: &'a Server,
    source: Source<'a>,
    queue: &'a Queue,
    ledger: Ledger,
    counters: &'a Counters,
    stop: &'a Stop,
    interrupt: &'a AtomicBool,
    pace: &'a Pace,
    bar: &'a ProgressBar,
    backoff: Duration,
    net: &'a Net,
    streak: &'a Streak,
}

impl Worker<'_> {
    fn stopping(&self) -> bool {
        self.stop.requested.load(Ordering::SeqCst) || self.interrupt.load(Ordering::SeqCst)
    }

    /// A connection, reconnecting with backoff; None when the run must stop.
    fn connection(&self, conn: &mut Option<Conn>) -> bool {
        let mut tries = 0;
        while conn.is_none() {
            if self.stopping() {
                return false;
            }
            match self.server.connect() {
                Ok(c) => *conn = Some(c),
                Err(Failure::Fatal(m)) => {
                    self.stop.fatal(m);
                    return false;
                }
                Err(Failure::Transient(m)) => {
                    tries += 1;
                    if tries >= MAX_CONNECT_ATTEMPTS {
                        self.stop
                            .fatal(format!("gave up after {tries} attempts to connect: {m}"));
                        return false;
                    }
                    self.sleep(self.backoff * 2u32.pow(tries.min(5)));
                }
            }
        }
        true
    }

    fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.stopping() {
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
        }
    }

    fn run(self, mut conn: Option<Conn>) {
        loop {
            if self.stopping() || !self.connection(&mut conn) {
                break;
            }
            let mut recipient = match self.queue.next(|| self.stopping()) {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    self.stop
                        .fatal(format!("cannot read the recipients: {e:#}"));
                    break;
                }
            };
            let retry = self.one(&mut conn, &mut recipient);
            if !self.queue.done(recipient, retry) && retry.is_some() {
                self.counters.deferred.fetch_add(1, Ordering::SeqCst);
                self.bar.inc(1);
            }
        }
        if let Some(mut c) = conn {
            c.quit();
        }
    }

    /// Sends to one recipient; returns when to try again, if ever.
    fn one(&self, conn: &mut Option<Conn>, held: &mut Held) -> Option<Instant> {
        // The message's Date is the moment it is first handed to SMTP; the ledger keeps it, so
        // a message sent again (deferred, or --retry-unknown) has the same bytes.
        let date = held
            .recipient
            .date
            .get_or_insert_with(|| {
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            })
            .clone();
        let r = &held.recipient;
        let (id, email) = (r.id, r.email.clone());
        let write = |state, message_id: &str, attempt, reply: Option<String>| LedgerWrite {
            subscriber_id: id,
            email: email.clone(),
            state,
            message_id: message_id.to_string(),
            attempt,
            reply,
            date: Some(date.clone()),
        };
        // An address no message can go to fails on its own; any other error making the
        // message (a template, the DKIM key) would fail every recipient alike: stop the run.
        if let Err(why) = deliverable(&r.email) {
            self.ledger
                .record(write(State::Failed, "", false, Some(why)));
            self.counters.failed.fetch_add(1, Ordering::SeqCst);
            self.bar.inc(1);
            return None;
        }
        let msg = match (self.source)(r) {
            Ok(m) => m,
            Err(e) => {
                self.stop
                    .fatal(format!("cannot make the message for {}: {e:#}", r.email));
                return None;
            }
        };
        self.pace.wait();
        let c = conn.as_mut().expect("connected");
        // The row goes to the writer now; MAIL and RCPT overlap its commit, DATA waits for it.
        let (ack, done) = mpsc::sync_channel(1);
        if self
            .ledger
            .tx
            .send((
                write(State::Sending, &msg.message_id, true, None),
                Some(ack),
            ))
            .is_err()
        {
            self.stop.fatal("the ledger writer stopped".into());
            return None;
        }
        let skipped = std::cell::Cell::new(false);
        let wait = || {
            let go = done
                .recv()
                .map_err(|_| Failure::Fatal("the ledger writer stopped".into()))?
                .map_err(Failure::Fatal)?;
            skipped.set(!go);
            if go {
                Ok(())
            } else {
                Err(Failure::Transient("no longer active".into()))
            }
        };
        let pipelining = self.server.pipelining.load(Ordering::Relaxed);
        let (outcome, usable) = match deliver(c, &msg, pipelining, wait) {
            Ok(x) => x,
            // Unsubscribed (`gazette serve`) after its page was read: nothing went past RCPT,
            // nothing is recorded, and the connection is reset for the next message.
            Err(_) if skipped.get() => {
                if c.command(Rset).is_err() {
                    c.abort();
                    *conn = None;
                }
                self.counters.skipped.fetch_add(1, Ordering::SeqCst);
                self.bar.inc(1);
                return None;
            }
            Err(Failure::Fatal(m)) | Err(Failure::Transient(m)) => {
                // Nothing was sent past RCPT. The `sending` row may have landed: leave it to
                // be tried again (if the ledger itself failed, this write fails too).
                self.stop.fatal(m.clone());
                self.ledger
                    .record(write(State::Deferred, &msg.message_id, false, Some(m)));
                self.counters.deferred.fetch_add(1, Ordering::SeqCst);
                self.bar.inc(1);
                c.abort();
                *conn = None;
                return None;
            }
        };
        if !usable {
            *conn = None;
        }
        if let Some(why) = self.net.observe(&outcome) {
            self.stop.fatal(why);
        }
        if let Some(why) = self.streak.observe(&outcome) {
            self.stop.fatal(why);
        }
        held.tries = held.tries.saturating_add(1);
        let tries = held.tries;
        let (state, reply, retry) = match outcome {
            Outcome::Sent(w) => {
                self.counters.sent.fetch_add(1, Ordering::SeqCst);
                (State::Sent, w, None)
            }
            Outcome::Failed(w) => {
                self.counters.failed.fetch_add(1, Ordering::SeqCst);
                (State::Failed, w, None)
            }
            Outcome::Bounced(w) => {
                self.counters.bounced.fetch_add(1, Ordering::SeqCst);
                (State::Bounced, w, None)
            }
            Outcome::Unknown(w) => {
                self.counters.unknown.fetch_add(1, Ordering::SeqCst);
                (State::Unknown, w, None)
            }
            Outcome::Stop(w) => {
                self.stop.fatal(w.clone());
                self.counters.deferred.fetch_add(1, Ordering::SeqCst);
                (State::Deferred, w, None)
            }
            Outcome::Deferred(w) => {
                if tries >= MAX_ATTEMPTS || self.stopping() {
                    self.counters.deferred.fetch_add(1, Ordering::SeqCst);
                    (State::Deferred, w, None)
                } else {
                    let delay = self.backoff * 2u32.pow(tries.saturating_sub(1).min(5));
                    (State::Deferred, w, Some(Instant::now() + delay))
                }
            }
        };
        self.ledger
            .record(write(state, &msg.message_id, false, Some(reply)));
        if retry.is_none() {
            self.bar.inc(1);
        }
        retry
    }
}

/// Sends test copies outside the ledger, one connection, in order. Returns each address with
/// the server's reply or the error.
pub fn send_test(
    server: &Server,
    messages: &[Outgoing],
) -> anyhow::Result<Vec<(String, Result<String, String>)>> {
    let mut conn = server.connect().map_err(|f| match f {
        Failure::Fatal(m) | Failure::Transient(m) => anyhow::anyhow!(m),
    })?;
    let mut out = Vec::new();
    for m in messages {
        let pipelining = server.pipelining.load(Ordering::Relaxed);
        let result = match deliver(&mut conn, m, pipelining, || Ok(())) {
            Ok((Outcome::Sent(w), _)) => Ok(w),
            Ok((
                Outcome::Deferred(w)
                | Outcome::Failed(w)
                | Outcome::Bounced(w)
                | Outcome::Unknown(w)
                | Outcome::Stop(w),
                usable,
            )) => {
                if !usable {
                    conn = server.connect().map_err(|f| match f {
                        Failure::Fatal(m) | Failure::Transient(m) => anyhow::anyhow!(m),
                    })?;
                }
                Err(w)
            }
            Err(Failure::Fatal(m) | Failure::Transient(m)) => bail!(m),
        };
        out.push((m.to.to_string(), result));
    }
    conn.quit();
    Ok(out)
}

/// `--dry-run`: every message as an `.eml` file under `out`, nothing sent or recorded.
pub fn dry_run(dir: &Path, issue_id: &str, out: &Path, source: Source<'_>) -> anyhow::Result<u64> {
    let store = Store::open(dir)?;
    crate::files::refuse_links(dir, out)?;
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("cannot clear {}", out.display()))?;
    }
    crate::files::create_dir_all(out)?;
    let mut after = 0;
    let mut n = 0u64;
    loop {
        let page = store.recipients_page(issue_id, after, PAGE, false)?;
        for r in &page {
            let msg = source(r)?;
            n += 1;
            let safe: String = r
                .email
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '-' | '_' | '+') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let path = out.join(format!("{n:06}-{safe}.eml"));
            std::fs::write(&path, &msg.bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        match page.last() {
            Some(last) if page.len() == PAGE => after = last.id,
            _ => break,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Postfix's smtp-sink on a free port of 127.0.0.1, killed on drop.
    struct Sink(std::process::Child, u16);

    impl Drop for Sink {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn sink() -> Sink {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("smtp-sink")
            .args(["-u", "root", &format!("127.0.0.1:{port}"), "100"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("smtp-sink runs (install the test tools with `bash .ci/setup`)");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "smtp-sink never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Sink(child, port)
    }

    #[test]
    fn a_worker_that_panics_stops_the_run_promptly() {
        let sink = sink();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for i in 0..200 {
            let who = if i == 5 { "boom" } else { "r" };
            let a = crate::store::Address::parse(&format!("{who}{i}@example.org")).unwrap();
            store.add(&a, None, false).unwrap();
        }
        drop(store);
        let server = Server {
            host: "127.0.0.1".into(),
            port: sink.1,
            tls: Tls::None,
            credentials: None,
            timeout: Duration::from_secs(5),
            pipelining: AtomicBool::new(false),
        };
        let options = Options {
            concurrency: 4,
            rate: 0.0,
            retry_unknown: false,
            progress: false,
            backoff: Duration::from_millis(10),
            ledger_sync: crate::config::LedgerSync::Full,
        };
        let (tx, rx) = mpsc::channel();
        let path = dir.path().to_path_buf();
        std::thread::spawn(move || {
            let source = |r: &Recipient| -> anyhow::Result<Outgoing> {
                // Slow enough that the panic comes while other workers are still busy.
                std::thread::sleep(Duration::from_millis(5));
                assert!(!r.email.starts_with("boom"), "a bug in making the message");
                Ok(Outgoing {
                    message_id: format!("{}@example.org", r.id),
                    from: "news@example.org".parse().unwrap(),
                    to: r.email.parse().unwrap(),
                    bytes: b"Subject: x\r\n\r\nx\r\n".to_vec(),
                })
            };
            let never = AtomicBool::new(false);
            let report = run(&path, "issue", "issue", &server, &source, &options, &never);
            let _ = tx.send(report.map_err(|e| e.to_string()));
        });
        let report = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the run ends soon after a worker panics")
            .unwrap();
        let stopped = report.stopped.clone().unwrap_or_default();
        assert!(stopped.contains("panicked"), "{stopped}");
        assert!(report.not_attempted > 0, "{report:?}");
    }

    #[test]
    fn a_tiny_rate_paces_without_panicking() {
        assert_eq!(pace_interval(1e-30), Duration::from_secs(1000));
        assert_eq!(pace_interval(f64::MIN_POSITIVE), Duration::from_secs(1000));
        assert_eq!(pace_interval(4.0), Duration::from_millis(250));
        assert_eq!(pace_interval(f64::INFINITY), Duration::ZERO);
    }

    #[test]
    fn dots_at_line_starts_are_doubled() {
        assert_eq!(
            data_lines(".a\r\n.b\r\nc.\r\n"),
            "..a\r\n..b\r\nc.\r\n.\r\n"
        );
        assert_eq!(data_lines("x"), "x\r\n.\r\n");
    }

    #[test]
    fn user_unknown_is_recognised_by_its_enhanced_code() {
        assert!(is_no_such_user(
            "permanent error (550): 5.1.1 <x@y>: user unknown"
        ));
        assert!(is_no_such_user("permanent error (550): 5.1.10 null MX"));
        assert!(is_no_such_user(
            "permanent error (550): <x@y>: User unknown in local recipient table"
        ));
        assert!(!is_no_such_user(
            "permanent error (554): 5.7.1 rejected as spam"
        ));
        // Sender address problems are not the recipient's.
        for sender in ["5.1.7", "5.1.8"] {
            assert!(!is_no_such_user(&format!(
                "permanent error (553): {sender} <a@b>: Sender address rejected: user unknown"
            )));
        }
    }

    fn outgoing() -> Outgoing {
        Outgoing {
            message_id: "id@example.org".into(),
            from: "news@example.org".parse().unwrap(),
            to: "ann@example.org".parse().unwrap(),
            bytes: Vec::new(),
        }
    }

    #[test]
    fn sender_and_relay_refusals_stop_the_run_instead_of_failing_the_recipient() {
        let m = outgoing();
        let stop = |stage, w: &str| matches!(permanent(stage, &m, w.into()), Outcome::Stop(_));
        let bounced =
            |stage, w: &str| matches!(permanent(stage, &m, w.into()), Outcome::Bounced(_));
        let failed = |stage, w: &str| matches!(permanent(stage, &m, w.into()), Outcome::Failed(_));
        assert!(stop(
            Stage::Mail,
            "permanent error (550): 5.7.1 not allowed"
        ));
        assert!(stop(
            Stage::Mail,
            "permanent error (553): 5.1.8 domain not found"
        ));
        assert!(stop(
            Stage::Rcpt,
            "permanent error (553): 5.1.8 sender domain not found"
        ));
        assert!(stop(
            Stage::Rcpt,
            "permanent error (554): 5.7.1 <a@b>: Relay access denied"
        ));
        assert!(stop(Stage::Rcpt, "permanent error (550): relaying denied"));
        assert!(stop(
            Stage::Dot,
            "permanent error (550): 5.1.7 bad sender mailbox"
        ));
        assert!(bounced(
            Stage::Rcpt,
            "permanent error (550): 5.1.1 <a@b>: User unknown"
        ));
        assert!(failed(
            Stage::Rcpt,
            "permanent error (552): 5.2.2 mailbox full"
        ));
        assert!(failed(
            Stage::Dot,
            "permanent error (554): 5.7.1 rejected as spam"
        ));
    }

    #[test]
    fn the_net_stops_a_run_whose_first_outcomes_are_all_the_same_refusal() {
        let net = Net::default();
        let no = |i: usize| Outcome::Bounced(format!("550 5.1.1 <u{i}@example.org>: unknown"));
        for i in 1..SAME_REFUSALS {
            assert!(net.observe(&no(i)).is_none());
        }
        assert!(net.observe(&no(0)).unwrap().contains("same reply"));
        // One accepted message, or a different reply, disarms it.
        let net = Net::default();
        assert!(net.observe(&Outcome::Sent("250".into())).is_none());
        for i in 0..2 * SAME_REFUSALS {
            assert!(net.observe(&no(i)).is_none());
        }
        let net = Net::default();
        assert!(
            net.observe(&Outcome::Failed("552 5.2.2 full".into()))
                .is_none()
        );
        for i in 0..2 * SAME_REFUSALS {
            assert!(net.observe(&no(i)).is_none());
        }
    }
}
