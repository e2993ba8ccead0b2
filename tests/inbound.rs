//! `gazette inbound`: real bounce, complaint and auto-reply messages (tests/fixtures/inbound/)
//! read back into the subscriber list.

use crate::support::Newsletter;

fn fixture(name: &str) -> String {
    crate::support::repo()
        .join("tests/fixtures/inbound")
        .join(name)
        .display()
        .to_string()
}

fn with_readers() -> Newsletter {
    let n = Newsletter::sample();
    for a in [
        "gone", "full", "blocked", "angry", "reader", "nobody", "unknown",
    ] {
        let domain = if a == "nobody" || a == "unknown" {
            "exim.example"
        } else {
            "example.org"
        };
        n.gazette(&["subscribers", "add", &format!("{a}@{domain}")])
            .ok();
    }
    n
}

fn json(n: &Newsletter, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["--json", "inbound"];
    all.extend_from_slice(args);
    n.gazette(&all)
        .ok()
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[test]
fn each_fixture_is_classified() {
    let n = with_readers();
    let cases = [
        ("postfix-5.1.1.eml", "bounce", "bounced"),
        ("postfix-5.2.2-full.eml", "bounce", "soft bounce counted"),
        ("postfix-5.7.1-spam.eml", "bounce", "policy, not suppressed"),
        ("exim-plain.eml", "bounce", "bounced"),
        ("arf-abuse.eml", "complaint", "complained"),
        ("autoreply-rfc3834.eml", "autoreply", "none"),
        ("vacation-plain.eml", "autoreply", "none"),
        ("delivered-dsn.eml", "delivery", "none"),
        ("truncated.eml", "other", "none"),
    ];
    for (file, kind, action) in cases {
        let out = json(&n, &["--dry-run", &fixture(file)]);
        assert_eq!(out.len(), 1, "{file}");
        assert_eq!(out[0]["kind"], kind, "{file}: {}", out[0]);
        assert_eq!(out[0]["action"], action, "{file}: {}", out[0]);
    }
    let hard = &json(&n, &["--dry-run", &fixture("postfix-5.1.1.eml")])[0]["recipients"][0];
    assert_eq!(hard["address"], "gone@example.org");
    assert_eq!(hard["status"], "5.1.1");
    assert_eq!(hard["hard"], true);
    let exim = json(&n, &["--dry-run", &fixture("exim-plain.eml")]);
    let addrs: Vec<_> = exim[0]["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(addrs, ["nobody@exim.example", "unknown@exim.example"]);
}

#[test]
fn actions_apply_once_and_dry_run_changes_nothing() {
    let n = with_readers();
    let all: Vec<String> = [
        "postfix-5.1.1.eml",
        "postfix-5.2.2-full.eml",
        "postfix-5.7.1-spam.eml",
        "arf-abuse.eml",
        "autoreply-rfc3834.eml",
        "vacation-plain.eml",
    ]
    .iter()
    .map(|f| fixture(f))
    .collect();
    let mut args: Vec<&str> = vec!["inbound", "--dry-run"];
    args.extend(all.iter().map(String::as_str));
    let summary = n.gazette(&args).ok().stdout;
    assert!(summary.contains("6 message(s)"), "{summary}");
    assert!(summary.contains("dry run"), "{summary}");
    assert_eq!(n.status_of("gone@example.org"), "active");
    assert_eq!(n.status_of("angry@example.org"), "active");

    args.remove(1);
    n.gazette(&args).ok();
    assert_eq!(n.status_of("gone@example.org"), "bounced");
    assert_eq!(n.status_of("angry@example.org"), "complained");
    assert_eq!(n.status_of("full@example.org"), "active");
    assert_eq!(n.status_of("blocked@example.org"), "active");
    assert_eq!(n.status_of("reader@example.org"), "active");
    let events = || {
        crate::support::tool(
            "sqlite3",
            &[
                &n.path().join(".gazette/gazette.db").display().to_string(),
                "SELECT COUNT(*) FROM events",
            ],
        )
        .ok()
        .stdout
        .trim()
        .to_string()
    };
    assert_eq!(events(), "4");
    // The same messages again: no new events.
    n.gazette(&args).ok();
    assert_eq!(events(), "4");
    // A complaint is not undone by an import without --reactivate.
    let refused = n.gazette(&["subscribers", "add", "angry@example.org"]);
    assert_ne!(refused.status, 0);
    assert!(refused.stderr.contains("complained"), "{}", refused.stderr);
    assert_eq!(n.status_of("angry@example.org"), "complained");
}

#[test]
fn a_maildir_moves_new_to_cur_and_an_mbox_is_split() {
    let n = with_readers();
    for d in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(n.path().join("Maildir").join(d)).unwrap();
    }
    std::fs::copy(
        fixture("postfix-5.1.1.eml"),
        n.path().join("Maildir/new/1764669601.M1P1.host"),
    )
    .unwrap();
    let md = n.path().join("Maildir").display().to_string();
    n.gazette(&["inbound", "--dry-run", &md]).ok();
    assert!(n.exists("Maildir/new/1764669601.M1P1.host"));
    n.gazette(&["inbound", &md]).ok();
    assert!(!n.exists("Maildir/new/1764669601.M1P1.host"));
    assert!(n.exists("Maildir/cur/1764669601.M1P1.host:2,"));
    assert_eq!(n.status_of("gone@example.org"), "bounced");

    let mut mbox = Vec::new();
    for f in ["arf-abuse.eml", "vacation-plain.eml"] {
        mbox.extend_from_slice(b"From MAILER-DAEMON Tue Dec  2 10:00:00 2026\n");
        mbox.extend(std::fs::read(fixture(f)).unwrap());
        mbox.extend_from_slice(b"\n");
    }
    n.write("inbox.mbox", &mbox);
    let out = json(&n, &[&n.path().join("inbox.mbox").display().to_string()]);
    let kinds: Vec<_> = out.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["complaint", "autoreply"]);
    assert_eq!(n.status_of("angry@example.org"), "complained");
}

#[test]
fn garbage_on_stdin_is_other_not_a_panic() {
    let n = with_readers();
    use std::io::Write;
    let mut child = n
        .command(&["--json", "inbound"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"\xff\xfe\x00 not a message at all\n\n--")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["source"], "-");
    assert_eq!(v["kind"], "other");
}
