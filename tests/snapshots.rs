//! The sample's feeds and pages, byte for byte. A change here is a change every reader sees:
//! review the diff (`cargo insta review`, or read the `.snap.new` files) as a feed reader and a
//! web reader would.

use crate::support::Newsletter;

/// What varies between builds of gazette itself, not between newsletters.
fn redact(text: &str) -> String {
    text.replace(
        &format!("version=\"{}\"", env!("CARGO_PKG_VERSION")),
        "version=\"[VERSION]\"",
    )
}

#[test]
fn sample_outputs() {
    let n = Newsletter::sample();
    n.gazette(&["publish"]).ok();
    for (name, file) in [
        ("rss", "feeds/rss.xml"),
        ("atom", "feeds/atom.xml"),
        ("json_feed", "feeds/feed.json"),
        ("index_html", "feeds/index.html"),
        ("issue_html", "feeds/2023-05-reading-notes/index.html"),
    ] {
        let mut text = redact(&n.read(file));
        if file.ends_with(".html") {
            // maud writes one line; one tag per line makes a reviewable diff.
            text = text.replace("><", ">\n<");
        }
        insta::assert_snapshot!(name, text);
    }
}
