//! The feeds `publish` writes, read by independent readers: Python feedparser, sfeed, xmllint
//! and the Rust crate feed-rs. Expected values come from the issue files as written, not from
//! gazette's own parser.

use serde_json::{Value, json};

use crate::support::{Newsletter, python, tool};

/// One entry as the issue file says it should appear.
pub(crate) struct Want<'a> {
    pub(crate) slug: &'a str,
    pub(crate) id: &'a str,
    pub(crate) title: &'a str,
    /// RFC 3339, exactly as the entry's date should be written (offset kept).
    pub(crate) published: &'a str,
    pub(crate) updated: Option<&'a str>,
    pub(crate) tags: &'a [&'a str],
    /// Text (not markup) the parsed HTML content must contain.
    pub(crate) content: &'a [&'a str],
    pub(crate) summary: Option<&'a str>,
}

fn unix(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp()
}

pub(crate) const SAMPLE_BASE: &str = "https://digest.example.org/";
pub(crate) const SAMPLE_TITLE: &str = "论文月刊 Paper Digest";

/// The sample's published issues, newest first.
pub(crate) fn sample_entries() -> Vec<Want<'static>> {
    vec![
        Want {
            slug: "2023-06-one-figure",
            id: "tag:digest.example.org,2023-06-30:2023-06-one-figure",
            title: "一张图看懂一致性模型的采样",
            published: "2023-06-30T20:00:00+08:00",
            updated: None,
            tags: &["扩散模型"],
            content: &["都有 f(x_t, t) = f(x_t', t')"],
            summary: None,
        },
        Want {
            slug: "2023-05-reading-notes",
            id: "tag:digest.example.org,2023-05-12:2023-05-reading-notes",
            title: "Reading notes: how we pick the papers",
            published: "2023-05-12T18:30:00+08:00",
            updated: None,
            tags: &["meta"],
            content: &[
                "you must not fool yourself.\" — Richard Feynman",
                "Benchmarks are enough.",
            ],
            summary: Some(
                "A short English note on how the digest chooses its papers, and a request for suggestions.",
            ),
        },
        Want {
            slug: "2023-04-papers",
            id: "tag:digest.example.org,2023-04-28:2023-04-papers",
            title: "四月论文速读：Segment Anything 与开源对话模型",
            // A bare date is midnight in the newsletter's time zone (Asia/Shanghai).
            published: "2023-04-28T00:00:00+08:00",
            updated: None,
            tags: &["CV", "LLM", "Agents"],
            content: &["Generative Agents: Interactive Simulacra of Human Behavior"],
            summary: Some(
                "四月只读三篇：Segment Anything、Generative Agents 和 Instruction Tuning with GPT-4。",
            ),
        },
        Want {
            slug: "2023-03-papers",
            id: "tag:digest.example.org,2023-03-31:2023-03-papers",
            title: "三月份值得一读的十篇论文",
            published: "2023-03-31T09:00:00+08:00",
            updated: None,
            tags: &["LLM", "多模态", "扩散模型", "机器翻译"],
            content: &["LLaMA: Open and Efficient Foundation Language Models"],
            summary: None,
        },
    ]
}

/// Writes the expectations file for tests/py/check_feeds.py and returns its path.
fn expectations(n: &Newsletter, title: &str, language: &str, base: &str, wants: &[Want]) -> String {
    let entries: Vec<Value> = wants
        .iter()
        .map(|w| {
            let modified = w.updated.unwrap_or(w.published);
            let mut e = json!({
                "id": w.id,
                "title": w.title,
                "url": format!("{base}{}/", w.slug),
                "published": unix(w.published),
                "updated": unix(modified),
                "offset": &w.published[w.published.len() - 6..],
                "tags": w.tags,
                "content_contains": w.content,
            });
            if let Some(s) = w.summary {
                e["summary"] = json!(s);
            }
            e
        })
        .collect();
    let updated = wants
        .iter()
        .map(|w| unix(w.updated.unwrap_or(w.published)))
        .max()
        .unwrap();
    let value = json!({
        "title": title,
        "language": language,
        "base_url": base,
        "updated": updated,
        "entries": entries,
        "forbidden": ["unsubscribe", "view in browser", "{web_url}", "{unsubscribe_url}"],
    });
    let path = n.path().join("expectations.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

/// Every reader accepts the three feeds and finds in them what the issues say.
pub(crate) fn assert_readers_accept(
    n: &Newsletter,
    title: &str,
    language: &str,
    base: &str,
    wants: &[Want],
) {
    let feeds = n.path().join("feeds");
    let xml: Vec<String> = ["rss.xml", "atom.xml"]
        .iter()
        .map(|f| feeds.join(f).to_str().unwrap().to_string())
        .collect();
    let lint = tool("xmllint", &["--noout", &xml[0], &xml[1]]);
    assert_eq!(lint.status, 0, "xmllint: {}", lint.stderr);
    assert!(lint.stderr.is_empty(), "xmllint: {}", lint.stderr);

    let exp = expectations(n, title, language, base, wants);
    let run = python("check_feeds.py", &[feeds.to_str().unwrap(), &exp]);
    assert_eq!(
        run.status, 0,
        "check_feeds.py:\n{}{}",
        run.stdout, run.stderr
    );

    assert_feed_rs_agrees(n, wants, base);
}

/// feed-rs reads all three formats; ids, titles, links and dates agree with each other and
/// with the issues.
fn assert_feed_rs_agrees(n: &Newsletter, wants: &[Want], base: &str) {
    let mut seen = Vec::new();
    for file in ["rss.xml", "atom.xml", "feed.json"] {
        let bytes = std::fs::read(n.path().join("feeds").join(file)).unwrap();
        let feed = feed_rs::parser::parse(&bytes[..])
            .unwrap_or_else(|e| panic!("feed-rs cannot read {file}: {e}"));
        assert_eq!(feed.entries.len(), wants.len(), "{file}");
        let mut rows = Vec::new();
        for (entry, want) in feed.entries.iter().zip(wants) {
            assert_eq!(entry.id, want.id, "{file} id");
            assert_eq!(
                entry.title.as_ref().map(|t| t.content.as_str()),
                Some(want.title),
                "{file} title"
            );
            let url = format!("{base}{}/", want.slug);
            assert!(
                entry.links.iter().any(|l| l.href == url),
                "{file}: no link {url} in {:?}",
                entry.links
            );
            let published = entry.published.unwrap_or_else(|| panic!("{file}: no date"));
            assert_eq!(published.timestamp(), unix(want.published), "{file} date");
            let categories: Vec<&str> = entry.categories.iter().map(|c| c.term.as_str()).collect();
            assert_eq!(categories, want.tags, "{file} categories");
            let body = entry
                .content
                .as_ref()
                .and_then(|c| c.body.clone())
                .unwrap_or_else(|| panic!("{file}: no content for {}", want.id));
            let text = html_text(&body);
            for needle in want.content {
                assert!(
                    text.contains(needle),
                    "{file}: content of {} lacks {needle:?}:\n{text}",
                    want.id
                );
            }
            rows.push((entry.id.clone(), published.timestamp()));
        }
        seen.push(rows);
    }
    assert_eq!(seen[0], seen[1], "RSS and Atom disagree");
    assert_eq!(seen[1], seen[2], "Atom and JSON Feed disagree");
}

#[test]
fn sample_feeds_are_read_by_every_reader() {
    let n = Newsletter::sample();
    n.gazette(&["publish"]).ok();
    assert_readers_accept(&n, SAMPLE_TITLE, "zh-CN", SAMPLE_BASE, &sample_entries());
}

/// Markup characters, CDATA terminators, control characters, offsets and relative links all
/// reach a reader as the editor wrote them.
#[test]
fn hostile_content_survives_intact_in_every_feed() {
    let n = Newsletter::sample_without_issues();
    n.write(
        "issues/markup.md",
        "+++\n\
         title = \"Fish & <chips> ]]> \\u0007bell\"\n\
         date = 2023-09-01T08:00:00-05:00\n\
         updated = 2023-09-03T10:00:00+02:00\n\
         summary = \"x ]]> y &amp; z < w <b>not bold</b>\"\n\
         tags = [\"R&D\", \"<b>\"]\n\
         +++\n\
         Text with ]]> and & and < here, `code ]]> &amp;` and \u{1}\u{FFFE}gone.\n\
         \n\
         ```\n\
         if a < b && c ]]> d {}\n\
         ```\n\
         \n\
         See [the other one](other.md), [a section](#notes), [a file](files/a.pdf),\n\
         ![a figure](images/fig.png) and <https://example.com/?a=1&b=2>.[^n]\n\
         Raw: <img src=\"images/fig.png\" alt=\"raw\" width=\"300\"> <a href='other.md#x'>raw link</a>.\n\
         \n\
         <p align=\"center\"><img src=images/fig.png></p>\n\
         \n\
         [^n]: A footnote with [a link](other.md#top).\n",
    );
    n.write("issues/files/a.pdf", "%PDF");
    n.write("issues/images/fig.png", "png");
    n.write(
        "issues/other.md",
        "+++\ntitle = \"Other\"\ndate = 2023-08-01\n+++\n\nThe other one.\n",
    );
    n.gazette(&["publish"]).ok();
    let wants = [
        Want {
            slug: "markup",
            id: "tag:digest.example.org,2023-09-01:markup",
            title: "Fish & <chips> ]]> bell",
            published: "2023-09-01T08:00:00-05:00",
            updated: Some("2023-09-03T10:00:00+02:00"),
            tags: &["R&D", "<b>"],
            content: &[
                "Text with ]]> and & and < here, code ]]> &amp; and gone.",
                "if a < b && c ]]> d {}",
                "A footnote with a link.",
                "Raw:  raw link.",
            ],
            summary: Some("x ]]> y &amp; z < w <b>not bold</b>"),
        },
        Want {
            slug: "other",
            id: "tag:digest.example.org,2023-08-01:other",
            title: "Other",
            published: "2023-08-01T00:00:00+08:00",
            updated: None,
            tags: &[],
            content: &["The other one."],
            summary: Some("The other one."),
        },
    ];
    assert_readers_accept(&n, SAMPLE_TITLE, "zh-CN", SAMPLE_BASE, &wants);
}

/// Only the newest `limit` issues are in the feeds; the archive page lists them all.
#[test]
fn feeds_hold_the_newest_limit_issues_and_the_archive_all() {
    let n = Newsletter::sample();
    let settings = n.read("gazette.toml").replace("limit = 20", "limit = 2");
    n.write("gazette.toml", settings);
    n.gazette(&["publish"]).ok();
    let wants: Vec<Want> = sample_entries().into_iter().take(2).collect();
    assert_readers_accept(&n, SAMPLE_TITLE, "zh-CN", SAMPLE_BASE, &wants);
    let index = n.read("feeds/index.html");
    for want in sample_entries() {
        assert!(
            index.contains(&format!("href=\"{}/\"", want.slug)),
            "{}",
            want.slug
        );
    }
}

/// An English newsletter served under a path: links, self links and language follow
/// gazette.toml.
#[test]
fn base_url_with_a_path_and_another_language() {
    let n = Newsletter::sample();
    let settings = n
        .read("gazette.toml")
        .replace(
            "base_url = \"https://digest.example.org/\"",
            "base_url = \"https://example.org/papers\"",
        )
        .replace("language = \"zh-CN\"", "language = \"en-GB\"");
    n.write("gazette.toml", settings);
    n.gazette(&["publish"]).ok();
    assert_readers_accept(
        &n,
        SAMPLE_TITLE,
        "en-GB",
        "https://example.org/papers/",
        &sample_entries(),
    );
}

/// With no published issue the feeds are still valid, empty documents.
#[test]
fn no_published_issue_gives_valid_empty_feeds() {
    let n = Newsletter::sample_without_issues();
    n.gazette(&["publish"]).ok();
    let feeds = n.path().join("feeds");
    for file in ["rss.xml", "atom.xml"] {
        let path = feeds.join(file);
        let lint = tool("xmllint", &["--noout", path.to_str().unwrap()]);
        assert_eq!(lint.status, 0, "{file}: {}", lint.stderr);
    }
    for file in ["rss.xml", "atom.xml", "feed.json"] {
        let bytes = std::fs::read(feeds.join(file)).unwrap();
        let feed = feed_rs::parser::parse(&bytes[..]).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(feed.entries.is_empty());
    }
}

/// The text of an HTML fragment: tags dropped, the five XML entities decoded.
fn html_text(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Local times are read in gazette.toml's zone with the offset in force on that day, and
/// every format writes that same instant with that same offset: converted, never relabelled.
#[test]
fn local_times_take_the_zone_offset_of_their_day() {
    let n = Newsletter::sample_without_issues();
    let settings = n
        .read("gazette.toml")
        .replace("Asia/Shanghai", "America/New_York");
    n.write("gazette.toml", settings);
    n.write(
        "issues/winter.md",
        "+++\ntitle = \"Winter\"\ndate = 2023-01-15T09:30:00\n+++\n\nCold.\n",
    );
    n.write(
        "issues/summer.md",
        "+++\ntitle = \"Summer\"\ndate = 2023-07-15T09:30:00\n+++\n\nWarm.\n",
    );
    n.write(
        "issues/utc.md",
        "+++\ntitle = \"UTC\"\ndate = 2023-08-01T23:30:00Z\n+++\n\nZulu.\n",
    );
    n.gazette(&["publish"]).ok();
    let rss = n.read("feeds/rss.xml");
    for date in [
        "Tue, 1 Aug 2023 23:30:00 +0000",
        "Sat, 15 Jul 2023 09:30:00 -0400",
        "Sun, 15 Jan 2023 09:30:00 -0500",
    ] {
        assert!(
            rss.contains(&format!("<pubDate>{date}</pubDate>")),
            "{date}\n{rss}"
        );
    }
    let want = |slug, title, published, content| Want {
        slug,
        id: "",
        title,
        published,
        updated: None,
        tags: &[],
        content,
        summary: None,
    };
    let wants = [
        Want {
            id: "tag:digest.example.org,2023-08-01:utc",
            // Atom and JSON write UTC as +00:00, which is the same instant and offset as Z.
            ..want("utc", "UTC", "2023-08-01T23:30:00+00:00", &["Zulu."])
        },
        Want {
            id: "tag:digest.example.org,2023-07-15:summer",
            ..want("summer", "Summer", "2023-07-15T09:30:00-04:00", &["Warm."])
        },
        Want {
            id: "tag:digest.example.org,2023-01-15:winter",
            ..want("winter", "Winter", "2023-01-15T09:30:00-05:00", &["Cold."])
        },
    ];
    assert_readers_accept(&n, SAMPLE_TITLE, "zh-CN", SAMPLE_BASE, &wants);

    // A local time that the spring clock change skips is an error, not a guess.
    n.write(
        "issues/gap.md",
        "+++\ntitle = \"Gap\"\ndate = 2023-03-12T02:30:00\n+++\n\nNever.\n",
    );
    let run = n.gazette_here(&["check"]).code(1);
    assert!(
        run.stderr.contains(
            "issues/gap.md:3:8: error: date: 2023-03-12T02:30:00 does not exist in America/New_York (a clock change skips it); add an explicit offset"
        ),
        "{}",
        run.stderr
    );
}
