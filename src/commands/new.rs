//! `gazette new TITLE [--slug SLUG]`: a draft issue dated now, in `issues/`.

use std::path::Path;

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
    Ok(())
}
