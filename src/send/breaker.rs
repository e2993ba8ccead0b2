//! When a run must stop by itself: the same permanent refusal for everyone (the relay's or the
//! settings' fault, not the recipients'), too many unknown outcomes in a row, a fatal error.

use super::*;

/// Permanent refusals in a row, all alike, that stop a run which has had nothing accepted.
pub(super) const SAME_REFUSALS: usize = 20;

/// A safety net: when the first outcomes of a run are all permanent refusals with the same
/// reply, the fault is the relay's or the configuration's, not the recipients'.
#[derive(Default)]
pub(super) struct Net {
    pub(super) state: Mutex<NetState>,
}

#[derive(Default)]
pub(super) struct NetState {
    pub(super) disarmed: bool,
    pub(super) reply: String,
    pub(super) count: usize,
}

impl Net {
    /// Notes an outcome; returns why the run must stop, if it must.
    pub(super) fn observe(&self, outcome: &Outcome) -> Option<String> {
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
pub(super) struct Streak {
    pub(super) limit: usize,
    pub(super) slug: String,
    pub(super) count: Mutex<usize>,
}

impl Streak {
    /// Notes an outcome; returns why the run must stop, if it must.
    pub(super) fn observe(&self, outcome: &Outcome) -> Option<String> {
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
pub(super) fn without_addresses(words: &str) -> String {
    words
        .split_whitespace()
        .filter(|w| !w.contains('@'))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A fatal problem stops the run; the first one wins.
#[derive(Default)]
pub(super) struct Stop {
    pub(super) requested: AtomicBool,
    pub(super) reason: Mutex<Option<String>>,
}

impl Stop {
    pub(super) fn fatal(&self, reason: String) {
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            *r = Some(reason);
        }
        self.requested.store(true, Ordering::SeqCst);
    }
}
