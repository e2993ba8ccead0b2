//! `gazette send` and `gazette serve` on one database at once (issue 9, item 7): one-click
//! unsubscribes answered while a send of 3,000 runs stop every message to those addresses that
//! the send had not yet handed to SMTP.
//!
//! When is a message "handed to SMTP"? When its `sending` ledger row commits; the row's
//! transaction first checks that the subscriber is still active. With one connection, the
//! send starts on a recipient only after the sink answered the command before that
//! recipient's MAIL (the previous message's final dot, or RSET, or EHLO), so a 200 that came
//! back before the sink logged that command was committed before the row could be: such an
//! address must have no message. That is what the test checks, against the sink's own clock.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::{Killed, Newsletter, Serve, exit_within, free_port, repo, wait_until};

const SLUG: &str = "2023-03-papers";
const LIST_ID: &str = "papers.digest.example.org";
const SUBSCRIBERS: usize = 3000;
const UNSUBSCRIBES: usize = 300;
const THREADS: usize = 6;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Waits (at most 30 s) for the first line of a child's standard output.
fn first_line(child: &mut Child) -> String {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the server starts within 30 s")
}

fn address(i: usize) -> String {
    format!("reader{i:05}@example.org")
}

/// One RFC 8058 POST on a fresh connection; returns the status code and the moment its
/// status line arrived.
fn one_click(port: u16, token: &str) -> (u16, f64) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("serve accepts");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = "List-Unsubscribe=One-Click";
    write!(
        s,
        "POST /unsubscribe?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(s);
    let mut status = String::new();
    reader.read_line(&mut status).expect("a status line");
    let at = now();
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, at)
}

struct Event {
    t: f64,
    ev: String,
    rcpt: Option<String>,
}

fn sink_log(path: &std::path::Path) -> Vec<(u64, Event)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["conn"].as_u64().unwrap(),
                Event {
                    t: v["t"].as_f64().unwrap(),
                    ev: v["ev"].as_str().unwrap().to_string(),
                    rcpt: v["rcpt"].as_str().map(str::to_lowercase),
                },
            )
        })
        .collect()
}

#[test]
fn unsubscribes_during_a_send_stop_every_message_not_yet_handed_to_smtp() {
    let n = Newsletter::sample();
    let toml = n.read("gazette.toml");
    let one = toml.replace("concurrency = 4", "concurrency = 1");
    assert_ne!(toml, one, "the sample's [smtp] concurrency moved");
    n.write("gazette.toml", one);
    let mut csv = String::from("email,name\n");
    for i in 0..SUBSCRIBERS {
        csv.push_str(&format!("{},\n", address(i)));
    }
    n.write("list.csv", csv);
    let list = n.path().join("list.csv");
    n.gazette(&["subscribers", "import", list.to_str().unwrap()])
        .ok();
    n.gazette(&["publish", "-q"]).ok();

    // The sink, slowed by 2 ms a message.
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("sink.jsonl");
    let smtp_port = free_port();
    let mut sink = std::process::Command::new("python3")
        .arg(repo().join("tests/py/timed_sink.py"))
        .arg(smtp_port.to_string())
        .arg(&log_path)
        .arg("2")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs");
    assert_eq!(
        first_line(&mut sink).trim(),
        "ready",
        "pip install aiosmtpd"
    );
    let _sink = Killed(sink);

    let serve = Serve::start(&n, &["-q"]);
    let http_port = serve.port;

    let mut send = n
        .command(&["send", SLUG, "--yes"])
        .env("GAZETTE_SMTP_URL", format!("smtp://127.0.0.1:{smtp_port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gazette send starts");
    // Unsubscribe once the send is under way (its first page of recipients is read).
    let under_way = wait_until(Duration::from_secs(60), Duration::from_millis(10), || {
        if sink_log(&log_path).iter().any(|(_, e)| e.ev == "msg") {
            return true;
        }
        assert!(
            send.try_wait().unwrap().is_none(),
            "the send ended before its first message"
        );
        false
    });
    assert!(under_way, "no message within 60 s");

    // Every tenth reader, in a scattered order, over THREADS connections at a time.
    let secret = gazette::token::Secret::new("test-secret-not-for-production");
    let targets: Vec<usize> = (0..UNSUBSCRIBES)
        .map(|k| (k * 97 % UNSUBSCRIBES) * 10 + 5)
        .collect();
    let answers: Vec<(usize, u16, f64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = targets
            .chunks(UNSUBSCRIBES / THREADS)
            .map(|chunk| {
                let secret = &secret;
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for &i in chunk {
                        let (code, at) = one_click(http_port, &secret.token(LIST_ID, &address(i)));
                        out.push((i, code, at));
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });

    let status = exit_within(&mut send, Duration::from_secs(240))
        .unwrap_or_else(|| panic!("the send did not finish within 240 s"));
    let mut stderr = String::new();
    send.stderr.take().unwrap().read_to_string(&mut stderr).ok();
    assert!(status.success(), "send failed: {stderr}");

    // Every POST answered 200, and recorded.
    assert_eq!(answers.len(), UNSUBSCRIBES);
    for (i, code, _) in &answers {
        assert_eq!(*code, 200, "POST for {}", address(*i));
    }
    let listing = n.gazette(&["subscribers", "list"]).ok().stdout;
    let statuses: HashMap<&str, &str> = listing
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?, w.next()?))
        })
        .collect();
    for &i in &targets {
        assert_eq!(
            statuses.get(address(i).as_str()).copied(),
            Some("unsubscribed"),
            "{}",
            address(i)
        );
    }
    let active = n.gazette(&["subscribers", "count"]).ok().stdout;
    assert_eq!(active.trim(), (SUBSCRIBERS - UNSUBSCRIBES).to_string());

    // When the send reached each address: the sink's time for the command before its MAIL.
    let events = sink_log(&log_path);
    let mut by_conn: HashMap<u64, Vec<&Event>> = HashMap::new();
    for (c, e) in &events {
        by_conn.entry(*c).or_default().push(e);
    }
    let mut reached: HashMap<String, f64> = HashMap::new();
    let mut delivered: HashMap<String, usize> = HashMap::new();
    let mut reset: HashMap<String, usize> = HashMap::new();
    for list in by_conn.values() {
        for (k, e) in list.iter().enumerate() {
            let Some(rcpt) = &e.rcpt else { continue };
            match e.ev.as_str() {
                "rcpt" => {
                    assert!(k >= 2 && list[k - 1].ev == "mail", "RCPT without MAIL");
                    reached.entry(rcpt.clone()).or_insert(list[k - 2].t);
                    if list.get(k + 1).is_some_and(|next| next.ev == "rset") {
                        *reset.entry(rcpt.clone()).or_default() += 1;
                    }
                }
                "msg" => *delivered.entry(rcpt.clone()).or_default() += 1,
                _ => {}
            }
        }
    }
    for (rcpt, copies) in &delivered {
        assert_eq!(*copies, 1, "{rcpt} got {copies} messages");
    }
    let mut before_reached = 0;
    let mut late_but_sent = 0;
    for (i, _, answered) in &answers {
        let a = address(*i);
        let reached_at = reached.get(&a).copied().unwrap_or(f64::INFINITY);
        if *answered < reached_at {
            before_reached += 1;
            assert!(
                !delivered.contains_key(&a),
                "{a}: unsubscribe answered at {answered:.6}, the send reached it at \
                 {reached_at:.6} and still handed the message to SMTP"
            );
        } else if delivered.contains_key(&a) {
            late_but_sent += 1;
        }
    }
    let skipped_at_rcpt = targets
        .iter()
        .filter(|&&i| reset.contains_key(&address(i)))
        .count();
    eprintln!(
        "{before_reached} answered before the send reached them, {skipped_at_rcpt} of them \
         skipped at RCPT, {late_but_sent} sent before their unsubscribe"
    );
    // The race really happened: many answers came before the send got there, some of those
    // addresses were already in the send's page of recipients (RCPT then RSET), and the
    // others were left out of a later page.
    assert!(
        before_reached >= 100,
        "only {before_reached} before the send"
    );
    assert!(
        skipped_at_rcpt >= 10,
        "only {skipped_at_rcpt} skipped after their page was read"
    );
    for (rcpt, _) in reset.iter() {
        assert!(!delivered.contains_key(rcpt), "{rcpt} was reset, then sent");
    }

    // The ledger agrees with the sink, and records nothing for a skipped reader.
    let ledger: Value =
        serde_json::from_str(&n.gazette(&["status", SLUG, "--json"]).ok().stdout).unwrap();
    let sent = ledger["counts"]["sent"].as_u64().unwrap() as usize;
    assert_eq!(sent, delivered.len(), "{ledger}");
    assert_eq!(
        sent,
        SUBSCRIBERS - (UNSUBSCRIBES - late_but_sent),
        "{ledger}"
    );
    for state in [
        "failed", "bounced", "deferred", "sending", "unknown", "pending",
    ] {
        assert_eq!(ledger["counts"][state], 0, "{state}: {ledger}");
    }
    let skipped = UNSUBSCRIBES - late_but_sent;
    assert!(
        stderr.contains(&format!(
            "; {skipped} skipped (unsubscribed during the run)"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("not attempted"), "{stderr}");
}
