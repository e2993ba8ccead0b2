//! `gazette inbound`: bounces, complaints, auto-replies and mailto unsubscribes read back into
//! the subscriber list. Reading is in [`read`], classification (pure) in [`classify`]; this
//! module applies the outcome to the database and prints it.

pub mod classify;
pub mod imap;
pub mod read;

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::store::{Address, Status, Store};
use classify::{Classified, Kind};

/// What a message changed (or, with --dry-run, would change).
fn action(c: &Classified) -> (&'static str, Option<Status>) {
    match c.kind {
        Kind::Bounce if c.delayed => ("delayed, not counted", None),
        Kind::Other if c.recipients.iter().any(|r| r.policy) => {
            ("auth-failure report, not suppressed", None)
        }
        Kind::Complaint if !c.recipients.is_empty() => ("complained", Some(Status::Complained)),
        Kind::Unsubscribe if !c.recipients.is_empty() => {
            ("unsubscribed", Some(Status::Unsubscribed))
        }
        Kind::Bounce if c.recipients.iter().any(|r| r.hard) => ("bounced", Some(Status::Bounced)),
        Kind::Bounce if c.recipients.iter().any(|r| r.policy) => ("policy, not suppressed", None),
        Kind::Bounce if !c.recipients.is_empty() => ("soft bounce counted", None),
        _ => ("none", None),
    }
}

/// Reads every message under `paths` (standard input when empty), classifies and applies it.
pub fn run(dir: &Path, paths: &[PathBuf], dry_run: bool, json: bool) -> anyhow::Result<()> {
    process(dir, None, paths, dry_run, json)
}

/// Reads the unprocessed messages of an IMAP mailbox (see [`imap`]), classifies and applies
/// them, and marks them processed (not with --dry-run).
pub fn run_imap(dir: &Path, url: &str, dry_run: bool, json: bool) -> anyhow::Result<()> {
    process(dir, Some(url), &[], dry_run, json)
}

fn process(
    dir: &Path,
    imap_url: Option<&str>,
    paths: &[PathBuf],
    dry_run: bool,
    json: bool,
) -> anyhow::Result<()> {
    // Settings and credentials are checked before the database is touched.
    let imap_source = imap_url.map(imap::Source::parse).transpose()?;
    let unsubscribe = crate::config::Config::from_dir(dir)
        .ok()
        .map(|c| c.email.unsubscribe_mailto)
        .and_then(|m| {
            let m = m.strip_prefix("mailto:")?.split('?').next()?.to_lowercase();
            Some(m)
        });
    let db = if dry_run {
        Store::open_existing(dir)?
    } else {
        Some(Store::open(dir)?)
    };
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    let mut skipped: Vec<String> = Vec::new();
    let mut actions: std::collections::BTreeMap<String, u64> = Default::default();
    let mut out = std::io::stdout().lock();
    let bar = progress(paths);
    let mut handle = |msg: read::Message| -> anyhow::Result<()> {
        let c = match &msg.bytes {
            Some(b) => classify::classify(b, unsubscribe.as_deref()),
            None => Classified::other(),
        };
        let (mut act, status) = action(&c);
        if msg.bytes.is_none() {
            act = "skipped: over the size limit";
            skipped.push(msg.name.clone());
        }
        if !dry_run
            && !c.delayed
            && let Some(db) = &db
        {
            for r in &c.recipients {
                let Ok(addr) = Address::parse(&r.address) else {
                    continue;
                };
                let kind = if r.policy { "policy" } else { c.kind.as_str() };
                let source = c.message_id.clone().unwrap_or_else(|| msg.name.clone());
                let first = db.record_event(&addr, kind, r.status.as_deref(), &source)?;
                if first && let Some(s) = status {
                    let suppress = match s {
                        Status::Bounced => r.hard,
                        _ => true,
                    };
                    if suppress {
                        db.suppress(
                            &addr,
                            s,
                            &format!("{}: {}", kind, r.status.as_deref().unwrap_or("-")),
                        )?;
                    }
                }
            }
        }
        *counts.entry(c.kind.as_str().to_string()).or_default() += 1;
        *actions.entry(act.to_string()).or_default() += 1;
        bar.inc(1);
        if json {
            let recipients: Vec<_> = c
                .recipients
                .iter()
                .map(|r| serde_json::json!({"address": r.address, "status": r.status, "hard": r.hard}))
                .collect();
            writeln!(
                out,
                "{}",
                serde_json::json!({"source": msg.name, "kind": c.kind.as_str(),
                    "recipients": recipients, "action": act})
            )?;
        }
        if !dry_run {
            msg.done()?;
        }
        Ok(())
    };
    if let Some(source) = &imap_source {
        imap::read(source, dry_run, &bar, &mut handle)?;
    } else if paths.is_empty() {
        read::stdin(&mut handle)?;
    } else {
        for p in paths {
            read::path(p, &mut handle)?;
        }
    }
    bar.finish_and_clear();
    if !json {
        writeln!(
            std::io::stdout(),
            "{}",
            summary(&counts, &actions, &skipped, dry_run)
        )?;
    }
    Ok(())
}

/// The one line printed after a run without `--json`: counts by kind, then by action, then the
/// messages that were not read (named, at most ten).
fn summary(
    kinds: &std::collections::BTreeMap<String, u64>,
    actions: &std::collections::BTreeMap<String, u64>,
    skipped: &[String],
    dry_run: bool,
) -> String {
    let total: u64 = kinds.values().sum();
    let mut line = format!("{total} message(s)");
    if !kinds.is_empty() {
        let parts: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        line.push_str(": ");
        line.push_str(&parts.join(", "));
    }
    let acts: Vec<String> = actions
        .iter()
        .filter(|(a, _)| a.as_str() != "none")
        .map(|(a, n)| format!("{n} {a}"))
        .collect();
    if !acts.is_empty() {
        line.push_str("; actions: ");
        line.push_str(&acts.join("; "));
    }
    if !skipped.is_empty() {
        let mb = read::MAX_BYTES / (1024 * 1024);
        line.push_str(&format!("; not read (over {mb} MiB): "));
        line.push_str(
            &skipped
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        );
        if skipped.len() > 10 {
            line.push_str(&format!(" and {} more", skipped.len() - 10));
        }
    }
    if dry_run {
        line.push_str(" (dry run: nothing changed)");
    }
    line
}

/// Mailboxes with more messages than this get a progress bar (on a terminal only).
const PROGRESS_FROM: u64 = 300;

/// A progress bar on standard error when it is a terminal and `paths` hold more than
/// [`PROGRESS_FROM`] messages; hidden otherwise.
fn progress(paths: &[PathBuf]) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if paths.is_empty() || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let total: u64 = paths.iter().map(|p| read::count(p)).sum();
    if total <= PROGRESS_FROM {
        return indicatif::ProgressBar::hidden();
    }
    progress_bar(total)
}

/// Shows a hidden bar for `total` messages (IMAP, where the count comes from the server)
/// when standard error is a terminal and `total` is over [`PROGRESS_FROM`].
fn reveal(bar: &indicatif::ProgressBar, total: u64) {
    use std::io::IsTerminal;
    if total > PROGRESS_FROM && std::io::stderr().is_terminal() {
        bar.set_style(progress_bar(total).style());
        bar.set_length(total);
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }
}

/// The progress bar itself.
fn progress_bar(total: u64) -> indicatif::ProgressBar {
    indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr())
        .with_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} messages {rate} eta {eta}",
            )
            .expect("a constant template parses")
            .with_key("rate", crate::rounded_rate),
        )
}
