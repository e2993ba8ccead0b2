//! Every kind of bad input from DESIGN.md ("Bad input"), one scenario each, generated here so
//! the broken bytes sit next to what gazette must say about them. For each: `check` names the
//! file, line and column with a hint and exits 1 on errors (0 on warnings only); `publish`
//! never panics, leaves the previous feeds untouched when it fails, and writes feeds every
//! reader accepts when it succeeds.

use crate::support::{Newsletter, Run, python, tool};

/// One scenario: a file to write into a published copy of the sample, and what `check` says.
struct Case {
    name: &'static str,
    /// Path relative to the newsletter.
    file: &'static str,
    bytes: Vec<u8>,
    /// Other files the scenario needs, written first: `(path, bytes)`.
    also: Vec<(&'static str, Vec<u8>)>,
    /// `(first line of the diagnostic, hint)`; the hint is matched as a prefix.
    says: Vec<(&'static str, Option<&'static str>)>,
}

impl Case {
    /// The scenario with one more file.
    fn with_file(mut self, path: &'static str, bytes: &[u8]) -> Case {
        self.also.push((path, bytes.to_vec()));
        self
    }

    fn errors(&self) -> bool {
        self.says.iter().any(|(line, _)| line.contains(": error: "))
    }
}

fn issue(
    name: &'static str,
    file: &'static str,
    text: &[u8],
    says: Vec<(&'static str, Option<&'static str>)>,
) -> Case {
    Case {
        name,
        file,
        bytes: text.to_vec(),
        also: Vec::new(),
        says,
    }
}

/// The sample's gazette.toml with one line replaced.
fn settings(
    name: &'static str,
    from: &str,
    to: &str,
    says: Vec<(&'static str, Option<&'static str>)>,
) -> Case {
    let text = std::fs::read_to_string(crate::support::repo().join("gazette.toml")).unwrap();
    assert!(text.contains(from), "{from}");
    Case {
        name,
        file: "gazette.toml",
        bytes: text.replacen(from, to, 1).into_bytes(),
        also: Vec::new(),
        says,
    }
}

fn cases() -> Vec<Case> {
    vec![
        issue(
            "not UTF-8",
            "issues/gbk.md",
            b"+++\ntitle = \"T\"\ndate = 2023-03-31\n+++\nab\xC4\xE3cd\n",
            vec![(
                "issues/gbk.md:5:3: error: the file is not UTF-8 (byte 0xC4)",
                Some("save the file as UTF-8"),
            )],
        ),
        issue(
            "a BOM and CRLF line endings are read, and lines still count right",
            "issues/bom-crlf.md",
            b"\xEF\xBB\xBF+++\r\ntitle = \"T\"\r\ndate = 2023-02-30\r\n+++\r\nbody\r\n",
            vec![(
                "issues/bom-crlf.md:3:8: error: invalid date, expected day between 01 and 28",
                Some("write a date that exists"),
            )],
        ),
        issue(
            "no front matter",
            "issues/no-front.md",
            b"title = \"T\"\n\nbody\n",
            vec![(
                "issues/no-front.md:1:1: error: the file does not start with front matter",
                Some("start the file with a line `+++`"),
            )],
        ),
        issue(
            "empty file",
            "issues/blank.md",
            b"\n  \n",
            vec![(
                "issues/blank.md: error: the file is empty",
                Some("an issue starts with `+++`"),
            )],
        ),
        issue(
            "YAML front matter",
            "issues/yaml.md",
            b"---\ntitle: T\n---\nbody\n",
            vec![(
                "issues/yaml.md:1:1: error: the file does not start with front matter",
                Some("gazette reads TOML front matter between two `+++` lines, not YAML"),
            )],
        ),
        issue(
            "unterminated front matter",
            "issues/open.md",
            b"+++\ntitle = \"T\"\ndate = 2023-03-31\n\nbody\n",
            vec![(
                "issues/open.md:1:1: error: the front matter opened here is never closed",
                Some("did you forget the closing `+++` line"),
            )],
        ),
        issue(
            "TOML syntax error: the first one is shown, not the parser's follow-up",
            "issues/syntax.md",
            b"+++\ntitle = \"T\nnot toml\ndate = 2023-03-31\n+++\nbody\n",
            vec![(
                "issues/syntax.md:2:11: error: invalid basic string, expected `\"`",
                Some("close the string with a quote on the same line"),
            )],
        ),
        issue(
            "missing title",
            "issues/untitled.md",
            b"+++\ndate = 2023-03-31\n+++\nbody\n",
            vec![(
                "issues/untitled.md:2:1: error: missing field `title`",
                Some("add a line `title = ...` here"),
            )],
        ),
        issue(
            "missing date",
            "issues/undated.md",
            b"+++\ntitle = \"T\"\n+++\nbody\n",
            vec![(
                "issues/undated.md:2:1: error: missing field `date`",
                Some("add a line `date = ...` here"),
            )],
        ),
        issue(
            "empty title",
            "issues/blank-title.md",
            b"+++\ntitle = \" \\n \"\ndate = 2023-03-31\n+++\nbody\n",
            vec![(
                "issues/blank-title.md:2:9: error: the title is empty",
                Some("write the issue's title"),
            )],
        ),
        // Ideographic and no-break spaces, a zero-width space: nothing a reader can see.
        issue(
            "a title of only invisible characters",
            "issues/invisible-title.md",
            "+++\ntitle = \"\u{3000}\u{a0}\u{200b}\u{2060}\"\ndate = 2023-03-31\n+++\nbody\n".as_bytes(),
            vec![(
                "issues/invisible-title.md:2:9: error: the title is empty",
                Some("write the issue's title"),
            )],
        ),
        issue(
            "impossible time of day",
            "issues/late.md",
            b"+++\ntitle = \"T\"\ndate = 2023-03-31T25:00:00+08:00\n+++\nbody\n",
            vec![(
                "issues/late.md:3:8: error: invalid time, expected hour between 00 and 23",
                Some("write a date that exists"),
            )],
        ),
        issue(
            "year zero",
            "issues/year-zero.md",
            b"+++\ntitle = \"T\"\ndate = 0023-03-31\n+++\nbody\n",
            vec![(
                "issues/year-zero.md:3:8: error: date: 0023-03-31 is before 1970, which no newsletter issue is; is the year a typo?",
                Some("write e.g. date = 2023-03-31T09:00:00+08:00"),
            )],
        ),
        issue(
            "a time without a day",
            "issues/timeonly.md",
            b"+++\ntitle = \"T\"\ndate = 09:00:00\n+++\nbody\n",
            vec![(
                "issues/timeonly.md:3:8: error: date: a time without a day; write the date too",
                Some("write e.g. date = 2023-03-31T09:00:00+08:00"),
            )],
        ),
        issue(
            "unknown key",
            "issues/typo.md",
            b"+++\ntitle = \"T\"\ndate = 2023-03-31\nsumary = \"s\"\n+++\nbody\n",
            vec![(
                "issues/typo.md:4:1: error: unknown field `sumary`, expected one of `title`, `date`, `id`, `summary`, `number`, `tags`, `authors`, `draft`, `updated`, `subject`, `extra`",
                Some("did you mean `summary`?"),
            )],
        ),
        issue(
            "mistyped value",
            "issues/mistyped.md",
            b"+++\ntitle = \"T\"\ndate = 2023-03-31\ndraft = \"no\"\n+++\nbody\n",
            vec![(
                "issues/mistyped.md:4:9: error: invalid type: string \"no\", expected a boolean",
                Some("write true or false, without quotes"),
            )],
        ),
        issue(
            "one tag written as a string, not a list",
            "issues/tag-string.md",
            b"+++\ntitle = \"T\"\ndate = 2023-03-31\ntags = \"LLM\"\n+++\nbody\n",
            vec![(
                "issues/tag-string.md:4:8: error: invalid type: string \"LLM\", expected a list",
                Some("write a list in brackets: [\"LLM\"]"),
            )],
        ),
        issue(
            "date in quotes",
            "issues/quoted-date.md",
            b"+++\ntitle = \"T\"\ndate = \"2023-03-31\"\n+++\nbody\n",
            vec![(
                "issues/quoted-date.md:3:8: error: invalid type: string \"2023-03-31\", expected a date",
                Some("write the date without quotes: 2023-03-31"),
            )],
        ),
        issue(
            "number zero",
            "issues/zero.md",
            b"+++\ntitle = \"T\"\ndate = 2023-03-31\nnumber = 0\n+++\nbody\n",
            vec![(
                "issues/zero.md:4:10: error: number must be a positive integer, not 0",
                None,
            )],
        ),
        issue(
            "id that is not a URI",
            "issues/bad-id.md",
            b"+++\ntitle = \"T\"\ndate = 2023-03-31\nid = \"march papers\"\n+++\nbody\n",
            vec![(
                "issues/bad-id.md:4:6: error: id `march papers` is not a URI",
                Some("ids look like \"tag:digest.example.org,2023-03-31:march-papers\""),
            )],
        ),
        issue(
            "id with a character XML cannot carry",
            "issues/fffe-id.md",
            b"+++\ntitle = \"T\"\ndate = 2023-03-31\nid = \"tag:x,2023:a\\uFFFEb\"\n+++\nbody\n",
            vec![(
                "issues/fffe-id.md:4:6: error: id `tag:x,2023:a\u{FFFE}b` is not a URI",
                Some("ids look like"),
            )],
        ),
        issue(
            "duplicate id: a copied issue",
            "issues/2023-03-papers-copy.md",
            b"+++\ntitle = \"Copy\"\ndate = 2023-04-01\nid = \"tag:digest.example.org,2023-03-31:2023-03-papers\"\n+++\nbody\n",
            vec![(
                "issues/2023-03-papers-copy.md:4:6: error: id `tag:digest.example.org,2023-03-31:2023-03-papers` is also used by issues/2023-03-papers.md",
                Some("every issue needs its own id"),
            )],
        ),
        issue(
            "duplicate number: a copied issue kept March's",
            "issues/2023-09-papers.md",
            b"+++\ntitle = \"September\"\ndate = 2023-09-30\nnumber = 3\n+++\nbody\n",
            vec![(
                "issues/2023-09-papers.md:4:10: warning: number 3 is also used by issues/2023-03-papers.md",
                Some("each issue shows its own number; the next free one is 7"),
            )],
        ),
        // Slugs are URLs and must be lowercase, so `A.md` beside `a.md` cannot collide
        // silently on a case-insensitive host: the upper-case name is refused.
        issue(
            "upper-case file name beside its lower-case twin",
            "issues/2023-03-Papers.md",
            b"+++\ntitle = \"T\"\ndate = 2023-03-31\n+++\nbody\n",
            vec![(
                "issues/2023-03-Papers.md: error: `2023-03-Papers` cannot be an issue's slug: the file name becomes its URL",
                Some("rename the file using lowercase letters"),
            )],
        ),
        issue(
            "file over 16 MiB",
            "issues/huge.md",
            &{
                let mut v = b"+++\ntitle = \"T\"\ndate = 2023-03-31\n+++\n".to_vec();
                v.resize(17 * 1024 * 1024, b'x');
                v
            },
            vec![(
                "issues/huge.md: error: file is 17 MiB; gazette reads text files of at most 16 MiB",
                Some("an issue this big is a mistake"),
            )],
        ),
        issue(
            "an issue named like a feed file",
            "issues/rss.xml.md",
            b"+++\ntitle = \"T\"\ndate = 2023-03-31\n+++\nbody\n",
            vec![(
                "issues/rss.xml.md: error: `rss.xml` cannot be an issue's slug: publish writes feeds/rss.xml itself",
                Some("rename the file"),
            )],
        ),
        issue(
            "a file under issues/ that would be copied over a feed",
            "issues/atom.xml",
            b"<feed>not ours</feed>",
            vec![(
                "issues/atom.xml: error: publish would copy this file over feeds/atom.xml, which it writes itself",
                Some("rename or move the file"),
            )],
        )
        // Only linked files are copied: unlinked, it would be left out (with a warning).
        .with_file(
            "issues/linker.md",
            b"+++\ntitle = \"L\"\ndate = 2023-09-01\n+++\n[the feed](atom.xml)\n",
        ),
        issue(
            "a file under issues/ that would be copied over an issue's page",
            "issues/2023-04-papers/index.html",
            b"<p>old page</p>",
            vec![(
                "issues/2023-04-papers/index.html: error: publish would copy this file over feeds/2023-04-papers/index.html, which it writes itself",
                None,
            )],
        )
        .with_file(
            "issues/linker.md",
            b"+++\ntitle = \"L\"\ndate = 2023-09-01\n+++\n[old](2023-04-papers/index.html)\n",
        ),
        // Warnings only: check passes, publish works.
        issue(
            "control characters in the body",
            "issues/ctrl.md",
            b"+++\ntitle = \"T\\u0001\"\ndate = 2023-09-01\n+++\na\x01b\x1bc\xEF\xBF\xBEd\n",
            vec![
                (
                    "issues/ctrl.md:2:9: warning: the title contains line breaks or control characters; they are shown as spaces",
                    None,
                ),
                (
                    "issues/ctrl.md:5:2: warning: the body contains control characters that feeds and email cannot carry; they are removed",
                    None,
                ),
            ],
        ),
        issue(
            "empty body",
            "issues/empty.md",
            b"+++\ntitle = \"T\"\ndate = 2023-09-01\n+++\n",
            vec![(
                "issues/empty.md:5:1: warning: the issue has no body",
                Some("write the issue's text after the closing `+++`"),
            )],
        ),
        issue(
            "relative links and images to missing files",
            "issues/rel.md",
            b"+++\ntitle = \"T\"\ndate = 2023-09-01\n+++\nSee [x](nothing.html) and\n![](img/none.png) and [y](gone.md).\n",
            vec![
                (
                    "issues/rel.md:5:5: warning: link `nothing.html` points at nothing gazette publishes",
                    Some("relative paths are read from issues/"),
                ),
                (
                    "issues/rel.md:6:1: warning: image has no alt text",
                    Some("describe the image between the brackets"),
                ),
                (
                    "issues/rel.md:6:1: error: image `img/none.png` points at nothing gazette publishes",
                    None,
                ),
                (
                    "issues/rel.md:6:23: warning: link `gone.md` points at nothing gazette publishes",
                    None,
                ),
            ],
        ),
        issue(
            "links whose URL gazette cannot use (issue 11, item 4)",
            "issues/urls.md",
            b"+++\ntitle = \"T\"\ndate = 2023-09-01\n+++\n[a](hhttps://example.org/a) and [b]() and [c][r].\n\n[r]: ttps://example.org/c\n\nSee [d](2023-03-paper.md) and [e](javascript:alert(1)).\n",
            vec![
                (
                    "issues/urls.md:5:1: warning: link `hhttps://example.org/a` has an unknown scheme `hhttps:`",
                    Some("did you mean `https`?"),
                ),
                (
                    "issues/urls.md:5:33: warning: link `` has an empty URL",
                    Some("put the address between the parentheses"),
                ),
                (
                    "issues/urls.md:5:43: warning: link `ttps://example.org/c` has an unknown scheme `ttps:`",
                    Some("did you mean `https`?"),
                ),
                (
                    "issues/urls.md:9:5: warning: link `2023-03-paper.md` points at nothing gazette publishes",
                    Some("did you mean `2023-03-papers`?"),
                ),
                (
                    "issues/urls.md:9:31: error: link `javascript:alert(1)` would run script; it is removed",
                    Some("a link cannot run script"),
                ),
            ],
        ),
        settings(
            "base_url without a scheme",
            "base_url = \"https://digest.example.org/\"",
            "base_url = \"digest.example.org\"",
            vec![(
                "gazette.toml:7:12: error: base_url `digest.example.org` is not a URL: relative URL without a base",
                Some("write the absolute URL where feeds/ is served"),
            )],
        ),
        settings(
            "base_url that is not http",
            "base_url = \"https://digest.example.org/\"",
            "base_url = \"file:///srv/digest/\"",
            vec![(
                "gazette.toml:7:12: error: base_url `file:///srv/digest/` is not an http(s) URL",
                None,
            )],
        ),
        settings(
            "base_url with a password, which every feed would publish",
            "base_url = \"https://digest.example.org/\"",
            "base_url = \"https://editor:hunter2@digest.example.org/\"",
            vec![(
                "gazette.toml:7:12: error: base_url `https://editor:hunter2@digest.example.org/` has a user name, password, query or fragment, which every published link would carry",
                Some("write only the scheme, host and path where feeds/ is served"),
            )],
        ),
        settings(
            "base_url with a fragment",
            "base_url = \"https://digest.example.org/\"",
            "base_url = \"https://digest.example.org/digest#top\"",
            vec![(
                "gazette.toml:7:12: error: base_url `https://digest.example.org/digest#top` has a user name, password, query or fragment, which every published link would carry",
                None,
            )],
        ),
        settings(
            "author email that is not an address",
            "email = \"editors@digest.example.org\" }",
            "email = \"editors at digest\" }",
            vec![(
                "gazette.toml:11:38: error: newsletter.author.email `editors at digest` is not an email address",
                Some("write the bare address"),
            )],
        ),
        settings(
            "misspelt time zone",
            "timezone = \"Asia/Shanghai\"",
            "timezone = \"Asia/Shangai\"",
            vec![(
                "gazette.toml:9:12: error: unknown time zone `Asia/Shangai`",
                Some("did you mean `Asia/Shanghai`?"),
            )],
        ),
        settings(
            "language that is not a tag",
            "language = \"zh-CN\"",
            "language = \"Chinese\"",
            vec![(
                "gazette.toml:8:12: error: `Chinese` is not a language tag",
                Some("use a BCP 47 tag"),
            )],
        ),
        settings(
            "unknown settings key",
            "limit = 20",
            "lmit = 20",
            vec![(
                "gazette.toml:15:1: error: unknown field `lmit`, expected `limit`",
                Some("did you mean `limit`?"),
            )],
        ),
        settings(
            "settings TOML syntax error",
            "limit = 20",
            "limit = 20 20",
            vec![("gazette.toml:15:9: error: string values must be quoted, expected literal string", None)],
        ),
    ]
}

fn feeds_untouched(before: &[(std::path::PathBuf, Vec<u8>)], n: &Newsletter, case: &str) {
    let after = n.snapshot("feeds");
    assert!(
        before == after.as_slice(),
        "{case}: a failed publish changed feeds/"
    );
}

/// Feeds xmllint, feedparser, sfeed and feed-rs all accept, with RSS and Atom agreeing with
/// the JSON Feed.
pub(crate) fn assert_feeds_valid(n: &Newsletter, case: &str) {
    let feeds = n.path().join("feeds");
    for file in ["rss.xml", "atom.xml"] {
        let path = feeds.join(file);
        let lint = tool("xmllint", &["--noout", path.to_str().unwrap()]);
        assert!(
            lint.status == 0 && lint.stderr.is_empty(),
            "{case}: xmllint {file}: {}",
            lint.stderr
        );
    }
    for file in ["rss.xml", "atom.xml", "feed.json"] {
        let bytes = std::fs::read(feeds.join(file)).unwrap();
        feed_rs::parser::parse(&bytes[..])
            .unwrap_or_else(|e| panic!("{case}: feed-rs {file}: {e}"));
    }
    let run = python("check_feeds.py", &[feeds.to_str().unwrap()]);
    assert_eq!(
        run.status, 0,
        "{case}: check_feeds.py:\n{}{}",
        run.stdout, run.stderr
    );
}

fn assert_says(run: &Run, case: &Case) {
    assert!(
        !run.stderr.contains("panicked"),
        "{}: panic:\n{}",
        case.name,
        run.stderr
    );
    let lines: Vec<&str> = run.stderr.lines().collect();
    for (first, hint) in &case.says {
        let at = lines
            .iter()
            .position(|l| l == first)
            .unwrap_or_else(|| panic!("{}: no line\n{first}\nin:\n{}", case.name, run.stderr));
        if let Some(hint) = hint {
            // The hint closes the diagnostic: after the source line and caret, if any.
            let block: Vec<&str> = lines[at + 1..]
                .iter()
                .take_while(|l| !l.is_empty())
                .copied()
                .collect();
            assert!(
                block
                    .iter()
                    .any(|l| l.starts_with(&format!("  = help: {hint}"))),
                "{}: no hint `{hint}` under\n{first}\nin:\n{}",
                case.name,
                run.stderr
            );
        }
    }
}

#[test]
fn every_bad_input_is_located_and_never_breaks_the_feeds() {
    // The scenarios are independent: run them side by side; a failing one fails the test with
    // its own message.
    std::thread::scope(|s| {
        for case in cases() {
            s.spawn(move || run_case(&case));
        }
    });
}

fn run_case(case: &Case) {
    let n = Newsletter::sample();
    n.gazette_here(&["publish"]).ok();
    let before = n.snapshot("feeds");
    for (path, bytes) in &case.also {
        n.write(path, bytes);
    }
    n.write(case.file, &case.bytes);

    let check = n.gazette_here(&["check"]);
    assert_says(&check, case);
    let expected_exit = if case.errors() { 1 } else { 0 };
    assert_eq!(
        check.status, expected_exit,
        "{}: check exit\n{}",
        case.name, check.stderr
    );
    if case.errors() {
        assert!(check.stderr.contains("check failed: "), "{}", check.stderr);
    }

    let publish = n.gazette_here(&["publish"]);
    assert!(
        !publish.stderr.contains("panicked"),
        "{}: {}",
        case.name,
        publish.stderr
    );
    if case.errors() {
        assert_eq!(
            publish.status, 1,
            "{}: publish exit\n{}",
            case.name, publish.stderr
        );
        // publish shows the same located error before giving up.
        assert_says(&publish, case);
        feeds_untouched(&before, &n, case.name);
    } else {
        assert_eq!(
            publish.status, 0,
            "{}: publish\n{}",
            case.name, publish.stderr
        );
        assert_feeds_valid(&n, case.name);
    }
}

/// A long issue (2 MiB of Markdown) is nowhere near the limit: it publishes, and readers take
/// it.
#[test]
fn a_two_megabyte_issue_publishes() {
    let n = Newsletter::sample();
    let mut text = String::from("+++\ntitle = \"长文\"\ndate = 2023-09-01\n+++\n\n");
    let paragraph = format!(
        "{}It mixes **English** & CJK.\n\n",
        "这是一段很长的中文段落，用来测试大文件能否顺利发布。".repeat(20)
    );
    while text.len() < 2 * 1024 * 1024 {
        text.push_str(&paragraph);
    }
    n.write("issues/long.md", &text);
    n.gazette_here(&["check"]).ok();
    n.gazette_here(&["publish"]).ok();
    assert_feeds_valid(&n, "2 MiB issue");
    assert!(n.read("feeds/feed.json").len() > 2 * 1024 * 1024);
}

/// Errors in several files are all reported in one run, errors before warnings, and the
/// summary counts them.
#[test]
fn check_reports_every_problem_at_once() {
    let n = Newsletter::sample();
    n.write("issues/a.md", "+++\ntitle = \"T\"\n+++\nbody\n");
    n.write(
        "issues/b.md",
        "+++\ntitle = \"T\"\ndate = 2023-09-01\n+++\n",
    );
    let settings = n.read("gazette.toml").replace("Asia/Shanghai", "Mars/Base");
    n.write("gazette.toml", settings);
    let run = n.gazette_here(&["check"]).code(1);
    let order: Vec<usize> = [
        "gazette.toml:9:12: error:",
        "issues/a.md:2:1: error:",
        "issues/b.md:5:1: warning:",
    ]
    .iter()
    .map(|s| {
        run.stderr
            .find(s)
            .unwrap_or_else(|| panic!("{s} missing:\n{}", run.stderr))
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{}", run.stderr);
    assert!(
        run.stderr
            .ends_with("check failed: 2 error(s), 1 warning(s)\n"),
        "{}",
        run.stderr
    );
}

/// The caret sits under the offending character even after wide CJK characters.
#[test]
fn caret_lines_up_under_chinese_text() {
    let n = Newsletter::sample_without_issues();
    n.write(
        "issues/cjk.md",
        "+++\ntitle = \"三月\"\ndate = 2023-03-31\n\"标签\" = [\"x\"]\n+++\nbody\n",
    );
    let run = n.gazette_here(&["check"]).code(1);
    assert!(
        run.stderr
            .contains("issues/cjk.md:4:1: error: unknown field `标签`"),
        "{}",
        run.stderr
    );
    let run = {
        n.write(
            "issues/cjk.md",
            "+++\ntitle = \"三月\"\ndate = 2023-03-31\n+++\n正文里有一个坏链接 [x](无.html)\n",
        );
        n.gazette_here(&["check"]).code(0)
    };
    let lines: Vec<&str> = run.stderr.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("issues/cjk.md:5:11: warning: link"))
        .unwrap_or_else(|| panic!("{}", run.stderr));
    // "正文里有一个坏链接 " is 10 characters, 19 columns wide.
    assert_eq!(lines[at + 2], "5 | 正文里有一个坏链接 [x](无.html)");
    assert_eq!(lines[at + 3], format!("  | {}^", " ".repeat(19)));
}

#[test]
fn a_directory_that_is_not_a_newsletter_says_so() {
    let n = Newsletter::empty();
    for command in ["check", "publish"] {
        let run = n.gazette_here(&[command]).code(1);
        assert!(
            run.stderr.starts_with(
                "gazette.toml: error: no gazette.toml here: this directory is not a newsletter\n  = help: run `gazette init`"
            ),
            "{command}: {}",
            run.stderr
        );
    }
}

/// One error story: a located problem met deep inside a command prints once, as a
/// diagnostic (no `error:` in front of it, none doubled); an I/O error names its path; a
/// summary of problems already shown carries no prefix of its own.
#[test]
fn each_kind_of_error_prints_once_in_its_own_form() {
    let n = Newsletter::sample();
    // A located problem in a file read mid-command: a template that is not UTF-8.
    n.write("templates/email.css", b"body { color: red; }\n\xff\xfe\n");
    let run = n.gazette(&["preview", "2023-03-papers"]).code(1);
    let first = run.stderr.lines().next().unwrap_or_default();
    assert!(
        first.ends_with("templates/email.css:2:1: error: the file is not UTF-8 (byte 0xFF)"),
        "the diagnostic should lead, located: {}",
        run.stderr
    );
    assert_eq!(
        run.stderr.matches("error:").count(),
        1,
        "one `error:` only: {}",
        run.stderr
    );
    assert!(!run.stderr.starts_with("error: "), "{}", run.stderr);

    // An I/O error names its path.
    let run = n
        .gazette(&["subscribers", "import", "/nonexistent/list.csv"])
        .code(1);
    assert!(
        run.stderr
            .starts_with("error: cannot read /nonexistent/list.csv"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.matches("error:").count(), 1, "{}", run.stderr);

    // A summary after diagnostics already printed: no `error:` of its own.
    n.write("issues/broken.md", "+++\ntitle = \"x\"\n");
    let run = n.gazette(&["publish"]).code(1);
    let last = run.stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.ends_with("nothing was written (run `gazette check` for every problem)"),
        "{}",
        run.stderr
    );
    assert!(!last.starts_with("error:"), "{last}");
}
