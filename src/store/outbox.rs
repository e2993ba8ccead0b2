//! Sign-ups and the outgoing queue of `gazette serve`: a new address waits `pending` for its
//! confirmation, and each confirmation mail waits in the database until the relay takes it.

use super::*;

/// What a sign-up did (never shown to the person signing up: every answer is the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignedUp {
    /// A confirmation mail was queued; the status the address had before (None: new, now
    /// pending).
    Queued(Option<Status>),
    /// A confirmation went to this address within the last day: nothing queued.
    TooSoon,
    /// A spam complaint: no mail, ever.
    Suppressed,
}

/// A message waiting in the outgoing queue.
#[derive(Clone, Debug)]
pub struct Queued {
    pub id: i64,
    pub email: String,
    pub sender: String,
    pub message_id: String,
    pub message: Vec<u8>,
    pub attempts: i64,
}

/// A message for the outgoing queue: `(message_id, envelope sender, bytes)`.
pub type QueuedMessage = (String, String, Vec<u8>);

impl Store {
    /// A sign-up from the subscribe form, in one short transaction: a new address is recorded
    /// `pending` (with its name); unless the address complained, or a confirmation was queued
    /// for it since `since` (RFC 3339), `message` is queued. No status changes here: only a
    /// confirmation makes anyone active.
    pub fn sign_up(
        &mut self,
        address: &Address,
        name: Option<&str>,
        since: &str,
        message: QueuedMessage,
    ) -> anyhow::Result<SignedUp> {
        let now = timestamp();
        let name = name.map(str::trim).filter(|n| !n.is_empty());
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT status FROM subscribers WHERE email_key = ?1",
                [&address.key],
                |r| r.get(0),
            )
            .optional()?;
        let before = existing.as_deref().map(Status::parse).transpose()?;
        if before == Some(Status::Complained) {
            return Ok(SignedUp::Suppressed);
        }
        if before.is_none() {
            tx.execute(
                "INSERT INTO subscribers (email, email_key, name, status, created_at, updated_at, status_at, reason)
                 VALUES (?1, ?2, ?3, 'pending', ?4, ?4, ?4, 'signed up')",
                params![address.email, address.key, name, now],
            )?;
        } else if before == Some(Status::Pending) && name.is_some() {
            tx.execute(
                "UPDATE subscribers SET name = ?2, updated_at = ?3 WHERE email_key = ?1",
                params![address.key, name, now],
            )?;
        }
        let recent: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM outbox
             WHERE email_key = ?1 AND kind = 'confirm' AND created_at > ?2)",
            params![address.key, since],
            |r| r.get(0),
        )?;
        if recent {
            tx.commit()?;
            return Ok(SignedUp::TooSoon);
        }
        let (message_id, sender, bytes) = message;
        tx.execute(
            "INSERT INTO outbox (kind, email, email_key, sender, message_id, message, state,
                                 next_attempt, created_at, updated_at)
             VALUES ('confirm', ?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?6, ?6)",
            params![address.email, address.key, sender, message_id, bytes, now],
        )?;
        tx.commit()
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        Ok(SignedUp::Queued(before))
    }

    /// The reader confirmed from the mailed link: active, whatever they were, except after a
    /// spam complaint. An address no longer on the list is added (the link proves the
    /// mailbox). Returns the status before (None: not on the list).
    pub fn confirm(&self, address: &Address) -> anyhow::Result<Option<Status>> {
        let now = timestamp();
        let before: Option<String> = self
            .conn
            .query_row(
                "SELECT status FROM subscribers WHERE email_key = ?1",
                [&address.key],
                |r| r.get(0),
            )
            .optional()?;
        let before = before.as_deref().map(Status::parse).transpose()?;
        match before {
            None => {
                self.conn.execute(
                    "INSERT INTO subscribers (email, email_key, status, created_at, updated_at, status_at, reason)
                     VALUES (?1, ?2, 'active', ?3, ?3, ?3, 'confirmed')",
                    params![address.email, address.key, now],
                )?;
            }
            Some(Status::Complained | Status::Active) => {}
            Some(_) => {
                self.conn.execute(
                    "UPDATE subscribers SET status = 'active', reason = 'confirmed',
                     status_at = ?2, updated_at = ?2
                     WHERE email_key = ?1 AND status != 'complained'",
                    params![address.key, now],
                )?;
            }
        }
        Ok(before)
    }

    /// A subscriber's status by address, if on the list.
    pub fn status_of(&self, address: &Address) -> anyhow::Result<Option<Status>> {
        let s: Option<String> = self
            .conn
            .query_row(
                "SELECT status FROM subscribers WHERE email_key = ?1",
                [&address.key],
                |r| r.get(0),
            )
            .optional()?;
        s.as_deref().map(Status::parse).transpose()
    }

    /// Up to `limit` queued messages due at `now` (every queued one when `all`), oldest first.
    pub fn outbox_due(&self, now: &str, all: bool, limit: usize) -> anyhow::Result<Vec<Queued>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, email, sender, message_id, message, attempts FROM outbox
             WHERE state = 'queued' AND (?2 OR next_attempt <= ?1) ORDER BY id LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![now, all, limit as i64], |r| {
            Ok(Queued {
                id: r.get(0)?,
                email: r.get(1)?,
                sender: r.get(2)?,
                message_id: r.get(3)?,
                message: r.get(4)?,
                attempts: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Makes every queued message due at `now` (`serve` starting: a restart is "try now").
    pub fn outbox_retry_all(&self, now: &str) -> anyhow::Result<u64> {
        Ok(self.conn.execute(
            "UPDATE outbox SET next_attempt = ?1 WHERE state = 'queued' AND next_attempt > ?1",
            [now],
        )? as u64)
    }

    /// When the next queued message is due (RFC 3339), if any.
    pub fn outbox_next_due(&self) -> anyhow::Result<Option<String>> {
        Ok(self.conn.query_row(
            "SELECT MIN(next_attempt) FROM outbox WHERE state = 'queued'",
            [],
            |r| r.get(0),
        )?)
    }

    /// Records what the relay did with a queued message: `sent` (after its 250), `failed`
    /// (permanent), or still `queued` until `next_attempt`.
    pub fn outbox_update(
        &self,
        id: i64,
        state: &str,
        reply: &str,
        next_attempt: Option<&str>,
    ) -> anyhow::Result<()> {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        self.conn.execute(
            "UPDATE outbox SET state = ?2, last_reply = ?3, attempts = attempts + 1,
             next_attempt = COALESCE(?4, next_attempt), updated_at = ?5 WHERE id = ?1",
            params![id, state, reply, next_attempt, now],
        )?;
        Ok(())
    }

    /// Drops sent and failed messages created before `before` (the one-a-day limit needs only
    /// the last day). Returns how many.
    pub fn outbox_prune(&self, before: &str) -> anyhow::Result<u64> {
        Ok(self.conn.execute(
            "DELETE FROM outbox WHERE state != 'queued' AND created_at < ?1",
            [before],
        )? as u64)
    }

    /// The outgoing queue counted by state: `(queued, sent, failed)`.
    pub fn outbox_counts(&self) -> anyhow::Result<(u64, u64, u64)> {
        Ok(self.conn.query_row(
            "SELECT COALESCE(SUM(state = 'queued'), 0), COALESCE(SUM(state = 'sent'), 0),
                    COALESCE(SUM(state = 'failed'), 0) FROM outbox",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                ))
            },
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> QueuedMessage {
        ("m@x.org".into(), "from@x.org".into(), b"bytes".to_vec())
    }

    #[test]
    fn a_sign_up_is_pending_until_confirmed_and_queues_one_mail_a_day() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let a = Address::parse("new@example.org").unwrap();
        let day_ago = "2000-01-01T00:00:00Z";
        assert_eq!(
            s.sign_up(&a, Some("Ann"), day_ago, message()).unwrap(),
            SignedUp::Queued(None)
        );
        assert_eq!(s.status_of(&a).unwrap(), Some(Status::Pending));
        assert_eq!(s.count_active().unwrap(), 0);
        assert!(s.recipients_page("i", 0, 10, true).unwrap().is_empty());
        assert_eq!(
            s.sign_up(&a, None, day_ago, message()).unwrap(),
            SignedUp::TooSoon
        );
        assert_eq!(s.outbox_counts().unwrap(), (1, 0, 0));
        assert_eq!(s.confirm(&a).unwrap(), Some(Status::Pending));
        assert_eq!(s.count_active().unwrap(), 1);
        // Unsubscribed: a sign-up changes nothing until the confirmation.
        s.set_status(&a, Status::Unsubscribed).unwrap();
        assert_eq!(
            s.sign_up(&a, None, "9999-01-01T00:00:00Z", message())
                .unwrap(),
            SignedUp::Queued(Some(Status::Unsubscribed))
        );
        assert_eq!(s.status_of(&a).unwrap(), Some(Status::Unsubscribed));
        s.confirm(&a).unwrap();
        assert_eq!(s.status_of(&a).unwrap(), Some(Status::Active));
        // A complaint: no mail, and a confirmation does not lift it.
        s.set_status(&a, Status::Complained).unwrap();
        assert_eq!(
            s.sign_up(&a, None, "9999-01-01T00:00:00Z", message())
                .unwrap(),
            SignedUp::Suppressed
        );
        s.confirm(&a).unwrap();
        assert_eq!(s.status_of(&a).unwrap(), Some(Status::Complained));
        assert_eq!(s.outbox_counts().unwrap(), (2, 0, 0));
        let due = s.outbox_due("9999-01-01T00:00:00Z", false, 10).unwrap();
        assert_eq!(due.len(), 2);
        s.outbox_update(due[0].id, "sent", "250 ok", None).unwrap();
        assert_eq!(s.outbox_counts().unwrap(), (1, 1, 0));
    }
}
