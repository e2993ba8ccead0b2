//! `gazette send SLUG`: one issue to every active subscriber, each exactly once across
//! crashes and restarts (the ledger in [`crate::store`]; the delivery in [`crate::send`]).
//! Also `--dry-run` (messages to files), `--to` (test copies outside the ledger),
//! `--retry-unknown` and `--force`.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::check;
use crate::cli::SendArgs;
use crate::diagnostic;
use crate::inbound;
use crate::issue::Issue;
use crate::layout;
use crate::newsletter::Newsletter;
use crate::output::{Output, Reported, plural};
use crate::render::email;
use crate::send;
use crate::store;
use crate::token;

pub fn run(dir: &Path, args: &SendArgs, out: &Output) -> anyhow::Result<()> {
    let newsletter = Newsletter::load(dir, out, true)?;
    let issue = newsletter.out(&args.slug)?;
    let mut problems = check::issue_problems(dir, &newsletter.issues, &[issue]);
    let errors = out.diagnostics(&mut problems);
    if errors > 0 && !args.force && !args.dry_run {
        return Err(Reported(format!(
            "{} in {}: fix {} before sending, or pass --force to send it as it is",
            plural(errors, "error"),
            diagnostic::shown_path(&issue.path).display(),
            if errors == 1 { "it" } else { "them" },
        ))
        .into());
    }
    let prepared = prepare_email(&newsletter, issue)?;
    // A real send dates each message when it is handed to SMTP; a dry run, like the outbox,
    // shows the issue's date.
    let verp = inbound::verp::Envelope::for_issue(dir, &newsletter.config, &issue.id)?;
    let source = |r: &store::Recipient, transfer: email::Transfer| {
        let mut m =
            prepared.subscriber_message(&email_recipient(r), r.id, r.date.as_deref(), transfer)?;
        if let Some(v) = &verp {
            // VERP: the envelope sender names the recipient and the issue.
            m.from = v.address(r.id);
        }
        Ok(m)
    };
    if args.dry_run {
        let to = layout::outbox(dir, &issue.slug).join("dry-run");
        let n = send::dry_run(dir, &issue.id, &to, &source)?;
        if out.json {
            return out.json_line(&serde_json::json!({ "dry_run": n, "dir": to }));
        }
        out.note(format_args!(
            "dry run: wrote {n} message(s) to {}; nothing was sent or recorded",
            to.display()
        ));
        return Ok(());
    }
    let server = send::Server::resolve(&newsletter.config.smtp)?;
    if !args.to.is_empty() {
        return send_test_copies(&server, &prepared, &args.to, out);
    }

    let lock = store::RunLock::take(dir)?;
    let db = store::Store::open(dir)?;
    let body_sha256 = hex_sha256(&issue.body);
    if !args.force {
        refuse_resend(&db, issue, &body_sha256)?;
    }
    let count = db.count_recipients(&issue.id, args.retry_unknown)?;
    if count == 0 {
        return nothing_to_send(&db, issue, out);
    }
    db.record_sent_issue(&issue.id, &issue.slug, &issue.title, &body_sha256)?;
    drop(db);
    if !args.yes {
        confirm(issue, count)?;
    }
    static INTERRUPT: AtomicBool = AtomicBool::new(false);
    let _ = ctrlc::set_handler(|| {
        if INTERRUPT.swap(true, Ordering::SeqCst) {
            // A second Ctrl-C or SIGTERM: leave now; the ledger bounds what is unknown.
            std::process::exit(130);
        }
        crate::eline!(
            "\nstopping after the messages in flight (Ctrl-C or SIGTERM again to quit at once)..."
        );
    });
    let smtp = &newsletter.config.smtp;
    let options = send::Options {
        concurrency: args.concurrency.map_or(smtp.concurrency, usize::from),
        rate: smtp.rate,
        retry_unknown: args.retry_unknown,
        progress: out.progress(),
        backoff: smtp.backoff,
        ledger_sync: smtp.ledger_sync,
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
    out.report(&report)?;

    let again = format!("gazette -C {} send {}", dir.display(), issue.slug);
    if report.interrupted_before > 0 {
        out.note(format_args!(
            "note: {} message(s) from a run that stopped have an unknown outcome; `gazette status {}` lists them",
            report.interrupted_before, issue.slug
        ));
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
    let counts = store::Store::open(dir)?.counts(&issue.id)?;
    if counts.unknown > 0 && !out.quiet {
        out.warn(format_args!(
            "warning: {} message(s) have an unknown outcome (they may have arrived); \
             `gazette status {}` lists them, `{again} --retry-unknown` sends them again with the same Message-ID",
            counts.unknown, issue.slug
        ));
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

/// The issue's email, rendered once by [`email::Prepared`] and personalised per recipient
/// (DKIM-signed when `[dkim]` is set).
fn prepare_email(newsletter: &Newsletter, issue: &Issue) -> anyhow::Result<email::Prepared> {
    let templates = newsletter.templates()?;
    let secret = token::Secret::load(&newsletter.dir)?;
    let dkim = newsletter.dkim()?;
    email::Prepared::new(
        &newsletter.config,
        issue,
        &templates,
        &secret,
        dkim.as_ref(),
    )
}

/// One recipient as the email module names them.
fn email_recipient(r: &store::Recipient) -> email::Recipient<'_> {
    email::Recipient {
        email: &r.email,
        name: r.name.as_deref(),
    }
}

/// Asks at the terminal before mailing `count` people; without a terminal, `--yes` is needed.
fn confirm(issue: &Issue, count: u64) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "about to send `{}` to {count} subscriber(s): without a terminal to confirm on, pass --yes",
            issue.slug
        );
    }
    crate::etext!(
        "Send “{}” ({}) to {count} subscriber(s)? [y/N] ",
        issue.title,
        issue.slug
    );
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        return Err(Reported("nothing sent".into()).into());
    }
    Ok(())
}

/// Nothing left to send: says why, rather than "0 sent".
fn nothing_to_send(db: &store::Store, issue: &Issue, out: &Output) -> anyhow::Result<()> {
    let counts = db.counts(&issue.id)?;
    if out.json {
        return out
            .json_line(&serde_json::json!({ "issue": issue.slug, "sent": 0, "already": counts }));
    }
    let delivered = counts.sent;
    let total = delivered + counts.failed + counts.bounced + counts.unknown;
    if delivered > 0 && total == delivered {
        out.note(format_args!(
            "`{}` was already delivered to all {delivered} subscriber(s); nothing to send",
            issue.slug
        ));
    } else if total > 0 {
        out.note(format_args!(
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
        ));
    } else {
        out.note("nothing to send: there are no active subscribers");
    }
    Ok(())
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

/// `send --to`: test copies outside the ledger.
fn send_test_copies(
    server: &send::Server,
    prepared: &email::Prepared,
    to: &[String],
    out: &Output,
) -> anyhow::Result<()> {
    // Every address is checked before connecting.
    let addresses = to
        .iter()
        .map(|raw| {
            store::Address::parse(raw)
                .map(|a| a.email)
                .map_err(|e| anyhow::anyhow!("--to {raw}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let results = send::send_test(server, &addresses, &|email, transfer| {
        prepared.test_message(&email::Recipient { email, name: None }, transfer)
    })?;
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    for (to, result) in &results {
        if out.json {
            out.json_line(
                &serde_json::json!({ "to": to, "ok": result.is_ok(), "reply": match result { Ok(r) | Err(r) => r } }),
            )?;
        } else if !out.quiet || result.is_err() {
            match result {
                Ok(reply) => crate::eline!("test copy to {to}: accepted ({reply})"),
                Err(e) => crate::eline!("test copy to {to}: NOT sent: {e}"),
            }
        }
    }
    if failed > 0 {
        return Err(Reported(format!("{failed} test cop(y/ies) not sent")).into());
    }
    Ok(())
}
