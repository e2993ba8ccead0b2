//! `gazette init [DIR] [--language TAG]`: a new newsletter with settings, templates, a
//! signing key and a first issue.

use std::path::Path;

use crate::output::Output;
use crate::scaffold;

pub fn run(dir: &Path, language: &str, out: &Output) -> anyhow::Result<()> {
    scaffold::init_in(dir, language, out.quiet)
}
