//! Same input, same bytes: a second publish writes nothing, the working directory does not
//! matter, and an edit rewrites only what depends on it.

use std::path::PathBuf;
use std::time::SystemTime;

use crate::support::{Newsletter, copy_dir};

/// Every output file (feeds/ and outbox/) with its modification time, in path order.
fn mtimes(n: &Newsletter) -> Vec<(PathBuf, SystemTime)> {
    let mut outputs = n.snapshot("feeds");
    outputs.extend(n.snapshot("outbox"));
    outputs
        .into_iter()
        .map(|(rel, _)| {
            let modified = std::fs::metadata(n.path().join(&rel))
                .unwrap()
                .modified()
                .unwrap();
            (rel, modified)
        })
        .collect()
}

/// The outputs whose modification time differs between two [`mtimes`] of the same files.
fn changed_between(
    before: &[(PathBuf, SystemTime)],
    after: &[(PathBuf, SystemTime)],
) -> Vec<String> {
    before
        .iter()
        .zip(after)
        .filter(|(a, b)| a != b)
        .map(|(a, _)| a.0.to_string_lossy().into_owned())
        .collect()
}

fn report(json: &str) -> serde_json::Value {
    serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{e}: {json}"))
}

#[test]
fn second_publish_writes_nothing_and_keeps_every_byte() {
    let n = Newsletter::sample();
    let first = report(&n.gazette(&["publish", "--json"]).ok().stdout);
    // 10 under feeds/, and email.html, email.txt and message.eml for each of 4 issues.
    assert_eq!(first["written"], 22, "{first}");
    let bytes = n.snapshot("feeds");
    let emails = n.snapshot("outbox");
    let times = mtimes(&n);
    // Long enough for any file system's timestamps to tell a rewrite apart.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = report(&n.gazette(&["publish", "--json"]).ok().stdout);
    assert_eq!(second["written"], 0, "{second}");
    assert_eq!(second["unchanged"], 22, "{second}");
    assert!(bytes == n.snapshot("feeds"), "bytes changed");
    assert!(emails == n.snapshot("outbox"), "email bytes changed");
    assert_eq!(times, mtimes(&n), "a file was rewritten");
    let text = n.gazette(&["publish"]).ok().stderr;
    assert!(text.contains(": 0 files written, 22 unchanged"), "{text}");
    // No temporary files left behind.
    assert!(
        bytes
            .iter()
            .all(|(p, _)| !p.to_string_lossy().contains("gazette-tmp")),
        "{bytes:?}"
    );
}

#[test]
fn working_directory_and_dash_c_give_the_same_bytes() {
    let a = Newsletter::sample();
    a.gazette_here(&["publish"]).ok();
    let b = Newsletter::sample();
    // From an unrelated directory, with a relative -C.
    let elsewhere = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_gazette"))
        .current_dir(b.path().parent().unwrap())
        .arg("-C")
        .arg(b.path().file_name().unwrap())
        .arg("publish")
        .env("GAZETTE_NOW", "2026-01-01T00:00:00Z")
        .status()
        .unwrap();
    assert!(status.success());
    let c = Newsletter::sample();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_gazette"))
        .current_dir(elsewhere.path())
        .arg("-C")
        .arg(c.path())
        .arg("publish")
        .env("GAZETTE_NOW", "2026-01-01T00:00:00Z")
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        a.snapshot("feeds") == b.snapshot("feeds"),
        "relative -C differs"
    );
    assert!(
        a.snapshot("feeds") == c.snapshot("feeds"),
        "absolute -C differs"
    );
}

#[test]
fn the_clock_does_not_reach_the_output() {
    let a = Newsletter::sample();
    a.gazette(&["publish"]).ok();
    let b = Newsletter::sample();
    let run = b
        .command(&["publish"])
        .env("GAZETTE_NOW", "2031-07-01T12:34:56+02:00")
        .output()
        .unwrap();
    assert!(run.status.success());
    assert!(a.snapshot("feeds") == b.snapshot("feeds"));
}

#[test]
fn editing_one_issue_rewrites_only_what_shows_it() {
    let n = Newsletter::sample();
    n.gazette(&["publish"]).ok();
    let before = mtimes(&n);
    std::thread::sleep(std::time::Duration::from_millis(20));

    // A body edit below the first paragraph (the summary is in the front matter): the
    // issue's page and the feeds change; the archive and the neighbours' pages do not.
    let text = n.read("issues/2023-04-papers.md") + "\n补记：一处更正。\n";
    n.write("issues/2023-04-papers.md", text);
    let r = report(&n.gazette(&["publish", "--json"]).ok().stdout);
    assert_eq!(r["written"], 7, "{r}");
    let after = mtimes(&n);
    let changed = changed_between(&before, &after);
    assert_eq!(
        changed,
        [
            "feeds/2023-04-papers/index.html",
            "feeds/atom.xml",
            "feeds/feed.json",
            "feeds/rss.xml",
            "outbox/2023-04-papers/email.html",
            "outbox/2023-04-papers/email.txt",
            "outbox/2023-04-papers/message.eml"
        ]
    );

    // A new title shows on the archive and on the neighbours' previous/next links too.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let text = n
        .read("issues/2023-04-papers.md")
        .replace("四月论文速读", "四月论文精读");
    n.write("issues/2023-04-papers.md", text);
    let before = after;
    let r = report(&n.gazette(&["publish", "--json"]).ok().stdout);
    let after = mtimes(&n);
    let changed = changed_between(&before, &after);
    assert_eq!(
        changed,
        [
            "feeds/2023-03-papers/index.html",
            "feeds/2023-04-papers/index.html",
            "feeds/2023-05-reading-notes/index.html",
            "feeds/atom.xml",
            "feeds/feed.json",
            "feeds/index.html",
            "feeds/rss.xml",
            "outbox/2023-04-papers/email.html",
            "outbox/2023-04-papers/email.txt",
            "outbox/2023-04-papers/message.eml"
        ],
        "{r}"
    );
}

#[test]
fn a_copy_of_the_newsletter_elsewhere_publishes_the_same_bytes() {
    let a = Newsletter::sample();
    a.gazette(&["publish"]).ok();
    let b = Newsletter::empty();
    copy_dir(a.path(), b.path());
    std::fs::remove_dir_all(b.path().join("feeds")).unwrap();
    b.gazette(&["publish"]).ok();
    assert!(a.snapshot("feeds") == b.snapshot("feeds"));
}
