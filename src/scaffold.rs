//! `gazette init` and `gazette new`: the files a newsletter starts from. Never overwrites a file
//! that exists.

use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};

use crate::config::{self, Config};
use crate::files;
use crate::issue;

/// The host of the placeholder base_url that `init` writes; `check` warns while it is there.
pub const PLACEHOLDER_HOST: &str = "newsletter.example.com";

const GITIGNORE: &str = "outbox/\n.gazette/\n";

fn settings(title: &str, language: &str) -> String {
    // The title comes from the directory's name: any characters at all. Write it as TOML
    // strings, and quote the display name so `.drafts` or `a, b` still make an address.
    let mut name = crate::text::one_line(title).replace(['"', '\\'], "");
    if name.is_empty() {
        name = "My Newsletter".to_string();
    }
    let from = toml::Value::String(format!("\"{name}\" <newsletter@{PLACEHOLDER_HOST}>"));
    let title = toml::Value::String(name);
    format!(
        r#"# gazette settings: every key is described in gazette's README.

[newsletter]
title = {title}
description = "What this newsletter is about, in one line."
# CHANGE ME: the public URL where the feeds/ directory is served.
base_url = "https://{PLACEHOLDER_HOST}/"
language = "{language}"
timezone = "UTC"
# CHANGE ME: a domain you own. It goes into every issue's permanent id: never change it later.
id_authority = "{PLACEHOLDER_HOST}"
author = {{ name = "The Editors", email = "editors@{PLACEHOLDER_HOST}" }}
postal_address = "1 Example Street, Example City"

[feeds]
limit = 20

[email]
from = {from}

[smtp]
url = "smtp://127.0.0.1:25"
tls = "none"
concurrency = 4
"#
    )
}

/// Makes sure `.gitignore` names what must never be committed (the key that signs
/// unsubscribe links and the subscriber database live in `.gazette/`), adding the lines an
/// existing file lacks.
fn ensure_ignored(path: &Path) -> anyhow::Result<()> {
    let old = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    };
    let present: Vec<&str> = old
        .lines()
        .map(|l| l.trim().trim_start_matches('/'))
        .collect();
    let mut new = old.clone();
    for line in GITIGNORE.lines() {
        if !present.contains(&line) {
            if !new.is_empty() && !new.ends_with('\n') {
                new.push('\n');
            }
            new.push_str(line);
            new.push('\n');
        }
    }
    if new != old {
        files::write_if_changed(path, new.as_bytes())?;
    }
    Ok(())
}

/// Creates a newsletter in `dir` that publishes as it is, in English.
pub fn init(dir: &Path, quiet: bool) -> anyhow::Result<()> {
    init_in(dir, "en", quiet)
}

/// Creates a newsletter in `dir` in `language` (a BCP 47 tag such as `zh-CN`): its settings
/// name the language, and the footer and the first issue are written in it where gazette
/// has the words (see [`crate::render::i18n`]).
pub fn init_in(dir: &Path, language: &str, quiet: bool) -> anyhow::Result<()> {
    let valid = !language.is_empty()
        && language.len() <= 35
        && language
            .split('-')
            .all(|s| !s.is_empty() && s.len() <= 8 && s.chars().all(|c| c.is_ascii_alphanumeric()));
    if !valid {
        anyhow::bail!(
            "`{language}` is not a language tag: give one like `en` or `zh-CN` (gazette has its own words for {})",
            crate::render::i18n::LANGUAGES.join(", ")
        );
    }
    let words = crate::render::i18n::strings(language);
    let settings_path = dir.join(config::FILE_NAME);
    if settings_path.exists() {
        anyhow::bail!(
            "{} exists already: {} is a newsletter",
            settings_path.display(),
            dir.display()
        );
    }
    let title = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "My Newsletter".to_string());
    files::write_new(&settings_path, settings(&title, language).as_bytes())?;
    for (name, text) in [
        ("site.css", crate::render::builtin::SITE_CSS),
        ("email.css", crate::render::builtin::EMAIL_CSS),
        ("footer.md", words.footer),
    ] {
        let path = crate::layout::template(dir, name);
        if !path.exists() {
            files::write_new(&path, text.as_bytes())?;
        }
    }
    ensure_ignored(&dir.join(".gitignore"))?;
    crate::token::Secret::create(dir)?;
    let today = crate::clock::now()?.date_naive();
    // Written down, the id stays when the editor fixes the date, renames the file or changes
    // id_authority: the issue is the same one, and `send` will not mail it again.
    let id = issue::derived_id(PLACEHOLDER_HOST, today, "welcome");
    let welcome = if words.tag == "zh" {
        format!(
            "+++\ntitle = \"欢迎\"\ndate = {today}\nid = \"{id}\"\nnumber = 1\nsummary = \"第一期。\"\n+++\n\n\
             这是第一期。编辑 `issues/welcome.md`，运行 `gazette check`，然后运行 `gazette publish`。\n"
        )
    } else {
        format!(
            "+++\ntitle = \"Welcome\"\ndate = {today}\nid = \"{id}\"\nnumber = 1\nsummary = \"The first issue.\"\n+++\n\n\
             This is the first issue. Edit `issues/welcome.md`, run `gazette check`, then `gazette publish`.\n"
        )
    };
    files::write_new(
        &crate::layout::issues(dir).join("welcome.md"),
        welcome.as_bytes(),
    )?;
    if !quiet {
        crate::eline!(
            "created a newsletter in {}\n\nBefore the first real issue, edit {}:\n  - base_url: where feeds/ will be served\n  - id_authority: a domain you own (it goes into every issue's permanent id)\n  - email.from and postal_address\n\nThen: gazette -C {} publish",
            dir.display(),
            settings_path.display(),
            dir.display()
        );
    }
    Ok(())
}

/// The slug for a new issue: the title's Latin words (at most 60 bytes), or else the date
/// and a short hash of the title.
pub fn slugify(title: &str, date: &str) -> String {
    // A title mostly in Chinese (or any other script without ASCII words) has no slug in its
    // own words: the date and a short hash of the title keep it readable and distinct.
    let ascii = title.chars().filter(char::is_ascii_alphanumeric).count();
    let other = title
        .chars()
        .filter(|c| !c.is_ascii() && c.is_alphanumeric())
        .count();
    if other > ascii {
        return format!("{date}-{}", &short_hash(title));
    }
    let mut slug = String::new();
    for word in title
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let word = word.to_ascii_lowercase();
        if slug.len() + 1 + word.len() > MAX_SLUG_FROM_TITLE {
            if slug.is_empty() {
                // One very long word: its start (ASCII, so any byte is a boundary).
                slug.push_str(&word[..MAX_SLUG_FROM_TITLE]);
            }
            break;
        }
        if !slug.is_empty() {
            slug.push('-');
        }
        slug.push_str(&word);
    }
    if slug.is_empty() {
        format!("{date}-{}", &short_hash(title))
    } else {
        slug
    }
}

/// The longest slug made from a title, in bytes: file names stay far below the file system's
/// 255-byte limit, and URLs stay readable.
const MAX_SLUG_FROM_TITLE: usize = 60;

/// Six hex digits of the title's SHA-256: the same title gives the same slug.
fn short_hash(title: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(title.trim().as_bytes())[..3]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `issues/<slug>.md` as a draft with today's date and a minted id.
pub fn new_issue(
    dir: &Path,
    config: &Config,
    title: &str,
    slug: Option<&str>,
    now: DateTime<FixedOffset>,
) -> anyhow::Result<PathBuf> {
    // What `check` would refuse, `new` does not write: an empty title, a slug that is no
    // URL (or a path out of issues/).
    if crate::text::display_width(&crate::text::one_line(title)) == 0 {
        anyhow::bail!(
            "the title is empty: give the issue's title, e.g. gazette new \"三月份值得一读的十篇论文\""
        );
    }
    if let Some(s) = slug
        && (!issue::is_valid_slug(s) || issue::RESERVED_SLUGS.contains(&s))
    {
        anyhow::bail!(
            "`{s}` cannot be an issue's slug: it becomes the issue's file name and URL; give --slug lowercase letters, digits and `-`, e.g. --slug 2023-03-papers"
        );
    }
    let local = now.with_timezone(&config.timezone);
    let day = local.format("%Y-%m-%d").to_string();
    let base = match slug {
        Some(s) => s.to_string(),
        None => slugify(title, &day),
    };
    let issues = crate::layout::issues(dir);
    let slug = base;
    let taken = issues.join(format!("{slug}.md"));
    if taken.exists() {
        anyhow::bail!(
            "{} already exists: an issue has the slug `{slug}`; give this one its own with --slug NAME (e.g. --slug {slug}-2)",
            crate::diagnostic::shown_path(&taken).display()
        );
    }
    let id = issue::derived_id(&config.id_authority, local.date_naive(), &slug);
    let title_toml = toml::Value::String(crate::text::one_line(title)).to_string();
    let text = format!(
        "+++\ntitle = {title_toml}\ndate = {}\nid = \"{id}\"\n# summary = \"One line for the feed and the email preheader.\"\n# number = 1\n# tags = []\ndraft = true\n+++\n\nWrite the issue here.\n",
        local.fixed_offset().format("%Y-%m-%dT%H:%M:%S%:z"),
    );
    let path = issues.join(format!("{slug}.md"));
    files::write_new(&path, text.as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Regression: in a repository that already had a .gitignore, init left .gazette/ (the
    // unsubscribe key, the subscriber list) to be committed.
    #[test]
    fn an_existing_gitignore_gains_the_missing_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".gitignore");
        std::fs::write(&path, "target/\n/outbox/").unwrap();
        ensure_ignored(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "target/\n/outbox/\n.gazette/\n"
        );
        ensure_ignored(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "target/\n/outbox/\n.gazette/\n"
        );
    }

    #[test]
    fn slugs_come_from_latin_words_or_the_date() {
        assert_eq!(
            slugify("March: 10 Papers!", "2023-03-31"),
            "march-10-papers"
        );
        let chinese = slugify("三月份值得一读的十篇论文", "2023-03-31");
        assert_eq!(chinese.len(), "2023-03-31-".len() + 6, "{chinese}");
        assert!(chinese.starts_with("2023-03-31-"), "{chinese}");
        assert_ne!(chinese, slugify("四月份值得一读的十篇论文", "2023-03-31"));
        assert_eq!(chinese, slugify("三月份值得一读的十篇论文", "2023-03-31"));
        assert_eq!(slugify("三月 LLaMA 论文", "2023-03-31"), "llama");
        let long = slugify(&"word ".repeat(60), "2023-03-31");
        assert!(long.len() <= 60 && !long.ends_with('-'), "{long}");
        assert_eq!(slugify(&"x".repeat(300), "2023-03-31").len(), 60);
    }

    // Regression: `init` in a directory named `.tmpXYZ` wrote `from = ".tmpXYZ <...>"`,
    // which is not an address, so the new newsletter failed its own check.
    #[test]
    fn settings_parse_whatever_the_directory_is_called() {
        for title in [
            ".tmp5W7Iuh",
            "a, b (c) <d>",
            "quote\"back\\slash",
            "中文\nline",
            "",
        ] {
            let text = settings(title, "en");
            let parsed = Config::parse(Path::new("gazette.toml"), &text, Path::new("."));
            assert!(parsed.is_ok(), "{title:?}: {:?}\n{text}", parsed.err());
        }
    }
}
