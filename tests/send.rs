//! `gazette send` and `gazette status` against real SMTP servers on 127.0.0.1: Postfix's
//! smtp-sink, and aiosmtpd scripted with faults (tests/py/smtp_server.py). The ledger is read
//! back through `gazette status --json`, the messages through Python's email package.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Newsletter, Run, free_port, python, repo, smtp_sink};

const SLUG: &str = "2023-03-papers";

/// A server process killed when the test ends.
struct Server {
    child: Child,
    port: u16,
    /// smtp-sink's dump directory, or the Python server's log.
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Postfix's smtp-sink, dumping each message into a file.
    fn sink() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("dump");
        std::fs::create_dir(&out).unwrap();
        let port = free_port();
        // Returns once the sink accepts connections (at most 10 s).
        let child = smtp_sink(&out, port, 100);
        Server {
            child,
            port,
            out,
            _dir: dir,
        }
    }

    /// The aiosmtpd server of tests/py/smtp_server.py in one of its fault modes.
    fn python(mode: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("log.jsonl");
        let port = free_port();
        let mut child = Command::new("python3")
            .arg(repo().join("tests/py/smtp_server.py"))
            .arg(port.to_string())
            .arg(&out)
            .arg(mode)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the SMTP server starts within 20 s");
        assert_eq!(
            line.trim(),
            "ready",
            "aiosmtpd did not start (pip install aiosmtpd)"
        );
        let server = Server {
            child,
            port,
            out,
            _dir: dir,
        };
        server.wait_listening();
        server
    }

    fn wait_listening(&self) {
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the server never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The Python server's log: accepted messages and RCPT attempts.
    fn log(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Accepted messages by recipient: their Message-IDs.
    fn accepted(&self) -> HashMap<String, Vec<String>> {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for e in self.log() {
            if let Some(rcpt) = e["rcpt"].as_str() {
                assert_eq!(e["defects"], 0, "a message with MIME defects: {e}");
                m.entry(rcpt.to_lowercase())
                    .or_default()
                    .push(e["message_id"].as_str().unwrap().to_string());
            }
        }
        m
    }

    fn rcpt_attempts(&self, rcpt: &str) -> usize {
        self.log()
            .iter()
            .filter(|e| e["rcpt_attempt"].as_str() == Some(rcpt))
            .count()
    }
}

/// The sample newsletter with these subscribers, and `extra` appended to `[smtp]`.
fn newsletter(addresses: &[String], smtp_extra: &str) -> Newsletter {
    let n = Newsletter::sample();
    let mut toml = n.read("gazette.toml");
    for line in smtp_extra.lines() {
        // A key given again replaces the sample's (`[smtp]` is the file's last table).
        let key = line.split('=').next().unwrap().trim();
        toml = toml
            .lines()
            .filter(|l| l.split('=').next().unwrap().trim() != key)
            .map(|l| format!("{l}\n"))
            .collect();
    }
    toml.push_str(smtp_extra);
    n.write("gazette.toml", toml);
    let mut csv = String::from("email,name\n");
    for a in addresses {
        csv.push_str(&format!("{a},\n"));
    }
    n.write("list.csv", csv);
    let list = n.path().join("list.csv");
    n.gazette(&["subscribers", "import", list.to_str().unwrap()])
        .ok();
    n
}

fn users(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{prefix}{i:05}@example.org"))
        .collect()
}

fn send(n: &Newsletter, server: &Server, extra: &[&str]) -> Run {
    let mut args = vec!["send", SLUG, "--yes"];
    args.extend_from_slice(extra);
    let mut c = n.command(&args);
    c.env("GAZETTE_SMTP_URL", server.url());
    let out = run_with_timeout(c, Duration::from_secs(120));
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    out
}

fn run_with_timeout(mut c: Command, limit: Duration) -> Run {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gazette runs");
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("gazette did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Run::from(out)
}

fn status(n: &Newsletter) -> Value {
    let out = n.gazette(&["status", SLUG, "--json"]).ok();
    serde_json::from_str(&out.stdout).unwrap()
}

fn count(v: &Value, state: &str) -> u64 {
    v["counts"][state].as_u64().unwrap()
}

#[test]
fn sink_receives_one_parsable_copy_per_active_subscriber() {
    let sink = Server::sink();
    let mut all = users("reader", 1000);
    all.extend([
        "gone@example.org".to_string(),
        "Bounced@Example.org".to_string(),
    ]);
    let n = newsletter(&all, "");
    n.gazette(&["subscribers", "remove", "gone@example.org"])
        .ok();
    crate::support::tool(
        "sqlite3",
        &[
            n.path().join(".gazette/gazette.db").to_str().unwrap(),
            "UPDATE subscribers SET status = 'bounced' WHERE email_key = 'bounced@example.org'",
        ],
    )
    .ok();
    let out = send(&n, &sink, &[]).ok();
    assert!(out.stderr.contains("1000 sent"), "{}", out.stderr);

    let parsed = python("check_sink.py", &[sink.out.to_str().unwrap()]).ok();
    let v: Value = serde_json::from_str(&parsed.stdout).unwrap();
    let messages = v["messages"].as_array().unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for m in messages {
        assert_eq!(m["defects"], 0, "{m}");
        assert_eq!(
            m["parts"],
            serde_json::json!(["text/plain", "text/html"]),
            "{m}"
        );
        assert!(m["text_chars"].as_u64().unwrap() > 1000, "{m}");
        let rcpt = m["rcpt"][0].as_str().unwrap().to_string();
        assert_eq!(
            m["to"].as_str().unwrap(),
            rcpt,
            "header To differs from RCPT"
        );
        *seen.entry(rcpt).or_default() += 1;
    }
    for a in users("reader", 1000) {
        assert_eq!(seen.get(&a), Some(&1), "{a} did not get exactly one copy");
    }
    assert_eq!(seen.len(), 1000, "messages went to suppressed addresses");
    let s = status(&n);
    assert_eq!(count(&s, "sent"), 1000);
    assert_eq!(count(&s, "pending"), 0);

    // A second run finds nothing to do and sends nothing.
    let again = send(&n, &sink, &[]).ok();
    assert!(
        again.stderr.contains(&format!(
            "`{SLUG}` was already delivered to all 1000 subscriber(s); nothing to send"
        )),
        "{}",
        again.stderr
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(std::fs::read_dir(&sink.out).unwrap().count(), 1000);
}

#[test]
fn transient_failures_are_retried_until_each_is_delivered_once() {
    let server = Server::python("random4xx");
    let n = newsletter(&users("r", 150), "");
    let out = send(&n, &server, &[]).ok();
    let accepted = server.accepted();
    for a in users("r", 150) {
        assert_eq!(
            accepted.get(&a).map(Vec::len),
            Some(1),
            "{a}: {}",
            out.stderr
        );
    }
    let s = status(&n);
    assert_eq!(count(&s, "sent"), 150, "{s}");
    assert!(
        server
            .log()
            .iter()
            .filter(|e| e["rcpt_attempt"].is_string())
            .count()
            > 150,
        "no RCPT was refused: the fault did not happen"
    );
}

#[test]
fn permanent_failures_are_recorded_with_the_servers_words_and_not_retried() {
    let server = Server::python("reject");
    let mut all = users("ok", 20);
    all.extend(users("unknown", 3));
    all.extend(users("spam", 2));
    let n = newsletter(&all, "");
    send(&n, &server, &[]).ok();
    let s = status(&n);
    assert_eq!(
        (count(&s, "sent"), count(&s, "bounced"), count(&s, "failed")),
        (20, 3, 2),
        "{s}"
    );
    for p in s["problems"].as_array().unwrap() {
        let reply = p["last_reply"].as_str().unwrap();
        match p["state"].as_str().unwrap() {
            "bounced" => assert!(
                reply.contains("5.1.1") && reply.contains("User unknown"),
                "{p}"
            ),
            "failed" => assert!(reply.contains("rejected as spam"), "{p}"),
            other => panic!("unexpected state {other}: {p}"),
        }
        assert_eq!(p["attempts"], 1, "{p}");
    }
    for u in users("unknown", 3) {
        assert_eq!(server.rcpt_attempts(&u), 1);
    }
    // Bounced addresses are suppressed; a second run sends nobody anything.
    let list = n.gazette(&["subscribers", "list"]).ok().stdout;
    assert_eq!(list.matches("\tbounced\t").count(), 3, "{list}");
    assert_eq!(
        n.gazette(&["subscribers", "count"]).ok().stdout.trim(),
        "22"
    );
    send(&n, &server, &[]).ok();
    assert_eq!(server.accepted().values().map(Vec::len).sum::<usize>(), 20);
    for u in users("unknown", 3) {
        assert_eq!(server.rcpt_attempts(&u), 1);
    }
}

#[test]
fn a_connection_reset_or_hang_up_after_the_message_was_written_is_unknown_not_resent() {
    let server = Server::python("disconnect");
    let mut all = users("ok", 20);
    all.extend(users("cut", 4));
    all.extend(users("drop", 2));
    let n = newsletter(&all, "");
    send(&n, &server, &[]).ok();
    let accepted = server.accepted();
    for a in users("ok", 20) {
        assert_eq!(
            accepted.get(&a).map(Vec::len),
            Some(1),
            "{a}: {}",
            status(&n)
        );
    }
    // Reset after the whole message was written (cut: the server happened not to read it;
    // gazette cannot tell that from a reset after it was stored), or hung up after the final
    // dot (drop): maybe stored, so not sent again without being asked.
    for a in users("cut", 4).iter().chain(&users("drop", 2)) {
        assert!(!accepted.contains_key(a), "{a}");
    }
    let s = status(&n);
    assert_eq!((count(&s, "sent"), count(&s, "unknown")), (20, 6), "{s}");
    for p in s["problems"].as_array().unwrap() {
        let email = p["email"].as_str().unwrap();
        assert!(email.starts_with("drop") || email.starts_with("cut"), "{p}");
    }
    // A plain resume leaves them; --retry-unknown sends each exactly once more.
    send(&n, &server, &[]).ok();
    assert_eq!(count(&status(&n), "unknown"), 6);
    send(&n, &server, &["--retry-unknown"]).ok();
    assert_eq!(count(&status(&n), "sent"), 26);
    let accepted = server.accepted();
    for a in &all {
        assert_eq!(accepted.get(a).map(Vec::len), Some(1), "{a}");
    }
}

#[test]
fn a_421_after_the_final_dot_is_unknown_until_retry_unknown_resends_the_same_message_id() {
    let server = Server::python("421");
    let mut all = users("ok", 20);
    all.extend(users("late", 3));
    let n = newsletter(&all, "");
    let first = send(&n, &server, &[]).ok();
    assert!(first.stderr.contains("unknown outcome"), "{}", first.stderr);
    let s = status(&n);
    assert_eq!((count(&s, "sent"), count(&s, "unknown")), (20, 3), "{s}");

    // A plain resume does not send them again.
    send(&n, &server, &[]).ok();
    for a in users("late", 3) {
        assert_eq!(server.accepted()[&a].len(), 1);
    }
    // --retry-unknown does, with the same Message-ID, so the receiver can drop the copy; and
    // with the same bytes, Date included (the ledger keeps the moment of the first attempt).
    std::thread::sleep(Duration::from_millis(1100));
    send(&n, &server, &["--retry-unknown"]).ok();
    let accepted = server.accepted();
    for a in users("late", 3) {
        let ids = &accepted[&a];
        assert_eq!(ids.len(), 2, "{a}");
        assert_eq!(ids[0], ids[1]);
        let copies: Vec<Value> = server
            .log()
            .into_iter()
            .filter(|e| e["rcpt"].as_str() == Some(a.as_str()))
            .collect();
        assert_eq!(copies[0]["date"], copies[1]["date"], "{a}");
        assert_eq!(
            copies[0]["sha256"], copies[1]["sha256"],
            "{a}: resent bytes differ"
        );
    }
    for a in users("ok", 20) {
        assert_eq!(accepted[&a].len(), 1, "{a}");
    }
    let s = status(&n);
    assert_eq!((count(&s, "sent"), count(&s, "unknown")), (23, 0), "{s}");
}

#[test]
fn a_stalled_server_times_out_and_the_message_is_unknown() {
    let server = Server::python("stall");
    let mut all = users("ok", 10);
    all.extend(users("stall", 1));
    let n = newsletter(&all, "timeout_seconds = 1\n");
    let start = Instant::now();
    send(&n, &server, &[]).ok();
    assert!(start.elapsed() < Duration::from_secs(60));
    let s = status(&n);
    assert_eq!((count(&s, "sent"), count(&s, "unknown")), (10, 1), "{s}");
}

#[test]
fn a_refused_login_stops_the_run_with_nothing_marked_sent() {
    let server = Server::python("auth");
    let n = newsletter(&users("r", 30), "username = \"editor\"\n");
    let mut c = n.command(&["send", SLUG, "--yes"]);
    c.env("GAZETTE_SMTP_URL", server.url())
        .env("GAZETTE_SMTP_PASSWORD", "wrong");
    let out = run_with_timeout(c, Duration::from_secs(60)).code(1);
    assert!(out.stderr.contains("refused the login"), "{}", out.stderr);
    let s = status(&n);
    assert_eq!(count(&s, "sent"), 0);
    assert_eq!(count(&s, "pending"), 30, "{s}");
    assert!(s["problems"].as_array().unwrap().is_empty(), "{s}");
    assert!(server.accepted().is_empty());
}

#[test]
fn a_relay_without_starttls_or_with_an_untrusted_certificate_stops_the_run() {
    for (mode, expected) in [
        ("ok", "does not offer STARTTLS"),
        ("badcert", "STARTTLS with"),
    ] {
        let server = Server::python(mode);
        let n = newsletter(&users("r", 5), "tls = \"starttls\"\n");
        let mut c = n.command(&["send", SLUG, "--yes"]);
        c.env("GAZETTE_SMTP_URL", server.url());
        let out = run_with_timeout(c, Duration::from_secs(60)).code(1);
        assert!(out.stderr.contains(expected), "{mode}: {}", out.stderr);
        let s = status(&n);
        assert_eq!((count(&s, "sent"), count(&s, "pending")), (0, 5), "{s}");
        assert!(server.accepted().is_empty());
    }
}

#[test]
fn a_password_is_never_sent_in_clear_text_to_another_host() {
    let n = newsletter(&users("r", 2), "username = \"editor\"\n");
    let mut c = n.command(&["send", SLUG, "--yes"]);
    c.env("GAZETTE_SMTP_URL", "smtp://192.0.2.1:25")
        .env("GAZETTE_SMTP_PASSWORD", "secret");
    let out = run_with_timeout(c, Duration::from_secs(30)).code(1);
    assert!(out.stderr.contains("clear text"), "{}", out.stderr);
}

#[test]
fn an_unreachable_relay_stops_the_run_and_loses_nobody() {
    let n = newsletter(&users("r", 5), "");
    let port = free_port();
    let mut c = n.command(&["send", SLUG, "--yes"]);
    c.env("GAZETTE_SMTP_URL", format!("smtp://127.0.0.1:{port}"));
    let out = run_with_timeout(c, Duration::from_secs(60)).code(1);
    assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);
    assert_eq!(count(&status(&n), "pending"), 5);
    let sink = Server::sink();
    send(&n, &sink, &[]).ok();
    assert_eq!(count(&status(&n), "sent"), 5);
}

#[test]
fn without_a_terminal_send_requires_yes() {
    let n = newsletter(&users("r", 2), "");
    let out = n.gazette(&["send", SLUG]).code(1);
    assert!(out.stderr.contains("--yes"), "{}", out.stderr);
    assert!(out.stderr.contains("2 subscriber"), "{}", out.stderr);
}

#[test]
fn dry_run_writes_every_message_and_records_nothing() {
    let n = newsletter(&users("r", 5), "");
    let out = n.gazette(&["send", SLUG, "--dry-run"]).ok();
    assert!(out.stderr.contains("5 message"), "{}", out.stderr);
    let dir = n.path().join("outbox").join(SLUG).join("dry-run");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 5);
    assert!(files.iter().all(|f| f.extension().unwrap() == "eml"));
    let s = status(&n);
    assert_eq!((count(&s, "sent"), count(&s, "pending")), (0, 5));
}

#[test]
fn a_test_copy_goes_only_to_the_given_address_and_outside_the_ledger() {
    let server = Server::python("ok");
    let n = newsletter(&users("r", 5), "");
    send(&n, &server, &["--to", "editor@example.org"]).ok();
    let accepted = server.accepted();
    assert_eq!(accepted.len(), 1);
    assert!(accepted.contains_key("editor@example.org"));
    assert_eq!(count(&status(&n), "pending"), 5);
}

// Regression: a test copy reused the real Message-ID, so a receiver that drops repeated
// Message-IDs (Gmail does) dropped the real issue sent to an editor who is also a subscriber.
#[test]
fn a_test_copy_has_a_message_id_of_its_own() {
    let server = Server::python("ok");
    let subscribers = users("r", 3);
    let n = newsletter(&subscribers, "");
    send(&n, &server, &["--to", &subscribers[0]]).ok();
    send(&n, &server, &[]).ok();
    let ids = &server.accepted()[&subscribers[0]];
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_ne!(
        ids[0], ids[1],
        "the test copy and the issue share a Message-ID"
    );
}

/// kill -9 at several moments of a 5,000-recipient send, then resume: everyone gets exactly
/// one copy except the rows reported unknown (at most `concurrency` per crash), and
/// --retry-unknown delivers theirs.
#[test]
fn a_send_killed_at_any_moment_resumes_without_losing_or_doubling_anyone() {
    killed_send_resumes_exactly_once("");
}

/// The same with rows only handed to the operating system before DATA: a crash of gazette
/// itself (not of the machine) still leaves at most one unknown row per connection.
#[test]
fn with_ledger_sync_normal_a_killed_send_still_resumes_exactly_once() {
    killed_send_resumes_exactly_once("ledger_sync = \"normal\"\n");
}

fn killed_send_resumes_exactly_once(smtp_extra: &str) {
    let server = Server::python("ok");
    let all = users("r", 5000);
    let n = newsletter(&all, smtp_extra);
    let concurrency = 4;
    let mut crashes = 0;
    let mut seen_sending = 0;
    for delay_ms in [400, 900, 1500] {
        let mut c = n.command(&["send", SLUG, "--yes"]);
        c.env("GAZETTE_SMTP_URL", server.url())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = c.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_some() {
            continue; // finished before the kill: fine, but it proves nothing
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        crashes += 1;
        // Rows written before DATA with no outcome: at most one per connection.
        let s = status(&n);
        let sending = count(&s, "sending");
        assert!(
            sending <= concurrency,
            "{sending} rows in flight after a crash"
        );
        seen_sending += sending;
    }
    assert!(crashes >= 2, "the send finished before it could be killed");
    let out = send(&n, &server, &[]).ok();
    let s = status(&n);
    let unknown = count(&s, "unknown");
    assert_eq!(unknown, seen_sending, "{s}\n{}", out.stderr);
    assert!(unknown <= concurrency * crashes, "{s}");
    assert_eq!(count(&s, "sent") + unknown, 5000, "{s}");
    let unknown_addrs: Vec<String> = s["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["state"] == "unknown")
        .map(|p| p["email"].as_str().unwrap().to_string())
        .collect();
    let accepted = server.accepted();
    for a in &all {
        let copies = accepted.get(a).map_or(0, Vec::len);
        if unknown_addrs.contains(a) {
            assert!(copies <= 1, "{a}: {copies} copies");
        } else {
            assert_eq!(copies, 1, "{a}: {copies} copies");
        }
    }
    send(&n, &server, &["--retry-unknown"]).ok();
    let accepted = server.accepted();
    for a in &all {
        let ids = &accepted[a];
        assert!(!ids.is_empty(), "{a} never got the issue");
        assert!(
            ids.iter().all(|i| *i == ids[0]),
            "{a}: different Message-IDs"
        );
        if ids.len() > 1 {
            assert!(unknown_addrs.contains(a), "{a} got a second copy");
        }
    }
    assert_eq!(count(&status(&n), "sent"), 5000);
}

/// A send to `readers` readers through the Python server in `mode`, `smtp_extra` appended to
/// `[smtp]`, sent `signal` (`-INT` as Ctrl-C does, `-TERM`) after 1.5 s: it exits 1 saying how
/// to resume, the messages in flight finished and were recorded sent (nothing left `sending`
/// or `unknown`), and a rerun delivers the rest exactly once. Returns the newsletter.
fn a_signal_stops_the_send_after_the_messages_in_flight(
    mode: &str,
    readers: usize,
    smtp_extra: &str,
    signal: &str,
) -> Newsletter {
    let server = Server::python(mode);
    let all = users("r", readers);
    let n = newsletter(&all, smtp_extra);
    let mut c = n.command(&["send", SLUG, "--yes"]);
    c.env("GAZETTE_SMTP_URL", server.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    crate::support::tool("kill", &[signal, &child.id().to_string()]).ok();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted; run `gazette"), "{stderr}");
    let s = status(&n);
    let sent = count(&s, "sent");
    assert!(sent > 0 && sent < readers as u64, "{s}");
    // Stopped cleanly: nothing left in flight, nothing unknown.
    assert_eq!((count(&s, "sending"), count(&s, "unknown")), (0, 0), "{s}");
    // Each message the relay stored was recorded sent (none was cut off mid-reply).
    assert_eq!(server.accepted().len() as u64, sent, "{s}");
    send(&n, &server, &[]).ok();
    let accepted = server.accepted();
    for a in &all {
        assert_eq!(accepted.get(a).map(Vec::len), Some(1), "{a}");
    }
    n
}

#[test]
fn ctrl_c_stops_after_the_messages_in_flight_and_says_how_to_resume() {
    // A rate limit keeps the run going long enough to interrupt it.
    a_signal_stops_the_send_after_the_messages_in_flight("ok", 200, "rate = 40\n", "-INT");
}

/// A refusal that is about the sender or the relay, not the recipient, stops the run with
/// every row left to retry; once the relay is fixed, everyone gets the issue exactly once.
fn a_refusal_that_is_not_about_the_recipient_stops_the_run(mode: &str, expected: &str) {
    let server = Server::python(mode);
    let all = users("r", 30);
    let n = newsletter(&all, "");
    let mut c = n.command(&["send", SLUG, "--yes"]);
    c.env("GAZETTE_SMTP_URL", server.url());
    let out = run_with_timeout(c, Duration::from_secs(60)).code(1);
    assert!(out.stderr.contains("stopped"), "{}", out.stderr);
    assert!(out.stderr.contains(expected), "{}", out.stderr);
    assert!(
        out.stderr.contains("nobody was marked failed"),
        "{}",
        out.stderr
    );
    let s = status(&n);
    assert_eq!(
        (count(&s, "sent"), count(&s, "bounced"), count(&s, "failed")),
        (0, 0, 0),
        "{s}"
    );
    assert_eq!(count(&s, "sending") + count(&s, "unknown"), 0, "{s}");
    assert_eq!(count(&s, "deferred") + count(&s, "pending"), 30, "{s}");
    assert!(server.accepted().is_empty());
    let list = n.gazette(&["subscribers", "list"]).ok().stdout;
    assert_eq!(list.matches("\tactive\t").count(), 30, "{list}");

    let fixed = Server::python("ok");
    send(&n, &fixed, &[]).ok();
    let accepted = fixed.accepted();
    for a in &all {
        assert_eq!(accepted.get(a).map(Vec::len), Some(1), "{a}");
    }
    assert_eq!(accepted.len(), 30);
    assert_eq!(count(&status(&n), "sent"), 30);
}

#[test]
fn a_sender_address_refused_at_mail_from_stops_the_run_and_fails_nobody() {
    a_refusal_that_is_not_about_the_recipient_stops_the_run("badsender", "5.1.8");
}

#[test]
fn relay_access_denied_on_every_rcpt_stops_the_run_and_fails_nobody() {
    a_refusal_that_is_not_about_the_recipient_stops_the_run("norelay", "Relay access denied");
}

#[test]
fn a_run_whose_first_messages_are_all_refused_alike_stops_early() {
    let server = Server::python("reject");
    let n = newsletter(&users("unknown", 100), "");
    let mut c = n.command(&["send", SLUG, "--yes"]);
    c.env("GAZETTE_SMTP_URL", server.url());
    let out = run_with_timeout(c, Duration::from_secs(60)).code(1);
    assert!(out.stderr.contains("same reply"), "{}", out.stderr);
    let s = status(&n);
    // The stop comes after 20 alike, plus at most the messages other connections had in hand.
    let bounced = count(&s, "bounced");
    assert!((20..=40).contains(&bounced), "{s}");
    assert_eq!(bounced + count(&s, "pending"), 100, "{s}");
}

#[test]
fn a_rate_too_small_to_pace_is_a_located_error_not_a_panic() {
    let n = newsletter(&users("r", 2), "rate = 1e-30\n");
    let sink = Server::sink();
    let out = send(&n, &sink, &[]).code(1);
    assert!(out.stderr.contains("gazette.toml:"), "{}", out.stderr);
    assert!(out.stderr.contains("smtp.rate"), "{}", out.stderr);
    assert!(sink.out.read_dir().unwrap().next().is_none());
}

#[test]
fn a_password_in_the_smtp_url_is_refused_and_never_echoed() {
    let sink = Server::sink();
    let with_password = format!("smtp://editor:s3cret@127.0.0.1:{}", sink.port);
    // In the environment.
    let n = newsletter(&users("r", 2), "");
    let mut c = n.command(&["send", SLUG, "--yes"]);
    c.env("GAZETTE_SMTP_URL", &with_password);
    let out = run_with_timeout(c, Duration::from_secs(30)).code(1);
    assert!(
        out.stderr.contains("GAZETTE_SMTP_PASSWORD"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("smtp.username"), "{}", out.stderr);
    assert!(!out.stderr.contains("s3cret"), "{}", out.stderr);
    assert_eq!(count(&status(&n), "pending"), 2);
    // In gazette.toml: a located error, for `check` too.
    let n = newsletter(&users("r", 2), &format!("url = \"{with_password}\"\n"));
    for args in [&["send", SLUG, "--yes"][..], &["check"][..]] {
        let mut c = n.command(args);
        c.env_remove("GAZETTE_SMTP_URL");
        let out = run_with_timeout(c, Duration::from_secs(30)).code(1);
        assert!(out.stderr.contains("gazette.toml:"), "{}", out.stderr);
        assert!(
            out.stderr.contains("GAZETTE_SMTP_PASSWORD"),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains("s3cret"), "{}", out.stderr);
    }
    assert!(sink.out.read_dir().unwrap().next().is_none());
}

#[test]
fn attempts_from_earlier_runs_do_not_use_up_this_runs_retries() {
    // Rows deferred by earlier runs with many attempts in the ledger: MAX_ATTEMPTS is per run,
    // so this run still retries each transient failure until it is delivered.
    let all = users("r", 20);
    let n = newsletter(&all, "");
    send(&n, &Server::sink(), &[]).ok();
    let db = n.path().join(".gazette/gazette.db");
    crate::support::tool(
        "python3",
        &[
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); \
             c.execute(\"UPDATE deliveries SET state = 'deferred', attempts = 50\"); c.commit()",
            db.to_str().unwrap(),
        ],
    )
    .ok();
    assert_eq!(count(&status(&n), "deferred"), 20);
    let server = Server::python("random4xx");
    send(&n, &server, &[]).ok();
    let s = status(&n);
    assert_eq!((count(&s, "sent"), count(&s, "deferred")), (20, 0), "{s}");
    let accepted = server.accepted();
    for a in &all {
        assert_eq!(accepted.get(a).map(Vec::len), Some(1), "{a}");
    }
}

/// A `Date:` header value as seconds since the epoch.
fn epoch(date: &str) -> i64 {
    chrono::DateTime::parse_from_rfc2822(date)
        .unwrap_or_else(|e| panic!("Date `{date}`: {e}"))
        .timestamp()
}

#[test]
fn a_sent_message_is_dated_when_handed_to_smtp_and_the_outbox_keeps_the_issue_date() {
    let server = Server::python("ok");
    let n = newsletter(&users("reader", 5), "");
    let before = chrono::Utc::now().timestamp();
    send(&n, &server, &[]).ok();
    let after = chrono::Utc::now().timestamp();
    let log = server.log();
    let dates: Vec<&str> = log.iter().filter_map(|e| e["date"].as_str()).collect();
    assert_eq!(dates.len(), 5, "{log:?}");
    for date in dates {
        let t = epoch(date);
        assert!(
            (before - 1..=after + 1).contains(&t),
            "Date {date} is not the moment of sending ({before}..{after})"
        );
    }
    // The outbox (and a dry run) show the issue as written, dated as the issue.
    n.gazette(&["publish"]).ok();
    let eml = n.read(&format!("outbox/{SLUG}/message.eml"));
    let line = eml.lines().find(|l| l.starts_with("Date: ")).unwrap();
    assert_eq!(
        epoch(&line["Date: ".len()..]),
        chrono::DateTime::parse_from_rfc3339("2023-03-31T09:00:00+08:00")
            .unwrap()
            .timestamp()
    );
}

/// A copy of the sample with `n` subscribers and no written id in `slug`'s front matter.
fn without_written_id(n: &Newsletter, slug: &str) {
    let path = format!("issues/{slug}.md");
    let text: String = n
        .read(&path)
        .lines()
        .filter(|l| !l.starts_with("id = "))
        .map(|l| format!("{l}\n"))
        .collect();
    n.write(&path, text);
}

#[test]
fn hardening_3_an_issue_whose_id_changed_is_not_sent_to_everyone_again() {
    let sink = Server::sink();
    let n = newsletter(&users("reader", 10), "");
    without_written_id(&n, SLUG);
    send(&n, &sink, &[]).ok();
    let delivered = || std::fs::read_dir(&sink.out).unwrap().count();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(delivered(), 10);

    // check now says the id should be written down, and what to write.
    let check = n.gazette_here(&["check"]);
    assert!(
        check.stderr.contains(&format!(
            "issues/{SLUG}.md: warning: this issue has been sent but its id is not written down"
        )) && check
            .stderr
            .contains("add `id = \"tag:digest.example.org,2023-03-31:2023-03-papers\"`"),
        "{}",
        check.stderr
    );

    // Changing id_authority, as check suggests for the placeholder, changes the derived id:
    // same slug, so send refuses.
    let toml = n.read("gazette.toml").replace(
        "id_authority = \"digest.example.org\"",
        "id_authority = \"example.net\"",
    );
    n.write("gazette.toml", toml);
    let refused = send(&n, &sink, &[]).code(1);
    assert!(
        refused
            .stderr
            .contains("was already sent under another id: 10 message(s)")
            && refused
                .stderr
                .contains("id = \"tag:digest.example.org,2023-03-31:2023-03-papers\"")
            && refused.stderr.contains("--force"),
        "{}",
        refused.stderr
    );

    // Renaming the file too: a new slug, but the same title and body.
    std::fs::rename(
        n.path().join(format!("issues/{SLUG}.md")),
        n.path().join("issues/2023-03-digest.md"),
    )
    .unwrap();
    let mut c = n.command(&["send", "2023-03-digest", "--yes"]);
    c.env("GAZETTE_SMTP_URL", sink.url());
    let refused = run_with_timeout(c, Duration::from_secs(60)).code(1);
    assert!(
        refused
            .stderr
            .contains("with the same title and body (as `2023-03-papers`)"),
        "{}",
        refused.stderr
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(delivered(), 10, "nobody got a second copy");

    // --force is the deliberate case: everyone gets it again.
    let mut c = n.command(&["send", "2023-03-digest", "--yes", "--force"]);
    c.env("GAZETTE_SMTP_URL", sink.url());
    run_with_timeout(c, Duration::from_secs(60)).ok();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(delivered(), 20);
}

/// A relay that loses every message stops the run after a few unknown outcomes in a row
/// (`concurrency` + 2 tolerated), exits non-zero saying what the relay did, and leaves rows
/// that `--retry-unknown` delivers exactly once, with the Message-ID of the first attempt.
fn a_relay_losing_every_message_stops_the_run(mode: &str, smtp_extra: &str, said: &str) {
    let server = Server::python(mode);
    let prefix = if mode == "421" { "late" } else { "stall" };
    let all = users(prefix, 40);
    let n = newsletter(&all, smtp_extra);
    let start = Instant::now();
    let out = send(&n, &server, &[]).code(1);
    assert!(start.elapsed() < Duration::from_secs(60));
    assert!(
        out.stderr.contains("in a row have an unknown outcome"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(said), "{}", out.stderr);
    assert!(out.stderr.contains("--retry-unknown"), "{}", out.stderr);
    let s = status(&n);
    let unknown = count(&s, "unknown");
    // 4 connections: the 7th unknown in a row stops it; the 3 others finish theirs.
    assert!((7..=10).contains(&unknown), "{unknown} unknown: {s}");
    assert_eq!((count(&s, "sent"), count(&s, "sending")), (0, 0), "{s}");
    // A plain rerun against a working relay sends to everyone not yet tried, once.
    let good = Server::python("ok");
    send(&n, &good, &[]).ok();
    let s = status(&n);
    assert_eq!(
        (count(&s, "sent"), count(&s, "unknown")),
        (40 - unknown, unknown),
        "{s}"
    );
    send(&n, &good, &["--retry-unknown"]).ok();
    assert_eq!(count(&status(&n), "sent"), 40);
    let first = server.accepted();
    let accepted = good.accepted();
    for a in &all {
        let ids = &accepted[a];
        assert_eq!(ids.len(), 1, "{a}");
        if let Some(earlier) = first.get(a) {
            assert_eq!(earlier, ids, "{a}: a different Message-ID");
        }
    }
}

#[test]
fn hardening_4_a_relay_answering_421_to_every_final_dot_stops_the_run() {
    a_relay_losing_every_message_stops_the_run("421", "", "421");
}

#[test]
fn hardening_4_a_relay_hanging_after_every_final_dot_stops_the_run() {
    a_relay_losing_every_message_stops_the_run(
        "stall",
        "timeout_seconds = 1\n",
        "the relay did not answer within 1 s after the final dot",
    );
}

/// SIGTERM (systemd, `docker stop`, `timeout`) stops a send like Ctrl-C: the messages in
/// flight finish and are recorded sent, nothing is left `sending`, and a rerun delivers the
/// rest exactly once.
#[test]
fn hardening_9_sigterm_finishes_the_messages_in_flight_like_ctrl_c() {
    // Every reply to a final dot takes 0.5 s: 4 messages are in flight most of the time.
    let n = a_signal_stops_the_send_after_the_messages_in_flight("slow", 40, "", "-TERM");
    assert_eq!(count(&status(&n), "sent"), 40);
}

/// A second SIGTERM quits at once, even with every connection waiting for a reply; the rows
/// in flight (at most one per connection) are reported unknown by the next run.
#[test]
fn hardening_9_a_second_sigterm_quits_at_once() {
    let server = Server::python("stall");
    let all = users("stall", 20);
    let n = newsletter(&all, "timeout_seconds = 60\n");
    let mut c = n.command(&["send", SLUG, "--yes"]);
    c.env("GAZETTE_SMTP_URL", server.url())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    let pid = child.id().to_string();
    crate::support::tool("kill", &["-TERM", &pid]).ok();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first SIGTERM waits for the messages in flight"
    );
    crate::support::tool("kill", &["-TERM", &pid]).ok();
    let start = Instant::now();
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "a second SIGTERM did not quit at once"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(130));
    let sending = count(&status(&n), "sending");
    assert!((1..=4).contains(&sending), "{sending} rows in flight");
}

/// The `reply` the ledger keeps for each address with a problem.
fn replies(s: &Value) -> HashMap<String, String> {
    s["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["email"].as_str().unwrap().to_string(), p.to_string()))
        .collect()
}

/// A relay that sends its reply to the final dot one byte a second never trips a timeout
/// applied per read; the command's deadline cuts it, and the message is unknown (it was
/// stored) rather than holding the run for a minute per message.
#[test]
fn hardening_6_a_relay_answering_one_byte_a_second_meets_the_commands_deadline() {
    let server = Server::python("drip");
    let mut all = users("ok", 10);
    all.extend(users("drip", 3));
    let n = newsletter(&all, "timeout_seconds = 2\n");
    let start = Instant::now();
    send(&n, &server, &[]).ok();
    // Without a deadline: 60 s for each of the three.
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    let s = status(&n);
    assert_eq!((count(&s, "sent"), count(&s, "unknown")), (10, 3), "{s}");
    for (email, p) in replies(&s) {
        assert!(email.starts_with("drip"), "{p}");
        assert!(
            p.contains("the relay did not answer within 2 s after the final dot"),
            "{p}"
        );
    }
}

/// A reply of 100,000 `250-` continuation lines is cut off at a size bound at once, instead
/// of taking lettre ~10 s per message to parse; the recipient is deferred and delivered on
/// the next attempt, exactly once.
#[test]
fn hardening_6_an_endless_reply_is_cut_off_at_a_size_bound() {
    let server = Server::python("long");
    let mut all = users("ok", 10);
    all.extend(users("long", 5));
    let n = newsletter(&all, "");
    let start = Instant::now();
    send(&n, &server, &[]).ok();
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    let s = status(&n);
    assert_eq!(count(&s, "sent"), 15, "{s}");
    let accepted = server.accepted();
    for a in &all {
        assert_eq!(accepted.get(a).map(Vec::len), Some(1), "{a}");
    }
    for a in users("long", 5) {
        assert_eq!(server.rcpt_attempts(&a), 2, "{a}");
    }
}

/// A timeout is said as such, not as "Resource temporarily unavailable (os error 11)".
#[test]
fn hardening_11_a_timeout_reads_the_relay_did_not_answer_within_n_s() {
    let server = Server::python("stall");
    let mut all = users("ok", 3);
    all.extend(users("stall", 1));
    let n = newsletter(&all, "timeout_seconds = 1\n");
    let out = send(&n, &server, &[]).ok();
    assert!(!out.stderr.contains("os error"), "{}", out.stderr);
    let s = status(&n);
    let r = replies(&s);
    let p = &r["stall00000@example.org"];
    assert!(
        p.contains("the relay did not answer within 1 s after the final dot"),
        "{p}"
    );
    assert!(!p.contains("os error") && !p.contains("temporarily"), "{p}");
}

/// A relay whose greeting comes one byte a second: the connection's deadline cuts it, and
/// the run stops saying so, instead of waiting for ever.
#[test]
fn hardening_6_a_greeting_sent_one_byte_a_second_meets_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let script = r#"
import socket, sys, threading, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
def drip(c):
    try:
        for b in b"220 " + b"x" * 300 + b"\r\n":
            c.send(bytes([b]))
            time.sleep(1)
    except OSError:
        pass
end = time.time() + 120
s.settimeout(1)
while time.time() < end:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    threading.Thread(target=drip, args=(c,), daemon=True).start()
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let server = Server {
        child,
        port,
        out: dir.path().join("unused"),
        _dir: dir,
    };
    let n = newsletter(&users("r", 5), "timeout_seconds = 2\n");
    let start = Instant::now();
    let out = send(&n, &server, &[]).code(1);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert!(
        out.stderr.contains("the relay did not answer within 2 s"),
        "{}",
        out.stderr
    );
    let s = status(&n);
    assert_eq!(count(&s, "sent") + count(&s, "sending"), 0, "{s}");
}
