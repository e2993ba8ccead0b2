//! gazette: a newsletter publisher. Each command below wires the steps: read files at the top,
//! pure rendering in the middle, writes at the bottom.

pub mod check;
pub mod cli;
pub mod config;
pub mod diagnostic;
pub mod email;
pub mod feed;
pub mod files;
pub mod issue;
pub mod markdown;
pub mod publish;
pub mod scaffold;
pub mod site;
pub mod token;

use std::fmt;
use std::io::IsTerminal;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, FixedOffset};

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::diagnostic::Diagnostic;
use crate::issue::Issue;

/// An error whose details were already printed (diagnostics); `main` prints only its summary.
#[derive(Debug)]
pub struct Reported(pub String);

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Reported {}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let dir = cli.dir.as_path();
    match cli.command {
        Command::Init { dir: target } => {
            scaffold::init(target.as_deref().unwrap_or(dir), cli.quiet)
        }
        Command::New { title, slug } => cmd_new(dir, &title, slug.as_deref(), cli.quiet),
        Command::Check => cmd_check(dir, cli.quiet),
        Command::Publish { slugs } => cmd_publish(dir, &slugs, cli.quiet, cli.json),
        Command::Preview { slug, out } => cmd_preview(dir, &slug, out.as_deref(), cli.quiet),
    }
}

/// The clock, or `GAZETTE_NOW` (RFC 3339) when set: decides which issues are scheduled.
pub fn now() -> anyhow::Result<DateTime<FixedOffset>> {
    match std::env::var("GAZETTE_NOW") {
        Ok(v) => DateTime::parse_from_rfc3339(&v)
            .with_context(|| format!("GAZETTE_NOW={v} is not an RFC 3339 date-time")),
        Err(_) => Ok(chrono::Utc::now().fixed_offset()),
    }
}

/// Prints diagnostics to standard error, errors first then warnings, each group in file order.
pub fn print_diagnostics(diagnostics: &mut [Diagnostic], quiet: bool) {
    diagnostics.sort_by(|a, b| {
        (a.severity, &a.path, a.line, a.column).cmp(&(b.severity, &b.path, b.line, b.column))
    });
    for d in diagnostics.iter().filter(|d| d.is_error() || !quiet) {
        eprintln!("{d}\n");
    }
}

/// Loads the settings and every issue, printing problems. Fails when any is an error.
fn load(dir: &Path, quiet: bool) -> anyhow::Result<(Config, Vec<Issue>)> {
    let config = match Config::from_dir(dir) {
        Ok(c) => c,
        Err(mut problems) => {
            print_diagnostics(&mut problems, quiet);
            return Err(Reported(format!("{} must be fixed first", config::FILE_NAME)).into());
        }
    };
    let defaults = issue::Defaults {
        timezone: config.timezone,
        id_authority: &config.id_authority,
    };
    let (issues, mut problems) = issue::load_all(&dir.join("issues"), defaults)?;
    let errors = problems.iter().filter(|d| d.is_error()).count();
    print_diagnostics(&mut problems, quiet);
    if errors > 0 {
        return Err(Reported(format!(
            "{errors} error{} in the issues; nothing was written (run `gazette check` for every problem)",
            if errors == 1 { "" } else { "s" }
        ))
        .into());
    }
    Ok((config, issues))
}

fn cmd_publish(dir: &Path, slugs: &[String], quiet: bool, json: bool) -> anyhow::Result<()> {
    let (config, issues) = load(dir, true)?;
    let progress = !quiet && std::io::stderr().is_terminal();
    let report = publish::publish(
        dir,
        &config,
        &issues,
        now()?,
        &publish::Options {
            slugs: slugs.to_vec(),
            progress,
        },
    )?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else if !quiet {
        eprintln!("{report}");
    }
    Ok(())
}

fn cmd_preview(dir: &Path, slug: &str, out: Option<&Path>, quiet: bool) -> anyhow::Result<()> {
    let (config, issues) = load(dir, true)?;
    let issue = issues
        .iter()
        .find(|i| i.slug == slug)
        .ok_or_else(|| anyhow::anyhow!("no issue `{slug}`: there is no issues/{slug}.md"))?;
    let out = match out {
        Some(o) => o.to_path_buf(),
        None => dir.join(publish::OUTBOX_DIR).join(slug),
    };
    let written = publish::write_email(dir, &config, issue, &out)?;
    if !quiet {
        eprintln!(
            "wrote {} ({} changed) for {}",
            out.display(),
            written,
            config.email.sample_recipient
        );
    }
    Ok(())
}

fn cmd_check(dir: &Path, quiet: bool) -> anyhow::Result<()> {
    let mut problems = check::check(dir, now()?);
    let errors = problems.iter().filter(|d| d.is_error()).count();
    let warnings = problems.len() - errors;
    print_diagnostics(&mut problems, quiet);
    if errors > 0 {
        return Err(Reported(format!(
            "check failed: {errors} error(s), {warnings} warning(s)"
        ))
        .into());
    }
    if !quiet {
        eprintln!("check passed: 0 errors, {warnings} warning(s)");
    }
    Ok(())
}

fn cmd_new(dir: &Path, title: &str, slug: Option<&str>, quiet: bool) -> anyhow::Result<()> {
    let config = Config::from_dir(dir).map_err(|mut problems| {
        print_diagnostics(&mut problems, false);
        Reported(format!("{} must be fixed first", config::FILE_NAME))
    })?;
    let path = scaffold::new_issue(dir, &config, title, slug, now()?)?;
    if !quiet {
        eprintln!(
            "wrote {} (a draft: set draft = false to publish it)",
            path.display()
        );
    }
    Ok(())
}
