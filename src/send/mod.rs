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
use lettre::transport::smtp::extension::{ClientId, MailBodyParameter, MailParameter};
use serde::Serialize;

mod breaker;
mod deliver;
mod queue;
mod smtp;

pub use smtp::{Conn, REPLY_BYTES, Server};

use breaker::*;
use deliver::*;
use queue::*;
use smtp::*;

use crate::config::{PASSWORD_ENV, SmtpConfig, Tls, URL_ENV};
use crate::store::{LedgerWrite, Recipient, State, Store};

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
pub use crate::render::email::{Outgoing, Transfer};

/// Makes the message for one recipient.
pub type Source<'a> = &'a (dyn Fn(&Recipient, Transfer) -> anyhow::Result<Outgoing> + Sync);

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
            .with_key("rate", crate::output::rounded_rate),
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
        // a message sent again (deferred, or --retry-unknown) has the same Date and Message-ID.
        // Its encoding follows the connection it goes on (8bit where the relay announces
        // 8BITMIME), so the bytes are the same for the same relay.
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
        let transfer = conn.as_ref().map_or(Transfer::SevenBit, |c| c.transfer);
        let msg = match (self.source)(r, transfer) {
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

/// Sends test copies outside the ledger, one connection, in order: `make` builds the copy for
/// each address in `to` for the connection's [`Transfer`], so a test copy has the bytes a
/// subscriber gets through this relay. Returns each address with the server's reply or the
/// error.
pub fn send_test(
    server: &Server,
    to: &[String],
    make: &dyn Fn(&str, Transfer) -> anyhow::Result<Outgoing>,
) -> anyhow::Result<Vec<(String, Result<String, String>)>> {
    let connect = || {
        server.connect().map_err(|f| match f {
            Failure::Fatal(m) | Failure::Transient(m) => anyhow::anyhow!(m),
        })
    };
    let mut conn = connect()?;
    let mut out = Vec::new();
    for address in to {
        let m = make(address, conn.transfer)?;
        let pipelining = server.pipelining.load(Ordering::Relaxed);
        let result = match deliver(&mut conn, &m, pipelining, || Ok(())) {
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
                    conn = connect()?;
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
            let msg = source(r, Transfer::SevenBit)?;
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

/// What the relay did with one message sent outside the ledger (`gazette serve`'s queue).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handed {
    /// Accepted (250): the relay's words.
    Accepted(String),
    /// Not accepted this time (no connection, 4xx, an unclear outcome): try again later.
    Transient(String),
    /// Refused for good (5xx): the relay's words.
    Permanent(String),
}

/// Sends one message over `conn`, connecting first when it is None; leaves it None when the
/// connection is no longer usable.
pub fn hand_over(server: &Server, conn: &mut Option<Conn>, msg: &Outgoing) -> Handed {
    if conn.is_none() {
        match server.connect() {
            Ok(c) => *conn = Some(c),
            Err(Failure::Transient(m) | Failure::Fatal(m)) => return Handed::Transient(m),
        }
    }
    let Some(c) = conn.as_mut() else {
        return Handed::Transient("no connection".into());
    };
    let pipelining = server.pipelining.load(Ordering::Relaxed);
    match deliver(c, msg, pipelining, || Ok(())) {
        Ok((outcome, usable)) => {
            if !usable {
                if let Some(mut c) = conn.take() {
                    c.abort();
                }
            }
            match outcome {
                Outcome::Sent(w) => Handed::Accepted(w),
                Outcome::Failed(w) | Outcome::Bounced(w) => Handed::Permanent(w),
                Outcome::Deferred(w) | Outcome::Unknown(w) | Outcome::Stop(w) => {
                    Handed::Transient(w)
                }
            }
        }
        Err(Failure::Transient(m) | Failure::Fatal(m)) => {
            if let Some(mut c) = conn.take() {
                c.abort();
            }
            Handed::Transient(m)
        }
    }
}

/// Ends a connection politely.
pub fn close(conn: Option<Conn>) {
    if let Some(mut c) = conn {
        c.quit();
    }
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
            eight_bit: true,
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
            let source = |r: &Recipient, _: Transfer| -> anyhow::Result<Outgoing> {
                // Slow enough that the panic comes while other workers are still busy.
                std::thread::sleep(Duration::from_millis(5));
                assert!(!r.email.starts_with("boom"), "a bug in making the message");
                Ok(Outgoing {
                    message_id: format!("{}@example.org", r.id),
                    from: "news@example.org".parse().unwrap(),
                    to: r.email.parse().unwrap(),
                    bytes: b"Subject: x\r\n\r\nx\r\n".to_vec(),
                    eight_bit: false,
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
            eight_bit: false,
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
