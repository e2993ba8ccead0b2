//! The email: what `publish` and `preview` write, checked by Python's `email` package, dkimpy,
//! wcwidth and headless Chromium; the per-recipient messages built through the library.

use std::path::{Path, PathBuf};

use gazette::config::Config;
use gazette::issue::{self, Issue};
use gazette::render::email::{Dkim, Prepared, Recipient, Templates, Transfer};
use gazette::token::Secret;

use crate::support::{Newsletter, python, repo, tool};

const MARCH: &str = "2023-03-papers";

fn published() -> Newsletter {
    let n = Newsletter::sample();
    n.gazette(&["publish"]).ok();
    n
}

/// The sample's settings and one of its issues, read through the library.
fn sample_issue(slug: &str) -> (Config, Issue) {
    let root = repo();
    let config = Config::from_dir(&root).expect("the sample's settings are valid");
    let defaults = issue::Defaults {
        timezone: config.timezone,
        id_authority: &config.id_authority,
    };
    let (issue, _) = Issue::from_file(&root.join("issues").join(format!("{slug}.md")), defaults)
        .expect("the sample issue parses");
    (config, issue)
}

fn secret() -> Secret {
    Secret::new("test-secret-not-for-production")
}

/// Parses messages with tests/py/check_eml.py; fails the test on any problem it reports.
fn check_eml(paths: &[&Path]) -> Vec<serde_json::Value> {
    let args: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();
    let run = python("check_eml.py", &args);
    let parsed: Vec<serde_json::Value> = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("check_eml.py printed no JSON ({e}):\n{}", run.stderr));
    for r in &parsed {
        assert_eq!(
            r["problems"],
            serde_json::json!([]),
            "{}: {:#}",
            r["path"],
            r["problems"]
        );
    }
    assert_eq!(run.status, 0, "{}", run.stderr);
    parsed
}

#[test]
fn every_published_message_parses_without_defects() {
    let n = published();
    let mut paths = Vec::new();
    for slug in [
        MARCH,
        "2023-04-papers",
        "2023-05-reading-notes",
        "2023-06-one-figure",
    ] {
        for file in ["email.html", "email.txt", "message.eml"] {
            assert!(n.exists(&format!("outbox/{slug}/{file}")), "{slug}/{file}");
        }
        paths.push(n.path().join("outbox").join(slug).join("message.eml"));
    }
    assert!(
        !n.exists("outbox/2023-07-draft"),
        "a draft's email was written"
    );
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let parsed = check_eml(&refs);

    let march = &parsed[0];
    assert_eq!(march["subject"], "论文月刊 No. 3：三月份值得一读的十篇论文");
    assert_eq!(march["from_name"], "论文月刊");
    assert_eq!(march["date"], "Fri, 31 Mar 2023 01:00:00 +0000");
    let id = march["message_id"].as_str().unwrap();
    assert!(
        id.starts_with('<') && id.ends_with("@digest.example.org>"),
        "{id}"
    );
    // The parts are exactly the files written next to the message.
    assert_eq!(
        march["text"].as_str().unwrap().replace("\r\n", "\n"),
        n.read(&format!("outbox/{MARCH}/email.txt"))
    );
    assert_eq!(
        march["html"].as_str().unwrap().replace("\r\n", "\n"),
        n.read(&format!("outbox/{MARCH}/email.html"))
    );
    // The same unsubscribe link in the header, the text and the HTML.
    let unsubscribe = march["list_unsubscribe"].as_str().unwrap();
    let url = unsubscribe
        .split(['<', '>'])
        .find(|s| s.starts_with("https://"))
        .unwrap();
    assert!(url.starts_with("https://digest.example.org/unsubscribe?token="));
    assert!(march["text"].as_str().unwrap().contains(url));
    assert!(
        march["html"]
            .as_str()
            .unwrap()
            .contains(&format!("href=\"{url}\""))
    );
    let address = secret().verify(
        "papers.digest.example.org",
        url.split("token=").nth(1).unwrap(),
    );
    assert_eq!(address.as_deref(), Some("reader@digest.example.org"));
}

#[test]
fn the_same_input_gives_the_same_bytes() {
    let a = published();
    let b = published();
    for file in ["message.eml", "email.html", "email.txt"] {
        let rel = format!("outbox/{MARCH}/{file}");
        assert_eq!(a.read(&rel), b.read(&rel), "{file} differs between runs");
    }
    // A second publish leaves every email file alone.
    let before = std::fs::metadata(a.path().join("outbox").join(MARCH).join("message.eml"))
        .unwrap()
        .modified()
        .unwrap();
    a.gazette(&["publish"]).ok();
    let after = std::fs::metadata(a.path().join("outbox").join(MARCH).join("message.eml"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after);
}

#[test]
fn preview_writes_the_same_files_as_publish() {
    let n = published();
    let out = n.path().join("preview-out");
    n.gazette(&["preview", MARCH, "--out", out.to_str().unwrap()])
        .ok();
    for file in ["message.eml", "email.html", "email.txt"] {
        assert_eq!(
            std::fs::read(out.join(file)).unwrap(),
            std::fs::read(n.path().join("outbox").join(MARCH).join(file)).unwrap(),
            "{file}"
        );
    }
    let run = n.gazette(&["preview", "no-such-issue"]).code(1);
    assert!(
        run.stderr.contains("no issue `no-such-issue`"),
        "{}",
        run.stderr
    );
}

#[test]
fn chinese_text_is_wrapped_at_72_columns_without_closing_punctuation_first() {
    let n = published();
    for slug in [MARCH, "2023-04-papers", "2023-06-one-figure"] {
        let path = n.path().join("outbox").join(slug).join("email.txt");
        let run = python("text_width.py", &[path.to_str().unwrap(), "72"]);
        assert_eq!(run.status, 0, "{slug}:\n{}{}", run.stdout, run.stderr);
    }
}

#[test]
fn headers_from_titles_and_names_decode_exactly_and_never_add_a_header() {
    let (config, mut issue) = sample_issue(MARCH);
    // Set past issue.rs's own clean-up: the email must be safe on its own.
    issue.title = "Line one\r\nBcc: victim@example.org".to_string();
    issue.subject = Some("论文 \"quoted\" 🎉 月刊\r\nX-Injected: yes\nand more".to_string());
    let prepared = Prepared::new(&config, &issue, &Templates::builtin(), &secret(), None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let names = [
        Some("张三"),
        Some("Zoë \"The Boss\" O'Brien 🎉"),
        Some("Evil\r\nBcc: victim@example.org"),
        Some("李四, 编辑部 <not an address>"),
        Some("   "),
        None,
    ];
    let mut paths = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let email = format!("reader{i}@example.net");
        let out = prepared
            .message(&Recipient {
                email: &email,
                name: *name,
            })
            .unwrap();
        let path = dir.path().join(format!("{i}.eml"));
        std::fs::write(&path, &out.bytes).unwrap();
        paths.push(path);
    }
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let parsed = check_eml(&refs);
    let expected_headers = [
        "From",
        "Reply-To",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "MIME-Version",
        "Content-Type",
    ];
    for (i, (r, name)) in parsed.iter().zip(names).enumerate() {
        assert_eq!(
            r["subject"],
            "论文 \"quoted\" 🎉 月刊 X-Injected: yes and more"
        );
        assert_eq!(r["headers"], serde_json::json!(expected_headers), "{i}");
        assert_eq!(r["to_address"], format!("reader{i}@example.net"));
        let expected_name = name.map(gazette::text::one_line).unwrap_or_default();
        assert_eq!(r["to_name"], expected_name.as_str(), "recipient {i}");
        let html = r["html"].as_str().unwrap();
        assert!(html.contains("<title>Line one Bcc: victim@example.org</title>"));
    }
}

#[test]
fn message_ids_are_per_issue_and_recipient_and_stable() {
    let (config, march) = sample_issue(MARCH);
    let (_, april) = sample_issue("2023-04-papers");
    let t = Templates::builtin();
    let a = Prepared::new(&config, &march, &t, &secret(), None).unwrap();
    let b = Prepared::new(&config, &april, &t, &secret(), None).unwrap();
    let to = |email| Recipient { email, name: None };
    let one = a.message(&to("one@example.net")).unwrap();
    assert_eq!(
        one.message_id,
        a.message(&to("one@example.net")).unwrap().message_id
    );
    assert_eq!(one.bytes, a.message(&to("one@example.net")).unwrap().bytes);
    assert_ne!(
        one.message_id,
        a.message(&to("two@example.net")).unwrap().message_id
    );
    assert_ne!(
        one.message_id,
        b.message(&to("one@example.net")).unwrap().message_id
    );
    assert!(one.message_id.ends_with("@digest.example.org"));
    assert_eq!(one.to.to_string(), "one@example.net");
    assert_eq!(one.from.to_string(), "digest@digest.example.org");
    assert!(a.message(&to("not an address")).is_err());
}

/// Makes a throwaway key pair with openssl: `(private PEM path, public PEM path)`.
fn keypair(dir: &Path, name: &str, args: &[&str]) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let mut all = vec!["genpkey"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-out", private.to_str().unwrap()]);
    let run = tool("openssl", &all);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let run = tool(
        "openssl",
        &[
            "pkey",
            "-in",
            private.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ],
    );
    assert_eq!(run.status, 0, "{}", run.stderr);
    (private, public)
}

/// The message with one character of its first part's body changed (a letter or digit, so the
/// part still decodes).
fn tamper_body(text: &str) -> String {
    let header_end = text.find("\r\n\r\n").unwrap() + 4;
    let part = header_end
        + text[header_end..]
            .find("Content-Transfer-Encoding")
            .unwrap();
    let body = part + text[part..].find("\r\n\r\n").unwrap() + 4;
    let at = body
        + text[body..]
            .find(|c: char| c.is_ascii_alphanumeric())
            .unwrap();
    let c = text.as_bytes()[at];
    let swapped = if c == b'A' { 'B' } else { 'A' };
    format!("{}{swapped}{}", &text[..at], &text[at + 1..])
}

#[test]
fn dkim_signatures_verify_with_dkimpy_for_rsa_and_ed25519() {
    let (config, issue) = sample_issue(MARCH);
    let dir = tempfile::tempdir().unwrap();
    let keys = [
        (
            "rsa",
            keypair(
                dir.path(),
                "rsa",
                &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            ),
        ),
        (
            "ed25519",
            keypair(dir.path(), "ed25519", &["-algorithm", "ed25519"]),
        ),
    ];
    // The traditional PKCS#1 form of the RSA key loads too.
    let pkcs1 = dir.path().join("rsa1.pem");
    let run = tool(
        "openssl",
        &[
            "rsa",
            "-in",
            keys[0].1.0.to_str().unwrap(),
            "-traditional",
            "-out",
            pkcs1.to_str().unwrap(),
        ],
    );
    assert_eq!(run.status, 0, "{}", run.stderr);
    let keys = [
        keys[0].clone(),
        ("rsa", (pkcs1, keys[0].1.1.clone())),
        keys[1].clone(),
    ];
    for (i, (algorithm, (private, public))) in keys.iter().enumerate() {
        let pem = std::fs::read_to_string(private).unwrap();
        let dkim = Dkim::from_pem("digest.example.org", "gz2026", &pem).unwrap();
        assert_eq!(dkim.algorithm, *algorithm);
        let prepared = Prepared::new(
            &config,
            &issue,
            &Templates::builtin(),
            &secret(),
            Some(&dkim),
        )
        .unwrap();
        // `j.smith` is a name lettre writes bare in To, an obsolete phrase: gazette quotes it,
        // in the message and in what it signs.
        let names = [Some("张三 \"Zhang\""), None, Some("j.smith")];
        for (j, name) in names.into_iter().enumerate() {
            let out = prepared
                .message(&Recipient {
                    email: "reader@example.net",
                    name,
                })
                .unwrap();
            let text = String::from_utf8(out.bytes.clone()).unwrap();
            assert!(text.starts_with("DKIM-Signature: v=1; a="), "{text:.200}");
            let signature = text.split("\r\n\r\n").next().unwrap();
            assert!(
                signature.contains("h=from:to:subject:date:message-id:list-id:list-unsubscribe:list-unsubscribe-post;"),
                "{signature}"
            );
            assert!(signature.contains("c=relaxed/relaxed"), "{signature}");
            let path = dir.path().join(format!("signed-{i}-{j}.eml"));
            std::fs::write(&path, &out.bytes).unwrap();
            let parsed = check_eml(&[&path]);
            assert_eq!(parsed[0]["to_name"].as_str(), Some(name.unwrap_or("")));
            if name == Some("j.smith") {
                assert!(text.contains("\r\nTo: \"j.smith\" <reader@example.net>\r\n"));
            }
            let run = python(
                "dkim_verify.py",
                &[path.to_str().unwrap(), public.to_str().unwrap()],
            );
            assert_eq!(
                run.status, 0,
                "{algorithm} key {i}: {}{}",
                run.stdout, run.stderr
            );
            // A changed byte in the body breaks the signature: the check can fail.
            let tampered = tamper_body(&text);
            assert_ne!(tampered, text);
            std::fs::write(&path, tampered).unwrap();
            let run = python(
                "dkim_verify.py",
                &[path.to_str().unwrap(), public.to_str().unwrap()],
            );
            assert_ne!(run.status, 0, "a tampered message verified");
        }
    }
    let err = Dkim::from_pem("d", "s", "not a key").unwrap_err();
    assert!(
        format!("{err:#}").contains("not a PEM private key"),
        "{err:#}"
    );
}

#[test]
fn sample_email_snapshots() {
    let n = published();
    insta::assert_snapshot!(
        "march_email_txt",
        n.read(&format!("outbox/{MARCH}/email.txt"))
    );
    insta::assert_snapshot!(
        "notes_email_txt",
        n.read("outbox/2023-05-reading-notes/email.txt")
    );
    insta::assert_snapshot!(
        "march_email_html",
        n.read(&format!("outbox/{MARCH}/email.html"))
    );
}

/// A page that shows `email` in an iframe `width` px wide (headless Chromium will not make a
/// window narrower than 500 px, an iframe is a real viewport of any width), scrolled to show
/// its top or its bottom, and that records the email's scroll width, viewport width and
/// height in a `data-probe` attribute.
fn host_page(email: &str, width: u32, bottom: bool) -> String {
    let srcdoc = email.replace('&', "&amp;").replace('"', "&quot;");
    format!(
        r#"<!DOCTYPE html><html><head><meta charset="utf-8"></head><body style="margin:0;background:#808080">
<div style="position:relative;width:{width}px;height:{VIEW}px;overflow:hidden"><iframe id="f" style="position:absolute;left:0;top:0;border:0;width:{width}px;height:{VIEW}px" srcdoc="{srcdoc}"></iframe></div>
<script>window.addEventListener('load', function () {{
  var f = document.getElementById('f'), d = f.contentDocument, h = d.documentElement.scrollHeight;
  f.style.height = h + 'px';
  if ({bottom}) {{ f.style.top = Math.min(0, {VIEW} - h) + 'px'; }}
  document.body.setAttribute('data-probe', d.documentElement.scrollWidth + ' ' + f.contentWindow.innerWidth + ' ' + h);
}});</script></body></html>"#
    )
}

/// The height of a screenshot, in px.
const VIEW: u32 = 2000;

fn chromium(args: &[&str]) -> crate::support::Run {
    let mut all = vec!["--hide-scrollbars", "--virtual-time-budget=5000"];
    all.extend_from_slice(args);
    crate::support::chromium(&all)
}

/// Renders `html` in headless Chromium `width` px wide: `(scroll width, viewport width)`, and
/// screenshots of its top and bottom in `shots`.
fn render(html: &Path, width: u32, shots: &Path, name: &str) -> (u64, u64) {
    let email = std::fs::read_to_string(html).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let window = format!("--window-size={},{VIEW}", width.max(500));
    let mut probe = None;
    for bottom in [false, true] {
        let page = dir.path().join(format!("host-{bottom}.html"));
        std::fs::write(&page, host_page(&email, width, bottom)).unwrap();
        let url = format!("file://{}", page.display());
        let run = chromium(&[window.as_str(), "--dump-dom", url.as_str()]);
        let found = run
            .stdout
            .split("data-probe=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_else(|| panic!("no probe in the DOM:\n{:.500}", run.stdout))
            .to_string();
        probe.get_or_insert(found);
        let shot = shots.join(format!(
            "{name}-{width}-{}.png",
            if bottom { "bottom" } else { "top" }
        ));
        let arg = format!("--screenshot={}", shot.display());
        chromium(&[window.as_str(), arg.as_str(), url.as_str()]);
        assert!(shot.exists(), "no screenshot {}", shot.display());
    }
    let probe = probe.unwrap();
    let mut numbers = probe.split(' ').map(|n| n.parse::<u64>().unwrap());
    (numbers.next().unwrap(), numbers.next().unwrap())
}

#[test]
fn html_reflows_without_horizontal_scrolling_at_375_and_600_px() {
    let n = published();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("email-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    for slug in [MARCH, "2023-06-one-figure"] {
        let html = n.path().join("outbox").join(slug).join("email.html");
        for width in [375, 600] {
            let (scroll, inner) = render(&html, width, &shots, slug);
            assert_eq!(inner, u64::from(width), "the viewport is not {width} px");
            assert!(
                scroll <= inner,
                "{slug} at {width} px scrolls sideways: scrollWidth {scroll}"
            );
        }
    }
}

#[test]
fn html_has_what_a_newsletter_email_needs() {
    let n = published();
    let html = n.read(&format!("outbox/{MARCH}/email.html"));
    assert!(html.starts_with("<!DOCTYPE html><html lang=\"zh-CN\""));
    for needle in [
        "LLaMA、Consistency Models、PaLM-E、Prismer、Lion 等十篇论文",
        // The sample is zh-CN: gazette's own words and dates are Chinese (issue 11.6).
        "第 3 期 · 2023年3月31日",
        "max-width: 600px",
        ">退订</a>",
        "href=\"https://digest.example.org/2023-03-papers/\"",
        ">在浏览器中查看</a>",
        "上海市徐汇区示例路 100 号",
        "prefers-color-scheme: dark",
    ] {
        assert!(html.contains(needle), "{needle} missing");
    }
    for forbidden in ["<script", "<form", "class=\"content\">"] {
        assert!(!html.contains(forbidden), "{forbidden} present");
    }
    let figure = n.read("outbox/2023-06-one-figure/email.html");
    assert!(
        figure.contains("alt=\"示意图：噪声轨迹上的三个点都被映射回同一张图像\""),
        "image alt text missing"
    );
}

#[test]
fn email_drops_raw_scripts_and_forms_from_the_body() {
    let n = Newsletter::sample();
    n.write(
        "issues/2023-08-raw.md",
        "+++\ntitle = \"Raw\"\ndate = 2023-08-01\n+++\n\nHello <script>alert(1)</script> and\n\n<form action=\"x\"><input name=\"a\"></form>\n\nbye\n",
    );
    n.gazette(&["publish"]).ok();
    let html = n.read("outbox/2023-08-raw/email.html");
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<form"), "{html}");
    assert!(!html.contains("<input"), "{html}");
    assert!(html.contains("bye"));
}

#[test]
fn check_warns_when_the_html_part_is_near_gmails_clipping_size() {
    let n = Newsletter::sample();
    let mut body = String::from("+++\ntitle = \"Long\"\ndate = 2023-08-01\n+++\n\n");
    // About 100 KB of HTML: over 90 KB encoded even in base64 (it was 400 paragraphs when
    // every part was quoted-printable).
    for i in 0..700 {
        body.push_str(&format!(
            "第 {i} 段：这是一段很长的中文内容，用来让邮件的 HTML 部分超过九十千字节。\n\n"
        ));
    }
    n.write("issues/2023-08-long.md", body);
    let run = n.gazette(&["check"]).ok();
    assert!(
        run.stderr.contains("2023-08-long.md")
            && run.stderr.contains("Gmail clips messages near 102 KB"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("2023-03-papers.md: warning: the email"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_footer_without_unsubscribe_link_or_address_still_gets_them() {
    let n = Newsletter::sample();
    n.write(
        "templates/footer.md",
        "Thanks for reading **{newsletter}**.\n",
    );
    let run = n.gazette(&["check"]).ok();
    assert!(
        run.stderr
            .contains("the footer has no {unsubscribe_url}: gazette adds it"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("the footer has no {postal_address}"));
    n.gazette(&["publish"]).ok();
    let html = n.read(&format!("outbox/{MARCH}/email.html"));
    let text = n.read(&format!("outbox/{MARCH}/email.txt"));
    // The sample is a zh-CN newsletter: the added link is in its language, in both parts.
    assert!(html.contains(">退订</a>"), "{html}");
    assert!(!html.contains("Unsubscribe</a>"), "{html}");
    assert!(text.contains("退订["), "{text}");
    assert!(!text.contains("Unsubscribe"), "{text}");
    assert!(html.contains("上海市徐汇区示例路 100 号"));
    assert!(text.contains("https://digest.example.org/unsubscribe?token="));
    assert!(text.contains("上海市徐汇区示例路 100 号"));
    check_eml(&[&n.path().join("outbox").join(MARCH).join("message.eml")]);
}

#[test]
fn an_overlong_subject_is_an_error_not_a_broken_message() {
    let (config, mut issue) = sample_issue(MARCH);
    for subject in ["a".repeat(1200), "论".repeat(1200), "word ".repeat(400)] {
        issue.subject = Some(subject.clone());
        match Prepared::new(&config, &issue, &Templates::builtin(), &secret(), None) {
            Ok(p) => {
                let out = p
                    .message(&Recipient {
                        email: "r@example.net",
                        name: None,
                    })
                    .unwrap();
                for line in out.bytes.split(|&b| b == b'\n') {
                    assert!(line.len() <= 999, "a line of {} octets", line.len());
                }
            }
            Err(e) => assert!(format!("{e:#}").contains("longer than 998 octets"), "{e:#}"),
        }
    }
}

/// `(wire bytes, decoded bytes)` of the text and HTML parts, as Python reads them.
fn part(parsed: &serde_json::Value, i: usize) -> &serde_json::Value {
    &parsed["encodings"][i]
}

const ENGLISH_ISSUE: &str = "+++\ntitle = \"Notes on reading papers\"\ndate = 2023-08-01\n+++\n\n\
A short English issue. We read three papers this month and liked two of them. The first \
one explains how small language models can be trained on a single machine, with a careful \
account of what went wrong along the way; the second is about [evaluation](https://example.org/eval) \
and why most benchmarks measure less than they claim.\n\n\
## What we liked\n\n\
- Honest error bars, and the code to reproduce every figure.\n\
- A section on failure cases that is longer than the one on successes.\n\
- Plain words: no paper needs \"paradigm\" three times on a page.\n\n\
That is all for August. Thanks for reading, and write back if you disagree.\n";

#[test]
fn each_part_takes_the_shorter_of_quoted_printable_and_base64() {
    let n = published();
    n.write("issues/2023-08-english.md", ENGLISH_ISSUE);
    n.gazette(&["publish"]).ok();
    let march = n.path().join("outbox").join(MARCH).join("message.eml");
    let english = n
        .path()
        .join("outbox")
        .join("2023-08-english")
        .join("message.eml");
    let parsed = check_eml(&[&march, &english]);
    for r in &parsed {
        for i in 0..2 {
            let p = part(r, i);
            let (qp, b64) = (
                p["qp_bytes"].as_u64().unwrap(),
                p["base64_bytes"].as_u64().unwrap(),
            );
            let wire = p["wire_bytes"].as_u64().unwrap();
            eprintln!("{}: {p}", r["path"]);
            // The chosen encoding is within a few bytes of the better of Python's encoders.
            assert!(
                wire <= qp.min(b64) + qp.min(b64) / 50 + 16,
                "{}: part {i} takes {wire} bytes, qp {qp}, base64 {b64}",
                r["path"]
            );
        }
    }
    // March, Chinese: both parts base64 (lines in CRLF, the canonical form). Quoted-printable
    // took 44,020 bytes for 23,775 of HTML and text (1.85 times); base64 is at best 1.368
    // times plus about 1 KB of headers and boundaries: 1.41 times here. The 1.4 of issue 11
    // is met by 8bit, for relays that announce 8BITMIME (the tests below).
    let m = &parsed[0];
    assert_eq!(part(m, 0)["cte"], "base64");
    assert_eq!(part(m, 1)["cte"], "base64");
    let decoded: u64 = (0..2)
        .map(|i| part(m, i)["decoded_bytes"].as_u64().unwrap())
        .sum();
    assert!(
        decoded > 23_000,
        "the March issue's HTML and text shrank: {decoded}"
    );
    let size = m["size"].as_u64().unwrap();
    assert!(
        size * 100 <= decoded * 142,
        "the March message is {size} bytes for {decoded} of HTML and text"
    );
    // English: quoted-printable stays, as it is shorter there.
    let e = &parsed[1];
    assert_eq!(part(e, 0)["cte"], "quoted-printable");
    assert_eq!(part(e, 1)["cte"], "quoted-printable");
    // The decoded parts are exactly the files written next to the message.
    assert_eq!(
        m["text"].as_str().unwrap().replace("\r\n", "\n"),
        n.read(&format!("outbox/{MARCH}/email.txt"))
    );
    assert_eq!(
        m["html"].as_str().unwrap().replace("\r\n", "\n"),
        n.read(&format!("outbox/{MARCH}/email.html"))
    );
}

#[test]
fn every_recipient_of_a_base64_message_gets_their_own_link() {
    let (config, issue) = sample_issue(MARCH);
    let prepared = Prepared::new(&config, &issue, &Templates::builtin(), &secret(), None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Addresses and names of every length modulo 3, and values that need escaping.
    let recipients: Vec<(String, Option<&str>)> = vec![
        ("a@example.net".into(), None),
        ("ab@example.net".into(), Some("张三")),
        ("abc@example.net".into(), Some("Zoë & <Co>")),
        ("a.b+c@example.net".into(), Some("李四四")),
        (format!("{}@example.net", "x".repeat(60)), Some("N")),
    ];
    let mut paths = Vec::new();
    for (i, (email, name)) in recipients.iter().enumerate() {
        let out = prepared.message(&Recipient { email, name: *name }).unwrap();
        let path = dir.path().join(format!("{i}.eml"));
        std::fs::write(&path, &out.bytes).unwrap();
        paths.push(path);
    }
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let parsed = check_eml(&refs);
    for (r, (email, name)) in parsed.iter().zip(&recipients) {
        assert_eq!(part(r, 0)["cte"], "base64");
        let unsubscribe = r["list_unsubscribe"].as_str().unwrap();
        let url = unsubscribe
            .split(['<', '>'])
            .find(|s| s.starts_with("https://"))
            .unwrap();
        let token = url.split("token=").nth(1).unwrap();
        assert_eq!(
            secret()
                .verify("papers.digest.example.org", token)
                .as_deref(),
            Some(email.as_str())
        );
        let text = r["text"].as_str().unwrap();
        let html = r["html"].as_str().unwrap();
        assert!(text.contains(url), "{email}: {text}");
        assert!(html.contains(&format!("href=\"{url}\"")), "{email}");
        assert!(text.contains(email.as_str()), "{email}");
        // The decoded parts equal the ones rendered for this recipient.
        let to = Recipient { email, name: *name };
        assert_eq!(text.replace("\r\n", "\n"), prepared.text(&to));
        assert_eq!(html.replace("\r\n", "\n"), prepared.html(&to));
    }
}

#[test]
fn spamassassin_reads_no_hidden_text_in_any_sample_issue() {
    let n = published();
    // The preheader is hidden by display:none alone: no filler characters, no text coloured
    // like its background.
    let html = n.read(&format!("outbox/{MARCH}/email.html"));
    let preheader = html
        .split("class=\"preheader\"")
        .nth(1)
        .and_then(|s| s.split("</div>").next())
        .unwrap();
    assert!(preheader.contains("display: none"), "{preheader}");
    for forbidden in [
        "\u{034f}",
        "\u{a0}",
        "&nbsp;",
        "transparent",
        "opacity",
        "font-size",
    ] {
        assert!(!preheader.contains(forbidden), "{forbidden} in {preheader}");
    }
    for slug in [
        MARCH,
        "2023-04-papers",
        "2023-05-reading-notes",
        "2023-06-one-figure",
    ] {
        let path = n.path().join("outbox").join(slug).join("message.eml");
        let spam = crate::support::spamassassin(&path);
        eprintln!("{slug}: {} {:?}", spam.score, spam.rules);
        let names: Vec<&str> = spam.rules.iter().map(|(_, r)| r.as_str()).collect();
        assert!(names.contains(&"HTML_MESSAGE"), "{slug}: {names:?}");
        let tolerated = crate::support::OBFUSCATION_TOLERATED.contains(&slug);
        let against = spam.against(tolerated);
        assert!(
            against.is_empty(),
            "{slug}: {against:?} of {:?}",
            spam.rules
        );
        if !tolerated {
            assert!(
                spam.score <= 0.0,
                "{slug} scores {}: {:?}",
                spam.score,
                spam.rules
            );
        }
    }
}

/// A newsletter made by `gazette init --language LANGUAGE` with one issue of its own, published.
fn initialised(language: &str) -> Newsletter {
    let n = Newsletter::empty();
    n.gazette(&["init", "--language", language]).ok();
    n.write(
        "issues/second.md",
        "+++\ntitle = \"Second\"\ndate = 2023-03-31\nnumber = 2\ntags = [\"machine learning\"]\n+++\n\nText with *emphasis* and *中文强调*.\n",
    );
    n.gazette(&["publish"]).ok();
    n
}

#[test]
fn gazettes_own_words_and_dates_follow_the_newsletters_language() {
    let zh = initialised("zh-CN");
    assert!(zh.read("gazette.toml").contains("language = \"zh-CN\""));
    let html = zh.read("outbox/second/email.html");
    let text = zh.read("outbox/second/email.txt");
    let page = zh.read("feeds/second/index.html");
    let index = zh.read("feeds/index.html");
    for needle in [
        "你收到这封邮件是因为你以",
        ">退订</a>",
        ">在浏览器中查看</a>",
        "第 2 期 · 2023年3月31日",
    ] {
        assert!(html.contains(needle), "email HTML lacks {needle}:\n{html}");
    }
    for needle in [
        "你收到这封邮件是因为你以",
        "退订[",
        "在浏览器中查看[",
        "第 2 期 · 2023年3月31日",
    ] {
        assert!(text.contains(needle), "text part lacks {needle}:\n{text}");
    }
    for (name, doc) in [("page", &page), ("archive", &index)] {
        assert!(doc.contains(">2023年3月31日</time>"), "{name}:\n{doc}");
        assert!(doc.contains("第 2 期 · "), "{name}:\n{doc}");
        assert!(!doc.contains("2023-03-31<"), "{name}: an ISO date shown");
    }
    for doc in [&html, &text] {
        for english in [
            "You are receiving",
            "Unsubscribe",
            "View in browser",
            "No. 2",
        ] {
            assert!(!doc.contains(english), "{english} in a zh-CN email");
        }
    }
    // Chinese emphasis is upright, in the email (inlined) and on the pages (stylesheet);
    // emphasis on Latin text alone (an author list) stays italic.
    assert!(
        html.contains("<em style=\"font-style: normal;font-weight: bold;\">中文强调</em>"),
        "{html}"
    );
    assert!(
        html.contains(
            "<em class=\"latin\" style=\"font-style: italic;font-weight: normal;\">emphasis</em>"
        ),
        "{html}"
    );
    assert!(page.contains("<em class=\"latin\">emphasis</em>"), "{page}");
    assert!(page.contains("<em>中文强调</em>"), "{page}");
    let css = zh.read("feeds/style.css");
    assert!(css.contains("em:lang(zh) { font-style: normal;"), "{css}");
    assert!(
        css.contains("em.latin:lang(zh) { font-style: italic;"),
        "{css}"
    );
    assert!(page.contains("<html lang=\"zh-CN\""));
    // Tag pills never break inside, and dark mode redraws the email's rules and borders.
    assert!(css.contains("white-space: nowrap"), "{css}");
    assert!(html.contains(".content blockquote, .content th, .content td { border-color"));

    let en = initialised("en");
    let html = en.read("outbox/second/email.html");
    let text = en.read("outbox/second/email.txt");
    let page = en.read("feeds/second/index.html");
    assert!(html.contains(">Unsubscribe</a>") && html.contains(">View in browser</a>"));
    assert!(html.contains("No. 2 · 2023-03-31"), "{html}");
    assert!(text.contains("You are receiving") && text.contains("No. 2 · 2023-03-31"));
    assert!(page.contains(">2023-03-31</time>") && page.contains("No. 2 · "));
    assert!(
        html.contains("<em>emphasis</em>"),
        "English emphasis stays italic"
    );
    assert!(!html.contains("class=\"latin\"") && !page.contains("class=\"latin\""));
    for doc in [&html, &text, &page] {
        assert!(!doc.contains("退订") && !doc.contains("年3月"));
    }
    // An unknown language tag gets English; a malformed one is refused.
    let run = Newsletter::empty()
        .gazette(&["init", "--language", "not a tag"])
        .code(1);
    assert!(
        run.stderr.contains("is not a language tag"),
        "{}",
        run.stderr
    );
}

/// The decoded HTML and text of a message's two parts, joined, in bytes.
fn decoded_bytes(parsed: &serde_json::Value) -> u64 {
    (0..2)
        .map(|i| part(parsed, i)["decoded_bytes"].as_u64().unwrap())
        .sum()
}

#[test]
fn for_a_relay_with_8bitmime_each_part_is_its_utf8_text_and_still_verifies_with_dkim() {
    let (config, issue) = sample_issue(MARCH);
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = keypair(dir.path(), "ed25519", &["-algorithm", "ed25519"]);
    let pem = std::fs::read_to_string(&private).unwrap();
    let dkim = Dkim::from_pem("digest.example.org", "gz2026", &pem).unwrap();
    let to = Recipient {
        email: "reader@example.net",
        name: Some("张三"),
    };
    for signed in [false, true] {
        let prepared = Prepared::new(
            &config,
            &issue,
            &Templates::builtin(),
            &secret(),
            signed.then_some(&dkim),
        )
        .unwrap();
        let seven = prepared
            .subscriber_message(&to, 7, None, Transfer::SevenBit)
            .unwrap();
        let eight = prepared
            .subscriber_message(&to, 7, None, Transfer::EightBit)
            .unwrap();
        assert!(!seven.eight_bit && seven.bytes.is_ascii());
        assert!(eight.eight_bit && !eight.bytes.is_ascii());
        assert_eq!(seven.message_id, eight.message_id);
        let paths = [dir.path().join("7.eml"), dir.path().join("8.eml")];
        std::fs::write(&paths[0], &seven.bytes).unwrap();
        std::fs::write(&paths[1], &eight.bytes).unwrap();
        let parsed = check_eml(&[&paths[0], &paths[1]]);
        for i in 0..2 {
            assert_eq!(part(&parsed[0], i)["cte"], "base64");
            assert_eq!(part(&parsed[1], i)["cte"], "8bit");
            // The same parts, whichever way they travel.
            for field in ["text", "html"] {
                assert_eq!(parsed[0][field], parsed[1][field], "{field}");
            }
        }
        let text = parsed[1]["text"].as_str().unwrap().replace("\r\n", "\n");
        assert_eq!(text, prepared.text(&to));
        let html = parsed[1]["html"].as_str().unwrap().replace("\r\n", "\n");
        assert_eq!(html, prepared.html(&to));
        let decoded = decoded_bytes(&parsed[1]);
        let size = eight.bytes.len() as u64;
        if signed {
            let run = python(
                "dkim_verify.py",
                &[paths[1].to_str().unwrap(), public.to_str().unwrap()],
            );
            assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
            let tampered = tamper_body(&String::from_utf8(eight.bytes.clone()).unwrap());
            std::fs::write(&paths[1], tampered).unwrap();
            let run = python(
                "dkim_verify.py",
                &[paths[1].to_str().unwrap(), public.to_str().unwrap()],
            );
            assert_ne!(run.status, 0, "a tampered 8bit message verified");
        } else {
            // Issue 11.3: the March issue at most 1.4 times its HTML and text (base64: 1.41).
            assert!(
                size * 100 <= decoded * 140,
                "the 8bit March message is {size} bytes for {decoded} of HTML and text"
            );
            let base64 = seven.bytes.len() as u64;
            assert!(size * 100 < base64 * 80, "8bit {size}, base64 {base64}");
        }
    }
}

#[test]
fn a_part_with_a_line_longer_than_smtp_allows_stays_base64_under_8bitmime() {
    let (config, mut issue) = sample_issue(MARCH);
    // One paragraph of Chinese with no line break: over 998 octets on one line of HTML. The
    // text part wraps it at 72 columns.
    issue.body = format!("{}\n", "长段落没有空格可以断行。".repeat(40));
    let prepared = Prepared::new(&config, &issue, &Templates::builtin(), &secret(), None).unwrap();
    let to = Recipient {
        email: "reader@example.net",
        name: None,
    };
    let out = prepared
        .subscriber_message(&to, 1, None, Transfer::EightBit)
        .unwrap();
    assert!(out.eight_bit);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.eml");
    std::fs::write(&path, &out.bytes).unwrap();
    let parsed = check_eml(&[&path]);
    assert_eq!(part(&parsed[0], 0)["cte"], "8bit");
    assert_eq!(part(&parsed[0], 1)["cte"], "base64");
    let html = parsed[0]["html"].as_str().unwrap().replace("\r\n", "\n");
    assert_eq!(html, prepared.html(&to));

    // A name too long for its 8bit line (a footer that greets the reader by name, and a name
    // of 1,020 bytes): that recipient's whole message falls back to 7-bit; the next one's not.
    let (config, issue) = sample_issue(MARCH);
    let footer = format!("{}\n\n你好，{{name}}！\n", Templates::builtin().footer);
    let templates = Templates::new(Templates::builtin().css, footer);
    let prepared = Prepared::new(&config, &issue, &templates, &secret(), None).unwrap();
    let name = "名".repeat(340);
    let long = Recipient {
        email: "reader@example.net",
        name: Some(&name),
    };
    assert!(prepared.html(&long).contains(&format!("你好，{name}！")));
    let out = prepared
        .subscriber_message(&long, 1, None, Transfer::EightBit)
        .unwrap();
    let longest = out.bytes.split(|&b| b == b'\n').map(<[u8]>::len).max();
    assert!(!out.eight_bit && out.bytes.is_ascii(), "{longest:?}");
    std::fs::write(&path, &out.bytes).unwrap();
    let parsed = check_eml(&[&path]);
    assert_eq!(part(&parsed[0], 0)["cte"], "base64");
    assert_eq!(part(&parsed[0], 1)["cte"], "base64");
    let short = Recipient {
        email: "reader@example.net",
        name: Some("名"),
    };
    let out = prepared
        .subscriber_message(&short, 1, None, Transfer::EightBit)
        .unwrap();
    assert!(out.eight_bit);
}

/// `gazette send` of the March issue to a subscriber through smtp-sink started with
/// `options`; returns the parsed message as it arrived.
fn sent_through_sink(options: &[&str], eight_bit_setting: Option<bool>) -> serde_json::Value {
    through_sink(options, eight_bit_setting, &["send", MARCH, "--yes"])
}

/// `gazette ARGS` (a send of one message) through smtp-sink started with `options`; returns
/// the parsed message as it arrived.
fn through_sink(
    options: &[&str],
    eight_bit_setting: Option<bool>,
    args: &[&str],
) -> serde_json::Value {
    let n = Newsletter::sample();
    if let Some(on) = eight_bit_setting {
        let toml = n.read("gazette.toml");
        n.write(
            "gazette.toml",
            toml.replace("[smtp]\n", &format!("[smtp]\neight_bit = {on}\n")),
        );
    }
    n.gazette(&["subscribers", "add", "reader@example.org"])
        .ok();
    let sink = crate::support::Sink::with_options(crate::support::free_port(), options);
    let mut c = n.command(args);
    c.env("GAZETTE_SMTP_URL", sink.url());
    let out = c.output().expect("gazette runs");
    sink.wait_for_files(1, std::time::Duration::from_secs(20));
    let files = sink.files();
    let [file] = files.as_slice() else {
        panic!("{files:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // smtp-sink writes the envelope and its own Received line first, then the message as
    // gazette sent it, in LF lines with one more at the end.
    let raw = String::from_utf8(std::fs::read(file).unwrap()).unwrap();
    let mail_args = raw
        .lines()
        .find_map(|l| l.strip_prefix("X-Mail-Args: "))
        .unwrap()
        .to_string();
    let at = raw.find("\nFrom:").unwrap() + 1;
    let message = raw[at..].strip_suffix('\n').unwrap().replace('\n', "\r\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("as-sent.eml");
    std::fs::write(&path, &message).unwrap();
    let mut parsed = check_eml(&[&path]).remove(0);
    parsed["size"] = message.len().into();
    parsed["mail_args"] = mail_args.into();
    parsed
}

#[test]
fn send_uses_8bit_exactly_when_the_relay_announces_8bitmime_and_the_setting_allows_it() {
    let eight = sent_through_sink(&[], None);
    let decoded = decoded_bytes(&eight);
    let size = eight["size"].as_u64().unwrap();
    for i in 0..2 {
        assert_eq!(part(&eight, i)["cte"], "8bit", "{eight:#}");
    }
    assert!(
        eight["mail_args"]
            .as_str()
            .unwrap()
            .contains("BODY=8BITMIME"),
        "{}",
        eight["mail_args"]
    );
    assert!(
        size * 100 <= decoded * 140,
        "March as sent over 8BITMIME: {size} bytes for {decoded} of HTML and text"
    );
    eprintln!("8bit: {size} bytes for {decoded}");
    for parsed in [
        sent_through_sink(&["-8"], None),
        sent_through_sink(&[], Some(false)),
    ] {
        for i in 0..2 {
            assert_eq!(part(&parsed, i)["cte"], "base64", "{parsed:#}");
        }
        assert!(
            !parsed["mail_args"].as_str().unwrap().contains("BODY="),
            "{}",
            parsed["mail_args"]
        );
        assert_eq!(parsed["text"], eight["text"]);
        assert_eq!(parsed["html"], eight["html"]);
    }
}

#[test]
fn a_test_copy_goes_in_the_transfer_the_subscribers_get_through_that_relay() {
    let args = ["send", MARCH, "--to", "editor@example.org"];
    let eight = through_sink(&[], None, &args);
    let seven = through_sink(&["-8"], None, &args);
    for i in 0..2 {
        assert_eq!(part(&eight, i)["cte"], "8bit", "{eight:#}");
        assert_eq!(part(&seven, i)["cte"], "base64", "{seven:#}");
    }
    assert!(
        eight["mail_args"]
            .as_str()
            .unwrap()
            .contains("BODY=8BITMIME"),
        "{}",
        eight["mail_args"]
    );
    assert!(
        !seven["mail_args"].as_str().unwrap().contains("BODY="),
        "{}",
        seven["mail_args"]
    );
    assert_eq!(seven["text"], eight["text"]);
    assert_eq!(seven["html"], eight["html"]);
}
