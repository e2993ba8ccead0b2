//! The publish pipeline: published issues -> rendered pages and feeds -> files under `feeds/`.
//! The one place that writes what `publish` produces; a file whose bytes did not change is
//! left alone.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::Serialize;

use crate::assets;
use crate::config::Config;
use crate::files;
use crate::issue::Issue;
use crate::newsletter::Newsletter;
use crate::render::email::{self, Prepared, Recipient};
use crate::render::feed::{self, Entry};
use crate::render::markdown::{self, Place};
use crate::render::site::{self, Neighbour};

/// The largest file under `issues/` publish copies: beyond it, link the file from elsewhere.
pub const MAX_ASSET_BYTES: u64 = 256 * 1024 * 1024;

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
    /// Files publish wrote earlier that nothing produces any more, removed: pages of issues
    /// back to draft, rescheduled or deleted, assets no issue links to, outboxes of deleted
    /// issues.
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
                    ", {n} file{} no longer published removed",
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

/// Writes `feeds/` for the issues out at the newsletter's `now`.
pub fn publish(newsletter: &Newsletter, options: &Options) -> anyhow::Result<Report> {
    let Newsletter {
        dir,
        config,
        issues,
        now,
    } = newsletter;
    let (dir, now) = (dir.as_path(), *now);
    let published: Vec<&Issue> = newsletter.published().collect();
    let mut report = Report {
        published: published.len(),
        drafts: issues.iter().filter(|i| i.draft).count(),
        scheduled: issues.iter().filter(|i| !i.draft && i.date > now).count(),
        ..Report::default()
    };
    for slug in &options.slugs {
        newsletter.out(slug)?;
    }

    // Files under issues/ that the issues link to are copied as they are: none may land on a
    // file publish writes, and none may be a link out of issues/.
    let issues_dir = crate::layout::issues(dir);
    let scan = assets::scan(&issues_dir)?;
    let assets = assets::to_copy(&issues_dir, &scan, &published)?;
    if let Some(asset) = assets
        .iter()
        .find(|a| assets::overwrites_output(&a.rel, issues))
    {
        bail!(
            "{} would be copied over feeds/{}, which publish writes; rename or move it",
            crate::diagnostic::shown_path(&asset.source).display(),
            asset.rel.display()
        );
    }

    let out = crate::layout::feeds(dir);
    let outbox = crate::layout::outboxes(dir);
    // What a killed or failed earlier run left half-written never lingers.
    for root in [&out, &outbox] {
        if files::refuse_links(dir, root).is_ok() {
            files::remove_stale_temporaries(root);
        }
    }
    let templates = newsletter.templates()?;
    let secret = email::sample_secret(dir);
    let written = AtomicUsize::new(0);
    let unchanged = AtomicUsize::new(0);
    // Every file under feeds/ this run produces, for the manifest of what publish wrote.
    let produced = std::sync::Mutex::new(Vec::new());
    let write = |path: PathBuf, bytes: &[u8]| -> anyhow::Result<()> {
        if let Ok(rel) = path.strip_prefix(&out) {
            produced
                .lock()
                .expect("no writer panics")
                .push(rel.to_path_buf());
        }
        if files::write_output(dir, &path, bytes)? {
            written.fetch_add(1, Ordering::Relaxed);
        } else {
            unchanged.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    };

    let bar = if options.progress && published.len() >= 100 {
        ProgressBar::new(published.len() as u64).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} issues {rate} eta {eta}")
                .expect("a constant template parses")
                .with_key("rate", crate::output::rounded_rate),
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
                    summary: crate::render::summary(issue),
                });
            }
            let page_url = config.issue_url(&issue.slug);
            let place = Place {
                base_url: &config.base_url,
                page_url: &page_url,
            };
            let (html, summary) = match &issue.summary {
                Some(summary) => (markdown::to_html(&issue.body, place), summary.clone()),
                None => markdown::to_html_and_first_paragraph(
                    &issue.body,
                    place,
                    crate::render::SUMMARY_CHARS,
                ),
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

    let css_path = crate::layout::template(dir, "site.css");
    let css = if css_path.exists() {
        files::read_text(&css_path)?
    } else {
        crate::render::builtin::SITE_CSS.to_string()
    };
    write(out.join(site::STYLESHEET), css.as_bytes())?;

    for asset in assets {
        let bytes = files::read_bytes(&asset.source, MAX_ASSET_BYTES)?;
        write(out.join(&asset.rel), &bytes)?;
    }

    // What publish wrote before and no issue produces any more goes offline: the pages of
    // issues unpublished or deleted, assets no issue links to, outboxes of deleted issues.
    let mut produced = produced.into_inner().expect("no writer panics");
    for issue in &published {
        // Pages not rewritten this run (`publish SLUG`) are still produced.
        produced.push(PathBuf::from(&issue.slug).join("index.html"));
    }
    let live: std::collections::BTreeSet<&str> =
        published.iter().map(|i| i.slug.as_str()).collect();
    report.removed += remove_pages(dir, &out, &live)?;
    report.removed += remove_unproduced(dir, &out, produced)?;
    let known: std::collections::BTreeSet<&str> = issues.iter().map(|i| i.slug.as_str()).collect();
    report.removed += remove_orphan_outboxes(dir, &outbox, &known)?;

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

/// Where publish lists the files it wrote under `feeds/`, so that it later removes only those.
pub fn manifest_path(dir: &Path) -> PathBuf {
    crate::layout::state(dir, "published")
}

/// Removes the files the last publish wrote under `out` that this one did not produce, then
/// records what this one produced. Returns how many files went.
fn remove_unproduced(dir: &Path, out: &Path, mut produced: Vec<PathBuf>) -> anyhow::Result<usize> {
    produced.sort();
    produced.dedup();
    let manifest = manifest_path(dir);
    let before = match std::fs::read_to_string(&manifest) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", manifest.display())),
    };
    let mut removed = 0;
    for line in before.lines() {
        let rel = Path::new(line);
        let plain = rel
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain || produced.binary_search(&rel.to_path_buf()).is_ok() {
            continue;
        }
        if remove_file_and_empty_dirs(dir, out, rel)? {
            removed += 1;
        }
    }
    let mut text = String::new();
    for rel in &produced {
        if let Some(line) = rel.to_str().filter(|l| !l.contains('\n')) {
            text.push_str(line);
            text.push('\n');
        }
    }
    if text != before {
        files::write_output(dir, &manifest, text.as_bytes())?;
    }
    Ok(removed)
}

/// Removes `root/rel` when it is a file (never through a link), then its parent directories
/// up to `root` while they are empty. Returns whether the file was there.
fn remove_file_and_empty_dirs(dir: &Path, root: &Path, rel: &Path) -> anyhow::Result<bool> {
    let path = root.join(rel);
    files::refuse_links(dir, &path)?;
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => {}
        _ => return Ok(false),
    }
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    let mut parent = path.parent();
    while let Some(p) = parent.filter(|p| *p != root && p.starts_with(root)) {
        // Fails, harmlessly, when the editor keeps other files there.
        if std::fs::remove_dir(p).is_err() {
            break;
        }
        parent = p.parent();
    }
    Ok(true)
}

/// Removes `feeds/<slug>/index.html` pages that gazette wrote (they say so in a meta tag) for
/// slugs not in `live`: issues back to draft, rescheduled, or whose file was deleted. The
/// directory goes too if nothing else is in it. Returns how many pages went.
fn remove_pages(
    dir: &Path,
    out: &Path,
    live: &std::collections::BTreeSet<&str>,
) -> anyhow::Result<usize> {
    let Ok(entries) = std::fs::read_dir(out) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(slug) = name.to_str() else { continue };
        if live.contains(slug) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let page = out.join(slug).join("index.html");
        let Ok(text) = files::read_bytes(&page, 64 * 1024 * 1024) else {
            continue;
        };
        if !String::from_utf8_lossy(&text).contains(r#"<meta name="generator" content="gazette">"#)
        {
            continue;
        }
        if remove_file_and_empty_dirs(dir, out, &Path::new(slug).join("index.html"))? {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Removes the outbox of issues whose file is gone (deleted or renamed): the files gazette
/// names (`email.html`, `email.txt`, `message.eml`, `dry-run/*.eml`), then the folders if
/// empty. Dry-run messages carry working unsubscribe links: they must not outlive their issue.
fn remove_orphan_outboxes(
    dir: &Path,
    outbox: &Path,
    known: &std::collections::BTreeSet<&str>,
) -> anyhow::Result<usize> {
    let Ok(entries) = std::fs::read_dir(outbox) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(slug) = name.to_str() else { continue };
        if known.contains(slug) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let mut ours: Vec<PathBuf> = [email::HTML_FILE, email::TEXT_FILE, email::MESSAGE_FILE]
            .iter()
            .map(|f| Path::new(slug).join(f))
            .collect();
        if let Ok(dry) = std::fs::read_dir(outbox.join(slug).join("dry-run")) {
            for e in dry.flatten() {
                if e.file_name().to_string_lossy().ends_with(".eml") {
                    ours.push(Path::new(slug).join("dry-run").join(e.file_name()));
                }
            }
        }
        for rel in ours {
            if remove_file_and_empty_dirs(dir, outbox, &rel)? {
                removed += 1;
            }
        }
    }
    Ok(removed)
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
    let templates = crate::newsletter::templates(dir)?;
    let secret = email::sample_secret(dir);
    let prepared = Prepared::new(config, issue, &templates, &secret, None)
        .with_context(|| format!("the email of {}", issue.path.display()))?;
    let mut written = 0;
    for (name, bytes) in email::files(&prepared, &sample_recipient(config))? {
        if files::write_output(dir, &out.join(name), &bytes)? {
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
