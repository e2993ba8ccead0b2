//! The lints of one issue's body: numbered headings that skip, links and images gazette
//! cannot use, raw HTML that runs script or that mail clients strip. Read from the same
//! parse the renderer uses ([`markdown::ranged_events`]), so the two never disagree.

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;

use pulldown_cmark::{Event, HeadingLevel, Tag, TagEnd};
use rayon::prelude::*;

use crate::diagnostic::Diagnostic;
use crate::issue::Issue;
use crate::render::markdown;

/// Raw HTML elements in the body that email clients strip or that do not belong in a
/// newsletter: `(tag name, byte range)`.
fn unsafe_html(body: &str) -> Vec<(String, Range<usize>)> {
    const TAGS: [&str; 12] = [
        "script", "form", "iframe", "svg", "object", "embed", "input", "meta", "base", "style",
        "link", "frame",
    ];
    let mut found = Vec::new();
    for (event, range) in markdown::ranged_events(body) {
        if let Event::Html(h) | Event::InlineHtml(h) = event {
            let lower = h.to_ascii_lowercase();
            for tag in TAGS {
                let open = format!("<{tag}");
                let at_tag = lower.match_indices(&open).any(|(i, _)| {
                    lower[i + open.len()..]
                        .chars()
                        .next()
                        .is_none_or(|c| c.is_whitespace() || c == '>' || c == '/')
                });
                if at_tag {
                    found.push((format!("<{tag}>"), range.clone()));
                }
            }
            // What the sanitiser removes from tags it keeps: event handlers and script URLs,
            // with the tabs, newlines and entities browsers ignore inside a scheme.
            let squeezed: String = lower
                .replace("&#x09;", "")
                .replace("&#9;", "")
                .replace("&#x0a;", "")
                .replace("&#10;", "")
                .replace("&tab;", "")
                .replace("&newline;", "")
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            if squeezed.contains("javascript:") || squeezed.contains("vbscript:") {
                found.push(("a `javascript:` URL".to_string(), range.clone()));
            }
            let handler = lower.match_indices(" on").any(|(i, _)| {
                let rest = &lower[i + 3..];
                let name_len = rest.chars().take_while(char::is_ascii_lowercase).count();
                name_len > 0 && rest[name_len..].trim_start().starts_with('=')
            });
            if handler {
                found.push(("an event handler (on...=)".to_string(), range.clone()));
            }
        }
    }
    found
}

/// Headings that start with a number ("1、", "2.", "3)") whose number skips or repeats the
/// previous numbered heading of the same level: `(message, byte range)`.
fn heading_number_problems(body: &str) -> Vec<(String, Range<usize>)> {
    let mut problems = Vec::new();
    let mut last: [Option<u64>; 6] = [None; 6];
    let mut current: Option<(HeadingLevel, Range<usize>, String)> = None;
    for (event, range) in markdown::ranged_events(body) {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                current = Some((level, range, String::new()))
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, _, text)) = current.as_mut() {
                    text.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                let Some((level, range, text)) = current.take() else {
                    continue;
                };
                let Some(n) = leading_number(&text) else {
                    continue;
                };
                let slot = &mut last[level as usize - 1];
                if let Some(prev) = *slot {
                    if n == prev {
                        problems.push((
                            format!("heading number {n} repeats the previous heading's"),
                            range,
                        ));
                    } else if n != prev + 1 {
                        problems.push((format!("heading number {n} follows {prev}: a number is skipped or out of order"), range));
                    }
                }
                *slot = Some(n);
            }
            _ => {}
        }
    }
    problems
}

fn leading_number(text: &str) -> Option<u64> {
    let text = text.trim_start();
    let digits: String = text.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() || digits.len() > 6 {
        return None;
    }
    let rest = text[digits.len()..].chars().next();
    matches!(
        rest,
        Some('、' | '.' | ')' | '）' | '．' | ':' | '：' | ' ')
    )
    .then(|| digits.parse().ok())?
}

/// Warnings about one issue's body: numbering, links, images and raw HTML.
/// Schemes to suggest for a typo (`hhttps:`, `ttps:`).
const KNOWN_SCHEMES: [&str; 4] = ["https", "http", "mailto", "tel"];

/// Why gazette cannot use a link's URL as written.
enum UrlProblem {
    Empty,
    UnknownScheme(String),
    Script,
}

impl std::fmt::Display for UrlProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UrlProblem::Empty => f.write_str("has an empty URL"),
            UrlProblem::UnknownScheme(s) => write!(f, "has an unknown scheme `{s}:`"),
            UrlProblem::Script => f.write_str("would run script; it is removed"),
        }
    }
}

/// The same rule as the renderer's [`markdown::usable_url`], said in words.
fn url_problem(dest: &str) -> Option<UrlProblem> {
    let dest = dest.trim();
    if dest.is_empty() {
        return Some(UrlProblem::Empty);
    }
    if markdown::usable_url(dest) {
        return None;
    }
    let scheme = markdown::scheme(dest)?;
    Some(match scheme.to_ascii_lowercase().as_str() {
        "javascript" | "vbscript" | "data" | "file" => UrlProblem::Script,
        _ => UrlProblem::UnknownScheme(scheme.to_string()),
    })
}

/// Problems in the issues a command is about to publish, preview or send: the same per-issue
/// lints `check` runs (links, images, headings, raw HTML), so that a missing image is seen
/// before it goes out. `all` is every issue (links between issues are checked against it).
pub fn issue_problems(dir: &Path, all: &[Issue], these: &[&Issue]) -> Vec<Diagnostic> {
    let issues_dir = crate::layout::issues(dir);
    let slugs: HashSet<&str> = all.iter().map(|i| i.slug.as_str()).collect();
    these
        .par_iter()
        .flat_map_iter(|issue| body_problems(issue, &issues_dir, &slugs))
        .collect()
}

pub(super) fn body_problems(
    issue: &Issue,
    issues_dir: &Path,
    slugs: &HashSet<&str>,
) -> Vec<Diagnostic> {
    let located = |d: Diagnostic, offset: usize| {
        let (line, column) = crate::diagnostic::line_column(&issue.body, offset);
        let mut d = d.at(&issue.body, line, column);
        d.line += issue.body_line - 1;
        d
    };
    let at =
        |offset: usize, message: String| located(Diagnostic::warning(&issue.path, message), offset);
    let error_at =
        |offset: usize, message: String| located(Diagnostic::error(&issue.path, message), offset);
    let mut found = Vec::new();
    for (message, range) in heading_number_problems(&issue.body) {
        found.push(at(range.start, message));
    }
    for (message, range) in markdown::nesting_problems(&issue.body) {
        found.push(
            at(range.start, message).with_hint(
                "lists and quotes this deep cannot be read anyway: restructure this part",
            ),
        );
    }
    let base = url::Url::parse("https://gazette.invalid/").expect("a constant URL parses");
    let page = base
        .join(&format!("{}/", issue.slug))
        .expect("a slug is a URL path");
    let place = markdown::Place {
        base_url: &base,
        page_url: &page,
    };
    for link in markdown::links(&issue.body) {
        let what = if link.is_image { "image" } else { "link" };
        if let Some(problem) = url_problem(&link.dest) {
            let message = format!("{what} `{}` {problem}", link.dest.escape_debug());
            let d = if matches!(problem, UrlProblem::Script) {
                error_at(link.range.start, message)
            } else {
                at(link.range.start, message)
            };
            found.push(match problem {
                UrlProblem::Empty => d.with_hint(
                    "put the address between the parentheses: [text](https://...); gazette shows the text without a link",
                ),
                UrlProblem::UnknownScheme(scheme) => {
                    let hint = crate::diagnostic::did_you_mean(&scheme, KNOWN_SCHEMES.iter().copied())
                        .map_or_else(String::new, |m| format!("{m} "));
                    d.with_hint(format!(
                        "{hint}gazette shows the text without a link; write https://, mailto: or a path relative to issues/"
                    ))
                }
                UrlProblem::Script => d.with_hint("a link cannot run script in a reader's browser; link to a page instead"),
            });
            continue;
        }
        if link.is_image && link.text.trim().is_empty() {
            found.push(
                at(link.range.start, "image has no alt text".into()).with_hint(
                    "describe the image between the brackets: ![a chart of results](fig.png)",
                ),
            );
        }
        let Some(abs) = markdown::absolute_url(&link.dest, place) else {
            found.push(
                at(link.range.start, format!("{what} `{}` cannot be made absolute", link.dest))
                    .with_hint("feeds and email need full URLs: write https://... or a path relative to issues/"),
            );
            continue;
        };
        // A path relative to issues/ must name an issue or a file that publish copies.
        if let Some(rel) = abs.strip_prefix(base.as_str()) {
            let rel = rel.split(['#', '?']).next().unwrap_or("");
            let ok = match rel.strip_suffix('/') {
                Some(slug) if !slug.contains('/') => slugs.contains(slug),
                _ => rel.is_empty() || issues_dir.join(rel).is_file(),
            };
            if !ok {
                let message = format!("{what} `{}` points at nothing gazette publishes", link.dest);
                // A missing image is a hole in the email every subscriber gets: an error, so
                // that `send` stops (unless --force).
                let d = if link.is_image {
                    error_at(link.range.start, message)
                } else {
                    at(link.range.start, message)
                };
                let linked_slug = link
                    .dest
                    .split('#')
                    .next()
                    .and_then(|p| p.strip_prefix("./").or(Some(p)))
                    .and_then(|p| p.strip_suffix(".md"));
                let near = linked_slug
                    .and_then(|slug| crate::diagnostic::did_you_mean(slug, slugs.iter().copied()));
                found.push(match near {
                    Some(m) => d.with_hint(format!("{m} (issues are linked as `slug.md`)")),
                    None => d.with_hint("relative paths are read from issues/: put the file there, or link another issue as `slug.md`"),
                });
            }
        }
    }
    if markdown::raw_html_too_deep(&issue.body) {
        let first = issue.body.find('<').unwrap_or(0);
        found.push(
            at(
                first,
                format!(
                    "raw HTML nested more than {} tags deep: gazette leaves all of this issue's raw HTML out",
                    markdown::MAX_RAW_HTML_DEPTH
                ),
            )
            .with_hint("write the content in Markdown, or nest the HTML less deeply"),
        );
    }
    for (what, range) in unsafe_html(&issue.body) {
        found.push(
            at(
                range.start,
                format!("raw HTML with {what}: gazette removes it from the page, the feeds and the email"),
            )
            .with_hint("nothing in an issue may run script or redirect the reader; link to the content instead"),
        );
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_and_repeated_heading_numbers_are_found() {
        let body = "## 1、A\n\n## 2、B\n\n## 4、C\n\n## 4、D\n\n## 5. E\n\n### 1) sub\n";
        let problems = heading_number_problems(body);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].0.contains("follows 2"));
        assert!(problems[1].0.contains("repeats"));
    }
}
