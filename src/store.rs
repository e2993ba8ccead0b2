//! The SQLite database at `.gazette/gazette.db`: subscribers (with suppressions) and the
//! delivery ledger, schema versioned by `PRAGMA user_version`. Owns every SQL statement; knows
//! nothing about SMTP, CSV or the terminal.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;

/// The database's path inside a newsletter directory.
pub fn db_path(dir: &Path) -> PathBuf {
    dir.join(".gazette").join("gazette.db")
}

/// Each entry moves the schema one version up; `user_version` counts the ones applied.
/// Append only: never edit a migration that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: subscribers and the delivery ledger.
    "CREATE TABLE subscribers (
        id          INTEGER PRIMARY KEY,
        email       TEXT NOT NULL,
        email_key   TEXT NOT NULL UNIQUE,
        name        TEXT,
        status      TEXT NOT NULL CHECK (status IN ('active', 'unsubscribed', 'bounced')),
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    );
    CREATE TABLE deliveries (
        issue_id       TEXT NOT NULL,
        subscriber_id  INTEGER NOT NULL REFERENCES subscribers(id),
        email          TEXT NOT NULL,
        state          TEXT NOT NULL
                       CHECK (state IN ('sending', 'sent', 'deferred', 'failed', 'bounced', 'unknown')),
        message_id     TEXT NOT NULL,
        attempts       INTEGER NOT NULL DEFAULT 0,
        last_reply     TEXT,
        created_at     TEXT NOT NULL,
        updated_at     TEXT NOT NULL,
        PRIMARY KEY (issue_id, subscriber_id)
    ) WITHOUT ROWID;
    CREATE INDEX deliveries_state ON deliveries (issue_id, state);",
    // 2: the moment each message was handed to SMTP (its `Date`, reused when it is sent
    // again), and what each sent issue was, so that an issue whose id changed is not sent twice.
    "ALTER TABLE deliveries ADD COLUMN date TEXT;
    CREATE TABLE sent_issues (
        issue_id     TEXT PRIMARY KEY,
        slug         TEXT NOT NULL,
        title        TEXT NOT NULL,
        body_sha256  TEXT NOT NULL,
        first_sent   TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sent_issues_slug ON sent_issues (slug);",
    // 3: two more statuses, `pending` (signed up, not yet confirmed: never counted, never
    // sent to) and `complained` (a spam complaint: suppressed for good), and why and when a
    // subscriber's status last changed. SQLite cannot alter a CHECK, so the table is rebuilt
    // (foreign keys are off during migrations; see `migrate`). The CHECK is written with `OR`,
    // not `IN (...)`: SQLite builds a temporary table for an IN list on every row written,
    // which was 15% of an import's time.
    "CREATE TABLE subscribers_v3 (
        id          INTEGER PRIMARY KEY,
        email       TEXT NOT NULL,
        email_key   TEXT NOT NULL UNIQUE,
        name        TEXT,
        status      TEXT NOT NULL
                    CHECK (status = 'active' OR status = 'pending' OR status = 'unsubscribed'
                           OR status = 'bounced' OR status = 'complained'),
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL,
        reason      TEXT,
        status_at   TEXT
    );
    INSERT INTO subscribers_v3 (id, email, email_key, name, status, created_at, updated_at, status_at)
        SELECT id, email, email_key, name, status, created_at, updated_at,
               CASE WHEN status = 'active' THEN NULL ELSE updated_at END
        FROM subscribers;
    DROP TABLE subscribers;
    ALTER TABLE subscribers_v3 RENAME TO subscribers;",
    // 4: what `gazette inbound` read: one row per subscriber, kind and source message, so a
    // message processed twice counts once.
    "CREATE TABLE events (
        id             INTEGER PRIMARY KEY,
        subscriber_id  INTEGER NOT NULL REFERENCES subscribers(id),
        kind           TEXT NOT NULL,
        status         TEXT,
        source         TEXT NOT NULL,
        created_at     TEXT NOT NULL,
        UNIQUE (subscriber_id, kind, source)
    );",
];

/// The schema version this gazette writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

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
    fn parse(s: &str) -> anyhow::Result<Status> {
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

/// An open database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Store({})", self.path.display())
    }
}

/// Held by the one `send` allowed at a time per newsletter: an exclusive lock on a small
/// SQLite file, which the operating system releases if the process dies.
#[derive(Debug)]
pub struct RunLock {
    _held: Connection,
}

impl RunLock {
    pub fn take(dir: &Path) -> anyhow::Result<RunLock> {
        let path = dir.join(".gazette").join("send.lock");
        crate::files::create_dir_all(path.parent().expect("the path has a parent"))?;
        let conn =
            Connection::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::ZERO)?;
        match conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;") {
            Ok(()) => Ok(RunLock { _held: conn }),
            // Only "busy" means another process holds the lock; anything else (a read-only
            // directory, a damaged file, a full disk) is its own problem, said as it is.
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
                bail!("another `gazette send` is running on this newsletter; wait for it to finish")
            }
            Err(e) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
    }
}

/// Now, as the database writes times.
pub fn timestamp() -> String {
    crate::now()
        .unwrap_or_else(|_| chrono::Utc::now().fixed_offset())
        .to_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Store {
    /// Opens (creating when absent) the newsletter's database and brings its schema up to date.
    pub fn open(dir: &Path) -> anyhow::Result<Store> {
        let path = db_path(dir);
        crate::files::create_dir_all(path.parent().expect("the path has a parent"))?;
        // The list is personal data: readable by its owner only, from the moment it exists
        // (SQLite gives the -wal and -shm files the database's mode).
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create {}", path.display()));
            }
        }
        Store::open_path(&path, true)
    }

    /// Opens the database if it exists, without creating or migrating it.
    pub fn open_existing(dir: &Path) -> anyhow::Result<Option<Store>> {
        let path = db_path(dir);
        if !path.exists() {
            return Ok(None);
        }
        Store::open_path(&path, false).map(Some)
    }

    fn open_path(path: &Path, migrate: bool) -> anyhow::Result<Store> {
        let flags = if migrate {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        };
        let conn = Connection::open_with_flags(path, flags)
            .with_context(|| format!("cannot open the database {}", path.display()))?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.configure().with_context(|| {
            format!("{} is not a gazette database or is damaged", path.display())
        })?;
        let version = store.version()?;
        if version > SCHEMA_VERSION {
            bail!(
                "{}: the database has schema version {version}, newer than this gazette knows \
                 ({SCHEMA_VERSION}); upgrade gazette rather than let an old one write to it",
                path.display()
            );
        }
        if migrate && version < SCHEMA_VERSION {
            store.migrate(version)?;
        }
        Ok(store)
    }

    fn configure(&self) -> rusqlite::Result<()> {
        self.conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // WAL: readers never block the writer; FULL: a commit is on disk when it returns,
        // which the ledger needs (a row is durable before its message goes out).
        self.conn
            .query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        self.conn
            .execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
        Ok(())
    }

    /// Relaxes commits to "handed to the operating system" (`synchronous = NORMAL`) for this
    /// connection: `[smtp] ledger_sync = "normal"`.
    pub fn relax_sync(&self) -> anyhow::Result<()> {
        self.conn
            .execute_batch("PRAGMA synchronous = NORMAL;")
            .with_context(|| format!("cannot configure {}", self.path.display()))
    }

    /// The schema version of the file (`PRAGMA user_version`).
    pub fn version(&self) -> anyhow::Result<i64> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .with_context(|| format!("cannot read {}", self.path.display()))
    }

    /// Foreign keys are switched off while migrations run (a table rebuild drops and renames
    /// a referenced table, as SQLite's ALTER TABLE documentation prescribes) and checked
    /// before each migration commits.
    fn migrate(&self, from: i64) -> anyhow::Result<()> {
        if from as usize >= MIGRATIONS.len() {
            return Ok(());
        }
        self.conn.execute_batch("PRAGMA foreign_keys = OFF;")?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
            let to = i + 1;
            self.conn
                .execute_batch(&format!(
                    "BEGIN IMMEDIATE; {sql}; PRAGMA foreign_key_check; PRAGMA user_version = {to}; COMMIT;"
                ))
                .with_context(|| {
                    format!(
                        "cannot upgrade {} to schema version {to}",
                        self.path.display()
                    )
                })?;
        }
        self.conn.execute_batch("PRAGMA foreign_keys = ON;")?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Problems with the database that `check` reports: integrity and schema version.
    pub fn problems(&self) -> Vec<String> {
        let mut found = Vec::new();
        match self.version() {
            Ok(v) if v < SCHEMA_VERSION => found.push(format!(
                "the database has schema version {v}; the next command that writes will upgrade it to {SCHEMA_VERSION}"
            )),
            Ok(_) => {}
            Err(e) => found.push(format!("{e:#}")),
        }
        match self
            .conn
            .query_row("PRAGMA quick_check", [], |r| r.get::<_, String>(0))
        {
            Ok(s) if s == "ok" => {}
            Ok(s) => found.push(format!("the database is damaged: {s}")),
            Err(e) => found.push(format!("the database cannot be read: {e}")),
        }
        found
    }

    // ---- subscribers ----

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

    /// Runs `f` inside one transaction (imports are thousands of rows).
    pub fn transaction<T>(
        &mut self,
        f: impl FnOnce(&Store) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        match f(self) {
            Ok(v) => {
                self.conn.execute_batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
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
            "SELECT id, email, name, status, created_at, updated_at FROM subscribers ORDER BY id",
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

    // ---- the delivery ledger ----

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

impl Store {
    /// Unsubscribes every address in one IMMEDIATE transaction (`gazette serve` groups the
    /// one-click requests that arrive together: one commit, one fsync for all of them). Like
    /// [`Store::set_status`] with `Unsubscribed`; an address not on the list is added as
    /// unsubscribed, so no later import adds it. Durable when it returns.
    pub fn unsubscribe_all(&mut self, addresses: &[Address]) -> anyhow::Result<()> {
        let now = timestamp();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO subscribers (email, email_key, name, status, created_at, updated_at, status_at)
                 VALUES (?1, ?2, NULL, 'unsubscribed', ?3, ?3, ?3)
                 ON CONFLICT (email_key) DO UPDATE SET status = 'unsubscribed',
                   updated_at = excluded.updated_at,
                   status_at = CASE WHEN status = 'unsubscribed' THEN status_at ELSE excluded.status_at END",
            )?;
            for a in addresses {
                upsert.execute(params![a.email, a.key, now])?;
            }
        }
        tx.commit()
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised_and_checked() {
        let a = Address::parse("  Ann.Lee@Example.ORG ").unwrap();
        assert_eq!(a.email, "Ann.Lee@example.org");
        assert_eq!(a.key, "ann.lee@example.org");
        for bad in [
            "",
            "no-at",
            "a@b",
            "a b@example.org",
            "a@exa\nmple.org",
            "@example.org",
            "zhāng@example.org",
            "张三@example.org",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad:?} accepted");
        }
        // Regression: non-ASCII addresses were accepted here and then failed at send time.
        let err = Address::parse("张三@example.org").unwrap_err();
        assert!(err.contains("non-ASCII"), "{err}");
        assert_eq!(
            Address::parse("ann@Bücher.example").unwrap().email,
            "ann@xn--bcher-kva.example"
        );
    }

    #[test]
    fn an_unknown_status_is_an_error_not_active() {
        assert_eq!(Status::parse("bounced").unwrap(), Status::Bounced);
        for s in ["", "Active", "suspended"] {
            assert!(Status::parse(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn the_run_lock_is_busy_only_while_another_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let held = RunLock::take(dir.path()).unwrap();
        let err = RunLock::take(dir.path()).unwrap_err().to_string();
        assert!(err.contains("another `gazette send`"), "{err}");
        drop(held);
        RunLock::take(dir.path()).unwrap();
        // Not a lock held by another run: a lock file that is not a database.
        std::fs::write(dir.path().join(".gazette/send.lock"), vec![b'x'; 4096]).unwrap();
        let err = format!("{:#}", RunLock::take(dir.path()).unwrap_err());
        assert!(!err.contains("another `gazette send`"), "{err}");
        assert!(err.contains("cannot lock"), "{err}");
    }

    #[test]
    fn migrations_run_once_and_newer_schemas_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.version().unwrap(), SCHEMA_VERSION);
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        s.conn
            .execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
            .unwrap();
        drop(s);
        let err = Store::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("newer than this gazette"), "{err}");
    }

    #[test]
    fn suppressed_addresses_stay_suppressed_unless_reactivated() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let a = Address::parse("x@example.org").unwrap();
        assert_eq!(s.add(&a, None, false).unwrap(), Added::New);
        s.set_status(&a, Status::Unsubscribed).unwrap();
        let upper = Address::parse("X@EXAMPLE.org").unwrap();
        assert_eq!(
            s.add(&upper, None, false).unwrap(),
            Added::Suppressed(Status::Unsubscribed)
        );
        assert_eq!(s.count_active().unwrap(), 0);
        assert_eq!(s.add(&upper, None, true).unwrap(), Added::Reactivated);
        assert_eq!(s.count_active().unwrap(), 1);
    }

    #[test]
    fn a_complaint_is_not_undone_by_reactivate_and_pending_is_not_counted() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let a = Address::parse("c@example.org").unwrap();
        assert_eq!(s.add(&a, None, false).unwrap(), Added::New);
        s.set_status(&a, Status::Complained).unwrap();
        assert_eq!(
            s.add(&a, None, true).unwrap(),
            Added::Suppressed(Status::Complained)
        );
        let p = Address::parse("p@example.org").unwrap();
        assert_eq!(s.add(&p, None, false).unwrap(), Added::New);
        s.set_status(&p, Status::Pending).unwrap();
        assert_eq!(s.count_active().unwrap(), 0);
    }
}
