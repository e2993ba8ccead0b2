//! Static files from `feeds/`: content types, validators, conditional requests, gzip.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::body::{Body, Bytes};
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
    // One stat per request says whether the cached entry is still the file on disk (a new
    // publish changes its inode, time or length); only then is the file read again.
    if let Ok(meta) = std::fs::metadata(app.feeds.join(&relative)) {
        if meta.is_file() {
            if let Some(entry) = CACHE.get(&relative, &key(&meta)) {
                return respond(req.headers(), &entry);
            }
        }
    }
    let feeds = app.feeds.clone();
    let wants_gzip = accepts_gzip(req.headers());
    let found = tokio::task::spawn_blocking(move || match read(&feeds, &relative) {
        Found::File(path, bytes, meta) => {
            let cache = CACHE.fits(bytes.len());
            let entry = Arc::new(Entry::new(&path, bytes, &meta, cache || wants_gzip));
            if cache {
                CACHE.put(path, entry.clone());
            }
            Found::Entry(entry)
        }
        other => other,
    })
    .await;
    match found {
        Ok(Found::Entry(entry)) => respond(req.headers(), &entry),
        // An issue's folder without its slash: relative links on its page need the slash.
        Ok(Found::Folder) => {
            let location = format!("{}/", req.uri().path());
            Response::builder()
                .status(StatusCode::MOVED_PERMANENTLY)
                .header(header::LOCATION, location)
                .body(Body::empty())
                .unwrap_or_else(|_| not_found())
        }
        _ => not_found(),
    }
}

/// The files served, at most `MAX_BYTES` of them (bytes and gzip), each at most `MAX_FILE`;
/// anything beyond is read per request.
static CACHE: std::sync::LazyLock<Cache> = std::sync::LazyLock::new(|| Cache {
    map: Mutex::new((HashMap::new(), 0)),
});
const MAX_BYTES: usize = 24 * 1024 * 1024;
const MAX_FILE: usize = 2 * 1024 * 1024;

struct Cache {
    /// Entries by path below feeds/, and the bytes they hold in all.
    map: Mutex<(HashMap<PathBuf, Arc<Entry>>, usize)>,
}

impl Cache {
    fn get(&self, path: &Path, key: &Key) -> Option<Arc<Entry>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.0.get(path).filter(|e| e.key == *key).cloned()
    }

    fn fits(&self, len: usize) -> bool {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        len <= MAX_FILE && map.1 + 2 * len <= MAX_BYTES
    }

    fn put(&self, path: PathBuf, entry: Arc<Entry>) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let size = entry.size();
        if map.1 + size > MAX_BYTES {
            return;
        }
        map.1 += size;
        if let Some(old) = map.0.insert(path, entry) {
            map.1 -= old.size();
        }
    }
}

/// What identifies one version of a file: device, inode, modification time, length.
type Key = (u64, u64, SystemTime, u64);

fn key(meta: &std::fs::Metadata) -> Key {
    #[cfg(unix)]
    let (dev, ino) = {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    };
    #[cfg(not(unix))]
    let (dev, ino) = (0, 0);
    (
        dev,
        ino,
        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        meta.len(),
    )
}

/// One version of a file, ready to answer: its bytes, their gzip (when compressible), and
/// the headers computed from them.
struct Entry {
    key: Key,
    bytes: Bytes,
    gzip: Option<Bytes>,
    /// The strong validators of the identity and the gzip bodies: `"hex"`, `"hex-gz"`.
    etag: String,
    etag_gz: String,
    /// The same, and Last-Modified, ready to send.
    etag_value: HeaderValue,
    etag_gz_value: HeaderValue,
    last_modified: HeaderValue,
    modified: DateTime<Utc>,
    content_type: &'static str,
    cache_control: &'static str,
    compressible: bool,
    html: bool,
}

impl Entry {
    fn new(path: &Path, bytes: Vec<u8>, meta: &std::fs::Metadata, with_gzip: bool) -> Entry {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let (content_type, compressible) = content_type(name, &ext);
        let compressible = compressible && bytes.len() >= 256;
        let hash = Sha256::digest(&bytes);
        let hex: String = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
        let gzip = (compressible && with_gzip)
            .then(|| {
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(bytes.len() / 3),
                    Default::default(),
                );
                encoder.write_all(&bytes).ok()?;
                encoder.finish().ok().map(Bytes::from)
            })
            .flatten();
        let modified: DateTime<Utc> = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH).into();
        let etag = format!("\"{hex}\"");
        let etag_gz = format!("\"{hex}-gz\"");
        let value = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""));
        Entry {
            key: key(meta),
            bytes: Bytes::from(bytes),
            gzip,
            etag_value: value(&etag),
            etag_gz_value: value(&etag_gz),
            etag,
            etag_gz,
            last_modified: value(&modified.format("%a, %d %b %Y %H:%M:%S GMT").to_string()),
            modified,
            content_type,
            cache_control: cache_control(&ext),
            compressible,
            html: ext == "html",
        }
    }

    fn size(&self) -> usize {
        self.bytes.len() + self.gzip.as_ref().map_or(0, |g| g.len())
    }
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

/// The safety checks are made when a file is read (an entry is made): its real path must stay
/// inside `feeds`, and a later change of where a link points changes the stat key.
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
    Found::File(relative.to_path_buf(), bytes, Box::new(meta))
}

enum Found {
    File(PathBuf, Vec<u8>, Box<std::fs::Metadata>),
    Entry(Arc<Entry>),
    Folder,
    Nothing,
}

fn respond(request: &HeaderMap, entry: &Entry) -> Response {
    let gzip = entry.compressible && accepts_gzip(request);
    // A strong validator names one representation: the gzip body has its own.
    let etag = if gzip {
        &entry.etag_gz_value
    } else {
        &entry.etag_value
    };
    let mut builder = Response::builder()
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static(entry.content_type),
        )
        .header(header::ETAG, etag.clone())
        .header(header::LAST_MODIFIED, entry.last_modified.clone())
        .header(
            header::CACHE_CONTROL,
            HeaderValue::from_static(entry.cache_control),
        )
        .header(header::VARY, HeaderValue::from_static("Accept-Encoding"))
        .header(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
    if entry.html {
        builder = builder
            .header(header::CONTENT_SECURITY_POLICY, super::CSP)
            .header(header::REFERRER_POLICY, "no-referrer");
    }
    if not_modified(request, entry) {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_else(|_| not_found());
    }
    let body = match (&entry.gzip, gzip) {
        (Some(z), true) => {
            builder = builder.header(header::CONTENT_ENCODING, "gzip");
            z.clone()
        }
        (None, true) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "compression failed\n"),
        _ => entry.bytes.clone(),
    };
    builder
        .header(header::CONTENT_LENGTH, body.len())
        .status(StatusCode::OK)
        .body(Body::from(body))
        .unwrap_or_else(|_| not_found())
}

/// If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2); either ETag variant matches.
fn not_modified(request: &HeaderMap, entry: &Entry) -> bool {
    if let Some(inm) = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        return inm.split(',').map(str::trim).any(|tag| {
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            tag == "*" || tag == entry.etag || tag == entry.etag_gz
        });
    }
    if let Some(since) = request
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| DateTime::parse_from_rfc2822(v).ok())
    {
        return entry.modified.timestamp() <= since.timestamp();
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
