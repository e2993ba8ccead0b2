//! `gazette inbound` over one hand-written fixture per bounce format, ARF variant, auto-reply
//! style and kind of broken input (tests/fixtures/inbound/), plus the bounds: truncations and
//! bit flips of every fixture, a 50 MB message and malformed MIME trees.

use crate::support::Newsletter;

fn fixtures() -> std::path::PathBuf {
    crate::support::repo().join("tests/fixtures/inbound")
}

fn lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// (file, kind, action, [(address, status, hard)]).
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, Option<&'static str>, bool)],
);

const CASES: &[Case] = &[
    // Bounce formats, hard.
    (
        "postfix-5.1.1.eml",
        "bounce",
        "bounced",
        &[("gone@example.org", Some("5.1.1"), true)],
    ),
    (
        "postfix-5.1.2-no-domain.eml",
        "bounce",
        "bounced",
        &[("someone@no-such-domain.example", Some("5.1.2"), true)],
    ),
    (
        "exim-plain.eml",
        "bounce",
        "bounced",
        &[
            ("nobody@exim.example", Some("5.1.1"), true),
            ("unknown@exim.example", Some("5.1.1"), true),
        ],
    ),
    (
        "sendmail-5.1.1.eml",
        "bounce",
        "bounced",
        &[("nosuchuser@sendmail.example", Some("5.1.1"), true)],
    ),
    // qmail's QSBMF: no DSN; the quoted copy's addresses are not recipients.
    (
        "qmail-qsbmf.eml",
        "bounce",
        "bounced",
        &[
            ("nomailbox@qmail.example", Some("5.1.1"), true),
            ("fullbox@qmail.example", Some("5.2.2"), false),
        ],
    ),
    (
        "exchange-5.1.10.eml",
        "bounce",
        "bounced",
        &[("ghost@contoso.com", Some("5.1.10"), true)],
    ),
    (
        "office365-5.4.1.eml",
        "bounce",
        "bounced",
        &[("departed@fabrikam.example", Some("5.4.1"), true)],
    ),
    (
        "gmail-5.1.1.eml",
        "bounce",
        "bounced",
        &[("nonexistent.reader@gmail.com", Some("5.1.1"), true)],
    ),
    (
        "yahoo-554.eml",
        "bounce",
        "bounced",
        &[("longgone@yahoo.com", Some("5.0.0"), true)],
    ),
    (
        "amazon-ses.eml",
        "bounce",
        "bounced",
        &[("bounce@simulator.amazonses.com", Some("5.1.1"), true)],
    ),
    // Soft: counted, never suppressed at once.
    (
        "postfix-5.2.2-full.eml",
        "bounce",
        "soft bounce counted",
        &[("full@example.org", Some("5.2.2"), false)],
    ),
    (
        "gmail-4.2.2-over-quota.eml",
        "bounce",
        "soft bounce counted",
        &[("full.reader@gmail.com", Some("4.2.2"), false)],
    ),
    (
        "postfix-5.3.4-too-big.eml",
        "bounce",
        "soft bounce counted",
        &[("big@recipient.example", Some("5.3.4"), false)],
    ),
    // About the sender or the message: never suppresses.
    (
        "postfix-4.7.1-greylisted.eml",
        "bounce",
        "policy, not suppressed",
        &[("grey@recipient.example", Some("4.7.1"), false)],
    ),
    (
        "postfix-5.7.1-spam.eml",
        "bounce",
        "policy, not suppressed",
        &[("blocked@example.org", Some("5.7.1"), false)],
    ),
    (
        "postfix-5.7.1-blocklisted.eml",
        "bounce",
        "policy, not suppressed",
        &[("strict@recipient.example", Some("5.7.1"), false)],
    ),
    (
        "gmail-5.7.26-unauthenticated.eml",
        "bounce",
        "policy, not suppressed",
        &[("careful.reader@gmail.com", Some("5.7.26"), false)],
    ),
    // Not yet a failure.
    (
        "postfix-delayed.eml",
        "bounce",
        "delayed, not counted",
        &[("slow@slow.example", Some("4.4.1"), false)],
    ),
    // Success reports.
    ("delivered-dsn.eml", "delivery", "none", &[]),
    ("relayed-dsn.eml", "delivery", "none", &[]),
    // ARF.
    (
        "arf-abuse.eml",
        "complaint",
        "complained",
        &[("angry@example.org", None, false)],
    ),
    (
        "arf-opt-out.eml",
        "complaint",
        "complained",
        &[("leaving@mailprovider.example", None, false)],
    ),
    (
        "arf-auth-failure.eml",
        "other",
        "auth-failure report, not suppressed",
        &[("innocent@receiver.example", None, false)],
    ),
    // Auto-replies: RFC 3834, Exchange OOF, subjects only, challenge-response.
    ("autoreply-rfc3834.eml", "autoreply", "none", &[]),
    ("exchange-oof.eml", "autoreply", "none", &[]),
    ("vacation-plain.eml", "autoreply", "none", &[]),
    ("vacation-german.eml", "autoreply", "none", &[]),
    ("vacation-chinese.eml", "autoreply", "none", &[]),
    ("challenge-response.eml", "autoreply", "none", &[]),
    // Broken input.
    ("truncated.eml", "other", "none", &[]),
    (
        "truncated-dsn.eml",
        "bounce",
        "bounced",
        &[("cut@example.org", Some("5.1.1"), true)],
    ),
    (
        "wrong-boundary.eml",
        "bounce",
        "bounced",
        &[("wrongb@example.org", Some("5.1.1"), true)],
    ),
    (
        "8bit-headers.eml",
        "bounce",
        "bounced",
        &[("eightbit@example.fr", Some("5.1.1"), true)],
    ),
    (
        "dsn-no-final-recipient.eml",
        "bounce",
        "bounced",
        &[("norcpt@sloppy.example", Some("5.1.1"), true)],
    ),
];

#[test]
fn every_format_is_classified() {
    let n = Newsletter::sample();
    let paths: Vec<String> = CASES
        .iter()
        .map(|c| fixtures().join(c.0).display().to_string())
        .collect();
    let mut args = vec!["--json", "inbound", "--dry-run"];
    args.extend(paths.iter().map(String::as_str));
    let out = lines(&n.gazette(&args).ok().stdout);
    assert_eq!(out.len(), CASES.len());
    for ((file, kind, action, recipients), got) in CASES.iter().zip(&out) {
        assert!(
            got["source"].as_str().unwrap().ends_with(file),
            "{file}: {got}"
        );
        assert_eq!(got["kind"], *kind, "{file}: {got}");
        assert_eq!(got["action"], *action, "{file}: {got}");
        let want: Vec<serde_json::Value> = recipients
            .iter()
            .map(|(a, s, h)| serde_json::json!({"address": a, "status": s, "hard": h}))
            .collect();
        assert_eq!(got["recipients"], serde_json::Value::Array(want), "{file}");
    }
    // Every fixture in the folder is in the table (or in tests/inbound.rs's).
    let mut on_disk: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".eml"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = CASES.iter().map(|c| c.0.to_string()).collect();
    listed.sort();
    let missing: Vec<_> = on_disk.iter().filter(|f| !listed.contains(f)).collect();
    assert!(missing.is_empty(), "fixtures without a case: {missing:?}");
}

#[test]
fn the_summary_counts_kinds_and_actions() {
    let n = Newsletter::sample();
    let paths: Vec<String> = CASES
        .iter()
        .map(|c| fixtures().join(c.0).display().to_string())
        .collect();
    let mut args = vec!["inbound", "--dry-run"];
    args.extend(paths.iter().map(String::as_str));
    let out = n.gazette(&args).ok().stdout;
    assert_eq!(out.lines().count(), 1, "{out}");
    let kinds = |k: &str| CASES.iter().filter(|c| c.1 == k).count();
    let acts = |a: &str| CASES.iter().filter(|c| c.2 == a).count();
    assert!(
        out.starts_with(&format!(
            "{} message(s): {} autoreply, {} bounce, {} complaint, {} delivery, {} other; ",
            CASES.len(),
            kinds("autoreply"),
            kinds("bounce"),
            kinds("complaint"),
            kinds("delivery"),
            kinds("other")
        )),
        "{out}"
    );
    for a in [
        "bounced",
        "complained",
        "policy, not suppressed",
        "soft bounce counted",
        "delayed, not counted",
    ] {
        assert!(out.contains(&format!("{} {a}", acts(a))), "{a}: {out}");
    }
    assert!(
        out.trim_end().ends_with("(dry run: nothing changed)"),
        "{out}"
    );
}

/// A Maildir under the newsletter with `messages` in new/.
fn maildir(n: &Newsletter, name: &str, messages: &[(String, Vec<u8>)]) -> String {
    for d in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(n.path().join(name).join(d)).unwrap();
    }
    for (file, bytes) in messages {
        std::fs::write(n.path().join(name).join("new").join(file), bytes).unwrap();
    }
    n.path().join(name).display().to_string()
}

#[test]
fn truncations_and_bit_flips_of_every_fixture_never_panic() {
    let n = Newsletter::sample();
    let mut messages = Vec::new();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for c in CASES {
        let bytes = std::fs::read(fixtures().join(c.0)).unwrap();
        // 12 truncation points spread over the message, then 4 copies with bytes flipped.
        for i in 0..12 {
            let cut = bytes.len() * i / 12 + (next() as usize % 7);
            let cut = cut.min(bytes.len());
            messages.push((format!("{}.cut{i}", c.0), bytes[..cut].to_vec()));
        }
        for i in 0..4 {
            let mut b = bytes.clone();
            for _ in 0..8 {
                let at = next() as usize % b.len();
                b[at] = (next() & 0xff) as u8;
            }
            messages.push((format!("{}.flip{i}", c.0), b));
        }
    }
    let total = messages.len();
    let md = maildir(&n, "Fuzz", &messages);
    let run = n.gazette(&["--json", "inbound", "--dry-run", &md]).ok();
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let out = lines(&run.stdout);
    assert_eq!(out.len(), total);
    // Then for real (the database path), and every message moves to cur/.
    let run = n.gazette(&["inbound", &md]).ok();
    assert!(
        run.stdout.starts_with(&format!("{total} message(s)")),
        "{}",
        run.stdout
    );
    assert_eq!(
        std::fs::read_dir(n.path().join("Fuzz/new"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(n.path().join("Fuzz/cur"))
            .unwrap()
            .count(),
        total
    );
}

/// Runs gazette under `/usr/bin/time` and returns the run and its peak RSS in KiB.
fn with_peak_rss(n: &Newsletter, args: &[&str]) -> (crate::support::Run, u64) {
    let report = n.path().join("time.txt");
    let mut all = vec![
        "-f".to_string(),
        "%M".to_string(),
        "-o".to_string(),
        report.display().to_string(),
        env!("CARGO_BIN_EXE_gazette").to_string(),
        "-C".to_string(),
        n.path().display().to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let run = crate::support::tool("/usr/bin/time", &all);
    let kib = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (run, kib)
}

/// The Postfix 5.1.1 bounce without its closing boundary, then a new part's `headers`, then
/// `size` bytes of base64-like lines.
fn bounce_then(headers: &str, size: usize) -> Vec<u8> {
    let mut m = std::fs::read(fixtures().join("postfix-5.1.1.eml")).unwrap();
    let close = b"\n--4Zx1y2.1764669601/mx.example.org--";
    let end = m
        .windows(close.len())
        .rposition(|w| w == close)
        .expect("a closing boundary");
    m.truncate(end);
    m.extend_from_slice(b"\n--4Zx1y2.1764669601/mx.example.org\n");
    m.extend_from_slice(headers.as_bytes());
    m.extend_from_slice(b"\n\n");
    let line = [b'A'; 76];
    let target = m.len() + size;
    while m.len() < target {
        m.extend_from_slice(&line);
        m.push(b'\n');
    }
    m
}

fn bounce_with_attachment(size: usize) -> Vec<u8> {
    bounce_then(
        "Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64",
        size,
    )
}

#[test]
fn a_50_mb_message_is_named_and_never_loaded() {
    let n = Newsletter::sample();
    let big = bounce_with_attachment(50 * 1024 * 1024);
    let small = std::fs::read(fixtures().join("postfix-5.2.2-full.eml")).unwrap();
    let md = maildir(
        &n,
        "Maildir",
        &[
            ("1.big".into(), big.clone()),
            ("2.small".into(), small.clone()),
        ],
    );
    let (run, kib) = with_peak_rss(&n, &["inbound", "--dry-run", &md]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let out = run.stdout;
    assert!(out.starts_with("2 message(s): 1 bounce, 1 other"), "{out}");
    assert!(
        out.contains("not read (over 10 MiB): ") && out.contains("Maildir/new/1.big"),
        "{out}"
    );
    assert!(kib < 40 * 1024, "peak RSS {kib} KiB for a 50 MB message");

    // The same message in an mbox, once with one 50 MB line: the next message is still read.
    let mut mbox = Vec::new();
    for m in [&big, &small] {
        mbox.extend_from_slice(b"From MAILER-DAEMON Tue Dec  2 10:00:00 2026\n");
        mbox.extend_from_slice(m);
        mbox.extend_from_slice(b"\n\n");
    }
    let mut one_line = b"From MAILER-DAEMON Tue Dec  2 10:00:00 2026\nSubject: x\n\n".to_vec();
    one_line.resize(one_line.len() + 50 * 1024 * 1024, b'x');
    one_line.extend_from_slice(b"\n\n");
    mbox.extend_from_slice(&one_line);
    n.write("big.mbox", &mbox);
    let path = n.path().join("big.mbox").display().to_string();
    let (run, kib) = with_peak_rss(&n, &["--json", "inbound", "--dry-run", &path]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let out = lines(&run.stdout);
    let got: Vec<(&str, &str)> = out
        .iter()
        .map(|o| (o["kind"].as_str().unwrap(), o["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("other", "skipped: over the size limit"),
            ("bounce", "soft bounce counted"),
            ("other", "skipped: over the size limit"),
        ]
    );
    assert!(kib < 40 * 1024, "peak RSS {kib} KiB for an mbox of 100 MB");
}

#[test]
fn a_malformed_mime_tree_is_bounded() {
    let n = Newsletter::sample();
    // 150,000 nested multiparts (9 MB) and 200,000 sibling parts (6 MB), each under the
    // size limit; a DSN nested in the former is past the parsed prefix and not found.
    let mut nested = b"From: MAILER-DAEMON@x.example\nSubject: Undelivered Mail\n".to_vec();
    for i in 0..150_000 {
        nested.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\n\n--b{i}\n").as_bytes(),
        );
    }
    nested.extend_from_slice(b"Content-Type: text/plain\n\nhi\n");
    let mut many = b"From: a@x.example\nContent-Type: multipart/mixed; boundary=\"B\"\n\n".to_vec();
    for _ in 0..200_000 {
        many.extend_from_slice(b"--B\nContent-Type: text/plain\n\nx\n");
    }
    many.extend_from_slice(b"--B--\n");
    // A real bounce whose returned message is 100,000 parts deep.
    let mut deep_return = bounce_then("Content-Type: message/rfc822", 0);
    for i in 0..100_000 {
        deep_return.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"d{i}\"\n\n--d{i}\n").as_bytes(),
        );
    }
    let md = maildir(
        &n,
        "Maildir",
        &[
            ("1.nested".into(), nested),
            ("2.many".into(), many),
            ("3.deep".into(), deep_return),
        ],
    );
    let start = std::time::Instant::now();
    let (run, kib) = with_peak_rss(&n, &["--json", "inbound", "--dry-run", &md]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
    let out = lines(&run.stdout);
    assert_eq!(out.len(), 3);
    assert_eq!(out[2]["kind"], "bounce", "{}", out[2]);
    assert_eq!(out[2]["recipients"][0]["address"], "gone@example.org");
    assert!(kib < 80 * 1024, "peak RSS {kib} KiB");
}

#[test]
fn a_progress_bar_only_on_a_terminal_and_only_for_a_big_mailbox() {
    let n = Newsletter::sample();
    let bounce = std::fs::read(fixtures().join("postfix-5.1.1.eml")).unwrap();
    let big: Vec<(String, Vec<u8>)> = (0..400)
        .map(|i| (format!("{i:04}.eml"), bounce.clone()))
        .collect();
    let big = maildir(&n, "Big", &big);
    let small: Vec<(String, Vec<u8>)> = (0..200)
        .map(|i| (format!("{i:04}.eml"), bounce.clone()))
        .collect();
    let small = maildir(&n, "Small", &small);
    // Not a terminal: nothing on standard error, the one summary line on standard output.
    let run = n.gazette(&["inbound", "--dry-run", &big]).ok();
    assert_eq!(run.stderr, "");
    assert!(
        run.stdout
            .starts_with("400 message(s): 400 bounce; actions: 400 bounced")
    );
    // On a terminal (script(1) gives gazette a pseudo-terminal): the bar for 400, none for 200.
    let on_tty = |md: &str| {
        let cmd = format!(
            "{} -C {} inbound --dry-run {md}",
            env!("CARGO_BIN_EXE_gazette"),
            n.path().display()
        );
        crate::support::tool("timeout", &["60", "script", "-qec", &cmd, "/dev/null"])
            .ok()
            .stdout
    };
    let tty = on_tty(&big);
    assert!(tty.contains("/400 messages"), "{tty:?}");
    assert!(tty.contains("400 message(s): 400 bounce"), "{tty:?}");
    let tty = on_tty(&small);
    assert!(!tty.contains("messages "), "{tty:?}");
    assert!(tty.contains("200 message(s): 200 bounce"), "{tty:?}");
}
