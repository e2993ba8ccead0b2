//! Mutated issue texts (a fixed seed, 300 of them) through the library: `Issue::parse`
//! never panics, and whatever parses publishes to feeds that xmllint accepts.

use std::path::Path;

use gazette::config::Config;
use gazette::issue::{Defaults, Issue};
use gazette::publish::{self, Options};

use crate::support::{Newsletter, repo, tool};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Pieces that have broken parsers and XML writers before.
const TOKENS: &[&str] = &[
    "+++\n",
    "\n",
    "\r\n",
    "\r",
    "]]>",
    "]]",
    "&",
    "&amp;",
    "&#0;",
    "<",
    ">",
    "\"",
    "'",
    "\\",
    "\u{0}",
    "\u{1}",
    "\u{b}",
    "\u{1b}",
    "\u{7f}",
    "\u{85}",
    "\u{FFFE}",
    "\u{FFFF}",
    "\u{D7FF}",
    "\u{202E}",
    "\u{200B}",
    "\u{FEFF}",
    "𝕏",
    "中文",
    "。",
    "[^1]",
    "[^1]: note\n",
    "](",
    "![a](",
    "[x](",
    "(#top)",
    "(../../etc/passwd)",
    "(javascript:alert(1))",
    "(//evil.example/x)",
    "<https://example.com/?a=1&b=2>",
    "http://",
    "mailto:",
    "`",
    "```\n",
    "~~~",
    "|",
    "| a | b |\n|---|---|\n",
    "<img src=\"a.png\">",
    " href='",
    " src=",
    "<a href=x.md>",
    "# ",
    "## 1、",
    "- [ ] ",
    "* ",
    "> ",
    "1. ",
    "<script>",
    "</div>",
    "<!--",
    "-->",
    "<![CDATA[",
    "title = ",
    "date = ",
    "2023-02-30",
    "2023-03-31T25:00:00",
    "9999-12-31T23:59:59Z",
    "0001-01-01",
    "tags = [",
    "]",
    "[extra]\n",
    "id = \"\"",
    "number = -1",
    "draft = true\n",
    "=",
    "{",
    "}",
    "\t",
    "    ",
    "\\u0000",
];

const SEEDS: &[&str] = &[
    // Every front-matter string that reaches a feed, to be mutated too.
    "+++\ntitle = \"T\"\ndate = 2023-03-31\nid = \"tag:x,2023:a\"\nsummary = \"s\"\ntags = [\"t\"]\nauthors = [\"a\"]\nupdated = 2023-04-01\n+++\nb\n",
    "+++\ntitle = \"T\"\ndate = 2023-03-31\n+++\n\nbody\n",
    "+++\ntitle = \"三月\"\ndate = 2023-03-31T09:00:00+08:00\ntags = [\"a\", \"b\"]\nsummary = \"s\"\n+++\n\n## 1、A\n\n[x](a.md) ![i](images/x.png) [^1]\n\n[^1]: n\n\n```\ncode ]]> <\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
];

fn mutate(rng: &mut Rng, text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    // Most mutations land in the body, so most mutants still parse and get published.
    let body = text.find("\n+++\n").map_or(0, |i| i + 5);
    for _ in 0..1 + rng.below(6) {
        let at = if rng.below(5) == 0 || bytes.len() < body {
            rng.below(bytes.len() + 1)
        } else {
            body + rng.below(bytes.len() - body + 1)
        };
        match rng.below(6) {
            0..=2 => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                bytes.splice(at..at, token.iter().copied());
            }
            3 => {
                let end = (at + rng.below(12)).min(bytes.len());
                bytes.drain(at..end);
            }
            4 => {
                // A random byte: often not UTF-8.
                bytes.insert(at, rng.next() as u8);
            }
            _ => {
                let end = (at + rng.below(40)).min(bytes.len());
                let piece = bytes[at..end].to_vec();
                bytes.splice(at..at, piece.repeat(1 + rng.below(3)));
            }
        }
    }
    bytes
}

#[test]
fn mutated_issues_never_panic_and_publish_well_formed_feeds() {
    const CASES: usize = 300;
    let config_path = repo().join("gazette.toml");
    let text = std::fs::read_to_string(&config_path).unwrap();
    let config = Config::parse(&config_path, &text, &repo()).unwrap();
    let defaults = Defaults {
        timezone: config.timezone,
        id_authority: &config.id_authority,
    };
    let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap();
    let out = Newsletter::empty();
    std::fs::create_dir(out.path().join("issues")).unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut feeds = Vec::new();
    let mut parsed = 0;
    for case in 0..CASES {
        let bytes = mutate(&mut rng, SEEDS[case % SEEDS.len()]);
        let path = Path::new("issues/fuzz.md");
        let shown = String::from_utf8_lossy(&bytes).into_owned();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let text = gazette::files::decode_text(path, bytes.clone()).map_err(|d| vec![d])?;
            Issue::parse(path, &text, defaults)
        }));
        let issue = match result {
            Err(_) => panic!("case {case}: Issue::parse panicked on {shown:?}"),
            Ok(Err(diagnostics)) => {
                for d in diagnostics {
                    // Every error renders, and points into the file when it has a place.
                    let _ = d.to_string();
                    assert!(d.is_error(), "case {case}: {d}");
                }
                continue;
            }
            Ok(Ok((issue, _warnings))) => issue,
        };
        parsed += 1;
        let dir = out.path().join(format!("n{case}"));
        std::fs::create_dir_all(dir.join("issues")).unwrap();
        let newsletter = gazette::newsletter::Newsletter {
            dir: dir.clone(),
            config: config.clone(),
            issues: vec![issue],
            now,
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            publish::publish(&newsletter, &Options::default())
        }));
        match result {
            Err(_) => panic!("case {case}: publish panicked on {shown:?}"),
            Ok(Err(e)) => panic!("case {case}: publish failed on {shown:?}: {e:#}"),
            Ok(Ok(_)) => {}
        }
        for file in ["rss.xml", "atom.xml"] {
            feeds.push(dir.join("feeds").join(file).to_str().unwrap().to_string());
        }
        let json = std::fs::read(dir.join("feeds/feed.json")).unwrap();
        serde_json::from_slice::<serde_json::Value>(&json)
            .unwrap_or_else(|e| panic!("case {case}: feed.json: {e} from {shown:?}"));
    }
    // Enough of the mutants parse for the publish half to mean something.
    assert!(parsed > CASES / 4, "only {parsed} of {CASES} parsed");
    for chunk in feeds.chunks(200) {
        let args: Vec<&str> = std::iter::once("--noout")
            .chain(chunk.iter().map(String::as_str))
            .collect();
        let lint = tool("xmllint", &args);
        assert!(
            lint.status == 0 && lint.stderr.is_empty(),
            "xmllint:\n{}",
            lint.stderr
        );
    }
}
