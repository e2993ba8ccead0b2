//! `gazette inbound`: bounces, complaints, auto-replies and mailto unsubscribes read back into
//! the subscriber list. Reading is in [`read`], classification (pure) in [`classify`]; this
//! module applies the outcome to the database and prints it.

pub mod classify;
pub mod imap;
pub mod read;
pub mod verp;

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
    let config = crate::config::Config::from_dir(dir).ok();
    let unsubscribe = config
        .as_ref()
        .map(|c| c.email.unsubscribe_mailto.clone())
        .and_then(|m| {
            let m = m.strip_prefix("mailto:")?.split('?').next()?.to_lowercase();
            Some(m)
        });
    let db = if dry_run {
        Store::open_existing(dir)?
    } else {
        Some(Store::open(dir)?)
    };
    let tokens = Tokens::new(dir, config.as_ref(), db.as_ref())?;
    let soft_limit = config.as_ref().map_or(3, |c| c.inbound.soft_bounce_limit);
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    let mut skipped: Vec<String> = Vec::new();
    let mut actions: std::collections::BTreeMap<String, u64> = Default::default();
    let mut out = std::io::stdout().lock();
    let bar = progress(paths);
    let mut handle = |msg: read::Message| -> anyhow::Result<()> {
        let mut c = match &msg.bytes {
            Some(b) => classify::classify(b, unsubscribe.as_deref()),
            None => Classified::other(),
        };
        let issue = match (&msg.bytes, &db) {
            (Some(b), Some(db)) => tokens.attribute(&mut c, b, db)?,
            _ => {
                c.recipients.retain(|r| !r.address.is_empty());
                if c.kind == Kind::Unsubscribe {
                    c.recipients.clear();
                }
                None
            }
        };
        let (mut act, status) = action(&c);
        if c.kind == Kind::Unsubscribe && c.recipients.is_empty() {
            act = "none: no valid token";
        }
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
                let kind = match c.kind {
                    _ if r.policy => "policy",
                    Kind::Bounce if !r.hard => SOFT,
                    k => k.as_str(),
                };
                let source = c.message_id.clone().unwrap_or_else(|| msg.name.clone());
                let first = db.record_issue_event(
                    &addr,
                    kind,
                    r.status.as_deref(),
                    &source,
                    issue.as_deref(),
                )?;
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
                if first && kind == SOFT {
                    let streak = db.soft_bounce_streak(&addr, SOFT)?;
                    if streak >= soft_limit {
                        db.suppress(
                            &addr,
                            Status::Bounced,
                            &format!(
                                "{SOFT}: {streak} issues in a row, last {}",
                                r.status.as_deref().unwrap_or("-")
                            ),
                        )?;
                        act = "bounced: soft bounces on too many issues";
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

/// The event kind of a temporary failure.
const SOFT: &str = "soft-bounce";

/// What verifies the signed tokens of returned mail (see [`verp`]).
struct Tokens {
    secret: Option<crate::token::Secret>,
    list_id: String,
    /// Issue ids by the tag a token carries.
    issues: std::collections::HashMap<[u8; 4], String>,
}

impl Tokens {
    fn new(
        dir: &Path,
        config: Option<&crate::config::Config>,
        db: Option<&Store>,
    ) -> anyhow::Result<Tokens> {
        let issues = match db {
            Some(db) => db
                .sent_issue_ids()?
                .into_iter()
                .map(|id| (crate::token::issue_tag(&id), id))
                .collect(),
            None => Default::default(),
        };
        Ok(Tokens {
            // Without a key no token verifies: returned mail is read by its content alone.
            secret: crate::token::Secret::load(dir).ok(),
            list_id: config.map(|c| c.email.list_id.clone()).unwrap_or_default(),
            issues,
        })
    }

    /// Applies a valid token: a bounce or complaint to a VERP address is attributed to its
    /// subscriber (even when its body names nobody, or names an address they forward to); an
    /// unsubscribe request names the reader its token names, or nobody. Returns the issue.
    fn attribute(
        &self,
        c: &mut Classified,
        raw: &[u8],
        db: &Store,
    ) -> anyhow::Result<Option<String>> {
        if let Some(issue) = self.attribute_token(c, raw, db)? {
            return Ok(Some(issue.to_string()));
        }
        // No token: the returned message's Message-ID, which gazette makes per issue and
        // recipient, names the issue in the ledger.
        if !matches!(c.kind, Kind::Bounce | Kind::Complaint) || c.recipients.is_empty() {
            return Ok(None);
        }
        let Some(message_id) = returned_message_id(raw) else {
            return Ok(None);
        };
        for r in &c.recipients {
            if let Ok(addr) = Address::parse(&r.address)
                && let Some(issue) = db.issue_of_message(&addr, &message_id)?
            {
                return Ok(Some(issue));
            }
        }
        Ok(None)
    }

    fn attribute_token(
        &self,
        c: &mut Classified,
        raw: &[u8],
        db: &Store,
    ) -> anyhow::Result<Option<&str>> {
        let Some(secret) = &self.secret else {
            if c.kind == Kind::Unsubscribe {
                c.recipients.clear();
            }
            c.recipients.retain(|r| !r.address.is_empty());
            return Ok(None);
        };
        let token = match c.kind {
            Kind::Unsubscribe => verp::unsubscribe_token(secret, &self.list_id, raw),
            Kind::Bounce | Kind::Complaint | Kind::Delivery => {
                verp::bounce_token(secret, &self.list_id, raw)
            }
            _ => None,
        };
        let email = match token {
            Some(t) => db
                .subscriber_email(t.subscriber_id)?
                .map(|e| e.to_lowercase()),
            None => None,
        };
        match (&email, c.kind) {
            (None, Kind::Unsubscribe) => c.recipients.clear(),
            (None, _) => c.recipients.retain(|r| !r.address.is_empty()),
            (Some(e), Kind::Unsubscribe) => {
                c.recipients = vec![classify::Recipient {
                    address: e.clone(),
                    status: None,
                    hard: false,
                    policy: false,
                }];
            }
            (Some(e), _) => {
                // A report naming nobody (a plain-text bounce without address lines, a
                // redacted complaint, a success report) is still about this subscriber; a
                // bounce whose status is unknown counts as temporary.
                if c.recipients.is_empty()
                    && matches!(c.kind, Kind::Bounce | Kind::Complaint | Kind::Delivery)
                {
                    c.recipients.push(classify::Recipient {
                        address: e.clone(),
                        status: None,
                        hard: false,
                        policy: false,
                    });
                }
                // One message went to one subscriber: whatever the report names, it is theirs.
                // A report about the sender or the message wins (never suppresses), then a
                // permanent failure.
                c.recipients.sort_by_key(|r| (!r.policy, !r.hard));
                for r in &mut c.recipients {
                    r.address = e.clone();
                }
                c.recipients.truncate(1);
            }
        }
        Ok(token
            .filter(|_| email.is_some())
            .and_then(|t| self.issues.get(&t.issue))
            .map(String::as_str))
    }
}

/// What `status` adds for one issue once `inbound` has read mail about it: bounces (hard and
/// temporary) and complaints, and the complaint rate over the messages sent. None when
/// nothing came back.
pub fn status_note(c: &crate::store::InboundCounts, sent: u64) -> Option<String> {
    if *c == crate::store::InboundCounts::default() {
        return None;
    }
    Some(format!(
        "returned: {} bounced, {} soft-bounced, {} complaint(s), complaint rate {}",
        c.bounces,
        c.soft_bounces,
        c.complaints,
        complaint_rate(c.complaints, sent)
    ))
}

/// `status --json`'s `inbound` object for one issue.
pub fn status_json(c: &crate::store::InboundCounts, sent: u64) -> serde_json::Value {
    serde_json::json!({
        "bounces": c.bounces,
        "soft_bounces": c.soft_bounces,
        "complaints": c.complaints,
        "complaint_rate": (sent > 0).then(|| c.complaints as f64 / sent as f64),
    })
}

/// Complaints over messages sent, as a percentage with two decimals (`0.30%`; `-` before
/// anything was sent). Gmail and Yahoo ask bulk senders to stay under 0.3%.
pub fn complaint_rate(complaints: u64, sent: u64) -> String {
    if sent == 0 {
        return "-".into();
    }
    format!("{:.2}%", complaints as f64 * 100.0 / sent as f64)
}

/// The Message-ID of the message a report returns (a `message/rfc822` part or the
/// `text/rfc822-headers` of a DSN or ARF), without angle brackets.
fn returned_message_id(raw: &[u8]) -> Option<String> {
    use mail_parser::{MimeHeaders, PartType};
    let msg = mail_parser::MessageParser::default().parse(raw)?;
    for part in msg.parts.iter() {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let ctype = ct.ctype().to_ascii_lowercase();
        let sub = ct.subtype().unwrap_or("").to_ascii_lowercase();
        let found = match (ctype.as_str(), sub.as_str(), &part.body) {
            ("message", "rfc822" | "global", PartType::Message(m)) => {
                m.message_id().map(str::to_string)
            }
            ("text", "rfc822-headers", _) => String::from_utf8_lossy(part.contents())
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("message-id")
                        .then(|| v.trim().trim_matches(['<', '>']).to_string())
                }),
            _ => None,
        };
        if let Some(id) = found.filter(|id| !id.is_empty()) {
            return Some(id);
        }
    }
    None
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
            .with_key("rate", crate::output::rounded_rate),
        )
}
