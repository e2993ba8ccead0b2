//! A real browser unsubscribes from an email (issue 9): `gazette send` delivers an issue to
//! smtp-sink, headless Chromium (Selenium, Debian's chromedriver) opens the footer's
//! unsubscribe link against `gazette serve` and clicks its button, and the next send skips
//! the reader. Also screenshots the page at 375 and 1024 px wide.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{Killed, Newsletter, Serve, Sink, exit_within, repo};

/// The messages smtp-sink dumped, as (file, text).
fn dumped(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
            (p, text)
        })
        .collect();
    out.sort();
    out
}

/// The dumped messages whose To header names `address`.
fn to(dir: &Path, address: &str) -> Vec<PathBuf> {
    dumped(dir)
        .into_iter()
        .filter(|(_, text)| {
            text.lines()
                .take_while(|l| !l.is_empty())
                .any(|l| l.starts_with("To:") && l.contains(address))
        })
        .map(|(p, _)| p)
        .collect()
}

fn status_of(n: &Newsletter, address: &str) -> String {
    n.gazette(&["subscribers", "list"])
        .ok()
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(address))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_default()
}

fn send(n: &Newsletter, slug: &str, smtp_port: u16) {
    let mut c = n.command(&["send", slug, "--yes"]);
    c.env("GAZETTE_SMTP_URL", format!("smtp://127.0.0.1:{smtp_port}"));
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = exit_within(&mut child, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("send {slug} did not finish within 60 s"));
    assert!(status.success(), "send {slug} failed");
}

#[test]
fn a_browser_unsubscribes_from_the_emails_footer_link_and_the_next_send_skips_the_reader() {
    let n = Newsletter::sample();
    n.gazette(&["subscribers", "add", "reader@example.org"])
        .ok();
    n.gazette(&["subscribers", "add", "other@example.org"]).ok();
    n.gazette(&["publish", "-q"]).ok();

    let sink = Sink::start();
    let smtp_port = sink.port;
    let serve = Serve::start(&n, &["-q"]);
    let http_port = serve.port;

    send(&n, "2023-03-papers", smtp_port);
    let received = to(&sink.dump, "reader@example.org");
    assert_eq!(received.len(), 1, "one message for the reader");

    let shots = PathBuf::from("/tmp");
    let mut browser = Command::new("timeout")
        .arg("120")
        .arg("python3")
        .arg(repo().join("tests/py/browser_unsubscribe.py"))
        .arg(&received[0])
        .arg(format!("http://127.0.0.1:{http_port}"))
        .arg(&shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (pip install selenium)");
    let mut stdin = browser.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = browser.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let _browser = Killed(browser);
    let step = |name: &str| -> Value {
        let line = rx
            .recv_timeout(Duration::from_secs(90))
            .unwrap_or_else(|_| panic!("the browser did not reach `{name}` within 90 s"));
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{line}"));
        assert_eq!(v["step"], name, "{v}");
        v
    };

    // GET: the page with its one button; nothing changed.
    let opened = step("opened");
    assert!(
        opened["link"]
            .as_str()
            .unwrap()
            .starts_with("https://digest.example.org/unsubscribe?token="),
        "{opened}"
    );
    // In the sample's language (zh-CN), the address masked.
    assert_eq!(opened["title"], "退订", "{opened}");
    assert!(
        opened["text"].as_str().unwrap().contains("r***@e***.org"),
        "{opened}"
    );
    assert!(
        !opened["text"]
            .as_str()
            .unwrap()
            .contains("reader@example.org"),
        "{opened}"
    );
    assert_eq!(opened["buttons"], serde_json::json!(["确认退订"]));
    assert_eq!(status_of(&n, "reader@example.org"), "active");

    writeln!(stdin, "click").unwrap();
    let clicked = step("clicked");
    assert!(
        clicked["text"].as_str().unwrap().contains("你已退订"),
        "{clicked}"
    );
    assert_eq!(clicked["title"], "已退订", "{clicked}");
    assert_eq!(status_of(&n, "reader@example.org"), "unsubscribed");
    assert_eq!(status_of(&n, "other@example.org"), "active");

    // The page fits a phone's width and a desktop's (no sideways scrolling), and its button
    // is a styled 44 px target.
    let shots = step("shots");
    for f in shots["files"].as_array().unwrap() {
        assert!(f["button"].as_f64().unwrap() >= 44.0, "a small button: {f}");
        assert_ne!(
            f["background"], "rgb(239, 239, 239)",
            "an unstyled button: {f}"
        );
        assert!(
            f["scroll"].as_u64().unwrap() <= f["inner"].as_u64().unwrap(),
            "wider than the window: {f}"
        );
        assert!(
            std::fs::metadata(f["path"].as_str().unwrap())
                .unwrap()
                .len()
                > 1000,
            "{f}"
        );
    }

    // The next issue reaches the other reader and not this one.
    send(&n, "2023-04-papers", smtp_port);
    assert_eq!(to(&sink.dump, "reader@example.org").len(), 1);
    assert_eq!(to(&sink.dump, "other@example.org").len(), 2);
}
