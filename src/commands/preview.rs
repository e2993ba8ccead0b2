//! `gazette preview SLUG [--out DIR]`: one issue's email for the sample recipient, written to
//! `outbox/<slug>/` (or DIR) to open in a browser or a mail client.

use std::path::Path;

use crate::check;
use crate::layout;
use crate::newsletter::Newsletter;
use crate::output::Output;
use crate::publish;

pub fn run(dir: &Path, slug: &str, to: Option<&Path>, out: &Output) -> anyhow::Result<()> {
    let newsletter = Newsletter::load(dir, out, true)?;
    let issue = newsletter.find(slug)?;
    let mut problems = check::issue_problems(dir, &newsletter.issues, &[issue]);
    out.diagnostics(&mut problems);
    let to = match to {
        Some(o) => o.to_path_buf(),
        None => layout::outbox(dir, slug),
    };
    let written = publish::write_email(dir, &newsletter.config, issue, &to)?;
    out.note(format_args!(
        "wrote {} ({} changed) for {}",
        to.display(),
        written,
        newsletter.config.email.sample_recipient
    ));
    Ok(())
}
