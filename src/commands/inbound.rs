//! `gazette inbound [--dry-run] [--imap URL] [PATH...]`: bounces, complaints and unsubscribe
//! mail back into the list (see [`crate::inbound`]).

use std::path::{Path, PathBuf};

use crate::output::Output;

pub fn run(
    dir: &Path,
    paths: &[PathBuf],
    imap: Option<&str>,
    dry_run: bool,
    out: &Output,
) -> anyhow::Result<()> {
    match imap {
        Some(url) => crate::inbound::run_imap(dir, url, dry_run, out.json),
        None => crate::inbound::run(dir, paths, dry_run, out.json),
    }
}
