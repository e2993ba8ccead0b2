//! The outgoing queue's sender: one background thread that hands queued confirmation mails to
//! the `[smtp]` relay, with backoff. A row becomes `sent` only after the relay's 250, so a
//! crash or restart loses none (at worst one is sent again, under the same Message-ID). On
//! start every queued message is tried at once: a restart is the editor's "try now".

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::time::Duration;

use crate::config::Config;
use crate::send::{Handed, Outgoing, Server};
use crate::store::Store;

/// Messages handed to the relay per pass.
const BATCH: usize = 20;
/// The first retry's delay; each next one doubles, up to [`MAX_DELAY`].
const FIRST_DELAY: i64 = 10;
const MAX_DELAY: i64 = 3600;
/// Attempts before a message is given up (about 7 days at the longest delay, when its link
/// would have expired anyway).
const MAX_ATTEMPTS: i64 = 180;
/// The longest sleep between two looks at the queue.
const IDLE: Duration = Duration::from_secs(30);

/// Wakes the sender (a sign-up was queued). Never blocks.
#[derive(Clone, Debug)]
pub(crate) struct Wake(SyncSender<()>);

impl Wake {
    pub(crate) fn now(&self) {
        let _ = self.0.try_send(());
    }
}

/// Starts the sender thread.
pub(crate) fn start(dir: PathBuf, config: &Config, quiet: bool) -> Wake {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let smtp = config.smtp.clone();
    std::thread::Builder::new()
        .name("outbox".into())
        .spawn(move || run(dir, smtp, rx, quiet))
        .expect("a thread starts");
    Wake(tx)
}

fn utc(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn run(dir: PathBuf, smtp: crate::config::SmtpConfig, wake: Receiver<()>, quiet: bool) {
    let say = |m: String| {
        if !quiet {
            crate::eline!("gazette serve: {m}");
        }
    };
    let server = loop {
        match Server::resolve(&smtp) {
            Ok(s) => break s,
            Err(e) => {
                // Sign-ups are still queued; they go out once the settings are right.
                crate::eline!("gazette serve: confirmation mails wait in the queue: {e:#}");
                if wait(&wake, Duration::from_secs(300)) {
                    return;
                }
            }
        }
    };
    let mut store: Option<Store> = None;
    let mut conn = None;
    let mut first = true;
    let mut pruned = chrono::DateTime::<chrono::Utc>::MIN_UTC;
    loop {
        let now = chrono::Utc::now();
        if store.is_none() {
            match Store::open(&dir) {
                Ok(s) => store = Some(s),
                Err(e) => {
                    crate::eline!("gazette serve: cannot open the queue: {e:#}");
                    if wait(&wake, IDLE) {
                        return;
                    }
                    continue;
                }
            }
        }
        let db = store.as_ref().expect("opened above");
        if now - pruned > chrono::Duration::hours(1) {
            // On the clock the rows were written with (GAZETTE_NOW in tests).
            let written = crate::clock::now().map_or(now, |t| t.to_utc());
            let _ = db.outbox_prune(&utc(written - chrono::Duration::days(2)));
            pruned = now;
        }
        if first {
            let _ = db.outbox_retry_all(&utc(now));
        }
        let due = match db.outbox_due(&utc(now), false, BATCH) {
            Ok(d) => d,
            Err(e) => {
                crate::eline!("gazette serve: cannot read the queue: {e:#}");
                store = None;
                if wait(&wake, IDLE) {
                    return;
                }
                continue;
            }
        };
        first = false;
        if due.is_empty() {
            crate::send::close(conn.take());
            let sleep = db
                .outbox_next_due()
                .ok()
                .flatten()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                .map_or(IDLE, |t| {
                    (t.to_utc() - now)
                        .to_std()
                        .unwrap_or(Duration::ZERO)
                        .clamp(Duration::from_millis(100), IDLE)
                });
            if wait(&wake, sleep) {
                return;
            }
            continue;
        }
        for q in due {
            let (Ok(from), Ok(to)) = (q.sender.parse(), q.email.parse()) else {
                let _ = db.outbox_update(q.id, "failed", "not an email address", None);
                continue;
            };
            let msg = Outgoing {
                message_id: q.message_id.clone(),
                from,
                to,
                bytes: q.message,
                eight_bit: false,
            };
            let result = crate::send::hand_over(&server, &mut conn, &msg);
            let written = match &result {
                Handed::Accepted(w) => db.outbox_update(q.id, "sent", w, None),
                Handed::Permanent(w) => {
                    say(format!("a confirmation mail was refused: {w}"));
                    db.outbox_update(q.id, "failed", w, None)
                }
                Handed::Transient(w) if q.attempts + 1 >= MAX_ATTEMPTS => {
                    db.outbox_update(q.id, "failed", w, None)
                }
                Handed::Transient(w) => {
                    let delay = (FIRST_DELAY << q.attempts.min(20)).min(MAX_DELAY);
                    let next = utc(chrono::Utc::now() + chrono::Duration::seconds(delay));
                    say(format!(
                        "a confirmation mail waits {delay} s for another try: {}",
                        crate::config::without_userinfo(w)
                    ));
                    db.outbox_update(q.id, "queued", w, Some(&next))
                }
            };
            if let Err(e) = written {
                // The message may go out again after a restart; nothing is lost.
                crate::eline!("gazette serve: cannot record a sent confirmation: {e:#}");
                store = None;
                break;
            }
        }
    }
}

/// Sleeps until woken or `limit`; true when every sender is gone (the server stopped).
fn wait(wake: &Receiver<()>, limit: Duration) -> bool {
    match wake.recv_timeout(limit) {
        Ok(()) => {
            // Several wake-ups are one.
            while let Ok(()) = wake.try_recv() {}
            matches!(wake.try_recv(), Err(TryRecvError::Disconnected))
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => false,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => true,
    }
}
