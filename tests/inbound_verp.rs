//! VERP, the mailto unsubscribe token and the soft-bounce rule: real messages of `gazette send`
//! caught by Postfix's smtp-sink (their envelope sender and List-Unsubscribe), and returned
//! mail addressed to what they carry, read back by `gazette inbound`.

use std::time::Duration;

use crate::support::{Newsletter, Sink};

const ISSUES: [&str; 4] = [
    "2023-03-papers",
    "2023-04-papers",
    "2023-05-reading-notes",
    "2023-06-one-figure",
];

/// What the VERP tests read of the shared smtp-sink: the caught messages' envelopes.
impl Sink {
    /// Every message caught so far, with its headers unfolded, then cleared.
    fn take(&self) -> Vec<Caught> {
        let mut all = Vec::new();
        for e in std::fs::read_dir(&self.dump).unwrap() {
            let path = e.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::remove_file(&path).unwrap();
            let head = text.split("\n\n").next().unwrap().replace("\r\n", "\n");
            let head = head.replace("\n ", " ").replace("\n\t", " ");
            let field = |name: &str| {
                head.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .unwrap_or_else(|| panic!("no {name} in {text}"))
                    .trim()
                    .to_string()
            };
            all.push(Caught {
                rcpt: field("X-Rcpt-Args").trim_matches(['<', '>']).to_lowercase(),
                mail_from: field("X-Mail-Args")
                    .split('>')
                    .next()
                    .unwrap()
                    .trim_start_matches('<')
                    .to_string(),
                list_unsubscribe: field("List-Unsubscribe"),
                message_id: field("Message-ID"),
            });
        }
        all
    }
}

struct Caught {
    rcpt: String,
    mail_from: String,
    list_unsubscribe: String,
    message_id: String,
}

/// The sample with `bounce_address` set and `extra` appended to its settings, and `readers`.
fn newsletter(readers: &[&str], extra: &str) -> Newsletter {
    let n = Newsletter::sample();
    n.edit_toml(
        "[email]\n",
        "[email]\nbounce_address = \"bounces@digest.example.org\"\n",
    )
    .append_toml(extra)
    .add_readers(readers);
    n
}

/// Sends `issue` through the sink, its ledger dated `day` (so issues are in order).
fn send(n: &Newsletter, sink: &Sink, issue: &str, day: u32) -> Vec<Caught> {
    let out = n
        .command(&["send", issue, "--yes"])
        .env("GAZETTE_SMTP_URL", sink.url())
        .env("GAZETTE_NOW", format!("2026-01-{day:02}T00:00:00Z"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sink.wait_for_files(1, Duration::from_secs(10));
    sink.take()
}

fn caught<'a>(all: &'a [Caught], rcpt: &str) -> &'a Caught {
    all.iter()
        .find(|c| c.rcpt == rcpt)
        .unwrap_or_else(|| panic!("nothing sent to {rcpt}"))
}

/// A Postfix-style DSN to `to` (the envelope sender of the returned message), whose report
/// names `final_rcpt` or, with None, nobody.
fn dsn(id: &str, to: &str, status: &str, final_rcpt: Option<&str>) -> String {
    dsn_of(id, to, status, final_rcpt, None)
}

/// [`dsn`], its returned headers with the original's Message-ID.
fn dsn_of(
    id: &str,
    to: &str,
    status: &str,
    final_rcpt: Option<&str>,
    original: Option<&str>,
) -> String {
    let original = original
        .map(|m| format!("Message-ID: {m}\n"))
        .unwrap_or_default();
    let final_rcpt = final_rcpt
        .map(|r| format!("Final-Recipient: rfc822; {r}\n"))
        .unwrap_or_default();
    format!(
        "Return-Path: <>\n\
         Delivered-To: {to}\n\
         From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\n\
         To: {to}\n\
         Subject: Undelivered Mail Returned to Sender\n\
         Message-ID: <{id}@mx.example.net>\n\
         MIME-Version: 1.0\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\
         \n\
         --B\n\
         Content-Type: text/plain\n\
         \n\
         This is the mail system. Your message could not be delivered.\n\
         --B\n\
         Content-Type: message/delivery-status\n\
         \n\
         Reporting-MTA: dns; mx.example.net\n\
         \n\
         {final_rcpt}Action: failed\n\
         Status: {status}\n\
         \n\
         --B\n\
         Content-Type: text/rfc822-headers\n\
         \n\
         Return-Path: <{to}>\n\
         From: digest@digest.example.org\n\
         {original}Subject: an issue\n\
         \n\
         --B--\n"
    )
}

fn inbound(n: &Newsletter, name: &str, message: &str) -> serde_json::Value {
    n.write(name, message);
    let path = n.path().join(name).display().to_string();
    let out = n.gazette(&["--json", "inbound", &path]).ok().stdout;
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The token of `local+TOKEN@domain`.
fn token_of(address: &str) -> &str {
    address
        .split('@')
        .next()
        .unwrap()
        .split_once('+')
        .unwrap_or_else(|| panic!("no +TOKEN in {address}"))
        .1
}

/// `token` with its first character changed.
fn forged(token: &str) -> String {
    let first = if token.starts_with('a') { "b" } else { "a" };
    format!("{first}{}", &token[1..])
}

#[test]
fn each_message_leaves_with_a_signed_verp_sender_and_a_bounce_to_it_names_its_reader() {
    let sink = Sink::start();
    let readers = ["ann@example.org", "ben@example.org", "cat@example.org"];
    let n = newsletter(&readers, "");
    let all = send(&n, &sink, ISSUES[0], 1);
    assert_eq!(all.len(), 3);
    let mut froms: Vec<&str> = all.iter().map(|c| c.mail_from.as_str()).collect();
    for f in &froms {
        let (local, domain) = f.split_once('@').unwrap();
        assert_eq!(domain, "digest.example.org", "{f}");
        let token = local
            .strip_prefix("bounces+")
            .unwrap_or_else(|| panic!("{f}"));
        assert!((20..=34).contains(&token.len()), "{f}");
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)),
            "{f}"
        );
    }
    froms.sort();
    froms.dedup();
    assert_eq!(froms.len(), 3, "one envelope sender per reader");

    // A DSN to ann's VERP address that names nobody: ann bounces.
    let ann = &caught(&all, "ann@example.org").mail_from;
    let out = inbound(&n, "dsn-ann.eml", &dsn("d1", ann, "5.1.1", None));
    assert_eq!(out["kind"], "bounce", "{out}");
    assert_eq!(out["action"], "bounced", "{out}");
    assert_eq!(out["recipients"][0]["address"], "ann@example.org", "{out}");
    assert_eq!(n.status_of("ann@example.org"), "bounced");

    // One naming an address ben forwards to: it is still ben's message that failed.
    let ben = &caught(&all, "ben@example.org").mail_from;
    let out = inbound(
        &n,
        "dsn-ben.eml",
        &dsn("d2", ben, "5.1.1", Some("ben@old-employer.example")),
    );
    assert_eq!(out["recipients"][0]["address"], "ben@example.org", "{out}");
    assert_eq!(n.status_of("ben@example.org"), "bounced");

    // A forged token names nobody: nothing changes.
    let cat = &caught(&all, "cat@example.org").mail_from;
    let bad = cat.replace(token_of(cat), &forged(token_of(cat)));
    let out = inbound(&n, "dsn-forged.eml", &dsn("d3", &bad, "5.1.1", None));
    assert_eq!(out["recipients"], serde_json::json!([]), "{out}");
    assert_eq!(out["action"], "none", "{out}");
    assert_eq!(n.status_of("cat@example.org"), "active");

    // A plain-text bounce to cat's VERP address whose body names nobody: counted for cat, as
    // temporary (its cause is unknown); the same with a forged token names nobody.
    let plain = |to: &str, id: &str| {
        format!(
            "From: MAILER-DAEMON@mx.example.net\nTo: {to}\nSubject: Mail delivery failed\n\
             Message-ID: <{id}@mx.example.net>\n\nYour message could not be delivered.\n"
        )
    };
    let out = inbound(&n, "plain-forged.eml", &plain(&bad, "p1"));
    assert_eq!(out["kind"], "bounce", "{out}");
    assert_eq!(out["recipients"], serde_json::json!([]), "{out}");
    let out = inbound(&n, "plain.eml", &plain(cat, "p2"));
    assert_eq!(out["recipients"][0]["address"], "cat@example.org", "{out}");
    assert_eq!(out["action"], "soft bounce counted", "{out}");
    assert_eq!(n.status_of("cat@example.org"), "active");

    // Without bounce_address, the envelope sender is the From address, as before.
    let plain = Newsletter::sample();
    plain
        .gazette(&["subscribers", "add", "dan@example.org"])
        .ok();
    let all = send(&plain, &sink, ISSUES[0], 1);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].mail_from, "digest@digest.example.org");
}

#[test]
fn the_mailto_of_list_unsubscribe_unsubscribes_exactly_its_reader_and_from_is_not_trusted() {
    let sink = Sink::start();
    let readers = ["ann@example.org", "ben@example.org", "cat@example.org"];
    let n = newsletter(&readers, "");
    let all = send(&n, &sink, ISSUES[0], 1);
    let header = &caught(&all, "ben@example.org").list_unsubscribe;
    let mailto = header
        .split(['<', '>'])
        .find(|p| p.starts_with("mailto:"))
        .unwrap_or_else(|| panic!("no mailto in {header}"));
    let (to, query) = mailto
        .strip_prefix("mailto:")
        .unwrap()
        .split_once('?')
        .unwrap();
    assert!(to.starts_with("unsubscribe+"), "{mailto}");
    let subject = query.strip_prefix("subject=").unwrap().replace("%20", " ");
    // Another reader's mailto carries another token.
    assert!(
        !caught(&all, "ann@example.org")
            .list_unsubscribe
            .contains(to)
    );

    // What a mail client's unsubscribe button sends, from whatever address it uses.
    let request = |from: &str, to: &str, subject: &str, id: &str| {
        format!(
            "From: {from}\nTo: {to}\nSubject: {subject}\nMessage-ID: <{id}@client.example>\n\nunsubscribe\n"
        )
    };
    // A forged token, from ann's own address: nothing changes.
    let token = token_of(to);
    let bad_to = to.replace(token, &forged(token));
    let bad_subject = subject.replace(token, &forged(token));
    let out = inbound(
        &n,
        "forged.eml",
        &request("ann@example.org", &bad_to, &bad_subject, "u1"),
    );
    assert_eq!(out["kind"], "unsubscribe", "{out}");
    assert_eq!(out["action"], "none: no valid token", "{out}");
    // From alone names nobody either.
    let out = inbound(
        &n,
        "from-only.eml",
        &request(
            "cat@example.org",
            "unsubscribe@digest.example.org",
            "unsubscribe",
            "u2",
        ),
    );
    assert_eq!(out["action"], "none: no valid token", "{out}");
    for r in readers {
        assert_eq!(n.status_of(r), "active", "{r}");
    }

    // The real mailto, sent from an address gazette does not know: ben, and only ben.
    let out = inbound(
        &n,
        "real.eml",
        &request("someone@elsewhere.example", to, &subject, "u3"),
    );
    assert_eq!(out["action"], "unsubscribed", "{out}");
    assert_eq!(out["recipients"][0]["address"], "ben@example.org", "{out}");
    assert_eq!(n.status_of("ben@example.org"), "unsubscribed");
    assert_eq!(n.status_of("ann@example.org"), "active");
    assert_eq!(n.status_of("cat@example.org"), "active");

    // A mail system that drops `+TOKEN` from the address: the subject still names cat.
    let cat = &caught(&all, "cat@example.org").list_unsubscribe;
    let cat_subject = cat
        .split("subject=")
        .nth(1)
        .unwrap()
        .split('>')
        .next()
        .unwrap()
        .replace("%20", " ");
    let out = inbound(
        &n,
        "subject.eml",
        &request(
            "x@elsewhere.example",
            "unsubscribe@digest.example.org",
            &cat_subject,
            "u4",
        ),
    );
    assert_eq!(out["recipients"][0]["address"], "cat@example.org", "{out}");
    assert_eq!(n.status_of("cat@example.org"), "unsubscribed");
    assert_eq!(n.status_of("ann@example.org"), "active");
}

#[test]
fn temporary_failures_on_three_issues_in_a_row_bounce_a_reader() {
    let sink = Sink::start();
    let readers = ["ann@example.org", "ben@example.org", "cat@example.org"];
    let n = newsletter(&readers, "");
    let sent: Vec<Vec<Caught>> = ISSUES
        .iter()
        .enumerate()
        .map(|(i, issue)| send(&n, &sink, issue, i as u32 + 1))
        .collect();
    let soft = |who: &str, issue: usize, id: &str| {
        let to = &caught(&sent[issue], who).mail_from;
        inbound(&n, &format!("{id}.eml"), &dsn(id, to, "4.2.2", None))
    };
    // ann: issues 1 and 2 fail; the same DSN read twice counts once.
    assert_eq!(
        soft("ann@example.org", 0, "a1")["action"],
        "soft bounce counted"
    );
    let again = soft("ann@example.org", 0, "a1");
    assert_eq!(again["action"], "soft bounce counted", "{again}");
    let db = n.path().join(".gazette/gazette.db").display().to_string();
    let events = || {
        crate::support::tool("sqlite3", &[&db, "SELECT COUNT(*) FROM events"])
            .ok()
            .stdout
            .trim()
            .to_string()
    };
    assert_eq!(events(), "1");
    soft("ann@example.org", 1, "a2");
    assert_eq!(events(), "2");
    assert_eq!(n.status_of("ann@example.org"), "active");
    // Issue 3 fails too: three issues in a row.
    let out = soft("ann@example.org", 2, "a3");
    assert_eq!(
        out["action"], "bounced: soft bounces on too many issues",
        "{out}"
    );
    assert_eq!(n.status_of("ann@example.org"), "bounced");

    // ben: issues 1, 2 and 4 fail, issue 3 was delivered in between: still active.
    soft("ben@example.org", 0, "b1");
    soft("ben@example.org", 1, "b2");
    soft("ben@example.org", 3, "b4");
    assert_eq!(n.status_of("ben@example.org"), "active");

    // cat: three failure reports for one issue are one issue.
    soft("cat@example.org", 3, "c1");
    soft("cat@example.org", 3, "c2");
    soft("cat@example.org", 3, "c3");
    assert_eq!(n.status_of("cat@example.org"), "active");

    // The limit is a setting.
    let strict = newsletter(&["dan@example.org"], "\n[inbound]\nsoft_bounce_limit = 1\n");
    let all = send(&strict, &sink, ISSUES[0], 1);
    let to = &all[0].mail_from;
    inbound(&strict, "d1.eml", &dsn("d1", to, "4.2.2", None));
    assert_eq!(strict.status_of("dan@example.org"), "bounced");
}

#[test]
fn a_bad_bounce_address_or_soft_bounce_limit_is_a_located_error() {
    let n = newsletter(&[], "\n[inbound]\nsoft_bounce_limit = 0\n");
    let toml = n
        .read("gazette.toml")
        .replace("bounces@digest.example.org", "bounces+x@digest.example.org");
    n.write("gazette.toml", toml);
    let out = n.gazette(&["check"]);
    assert_ne!(out.status, 0);
    let err = format!("{}{}", out.stdout, out.stderr);
    assert!(
        err.contains("gazette.toml:") && err.contains("email.bounce_address"),
        "{err}"
    );
    assert!(err.contains("must not hold `+`"), "{err}");
    assert!(
        err.contains("inbound.soft_bounce_limit must be between 1 and 100, not 0"),
        "{err}"
    );
}

/// An ARF complaint (RFC 5965) whose provider redacted the reader: only the returned
/// headers' Return-Path (the VERP address) names them.
fn arf(id: &str, verp: &str) -> String {
    format!(
        "From: feedback@provider.example\n\
         To: abuse@digest.example.org\n\
         Subject: complaint about message\n\
         Message-ID: <{id}@provider.example>\n\
         MIME-Version: 1.0\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\n\
         \n\
         --F\n\
         Content-Type: text/plain\n\
         \n\
         This is an email abuse report.\n\
         --F\n\
         Content-Type: message/feedback-report\n\
         \n\
         Feedback-Type: abuse\n\
         User-Agent: provider-fbl/1.0\n\
         Version: 1\n\
         \n\
         --F\n\
         Content-Type: text/rfc822-headers\n\
         \n\
         Return-Path: <{verp}>\n\
         From: digest@digest.example.org\n\
         Subject: an issue\n\
         \n\
         --F--\n"
    )
}

#[test]
fn status_counts_what_came_back_per_issue_and_the_list_says_why_and_when() {
    let sink = Sink::start();
    let readers = ["ann@example.org", "ben@example.org", "cat@example.org"];
    let n = newsletter(&readers, "");
    let all = send(&n, &sink, ISSUES[0], 1);
    let before = n.gazette(&["status"]).ok().stdout;
    assert!(!before.contains("returned:"), "{before}");
    assert!(!before.contains("complaint rate"), "{before}");

    let ann = &caught(&all, "ann@example.org").mail_from;
    inbound(&n, "b.eml", &dsn("b1", ann, "5.1.1", None));
    let ben = &caught(&all, "ben@example.org").mail_from;
    let out = inbound(&n, "c.eml", &arf("c1", ben));
    assert_eq!(out["kind"], "complaint", "{out}");
    assert_eq!(out["recipients"][0]["address"], "ben@example.org", "{out}");
    let cat = &caught(&all, "cat@example.org").mail_from;
    inbound(&n, "s.eml", &dsn("s1", cat, "4.2.2", None));

    let one = n.gazette(&["status", ISSUES[0]]).ok().stdout;
    assert!(
        one.lines()
            .any(|l| l
                == "returned: 1 bounced, 1 soft-bounced, 1 complaint(s), complaint rate 33.33%"),
        "{one}"
    );
    let all_issues = n.gazette(&["status"]).ok().stdout;
    let line = all_issues
        .lines()
        .find(|l| l.starts_with(ISSUES[0]))
        .unwrap();
    assert!(
        line.ends_with(
            "; returned: 1 bounced, 1 soft-bounced, 1 complaint(s), complaint rate 33.33%"
        ),
        "{all_issues}"
    );
    assert!(
        all_issues
            .lines()
            .any(|l| l == "complaint rate: 33.33% (1 complaint(s) for 3 message(s) sent)"),
        "{all_issues}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&n.gazette(&["status", ISSUES[0], "--json"]).ok().stdout).unwrap();
    assert_eq!(json["inbound"]["bounces"], 1, "{json}");
    assert_eq!(json["inbound"]["soft_bounces"], 1, "{json}");
    assert_eq!(json["inbound"]["complaints"], 1, "{json}");
    let rate = json["inbound"]["complaint_rate"].as_f64().unwrap();
    assert!((rate - 1.0 / 3.0).abs() < 1e-9, "{json}");
    // Another issue, with nothing back, shows nothing extra.
    let other = n.gazette(&["status", ISSUES[1]]).ok().stdout;
    assert!(!other.contains("returned:"), "{other}");

    let list = n.gazette(&["subscribers", "list"]).ok().stdout;
    assert!(
        list.lines()
            .any(|l| l == "ann@example.org\tbounced\t\tbounce: 5.1.1\t2026-01-01T00:00:00Z"),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l == "ben@example.org\tcomplained\t\tcomplaint: -\t2026-01-01T00:00:00Z"),
        "{list}"
    );
    assert!(
        list.lines().any(|l| l == "cat@example.org\tactive\t"),
        "{list}"
    );
    let csv = n.gazette(&["subscribers", "export"]).ok().stdout;
    assert!(
        csv.starts_with("email,name,status,created_at,updated_at,reason,status_at\n"),
        "{csv}"
    );
    assert!(
        csv.lines()
            .any(|l| l.starts_with("ann@example.org,,bounced,")
                && l.ends_with(",bounce: 5.1.1,2026-01-01T00:00:00Z")),
        "{csv}"
    );
    assert!(
        csv.lines()
            .any(|l| l.starts_with("cat@example.org,,active,") && l.ends_with(",,")),
        "{csv}"
    );
}

#[test]
fn without_verp_the_returned_message_id_names_the_issue_of_a_soft_bounce() {
    let sink = Sink::start();
    let n = Newsletter::sample();
    for r in ["ann@example.org", "ben@example.org"] {
        n.gazette(&["subscribers", "add", r]).ok();
    }
    let sent: Vec<Vec<Caught>> = ISSUES[..3]
        .iter()
        .enumerate()
        .map(|(i, issue)| send(&n, &sink, issue, i as u32 + 1))
        .collect();
    assert_eq!(sent[0][0].mail_from, "digest@digest.example.org");
    let soft = |who: &str, issue: usize, id: &str, original: Option<&str>| {
        let mid = caught(&sent[issue], who).message_id.clone();
        let dsn = dsn_of(
            id,
            "digest@digest.example.org",
            "4.2.2",
            Some(who),
            Some(original.unwrap_or(&mid)),
        );
        inbound(&n, &format!("{id}.eml"), &dsn)
    };
    // ben: Message-IDs gazette never sent name no issue, so they never add up.
    for (i, id) in ["b1", "b2", "b3"].iter().enumerate() {
        let out = soft(
            "ben@example.org",
            i,
            id,
            Some(&format!("<forged{i}@example.org>")),
        );
        assert_eq!(out["action"], "soft bounce counted", "{out}");
    }
    assert_eq!(n.status_of("ben@example.org"), "active");
    soft("ann@example.org", 0, "a1", None);
    soft("ann@example.org", 1, "a2", None);
    assert_eq!(n.status_of("ann@example.org"), "active");
    let out = soft("ann@example.org", 2, "a3", None);
    assert_eq!(
        out["action"], "bounced: soft bounces on too many issues",
        "{out}"
    );
    assert_eq!(n.status_of("ann@example.org"), "bounced");
    let one = n.gazette(&["status", ISSUES[1]]).ok().stdout;
    assert!(one.contains("returned: 0 bounced, 1 soft-bounced"), "{one}");
}
