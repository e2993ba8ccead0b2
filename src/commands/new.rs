//! `gazette new TITLE [--slug SLUG]`: a draft issue dated now, in `issues/`.

use std::path::Path;

use crate::issue::{self, Issue};
use crate::newsletter::{self, load_config};
use crate::output::Output;
use crate::scaffold;

pub fn run(dir: &Path, title: &str, slug: Option<&str>, out: &Output) -> anyhow::Result<()> {
    let config = load_config(dir, out)?;
    let path = scaffold::new_issue(dir, &config, title, slug, newsletter::now()?)?;
    out.note(format_args!(
        "wrote {} (a draft: set draft = false to publish it)",
        path.display()
    ));
    // What `check` would say of the new file (a title too long for a subject line, say).
    let defaults = issue::Defaults {
        timezone: config.timezone,
        id_authority: &config.id_authority,
    };
    let mut problems = match Issue::from_file(&path, defaults) {
        Ok((_, warnings)) => warnings,
        Err(errors) => errors,
    };
    out.diagnostics(&mut problems);
    Ok(())
}
