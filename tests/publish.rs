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
