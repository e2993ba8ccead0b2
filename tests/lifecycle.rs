//! A newsletter's life: `init` then `publish` out of the box, `new` drafts, scheduled and draft
//! issues kept out of every output.

use crate::bad_input::assert_feeds_valid;
use crate::support::Newsletter;

#[test]
fn init_then_publish_works_and_check_warns_about_the_placeholder() {
    let n = Newsletter::empty();
    n.gazette(&["init"]).ok();
    let check = n.gazette_here(&["check"]).ok();
    assert!(
        check.stderr.contains(
            "gazette.toml:7:12: warning: base_url is still the placeholder from `gazette init`"
        ),
        "{}",
        check.stderr
    );
    assert!(
        check.stderr.contains("  = help: set newsletter.base_url"),
        "{}",
        check.stderr
    );
    assert!(
        check
            .stderr
            .ends_with("check passed: 0 errors, 1 warning(s)\n"),
        "{}",
        check.stderr
    );
    n.gazette(&["publish"]).ok();
    for file in [
        "feeds/index.html",
        "feeds/welcome/index.html",
        "feeds/style.css",
    ] {
        assert!(n.exists(file), "{file}");
    }
    assert_feeds_valid(&n, "init");
    // init refuses to run twice.
    let again = n.gazette(&["init"]).code(1);
    assert!(again.stderr.contains("exists already"), "{}", again.stderr);
}

#[test]
fn new_writes_a_draft_that_parses_and_is_not_published() {
    let n = Newsletter::sample();
    n.gazette(&["new", "April: \"Quotes\" & 中文"]).ok();
    let path = "issues/april-quotes.md";
    let text = n.read(path);
    assert!(text.contains("draft = true"), "{text}");
    // 2026-01-01T00:00:00Z is 08:00 in Shanghai, the newsletter's zone.
    assert!(text.contains("date = 2026-01-01T08:00:00+08:00"), "{text}");
    assert!(
        text.contains("id = \"tag:digest.example.org,2026-01-01:april-quotes\""),
        "{text}"
    );
    let check = n.gazette_here(&["check"]).ok();
    assert!(!check.stderr.contains("april-quotes"), "{}", check.stderr);
    n.gazette(&["publish"]).ok();
    assert!(!n.exists("feeds/april-quotes/index.html"));
    assert!(!n.read("feeds/atom.xml").contains("april-quotes"));

    // A second `new` with the same title does not overwrite the first, nor silently pick
    // another slug: it says how to choose one.
    let again = n.gazette(&["new", "April: \"Quotes\" & 中文"]).code(1);
    assert!(
        again.stderr.contains("april-quotes.md already exists")
            && again.stderr.contains("--slug april-quotes-2"),
        "{}",
        again.stderr
    );
    n.gazette(&[
        "new",
        "April: \"Quotes\" & 中文",
        "--slug",
        "april-quotes-2",
    ])
    .ok();
    assert!(n.exists("issues/april-quotes-2.md"));

    // Taken out of draft, it is published with the title as typed.
    n.write(path, text.replace("draft = true", "draft = false"));
    n.gazette(&["publish"]).ok();
    assert!(n.exists("feeds/april-quotes/index.html"));
    let json: serde_json::Value = serde_json::from_str(&n.read("feeds/feed.json")).unwrap();
    assert_eq!(json["items"][0]["title"], "April: \"Quotes\" & 中文");
}

#[test]
fn new_with_a_chinese_title_uses_the_date_and_a_short_hash_as_slug() {
    let n = Newsletter::sample();
    let run = n.gazette(&["new", "八月论文"]).ok();
    let made: Vec<String> = std::fs::read_dir(n.path().join("issues"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with("2026-01-01-"))
        .collect();
    assert_eq!(made.len(), 1, "{made:?} {}", run.stderr);
    assert_eq!(
        made[0].len(),
        "2026-01-01-".len() + 6 + ".md".len(),
        "{made:?}"
    );
    // A second Chinese title the same day gets a slug of its own.
    n.gazette(&["new", "九月论文"]).ok();
    n.gazette_here(&["check"]).ok();
}

#[test]
fn new_with_a_300_character_title_makes_a_short_slug() {
    let n = Newsletter::sample();
    let title = "Notes ".repeat(50);
    n.gazette(&["new", &title]).ok();
    let made: Vec<String> = std::fs::read_dir(n.path().join("issues"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with("notes-"))
        .collect();
    assert_eq!(made.len(), 1, "{made:?}");
    assert!(made[0].len() <= 63, "{made:?}");
}

#[test]
fn scheduled_issues_wait_for_their_date() {
    let n = Newsletter::sample();
    n.write(
        "issues/future.md",
        "+++\ntitle = \"Next month\"\ndate = 2026-02-01T09:00:00+08:00\n+++\n\nSoon.\n",
    );
    let run = n.gazette(&["publish", "--json"]).ok();
    assert!(run.stdout.contains("\"scheduled\":1"), "{}", run.stdout);
    assert!(!n.exists("feeds/future/index.html"));
    for file in ["rss.xml", "atom.xml", "feed.json", "index.html"] {
        assert!(
            !n.read(&format!("feeds/{file}")).contains("Next month"),
            "{file}"
        );
    }
    let named = n.gazette(&["publish", "future"]).code(1);
    assert!(
        named
            .stderr
            .contains("scheduled for 2026-02-01T09:00:00+08:00"),
        "{}",
        named.stderr
    );

    // One second after its date (01:00:01 UTC), it is out.
    let run = n
        .command(&["publish"])
        .env("GAZETTE_NOW", "2026-02-01T01:00:01Z")
        .output()
        .unwrap();
    assert!(run.status.success());
    assert!(n.exists("feeds/future/index.html"));
    assert!(n.read("feeds/atom.xml").contains("Next month"));
}

#[test]
fn drafts_are_never_published_even_by_name() {
    let n = Newsletter::sample();
    n.gazette(&["publish"]).ok();
    let everything: String = n
        .snapshot("feeds")
        .into_iter()
        .map(|(_, b)| String::from_utf8_lossy(&b).into_owned())
        .collect();
    assert!(
        !everything.contains("七月论文"),
        "the sample's draft leaked"
    );
    let named = n.gazette(&["publish", "2023-07-draft"]).code(1);
    assert!(named.stderr.contains("is a draft"), "{}", named.stderr);
    let unknown = n.gazette(&["publish", "nope"]).code(1);
    assert!(
        unknown.stderr.contains("no issue `nope`"),
        "{}",
        unknown.stderr
    );
}

/// An issue taken back to draft (or rescheduled) after it was published loses its page too;
/// otherwise the "unpublished" issue stays online.
#[test]
fn unpublishing_an_issue_removes_its_page() {
    let n = Newsletter::sample();
    n.gazette(&["publish"]).ok();
    assert!(n.exists("feeds/2023-06-one-figure/index.html"));
    let text = n
        .read("issues/2023-06-one-figure.md")
        .replace("number = 6\n", "number = 6\ndraft = true\n");
    n.write("issues/2023-06-one-figure.md", text);
    let run = n.gazette(&["publish", "--json"]).ok();
    // Its page, and the image only it showed.
    assert!(run.stdout.contains("\"removed\":2"), "{}", run.stdout);
    assert!(!n.exists("feeds/images/consistency-sampling.png"));
    assert!(
        !n.exists("feeds/2023-06-one-figure"),
        "the draft's page is still online"
    );
    assert!(!n.read("feeds/rss.xml").contains("2023-06-one-figure"));
    // The neighbour no longer links to it.
    assert!(
        !n.read("feeds/2023-05-reading-notes/index.html")
            .contains("2023-06-one-figure")
    );
    // A page the editor put there by hand is not gazette's to remove.
    n.write("feeds/about/index.html", "<p>about</p>");
    n.gazette(&["publish"]).ok();
    assert!(n.exists("feeds/about/index.html"));
}

/// Markdown under issues/ is never copied to feeds/ as an attachment: not in a subfolder, not
/// as an editor's backup, or a draft's text would be online.
#[test]
fn markdown_and_backups_under_issues_are_not_copied_to_feeds() {
    let n = Newsletter::sample();
    let draft = n.read("issues/2023-07-draft.md");
    n.write("issues/2023-07-draft.md~", &draft);
    n.write("issues/2023-07-draft.md.bak", &draft);
    n.write("issues/old/2023-07-draft.md", &draft);
    n.gazette(&["publish"]).ok();
    let everything: Vec<String> = n
        .snapshot("feeds")
        .into_iter()
        .map(|(p, _)| p.to_string_lossy().into_owned())
        .collect();
    assert!(
        everything.iter().all(|p| !p.contains("draft")),
        "{everything:?}"
    );
    // Real attachments still are.
    assert!(n.exists("feeds/images/consistency-sampling.png"));
}

/// A symbolic link under issues/ that points back up is followed once, not forever.
#[cfg(unix)]
#[test]
fn a_link_loop_under_issues_does_not_stop_publish() {
    let n = Newsletter::sample();
    std::os::unix::fs::symlink("..", n.path().join("issues/images/up")).unwrap();
    n.gazette(&["publish"]).ok();
    assert!(n.exists("feeds/images/consistency-sampling.png"));
}

// Secrets never live in a tracked file: in a git work tree, `check` fails while `.gazette/`
// (the unsubscribe key, the subscriber list) is not ignored, and `init` adds the line to an
// existing .gitignore.
#[test]
fn check_fails_while_the_secrets_directory_is_not_git_ignored() {
    let n = Newsletter::sample();
    crate::support::tool("git", &["init", "-q", n.path().to_str().unwrap()]).ok();
    n.write(".gitignore", "target/\n");
    let run = n.gazette(&["check"]).code(1);
    assert!(
        run.stderr
            .contains(".gitignore: error: `.gazette/` is not git-ignored"),
        "{}",
        run.stderr
    );
    n.write(".gitignore", "target/\n.gazette/\n");
    n.gazette(&["check"]).ok();

    let fresh = Newsletter::empty();
    crate::support::tool("git", &["init", "-q", fresh.path().to_str().unwrap()]).ok();
    fresh.write(".gitignore", "target/\n");
    fresh.gazette(&["init"]).ok();
    assert_eq!(fresh.read(".gitignore"), "target/\noutbox/\n.gazette/\n");
    fresh.gazette(&["check"]).ok();
}

// A DKIM key that does not load is found by `check`, not halfway into `send`; its contents
// are never printed.
#[test]
fn check_reports_a_dkim_key_that_does_not_load_without_printing_it() {
    let n = Newsletter::sample();
    let settings = n.read("gazette.toml")
        + "\n[dkim]\ndomain = \"digest.example.org\"\nselector = \"s1\"\nprivate_key_file = \".gazette/dkim.pem\"\n";
    n.write("gazette.toml", settings);
    let run = n.gazette(&["check"]).code(1);
    assert!(
        run.stderr
            .contains("gazette.toml: error: [dkim]: cannot read the DKIM key"),
        "{}",
        run.stderr
    );
    n.write(
        ".gazette/dkim.pem",
        "-----BEGIN PRIVATE KEY-----\nSECRETBYTES\n-----END PRIVATE KEY-----\n",
    );
    let run = n.gazette(&["check"]).code(1);
    assert!(run.stderr.contains("[dkim]"), "{}", run.stderr);
    assert!(!run.stderr.contains("SECRETBYTES"), "{}", run.stderr);
}
