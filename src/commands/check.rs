//! `gazette check`: every problem in the settings, the issues and the templates, at once.
//! Fails on any error; warnings are shown and pass.

use std::path::Path;

use crate::check;
use crate::output::{Output, Reported};

pub fn run(dir: &Path, out: &Output) -> anyhow::Result<()> {
    let mut problems = check::check(dir);
    let errors = out.diagnostics(&mut problems);
    let warnings = problems.len() - errors;
    if errors > 0 {
        return Err(Reported(format!(
            "check failed: {errors} error(s), {warnings} warning(s)"
        ))
        .into());
    }
    out.note(format_args!(
        "check passed: 0 errors, {warnings} warning(s)"
    ));
    Ok(())
}
