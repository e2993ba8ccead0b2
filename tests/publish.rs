//! `gazette publish` on the sample newsletter.

use crate::support::Newsletter;

#[test]
fn sample_publishes_feeds_and_pages() {
    let n = Newsletter::sample();
    n.gazette(&["publish"]).ok();
    for file in [
        "feeds/rss.xml",
        "feeds/atom.xml",
        "feeds/feed.json",
        "feeds/index.html",
        "feeds/2023-03-papers/index.html",
    ] {
        assert!(n.exists(file), "{file} missing");
    }
    assert!(
        !n.exists("feeds/2023-07-draft/index.html"),
        "a draft was published"
    );
}

#[test]
fn outbox_holds_the_emails_of_the_feed_window_and_of_named_issues() {
    let n = Newsletter::sample();
    let settings = n.read("gazette.toml").replace("limit = 20", "limit = 2");
    n.write("gazette.toml", settings);
    n.gazette(&["publish"]).ok();
    // The two newest published issues may still be sent; older ones are archive.
    for slug in ["2023-05-reading-notes", "2023-06-one-figure"] {
        for file in ["email.html", "email.txt", "message.eml"] {
            assert!(n.exists(&format!("outbox/{slug}/{file}")), "{slug}/{file}");
        }
    }
    assert!(!n.exists("outbox/2023-03-papers"));
    assert!(!n.exists("outbox/2023-07-draft"));
    // Naming an older issue writes its email too.
    n.gazette(&["publish", "2023-03-papers"]).ok();
    assert!(n.exists("outbox/2023-03-papers/message.eml"));
}

/// The repository's feeds/ is what publishing the sample gives: a newcomer's first publish
/// rewrites nothing there, and a generator change shows up here until it is republished.
#[test]
fn the_committed_sample_feeds_are_up_to_date() {
    let n = Newsletter::sample();
    n.gazette(&["publish"]).ok();
    let committed = crate::support::repo().join("feeds");
    let fresh = n.snapshot("feeds");
    assert!(!fresh.is_empty());
    for (rel, bytes) in &fresh {
        let rel = rel.strip_prefix("feeds").unwrap();
        let old = std::fs::read(committed.join(rel)).unwrap_or_default();
        assert!(
            old == *bytes,
            "feeds/{} is stale: run `cargo run -- publish` and commit feeds/",
            rel.display()
        );
    }
}
