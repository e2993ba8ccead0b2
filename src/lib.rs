//! gazette: a newsletter publisher. Each command below wires the steps: read files at the top,
//! pure rendering in the middle, writes at the bottom.

pub mod assets;
pub mod check;
pub mod cli;
pub mod config;
pub mod diagnostic;
pub mod email;
pub mod feed;
pub mod files;
pub mod i18n;
pub mod inbound;
pub mod issue;
pub mod markdown;
pub mod publish;
pub mod scaffold;
pub mod send;
pub mod serve;
pub mod site;
pub mod store;
pub mod subscribers;
pub mod token;

use std::fmt;
use std::io::IsTerminal;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, FixedOffset};

use crate::cli::{Cli, Command, SendArgs, Subscribers};
use crate::config::Config;
use crate::diagnostic::Diagnostic;
use crate::issue::Issue;

/// `println!` that returns the error instead of panicking, so that a closed pipe
/// (`gazette status | head -1`) ends the command quietly.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)?
    }};
}

/// A progress bar's rate as people read it: `41/s`, not indicatif's `41.1028/s`.
pub fn rounded_rate(state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write) {
    let _ = write!(w, "{:.0}/s", state.per_sec());
}

/// Whether an error is standard output closed by its reader (`| head`): not a failure.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        let io = cause.downcast_ref::<std::io::Error>().or_else(|| {
            cause
                .downcast_ref::<csv::Error>()
                .and_then(|e| match e.kind() {
                    csv::ErrorKind::Io(io) => Some(io),
                    _ => None,
                })
        });
        io.is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

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
        Command::Init {
            dir: target,
            language,
        } => scaffold::init_in(target.as_deref().unwrap_or(dir), &language, cli.quiet),
        Command::New { title, slug } => cmd_new(dir, &title, slug.as_deref(), cli.quiet),
        Command::Check => cmd_check(dir, cli.quiet),
        Command::Publish { slugs } => cmd_publish(dir, &slugs, cli.quiet, cli.json),
        Command::Subscribers(sub) => cmd_subscribers(dir, sub, cli.quiet, cli.json),
        Command::Send(args) => cmd_send(dir, &args, cli.quiet, cli.json),
        Command::Status { slug: Some(slug) } => cmd_status(dir, &slug, cli.json),
        Command::Status { slug: None } => cmd_status_all(dir, cli.json),
        Command::Unsubscribe { token_or_address } => {
            cmd_unsubscribe(dir, &token_or_address, cli.quiet)
        }
        Command::Serve { listen } => serve::run(dir, listen.as_deref(), cli.quiet),
        Command::Inbound {
            dry_run,
            paths,
            imap: None,
        } => inbound::run(dir, &paths, dry_run, cli.json),
        Command::Inbound {
            dry_run,
            imap: Some(url),
            ..
        } => inbound::run_imap(dir, &url, dry_run, cli.json),
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
    problems.extend(publish::asset_problems(&dir.join("issues"), &issues));
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

/// Prints `check`'s per-issue lints for `these` (a broken link, a missing image; errors
/// even when `quiet`), and returns how many are errors.
fn lint(dir: &Path, all: &[Issue], these: &[&Issue], quiet: bool) -> usize {
    let mut problems = check::issue_problems(dir, all, these);
    let errors = problems.iter().filter(|d| d.is_error()).count();
    print_diagnostics(&mut problems, quiet);
    errors
}

fn cmd_publish(dir: &Path, slugs: &[String], quiet: bool, json: bool) -> anyhow::Result<()> {
    let (config, issues) = load(dir, true)?;
    // Everything `check` would say about the issues; an error (a missing image, a script
    // link) stops the run before anything is written, as `check` fails on it.
    let all: Vec<&Issue> = issues.iter().collect();
    let errors = lint(dir, &issues, &all, quiet || json);
    if errors > 0 {
        return Err(Reported(format!(
            "{errors} error{} in the issues; nothing was written (run `gazette check` for every problem)",
            if errors == 1 { "" } else { "s" }
        ))
        .into());
    }
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
        say!("{}", serde_json::to_string(&report)?);
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
    lint(dir, &issues, &[issue], quiet);
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

fn cmd_subscribers(dir: &Path, sub: Subscribers, quiet: bool, json: bool) -> anyhow::Result<()> {
    let mut db = store::Store::open(dir)?;
    let parse = |raw: &str| store::Address::parse(raw).map_err(|e| anyhow::anyhow!("{e}"));
    match sub {
        Subscribers::Import { file, reactivate } => {
            import_csv(&mut db, &file, reactivate, quiet, json)
        }
        Subscribers::Add {
            email,
            name,
            reactivate,
        } => {
            // One line, as CSV import makes it: a tab or line break would garble `list`.
            let name = name.map(|n| issue::one_line(&n)).filter(|n| !n.is_empty());
            let added = db.add(&parse(&email)?, name.as_deref(), reactivate)?;
            match added {
                store::Added::Suppressed(status) => Err(anyhow::anyhow!(
                    "{email} is {status}; add --reactivate only if they asked to be added again"
                )),
                _ if quiet => Ok(()),
                store::Added::New => {
                    eprintln!("added {email}");
                    Ok(())
                }
                store::Added::AlreadyActive => {
                    eprintln!("{email} was already subscribed");
                    Ok(())
                }
                store::Added::Reactivated => {
                    eprintln!("re-activated {email}");
                    Ok(())
                }
            }
        }
        Subscribers::Remove { email } => {
            match db.set_status(&parse(&email)?, store::Status::Unsubscribed)? {
                None => anyhow::bail!("{email} is not on the list"),
                Some(_) if !quiet => eprintln!("{email} unsubscribed (kept as a suppression)"),
                Some(_) => {}
            }
            Ok(())
        }
        Subscribers::List => {
            let mut out = std::io::stdout().lock();
            db.for_each_subscriber(|s| {
                use std::io::Write;
                if json {
                    writeln!(out, "{}", serde_json::to_string(s)?)?;
                } else {
                    writeln!(
                        out,
                        "{}\t{}\t{}",
                        s.email,
                        s.status,
                        s.name.as_deref().unwrap_or("")
                    )?;
                }
                Ok(())
            })
        }
        Subscribers::Export { out } => {
            let writer: Box<dyn std::io::Write> = match &out {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("cannot write {}", path.display()))?,
                )),
                None => Box::new(std::io::stdout().lock()),
            };
            subscribers::write_csv(writer, |f| db.for_each_subscriber(f))
        }
        Subscribers::Count => {
            let n = db.count_active()?;
            if json {
                say!("{}", serde_json::json!({ "active": n }));
            } else {
                say!("{n}");
            }
            Ok(())
        }
    }
}

/// `subscribers import`: the valid rows go in (one transaction), every bad row is reported.
fn import_csv(
    db: &mut store::Store,
    file: &Path,
    reactivate: bool,
    quiet: bool,
    json: bool,
) -> anyhow::Result<()> {
    // A FIFO or device would block or never end: only regular files, opened after the check.
    let meta =
        std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    if !meta.is_file() {
        anyhow::bail!(
            "{} is not a regular file (a FIFO, device or directory); save the list to a file and import that",
            file.display()
        );
    }
    if meta.len() > subscribers::MAX_CSV {
        anyhow::bail!("{} is larger than 1 GiB; split it", file.display());
    }
    let source =
        std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    #[derive(Default, serde::Serialize)]
    struct Report {
        added: u64,
        already: u64,
        reactivated: u64,
        suppressed: u64,
        invalid: usize,
    }
    /// Rows go into the database as they are read; problems are printed as they are found.
    struct Import<'a> {
        db: &'a store::Store,
        file: &'a Path,
        reactivate: bool,
        quiet: bool,
        now: String,
        /// Ids above this were added by this import.
        added_after: i64,
        /// `(first id, its line)` where the lines of added rows stop following their ids
        /// one for one: the line of any added row, in memory that grows only with the
        /// file's irregular rows, not with its length.
        runs: Vec<(i64, usize)>,
        report: Report,
    }
    impl Import<'_> {
        fn line_of(&self, id: i64) -> usize {
            let i = self.runs.partition_point(|&(first, _)| first <= id) - 1;
            let (first, line) = self.runs[i];
            line + (id - first) as usize
        }
    }
    impl subscribers::Rows for Import<'_> {
        fn row(&mut self, row: subscribers::Row) -> anyhow::Result<Option<usize>> {
            let done = self.db.import_row(
                &row.address,
                row.name.as_deref(),
                self.reactivate,
                &self.now,
                self.added_after,
            )?;
            let added = match done {
                store::Imported::New(id) => {
                    let follows = self
                        .runs
                        .last()
                        .is_some_and(|&(first, line)| line + (id - first) as usize == row.line);
                    if !follows {
                        self.runs.push((id, row.line));
                    }
                    self.report.added += 1;
                    return Ok(None);
                }
                store::Imported::Repeat(id) => return Ok(Some(self.line_of(id))),
                store::Imported::Existing(added) => added,
            };
            match added {
                store::Added::New => self.report.added += 1,
                store::Added::AlreadyActive => self.report.already += 1,
                store::Added::Reactivated => self.report.reactivated += 1,
                store::Added::Suppressed(status) => {
                    self.report.suppressed += 1;
                    let mut d = Diagnostic::warning(
                        self.file,
                        format!("{} is {status}: not re-activated", row.address.email),
                    )
                    .with_hint("pass --reactivate only if they asked to be added again");
                    d.line = row.line;
                    d.column = 1;
                    if !self.quiet {
                        eprintln!("{d}\n");
                    }
                }
            }
            Ok(None)
        }
        fn problem(&mut self, problem: Diagnostic) {
            if problem.is_error() {
                self.report.invalid += 1;
            }
            if problem.is_error() || !self.quiet {
                eprintln!("{problem}\n");
            }
        }
    }
    // One transaction: an import that fails half-way adds nobody.
    db.tune_for_import()?;
    let r = db.transaction(|db| {
        let mut import = Import {
            db,
            file,
            reactivate,
            quiet,
            now: store::timestamp(),
            added_after: db.last_subscriber_id()?,
            runs: Vec::new(),
            report: Report::default(),
        };
        subscribers::read_csv(file, &source, &mut import)?;
        Ok(import.report)
    })?;
    if json {
        say!("{}", serde_json::to_string(&r)?);
    } else if !quiet {
        eprintln!(
            "imported {}: {} added, {} already subscribed, {} re-activated, {} left unsubscribed or bounced, {} row(s) with errors",
            file.display(),
            r.added,
            r.already,
            r.reactivated,
            r.suppressed,
            r.invalid
        );
    }
    if r.invalid > 0 {
        return Err(Reported(format!(
            "{} row(s) of {} were not imported (see above); the other rows were",
            r.invalid,
            file.display()
        ))
        .into());
    }
    Ok(())
}

/// The token of an unsubscribe link pasted whole (`https://…/unsubscribe?token=…`), or the
/// argument as it is.
fn token_from_link(arg: &str) -> &str {
    let arg = arg.trim();
    match arg.split_once("token=") {
        Some((before, after)) if before.contains('?') || before.contains('&') => {
            after.split(['&', '#']).next().unwrap_or(after)
        }
        _ => arg,
    }
}

fn cmd_unsubscribe(dir: &Path, token_or_address: &str, quiet: bool) -> anyhow::Result<()> {
    let token_or_address = token_from_link(token_or_address);
    let address = if token_or_address.contains('@') {
        token_or_address.to_string()
    } else {
        let config = load_config(dir)?;
        token::Secret::load(dir)?
            .verify(&config.email.list_id, token_or_address)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the token is not valid for this list (a mangled link, or signed with another key)"
                )
            })?
    };
    let db = store::Store::open(dir)?;
    let parsed = store::Address::parse(&address).map_err(|e| anyhow::anyhow!("{e}"))?;
    match db.set_status(&parsed, store::Status::Unsubscribed)? {
        None => {
            // Not on the list (yet): keep the wish, so no later import adds them.
            db.add(&parsed, None, false)?;
            db.set_status(&parsed, store::Status::Unsubscribed)?;
            if !quiet {
                eprintln!("{address} was not on the list; recorded so no import adds it");
            }
        }
        Some(old) if !quiet => eprintln!("{address} unsubscribed (was {old})"),
        Some(_) => {}
    }
    Ok(())
}

fn load_config(dir: &Path) -> anyhow::Result<Config> {
    Config::from_dir(dir).map_err(|mut problems| {
        print_diagnostics(&mut problems, false);
        Reported(format!("{} must be fixed first", config::FILE_NAME)).into()
    })
}

/// The issue's email, rendered once by [`email::Prepared`] and personalised per recipient
/// (DKIM-signed when `[dkim]` is set).
fn prepare_email(dir: &Path, config: &Config, issue: &Issue) -> anyhow::Result<email::Prepared> {
    let templates = email::Templates::load(dir)?;
    let secret = token::Secret::load(dir)?;
    let dkim = config.dkim.as_ref().map(email::Dkim::load).transpose()?;
    email::Prepared::new(config, issue, &templates, &secret, dkim.as_ref())
}

/// One recipient as the email module names them.
fn email_recipient(r: &store::Recipient) -> email::Recipient<'_> {
    email::Recipient {
        email: &r.email,
        name: r.name.as_deref(),
    }
}

/// The issue named by `slug`, which must be published (not a draft, not scheduled).
fn sendable<'a>(issues: &'a [Issue], slug: &str) -> anyhow::Result<&'a Issue> {
    let Some(issue) = issues.iter().find(|i| i.slug == slug) else {
        let hint = diagnostic::did_you_mean(slug, issues.iter().map(|i| i.slug.as_str()))
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        anyhow::bail!("no issue `{slug}` in issues/{hint}");
    };
    if issue.draft {
        anyhow::bail!("`{slug}` is a draft: set draft = false before sending it");
    }
    if issue.date > now()? {
        anyhow::bail!(
            "`{slug}` is scheduled for {}: it is not sent before its date",
            issue.date
        );
    }
    Ok(issue)
}

/// The SHA-256 of a text, in hex.
fn hex_sha256(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Refuses to send an issue that the ledger shows was sent under another id: the same slug,
/// or the same title and body. Its id changed (a date fixed, a file renamed, id_authority
/// changed), not the issue; sending would mail everyone again.
fn refuse_resend(db: &store::Store, issue: &Issue, body_sha256: &str) -> anyhow::Result<()> {
    let Some(earlier) =
        db.sent_under_another_id(&issue.id, &issue.slug, &issue.title, body_sha256)?
    else {
        return Ok(());
    };
    let same = if earlier.slug == issue.slug {
        format!("the same slug `{}`", issue.slug)
    } else {
        format!("the same title and body (as `{}`)", earlier.slug)
    };
    anyhow::bail!(
        "`{}` was already sent under another id: {} message(s) of “{}” went out from {} under id `{}`, with {same}; its id is now `{}`\n\
         to keep this the same issue, write its old id into {}: id = \"{}\"\n\
         to send it to everyone again on purpose, pass --force",
        issue.slug,
        earlier.deliveries,
        earlier.title,
        earlier.first_sent,
        earlier.issue_id,
        issue.id,
        crate::diagnostic::shown_path(&issue.path).display(),
        earlier.issue_id,
    )
}

fn cmd_send(dir: &Path, args: &SendArgs, quiet: bool, json: bool) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let (config, issues) = load(dir, true)?;
    let issue = sendable(&issues, &args.slug)?;
    let errors = lint(dir, &issues, &[issue], quiet);
    if errors > 0 && !args.force && !args.dry_run {
        return Err(Reported(format!(
            "{errors} error{} in {}: fix {} before sending, or pass --force to send it as it is",
            if errors == 1 { "" } else { "s" },
            diagnostic::shown_path(&issue.path).display(),
            if errors == 1 { "it" } else { "them" },
        ))
        .into());
    }
    let prepared = prepare_email(dir, &config, issue)?;
    // A real send dates each message when it is handed to SMTP; a dry run, like the outbox,
    // shows the issue's date.
    let source = |r: &store::Recipient| match &r.date {
        Some(date) => prepared.message_at(&email_recipient(r), date),
        None => prepared.message(&email_recipient(r)),
    };
    if args.dry_run {
        let out = dir.join("outbox").join(&issue.slug).join("dry-run");
        let n = send::dry_run(dir, &issue.id, &out, &source)?;
        if json {
            say!("{}", serde_json::json!({ "dry_run": n, "dir": out }));
        } else if !quiet {
            eprintln!(
                "dry run: wrote {n} message(s) to {}; nothing was sent or recorded",
                out.display()
            );
        }
        return Ok(());
    }
    let server = send::Server::resolve(&config.smtp)?;
    if !args.to.is_empty() {
        return send_test_copies(&server, &prepared, &args.to, quiet, json);
    }
    let lock = store::RunLock::take(dir)?;
    let db = store::Store::open(dir)?;
    let body_sha256 = hex_sha256(&issue.body);
    if !args.force {
        refuse_resend(&db, issue, &body_sha256)?;
    }
    let count = db.count_recipients(&issue.id, args.retry_unknown)?;
    if count == 0 {
        // Nothing to do: say why, rather than "0 sent".
        let counts = db.counts(&issue.id)?;
        if json {
            say!(
                "{}",
                serde_json::json!({ "issue": issue.slug, "sent": 0, "already": counts })
            );
        } else if !quiet {
            let delivered = counts.sent;
            let total = delivered + counts.failed + counts.bounced + counts.unknown;
            if delivered > 0 && total == delivered {
                eprintln!(
                    "`{}` was already delivered to all {delivered} subscriber(s); nothing to send",
                    issue.slug
                );
            } else if total > 0 {
                eprintln!(
                    "nothing to send: `{}` went out to {delivered} subscriber(s); {} failed, {} bounced, {} unknown (`gazette status {}` lists them{})",
                    issue.slug,
                    counts.failed,
                    counts.bounced,
                    counts.unknown,
                    issue.slug,
                    if counts.unknown > 0 {
                        "; --retry-unknown sends those again"
                    } else {
                        ""
                    }
                );
            } else {
                eprintln!("nothing to send: there are no active subscribers");
            }
        }
        return Ok(());
    }
    db.record_sent_issue(&issue.id, &issue.slug, &issue.title, &body_sha256)?;
    drop(db);
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "about to send `{}` to {count} subscriber(s): without a terminal to confirm on, pass --yes",
                issue.slug
            );
        }
        eprint!(
            "Send “{}” ({}) to {count} subscriber(s)? [y/N] ",
            issue.title, issue.slug
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(Reported("nothing sent".into()).into());
        }
    }
    static INTERRUPT: AtomicBool = AtomicBool::new(false);
    let _ = ctrlc::set_handler(|| {
        if INTERRUPT.swap(true, Ordering::SeqCst) {
            // A second Ctrl-C or SIGTERM: leave now; the ledger bounds what is unknown.
            std::process::exit(130);
        }
        eprintln!(
            "\nstopping after the messages in flight (Ctrl-C or SIGTERM again to quit at once)..."
        );
    });
    let options = send::Options {
        concurrency: args
            .concurrency
            .map_or(config.smtp.concurrency, usize::from),
        rate: config.smtp.rate,
        retry_unknown: args.retry_unknown,
        progress: !quiet && !json && std::io::stderr().is_terminal(),
        backoff: std::time::Duration::from_millis(250),
        ledger_sync: config.smtp.ledger_sync,
    };
    let report = send::run(
        dir,
        &issue.id,
        &issue.slug,
        &server,
        &source,
        &options,
        &INTERRUPT,
    )?;
    drop(lock);
    if json {
        say!("{}", serde_json::to_string(&report)?);
    } else if !quiet {
        eprintln!("{report}");
    }
    let again = format!("gazette -C {} send {}", dir.display(), issue.slug);
    if !quiet && report.interrupted_before > 0 {
        eprintln!(
            "note: {} message(s) from a run that stopped have an unknown outcome; `gazette status {}` lists them",
            report.interrupted_before, issue.slug
        );
    }
    if let Some(reason) = &report.stopped {
        return Err(Reported(format!(
            "stopped: {reason}\nnothing is lost: fix the cause and run `{again}` to resume"
        ))
        .into());
    }
    if report.interrupted {
        return Err(Reported(format!("interrupted; run `{again}` to resume")).into());
    }
    let db = store::Store::open(dir)?;
    let counts = db.counts(&issue.id)?;
    if !quiet && counts.unknown > 0 {
        eprintln!(
            "warning: {} message(s) have an unknown outcome (they may have arrived); \
             `gazette status {}` lists them, `{again} --retry-unknown` sends them again with the same Message-ID",
            counts.unknown, issue.slug
        );
    }
    if report.deferred > 0 {
        return Err(Reported(format!(
            "{} message(s) deferred after temporary failures; run `{again}` later to retry them",
            report.deferred
        ))
        .into());
    }
    Ok(())
}

/// `send --to`: test copies outside the ledger.
fn send_test_copies(
    server: &send::Server,
    prepared: &email::Prepared,
    to: &[String],
    quiet: bool,
    json: bool,
) -> anyhow::Result<()> {
    let mut messages = Vec::new();
    for raw in to {
        let a = store::Address::parse(raw).map_err(|e| anyhow::anyhow!("--to {raw}: {e}"))?;
        let recipient = email::Recipient {
            email: &a.email,
            name: None,
        };
        messages.push(prepared.test_message(&recipient)?);
    }
    let results = send::send_test(server, &messages)?;
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    for (to, result) in &results {
        if json {
            say!(
                "{}",
                serde_json::json!({ "to": to, "ok": result.is_ok(), "reply": match result { Ok(r) | Err(r) => r } })
            );
        } else if !quiet || result.is_err() {
            match result {
                Ok(reply) => eprintln!("test copy to {to}: accepted ({reply})"),
                Err(e) => eprintln!("test copy to {to}: NOT sent: {e}"),
            }
        }
    }
    if failed > 0 {
        return Err(Reported(format!("{failed} test cop(y/ies) not sent")).into());
    }
    Ok(())
}

/// `gazette status` without a slug: one line per issue, newest first.
fn cmd_status_all(dir: &Path, json: bool) -> anyhow::Result<()> {
    let (_, issues) = load(dir, true)?;
    let Some(db) = store::Store::open_existing(dir)? else {
        anyhow::bail!("no subscriber database yet: import subscribers first");
    };
    let mut all = Vec::new();
    for issue in issues.iter().rev() {
        all.push((issue, db.counts(&issue.id)?));
    }
    if json {
        let rows: Vec<_> = all
            .iter()
            .map(|(i, c)| serde_json::json!({ "issue": i.slug, "id": i.id, "counts": c }))
            .collect();
        say!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    let width = all.iter().map(|(i, _)| i.slug.len()).max().unwrap_or(0);
    for (issue, c) in &all {
        let sent_any = c.sent + c.failed + c.bounced + c.deferred + c.unknown + c.sending > 0;
        let line = if !sent_any {
            let state = if issue.draft { "draft" } else { "not sent" };
            format!("{state} ({} subscribers waiting)", c.pending)
        } else {
            format!(
                "{} sent, {} failed, {} bounced, {} deferred, {} pending, {} unknown",
                c.sent, c.failed, c.bounced, c.deferred, c.pending, c.unknown
            )
        };
        say!("{:width$}  {line}", issue.slug);
    }
    Ok(())
}

fn cmd_status(dir: &Path, slug: &str, json: bool) -> anyhow::Result<()> {
    let (_, issues) = load(dir, true)?;
    let issue = issues
        .iter()
        .find(|i| i.slug == slug)
        .ok_or_else(|| anyhow::anyhow!("no issue `{slug}` in issues/"))?;
    let Some(db) = store::Store::open_existing(dir)? else {
        anyhow::bail!("no subscriber database yet: import subscribers first");
    };
    let counts = db.counts(&issue.id)?;
    use store::State;
    let rows = db.deliveries(
        &issue.id,
        &[
            State::Failed,
            State::Bounced,
            State::Deferred,
            State::Unknown,
            State::Sending,
        ],
    )?;
    if json {
        say!(
            "{}",
            serde_json::json!({ "issue": slug, "id": issue.id, "counts": counts, "problems": rows })
        );
        return Ok(());
    }
    say!(
        "{slug}: {} sent, {} failed, {} bounced, {} deferred, {} pending, {} unknown{}",
        counts.sent,
        counts.failed,
        counts.bounced,
        counts.deferred,
        counts.pending,
        counts.unknown,
        if counts.sending > 0 {
            format!(
                ", {} sending now (or left by a run that died)",
                counts.sending
            )
        } else {
            String::new()
        }
    );
    for r in &rows {
        say!(
            "{}\t{}\t{}\t{}",
            r.state,
            r.email,
            r.message_id,
            r.last_reply.as_deref().unwrap_or("")
        );
    }
    Ok(())
}
