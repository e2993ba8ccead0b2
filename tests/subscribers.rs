//! `gazette subscribers ...`, `unsubscribe` and the database seen by `check`: bad CSV input is
//! reported by file and line while the good rows go in.

use crate::support::{Newsletter, tool};

impl Newsletter {
    fn file(&self, rel: &str) -> String {
        self.path().join(rel).to_str().unwrap().to_string()
    }
}

#[test]
fn bad_rows_are_reported_by_line_and_the_good_rows_imported() {
    let n = Newsletter::sample();
    let mut csv: Vec<u8> = Vec::new();
    csv.extend_from_slice(b"\xEF\xBB\xBFName,Email\r\n"); // 1: BOM, CRLF, other column order
    csv.extend_from_slice(b"\"Lee, Ann\",ann@example.org\r\n"); // 2: quoted comma
    csv.extend_from_slice(b"Bob,not-an-address\r\n"); // 3: invalid
    csv.extend_from_slice(b"Ann again,ANN@Example.ORG\r\n"); // 4: duplicate in case only
    csv.extend_from_slice(b"\"Two\r\nLines\",two@example.org\r\n"); // 5-6: CR/LF in a field
    csv.extend_from_slice(b"\xC0\xC1,gbk@example.org\r\n"); // 7: not UTF-8
    csv.extend_from_slice(b"Cy,cy@example.org\r\n"); // 8
    csv.extend_from_slice(b"Broken,\"dee@example.org\r\n"); // 9: a quote never closed
    csv.extend_from_slice(b"Eve,eve@example.org\r\n"); // 10
    n.write("list.csv", &csv);
    let out = n
        .gazette(&["subscribers", "import", &n.file("list.csv")])
        .code(1);
    for line in [3, 4, 5, 7, 9] {
        assert!(
            out.stderr.contains(&format!("list.csv:{line}:")),
            "line {line} not reported:\n{}",
            out.stderr
        );
    }
    assert!(out.stderr.contains("repeats line 2"), "{}", out.stderr);
    let list = n.gazette(&["subscribers", "list"]).ok().stdout;
    for a in [
        "ann@example.org\tactive\tLee, Ann",
        "cy@example.org",
        "eve@example.org",
    ] {
        assert!(list.contains(a), "{a} missing:\n{list}");
    }
    assert!(!list.contains("gbk@"), "{list}");
    assert_eq!(n.subscriber_count(), "3", "{list}");
}

#[test]
fn a_csv_without_an_email_column_imports_nothing_and_says_why() {
    let n = Newsletter::sample();
    n.write("list.csv", "mail,name\na@example.org,A\n");
    let out = n
        .gazette(&["subscribers", "import", &n.file("list.csv")])
        .code(1);
    assert!(out.stderr.contains("list.csv:1:1"), "{}", out.stderr);
    assert!(out.stderr.contains("no `email` column"), "{}", out.stderr);
    // Said as what it is: no row was read, rather than "1 row with errors; the others were".
    assert!(
        out.stderr.contains("nothing was imported from") && out.stderr.contains("header row"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("the other rows were"),
        "{}",
        out.stderr
    );
    assert_eq!(n.subscriber_count(), "0");

    // A header of one 3 MB "column" is named by its start, not printed whole.
    n.write(
        "list.csv",
        format!("{}\na@example.org\n", "x".repeat(3_000_000)),
    );
    let out = n
        .gazette(&["subscribers", "import", &n.file("list.csv")])
        .code(1);
    assert!(
        out.stderr.contains(&format!("found `{}…`", "x".repeat(40))),
        "{:.2000}",
        out.stderr
    );
    assert!(
        out.stderr.len() < 2_000,
        "{} bytes of errors",
        out.stderr.len()
    );
    assert_eq!(n.subscriber_count(), "0");
}

#[test]
fn an_empty_or_binary_file_does_not_panic() {
    let n = Newsletter::sample();
    n.write("empty.csv", "");
    n.gazette(&["subscribers", "import", &n.file("empty.csv")])
        .code(1);
    n.write("bin.csv", [0u8, 159, 146, 150, b'\n', 0xff, b',', b'"']);
    n.gazette(&["subscribers", "import", &n.file("bin.csv")])
        .code(1);
}

#[test]
fn an_unsubscribed_address_is_not_reactivated_by_an_import_unless_asked() {
    let n = Newsletter::sample();
    n.write("list.csv", "email\nann@example.org\nbob@example.org\n");
    n.gazette(&["subscribers", "import", &n.file("list.csv")])
        .ok();
    n.gazette(&["subscribers", "remove", "ANN@example.org"])
        .ok();
    assert_eq!(n.subscriber_count(), "1");
    let out = n
        .gazette(&["subscribers", "import", &n.file("list.csv")])
        .ok();
    assert!(out.stderr.contains("unsubscribed"), "{}", out.stderr);
    assert_eq!(n.subscriber_count(), "1");
    n.gazette(&["subscribers", "add", "ann@example.org"])
        .code(1);
    assert_eq!(n.subscriber_count(), "1");
    n.gazette(&["subscribers", "import", &n.file("list.csv"), "--reactivate"])
        .ok();
    assert_eq!(n.subscriber_count(), "2");
}

#[test]
fn export_writes_csv_that_imports_again() {
    let n = Newsletter::sample();
    n.gazette(&["subscribers", "add", "a@example.org", "--name", "李, \"A\""])
        .ok();
    n.gazette(&["subscribers", "add", "b@example.org"]).ok();
    let out = n.gazette(&["subscribers", "export"]).ok().stdout;
    assert!(
        out.starts_with("email,name,status,created_at,updated_at,reason,status_at\n"),
        "{out}"
    );
    assert!(
        out.contains("a@example.org,\"李, \"\"A\"\"\",active,"),
        "{out}"
    );
    let m = Newsletter::sample();
    m.write("back.csv", &out);
    m.gazette(&["subscribers", "import", &m.file("back.csv")])
        .ok();
    assert_eq!(m.subscriber_count(), "2");
}

/// Regression: a name given on the sign-up form, `=HYPERLINK("http://…","…")`, went into
/// the export as it was, and a spreadsheet opening the export ran it as a formula.
#[test]
fn export_writes_formula_like_names_behind_a_quote_and_imports_them_as_they_were() {
    let n = Newsletter::sample();
    let hostile = "=HYPERLINK(\"http://evil.example/\",\"open\")";
    n.gazette(&["subscribers", "add", "a@example.org", "--name", hostile])
        .ok();
    n.gazette(&[
        "subscribers",
        "add",
        "--name",
        "@SUM(A1:A9)",
        "--",
        "-b@example.org",
    ])
    .ok();
    let out = n.gazette(&["subscribers", "export"]).ok().stdout;
    assert!(
        out.contains(
            "a@example.org,\"'=HYPERLINK(\"\"http://evil.example/\"\",\"\"open\"\")\",active,"
        ),
        "{out}"
    );
    assert!(
        out.contains("\n'-b@example.org,'@SUM(A1:A9),active,"),
        "{out}"
    );
    for line in out.lines().skip(1) {
        for cell in line.split(',') {
            let cell = cell.trim_start_matches('"');
            assert!(!cell.starts_with(['=', '+', '-', '@']), "{cell} in {line}");
        }
    }
    let m = Newsletter::sample();
    m.write("back.csv", &out);
    m.gazette(&["subscribers", "import", &m.file("back.csv")])
        .ok();
    let list = m.gazette(&["subscribers", "list"]).ok().stdout;
    assert!(list.contains(hostile), "{list}");
    assert!(
        list.contains("-b@example.org") && !list.contains("'-b@"),
        "{list}"
    );
    assert!(
        list.contains("@SUM(A1:A9)") && !list.contains("'@SUM"),
        "{list}"
    );
}

#[test]
fn unsubscribe_accepts_a_signed_token_and_refuses_a_forged_one() {
    let n = Newsletter::sample();
    n.gazette(&["subscribers", "add", "reader@example.org"])
        .ok();
    let secret = gazette::token::Secret::new("test-secret-not-for-production");
    let token = secret.token("papers.digest.example.org", "reader@example.org");
    let forged = gazette::token::Secret::new("some-other-key-0123456")
        .token("papers.digest.example.org", "reader@example.org");
    n.gazette(&["unsubscribe", &forged]).code(1);
    assert_eq!(n.subscriber_count(), "1");
    n.gazette(&["unsubscribe", &token]).ok();
    assert_eq!(n.subscriber_count(), "0");
    // An address not on the list is remembered, so a later import does not add it.
    n.gazette(&["unsubscribe", "Stranger@example.org"]).ok();
    n.write("list.csv", "email\nstranger@example.org\n");
    n.gazette(&["subscribers", "import", &n.file("list.csv")])
        .ok();
    assert_eq!(n.subscriber_count(), "0");
}

#[test]
fn check_reports_a_database_newer_than_this_gazette() {
    let n = Newsletter::sample();
    n.gazette(&["subscribers", "add", "a@example.org"]).ok();
    n.gazette(&["check"]).ok();
    tool(
        "sqlite3",
        &[
            n.path().join(".gazette/gazette.db").to_str().unwrap(),
            "PRAGMA user_version = 99",
        ],
    )
    .ok();
    let out = n.gazette(&["check"]).code(1);
    assert!(out.stderr.contains("gazette.db"), "{}", out.stderr);
    assert!(
        out.stderr.contains("newer than this gazette"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_non_ascii_address_is_refused_at_import_and_add_not_failed_at_send() {
    let n = Newsletter::sample();
    let out = n
        .gazette(&["subscribers", "add", "张三@example.org"])
        .code(1);
    assert!(out.stderr.contains("non-ASCII"), "{}", out.stderr);
    n.write(
        "list.csv",
        "email\nann@example.org\nzhāng@example.org\nbo@Bücher.example\n",
    );
    let out = n
        .gazette(&["subscribers", "import", &n.file("list.csv")])
        .code(1);
    assert!(out.stderr.contains("list.csv:3:"), "{}", out.stderr);
    assert!(out.stderr.contains("non-ASCII"), "{}", out.stderr);
    let list = n.gazette(&["subscribers", "list"]).ok().stdout;
    // An internationalised domain is kept, in its ASCII form.
    assert!(list.contains("bo@xn--bcher-kva.example"), "{list}");
    assert_eq!(n.subscriber_count(), "2", "{list}");
}

// Regression: `subscribers add --name` kept a tab or line break, which garbled `list`.
#[test]
fn a_name_given_to_add_is_one_line() {
    let n = crate::support::Newsletter::sample();
    n.gazette(&[
        "subscribers",
        "add",
        "ann@example.org",
        "--name",
        "Ann\tLee\nBcc: x",
    ])
    .ok();
    let list = n.gazette(&["subscribers", "list"]).ok().stdout;
    assert_eq!(list, "ann@example.org\tactive\tAnn Lee Bcc: x\n");
}

/// A database written by a gazette of schema version 2 (before `pending` and `complained`)
/// is upgraded in place: every subscriber and ledger row survives, statuses unchanged.
#[test]
fn a_version_2_database_is_upgraded_without_losing_a_subscriber_or_ledger_row() {
    let n = Newsletter::sample();
    std::fs::create_dir_all(n.path().join(".gazette")).unwrap();
    let db = n.path().join(".gazette/gazette.db");
    let v2 = "
    CREATE TABLE subscribers (
        id INTEGER PRIMARY KEY, email TEXT NOT NULL, email_key TEXT NOT NULL UNIQUE, name TEXT,
        status TEXT NOT NULL CHECK (status IN ('active', 'unsubscribed', 'bounced')),
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
    CREATE TABLE deliveries (
        issue_id TEXT NOT NULL, subscriber_id INTEGER NOT NULL REFERENCES subscribers(id),
        email TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('sending', 'sent', 'deferred', 'failed', 'bounced', 'unknown')),
        message_id TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_reply TEXT,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        PRIMARY KEY (issue_id, subscriber_id)) WITHOUT ROWID;
    CREATE INDEX deliveries_state ON deliveries (issue_id, state);
    ALTER TABLE deliveries ADD COLUMN date TEXT;
    CREATE TABLE sent_issues (issue_id TEXT PRIMARY KEY, slug TEXT NOT NULL, title TEXT NOT NULL,
        body_sha256 TEXT NOT NULL, first_sent TEXT NOT NULL) WITHOUT ROWID;
    CREATE INDEX sent_issues_slug ON sent_issues (slug);
    INSERT INTO subscribers VALUES
        (1, 'a@example.org', 'a@example.org', 'A', 'active', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z'),
        (2, 'b@example.org', 'b@example.org', NULL, 'unsubscribed', '2026-01-01T00:00:00Z', '2026-02-01T00:00:00Z'),
        (3, 'c@example.org', 'c@example.org', NULL, 'bounced', '2026-01-01T00:00:00Z', '2026-03-01T00:00:00Z');
    INSERT INTO deliveries VALUES
        ('urn:x', 1, 'a@example.org', 'sent', '<m1@x>', 1, '250 ok', '2026-01-02T00:00:00Z',
         '2026-01-02T00:00:00Z', '2026-01-02T00:00:00Z'),
        ('urn:x', 3, 'c@example.org', 'bounced', '<m3@x>', 1, '550 5.1.1', '2026-01-02T00:00:00Z',
         '2026-01-02T00:00:00Z', '2026-01-02T00:00:00Z');
    PRAGMA user_version = 2;";
    tool("sqlite3", &[db.to_str().unwrap(), v2]).ok();
    assert_eq!(n.subscriber_count(), "1");
    let list = n.gazette(&["subscribers", "list"]).ok().stdout;
    for (email, status) in [
        ("a@example.org", "active"),
        ("b@example.org", "unsubscribed"),
        ("c@example.org", "bounced"),
    ] {
        let line = list
            .lines()
            .find(|l| l.contains(email))
            .unwrap_or_else(|| panic!("{email} lost in the upgrade:\n{list}"));
        assert!(line.contains(status), "{line}");
    }
    let rows = tool(
        "sqlite3",
        &[
            db.to_str().unwrap(),
            "PRAGMA user_version; SELECT count(*) FROM deliveries; PRAGMA foreign_key_check;",
        ],
    )
    .ok()
    .stdout;
    let mut lines = rows.lines();
    let version: i64 = lines.next().unwrap().parse().unwrap();
    assert!(version >= 3, "schema version {version} after the upgrade");
    assert_eq!(lines.next(), Some("2"), "ledger rows lost: {rows}");
    assert_eq!(lines.next(), None, "foreign key problems: {rows}");
}
