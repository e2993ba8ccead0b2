//! The publish pipeline: published issues -> rendered pages and feeds -> files under `feeds/`.
//! The one place that writes what `publish` produces; a file whose bytes did not change is
//! left alone.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};
use chrono::{DateTime, FixedOffset};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::Serialize;

use crate::config::Config;
use crate::diagnostic::Diagnostic;
use crate::email::{self, Prepared, Recipient, Templates};
use crate::feed::{self, Entry};
use crate::files;
use crate::issue::Issue;
use crate::markdown::{self, Place};
use crate::site::{self, Neighbour};

/// The output directory inside a newsletter.
pub const FEEDS_DIR: &str = "feeds";
/// Where rendered emails go: `outbox/<slug>/`.
pub const OUTBOX_DIR: &str = "outbox";
/// Length of a summary derived from the first paragraph, in characters.
pub const SUMMARY_CHARS: usize = 200;
/// The stylesheet used when the newsletter has no `templates/site.css`.
pub const DEFAULT_SITE_CSS: &str = include_str!("../templates/site.css");

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Rewrite only these issues' pages; empty means all.
    pub slugs: Vec<String>,
    /// Show a progress bar.
    pub progress: bool,
}

/// What a publish did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub published: usize,
    pub drafts: usize,
    pub scheduled: usize,
    pub written: usize,
    pub unchanged: usize,
    /// Pages of issues no longer published (back to draft, or rescheduled) that were removed.
    pub removed: usize,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "published {} issue{} ({} draft{}, {} scheduled): {} file{} written, {} unchanged{}",
            self.published,
            if self.published == 1 { "" } else { "s" },
            self.drafts,
            if self.drafts == 1 { "" } else { "s" },
            self.scheduled,
            self.written,
            if self.written == 1 { "" } else { "s" },
            self.unchanged,
            match self.removed {
                0 => String::new(),
                n => format!(
                    ", {n} unpublished page{} removed",
                    if n == 1 { "" } else { "s" }
                ),
            }
        )
    }
}

/// An issue rendered once, shared by its page, the feeds and the archive.
struct Rendered {
    html: Option<String>,
    summary: String,
}

/// The summary shown in feeds, the archive and the email preheader.
pub fn summary(issue: &Issue) -> String {
    issue
        .summary
        .clone()
        .unwrap_or_else(|| markdown::first_paragraph_text(&issue.body, SUMMARY_CHARS))
}

/// Writes `feeds/` for the issues published at `now`. `issues` are sorted by (date, slug).
pub fn publish(
    dir: &Path,
    config: &Config,
    issues: &[Issue],
    now: DateTime<FixedOffset>,
    options: &Options,
) -> anyhow::Result<Report> {
    let published: Vec<&Issue> = issues.iter().filter(|i| i.is_published(now)).collect();
    let mut report = Report {
        published: published.len(),
        drafts: issues.iter().filter(|i| i.draft).count(),
        scheduled: issues.iter().filter(|i| !i.draft && i.date > now).count(),
        ..Report::default()
    };
    for slug in &options.slugs {
        if !published.iter().any(|i| &i.slug == slug) {
            match issues.iter().find(|i| &i.slug == slug) {
                Some(i) if i.draft => bail!(
                    "issue `{slug}` is a draft; set draft = false in {} to publish it",
                    i.path.display()
                ),
                Some(i) => bail!(
                    "issue `{slug}` is scheduled for {}; it is published from then on",
                    i.date.to_rfc3339()
                ),
                None => bail!("no issue `{slug}`: there is no issues/{slug}.md"),
            }
        }
    }

    // Files under issues/ are copied as they are: none may land on a file publish writes.
    let assets = assets(&dir.join("issues"))?;
    if let Some((source, target)) = assets
        .iter()
        .find(|(_, target)| overwrites_output(target, issues))
    {
        bail!(
            "{} would be copied over feeds/{}, which publish writes; rename or move it",
            crate::diagnostic::shown_path(source).display(),
            target.display()
        );
    }

    let out = dir.join(FEEDS_DIR);
    let outbox = dir.join(OUTBOX_DIR);
    let templates = Templates::load(dir)?;
    let secret = email::sample_secret(dir);
    let written = AtomicUsize::new(0);
    let unchanged = AtomicUsize::new(0);
    let write = |path: PathBuf, bytes: &[u8]| -> anyhow::Result<()> {
        if files::write_if_changed(&path, bytes)? {
            written.fetch_add(1, Ordering::Relaxed);
        } else {
            unchanged.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    };

    let bar = if options.progress && published.len() >= 100 {
        ProgressBar::new(published.len() as u64).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} issues {per_sec} eta {eta}")
                .expect("a constant template parses"),
        )
    } else {
        ProgressBar::hidden()
    };

    let in_feeds = published.len().saturating_sub(config.feed_limit);
    let rendered: Vec<Rendered> = published
        .par_iter()
        .enumerate()
        .map(|(n, issue)| -> anyhow::Result<Rendered> {
            let named = options.slugs.contains(&issue.slug);
            let selected = options.slugs.is_empty() || named;
            let in_feed = n >= in_feeds;
            // The outbox holds the emails that may still be sent: the issues in the feeds'
            // window, or the ones named. `gazette preview` writes any other issue's.
            let mail = named || (options.slugs.is_empty() && in_feed);
            let needed = selected || in_feed;
            if !needed {
                bar.inc(1);
                return Ok(Rendered {
                    html: None,
                    summary: summary(issue),
                });
            }
            let page_url = config.issue_url(&issue.slug);
            let place = Place {
                base_url: &config.base_url,
                page_url: &page_url,
            };
            let (html, summary) = match &issue.summary {
                Some(summary) => (markdown::to_html(&issue.body, place), summary.clone()),
                None => markdown::to_html_and_first_paragraph(&issue.body, place, SUMMARY_CHARS),
            };
            if selected {
                let previous = n.checked_sub(1).map(|p| neighbour(published[p]));
                let next = published.get(n + 1).map(|i| neighbour(i));
                let body = relative_to_page(&html, &config.base_url);
                let page = site::issue_page(config, issue, &body, &summary, previous, next);
                write(out.join(&issue.slug).join("index.html"), page.as_bytes())?;
            }
            if mail {
                let email_html: std::borrow::Cow<'_, str> =
                    if markdown::may_hold_unsafe_html(&issue.body) {
                        markdown::to_email_html(&issue.body, place).into()
                    } else {
                        html.as_str().into()
                    };
                let prepared =
                    Prepared::with_fragment(config, issue, &email_html, &templates, &secret, None)
                        .with_context(|| format!("the email of {}", issue.path.display()))?;
                for (name, bytes) in email::files(&prepared, &sample_recipient(config))? {
                    write(outbox.join(&issue.slug).join(name), &bytes)?;
                }
            }
            bar.inc(1);
            let html = in_feed.then_some(html);
            Ok(Rendered { html, summary })
        })
        .collect::<anyhow::Result<_>>()?;
    bar.finish_and_clear();

    let entries: Vec<Entry<'_>> = published
        .iter()
        .zip(&rendered)
        .rev()
        .take(config.feed_limit)
        .map(|(issue, r)| Entry {
            issue,
            url: config.issue_url(&issue.slug).to_string(),
            html: r.html.clone().expect("feed entries are rendered"),
            summary: r.summary.clone(),
        })
        .collect();
    write(
        out.join(feed::RSS_FILE),
        feed::rss(config, &entries).as_bytes(),
    )?;
    write(
        out.join(feed::ATOM_FILE),
        feed::atom(config, &entries).as_bytes(),
    )?;
    write(
        out.join(feed::JSON_FILE),
        feed::json(config, &entries).as_bytes(),
    )?;

    let archive: Vec<(&Issue, String)> = published
        .iter()
        .zip(rendered)
        .rev()
        .map(|(i, r)| (*i, r.summary))
        .collect();
    write(
        out.join("index.html"),
        site::index_page(config, &archive).as_bytes(),
    )?;

    let css_path = dir.join("templates").join("site.css");
    let css = if css_path.exists() {
        files::read_text(&css_path).map_err(|d| anyhow::anyhow!("{d}"))?
    } else {
        DEFAULT_SITE_CSS.to_string()
    };
    write(out.join(site::STYLESHEET), css.as_bytes())?;

    for (source, target) in assets {
        let bytes = std::fs::read(&source)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", source.display()))?;
        write(out.join(target), &bytes)?;
    }

    for issue in issues.iter().filter(|i| !i.is_published(now)) {
        if remove_page(&out, &issue.slug)? {
            report.removed += 1;
        }
    }

    report.written = written.into_inner();
    report.unchanged = unchanged.into_inner();
    Ok(report)
}

/// An issue's HTML for its own page under `feeds/<slug>/`: links and images to the site itself
/// become relative (`../images/x.png`), so the pages work from any host, from a preview on
/// disk, and before base_url is set. Feeds and email keep absolute URLs.
fn relative_to_page(html: &str, base_url: &url::Url) -> String {
    let base = base_url.as_str();
    let mut out = html.to_string();
    for attr in ["href=\"", "src=\"", "href='", "src='"] {
        out = out.replace(&format!("{attr}{base}"), &format!("{attr}../"));
    }
    out
}

/// Markdown anywhere under `issues/`, and editors' backups of it (`x.md~`, `x.md.bak`): never
/// copied to `feeds/`, or a draft's text would go online.
fn is_issue_source(name: &str) -> bool {
    name.ends_with(".md") || name.ends_with('~') || name.contains(".md.")
}

/// Files under `issues/` that publish would copy over one of its own outputs, as errors.
pub fn asset_problems(issues_dir: &Path, issues: &[Issue]) -> Vec<Diagnostic> {
    let Ok(assets) = assets(issues_dir) else {
        return Vec::new();
    };
    assets
        .into_iter()
        .filter(|(_, target)| overwrites_output(target, issues))
        .map(|(source, target)| {
            Diagnostic::error(
                &source,
                format!(
                    "publish would copy this file over feeds/{}, which it writes itself",
                    target.display()
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

/// Removes `feeds/<slug>/index.html` of an issue that is not published, when gazette wrote
/// it; the directory goes too if nothing else is in it. Returns whether a page was removed.
fn remove_page(out: &Path, slug: &str) -> anyhow::Result<bool> {
    let page = out.join(slug).join("index.html");
    let Ok(text) = std::fs::read_to_string(&page) else {
        return Ok(false);
    };
    if !text.contains(r#"<meta name="generator" content="gazette">"#) {
        return Ok(false);
    }
    std::fs::remove_file(&page).with_context(|| format!("cannot remove {}", page.display()))?;
    // Fails, harmlessly, when the editor keeps other files there.
    let _ = std::fs::remove_dir(out.join(slug));
    Ok(true)
}

/// `email.sample_recipient` as a [`Recipient`].
pub fn sample_recipient(config: &Config) -> Recipient<'_> {
    Recipient {
        email: config.email.sample_recipient.email.as_ref(),
        name: config.email.sample_recipient.name.as_deref(),
    }
}

/// Writes one issue's email for the sample recipient into `out` (`email.html`, `email.txt`,
/// `message.eml`), leaving unchanged files alone. Returns how many files were written.
pub fn write_email(
    dir: &Path,
    config: &Config,
    issue: &Issue,
    out: &Path,
) -> anyhow::Result<usize> {
    let templates = Templates::load(dir)?;
    let secret = email::sample_secret(dir);
    let prepared = Prepared::new(config, issue, &templates, &secret, None)
        .with_context(|| format!("the email of {}", issue.path.display()))?;
    let mut written = 0;
    for (name, bytes) in email::files(&prepared, &sample_recipient(config))? {
        if files::write_if_changed(&out.join(name), &bytes)? {
            written += 1;
        }
    }
    Ok(written)
}

/// The previous or next issue, for a page's links.
pub fn neighbour<'a>(issue: &'a Issue) -> Neighbour<'a> {
    Neighbour {
        slug: &issue.slug,
        title: &issue.title,
    }
}

/// Files other than issues under `issues/` (images, attachments): `(source, path under feeds/)`,
/// in sorted order. Hidden files, Markdown and editor backups are skipped.
pub fn assets(issues_dir: &Path) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::new()];
    // Each real directory once: a symbolic link back up (`images/up -> ..`) is not a loop.
    let mut seen = std::collections::HashSet::new();
    while let Some(rel) = stack.pop() {
        let here = issues_dir.join(&rel);
        if !seen.insert(here.canonicalize().unwrap_or_else(|_| here.clone())) {
            continue;
        }
        let entries = std::fs::read_dir(&here)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", here.display()))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| anyhow::anyhow!("cannot read {}: {e}", here.display()))?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let rel_path = rel.join(&name);
            let path = entry.path();
            if path.is_dir() {
                stack.push(rel_path);
            } else if !is_issue_source(&name.to_string_lossy()) {
                found.push((path, rel_path));
            }
        }
    }
    found.sort();
    Ok(found)
}
