//! A newsletter as the commands see it: its directory, its settings and its issues, loaded
//! once, with the clock read once. Finding an issue by its slug and deciding whether it is
//! out (not a draft, not scheduled) live here and nowhere else.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, FixedOffset};

pub use crate::clock::now;
use crate::config::{self, Config, DkimConfig};
use crate::diagnostic;
use crate::files;
use crate::issue::{self, Issue};
use crate::layout;
use crate::output::{Output, Reported, plural};
use crate::render::builtin;
use crate::render::email::{Dkim, Templates};

/// A loaded newsletter: every issue parsed, every error already reported.
pub struct Newsletter {
    pub dir: PathBuf,
    pub config: Config,
    /// Sorted by (date, slug).
    pub issues: Vec<Issue>,
    /// The moment the command started: decides which issues are out.
    pub now: DateTime<FixedOffset>,
}

impl Newsletter {
    /// The settings and every issue. Problems are printed through `out` (warnings only when
    /// `verbose`); any error fails the load, with the diagnostics already shown.
    pub fn load(dir: &Path, out: &Output, verbose: bool) -> anyhow::Result<Newsletter> {
        let config = load_config(dir, out)?;
        let now = now()?;
        let defaults = issue::Defaults {
            timezone: config.timezone,
            id_authority: &config.id_authority,
        };
        let issues_dir = layout::issues(dir);
        let (issues, mut problems) = issue::load_all(&issues_dir, defaults)?;
        problems.extend(crate::assets::asset_problems(&issues_dir, &issues));
        let quiet = Output {
            quiet: out.quiet || !verbose,
            json: out.json,
        };
        let errors = quiet.diagnostics(&mut problems);
        if errors > 0 {
            return Err(errors_in_issues(errors).into());
        }
        Ok(Newsletter {
            dir: dir.to_path_buf(),
            config,
            issues,
            now,
        })
    }

    /// The issue whose slug is `slug`, or an error naming the nearest slug.
    pub fn find(&self, slug: &str) -> anyhow::Result<&Issue> {
        match self.issues.iter().find(|i| i.slug == slug) {
            Some(issue) => Ok(issue),
            None => {
                let hint =
                    diagnostic::did_you_mean(slug, self.issues.iter().map(|i| i.slug.as_str()))
                        .map(|h| format!(" ({h})"))
                        .unwrap_or_default();
                anyhow::bail!(
                    "no issue `{slug}`: there is no {}{hint}",
                    Path::new(layout::ISSUES_DIR)
                        .join(format!("{slug}.md"))
                        .display()
                )
            }
        }
    }

    /// The issue named `slug` if it is out: not a draft, and its date has come. The one
    /// place that rule is written; `publish` and `send` both ask here.
    pub fn out(&self, slug: &str) -> anyhow::Result<&Issue> {
        let issue = self.find(slug)?;
        if issue.draft {
            anyhow::bail!(
                "`{slug}` is a draft: set draft = false in {} to publish or send it",
                diagnostic::shown_path(&issue.path).display()
            );
        }
        if issue.date > self.now {
            anyhow::bail!(
                "`{slug}` is scheduled for {}: it is not published or sent before then",
                issue.date.to_rfc3339()
            );
        }
        Ok(issue)
    }

    /// The issues that are out at [`Newsletter::now`].
    pub fn published(&self) -> impl Iterator<Item = &Issue> {
        self.issues.iter().filter(|i| i.is_published(self.now))
    }

    /// The email templates: the editor's under `templates/`, else the built-in ones.
    pub fn templates(&self) -> anyhow::Result<Templates> {
        templates(&self.dir)
    }

    /// The DKIM key named by `[dkim]`, when signing is set up.
    pub fn dkim(&self) -> anyhow::Result<Option<Dkim>> {
        self.config.dkim.as_ref().map(dkim_key).transpose()
    }
}

/// The settings alone, for commands that need no issue. Problems are printed; an error
/// fails with them already shown.
pub fn load_config(dir: &Path, out: &Output) -> anyhow::Result<Config> {
    Config::from_dir(dir).map_err(|mut problems| {
        out.diagnostics(&mut problems);
        Reported(format!("{} must be fixed first", config::FILE_NAME)).into()
    })
}

/// `templates/email.css` and `templates/footer.md`, each the built-in one when absent.
pub fn templates(dir: &Path) -> anyhow::Result<Templates> {
    let read = |name: &str, fallback: &str| -> anyhow::Result<String> {
        let path = layout::template(dir, name);
        if !path.exists() {
            return Ok(fallback.to_string());
        }
        Ok(files::read_text(&path)?)
    };
    Ok(Templates::new(
        read("email.css", builtin::EMAIL_CSS)?,
        read("footer.md", builtin::FOOTER_MD)?,
    ))
}

/// The DKIM key named by `settings`, read from its file.
pub fn dkim_key(settings: &DkimConfig) -> anyhow::Result<Dkim> {
    let path = &settings.private_key_file;
    // A PEM key is a few kilobytes: the bound keeps `/dev/zero` or a misnamed file out.
    let pem = files::read_bytes(path, 64 * 1024).context("cannot read the DKIM key")?;
    let pem = String::from_utf8(pem)
        .map_err(|_| anyhow::anyhow!("{} is not a PEM text file", path.display()))?;
    Dkim::from_pem(&settings.domain, &settings.selector, &pem)
        .with_context(|| format!("{}", path.display()))
}

/// A count of errors in the issues, in the words every command uses.
pub fn errors_in_issues(errors: usize) -> Reported {
    Reported(format!(
        "{} in the issues; nothing was written (run `gazette check` for every problem)",
        plural(errors, "error")
    ))
}
