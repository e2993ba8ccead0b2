//! The command line as the user types it: clap types only, no behaviour.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// gazette: Markdown issues to RSS, Atom, JSON Feed, web pages and email.
#[derive(Debug, Parser)]
#[command(name = "gazette", version, about, long_about = None)]
pub struct Cli {
    /// The newsletter directory (where gazette.toml is).
    #[arg(
        short = 'C',
        long = "directory",
        global = true,
        default_value = ".",
        value_name = "DIR"
    )]
    pub dir: PathBuf,

    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Print a machine-readable summary on standard output.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new newsletter that publishes out of the box.
    Init {
        /// Where to create it (default: the -C directory).
        dir: Option<PathBuf>,
    },
    /// Write a new draft issue with a minted id and today's date.
    New {
        /// The title.
        title: String,
        /// The file name (without .md); derived from the title when it has Latin letters,
        /// else today's date.
        #[arg(long)]
        slug: Option<String>,
    },
    /// Validate gazette.toml, every issue and the templates; report every problem at once.
    Check,
    /// Write feeds/ (RSS, Atom, JSON Feed, web pages) for every published issue.
    Publish {
        /// Rewrite only these issues' pages (the feeds and archive always cover every issue).
        slugs: Vec<String>,
    },
    /// Write one issue's email as it would be sent to the sample recipient: email.html,
    /// email.txt and message.eml.
    Preview {
        /// The slug (its file name without .md).
        slug: String,
        /// Where to write the files (default: outbox/SLUG).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}
