//! The connection to the relay: where it is (from `[smtp]` and the environment), TLS and
//! authentication, and a guard on every connection that bounds each command's time and each
//! reply's size.

use super::*;

/// Where and how to connect, resolved from `[smtp]` and the environment.
pub struct Server {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub(super) credentials: Option<Credentials>,
    pub timeout: Duration,
    /// Whether the server announced PIPELINING (RFC 2920) on the last connection.
    pub(super) pipelining: AtomicBool,
    /// `smtp.eight_bit`: whether 8bit parts may be sent where the relay announces 8BITMIME.
    pub(super) eight_bit: bool,
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
            eight_bit: smtp.eight_bit,
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
            transfer: Transfer::SevenBit,
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
        // lettre keeps only the extensions it knows: ask again to learn about PIPELINING (and
        // read 8BITMIME from the same answer).
        // (Before AUTH, where a second EHLO is always allowed.)
        let ehlo = conn.command(Ehlo::new(hello.clone())).ok();
        let announces = |extension: &str| {
            ehlo.as_ref().is_some_and(|r| {
                r.message().any(|l| {
                    l.split_whitespace()
                        .next()
                        .is_some_and(|w| w.eq_ignore_ascii_case(extension))
                })
            })
        };
        self.pipelining
            .store(announces("PIPELINING"), Ordering::Relaxed);
        conn.transfer = if self.eight_bit && announces("8BITMIME") {
            Transfer::EightBit
        } else {
            Transfer::SevenBit
        };
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

pub(super) fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// An error and its causes on one line (lettre keeps the server's words in the causes).
pub(super) fn chain(e: &dyn std::error::Error) -> String {
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
pub(super) const HANDSHAKE_BYTES: usize = 256 * 1024;

/// Why a guard cut a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cut {
    Deadline,
    /// The reply had more than this many bytes.
    TooLarge(usize),
}

/// A deadline and a size bound for each command, which lettre cannot give: it applies its
/// timeout to each read, so a relay sending a byte a second holds it forever. lettre talks to
/// a loopback socket that a guard thread relays to the relay's socket, which it owns: while a
/// command is armed it forwards what the relay says, and cuts both sockets when the deadline
/// passes or the reply outgrows its bound. Between commands nothing is forwarded.
pub(super) struct Guard {
    pub(super) shared: std::sync::Arc<GuardShared>,
    /// The relay's socket, to cut it from the worker's side.
    pub(super) upstream: std::net::TcpStream,
}

pub(super) struct GuardShared {
    pub(super) state: Mutex<GuardState>,
    pub(super) wake: Condvar,
}

#[derive(Default)]
pub(super) struct GuardState {
    /// The deadline of the command in progress, the bytes its reply may still have, and the
    /// bound it started with.
    pub(super) armed: Option<(Instant, usize, usize)>,
    pub(super) cut: Option<Cut>,
    pub(super) closed: bool,
}

impl Guard {
    /// Connects to `addr` and listens on a loopback port for lettre; returns the port's
    /// address to give lettre.
    pub(super) fn start(
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
    pub(super) fn arm(&self, timeout: Duration, bytes: usize) {
        let mut s = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        s.armed = Some((Instant::now() + timeout, bytes, bytes));
        drop(s);
        self.shared.wake.notify_all();
    }

    pub(super) fn disarm(&self) {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .armed = None;
    }

    pub(super) fn cut(&self) -> Option<Cut> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .cut
    }

    /// Ends the connection now.
    pub(super) fn close(&self) {
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
pub(super) fn pump(
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
    pub(super) smtp: SmtpConnection,
    pub(super) guard: Guard,
    pub(super) timeout: Duration,
    /// 8bit where the relay announced 8BITMIME and `smtp.eight_bit` allows it.
    pub(super) transfer: Transfer,
}

impl Conn {
    pub(super) fn guarded<R>(
        &mut self,
        bytes: usize,
        f: impl FnOnce(&mut SmtpConnection) -> Result<R, lettre::transport::smtp::Error>,
    ) -> Result<R, lettre::transport::smtp::Error> {
        self.guard.arm(self.timeout, bytes);
        let r = f(&mut self.smtp);
        self.guard.disarm();
        r
    }

    pub(super) fn command(
        &mut self,
        c: impl fmt::Display,
    ) -> Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error> {
        self.guarded(REPLY_BYTES, |s| s.command(c))
    }

    pub(super) fn read_response(
        &mut self,
    ) -> Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error> {
        self.guarded(REPLY_BYTES, |s| s.read_response())
    }

    pub(super) fn message(
        &mut self,
        bytes: &[u8],
    ) -> Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error> {
        self.guarded(REPLY_BYTES, |s| s.message(bytes))
    }

    pub(super) fn quit(&mut self) {
        let _ = self.command(lettre::transport::smtp::commands::Quit);
        self.abort();
    }

    /// Drops the connection without waiting for anything.
    pub(super) fn abort(&mut self) {
        self.guard.close();
        self.smtp.abort();
    }

    /// An error in words, with a deadline or a size bound that cut the reply said plainly
    /// (not as "Resource temporarily unavailable").
    pub(super) fn explain(&self, e: &lettre::transport::smtp::Error) -> String {
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

pub(super) fn no_answer(timeout: Duration) -> String {
    format!("the relay did not answer within {} s", timeout.as_secs())
}

/// Whether an error is a read or write that timed out.
pub(super) fn timed_out(e: &lettre::transport::smtp::Error) -> bool {
    matches!(
        io_kind(e),
        Some(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
    )
}
