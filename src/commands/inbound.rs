//! `gazette inbound [--dry-run] [PATH...]`: bounces, complaints and unsubscribe mail back into
//! the list (see [`crate::inbound`]).

use std::path::{Path, PathBuf};

use crate::output::Output;

pub fn run(dir: &Path, paths: &[PathBuf], dry_run: bool, out: &Output) -> anyhow::Result<()> {
    crate::inbound::run(dir, paths, dry_run, out.json)
}
