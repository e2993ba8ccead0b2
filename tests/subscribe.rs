//! Sign-up with double opt-in through `gazette serve`: the real binary on a free port, a real
//! SMTP relay (Postfix's smtp-sink) receiving the confirmation mails, curl as the reader, and
//! Python's email package reading what arrived.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    Newsletter, Run, Serve, Sink, free_port, header, headers, python, tool, wait_until,
};

const SECRET: &str = "test-secret-not-for-production";
const LIST: &str = "papers.digest.example.org";
const NOW: &str = "2026-01-01T00:00:00Z";

/// What subscribe reads of the shared smtp-sink: the confirmation mails.
impl Sink {
    /// Every message received so far, parsed by Python's email package.
    fn mails(&self) -> Vec<Value> {
        let out = python("confirm_mail.py", &[self.dump.to_str().unwrap()]).ok();
        serde_json::from_str::<Vec<Value>>(&out.stdout).unwrap()
    }

    /// Waits (at most 20 s) until `n` messages arrived, then returns them.
    fn wait_for(&self, n: usize) -> Vec<Value> {
        let count = self.wait_for_files(n, Duration::from_secs(20));
        assert!(count >= n, "{count} of {n} messages arrived within 20 s");
        // smtp-sink writes the file as it reads DATA: let the last one finish.
        std::thread::sleep(Duration::from_millis(200));
        self.mails()
    }

    /// The messages to one address.
    fn to(&self, address: &str) -> Vec<Value> {
        self.mails()
            .into_iter()
            .filter(|m| m["rcpt"][0].as_str() == Some(address))
            .collect()
    }
}

/// The sample newsletter served at `http://127.0.0.1:PORT/news/`, with `[serve]` holding
/// `serve_extra`, published.
fn newsletter(port: u16, serve_extra: &str) -> Newsletter {
    let n = Newsletter::sample();
    let base = format!("http://127.0.0.1:{port}/news/");
    n.edit_toml("https://digest.example.org/\"", &format!("{base}\""))
        .edit_toml(
            "unsubscribe_url = \"https://digest.example.org/unsubscribe?token={token}\"",
            &format!("unsubscribe_url = \"{base}unsubscribe?token={{token}}\""),
        )
        .append_toml(&format!(
            "\n[serve]\nlisten = \"127.0.0.1:{port}\"\n{serve_extra}\n"
        ));
    n.gazette(&["publish", "-q"]).ok();
    n
}

/// `gazette serve` on the newsletter's `[serve] listen` (127.0.0.1:`port`), relaying to
/// `smtp`, at `now`.
fn serve(n: &Newsletter, port: u16, smtp: &str, now: &str) -> Serve {
    let s = Serve::spawn(
        n.command(&["serve"])
            .env("GAZETTE_SMTP_URL", smtp)
            .env("GAZETTE_NOW", now),
        port,
    );
    assert_eq!(s.base, format!("http://127.0.0.1:{port}/news/"));
    s
}

/// curl with a 10 s bound; prints the status code on the last line after the body.
fn curl(args: &[&str]) -> (u16, String) {
    let mut all = vec!["-s", "--max-time", "10", "-w", "\n%{http_code}"];
    all.extend_from_slice(args);
    let out = tool("curl", &all);
    let (body, code) = out.stdout.rsplit_once('\n').unwrap();
    (code.parse().unwrap_or(0), body.to_string())
}

/// Signs up through the form: `(status, body)`.
fn sign_up(s: &Serve, email: &str) -> (u16, String) {
    curl(&[
        "--data-urlencode",
        &format!("email={email}"),
        "--data-urlencode",
        "name=Reader",
        &s.url("subscribe"),
    ])
}

/// Signs `email` up through the form with `X-Forwarded-For: forwarded`: the status code.
fn sign_up_forwarded(s: &Serve, email: &str, forwarded: &str) -> u16 {
    curl(&[
        "-H",
        &format!("X-Forwarded-For: {forwarded}"),
        "--data-urlencode",
        &format!("email={email}"),
        &s.url("subscribe"),
    ])
    .0
}

fn assert_html_security_headers(args: &[&str]) {
    let h = headers(args);
    assert!(
        header(&h, "content-type").is_some_and(|v| v.starts_with("text/html")),
        "{args:?}: {h:?}"
    );
    assert!(
        header(&h, "content-security-policy").is_some_and(|v| v.contains("default-src 'none'")),
        "{args:?}: {h:?}"
    );
    assert_eq!(
        header(&h, "referrer-policy"),
        Some("no-referrer"),
        "{args:?}"
    );
    assert_eq!(
        header(&h, "x-content-type-options"),
        Some("nosniff"),
        "{args:?}"
    );
}

/// A subscriber's status as `subscribers list` shows it, or None.
fn status_of(n: &Newsletter, email: &str) -> Option<String> {
    n.gazette(&["subscribers", "list"])
        .ok()
        .stdout
        .lines()
        .find(|l| l.split('\t').next() == Some(email))
        .map(|l| l.split('\t').nth(1).unwrap().to_string())
}

fn sql(n: &Newsletter, statement: &str) -> Run {
    tool(
        "sqlite3",
        &[
            n.path().join(".gazette/gazette.db").to_str().unwrap(),
            statement,
        ],
    )
    .ok()
}

/// The confirmation link of a mail, rewritten to nothing: base_url is the test server.
fn link(mail: &Value) -> String {
    let links: Vec<&str> = mail["text_links"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.as_str())
        .filter(|l| l.contains("/confirm?token="))
        .collect();
    assert_eq!(links.len(), 1, "one confirm link in the text part: {mail}");
    links[0].to_string()
}

fn token(link: &str) -> &str {
    link.split_once("token=").unwrap().1
}

#[test]
fn a_sign_up_is_confirmed_by_post_only_and_then_counted() {
    let sink = Sink::start();
    let port = free_port();
    let n = newsletter(port, "");
    let s = serve(&n, port, &sink.url(), NOW);
    // The form page.
    let (code, body) = curl(&[&s.url("subscribe")]);
    assert_eq!(code, 200);
    assert!(body.contains("name=\"email\""), "{body}");
    assert!(body.contains("lang=\"zh-CN\""), "{body}");
    assert!(body.contains("订阅"), "{body}");
    assert_html_security_headers(&[&s.url("subscribe")]);

    let (code, body) = sign_up(&s, "ann@example.org");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("请查收邮件"), "{body}");
    assert_eq!(status_of(&n, "ann@example.org").as_deref(), Some("pending"));
    assert_eq!(n.subscriber_count(), "0");

    let mails = sink.wait_for(1);
    let m = &mails[0];
    assert_eq!(m["rcpt"][0], "ann@example.org");
    // The name came from the form, from anyone: the unconfirmed address's mail does not
    // carry it (bots sign victims up with a name that is an advertisement).
    assert_eq!(m["to"], "ann@example.org", "{m}");
    assert!(!m.to_string().contains("Reader"), "{m}");
    assert_eq!(m["defects"], 0, "{m}");
    assert_eq!(m["ascii"], true, "{m}");
    assert_eq!(m["parts"], serde_json::json!(["text/plain", "text/html"]));
    assert_eq!(m["subject"], "请确认订阅《论文月刊 Paper Digest》");
    assert_eq!(m["auto_submitted"], "auto-generated");
    assert!(
        m["date"].as_str().is_some_and(|d| d.contains("2026")),
        "{m}"
    );
    assert!(
        m["message_id"]
            .as_str()
            .is_some_and(|id| id.starts_with('<') && id.ends_with("@digest.example.org>")),
        "{m}"
    );
    assert!(m["list_unsubscribe"].is_null(), "{m}");
    assert_eq!(m["html_has_style"], true, "the email.css is inlined: {m}");
    let url = link(m);
    assert!(url.starts_with(&s.url("confirm?token=c1.")), "{url}");
    assert!(
        m["html_links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == &url),
        "the HTML part links the same URL: {m}"
    );
    assert!(!url.contains("ann"), "the token shows the address: {url}");

    // GET (a mail scanner) shows the button and changes nothing, however often.
    for _ in 0..3 {
        let (code, body) = curl(&[&url]);
        assert_eq!(code, 200);
        assert!(body.contains("<form method=\"post\""), "{body}");
        assert!(body.contains("确认订阅"), "{body}");
    }
    assert_eq!(curl(&["-I", &url]).0, 200);
    assert_html_security_headers(&[&url]);
    assert_eq!(status_of(&n, "ann@example.org").as_deref(), Some("pending"));
    assert_eq!(n.subscriber_count(), "0");

    // POST activates, idempotently.
    let (code, body) = curl(&["-X", "POST", &url]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("订阅成功"), "{body}");
    assert_eq!(curl(&["-X", "POST", &url]).0, 200);
    assert_eq!(status_of(&n, "ann@example.org").as_deref(), Some("active"));
    assert_eq!(n.subscriber_count(), "1");

    // JSON sign-ups get the same answer in JSON.
    let (code, body) = curl(&[
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"email": "bob@example.org", "name": "Bob"}"#,
        &s.url("subscribe"),
    ]);
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(status_of(&n, "bob@example.org").as_deref(), Some("pending"));
    sink.wait_for(2);

    // No token or address reaches the log.
    let log = s.log().join("\n");
    assert!(log.contains("POST /news/subscribe 200"), "{log}");
    assert!(!log.contains("token") && !log.contains("ann@"), "{log}");
}

#[test]
fn every_state_gets_the_same_answer_and_only_a_confirmation_reactivates() {
    let sink = Sink::start();
    let port = free_port();
    let n = newsletter(port, "");
    for a in [
        "pending@example.org",
        "active@example.org",
        "gone@example.org",
        "bounced@example.org",
        "complained@example.org",
    ] {
        n.gazette(&["subscribers", "add", a]).ok();
    }
    sql(
        &n,
        "UPDATE subscribers SET status = CASE email
           WHEN 'pending@example.org' THEN 'pending'
           WHEN 'gone@example.org' THEN 'unsubscribed'
           WHEN 'bounced@example.org' THEN 'bounced'
           WHEN 'complained@example.org' THEN 'complained'
           ELSE status END;",
    );
    let s = serve(&n, port, &sink.url(), NOW);
    let mut answers = Vec::new();
    for a in [
        "new@example.org",
        "pending@example.org",
        "active@example.org",
        "gone@example.org",
        "bounced@example.org",
        "complained@example.org",
    ] {
        let (code, body) = sign_up(&s, a);
        let h = headers(&[
            "--data-urlencode",
            &format!("email={a}"),
            &s.url("subscribe"),
        ]);
        answers.push((code, body, header(&h, "content-length").map(str::to_string)));
    }
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a, &answers[0], "answer {i} differs from the first");
    }
    assert_eq!(answers[0].0, 200);
    // Everyone but the complainer gets one mail (the second sign-up above was within the day).
    let mails = sink.wait_for(5);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sink.mails().len(), 5, "{mails:?}");
    assert!(sink.to("complained@example.org").is_empty());
    for a in ["new", "pending", "active", "gone", "bounced"] {
        assert_eq!(sink.to(&format!("{a}@example.org")).len(), 1, "{a}");
    }
    // A sign-up changed no status: only `new` was added, as pending.
    for (a, want) in [
        ("new", "pending"),
        ("pending", "pending"),
        ("active", "active"),
        ("gone", "unsubscribed"),
        ("bounced", "bounced"),
        ("complained", "complained"),
    ] {
        assert_eq!(
            status_of(&n, &format!("{a}@example.org")).as_deref(),
            Some(want),
            "{a}"
        );
    }
    assert_eq!(n.subscriber_count(), "1");
    // Pending is not exported as active.
    let export = n.gazette(&["subscribers", "export"]).ok().stdout;
    let row = export
        .lines()
        .find(|l| l.starts_with("new@example.org,"))
        .unwrap_or_else(|| panic!("{export}"));
    assert!(row.contains(",pending,"), "{row}");
    // The unsubscribed and bounced readers are back only by confirming.
    for a in ["gone@example.org", "bounced@example.org"] {
        let url = link(&sink.to(a)[0]);
        assert_eq!(curl(&[&url]).0, 200);
        assert_ne!(status_of(&n, a).as_deref(), Some("active"), "{a} after GET");
        assert_eq!(curl(&["-X", "POST", &url]).0, 200);
        assert_eq!(status_of(&n, a).as_deref(), Some("active"), "{a}");
    }
    assert_eq!(n.subscriber_count(), "3");
}

#[test]
fn one_confirmation_per_address_per_day_and_links_expire_after_a_week() {
    let sink = Sink::start();
    let port = free_port();
    let n = newsletter(port, "");
    let s = serve(&n, port, &sink.url(), NOW);
    for _ in 0..5 {
        assert_eq!(sign_up(&s, "victim@example.org").0, 200);
    }
    sink.wait_for(1);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sink.to("victim@example.org").len(), 1, "sign-up bombing");
    let first = link(&sink.to("victim@example.org")[0]);
    s.kill();

    // 23 hours later: still nothing; 25 hours later: a second mail.
    let s = serve(&n, port, &sink.url(), "2026-01-01T23:00:00Z");
    assert_eq!(sign_up(&s, "victim@example.org").0, 200);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sink.to("victim@example.org").len(), 1);
    s.kill();
    let s = serve(&n, port, &sink.url(), "2026-01-02T01:00:00Z");
    assert_eq!(sign_up(&s, "victim@example.org").0, 200);
    sink.wait_for(2);
    assert_eq!(sink.to("victim@example.org").len(), 2);
    s.kill();

    // Eight days after the first mail its link is expired: 410, nothing changes.
    let _s = serve(&n, port, &sink.url(), "2026-01-09T00:00:00Z");
    let (code, body) = curl(&["-X", "POST", &first]);
    assert_eq!(code, 410, "{body}");
    assert!(body.contains("过期"), "{body}");
    assert_eq!(curl(&[&first]).0, 410);
    assert_eq!(
        status_of(&n, "victim@example.org").as_deref(),
        Some("pending")
    );
    // The second link (sent on day 2) still works.
    let second = sink
        .to("victim@example.org")
        .iter()
        .map(link)
        .find(|l| l != &first)
        .unwrap();
    assert_eq!(curl(&["-X", "POST", &second]).0, 200);
    assert_eq!(
        status_of(&n, "victim@example.org").as_deref(),
        Some("active")
    );
}

#[test]
fn forged_truncated_wrong_purpose_and_other_newsletter_tokens_change_nothing() {
    let sink = Sink::start();
    let port = free_port();
    let n = newsletter(port, "");
    let s = serve(&n, port, &sink.url(), NOW);
    assert_eq!(sign_up(&s, "reader@example.org").0, 200);
    let good = link(&sink.wait_for(1)[0]);
    let t = token(&good).to_string();
    let secret = gazette::token::Secret::new(SECRET);
    let now = chrono::DateTime::parse_from_rfc3339(NOW).unwrap();
    let mut flipped = t.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let expired = secret.confirm_token(
        LIST,
        "reader@example.org",
        chrono::DateTime::parse_from_rfc3339("2025-12-20T00:00:00Z").unwrap(),
    );
    let bad = [
        ("forged", String::from_utf8(flipped).unwrap(), 400),
        ("truncated", t[..t.len() - 6].to_string(), 400),
        ("empty", String::new(), 400),
        (
            "another key",
            gazette::token::Secret::new("another secret 0123456789").confirm_token(
                LIST,
                "reader@example.org",
                now,
            ),
            400,
        ),
        (
            "other newsletter",
            secret.confirm_token("other.example.org", "reader@example.org", now),
            400,
        ),
        (
            "unsubscribe token",
            secret.token(LIST, "reader@example.org"),
            400,
        ),
        ("expired", expired, 410),
    ];
    for (what, token, want) in &bad {
        let url = format!("{}confirm?token={token}", s.base);
        assert_eq!(curl(&[&url]).0, *want, "GET {what}");
        assert_eq!(curl(&["-X", "POST", &url]).0, *want, "POST {what}");
        assert_eq!(
            status_of(&n, "reader@example.org").as_deref(),
            Some("pending"),
            "{what}"
        );
    }
    // A confirm token is not an unsubscribe token either.
    let (code, _) = curl(&[
        "-X",
        "POST",
        "--data",
        "List-Unsubscribe=One-Click",
        &format!("{}unsubscribe?token={t}", s.base),
    ]);
    assert!((400..500).contains(&code), "{code}");
    assert_eq!(
        status_of(&n, "reader@example.org").as_deref(),
        Some("pending")
    );
    assert_eq!(n.subscriber_count(), "0");
    // The genuine link still works.
    assert_eq!(curl(&["-X", "POST", &good]).0, 200);
    assert_eq!(n.subscriber_count(), "1");
}

#[test]
fn a_client_past_its_allowance_gets_429_and_the_proxy_header_counts_only_when_configured() {
    let sink = Sink::start();
    let port = free_port();
    let n = newsletter(port, "signups_per_hour = 3");
    let s = serve(&n, port, &sink.url(), NOW);
    let post = |email: &str, forwarded: &str| sign_up_forwarded(&s, email, forwarded);
    // Without client_ip_header, a forged header changes nothing: the peer is the client.
    let codes: Vec<u16> = (0..5)
        .map(|i| post(&format!("r{i}@example.org"), &format!("10.0.0.{i}")))
        .collect();
    assert_eq!(codes, [200, 200, 200, 429, 429]);
    let h = headers(&[
        "--data-urlencode",
        "email=x@example.org",
        &s.url("subscribe"),
    ]);
    assert!(header(&h, "retry-after").is_some(), "{h:?}");
    assert_eq!(
        status_of(&n, "r3@example.org"),
        None,
        "a 429 stored nothing"
    );
    s.kill();

    let port = free_port();
    let n = newsletter(
        port,
        "signups_per_hour = 3\nclient_ip_header = \"X-Forwarded-For\"",
    );
    let s = serve(&n, port, &sink.url(), NOW);
    let post = |email: &str, forwarded: &str| sign_up_forwarded(&s, email, forwarded);
    // The last address is the one the proxy appended; what the client wrote before it is not
    // believed.
    let codes: Vec<u16> = (0..4)
        .map(|i| {
            post(
                &format!("a{i}@example.org"),
                &format!("198.51.100.{i}, 10.0.0.1"),
            )
        })
        .collect();
    assert_eq!(codes, [200, 200, 200, 429]);
    assert_eq!(post("b@example.org", "10.0.0.2"), 200);
}

#[test]
fn the_honeypot_drops_bots_silently_and_large_bodies_are_refused() {
    let sink = Sink::start();
    let port = free_port();
    let n = newsletter(port, "");
    let s = serve(&n, port, &sink.url(), NOW);
    let (code, human) = sign_up(&s, "human@example.org");
    assert_eq!(code, 200);
    let (code, bot) = curl(&[
        "--data",
        "email=bot@example.org&website=http%3A%2F%2Fspam.example",
        &s.url("subscribe"),
    ]);
    assert_eq!(code, 200);
    assert_eq!(bot, human, "the bot sees what a person sees");
    sink.wait_for(1);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sink.mails().len(), 1);
    assert!(sink.to("bot@example.org").is_empty());
    assert_eq!(status_of(&n, "bot@example.org"), None);

    // Bodies over the limit: 413, nothing stored.
    let big = format!("email=big@example.org&name={}", "x".repeat(64 * 1024));
    let (code, _) = curl(&["--data", &big, &s.url("subscribe")]);
    assert_eq!(code, 413);
    assert_eq!(status_of(&n, "big@example.org"), None);
    // Not an address: 400, nothing stored.
    assert_eq!(sign_up(&s, "not an address").0, 400);
    assert_eq!(curl(&["-X", "DELETE", &s.url("subscribe")]).0, 405);
    assert_html_security_headers(&["--data", "email=not-an-address", &s.url("subscribe")]);
}

#[test]
fn confirmations_queued_while_the_relay_is_down_survive_kill_9_and_go_out_once() {
    let relay_port = free_port(); // nothing listens there yet
    let relay = format!("smtp://127.0.0.1:{relay_port}");
    let port = free_port();
    let n = newsletter(port, "");
    let s = serve(&n, port, &relay, NOW);
    let addresses: Vec<String> = (0..3).map(|i| format!("q{i}@example.org")).collect();
    for a in &addresses {
        let start = Instant::now();
        assert_eq!(sign_up(&s, a).0, 200);
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "a sign-up waited on SMTP: {:?}",
            start.elapsed()
        );
    }
    // The sender has tried and failed at least once.
    let mut log = String::new();
    let retried = wait_until(Duration::from_secs(15), Duration::from_millis(10), || {
        log = s.log().join("\n");
        log.contains("waits")
    });
    assert!(retried, "no retry in the log: {log}");
    let queued = sql(&n, "SELECT COUNT(*) FROM outbox WHERE state = 'queued'");
    assert_eq!(queued.stdout.trim(), "3");
    s.kill(); // SIGKILL

    let sink = Sink::on(relay_port);
    let s = serve(&n, port, &sink.url(), NOW);
    sink.wait_for(3);
    // Let the sender pass over the queue again: nothing more goes out.
    std::thread::sleep(Duration::from_secs(2));
    for a in &addresses {
        assert_eq!(sink.to(a).len(), 1, "{a}");
    }
    assert_eq!(sink.mails().len(), 3);
    let sent = sql(&n, "SELECT COUNT(*) FROM outbox WHERE state = 'sent'");
    assert_eq!(sent.stdout.trim(), "3");
    drop(s);
    // And a restart sends nothing again.
    let s = serve(&n, port, &sink.url(), NOW);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sink.mails().len(), 3);
    drop(s);
}

#[test]
fn published_pages_carry_the_subscribe_form_only_with_serve_and_check_reads_serve() {
    let port = free_port();
    let n = newsletter(port, "");
    let base = format!("http://127.0.0.1:{port}/news/");
    let index = n.read("feeds/index.html");
    let issue = n.read("feeds/2023-03-papers/index.html");
    for page in [&index, &issue] {
        assert!(
            page.contains(&format!("action=\"{base}subscribe\"")),
            "{page}"
        );
        assert!(page.contains("name=\"website\""), "the honeypot");
        assert!(
            page.contains("电子邮件地址"),
            "in the newsletter's language"
        );
    }
    n.gazette(&["check"]).ok();

    // English.
    let toml = n
        .read("gazette.toml")
        .replace("language = \"zh-CN\"", "language = \"en\"");
    n.write("gazette.toml", toml);
    n.gazette(&["publish", "-q"]).ok();
    assert!(n.read("feeds/index.html").contains("Email address"));

    // Without [serve]: no form.
    let plain = Newsletter::sample();
    plain.gazette(&["publish", "-q"]).ok();
    assert!(!plain.read("feeds/index.html").contains("subscribe"));

    // check: an unsubscribe_url serve does not answer is a warning; a bad listen an error.
    let toml = n.read("gazette.toml").replace(
        &format!("unsubscribe_url = \"{base}unsubscribe?token={{token}}\""),
        "unsubscribe_url = \"https://elsewhere.example.org/u/{token}\"",
    );
    assert!(toml.contains("elsewhere"));
    n.write("gazette.toml", &toml);
    let out = n.gazette(&["check"]).ok();
    assert!(
        out.stderr.contains("gazette.toml:")
            && out.stderr.contains("does not point at `gazette serve`")
            && out
                .stderr
                .contains(&format!("{base}unsubscribe?token={{token}}")),
        "{}",
        out.stderr
    );
    n.write(
        "gazette.toml",
        toml.replace(
            &format!("listen = \"127.0.0.1:{port}\""),
            "listen = \"localhost\"",
        ),
    );
    let out = n.gazette(&["check"]).code(1);
    assert!(
        out.stderr
            .contains("serve.listen `localhost` is not a listen address"),
        "{}",
        out.stderr
    );
    n.write(
        "gazette.toml",
        format!("{toml}client_ip_header = \"X Forwarded\"\nsignups_per_hour = 0\n"),
    );
    let out = n.gazette(&["check"]).code(1);
    assert!(
        out.stderr.contains("serve.client_ip_header"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("serve.signups_per_hour"),
        "{}",
        out.stderr
    );
}

/// `gazette send SLUG --yes` to the sink, at most 120 s.
fn send(n: &Newsletter, sink: &Sink, slug: &str) -> Run {
    let mut c = n.command(&["send", slug, "--yes"]);
    c.env("GAZETTE_SMTP_URL", sink.url());
    let out = c.output().expect("gazette send runs");
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn browser(args: &[&str]) -> Value {
    let script = crate::support::repo().join("tests/py/browser_subscribe.py");
    let mut all = vec!["120", "python3", script.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = tool("timeout", &all);
    assert_eq!(
        out.status, 0,
        "the browser run failed (chromium, chromedriver and python3-selenium: `bash .ci/setup`):\n{}\n{}",
        out.stdout, out.stderr
    );
    serde_json::from_str(out.stdout.trim()).unwrap()
}

#[test]
fn a_reader_subscribes_confirms_receives_and_unsubscribes_in_a_real_browser() {
    let sink = Sink::start();
    let port = free_port();
    let n = newsletter(port, "");
    let s = serve(&n, port, &sink.url(), NOW);
    let reader = "browser.reader@example.org";
    let issue = format!("{}2023-03-papers/", s.base);

    let run = browser(&["subscribe", &issue, sink.dump.to_str().unwrap(), reader]);
    assert_eq!(run["honeypot_displayed"], false, "{run}");
    assert_eq!(run["after_submit"], "请查收邮件", "{run}");
    assert_eq!(run["confirm_page"], "确认订阅", "{run}");
    assert_eq!(run["after_confirm"], "订阅成功", "{run}");
    assert_eq!(status_of(&n, reader).as_deref(), Some("active"));
    assert_eq!(n.subscriber_count(), "1");
    let confirm = sink.to(reader);
    assert_eq!(confirm.len(), 1, "{confirm:?}");
    // The confirmation goes to the bare address (the name is anyone's words until the
    // address confirms); the issues after it carry the name the reader gave.
    assert_eq!(confirm[0]["to"], "browser.reader@example.org");

    // An issue reaches them.
    send(&n, &sink, "2023-03-papers").ok();
    let mails = sink.to(reader);
    assert_eq!(mails.len(), 2, "{mails:?}");
    let issue_mail = mails
        .iter()
        .find(|m| !m["list_unsubscribe"].is_null())
        .expect("the issue, with List-Unsubscribe");
    assert_eq!(issue_mail["defects"], 0);
    assert_eq!(issue_mail["to"], "浏览器读者 <browser.reader@example.org>");

    // The footer's unsubscribe link, in the browser: one button, then gone.
    let eml = sink.dump.join(issue_mail["file"].as_str().unwrap());
    let run = browser(&["unsubscribe", eml.to_str().unwrap()]);
    assert!(
        run["unsubscribe_link"]
            .as_str()
            .is_some_and(|l| l.starts_with(&s.url("unsubscribe?token="))),
        "{run}"
    );
    assert_ne!(run["unsubscribe_page"], run["after_unsubscribe"], "{run}");
    assert_eq!(status_of(&n, reader).as_deref(), Some("unsubscribed"));
    // The next issue skips them.
    send(&n, &sink, "2023-04-papers").ok();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sink.to(reader).len(), 2);
}
