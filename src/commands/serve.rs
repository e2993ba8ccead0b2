//! `gazette serve [--listen ADDR]`: the newsletter's web server (see [`crate::serve`]).

use std::path::Path;

use crate::output::Output;

pub fn run(dir: &Path, listen: Option<&str>, out: &Output) -> anyhow::Result<()> {
    crate::serve::run(dir, listen, out.quiet)
}
