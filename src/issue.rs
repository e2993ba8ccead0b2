//! An issue file -> [`Issue`]: TOML front matter between `+++` lines, then the Markdown body.
//! [`Issue::parse`] is pure; [`load_all`] reads `issues/*.md` and checks the archive as a whole
//! (duplicate slugs and ids). Every problem is a located [`Diagnostic`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, LocalResult, NaiveDate, NaiveTime, TimeZone};
use chrono_tz::Tz;
use rayon::prelude::*;
use serde::Deserialize;
use toml::Spanned;
use toml::value::Datetime;

use crate::diagnostic::Diagnostic;
use crate::diagnostic::toml_error;
use crate::files;
use crate::text::{is_xml_char, one_line, strip_invalid_xml_chars};

/// One issue of the newsletter, as the editor wrote it.
#[derive(Clone, Debug)]
pub struct Issue {
    /// The file name without `.md`; names the issue in commands and URLs.
    pub slug: String,
    pub path: PathBuf,
    /// Plain text, one line.
    pub title: String,
    pub date: DateTime<FixedOffset>,
    /// The permanent id: RSS guid, Atom id and JSON Feed id.
    pub id: String,
    /// Whether the front matter writes the id down (else it is derived from date and slug,
    /// and changes with them).
    pub id_written: bool,
    /// Plain text summary as written, if any.
    pub summary: Option<String>,
    pub number: Option<u32>,
    pub tags: Vec<String>,
    /// Empty means the newsletter's author.
    pub authors: Vec<String>,
    pub draft: bool,
    pub updated: Option<DateTime<FixedOffset>>,
    /// Email subject; the title when absent.
    pub subject: Option<String>,
    /// Free-form data under `[extra]`, kept for templates.
    pub extra: toml::Table,
    /// The Markdown body, with characters not allowed in XML removed.
    pub body: String,
    /// 1-based line of the file where the body starts, to locate problems in it.
    pub body_line: usize,
    /// The file's text before the body (the front matter and its `+++` lines), to locate
    /// problems found across issues, such as an id used twice.
    pub header: String,
    /// Byte offsets in `header` of the `id` and `number` values, where written.
    pub id_offset: Option<usize>,
    pub number_offset: Option<usize>,
}

/// A subject wider than this (display columns) is a warning: Gmail shows about 60 on a
/// desktop and fewer on a phone, and a subject this long reads as a paragraph.
pub const SUBJECT_WARN_COLUMNS: usize = 120;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    title: Spanned<String>,
    date: Spanned<Datetime>,
    id: Option<Spanned<String>>,
    summary: Option<String>,
    number: Option<Spanned<i64>>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    authors: Vec<String>,
    #[serde(default)]
    draft: bool,
    updated: Option<Spanned<Datetime>>,
    subject: Option<Spanned<String>>,
    #[serde(default)]
    extra: toml::Table,
}

/// What an issue needs from the settings to be read.
#[derive(Clone, Copy, Debug)]
pub struct Defaults<'a> {
    pub timezone: Tz,
    pub id_authority: &'a str,
}

impl Issue {
    /// Whether the issue is out: not a draft and not dated after `now`.
    pub fn is_published(&self, now: DateTime<FixedOffset>) -> bool {
        !self.draft && self.date <= now
    }

    /// The date shown as "last changed": `updated` when set, else `date`.
    pub fn modified(&self) -> DateTime<FixedOffset> {
        self.updated.unwrap_or(self.date).max(self.date)
    }

    /// The email subject line.
    pub fn subject(&self) -> &str {
        self.subject.as_deref().unwrap_or(&self.title)
    }

    /// Reads and parses one issue file.
    pub fn from_file(
        path: &Path,
        defaults: Defaults<'_>,
    ) -> Result<(Issue, Vec<Diagnostic>), Vec<Diagnostic>> {
        let text = files::read_text(path).map_err(|d| vec![d])?;
        Issue::parse(path, &text, defaults)
    }

    /// Parses the text of an issue file. Returns the issue and its warnings, or its errors.
    pub fn parse(
        path: &Path,
        text: &str,
        defaults: Defaults<'_>,
    ) -> Result<(Issue, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut warnings = Vec::new();
        let slug = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if !is_valid_slug(&slug) {
            return Err(vec![Diagnostic::error(
                path,
                format!("`{slug}` cannot be an issue's slug: the file name becomes its URL"),
            )
            .with_hint("rename the file using lowercase letters, digits and `-`, e.g. `2023-03-papers.md`")]);
        }

        if RESERVED_SLUGS.contains(&slug.as_str()) {
            return Err(vec![
                Diagnostic::error(
                    path,
                    format!(
                        "`{slug}` cannot be an issue's slug: publish writes feeds/{slug} itself"
                    ),
                )
                .with_hint("rename the file, e.g. to `2023-03-papers.md`"),
            ]);
        }

        let (front, front_start, body_start) = split_front_matter(path, text)?;
        let fm: FrontMatter = toml::from_str(front).map_err(|e| {
            vec![toml_error(
                path,
                text,
                front_start..front_start + front.len(),
                &e,
            )]
        })?;

        let mut errors = Vec::new();
        let at = |span: std::ops::Range<usize>| front_start + span.start;

        let title = one_line(fm.title.get_ref());
        // Zero-width characters alone (U+200B, U+2060, ...) show as nothing too.
        if crate::text::display_width(&title) == 0 {
            errors.push(
                Diagnostic::error(path, "the title is empty")
                    .at_offset(text, at(fm.title.span()))
                    .with_hint(
                        "write the issue's title, e.g. title = \"三月份值得一读的十篇论文\"",
                    ),
            );
        } else if title != *fm.title.get_ref() {
            warnings.push(
                Diagnostic::warning(path, "the title contains line breaks or control characters; they are shown as spaces")
                    .at_offset(text, at(fm.title.span())),
            );
        }

        // The email's subject is the title unless `subject` is set: inboxes show its start.
        let subject = fm
            .subject
            .as_ref()
            .map(|s| one_line(s.get_ref()))
            .filter(|s| !s.is_empty());
        let (shown, shown_at, field) = match (&subject, &fm.subject) {
            (Some(s), Some(spanned)) => (s.as_str(), spanned.span(), "subject"),
            _ => (title.as_str(), fm.title.span(), "title"),
        };
        let width = crate::text::display_width(shown);
        if width > SUBJECT_WARN_COLUMNS {
            let hint = if field == "title" {
                "set a shorter `subject = \"...\"` for the email, and shorten the title too if feed readers should show all of it"
            } else {
                "shorten the subject: say what the issue holds in its first few words"
            };
            warnings.push(
                Diagnostic::warning(
                    path,
                    format!("the email's subject ({field}) is {width} columns wide; inboxes show about the first 60 (a CJK character is two)"),
                )
                .at_offset(text, at(shown_at))
                .with_hint(hint),
            );
        }

        let date = match resolve_datetime(fm.date.get_ref(), defaults.timezone) {
            Ok(d) => Some(d),
            Err(message) => {
                errors.push(
                    Diagnostic::error(path, format!("date: {message}"))
                        .at_offset(text, at(fm.date.span()))
                        .with_hint(
                            "write e.g. date = 2023-03-31T09:00:00+08:00 or date = 2023-03-31",
                        ),
                );
                None
            }
        };
        let updated = match &fm.updated {
            None => None,
            Some(u) => match resolve_datetime(u.get_ref(), defaults.timezone) {
                Ok(d) => {
                    if date.is_some_and(|date| d < date) {
                        warnings.push(
                            Diagnostic::warning(
                                path,
                                "`updated` is before `date`; feeds use `date`",
                            )
                            .at_offset(text, at(u.span())),
                        );
                    }
                    Some(d)
                }
                Err(message) => {
                    errors.push(
                        Diagnostic::error(path, format!("updated: {message}"))
                            .at_offset(text, at(u.span())),
                    );
                    None
                }
            },
        };

        let number = match &fm.number {
            None => None,
            Some(n) => match u32::try_from(*n.get_ref()) {
                Ok(v) if v > 0 => Some(v),
                _ => {
                    errors.push(
                        Diagnostic::error(
                            path,
                            format!("number must be a positive integer, not {}", n.get_ref()),
                        )
                        .at_offset(text, at(n.span())),
                    );
                    None
                }
            },
        };

        let id = match (&fm.id, date) {
            (Some(id), _) => {
                let v = id.get_ref().trim();
                if !is_valid_id(v) {
                    errors.push(
                        Diagnostic::error(path, format!("id `{v}` is not a URI"))
                            .at_offset(text, at(id.span()))
                            .with_hint("ids look like \"tag:digest.example.org,2023-03-31:march-papers\"; once published, never change it"),
                    );
                }
                v.to_string()
            }
            (None, Some(date)) => derived_id(defaults.id_authority, date.date_naive(), &slug),
            (None, None) => String::new(),
        };

        let body = &text[body_start..];
        let body_line = text[..body_start].matches('\n').count() + 1;
        let cleaned = strip_invalid_xml_chars(body);
        if cleaned.len() != body.len() {
            let offset = body
                .char_indices()
                .find(|&(_, c)| !is_xml_char(c))
                .map_or(0, |(i, _)| i);
            warnings.push(
                Diagnostic::warning(path, "the body contains control characters that feeds and email cannot carry; they are removed")
                    .at_offset(text, body_start + offset),
            );
        }
        if cleaned.trim().is_empty() {
            warnings.push(
                Diagnostic::warning(path, "the issue has no body")
                    .at_offset(text, body_start)
                    .with_hint("write the issue's text after the closing `+++`"),
            );
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        let date = date.expect("a missing date was reported");
        Ok((
            Issue {
                slug,
                path: path.to_path_buf(),
                title,
                date,
                id,
                id_written: fm.id.is_some(),
                summary: fm.summary.map(|s| one_line(&s)).filter(|s| !s.is_empty()),
                number,
                tags: {
                    // A tag written twice is one category in the feeds.
                    let mut seen = std::collections::HashSet::new();
                    fm.tags
                        .iter()
                        .map(|t| one_line(t))
                        .filter(|t| !t.is_empty() && seen.insert(t.to_lowercase()))
                        .collect()
                },
                authors: fm
                    .authors
                    .iter()
                    .map(|a| one_line(a))
                    .filter(|a| !a.is_empty())
                    .collect(),
                draft: fm.draft,
                updated,
                subject,
                extra: fm.extra,
                body: cleaned,
                body_line,
                header: text[..body_start].to_string(),
                id_offset: fm.id.as_ref().map(|id| at(id.span())),
                number_offset: fm.number.as_ref().map(|n| at(n.span())),
            },
            warnings,
        ))
    }
}

/// Finds the `+++` fences. Returns the front matter text and the byte offsets where it and
/// the body start.
fn split_front_matter<'t>(
    path: &Path,
    text: &'t str,
) -> Result<(&'t str, usize, usize), Vec<Diagnostic>> {
    let first = text.lines().next().unwrap_or("");
    if text.trim().is_empty() {
        return Err(vec![
            Diagnostic::error(path, "the file is empty").with_hint(
                "an issue starts with `+++`, title = \"...\" and date = ..., then another `+++` and the text; `gazette new \"TITLE\"` writes one",
            ),
        ]);
    }
    if first.trim_end() != "+++" {
        let mut d =
            Diagnostic::error(path, "the file does not start with front matter").at(text, 1, 1);
        d = if first.trim_end() == "---" {
            d.with_hint(
                "gazette reads TOML front matter between two `+++` lines, not YAML between `---`",
            )
        } else {
            d.with_hint("start the file with a line `+++`, then title = \"...\" and date = ..., then another `+++`")
        };
        return Err(vec![d]);
    }
    let front_start = first.len() + 1;
    let mut offset = front_start.min(text.len());
    for line in text[offset..].split_inclusive('\n') {
        if line.trim_end() == "+++" {
            return Ok((&text[front_start..offset], front_start, offset + line.len()));
        }
        offset += line.len();
    }
    Err(vec![
        Diagnostic::error(path, "the front matter opened here is never closed")
            .at(text, 1, 1)
            .with_hint("did you forget the closing `+++` line after the last field?"),
    ])
}

/// Whether `path` (a `*.md` in the issues directory `root`) is read as an issue: a regular
/// file, or a link to one inside `root`. A directory named `x.md` is not an issue. A link out
/// of `root`, or a FIFO or device, is an error, and it is never opened: its content must not
/// reach an error message or a feed.
fn readable_issue(path: &Path, root: &Path) -> Result<bool, String> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    let kind = meta.file_type();
    if kind.is_dir() {
        return Ok(false);
    }
    if kind.is_symlink() {
        let target = path
            .canonicalize()
            .map_err(|e| format!("is a symbolic link that cannot be followed: {e}"))?;
        if !target.starts_with(root) {
            return Err(format!(
                "is a symbolic link to {}, outside the issues directory; gazette reads issues only from there",
                target.display()
            ));
        }
        return match std::fs::metadata(&target) {
            Ok(m) if m.is_file() => Ok(true),
            Ok(m) if m.is_dir() => Ok(false),
            _ => Err("is a symbolic link to something that is not a regular file".to_string()),
        };
    }
    if !kind.is_file() {
        return Err("is not a regular file (a FIFO, socket or device)".to_string());
    }
    Ok(true)
}

/// Reads every `*.md` in `dir` in parallel, sorted by (date, slug). Returns the issues that
/// parsed and every problem found, including duplicate slugs and ids across files.
pub fn load_all(
    dir: &Path,
    defaults: Defaults<'_>,
) -> anyhow::Result<(Vec<Issue>, Vec<Diagnostic>)> {
    let mut paths = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the issues directory {}: {e}",
            crate::diagnostic::shown_path(dir).display()
        )
    })?;
    let root = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut refused = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| anyhow::anyhow!("cannot read {}: {e}", dir.display()))?;
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        match readable_issue(&path, &root) {
            Ok(true) => paths.push(path),
            Ok(false) => {}
            Err(message) => refused.push(Diagnostic::error(&path, message).with_hint(
                "an issue is a regular Markdown file inside issues/: replace the link or special file with the file itself",
            )),
        }
    }
    paths.sort();
    let results: Vec<_> = paths
        .par_iter()
        .map(|p| Issue::from_file(p, defaults))
        .collect();

    let mut issues = Vec::with_capacity(results.len());
    let mut problems = refused;
    for result in results {
        match result {
            Ok((issue, warnings)) => {
                problems.extend(warnings);
                issues.push(issue);
            }
            Err(errors) => problems.extend(errors),
        }
    }

    // In date order, so the later of two clashing issues (usually the copy) gets the error.
    issues.sort_by(|a, b| a.date.cmp(&b.date).then_with(|| a.slug.cmp(&b.slug)));
    let mut slugs: HashMap<String, &Path> = HashMap::new();
    let mut ids: HashMap<&str, &Path> = HashMap::new();
    let mut numbers: HashMap<u32, &Path> = HashMap::new();
    let next_number = issues
        .iter()
        .filter_map(|i| i.number)
        .max()
        .map_or(1, |n| n + 1);
    for issue in &issues {
        if let Some(first) = slugs.insert(issue.slug.to_lowercase(), &issue.path) {
            problems.push(
                Diagnostic::error(
                    &issue.path,
                    format!(
                        "slug `{}` is also used by {}",
                        issue.slug,
                        crate::diagnostic::shown_path(first).display()
                    ),
                )
                .with_hint("slugs are compared without case; rename one of the files"),
            );
        }
        let place = |d: Diagnostic, offset: Option<usize>| match offset {
            Some(offset) => d.at_offset(&issue.header, offset),
            None => d,
        };
        if let Some(first) = ids.insert(&issue.id, &issue.path) {
            problems.push(
                place(Diagnostic::error(&issue.path, format!("id `{}` is also used by {}", issue.id, crate::diagnostic::shown_path(first).display())), issue.id_offset)
                    .with_hint("every issue needs its own id; if this file is a copy, give it a new `id` or remove the line"),
            );
        }
        // Readers see the number (No. 3, 第 3 期): twice is a copy's leftover, not an error.
        if let Some(number) = issue.number
            && let Some(&first) = numbers.get(&number)
        {
            problems.push(
                place(
                    Diagnostic::warning(
                        &issue.path,
                        format!(
                            "number {number} is also used by {}",
                            crate::diagnostic::shown_path(first).display()
                        ),
                    ),
                    issue.number_offset,
                )
                .with_hint(format!(
                    "each issue shows its own number; the next free one is {next_number}"
                )),
            );
        } else if let Some(number) = issue.number {
            numbers.insert(number, &issue.path);
        }
    }
    Ok((issues, problems))
}

/// `tag:<authority>,<date>:<slug>` (RFC 4151).
pub fn derived_id(authority: &str, date: NaiveDate, slug: &str) -> String {
    format!("tag:{authority},{}:{slug}", date.format("%Y-%m-%d"))
}

/// Converts a TOML date-time into an instant, reading bare dates and local times in `tz`.
fn resolve_datetime(dt: &Datetime, tz: Tz) -> Result<DateTime<FixedOffset>, String> {
    let Some(d) = dt.date else {
        return Err("a time without a day; write the date too".into());
    };
    let date = NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))
        .ok_or_else(|| format!("{dt} is not a day of the calendar"))?;
    let time = match dt.time {
        Some(t) => NaiveTime::from_hms_nano_opt(
            u32::from(t.hour),
            u32::from(t.minute),
            u32::from(t.second.unwrap_or(0)),
            t.nanosecond.unwrap_or(0),
        )
        .ok_or_else(|| format!("{dt} is not a time of day"))?,
        None => NaiveTime::MIN,
    };
    if d.year < 1970 {
        return Err(format!(
            "{dt} is before 1970, which no newsletter issue is; is the year a typo?"
        ));
    }
    let naive = date.and_time(time);
    let resolved = match dt.offset {
        Some(toml::value::Offset::Z) => Ok(naive.and_utc().fixed_offset()),
        Some(toml::value::Offset::Custom { minutes }) => {
            let offset = FixedOffset::east_opt(i32::from(minutes) * 60)
                .ok_or_else(|| format!("offset of {dt} is out of range"))?;
            offset
                .from_local_datetime(&naive)
                .single()
                .ok_or_else(|| format!("{dt} is out of range"))
        }
        None => match tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => Ok(t.fixed_offset()),
            LocalResult::Ambiguous(t, _) => Ok(t.fixed_offset()),
            LocalResult::None => Err(format!(
                "{dt} does not exist in {tz} (a clock change skips it); add an explicit offset"
            )),
        },
    }?;
    // Feeds write offsets in whole minutes; an old local mean time (+00:44:30) would be
    // rounded, which relabels the instant.
    if resolved.offset().local_minus_utc() % 60 != 0 {
        return Err(format!(
            "{dt} falls on a day when {tz} was {} seconds off UTC, which feeds cannot write; add an explicit offset",
            resolved.offset().local_minus_utc()
        ));
    }
    Ok(resolved)
}

/// Names of files `publish` writes at the top of `feeds/`: an issue's page directory of the
/// same name would collide with them.
pub const RESERVED_SLUGS: [&str; 5] = [
    "rss.xml",
    "atom.xml",
    "feed.json",
    "index.html",
    "style.css",
];

/// Whether a file name (without `.md`) can be an issue's slug: it becomes a URL path.
pub fn is_valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= 200
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
        && !slug.starts_with(['.', '-'])
}

fn is_valid_id(id: &str) -> bool {
    let Some((scheme, rest)) = id.split_once(':') else {
        return false;
    };
    !rest.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !id.chars().any(|c| {
            c.is_whitespace() || c.is_control() || !is_xml_char(c) || matches!(c, '<' | '>' | '"')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Defaults<'static> {
        Defaults {
            timezone: chrono_tz::Asia::Shanghai,
            id_authority: "digest.example.org",
        }
    }

    fn parse(text: &str) -> Result<(Issue, Vec<Diagnostic>), Vec<Diagnostic>> {
        Issue::parse(Path::new("issues/march.md"), text, defaults())
    }

    #[test]
    fn bare_date_is_midnight_in_the_newsletter_time_zone() {
        let (issue, warnings) =
            parse("+++\ntitle = \"T\"\ndate = 2023-03-31\n+++\nbody\n").unwrap();
        assert!(warnings.is_empty());
        assert_eq!(issue.date.to_rfc3339(), "2023-03-31T00:00:00+08:00");
        assert_eq!(issue.id, "tag:digest.example.org,2023-03-31:march");
        assert_eq!(issue.body, "body\n");
        assert_eq!(issue.body_line, 5);
    }

    #[test]
    fn a_tag_written_twice_is_one_tag() {
        let (issue, _) = parse(
            "+++\ntitle = \"T\"\ndate = 2023-03-31\ntags = [\"LLM\", \"扩散模型\", \"llm\", \" \", \"扩散模型\"]\n+++\n",
        )
        .unwrap();
        assert_eq!(issue.tags, ["LLM", "扩散模型"]);
    }

    #[test]
    fn offset_is_kept_not_relabelled() {
        let (issue, _) =
            parse("+++\ntitle = \"T\"\ndate = 2023-03-31T09:00:00-05:00\n+++\n").unwrap();
        assert_eq!(issue.date.to_rfc3339(), "2023-03-31T09:00:00-05:00");
    }

    #[test]
    fn unknown_key_suggests_the_right_one() {
        let err =
            parse("+++\ntitle = \"T\"\ndate = 2023-03-31\nsumary = \"x\"\n+++\n").unwrap_err();
        assert_eq!((err[0].line, err[0].column), (4, 1));
        assert_eq!(err[0].hint.as_deref(), Some("did you mean `summary`?"));
    }

    #[test]
    fn impossible_date_is_located() {
        let err = parse("+++\ntitle = \"T\"\ndate = 2023-02-30\n+++\n").unwrap_err();
        assert_eq!(err[0].line, 3, "{err:?}");
    }

    #[test]
    fn unterminated_and_missing_front_matter() {
        let err = parse("+++\ntitle = \"T\"\n").unwrap_err();
        assert!(err[0].message.contains("never closed"));
        let err = parse("---\ntitle: T\n---\n").unwrap_err();
        assert!(err[0].hint.as_deref().unwrap().contains("not YAML"));
    }

    #[test]
    fn title_with_line_breaks_becomes_one_line() {
        let (issue, warnings) =
            parse("+++\ntitle = \"a\\r\\nBcc: x@y\"\ndate = 2023-03-31\n+++\nb\n").unwrap();
        assert_eq!(issue.title, "a Bcc: x@y");
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn control_characters_are_removed_from_the_body_with_a_warning() {
        let (issue, warnings) =
            parse("+++\ntitle = \"T\"\ndate = 2023-03-31\n+++\na\u{1}b\u{FFFF}\n").unwrap();
        assert_eq!(issue.body, "ab\n");
        assert_eq!((warnings[0].line, warnings[0].column), (5, 2));
    }

    // Regression: an id holding U+FFFE passed as a URI and made every XML feed invalid.
    #[test]
    fn id_with_a_character_xml_cannot_carry_is_an_error() {
        let err =
            parse("+++\ntitle = \"T\"\ndate = 2023-03-31\nid = \"tag:x,2023:a\\uFFFEb\"\n+++\nb\n")
                .unwrap_err();
        assert_eq!((err[0].line, err[0].column), (4, 6), "{err:?}");
        assert!(err[0].message.contains("is not a URI"), "{err:?}");
    }

    // Regression: `issues/rss.xml.md` passed check, then publish made feeds/rss.xml a
    // directory and failed on every run after.
    #[test]
    fn slugs_that_name_a_feed_file_are_refused() {
        for name in [
            "rss.xml",
            "atom.xml",
            "feed.json",
            "index.html",
            "style.css",
        ] {
            let path = PathBuf::from(format!("issues/{name}.md"));
            let err = Issue::parse(
                &path,
                "+++\ntitle = \"T\"\ndate = 2023-03-31\n+++\nb\n",
                defaults(),
            )
            .unwrap_err();
            assert!(err[0].message.contains("publish writes"), "{name}: {err:?}");
        }
    }

    // Regression: year 0000 reached the feeds (no RFC 822 reader takes it), and a local mean
    // time offset of +08:05:43 was written as +08:06.
    #[test]
    fn dates_feeds_cannot_carry_are_errors() {
        let err =
            parse("+++\ntitle = \"T\"\ndate = 0000-01-01T00:00:00+08:00\n+++\nb\n").unwrap_err();
        assert!(err[0].message.contains("before 1970"), "{err:?}");
        let defaults = Defaults {
            timezone: chrono_tz::Africa::Monrovia,
            id_authority: "x.org",
        };
        let err = Issue::parse(
            Path::new("issues/a.md"),
            "+++\ntitle = \"T\"\ndate = 1971-06-01\n+++\nb\n",
            defaults,
        )
        .unwrap_err();
        assert!(err[0].message.contains("seconds off UTC"), "{err:?}");
        let (issue, _) = Issue::parse(
            Path::new("issues/a.md"),
            "+++\ntitle = \"T\"\ndate = 1973-06-01\n+++\nb\n",
            defaults,
        )
        .unwrap();
        assert_eq!(issue.date.to_rfc3339(), "1973-06-01T00:00:00+00:00");
    }
}
