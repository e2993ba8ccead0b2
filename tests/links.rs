//! Issue 11, item 4: links gazette cannot use are reported, located, by `check`, `publish`,
//! `preview` and `send`; in the output they become their plain text, never `href=""` (which a
//! feed reader resolves to the feed itself) or a typo'd scheme; a missing image stops `send`.

use crate::support::Newsletter;

const BROKEN: &str = "+++\ntitle = \"Broken links\"\ndate = 2023-09-01\nid = \"urn:uuid:5f0c7a3e-9b1d-4c47-8f0a-1d2e3f405162\"\n+++\nRead [the typo](hhttps://example.org/a), [the empty one]() and [the reference][r].\n\n[r]: ttps://example.org/c\n\nAnd [a good one](https://example.org/ok).\n";

#[test]
fn a_link_whose_url_cannot_be_used_is_published_as_its_text() {
    let n = Newsletter::sample();
    n.write("issues/2023-09-broken.md", BROKEN);
    let publish = n.gazette_here(&["publish"]).ok();
    // publish prints check's warnings, located.
    assert!(
        publish
            .stderr
            .contains("issues/2023-09-broken.md:6:6: warning: link `hhttps://example.org/a` has an unknown scheme `hhttps:`"),
        "{}",
        publish.stderr
    );
    let page = n.read("feeds/2023-09-broken/index.html");
    let rss = n.read("feeds/rss.xml");
    let email = n.read("outbox/2023-09-broken/email.html");
    for (what, html) in [("page", &page), ("rss", &rss), ("email", &email)] {
        assert!(!html.contains("href=\"\""), "{what} has an empty href");
        assert!(!html.contains("hhttps"), "{what} keeps the typo'd link");
        assert!(!html.contains("ttps://example.org/c"), "{what} keeps ttps:");
        assert!(html.contains("the typo"), "{what} lost the link's text");
        assert!(
            html.contains("the empty one"),
            "{what} lost the link's text"
        );
        assert!(
            html.contains("https://example.org/ok"),
            "{what} lost the good link"
        );
    }
    let text = n.read("outbox/2023-09-broken/email.txt");
    assert!(text.contains("the typo"), "{text}");
    assert!(!text.contains("hhttps"), "{text}");
}

#[test]
fn a_missing_image_stops_send_and_publish_unless_forced() {
    let n = Newsletter::sample();
    n.gazette_here(&["publish"]).ok();
    n.write(
        "issues/2023-09-image.md",
        "+++\ntitle = \"An image\"\ndate = 2023-09-01\nid = \"urn:uuid:0d7b1c55-2f4e-4a8b-9c3d-6e7f8091a2b3\"\n+++\nLook:\n\n![a chart](images/missing.png)\n",
    );
    let publish = n.gazette_here(&["publish"]).code(1);
    assert!(
        publish.stderr.contains(
            "issues/2023-09-image.md:8:1: error: image `images/missing.png` points at nothing gazette publishes"
        ),
        "{}",
        publish.stderr
    );
    assert!(
        !n.exists("feeds/2023-09-image"),
        "publish wrote the page anyway"
    );
    n.gazette_here(&["subscribers", "add", "reader@example.org"])
        .ok();
    // No relay runs: the refusal comes before any connection, and records nothing.
    let send = n.gazette_here(&["send", "2023-09-image", "--yes"]).code(1);
    assert!(
        send.stderr
            .contains("1 error in issues/2023-09-image.md: fix it before sending, or pass --force"),
        "{}",
        send.stderr
    );
    let status = n.gazette_here(&["status", "2023-09-image"]).ok();
    assert!(
        status.stdout.contains("0 sent") && status.stdout.contains("1 pending"),
        "{}",
        status.stdout
    );
    // --force goes past the lint (and then fails to reach the relay that is not there).
    let forced = n.gazette_here(&["send", "2023-09-image", "--yes", "--force"]);
    assert!(
        !forced.stderr.contains("fix it before sending"),
        "{}",
        forced.stderr
    );
}
