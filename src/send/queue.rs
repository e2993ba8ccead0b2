//! The work of a run between the workers: the queue of recipients (with deferred ones held
//! for a retry), the one thread that writes the ledger, and the pace of an optional rate.

use super::*;

/// Recipients for the workers: pages read from the database in subscriber order, plus
/// deferred ones waiting for their backoff.
pub(super) struct Queue {
    pub(super) state: Mutex<QueueState>,
    pub(super) wake: Condvar,
}

pub(super) struct QueueState {
    pub(super) reader: Store,
    pub(super) issue_id: String,
    pub(super) retry_unknown: bool,
    pub(super) after: i64,
    pub(super) page: VecDeque<Recipient>,
    pub(super) exhausted: bool,
    pub(super) retries: BinaryHeap<Reverse<(Instant, i64)>>,
    pub(super) waiting: std::collections::HashMap<i64, Held>,
    /// Recipients held by workers: they may come back as retries.
    pub(super) held: usize,
}

/// A recipient in a worker's hands, with the attempts this run made at it.
pub(super) struct Held {
    pub(super) recipient: Recipient,
    /// Attempts in this run only: MAX_ATTEMPTS is per run (the ledger counts all runs).
    pub(super) tries: u32,
}

impl Queue {
    /// The next recipient, waiting for retries that are due; None when everything is done
    /// or the run is stopping.
    pub(super) fn next(&self, stopping: impl Fn() -> bool) -> anyhow::Result<Option<Held>> {
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
    pub(super) fn done(&self, r: Held, retry_at: Option<Instant>) -> bool {
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
pub(super) type Job = (LedgerWrite, Option<mpsc::SyncSender<Result<bool, String>>>);

/// The single writer of the ledger: commits writes in batches, in arrival order.
pub(super) struct Ledger {
    pub(super) tx: mpsc::Sender<Job>,
}

impl Ledger {
    /// Queues an outcome; it is committed with the next batch, before any later `sending` row.
    pub(super) fn record(&self, w: LedgerWrite) {
        let _ = self.tx.send((w, None));
    }
}

pub(super) fn write_ledger(
    mut store: Store,
    issue_id: &str,
    rx: mpsc::Receiver<Job>,
) -> Result<(), String> {
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
pub(super) fn pace_interval(rate: f64) -> Duration {
    let slowest = Duration::from_secs_f64(1.0 / crate::config::MIN_RATE);
    Duration::try_from_secs_f64(1.0 / rate).map_or(slowest, |d| d.min(slowest))
}

/// Messages per second over all workers.
pub(super) struct Pace {
    pub(super) interval: Option<Duration>,
    pub(super) next: Mutex<Instant>,
}

impl Pace {
    pub(super) fn wait(&self) {
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
