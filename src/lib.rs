//! gazette: a newsletter publisher. This file is the map of the code and the dispatch of
//! commands; each command is one file under `commands/`.
//!
//! The rooms, from the edge in:
//! - `cli`, `output`, `commands`: the command line, what it prints, one file per command.
//! - `newsletter`, `layout`: a newsletter directory loaded once (settings, issues, clock),
//!   and where each of its parts lives.
//! - `publish`, `send`, `serve`, `inbound`, `check`, `scaffold`: the capabilities; each reads
//!   and writes files and the network for one job.
//! - `render`: Markdown, feeds, pages and email, pure.
//! - `store`: the SQLite database (subscribers, the send ledger, events) and the CSV list.
//! - `config`, `issue`, `token`, `assets`: the inputs, parsed and checked.
//! - `diagnostic`, `files`, `text`, `clock`: located problems, safe file I/O, text and its
//!   width, the one clock.

// A closed standard error must not panic a command: write with `eline!`/`etext!`.
#![deny(clippy::print_stderr)]

pub mod assets;
pub mod check;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod diagnostic;
pub mod files;
pub mod inbound;
pub mod issue;
pub mod layout;
pub mod newsletter;
pub mod output;
pub mod publish;
pub mod render;
pub mod scaffold;
pub mod send;
pub mod serve;
pub mod store;
pub mod text;
pub mod token;

pub use output::{Reported, is_broken_pipe};

use crate::cli::{Cli, Command};
use crate::output::Output;

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let dir = cli.dir.as_path();
    let out = &Output {
        quiet: cli.quiet,
        json: cli.json,
    };
    match cli.command {
        Command::Init {
            dir: target,
            language,
        } => commands::init::run(target.as_deref().unwrap_or(dir), &language, out),
        Command::New { title, slug } => commands::new::run(dir, &title, slug.as_deref(), out),
        Command::Check => commands::check::run(dir, out),
        Command::Publish { slugs } => commands::publish::run(dir, &slugs, out),
        Command::Preview { slug, out: to } => {
            commands::preview::run(dir, &slug, to.as_deref(), out)
        }
        Command::Subscribers(sub) => commands::subscribers::run(dir, sub, out),
        Command::Send(args) => commands::send::run(dir, &args, out),
        Command::Status { slug } => commands::status::run(dir, slug.as_deref(), out),
        Command::Unsubscribe { token_or_address } => {
            commands::unsubscribe::run(dir, &token_or_address, out)
        }
        Command::Serve { listen } => commands::serve::run(dir, listen.as_deref(), out),
        Command::Inbound {
            dry_run,
            paths,
            imap,
        } => commands::inbound::run(dir, &paths, imap.as_deref(), dry_run, out),
    }
}
