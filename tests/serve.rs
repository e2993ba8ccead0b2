//! `gazette serve`: the real binary on a free port, spoken to with curl.

use std::io::Read;
use std::time::Duration;

use crate::support::{Newsletter, Run, Serve, header, headers, tool};

/// A published sample newsletter served under the `/news/` prefix.
fn published() -> Newsletter {
    let n = Newsletter::sample();
    n.edit_toml(
        "base_url = \"https://digest.example.org/\"",
        "base_url = \"https://digest.example.org/news/\"",
    );
    n.gazette(&["publish", "-q"]).ok();
    n
}

/// `gazette serve` on a free port, serving `/news/`.
fn serve(n: &Newsletter) -> Serve {
    let s = Serve::start(n, &[]);
    assert_eq!(
        s.base,
        format!("http://127.0.0.1:{}/news/", s.port),
        "the listen line"
    );
    s
}

/// curl with a 10 s bound, `-s`, and the given arguments.
fn curl(args: &[&str]) -> Run {
    let mut all = vec!["-s", "--max-time", "10"];
    all.extend_from_slice(args);
    tool("curl", &all)
}

/// The status code of a GET, the path sent as written (no dot-segment folding).
fn status(url: &str) -> String {
    curl(&["--path-as-is", "-o", "/dev/null", "-w", "%{http_code}", url]).stdout
}

#[test]
fn serve_content_types_and_security_headers() {
    let n = published();
    let s = serve(&n);
    for (path, want) in [
        ("", "text/html; charset=utf-8"),
        ("rss.xml", "application/rss+xml; charset=utf-8"),
        ("atom.xml", "application/atom+xml; charset=utf-8"),
        ("feed.json", "application/feed+json; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
    ] {
        let h = headers(&[&s.url(path)]);
        assert_eq!(header(&h, "content-type"), Some(want), "{path}: {h:?}");
        assert_eq!(header(&h, "x-content-type-options"), Some("nosniff"));
        assert!(
            header(&h, "etag").is_some_and(|e| e.starts_with('"')),
            "{h:?}"
        );
        assert!(header(&h, "last-modified").is_some_and(|v| v.ends_with(" GMT")));
        assert!(header(&h, "cache-control").is_some(), "{path}: {h:?}");
        let html = want.starts_with("text/html");
        assert_eq!(
            header(&h, "referrer-policy"),
            html.then_some("no-referrer"),
            "{path}"
        );
        assert_eq!(
            header(&h, "content-security-policy").is_some_and(|c| c.contains("default-src 'none'")),
            html,
            "{path}: {h:?}"
        );
    }
    // The body is the published file, byte for byte.
    let body = curl(&[&s.url("rss.xml")]).stdout;
    assert_eq!(body, n.read("feeds/rss.xml"));
    // An issue folder without its slash is redirected to it, then served.
    let issue = std::fs::read_dir(n.path().join("feeds"))
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path().join("index.html").is_file())
        .expect("an issue page")
        .file_name()
        .into_string()
        .unwrap();
    let h = headers(&[&format!("{}{issue}", s.base)]);
    assert_eq!(
        header(&h, "location"),
        Some(format!("/news/{issue}/").as_str())
    );
    assert_eq!(status(&format!("{}{issue}/", s.base)), "200");
    // Only GET and HEAD.
    let post = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "DELETE",
        &s.url("rss.xml"),
    ]);
    assert_eq!(post.stdout, "405");
}

#[test]
fn serve_conditional_requests_head_and_gzip() {
    let n = published();
    let s = serve(&n);
    let url = s.url("atom.xml");
    let h = headers(&[&url]);
    let etag = header(&h, "etag").unwrap().to_string();
    let modified = header(&h, "last-modified").unwrap().to_string();

    for condition in [
        format!("If-None-Match: {etag}"),
        format!("If-None-Match: \"other\", {etag}"),
        format!("If-Modified-Since: {modified}"),
    ] {
        let r = curl(&["-H", &condition, "-w", "%{http_code}", &url]);
        assert_eq!(r.stdout, "304", "{condition}: the body must be empty");
    }
    // A stale validator gets the whole file.
    let r = curl(&["-H", "If-None-Match: \"stale\"", &url]);
    assert_eq!(r.stdout, n.read("feeds/atom.xml"));
    // If-None-Match wins over If-Modified-Since.
    let r = curl(&[
        "-H",
        "If-None-Match: \"stale\"",
        "-H",
        &format!("If-Modified-Since: {modified}"),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &url,
    ]);
    assert_eq!(r.stdout, "200");

    // HEAD: the same headers, no body.
    let head = curl(&["-I", &url]).stdout;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains(&etag), "{head}");
    let length = n.read("feeds/atom.xml").len().to_string();
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {length}")),
        "{head}"
    );

    // gzip when asked: decompresses to the file, with its own validator.
    let gz = headers(&["-H", "Accept-Encoding: gzip", &url]);
    assert_eq!(header(&gz, "content-encoding"), Some("gzip"), "{gz:?}");
    assert_ne!(header(&gz, "etag"), Some(etag.as_str()));
    assert_eq!(header(&gz, "vary"), Some("Accept-Encoding"));
    let body = curl(&["--compressed", &url]).stdout;
    assert_eq!(body, n.read("feeds/atom.xml"));
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("atom.xml.gz");
    curl(&[
        "-H",
        "Accept-Encoding: gzip",
        "-o",
        raw.to_str().unwrap(),
        &url,
    ]);
    let out = tool("gzip", &["-dc", raw.to_str().unwrap()]);
    assert_eq!(out.stdout, n.read("feeds/atom.xml"), "gzip -d of the body");
    // Not asked, or refused with q=0: identity.
    let plain = headers(&["-H", "Accept-Encoding: gzip;q=0", &url]);
    assert_eq!(header(&plain, "content-encoding"), None);
    let gz_etag = header(&gz, "etag").unwrap().to_string();
    let r = curl(&[
        "-H",
        "Accept-Encoding: gzip",
        "-H",
        &format!("If-None-Match: {gz_etag}"),
        "-w",
        "%{http_code}",
        &url,
    ]);
    assert_eq!(r.stdout, "304");
}

#[test]
fn serve_refuses_traversal_dotfiles_and_escaping_symlinks() {
    let n = published();
    n.write("feeds/.secret", "hidden");
    n.write("outside.txt", "outside feeds");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(n.path().join("outside.txt"), n.path().join("feeds/out.txt"))
            .unwrap();
        std::os::unix::fs::symlink(
            n.path().join("feeds/rss.xml"),
            n.path().join("feeds/in.xml"),
        )
        .unwrap();
    }
    let s = serve(&n);
    let root = s.base.trim_end_matches("news/").to_string();
    for path in [
        "../gazette.toml",
        "..%2fgazette.toml",
        "%2e%2e/gazette.toml",
        "%2E%2E/gazette.toml",
        "%252e%252e/gazette.toml",
        "welcome/../../gazette.toml",
        "./rss.xml",
        ".secret",
        "%2esecret",
        "out.txt",
        "rss.xml/",
        "nothing-here.html",
        "..\\gazette.toml",
        "a%00b",
    ] {
        assert_eq!(status(&s.url(path)), "404", "{path}");
    }
    // Outside the prefix nothing is served, not even feeds' files.
    assert_eq!(status(&format!("{root}rss.xml")), "404");
    assert_eq!(status(&format!("{root}gazette.toml")), "404");
    // A link that stays inside feeds/ is fine.
    #[cfg(unix)]
    assert_eq!(status(&s.url("in.xml")), "200");
    // Raw bytes on a socket, no client normalising anything.
    let raw = raw_get(&s.base, "/news/../gazette.toml");
    assert!(raw.starts_with("HTTP/1.1 404"), "{raw}");
    assert!(!raw.contains("[newsletter]"), "{raw}");
}

fn raw_get(base: &str, path: &str) -> String {
    use std::io::Write;
    let addr = base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

#[test]
fn serve_shows_a_new_publish_without_restart() {
    let n = published();
    let s = serve(&n);
    let url = s.url("rss.xml");
    let before = headers(&[&url]);
    let etag = header(&before, "etag").unwrap().to_string();
    // Publish again with a changed title: the feed's bytes change.
    let toml = n.read("gazette.toml");
    let changed = toml.replacen("title = \"", "title = \"Renamed ", 1);
    assert_ne!(toml, changed);
    n.write("gazette.toml", changed);
    n.gazette(&["publish", "-q"]).ok();
    let body = curl(&[&url]).stdout;
    assert_eq!(body, n.read("feeds/rss.xml"));
    assert!(body.contains("Renamed "), "the new feed is served");
    let after = headers(&[&url]);
    assert_ne!(header(&after, "etag"), Some(etag.as_str()));
    let r = curl(&[
        "-H",
        &format!("If-None-Match: {etag}"),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &url,
    ]);
    assert_eq!(r.stdout, "200", "the old ETag no longer matches");
}

#[test]
fn serve_logs_without_query_and_stops_on_sigterm() {
    let n = published();
    let mut s = serve(&n);
    assert_eq!(status(&s.url("rss.xml?token=sekrit-value")), "200");
    let log = s.log();
    assert!(
        log.iter().any(|l| l.starts_with("GET /news/rss.xml 200 ")),
        "{log:?}"
    );
    assert!(log.iter().all(|l| !l.contains("sekrit")), "{log:?}");
    let pid = s.child.id().to_string();
    tool("kill", &["-TERM", &pid]).ok();
    let code = s.exit_code(Duration::from_secs(10));
    assert_eq!(code, Some(0), "a clean exit on SIGTERM");
}

#[test]
fn serve_refuses_a_bad_listen_address() {
    let n = published();
    let r = n.gazette(&["serve", "--listen", "nowhere"]).code(1);
    assert!(r.stderr.contains("IP:PORT"), "{}", r.stderr);
}

fn token(address: &str) -> String {
    gazette::token::Secret::new("test-secret-not-for-production")
        .token("papers.digest.example.org", address)
}

/// `subscribers list` lines for one address.
fn listed(n: &Newsletter, address: &str) -> String {
    let list = n.gazette(&["subscribers", "list"]).ok().stdout;
    list.lines()
        .filter(|l| l.split_whitespace().next() == Some(address))
        .collect::<Vec<_>>()
        .join("\n")
}

/// POSTs `body` as a form; returns (status, body).
fn post_form(url: &str, body: &str) -> (String, String) {
    let r = curl(&[
        "-H",
        "Content-Type: application/x-www-form-urlencoded",
        "--data-raw",
        body,
        "-w",
        "\n%{http_code}",
        url,
    ]);
    let (body, code) = r.stdout.rsplit_once('\n').unwrap();
    (code.to_string(), body.to_string())
}

#[test]
fn serve_unsubscribe_get_changes_nothing_and_one_click_post_unsubscribes() {
    let n = published();
    n.gazette(&["subscribers", "add", "reader@example.org"])
        .ok();
    n.gazette(&["subscribers", "add", "other@example.org"]).ok();
    let s = serve(&n);
    let url = format!(
        "{}unsubscribe?token={}",
        s.base,
        token("reader@example.org")
    );

    // GET (a link scanner, a preview) shows the button and changes nothing.
    for _ in 0..2 {
        let page = curl(&["-w", "\n%{http_code}", &url]).stdout;
        assert!(page.ends_with("\n200"), "{page}");
        assert!(page.contains("<form method=\"post\""), "{page}");
        // Masked: a forwarded email's link does not tell who it was sent to.
        assert!(page.contains("<strong>r***@e***.org</strong>"), "{page}");
        assert!(!page.contains("reader@example.org"), "{page}");
        assert!(!page.contains("reader"), "{page}");
    }
    let h = headers(&[&url]);
    assert_eq!(header(&h, "referrer-policy"), Some("no-referrer"));
    assert!(header(&h, "content-security-policy").is_some());
    assert!(
        listed(&n, "reader@example.org").contains("active"),
        "{}",
        listed(&n, "reader@example.org")
    );
    assert_eq!(n.gazette(&["subscribers", "count"]).ok().stdout.trim(), "2");

    // RFC 8058 one-click; twice is the same as once.
    for _ in 0..2 {
        let (code, body) = post_form(&url, "List-Unsubscribe=One-Click");
        assert_eq!(code, "200", "{body}");
        // The sample newsletter is zh-CN.
        assert!(body.contains("你已退订"), "{body}");
        assert!(!body.contains("reader"), "{body}");
    }
    assert!(
        listed(&n, "reader@example.org").contains("unsubscribed"),
        "{}",
        listed(&n, "reader@example.org")
    );
    assert!(listed(&n, "other@example.org").contains("active"));
    assert_eq!(n.gazette(&["subscribers", "count"]).ok().stdout.trim(), "1");

    // The default unsubscribe_url's spelling (`unsubscribe/?token=`) works too.
    let slash = format!(
        "{}unsubscribe/?token={}",
        s.base,
        token("other@example.org")
    );
    assert_eq!(post_form(&slash, "List-Unsubscribe=One-Click").0, "200");
    assert_eq!(n.gazette(&["subscribers", "count"]).ok().stdout.trim(), "0");
}

#[test]
fn serve_unsubscribe_refuses_forged_and_truncated_tokens() {
    let n = published();
    n.gazette(&["subscribers", "add", "reader@example.org"])
        .ok();
    let s = serve(&n);
    let good = token("reader@example.org");
    let forged = gazette::token::Secret::new("another-key")
        .token("papers.digest.example.org", "reader@example.org");
    let other_list = gazette::token::Secret::new("test-secret-not-for-production")
        .token("other.list", "reader@example.org");
    for bad in [
        &good[..good.len() - 3],
        // Only the tag, without the sealed address.
        &good[..22],
        &good[..good.len() / 2],
        forged.as_str(),
        other_list.as_str(),
        "",
        "%00",
        "not-a-token",
    ] {
        let url = format!("{}unsubscribe?token={bad}", s.base);
        assert_eq!(status(&url), "400", "GET {bad}");
        assert_eq!(
            post_form(&url, "List-Unsubscribe=One-Click").0,
            "400",
            "POST {bad}"
        );
    }
    assert_eq!(status(&s.url("unsubscribe")), "400");
    assert_eq!(n.gazette(&["subscribers", "count"]).ok().stdout.trim(), "1");
    // A body over the limit does not get in either.
    let big = "x".repeat(100_000);
    let url = format!("{}unsubscribe?token={good}", s.base);
    let (code, _) = post_form(&url, &big);
    assert_eq!(code, "413");
    assert_eq!(n.gazette(&["subscribers", "count"]).ok().stdout.trim(), "1");
}

/// A status line and body: curl with `-w "\n%{http_code}"` and `args`.
fn fetch(args: &[&str]) -> (String, String) {
    let mut all = vec!["-w", "\n%{http_code}"];
    all.extend_from_slice(args);
    let r = curl(&all);
    let (body, code) = r.stdout.rsplit_once('\n').unwrap();
    (code.to_string(), body.to_string())
}

/// The `<h1>` of a page.
fn heading(page: &str) -> &str {
    page.split_once("<h1>")
        .and_then(|(_, rest)| rest.split_once("</h1>"))
        .map_or("", |(h, _)| h)
}

/// Each unsubscribe page (its status, `<html lang>`, heading and words) in the newsletter's
/// language: `lang`, then the headings and a phrase of each page, in the order GET, POST,
/// invalid link (GET and POST), too large, not allowed, unavailable.
fn assert_unsubscribe_pages(n: &Newsletter, lang: &str, want: [(&str, &str); 7]) {
    n.gazette(&["subscribers", "add", "reader@example.org"])
        .ok();
    let s = serve(n);
    let path = format!("unsubscribe?token={}", token("reader@example.org"));
    let url = format!("{}{path}", s.base);
    let bad = format!("{}unsubscribe?token=not-a-token", s.base);
    let big = "x".repeat(100_000);
    let pages = [
        ("200", fetch(&[&url])),
        (
            "200",
            fetch(&["--data-raw", "List-Unsubscribe=One-Click", &url]),
        ),
        ("400", fetch(&[&bad])),
        (
            "400",
            fetch(&["--data-raw", "List-Unsubscribe=One-Click", &bad]),
        ),
        ("413", fetch(&["--data-raw", &big, &url])),
        ("405", fetch(&["-X", "PUT", &url])),
    ];
    let html_lang = format!("<html lang=\"{lang}\">");
    for (i, (status, (code, page))) in pages.iter().enumerate() {
        assert_eq!(code, status, "page {i}: {page}");
        assert!(page.contains(&html_lang), "page {i}: {page}");
        assert_eq!(heading(page), want[i].0, "page {i}: {page}");
        assert!(
            page.contains(&format!("<title>{}</title>", want[i].0)),
            "{page}"
        );
        assert!(page.contains(want[i].1), "page {i}: {page}");
        assert!(!page.contains("reader"), "page {i}: {page}");
    }
    assert!(
        listed(n, "reader@example.org").contains("unsubscribed"),
        "{}",
        listed(n, "reader@example.org")
    );
    drop(s);

    // Without a usable key (too short), every link is unavailable, in the same language.
    let port = crate::support::free_port();
    let mut command = n.command(&["serve", "--listen", &format!("127.0.0.1:{port}")]);
    command.env("GAZETTE_SECRET", "short");
    let s = Serve::spawn(&mut command, port);
    let (code, page) = fetch(&[&format!("{}{path}", s.base)]);
    assert_eq!(code, "503", "{page}");
    assert!(page.contains(&html_lang), "{page}");
    assert_eq!(heading(&page), want[6].0, "{page}");
    assert!(page.contains(want[6].1), "{page}");
    drop(s);
}

#[test]
fn serve_unsubscribe_pages_are_in_chinese_for_a_zh_cn_newsletter() {
    let n = published();
    assert!(n.read("gazette.toml").contains("language = \"zh-CN\""));
    // The confirm page's button and question, the address masked.
    {
        let s = serve(&n);
        let url = format!(
            "{}unsubscribe?token={}",
            s.base,
            token("reader@example.org")
        );
        let (_, page) = fetch(&[&url]);
        assert!(
            page.contains("<p>确定不再向 <strong>r***@e***.org</strong> 发送本刊吗？</p>"),
            "{page}"
        );
        assert!(
            page.contains("<button type=\"submit\">确认退订</button>"),
            "{page}"
        );
        assert!(
            !page.contains("Stop sending") && !page.contains(">Unsubscribe<"),
            "{page}"
        );
        // A Chinese address is masked by characters, not bytes.
        let cjk = format!("{}unsubscribe?token={}", s.base, token("读者@例子.中国"));
        let (code, page) = fetch(&[&cjk]);
        assert_eq!(code, "200", "{page}");
        assert!(page.contains("<strong>读***@例***.中国</strong>"), "{page}");
        assert!(!page.contains("读者"), "{page}");
    }
    assert_unsubscribe_pages(
        &n,
        "zh-CN",
        [
            ("退订", "确认退订"),
            ("已退订", "你已退订，之后的期刊不会再发到这个地址。"),
            ("链接无效", "这个退订链接无效"),
            ("链接无效", "这个退订链接无效"),
            ("请求过大", "请求内容过大"),
            ("不支持的请求", "这个页面只能打开"),
            ("暂不可用", "目前无法处理退订"),
        ],
    );
}

#[test]
fn serve_unsubscribe_pages_are_in_english_for_an_en_newsletter() {
    let n = published();
    n.edit_toml("language = \"zh-CN\"", "language = \"en\"");
    {
        let s = serve(&n);
        let url = format!(
            "{}unsubscribe?token={}",
            s.base,
            token("reader@example.org")
        );
        let (_, page) = fetch(&[&url]);
        assert!(
            page.contains("<p>Stop sending this newsletter to <strong>r***@e***.org</strong>?</p>"),
            "{page}"
        );
        assert!(
            page.contains("<button type=\"submit\">Unsubscribe</button>"),
            "{page}"
        );
        assert!(!page.contains("退订"), "{page}");
    }
    assert_unsubscribe_pages(
        &n,
        "en",
        [
            ("Unsubscribe", "Unsubscribe</button>"),
            ("Unsubscribed", "You are unsubscribed."),
            ("Invalid link", "This unsubscribe link is not valid."),
            ("Invalid link", "This unsubscribe link is not valid."),
            ("Too large", "The request is too large."),
            ("Not allowed", "This page can only be opened"),
            (
                "Unavailable",
                "This list cannot take unsubscribes right now.",
            ),
        ],
    );
}
