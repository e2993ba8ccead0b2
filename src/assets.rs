//! The files under `issues/` that `publish` may copy to `feeds/`: regular files inside
//! `issues/` that a published issue links to, and nothing else. Finds and judges them; never
//! copies, and never follows a link out of `issues/`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use pulldown_cmark::{Event, Parser};

use crate::diagnostic::Diagnostic;
use crate::issue::Issue;
use crate::render::markdown::{self, Place};

/// A file under `issues/` that publish can copy.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Asset {
    /// Where it is read from: a path inside `issues/`, never through a link out of it.
    pub source: PathBuf,
    /// Its path under `feeds/`, the same as under `issues/` (`images/fig.png`).
    pub rel: PathBuf,
}

/// Why a file under `issues/` is never copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A symbolic link whose target is outside `issues/` (or cannot be resolved).
    LinkOut(PathBuf),
    /// A symbolic link to a directory: not followed, in or out of `issues/`.
    DirectoryLink,
    /// A FIFO, socket or device: reading it could block or never end.
    NotAFile,
}

impl Refusal {
    fn describe(&self) -> String {
        match self {
            Refusal::LinkOut(target) => format!(
                "is a symbolic link to {}, outside issues/",
                target.display()
            ),
            Refusal::DirectoryLink => "is a symbolic link to a directory".to_string(),
            Refusal::NotAFile => "is not a regular file (a FIFO, socket or device)".to_string(),
        }
    }
}

/// What is under `issues/`, other than issues: files publish may copy, and files it refuses.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    /// Sorted by path.
    pub files: Vec<Asset>,
    /// `(path under issues/, why)`, sorted by path.
    pub refused: Vec<(PathBuf, Refusal)>,
}

/// Markdown anywhere under `issues/`, and editors' backups of it (`x.md~`, `x.md.bak`): never
/// copied to `feeds/`, or a draft's text would go online.
fn is_issue_source(name: &str) -> bool {
    name.ends_with(".md") || name.ends_with('~') || name.contains(".md.")
}

/// Walks `issues/` without following directory links. Hidden files, Markdown and editor
/// backups are skipped. A file link is kept only when its target is a regular file inside
/// `issues/`.
pub fn scan(issues_dir: &Path) -> anyhow::Result<Scan> {
    let root = issues_dir.canonicalize().map_err(|e| {
        anyhow::anyhow!(
            "cannot read the issues directory {}: {e}",
            crate::diagnostic::shown_path(issues_dir).display()
        )
    })?;
    let mut scan = Scan::default();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = issues_dir.join(&rel);
        let entries = fs::read_dir(&here)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", here.display()))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| anyhow::anyhow!("cannot read {}: {e}", here.display()))?;
            let name = entry.file_name();
            let shown = name.to_string_lossy();
            if shown.starts_with('.') {
                continue;
            }
            let rel_path = rel.join(&name);
            let path = entry.path();
            // `file_type` does not follow links.
            let kind = entry
                .file_type()
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            if kind.is_dir() {
                stack.push(rel_path);
                continue;
            }
            if is_issue_source(&shown) {
                continue;
            }
            if kind.is_file() {
                scan.files.push(Asset {
                    source: path,
                    rel: rel_path,
                });
            } else if kind.is_symlink() {
                match judge_link(&path, &root) {
                    Ok(()) => scan.files.push(Asset {
                        source: path,
                        rel: rel_path,
                    }),
                    Err(why) => scan.refused.push((rel_path, why)),
                }
            } else {
                scan.refused.push((rel_path, Refusal::NotAFile));
            }
        }
    }
    scan.files.sort();
    scan.refused.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(scan)
}

/// A link is followed only to a regular file inside `root` (the canonical `issues/`).
fn judge_link(path: &Path, root: &Path) -> Result<(), Refusal> {
    let target = path
        .canonicalize()
        .map_err(|_| Refusal::LinkOut(fs::read_link(path).unwrap_or_default()))?;
    if !target.starts_with(root) {
        return Err(Refusal::LinkOut(target));
    }
    match fs::metadata(&target) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(m) if m.is_dir() => Err(Refusal::DirectoryLink),
        _ => Err(Refusal::NotAFile),
    }
}

/// The paths under `issues/` (as `images/fig.png`, percent-decoded) that these issues link to
/// or show, in Markdown or in raw HTML (`src`, `href`, `poster`).
pub fn referenced<'a>(issues: impl IntoIterator<Item = &'a Issue>) -> BTreeSet<PathBuf> {
    let base = url::Url::parse("https://gazette.invalid/").expect("a constant URL parses");
    let mut found = BTreeSet::new();
    for issue in issues {
        let page = base
            .join(&format!("{}/", issue.slug))
            .expect("a slug is a URL path");
        let place = Place {
            base_url: &base,
            page_url: &page,
        };
        let dests = markdown::links(&issue.body)
            .into_iter()
            .map(|l| l.dest)
            .chain(html_urls(&issue.body));
        for dest in dests {
            if let Some(rel) = local_path(&dest, place, &base) {
                found.insert(rel);
            }
        }
    }
    found
}

/// A destination that names a file under `issues/`, as a relative path.
fn local_path(dest: &str, place: Place<'_>, base: &url::Url) -> Option<PathBuf> {
    let abs = markdown::absolute_url(dest, place)?;
    let rel = abs.strip_prefix(base.as_str())?;
    let rel = rel.split(['#', '?']).next().unwrap_or("");
    if rel.is_empty() || rel.ends_with('/') {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(rel)
        .decode_utf8()
        .ok()?;
    let path = PathBuf::from(decoded.as_ref());
    // The URL parser has already removed `..`; a decoded one is not a path step we follow.
    path.components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
        .then_some(path)
}

/// URLs in raw HTML attributes that load or link something: `src`, `href`, `poster`.
fn html_urls(body: &str) -> Vec<String> {
    let mut urls = Vec::new();
    for event in Parser::new_ext(body, markdown::options()) {
        let (Event::Html(html) | Event::InlineHtml(html)) = event else {
            continue;
        };
        let lower = html.to_ascii_lowercase();
        for attr in ["src=", "href=", "poster="] {
            let mut from = 0;
            while let Some(at) = lower[from..].find(attr) {
                let start = from + at + attr.len();
                from = start;
                // Only whole attribute names: `data-src=` is not `src=`.
                let before = lower[..start - attr.len()].chars().next_back();
                if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-') {
                    continue;
                }
                let rest = &html[start..];
                let value = match rest.chars().next() {
                    Some(q @ ('"' | '\'')) => rest[1..].split(q).next().unwrap_or(""),
                    _ => rest
                        .split(|c: char| c.is_whitespace() || c == '>')
                        .next()
                        .unwrap_or(""),
                };
                if !value.is_empty() {
                    urls.push(value.to_string());
                }
            }
        }
    }
    urls
}

/// The assets publish copies for `published`: the scanned files they reference. A reference to
/// a refused file is an error, so a link never silently breaks.
pub fn to_copy<'a>(
    issues_dir: &Path,
    scan: &'a Scan,
    published: &[&Issue],
) -> anyhow::Result<Vec<&'a Asset>> {
    let wanted = referenced(published.iter().copied());
    if let Some((rel, why)) = scan.refused.iter().find(|(rel, _)| wanted.contains(rel)) {
        anyhow::bail!(
            "{} {}; an issue links to it, but publish copies only regular files inside issues/: replace it with the file itself",
            crate::diagnostic::shown_path(&issues_dir.join(rel)).display(),
            why.describe()
        );
    }
    Ok(scan
        .files
        .iter()
        .filter(|a| wanted.contains(&a.rel))
        .collect())
}

/// `check`'s view: refused files (errors when an issue links to them), and files no issue
/// links to (warnings: publish leaves them out).
pub fn problems(issues_dir: &Path, scan: &Scan, issues: &[Issue]) -> Vec<Diagnostic> {
    let wanted = referenced(issues);
    let mut found = Vec::new();
    for (rel, why) in &scan.refused {
        let path = issues_dir.join(rel);
        let d = if wanted.contains(rel) {
            Diagnostic::error(
                &path,
                format!(
                    "{}; an issue links to it, so publish would fail",
                    why.describe()
                ),
            )
        } else {
            Diagnostic::warning(
                &path,
                format!("{}; publish never copies it", why.describe()),
            )
        };
        found.push(d.with_hint(
            "publish copies only regular files inside issues/: put the file itself there",
        ));
    }
    for asset in scan.files.iter().filter(|a| !wanted.contains(&a.rel)) {
        found.push(
            Diagnostic::warning(
                &asset.source,
                "no issue links to this file, so publish does not copy it to feeds/",
            )
            .with_hint("link it from an issue to publish it, or keep it outside issues/"),
        );
    }
    found
}

/// Files under `issues/` that publish would copy over one of its own outputs, as errors.
pub fn asset_problems(issues_dir: &Path, issues: &[Issue]) -> Vec<Diagnostic> {
    let Ok(scan) = scan(issues_dir) else {
        return Vec::new();
    };
    let wanted = referenced(issues);
    scan.files
        .iter()
        .filter(|a| wanted.contains(&a.rel) && overwrites_output(&a.rel, issues))
        .map(|a| {
            Diagnostic::error(
                &a.source,
                format!(
                    "publish would copy this file over feeds/{}, which it writes itself",
                    a.rel.display()
                ),
            )
            .with_hint(
                "rename or move the file; files under issues/ are copied to feeds/ as they are",
            )
        })
        .collect()
}

/// Whether a file copied from `issues/` to `target` under `feeds/` would replace a feed, the
/// archive, the stylesheet or an issue's page.
pub fn overwrites_output(target: &Path, issues: &[Issue]) -> bool {
    let parts: Vec<&str> = target.iter().filter_map(|p| p.to_str()).collect();
    match parts.as_slice() {
        [name] => crate::issue::RESERVED_SLUGS.contains(name),
        [slug, "index.html"] => issues.iter().any(|i| i.slug == *slug),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_html_sources_are_found_but_not_data_attributes() {
        let urls = html_urls(
            "<img src=\"images/a.png\" data-src=\"b.png\">\n\n<video poster='c.jpg' src=d.mp4></video>\n",
        );
        assert_eq!(urls, ["images/a.png", "d.mp4", "c.jpg"]);
    }

    #[test]
    fn local_paths_are_decoded_and_never_climb() {
        let base = url::Url::parse("https://gazette.invalid/").unwrap();
        let page = base.join("x/").unwrap();
        let place = Place {
            base_url: &base,
            page_url: &page,
        };
        let got = |d: &str| local_path(d, place, &base);
        assert_eq!(got("images/my%20fig.png"), Some("images/my fig.png".into()));
        assert_eq!(got("./a.pdf#page=2"), Some("a.pdf".into()));
        assert_eq!(got("../../.gazette/secret"), Some(".gazette/secret".into()));
        // An encoded `..` is a `..` to the URL parser too: it cannot climb above issues/.
        assert_eq!(got("%2e%2e/secret"), Some("secret".into()));
        assert_eq!(got("other.md"), None);
        assert_eq!(got("https://example.org/a.png"), None);
        assert_eq!(got("#top"), None);
    }
}
