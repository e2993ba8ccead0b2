//! `gazette publish [SLUG...]`: every issue that is out becomes a page, a feed entry and an
//! outbox email; nothing is written when any issue has an error.

use std::path::Path;

use crate::check;
use crate::newsletter::{Newsletter, errors_in_issues};
use crate::output::Output;
use crate::publish;

pub fn run(dir: &Path, slugs: &[String], out: &Output) -> anyhow::Result<()> {
    let newsletter = Newsletter::load(dir, out, true)?;
    // Everything `check` would say about the issues; an error (a missing image, a script
    // link) stops the run before anything is written, as `check` fails on it.
    let all: Vec<_> = newsletter.issues.iter().collect();
    let mut problems = check::issue_problems(dir, &newsletter.issues, &all);
    let errors = out.diagnostics(&mut problems);
    if errors > 0 {
        return Err(errors_in_issues(errors).into());
    }
    let options = publish::Options {
        slugs: slugs.to_vec(),
        progress: out.progress(),
    };
    let report = publish::publish(&newsletter, &options)?;
    out.report(&report)
}
