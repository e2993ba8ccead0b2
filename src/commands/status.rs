//! `gazette status [SLUG]`: per issue, how many were sent, failed, bounced, deferred, are
//! still to go or unknown; with a slug, every row that needs a look.

use std::path::Path;

use crate::inbound;
use crate::newsletter::Newsletter;
use crate::output::Output;
use crate::store::{self, State};

pub fn run(dir: &Path, slug: Option<&str>, out: &Output) -> anyhow::Result<()> {
    match slug {
        Some(slug) => one(dir, slug, out),
        None => all(dir, out),
    }
}

/// `gazette status` without a slug: one line per issue, newest first.
fn all(dir: &Path, out: &Output) -> anyhow::Result<()> {
    let newsletter = Newsletter::load(dir, out, false)?;
    let issues = &newsletter.issues;
    let Some(db) = store::Store::open_existing(dir)? else {
        anyhow::bail!("no subscriber database yet: import subscribers first");
    };
    let mut all = Vec::new();
    for issue in issues.iter().rev() {
        all.push((issue, db.counts(&issue.id)?));
    }
    let returned = db.inbound_counts()?;
    let returned_of = |id: &str| returned.get(id).copied().unwrap_or_default();
    if out.json {
        let rows: Vec<_> = all
            .iter()
            .map(|(i, c)| {
                serde_json::json!({ "issue": i.slug, "id": i.id, "counts": c,
                "inbound": inbound::status_json(&returned_of(&i.id), c.sent) })
            })
            .collect();
        return out.json_line(&rows);
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
        let note = inbound::status_note(&returned_of(&issue.id), c.sent)
            .map(|n| format!("; {n}"))
            .unwrap_or_default();
        out.line(format_args!("{:width$}  {line}{note}", issue.slug))?;
    }
    let complaints: u64 = returned.values().map(|r| r.complaints).sum();
    if !returned.is_empty() {
        let sent: u64 = all.iter().map(|(_, c)| c.sent).sum();
        out.line(format_args!(
            "complaint rate: {} ({complaints} complaint(s) for {sent} message(s) sent)",
            inbound::complaint_rate(complaints, sent)
        ))?;
    }
    Ok(())
}

fn one(dir: &Path, slug: &str, out: &Output) -> anyhow::Result<()> {
    let newsletter = Newsletter::load(dir, out, false)?;
    let issue = newsletter.find(slug)?;
    let Some(db) = store::Store::open_existing(dir)? else {
        anyhow::bail!("no subscriber database yet: import subscribers first");
    };
    let counts = db.counts(&issue.id)?;
    let returned = db.inbound_counts()?.remove(&issue.id).unwrap_or_default();
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
    if out.json {
        return out.json_line(
            &serde_json::json!({ "issue": slug, "id": issue.id, "counts": counts, "problems": rows,
                "inbound": inbound::status_json(&returned, counts.sent) }),
        );
    }
    out.line(format_args!(
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
    ))?;
    if let Some(note) = inbound::status_note(&returned, counts.sent) {
        out.line(note)?;
    }
    for r in &rows {
        out.line(format_args!(
            "{}\t{}\t{}\t{}",
            r.state,
            r.email,
            r.message_id,
            r.last_reply.as_deref().unwrap_or("")
        ))?;
    }
    Ok(())
}
