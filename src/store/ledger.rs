//! The send ledger: one row per (issue, subscriber), written before DATA and settled after
//! the reply, so that a resumed run mails no one twice; the counts `status` shows.

use super::*;

/// One delivery state in the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Written (and committed) before DATA; the outcome is not yet known.
    Sending,
    Sent,
    /// A transient failure: tried again by this run or the next.
    Deferred,
    /// A permanent failure, with the server's words.
    Failed,
    /// A permanent "no such user": the subscriber is marked bounced too.
    Bounced,
    /// A crash, or an ambiguous reply, left the outcome unknown: not re-sent unless asked.
    Unknown,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Sending => "sending",
            State::Sent => "sent",
            State::Deferred => "deferred",
            State::Failed => "failed",
            State::Bounced => "bounced",
            State::Unknown => "unknown",
        }
    }
}

/// One write to the ledger, applied in order inside a batch transaction.
#[derive(Clone, Debug)]
pub struct LedgerWrite {
    pub subscriber_id: i64,
    pub email: String,
    pub state: State,
    pub message_id: String,
    /// Whether this write starts an attempt (counts it).
    pub attempt: bool,
    pub reply: Option<String>,
    /// The message's `Date` (RFC 3339), written with the first attempt and kept after it.
    pub date: Option<String>,
}

/// An issue already sent under another id: what `send` refuses to mail again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentIssue {
    pub issue_id: String,
    pub slug: String,
    pub title: String,
    pub first_sent: String,
    /// Ledger rows under that id.
    pub deliveries: u64,
}

/// The ledger of one issue, counted by state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub sent: u64,
    pub failed: u64,
    pub bounced: u64,
    /// Deferred after a transient failure: the next `send` tries again.
    pub deferred: u64,
    /// Written before DATA with no outcome: a run is going on, or crashed.
    pub sending: u64,
    pub unknown: u64,
    /// Active subscribers with no ledger row yet.
    pub pending: u64,
}

/// A ledger row, for `status` listings.
#[derive(Clone, Debug, Serialize)]
pub struct Delivery {
    pub email: String,
    pub state: String,
    pub message_id: String,
    pub attempts: i64,
    pub last_reply: Option<String>,
    pub updated_at: String,
}

/// A recipient to send to, with the attempts already made.
#[derive(Clone, Debug)]
pub struct Recipient {
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
    pub attempts: i64,
    /// The `Date` of an earlier attempt (RFC 3339): sent again, the message keeps it.
    pub date: Option<String>,
}

impl Store {
    /// Turns rows left `sending` by a run that died into `unknown`. Returns how many.
    /// Only call while holding the send lock (no other run is going on).
    pub fn settle_interrupted(&self, issue_id: &str) -> anyhow::Result<u64> {
        let n = self.conn.execute(
            "UPDATE deliveries SET state = 'unknown',
             last_reply = COALESCE(last_reply || ' / ', '') || 'the run stopped before the reply (crash or kill)',
             updated_at = ?2
             WHERE issue_id = ?1 AND state = 'sending'",
            params![issue_id, timestamp()],
        )?;
        Ok(n as u64)
    }

    /// The next page of recipients of an issue after subscriber `after`: active subscribers
    /// with no ledger row, or deferred, or (when `retry_unknown`) unknown.
    pub fn recipients_page(
        &self,
        issue_id: &str,
        after: i64,
        limit: usize,
        retry_unknown: bool,
    ) -> anyhow::Result<Vec<Recipient>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT s.id, s.email, s.name, COALESCE(d.attempts, 0), d.date
             FROM subscribers s
             LEFT JOIN deliveries d ON d.issue_id = ?1 AND d.subscriber_id = s.id
             WHERE s.id > ?2 AND s.status = 'active'
               AND (d.state IS NULL OR d.state = 'deferred' OR (?3 AND d.state = 'unknown'))
             ORDER BY s.id LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![issue_id, after, retry_unknown, limit as i64], |r| {
            Ok(Recipient {
                id: r.get(0)?,
                email: r.get(1)?,
                name: r.get(2)?,
                attempts: r.get(3)?,
                date: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many recipients a run would send to (see [`Store::recipients_page`]).
    pub fn count_recipients(&self, issue_id: &str, retry_unknown: bool) -> anyhow::Result<u64> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM subscribers s
             LEFT JOIN deliveries d ON d.issue_id = ?1 AND d.subscriber_id = s.id
             WHERE s.status = 'active'
               AND (d.state IS NULL OR d.state = 'deferred' OR (?2 AND d.state = 'unknown'))",
            params![issue_id, retry_unknown],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// Applies ledger writes in one transaction; when it returns, they are on disk.
    /// A `Bounced` write also marks the subscriber bounced. A `Sending` write whose subscriber
    /// is no longer active (unsubscribed through `gazette serve` while the run goes on) is
    /// not written: its subscriber id is returned, and its message must not be handed to SMTP.
    /// The check and the write are one IMMEDIATE transaction, so an unsubscribe committed
    /// before it always wins.
    pub fn apply(&mut self, issue_id: &str, writes: &[LedgerWrite]) -> anyhow::Result<Vec<i64>> {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut skipped = Vec::new();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut active = tx.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM subscribers WHERE id = ?1 AND status = 'active')",
            )?;
            let mut upsert = tx.prepare_cached(
                "INSERT INTO deliveries
                   (issue_id, subscriber_id, email, state, message_id, attempts, last_reply, created_at, updated_at, date)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)
                 ON CONFLICT (issue_id, subscriber_id) DO UPDATE SET
                   state = excluded.state, message_id = excluded.message_id,
                   attempts = attempts + excluded.attempts,
                   last_reply = COALESCE(excluded.last_reply, last_reply),
                   updated_at = excluded.updated_at,
                   date = COALESCE(date, excluded.date)",
            )?;
            let mut bounce = tx.prepare_cached(
                "UPDATE subscribers SET status = 'bounced', updated_at = ?2 WHERE id = ?1",
            )?;
            for w in writes {
                if w.state == State::Sending
                    && !active.query_row([w.subscriber_id], |r| r.get(0))?
                {
                    skipped.push(w.subscriber_id);
                    continue;
                }
                upsert.execute(params![
                    issue_id,
                    w.subscriber_id,
                    w.email,
                    w.state.as_str(),
                    w.message_id,
                    i64::from(w.attempt),
                    w.reply,
                    now,
                    w.date
                ])?;
                if w.state == State::Bounced {
                    bounce.execute(params![w.subscriber_id, now])?;
                }
            }
        }
        tx.commit()
            .with_context(|| format!("cannot write the ledger in {}", self.path.display()))?;
        Ok(skipped)
    }

    /// Records that an issue is being sent: its id, slug, title and a hash of its body. The
    /// first record of an id stays.
    pub fn record_sent_issue(
        &self,
        issue_id: &str,
        slug: &str,
        title: &str,
        body_sha256: &str,
    ) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT INTO sent_issues (issue_id, slug, title, body_sha256, first_sent)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (issue_id) DO NOTHING",
            params![issue_id, slug, title, body_sha256, timestamp()],
        )?;
        Ok(())
    }

    /// An issue with ledger rows under an id other than `issue_id` that has the same slug, or
    /// the same title and body: the same issue, whose id changed since it was sent.
    pub fn sent_under_another_id(
        &self,
        issue_id: &str,
        slug: &str,
        title: &str,
        body_sha256: &str,
    ) -> anyhow::Result<Option<SentIssue>> {
        Ok(self
            .conn
            .query_row(
                "SELECT s.issue_id, s.slug, s.title, s.first_sent,
                        (SELECT COUNT(*) FROM deliveries d WHERE d.issue_id = s.issue_id) AS n
                 FROM sent_issues s
                 WHERE s.issue_id != ?1
                   AND (s.slug = ?2 OR (s.title = ?3 AND s.body_sha256 = ?4))
                   AND n > 0
                 ORDER BY s.first_sent LIMIT 1",
                params![issue_id, slug, title, body_sha256],
                |r| {
                    Ok(SentIssue {
                        issue_id: r.get(0)?,
                        slug: r.get(1)?,
                        title: r.get(2)?,
                        first_sent: r.get(3)?,
                        deliveries: r.get::<_, i64>(4)? as u64,
                    })
                },
            )
            .optional()?)
    }

    /// Whether an issue has been sent to anyone: ledger rows under its id, or under another id
    /// recorded for its slug.
    pub fn was_sent(&self, issue_id: &str, slug: &str) -> anyhow::Result<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM deliveries WHERE issue_id = ?1)
                 OR EXISTS (SELECT 1 FROM sent_issues s JOIN deliveries d ON d.issue_id = s.issue_id
                            WHERE s.slug = ?2)",
            params![issue_id, slug],
            |r| r.get(0),
        )?)
    }

    /// The ledger of one issue, counted by state, plus active subscribers not yet in it.
    pub fn counts(&self, issue_id: &str) -> anyhow::Result<Counts> {
        let mut c = Counts::default();
        let mut stmt = self
            .conn
            .prepare("SELECT state, COUNT(*) FROM deliveries WHERE issue_id = ?1 GROUP BY state")?;
        let mut rows = stmt.query([issue_id])?;
        while let Some(r) = rows.next()? {
            let n = r.get::<_, i64>(1)? as u64;
            match r.get::<_, String>(0)?.as_str() {
                "sent" => c.sent = n,
                "failed" => c.failed = n,
                "bounced" => c.bounced = n,
                "deferred" => c.deferred = n,
                "sending" => c.sending = n,
                _ => c.unknown = n,
            }
        }
        c.pending = self.conn.query_row(
            "SELECT COUNT(*) FROM subscribers s
             WHERE s.status = 'active' AND NOT EXISTS
               (SELECT 1 FROM deliveries d WHERE d.issue_id = ?1 AND d.subscriber_id = s.id)",
            [issue_id],
            |r| r.get::<_, i64>(0),
        )? as u64;
        Ok(c)
    }

    /// Ledger rows of one issue in the given states, by subscriber.
    pub fn deliveries(&self, issue_id: &str, states: &[State]) -> anyhow::Result<Vec<Delivery>> {
        let mut stmt = self.conn.prepare(
            "SELECT email, state, message_id, attempts, last_reply, updated_at
             FROM deliveries WHERE issue_id = ?1 ORDER BY subscriber_id",
        )?;
        let wanted: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        let rows = stmt.query_map([issue_id], |r| {
            Ok(Delivery {
                email: r.get(0)?,
                state: r.get(1)?,
                message_id: r.get(2)?,
                attempts: r.get(3)?,
                last_reply: r.get(4)?,
                updated_at: r.get(5)?,
            })
        })?;
        let mut out = Vec::new();
        for row in rows {
            let row = row?;
            if wanted.contains(&row.state.as_str()) {
                out.push(row);
            }
        }
        Ok(out)
    }
}
