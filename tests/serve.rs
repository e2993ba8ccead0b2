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
        assert!(page.contains("reader@example.org"), "{page}");
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
        assert!(body.contains("unsubscribed"), "{body}");
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
