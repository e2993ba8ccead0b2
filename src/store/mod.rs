//! The SQLite database at `.gazette/gazette.db`: subscribers (with suppressions) and the
//! delivery ledger, schema versioned by `PRAGMA user_version`. Owns every SQL statement; knows
//! nothing about SMTP, CSV or the terminal.

pub mod csv;
mod events;
mod ledger;
mod outbox;
mod subscribers;

pub use events::InboundCounts;
pub use ledger::{Counts, Delivery, LedgerWrite, Recipient, SentIssue, State};
pub use outbox::{Queued, QueuedMessage, SignedUp};
pub use subscribers::{Added, Address, Imported, Status, Subscriber};

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;

/// The database's path inside a newsletter directory.
pub fn db_path(dir: &Path) -> PathBuf {
    crate::layout::state(dir, "gazette.db")
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
    // 5: the outgoing queue of `gazette serve` (confirmation mails): each message's bytes,
    // kept `queued` until the relay's 250, then `sent` (kept a while: the one-a-day limit
    // reads it); `failed` after a permanent refusal or too many attempts.
    "CREATE TABLE outbox (
        id            INTEGER PRIMARY KEY,
        kind          TEXT NOT NULL,
        email         TEXT NOT NULL,
        email_key     TEXT NOT NULL,
        sender        TEXT NOT NULL,
        message_id    TEXT NOT NULL,
        message       BLOB NOT NULL,
        state         TEXT NOT NULL CHECK (state = 'queued' OR state = 'sent' OR state = 'failed'),
        attempts      INTEGER NOT NULL DEFAULT 0,
        next_attempt  TEXT NOT NULL,
        last_reply    TEXT,
        created_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL
    );
    CREATE INDEX outbox_due ON outbox (state, next_attempt);
    CREATE INDEX outbox_address ON outbox (email_key, kind, created_at);",
    // 6: the issue an inbound event is about (from its VERP token), for the soft-bounce rule
    // and the per-issue counts of `status`.
    "ALTER TABLE events ADD COLUMN issue_id TEXT;
    CREATE INDEX events_subscriber ON events (subscriber_id, kind);",
];

/// The schema version this gazette writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

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
        let path = crate::layout::state(dir, "send.lock");
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
    crate::clock::now()
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

    // ---- the delivery ledger ----
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unsubscribe_link_leaves_its_reason_and_a_complaint_stays() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let (ann, bob, new) = (
            Address::parse("ann@example.org").unwrap(),
            Address::parse("bob@example.org").unwrap(),
            Address::parse("new@example.org").unwrap(),
        );
        s.add(&ann, None, false).unwrap();
        s.add(&bob, None, false).unwrap();
        s.suppress(&bob, Status::Complained, "complaint: abuse")
            .unwrap();
        s.unsubscribe_all(&[ann.clone(), bob.clone(), new.clone()])
            .unwrap();
        // Again: the first reason and date stay.
        s.unsubscribe_all(std::slice::from_ref(&ann)).unwrap();
        let mut seen = Vec::new();
        s.for_each_subscriber(|r| {
            seen.push((r.email.clone(), r.status, r.reason.clone()));
            Ok(())
        })
        .unwrap();
        let link = Some(Store::UNSUBSCRIBE_LINK.to_string());
        assert_eq!(
            seen,
            [
                ("ann@example.org".into(), Status::Unsubscribed, link.clone()),
                (
                    "bob@example.org".into(),
                    Status::Complained,
                    Some("complaint: abuse".into())
                ),
                ("new@example.org".into(), Status::Unsubscribed, link),
            ]
        );
    }

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
