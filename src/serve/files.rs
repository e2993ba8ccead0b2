//! Static files from `feeds/`: content types, validators, conditional requests, gzip.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::Shared;

/// Answers GET and HEAD for a file under the prefix; everything else is 404 or 405.
pub(crate) async fn handle(State(app): Shared, req: Request) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let Some(rest) = req.uri().path().strip_prefix(app.prefix.as_str()) else {
        return not_found();
    };
    let Some(relative) = safe_relative(rest) else {
        return not_found();
    };
    let feeds = app.feeds.clone();
    let found = tokio::task::spawn_blocking(move || read(&feeds, &relative)).await;
    let (path, bytes, modified) = match found {
        Ok(Found::File(path, bytes, modified)) => (path, bytes, modified),
        // An issue's folder without its slash: relative links on its page need the slash.
        Ok(Found::Folder) => {
            let location = format!("{}/", req.uri().path());
            return Response::builder()
                .status(StatusCode::MOVED_PERMANENTLY)
                .header(header::LOCATION, location)
                .body(Body::empty())
                .unwrap_or_else(|_| not_found());
        }
        _ => return not_found(),
    };
    respond(req.headers(), &path, bytes, modified)
}

/// The decoded path below feeds/, or None for anything that could step outside it or names
/// a hidden file: `..`, `.`, empty segments, backslashes, NUL, and a `%` left after decoding
/// (double encoding). A path ending in `/` means its index.html.
fn safe_relative(raw: &str) -> Option<PathBuf> {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()?;
    if decoded.contains(['%', '\\', '\0']) {
        return None;
    }
    let mut path = PathBuf::new();
    let mut segments: Vec<&str> = decoded.split('/').collect();
    if segments.last() == Some(&"") {
        segments.pop();
        segments.push("index.html");
    }
    for segment in segments {
        if segment.is_empty() || segment.starts_with('.') {
            return None;
        }
        path.push(segment);
    }
    Some(path)
}

/// Reads the file if it is a regular file whose real path stays inside `feeds` (a symlink
/// pointing outside is not served).
fn read(feeds: &Path, relative: &Path) -> Found {
    let Ok(real) = feeds.join(relative).canonicalize() else {
        return Found::Nothing;
    };
    if !real.starts_with(feeds) {
        return Found::Nothing;
    }
    let Ok(meta) = std::fs::metadata(&real) else {
        return Found::Nothing;
    };
    if meta.is_dir() && real.join("index.html").is_file() {
        return Found::Folder;
    }
    if !meta.is_file() {
        return Found::Nothing;
    }
    let Ok(bytes) = std::fs::read(&real) else {
        return Found::Nothing;
    };
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    Found::File(relative.to_path_buf(), bytes, modified)
}

enum Found {
    File(PathBuf, Vec<u8>, SystemTime),
    Folder,
    Nothing,
}

fn respond(request: &HeaderMap, path: &Path, bytes: Vec<u8>, modified: SystemTime) -> Response {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let (content_type, compressible) = content_type(name, &ext);
    let hash = Sha256::digest(&bytes);
    let hex: String = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
    let gzip = compressible && bytes.len() >= 256 && accepts_gzip(request);
    // A strong validator names one representation: the gzip body has its own.
    let etag = if gzip {
        format!("\"{hex}-gz\"")
    } else {
        format!("\"{hex}\"")
    };
    let modified: DateTime<Utc> = modified.into();
    let last_modified = modified.format("%a, %d %b %Y %H:%M:%S GMT").to_string();

    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::ETAG, &etag)
        .header(header::LAST_MODIFIED, &last_modified)
        .header(header::CACHE_CONTROL, cache_control(&ext))
        .header(header::VARY, "Accept-Encoding")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if ext == "html" {
        builder = builder
            .header(header::CONTENT_SECURITY_POLICY, super::CSP)
            .header(header::REFERRER_POLICY, "no-referrer");
    }

    if not_modified(request, &hex, modified) {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_else(|_| not_found());
    }
    let body = if gzip {
        let mut encoder =
            flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 3), Default::default());
        if encoder.write_all(&bytes).is_err() {
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "compression failed\n");
        }
        builder = builder.header(header::CONTENT_ENCODING, "gzip");
        match encoder.finish() {
            Ok(b) => b,
            Err(_) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "compression failed\n"),
        }
    } else {
        bytes
    };
    builder
        .header(header::CONTENT_LENGTH, body.len())
        .status(StatusCode::OK)
        .body(Body::from(body))
        .unwrap_or_else(|_| not_found())
}

/// If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2); either ETag variant matches.
fn not_modified(request: &HeaderMap, hex: &str, modified: DateTime<Utc>) -> bool {
    if let Some(inm) = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        return inm.split(',').map(str::trim).any(|tag| {
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            tag == "*" || tag == format!("\"{hex}\"") || tag == format!("\"{hex}-gz\"")
        });
    }
    if let Some(since) = request
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| DateTime::parse_from_rfc2822(v).ok())
    {
        return modified.timestamp() <= since.timestamp();
    }
    false
}

fn accepts_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let q_zero = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q_zero
        })
}

fn content_type(name: &str, ext: &str) -> (&'static str, bool) {
    match (name, ext) {
        (crate::render::feed::RSS_FILE, _) => ("application/rss+xml; charset=utf-8", true),
        (crate::render::feed::ATOM_FILE, _) => ("application/atom+xml; charset=utf-8", true),
        (crate::render::feed::JSON_FILE, _) => ("application/feed+json; charset=utf-8", true),
        (_, "html") => ("text/html; charset=utf-8", true),
        (_, "xml") => ("application/xml; charset=utf-8", true),
        (_, "json") => ("application/json", true),
        (_, "css") => ("text/css; charset=utf-8", true),
        (_, "js") => ("text/javascript; charset=utf-8", true),
        (_, "txt") => ("text/plain; charset=utf-8", true),
        (_, "svg") => ("image/svg+xml", true),
        (_, "png") => ("image/png", false),
        (_, "jpg" | "jpeg") => ("image/jpeg", false),
        (_, "gif") => ("image/gif", false),
        (_, "webp") => ("image/webp", false),
        (_, "avif") => ("image/avif", false),
        (_, "ico") => ("image/vnd.microsoft.icon", false),
        (_, "woff2") => ("font/woff2", false),
        (_, "pdf") => ("application/pdf", false),
        _ => ("application/octet-stream", false),
    }
}

/// Pages and feeds change on publish: revalidate (cheap with the ETag). Assets rarely do.
fn cache_control(ext: &str) -> &'static str {
    match ext {
        "html" | "xml" | "json" => "no-cache",
        _ => "public, max-age=3600",
    }
}

pub(crate) fn plain(status: StatusCode, text: &'static str) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .body(Body::from(text))
        .unwrap_or_default()
}

fn not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "not found\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_hidden_paths_are_refused() {
        for bad in [
            "..",
            "../x",
            "a/../b",
            "%2e%2e/x",
            "%2E%2E",
            "%252e%252e/x",
            ".git",
            "a/.env",
            "a//b",
            "a\\b",
            "%00",
        ] {
            assert_eq!(safe_relative(bad), None, "{bad}");
        }
        assert_eq!(safe_relative(""), Some(PathBuf::from("index.html")));
        assert_eq!(safe_relative("a/"), Some(PathBuf::from("a/index.html")));
        assert_eq!(safe_relative("rss.xml"), Some(PathBuf::from("rss.xml")));
    }
}
