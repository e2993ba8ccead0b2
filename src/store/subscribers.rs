//! The list: subscribers, their status (active, pending, or suppressed and why), and the
//! Address they are kept under.

use super::*;

/// Whether a subscriber receives issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Signed up and not yet confirmed: not counted, not exported as active, never sent to.
    Pending,
    Active,
    /// Asked to stop; kept as a suppression so no import re-adds them by accident.
    Unsubscribed,
    /// The relay said the address does not exist (5.1.x).
    Bounced,
    /// Reported the newsletter as spam; suppressed for good (never re-activated by an import).
    Complained,
}

impl Status {
    /// Whether `--reactivate` may make this subscriber active again. A spam complaint is
    /// never undone by the editor's list: only the reader's own confirmed sign-up can.
    pub fn reactivatable(self) -> bool {
        self != Status::Complained
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Active => "active",
            Status::Unsubscribed => "unsubscribed",
            Status::Bounced => "bounced",
            Status::Complained => "complained",
        }
    }

    /// Fails closed: a status this gazette does not know is never taken for `active`.
    pub(super) fn parse(s: &str) -> anyhow::Result<Status> {
        match s {
            "pending" => Ok(Status::Pending),
            "active" => Ok(Status::Active),
            "unsubscribed" => Ok(Status::Unsubscribed),
            "bounced" => Ok(Status::Bounced),
            "complained" => Ok(Status::Complained),
            other => bail!(
                "the database holds an unknown subscriber status `{}`; is it from a newer gazette?",
                other.escape_debug()
            ),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the subscriber list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Subscriber {
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
    pub status: Status,
    pub created_at: String,
    pub updated_at: String,
    /// Why the subscriber was suppressed (`bounce: 5.1.1`, `complaint: -`), where recorded.
    pub reason: Option<String>,
    /// When the status last changed to what it is (RFC 3339); None while active.
    pub status_at: Option<String>,
}

/// An address checked and put in its one stored form: trimmed, domain lowercased. Two
/// addresses that differ only in case are the same subscriber (`key`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub email: String,
    pub key: String,
}

impl Address {
    /// Checks an address as a person typed it; the error says what is wrong.
    pub fn parse(raw: &str) -> Result<Address, String> {
        let s = raw.trim();
        if s.is_empty() {
            return Err("the email address is empty".into());
        }
        if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "`{}` contains a space or control character",
                s.escape_debug()
            ));
        }
        if s.len() > 254 {
            return Err("the email address is longer than 254 characters".into());
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return Err(format!("`{s}` has no `@`"));
        };
        if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
            return Err(format!(
                "`{s}`: the domain `{domain}` is not a full domain name"
            ));
        }
        if !local.is_ascii() {
            return Err(format!(
                "`{s}` has non-ASCII characters before the `@`: gazette sends plain (7-bit) mail \
                 without SMTPUTF8, which such an address needs"
            ));
        }
        // An internationalised domain is stored in its ASCII (punycode) form, which every
        // relay accepts.
        let domain = if domain.is_ascii() {
            domain.to_lowercase()
        } else {
            match url::Host::parse(domain) {
                Ok(url::Host::Domain(ascii)) => ascii,
                _ => {
                    return Err(format!(
                        "`{s}`: the domain `{domain}` is not a valid domain name"
                    ));
                }
            }
        };
        let email = format!("{local}@{domain}");
        if let Err(e) = email.parse::<lettre::Address>() {
            return Err(format!("`{s}` is not an email address ({e})"));
        }
        Ok(Address {
            key: email.to_lowercase(),
            email,
        })
    }
}

/// What adding one address did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    New,
    /// Already active: only the name may have changed.
    AlreadyActive,
    /// Unsubscribed or bounced, and left so (no `--reactivate`).
    Suppressed(Status),
    Reactivated,
}

/// What an import did with one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Imported {
    /// Added, with this id.
    New(i64),
    /// Added earlier in the same import (this id): a repeated row.
    Repeat(i64),
    /// On the list before the import.
    Existing(Added),
}

impl Store {
    /// Adds an address, or updates its name. A suppressed address stays suppressed unless
    /// `reactivate`.
    pub fn add(
        &self,
        address: &Address,
        name: Option<&str>,
        reactivate: bool,
    ) -> anyhow::Result<Added> {
        let now = timestamp();
        let existing: Option<(i64, String)> = self
            .conn
            .prepare_cached("SELECT id, status FROM subscribers WHERE email_key = ?1")?
            .query_row([&address.key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let name = name.map(str::trim).filter(|n| !n.is_empty());
        Ok(match existing {
            None => {
                self.conn
                    .prepare_cached(
                        "INSERT INTO subscribers (email, email_key, name, status, created_at, updated_at)
                         VALUES (?1, ?2, ?3, 'active', ?4, ?4)",
                    )?
                    .execute(params![address.email, address.key, name, now])?;
                Added::New
            }
            Some((id, status)) => {
                let status = Status::parse(&status)?;
                if status != Status::Active && !(reactivate && status.reactivatable()) {
                    return Ok(Added::Suppressed(status));
                }
                self.conn
                    .prepare_cached(
                        "UPDATE subscribers SET status = 'active', name = COALESCE(?2, name),
                         updated_at = ?3 WHERE id = ?1",
                    )?
                    .execute(params![id, name, now])?;
                if status == Status::Active {
                    Added::AlreadyActive
                } else {
                    Added::Reactivated
                }
            }
        })
    }

    /// Settings for a bulk import: statement journals in memory (each row's statement would
    /// otherwise open and close one) and a 32 MiB page cache, so pages are not spilled
    /// mid-transaction. Memory stays bounded by the cache size.
    pub fn tune_for_import(&self) -> anyhow::Result<()> {
        self.conn
            .execute_batch("PRAGMA temp_store = MEMORY; PRAGMA cache_size = -32768;")?;
        Ok(())
    }

    /// The highest subscriber id so far: rows an import adds get higher ones.
    pub fn last_subscriber_id(&self) -> anyhow::Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT COALESCE(MAX(id), 0) FROM subscribers", [], |r| {
                r.get(0)
            })?)
    }

    /// One row of an import, in one statement when the address is new (imports are millions
    /// of rows). An address already added by this import (`id > added_after`) is a repeat
    /// and is left as the first row made it.
    pub fn import_row(
        &self,
        address: &Address,
        name: Option<&str>,
        reactivate: bool,
        now: &str,
        added_after: i64,
    ) -> anyhow::Result<Imported> {
        let name = name.map(str::trim).filter(|n| !n.is_empty());
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO subscribers (email, email_key, name, status, created_at, updated_at)
                 VALUES (?1, ?2, ?3, 'active', ?4, ?4)",
            )?
            .execute(params![address.email, address.key, name, now])?;
        if inserted == 1 {
            return Ok(Imported::New(self.conn.last_insert_rowid()));
        }
        let (id, status): (i64, String) = self
            .conn
            .prepare_cached("SELECT id, status FROM subscribers WHERE email_key = ?1")?
            .query_row([&address.key], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if id > added_after {
            return Ok(Imported::Repeat(id));
        }
        let status = Status::parse(&status)?;
        if status != Status::Active && !(reactivate && status.reactivatable()) {
            return Ok(Imported::Existing(Added::Suppressed(status)));
        }
        self.conn
            .prepare_cached(
                "UPDATE subscribers SET status = 'active', name = COALESCE(?2, name),
                 updated_at = ?3 WHERE id = ?1",
            )?
            .execute(params![id, name, now])?;
        Ok(Imported::Existing(if status == Status::Active {
            Added::AlreadyActive
        } else {
            Added::Reactivated
        }))
    }

    /// Sets a subscriber's status by address. Returns the previous status, or None if unknown.
    pub fn set_status(&self, address: &Address, status: Status) -> anyhow::Result<Option<Status>> {
        let old: Option<String> = self
            .conn
            .query_row(
                "SELECT status FROM subscribers WHERE email_key = ?1",
                [&address.key],
                |r| r.get(0),
            )
            .optional()?;
        if old.is_some() {
            self.conn.execute(
                "UPDATE subscribers SET status = ?2, updated_at = ?3,
                 status_at = CASE WHEN status = ?2 THEN status_at ELSE ?3 END
                 WHERE email_key = ?1",
                params![address.key, status.as_str(), timestamp()],
            )?;
        }
        old.as_deref().map(Status::parse).transpose()
    }

    /// Records an inbound event for a known subscriber; false if unknown or already recorded.
    pub fn record_event(
        &self,
        address: &Address,
        kind: &str,
        status: Option<&str>,
        source: &str,
    ) -> anyhow::Result<bool> {
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO events (subscriber_id, kind, status, source, created_at)
             SELECT id, ?2, ?3, ?4, ?5 FROM subscribers WHERE email_key = ?1",
            params![address.key, kind, status, source, timestamp()],
        )?;
        Ok(n > 0)
    }

    /// Suppresses a subscriber with a reason (never lifts a complaint).
    pub fn suppress(&self, address: &Address, status: Status, reason: &str) -> anyhow::Result<()> {
        let now = timestamp();
        self.conn.execute(
            "UPDATE subscribers SET status = ?2, reason = ?3, status_at = ?4, updated_at = ?4
             WHERE email_key = ?1 AND status != 'complained' AND status != ?2",
            params![address.key, status.as_str(), reason, now],
        )?;
        Ok(())
    }

    /// Calls `f` for every subscriber in the order they were added, without loading the list.
    pub fn for_each_subscriber(
        &self,
        mut f: impl FnMut(&Subscriber) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut stmt = self.conn.prepare(
            "SELECT id, email, name, status, created_at, updated_at, reason, status_at
             FROM subscribers ORDER BY id",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let s = Subscriber {
                id: r.get(0)?,
                email: r.get(1)?,
                name: r.get(2)?,
                status: Status::parse(&r.get::<_, String>(3)?)?,
                created_at: r.get(4)?,
                updated_at: r.get(5)?,
                reason: r.get(6)?,
                status_at: r.get(7)?,
            };
            f(&s)?;
        }
        Ok(())
    }

    /// The number of active subscribers.
    pub fn count_active(&self) -> anyhow::Result<u64> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM subscribers WHERE status = 'active'",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }
}

impl Store {
    /// The reason `list` and `export` show for a reader who left by the unsubscribe link.
    pub const UNSUBSCRIBE_LINK: &str = "unsubscribe link";

    /// Unsubscribes every address in one IMMEDIATE transaction (`gazette serve` groups the
    /// one-click requests that arrive together: one commit, one fsync for all of them). Like
    /// [`Store::set_status`] with `Unsubscribed`; an address not on the list is added as
    /// unsubscribed, so no later import adds it; a complaint stays a complaint. Durable when
    /// it returns.
    pub fn unsubscribe_all(&mut self, addresses: &[Address]) -> anyhow::Result<()> {
        let now = timestamp();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO subscribers (email, email_key, name, status, created_at, updated_at, status_at, reason)
                 VALUES (?1, ?2, NULL, 'unsubscribed', ?3, ?3, ?3, ?4)
                 ON CONFLICT (email_key) DO UPDATE SET status = 'unsubscribed',
                   updated_at = excluded.updated_at,
                   status_at = CASE WHEN status = 'unsubscribed' THEN status_at ELSE excluded.status_at END,
                   reason = CASE WHEN status = 'unsubscribed' THEN reason ELSE excluded.reason END
                 WHERE status <> 'complained'",
            )?;
            for a in addresses {
                upsert.execute(params![a.email, a.key, now, Self::UNSUBSCRIBE_LINK])?;
            }
        }
        tx.commit()
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        Ok(())
    }
}
