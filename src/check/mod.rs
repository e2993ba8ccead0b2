//! `gazette check`: every problem in the settings, the issues and the templates, found at once.
//! Reads files; decides nothing about output. Errors fail the check, warnings do not.

mod body;

use std::collections::HashSet;
use std::path::Path;

use rayon::prelude::*;

use crate::config::{self, Config};
use crate::diagnostic::Diagnostic;
use crate::issue::{self, Issue};
use crate::render::email;

use body::body_problems;
pub use body::issue_problems;

/// Templates an editor may override; gazette falls back to built-in ones when absent.
pub const TEMPLATES: [&str; 3] = ["site.css", "email.css", "footer.md"];

/// Every problem found in the newsletter at `dir`.
pub fn check(dir: &Path) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    let config = match Config::from_dir(dir) {
        Ok(c) => {
            if c.base_url.host_str() == Some(crate::scaffold::PLACEHOLDER_HOST) {
                let path = dir.join(config::FILE_NAME);
                let mut d = Diagnostic::warning(&path, "base_url is still the placeholder from `gazette init`")
                    .with_hint("set newsletter.base_url to the URL where feeds/ will be served, and id_authority to a domain you own");
                // Point at the value, as every other settings problem does.
                if let Ok(text) = crate::files::read_text(&path) {
                    let line = text
                        .lines()
                        .position(|l| l.trim_start().starts_with("base_url"));
                    if let Some(n) = line {
                        let l = text.lines().nth(n).unwrap_or_default();
                        let column = l.find('"').map_or(1, |q| l[..q].chars().count() + 1);
                        d = d.at(&text, n + 1, column);
                    }
                }
                problems.push(d);
            }
            Some(c)
        }
        Err(e) => {
            // Not a newsletter at all: saying so is the one useful message.
            if !dir.join(config::FILE_NAME).exists() {
                return e;
            }
            problems.extend(e);
            None
        }
    };
    // With broken settings, still read the issues so every problem shows in one run.
    let defaults = issue::Defaults {
        timezone: config.as_ref().map_or(chrono_tz::UTC, |c| c.timezone),
        id_authority: config
            .as_ref()
            .map_or("example.invalid", |c| c.id_authority.as_str()),
    };
    let issues_dir = crate::layout::issues(dir);
    match issue::load_all(&issues_dir, defaults) {
        Ok((issues, found)) => {
            problems.extend(found);
            problems.extend(crate::assets::asset_problems(&issues_dir, &issues));
            match crate::assets::scan(&issues_dir) {
                Ok(scan) => problems.extend(crate::assets::problems(&issues_dir, &scan, &issues)),
                Err(e) => problems.push(Diagnostic::error(&issues_dir, format!("{e:#}"))),
            }
            let slugs: HashSet<&str> = issues.iter().map(|i| i.slug.as_str()).collect();
            for issue in &issues {
                problems.extend(body_problems(issue, &issues_dir, &slugs));
            }
            if let Some(config) = &config {
                problems.extend(email_problems(dir, config, &issues));
                problems.extend(signing_problems(dir, config));
                problems.extend(key_place_problems(dir, config));
                problems.extend(serve_problems(dir, config));
                problems.extend(unwritten_id_problems(dir, &issues));
            }
        }
        Err(e) => problems.push(Diagnostic::error(&issues_dir, format!("{e:#}"))),
    }
    for name in TEMPLATES {
        let path = crate::layout::template(dir, name);
        match std::fs::metadata(&path) {
            Ok(_) => match crate::files::read_text(&path) {
                Err(d) => problems.push(d),
                Ok(text) if name == "footer.md" => {
                    for (placeholder, _) in email::FOOTER_REQUIRED {
                        if !text.contains(placeholder) {
                            problems.push(
                                Diagnostic::warning(
                                    &path,
                                    format!("the footer has no {placeholder}: gazette adds it at the end of every email"),
                                )
                                .with_hint("every newsletter email needs a visible unsubscribe link and the sender's postal address; place them in the footer yourself"),
                            );
                        }
                    }
                }
                Ok(_) => {}
            },
            Err(_) => problems.push(Diagnostic::warning(
                &path,
                "template not found; gazette uses its built-in one",
            )),
        }
    }
    problems.extend(output_link_problems(dir));
    problems.extend(database_problems(dir));
    problems.extend(secrets_problems(dir));
    problems
}

/// Inside a git work tree, `.gazette/` (the key that signs unsubscribe links, the subscriber
/// list) must be ignored, or one `git add -A` publishes them.
fn secrets_problems(dir: &Path) -> Vec<Diagnostic> {
    let mut found = readable_secret_problems(dir);
    found.extend(ignored_secret_problems(dir));
    found
}

/// The unsubscribe key and the subscriber list must not be readable
/// by other users of the machine.
fn readable_secret_problems(dir: &Path) -> Vec<Diagnostic> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut found = Vec::new();
        for path in [crate::token::secret_path(dir), crate::store::db_path(dir)] {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                found.push(
                    Diagnostic::warning(
                        &path,
                        format!(
                            "readable by other users of this machine (mode {:o})",
                            mode & 0o777
                        ),
                    )
                    .with_hint(format!(
                        "chmod 600 {}",
                        crate::diagnostic::shown_path(&path).display()
                    )),
                );
            }
        }
        found
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Vec::new()
    }
}

fn ignored_secret_problems(dir: &Path) -> Vec<Diagnostic> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .ok()
    };
    let inside = git(&["rev-parse", "--is-inside-work-tree"]).is_some_and(|s| s.success());
    // `check-ignore` exits 1 when the path is not ignored (0: ignored, 128: an error).
    if inside && git(&["check-ignore", "-q", ".gazette/secret"]).and_then(|s| s.code()) == Some(1) {
        return vec![
            Diagnostic::error(&dir.join(".gitignore"), "`.gazette/` is not git-ignored: the unsubscribe key and the subscriber list could be committed")
                .with_hint("add a line `.gazette/` to .gitignore (`gazette init` writes it)"),
        ];
    }
    Vec::new()
}

/// `feeds/`, `outbox/` or a folder in them replaced by a symbolic link: publish, preview and
/// `send --dry-run` refuse to write through it.
fn output_link_problems(dir: &Path) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    for top in [crate::layout::FEEDS_DIR, crate::layout::OUTBOX_DIR] {
        let root = dir.join(top);
        let mut paths = vec![root.clone()];
        if let Ok(entries) = std::fs::read_dir(&root) {
            paths.extend(entries.flatten().map(|e| e.path()));
        }
        for path in paths {
            let link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
            if link {
                found.push(
                    Diagnostic::error(
                        &path,
                        "is a symbolic link: gazette will not write through it",
                    )
                    .with_hint("remove the link; gazette creates this folder itself"),
                );
            }
        }
    }
    found
}

/// A key must never sit where it is published or committed: inside `issues/` or `feeds/`, or
/// in a file git tracks.
fn key_place_problems(dir: &Path, config: &Config) -> Vec<Diagnostic> {
    let Some(dkim) = &config.dkim else {
        return Vec::new();
    };
    let key = &dkim.private_key_file;
    let settings = dir.join(config::FILE_NAME);
    let inside = |top: &str| {
        let Ok(root) = dir.join(top).canonicalize() else {
            return false;
        };
        // The key need not exist yet for its place to be wrong.
        let resolved = key.canonicalize().unwrap_or_else(|_| key.clone());
        resolved.starts_with(&root) || key.starts_with(dir.join(top))
    };
    for top in [crate::layout::ISSUES_DIR, crate::layout::FEEDS_DIR] {
        if inside(top) {
            return vec![
                Diagnostic::error(&settings, format!("[dkim] private_key_file is inside {top}/, where it can be published"))
                    .with_hint("move the key outside the newsletter's published folders (e.g. into .gazette/, which is git-ignored) and update private_key_file"),
            ];
        }
    }
    let Ok(absolute) = key.canonicalize() else {
        return Vec::new();
    };
    let tracked = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["ls-files", "--error-unmatch", "--"])
        .arg(absolute)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if tracked {
        return vec![
            Diagnostic::error(&settings, "[dkim] private_key_file is tracked by git: anyone with the repository can sign mail as you")
                .with_hint("`git rm --cached` the key, move it into .gazette/ (git-ignored), rotate it (publish a new DKIM record), and update private_key_file"),
        ];
    }
    Vec::new()
}

/// An issue already sent whose id is not written down: fixing its date, renaming its file or
/// changing id_authority would change its id (`send` then refuses to mail it again).
fn unwritten_id_problems(dir: &Path, issues: &[Issue]) -> Vec<Diagnostic> {
    let Ok(Some(store)) = crate::store::Store::open_existing(dir) else {
        return Vec::new();
    };
    issues
        .iter()
        .filter(|i| !i.id_written && store.was_sent(&i.id, &i.slug).unwrap_or(false))
        .map(|i| {
            Diagnostic::warning(&i.path, "this issue has been sent but its id is not written down: it is derived from the date and the file name, and changes with them")
                .with_hint(format!("add `id = \"{}\"` to the front matter", i.id))
        })
        .collect()
}

/// The subscriber database, when there is one: readable, not damaged, a schema this gazette
/// knows.
fn database_problems(dir: &Path) -> Vec<Diagnostic> {
    let path = crate::store::db_path(dir);
    match crate::store::Store::open_existing(dir) {
        Ok(None) => Vec::new(),
        Ok(Some(store)) => store
            .problems()
            .into_iter()
            .map(|m| Diagnostic::error(&path, m))
            .collect(),
        Err(e) => vec![Diagnostic::error(&path, format!("{e:#}"))],
    }
}

/// The keys `send` signs with: a DKIM key that does not load is an error found now rather than
/// at send time; no unsubscribe key is a warning (publish signs the sample with a stand-in).
/// Neither key's contents is ever printed.
fn signing_problems(dir: &Path, config: &Config) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    if let Some(dkim) = &config.dkim {
        if let Err(e) = crate::newsletter::dkim_key(dkim) {
            found.push(
                Diagnostic::error(&dir.join(config::FILE_NAME), format!("[dkim]: {e:#}"))
                    .with_hint("private_key_file must be an RSA-2048 or Ed25519 private key in PEM, relative to the newsletter"),
            );
        }
    }
    if let Err(e) = crate::token::Secret::load(dir) {
        found.push(Diagnostic::warning(
            &crate::token::secret_path(dir),
            format!("{e:#}"),
        ));
    }
    found
}

/// Warnings about the issues' emails: an HTML part large enough for Gmail to clip.
fn email_problems(dir: &Path, config: &Config, issues: &[Issue]) -> Vec<Diagnostic> {
    // A broken template is reported above; the built-in one still measures the size.
    let templates =
        crate::newsletter::templates(dir).unwrap_or_else(|_| email::Templates::builtin());
    let secret = email::sample_secret(dir);
    issues
        .par_iter()
        .filter_map(|issue| {
            let size = match email::Prepared::new(config, issue, &templates, &secret, None) {
                Ok(p) => p.html_part_bytes(),
                Err(e) => {
                    return Some(Diagnostic::error(
                        &issue.path,
                        format!("the email cannot be built: {e:#}"),
                    ));
                }
            };
            (size > email::HTML_PART_WARN_BYTES).then(|| {
                Diagnostic::warning(
                    &issue.path,
                    format!(
                        "the email's HTML part is {} KB as sent; Gmail clips messages near 102 KB and hides the rest, the unsubscribe link included",
                        size / 1024
                    ),
                )
                .with_hint("shorten the issue or split it in two")
            })
        })
        .collect()
}

/// `[serve]`: a listen address `gazette serve` can bind, and an unsubscribe_url that points
/// at the path it answers (`<base_url>unsubscribe?token={token}`).
fn serve_problems(dir: &Path, config: &Config) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    if !config.serve.configured {
        return found;
    }
    let path = dir.join(config::FILE_NAME);
    let text = crate::files::read_text(&path).unwrap_or_default();
    // The line of `key = ...` (first one after `[table]`), for the location.
    let locate = |d: Diagnostic, table: &str, key: &str| -> Diagnostic {
        let mut in_table = false;
        for (n, l) in text.lines().enumerate() {
            let t = l.trim_start();
            if t.starts_with('[') {
                in_table = t.trim_end() == format!("[{table}]");
            } else if in_table && t.split('=').next().is_some_and(|k| k.trim() == key) {
                let column = l.find('"').map_or(1, |q| l[..q].chars().count() + 1);
                return d.at(&text, n + 1, column);
            }
        }
        d
    };
    if config.serve_listen.parse::<std::net::SocketAddr>().is_err() {
        found.push(locate(
            Diagnostic::error(
                &path,
                format!(
                    "serve.listen `{}` is not a listen address",
                    config.serve_listen
                ),
            )
            .with_hint("write IP:PORT, e.g. \"127.0.0.1:8080\" (a reverse proxy in front serves the public address)"),
            "serve",
            "listen",
        ));
    }
    let base = &config.base_url;
    let expected = format!("{base}unsubscribe?token={{token}}");
    let points_here = url::Url::parse(&config.email.unsubscribe_url.replace("{token}", "TOKEN"))
        .is_ok_and(|u| {
            u.scheme() == base.scheme()
                && u.host_str() == base.host_str()
                && u.port_or_known_default() == base.port_or_known_default()
                && [
                    format!("{}unsubscribe", base.path()),
                    format!("{}unsubscribe/", base.path()),
                ]
                .contains(&u.path().to_string())
                && u.query_pairs().any(|(k, v)| k == "token" && v == "TOKEN")
        });
    if !points_here {
        found.push(locate(
            Diagnostic::warning(
                &path,
                format!(
                    "email.unsubscribe_url `{}` does not point at `gazette serve`, which answers `{expected}`",
                    config.email.unsubscribe_url
                ),
            )
            .with_hint(format!(
                "set unsubscribe_url = \"{expected}\", or leave it out (that is the default); keep your own only if another server answers it"
            )),
            "email",
            "unsubscribe_url",
        ));
    }
    found
}
