//! Rendering hostile or huge Markdown (issue 7, items 5 and 7): nesting is bounded, time is
//! linear in one issue's size, and raw HTML cannot run script anywhere gazette writes it.

use std::time::{Duration, Instant};

use crate::support::{Newsletter, Run};

/// An issue file with front matter and this body.
fn issue(title: &str, body: &str) -> String {
    format!(
        "+++\ntitle = \"{title}\"\ndate = 2023-01-02\nid = \"tag:example.org,2023:{title}\"\n+++\n\n{body}\n"
    )
}

/// Runs gazette, killing it after `limit` so a stall fails the test instead of hanging it.
fn within(n: &Newsletter, limit: Duration, args: &[&str]) -> (Run, Duration) {
    let start = Instant::now();
    let run = n.gazette_timeout(limit.as_secs(), args);
    let took = start.elapsed();
    assert_ne!(run.status, 124, "gazette {args:?} stalled: {}", run.stderr);
    (run, took)
}

#[test]
fn hardening_5_a_deep_list_is_flattened_with_a_located_warning() {
    let n = Newsletter::sample_without_issues();
    n.write(
        "issues/deep.md",
        issue("deep", &format!("{}x", "- ".repeat(5000))),
    );
    let limit = Duration::from_secs(60);
    let (check, _) = within(&n, limit, &["check"]);
    assert_eq!(check.status, 0, "{}", check.stderr);
    let all = format!("{}{}", check.stdout, check.stderr);
    // Body line 1 is the file's line 7; each marker opens a list and an item, so the 17th
    // (column 33) is the first flattened.
    assert!(
        all.contains("issues/deep.md:7:33: warning: nested more than 32 levels deep"),
        "{all}"
    );
    let (publish, _) = within(&n, limit, &["publish"]);
    assert_eq!(publish.status, 0, "{}", publish.stderr);
    let page = n.read("feeds/deep/index.html");
    assert!(page.contains('x'), "the text of the deepest level is kept");
    assert_eq!(
        page.matches("<ul>").count(),
        16,
        "32 levels: 16 lists, 16 items"
    );
    let email = n.read("outbox/deep/email.html");
    assert!(email.matches("<ul").count() <= 16, "{}", email.len());
}

#[test]
fn hardening_5_a_hundred_thousand_nested_quotes_publish_quickly() {
    let n = Newsletter::sample_without_issues();
    n.write(
        "issues/quotes.md",
        issue("quotes", &format!("{} deep", ">".repeat(100_000))),
    );
    let limit = Duration::from_secs(60);
    let (check, took) = within(&n, limit, &["check"]);
    assert_eq!(check.status, 0, "{}", check.stderr);
    assert!(took < Duration::from_secs(20), "check took {took:?}");
    assert!(
        check.stderr.contains("nested more than 32 levels deep")
            || check.stdout.contains("nested more than 32 levels deep")
    );
    let (publish, took) = within(&n, limit, &["publish"]);
    assert_eq!(publish.status, 0, "{}", publish.stderr);
    assert!(took < Duration::from_secs(20), "publish took {took:?}");
    let page = n.read("feeds/quotes/index.html");
    assert_eq!(page.matches("<blockquote>").count(), 32);
    assert!(n.read("outbox/quotes/email.txt").contains("deep"));
}

/// One issue of 300,000 short paragraphs (900 KB, 300,000 line breaks): each line break cost
/// a copy of the whole email part (13 s for a 4 MB issue), now linear.
#[test]
fn hardening_5_one_issue_of_many_lines_publishes_in_linear_time() {
    let n = Newsletter::sample_without_issues();
    n.write("issues/long.md", issue("long", &"a\n\n".repeat(300_000)));
    let (publish, took) = within(&n, Duration::from_secs(120), &["publish"]);
    assert_eq!(publish.status, 0, "{}", publish.stderr);
    assert!(took < Duration::from_secs(60), "publish took {took:?}");
    let email = n.read("outbox/long/email.txt");
    assert!(email.matches("\na\n").count() >= 100_000);
}
